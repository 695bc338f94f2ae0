//! Hole punching through NATs (issue 4), in network namespaces on this machine.
//!
//! ```text
//!                       public segment 10.0.0.0/24 (bridge in ns `pub`)
//!        kith-relay 10.0.0.1:4001 (tcp + quic)    host P 10.0.0.4: Pat's daemon
//!          /                                     \
//!   router A: wan 10.0.0.2                  router B: wan 10.0.0.3
//!   masquerade, drops unsolicited inbound   masquerade, drops unsolicited inbound
//!   lan 192.168.1.1                         lan 192.168.2.1
//!          |                                     |
//!   host A 192.168.1.2: Alice's daemon      host B 192.168.2.2: Bob's daemon
//! ```
//!
//! Each router is a Linux NAT (nftables `masquerade`, which keeps the source port when
//! it can: endpoint-independent mapping) with a stateful firewall (only replies get in,
//! unsolicited packets are dropped). Neither host can reach the other's private
//! address. Both pin the relay and listen on their private address and through it.
//! After an invite, Bob reaches Alice through the relay circuit, DCUtR punches a hole,
//! and a direct (not relayed) connection opens; with the relay stopped, messages still
//! flow, so the direct path carries them.
//!
//! The upgrade is observed through the node's `connection_opened` events (a relayed
//! connection to the peer, then one with `relayed: false` from the other router's
//! public address).
//!
//! AutoNAT gives its verdicts meanwhile: the relay dials each node back at its listen
//! addresses, as seen from outside. Alice and Bob come out `private` (their routers
//! drop the dial-back); Pat, on the public segment with no NAT, `public <address>`.
//! The probes start after a second, not libp2p's 15 s, and the nodes and the relay
//! accept probes over these private addresses (`only_global_ips` off); see
//! [`AUTONAT_KNOBS`].
//!
//! Needs root, `ip netns`, `nft` and kernel NAT, veth and bridge support. Where they
//! are missing it fails under CI and elsewhere prints "skipping ...: <reason>" and passes
//! (see `kith_tests::netns`). `KITH_TEST_LOG=<RUST_LOG filter>` shows the daemons'
//! and the relay's logs.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use kith_tests::netns::{self, Namespaces, ip_bin, nft_bin, run, try_run};
use kith_tests::tones::{CALL_SECONDS, ToneCall};
use kith_tests::{Peer, Relay, connect, wait_output, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// Names of the six namespaces.
struct Topology {
    public: String,
    host_a: String,
    host_b: String,
    host_p: String,
    _namespaces: Namespaces,
}

/// Environment for the daemons: AutoNAT probes a second after start and every two
/// seconds until it has a verdict, and asks (and answers) peers at private addresses.
/// A probe may take a minute: the relay dials a node behind NAT back at each of its
/// addresses in turn, and each attempt waits out its 10 s connection timeout.
const AUTONAT_KNOBS: [(&str, &str); 4] = [
    ("KITH_AUTONAT_BOOT_DELAY_MS", "1000"),
    ("KITH_AUTONAT_RETRY_MS", "2000"),
    ("KITH_AUTONAT_TIMEOUT_MS", "60000"),
    ("KITH_AUTONAT_ONLY_GLOBAL_IPS", "0"),
];

/// The relay answers AutoNAT probes from these private addresses too.
const RELAY_AUTONAT: &str = "[autonat]\nonly_global_ips = false\n";

const RELAY_IP: &str = "10.0.0.1";
const ROUTER_A_IP: &str = "10.0.0.2";
const ROUTER_B_IP: &str = "10.0.0.3";
const HOST_A_IP: &str = "192.168.1.2";
const HOST_B_IP: &str = "192.168.2.2";
/// A host on the public segment, reachable by anyone there.
const HOST_P_IP: &str = "10.0.0.4";

/// A home router: masquerade out of `wan`, forward LAN → WAN, let in only replies;
/// everything unsolicited from the WAN side is dropped (not refused), as on a typical
/// NAT gateway.
const ROUTER_RULES: &str = r#"
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
table inet filter {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        iifname "lan" oifname "wan" accept
        iifname "wan" oifname "lan" ct state established,related accept
    }
}
"#;

/// Build the topology, or say why this machine cannot (the reason to skip).
fn topology() -> Result<Topology, String> {
    netns::check_prerequisites()?;
    try_run(nft_bin(), &["--version"], None).map_err(|e| format!("`nft` unavailable: {e}"))?;
    let mut namespaces = Namespaces::new();
    let public = namespaces.add("pub")?;
    // Probe nftables NAT support in a namespace before relying on it.
    try_run(
        ip_bin(),
        &["netns", "exec", &public, nft_bin(), "-f", "-"],
        Some("table ip probe {\n  chain p {\n    type nat hook postrouting priority srcnat;\n    masquerade\n  }\n}\n"),
    )
    .map_err(|e| format!("nftables NAT unavailable in a network namespace: {e}"))?;
    run(ip_bin(), &["netns", "exec", &public, nft_bin(), "delete", "table", "ip", "probe"]);

    // The public segment: a bridge holding the relay's address.
    let ip = ip_bin();
    // A kernel without bridge or veth support is a reason to skip, like the above.
    let link_add = |args: &[&str]| try_run(ip, args, None).map_err(|e| format!("cannot create virtual links: {e}"));
    link_add(&["-n", &public, "link", "add", "br0", "type", "bridge"])?;
    run(ip, &["-n", &public, "addr", "add", &format!("{RELAY_IP}/24"), "dev", "br0"]);
    run(ip, &["-n", &public, "link", "set", "br0", "up"]);

    let mut hosts = Vec::new();
    for (side, wan_ip, lan) in [("a", ROUTER_A_IP, 1), ("b", ROUTER_B_IP, 2)] {
        let router = namespaces.add(&format!("r{side}"))?;
        let host = namespaces.add(&format!("h{side}"))?;
        // Router WAN side on the bridge.
        let port = format!("to-r{side}");
        link_add(&["-n", &public, "link", "add", &port, "type", "veth", "peer", "name", "wan", "netns", &router])?;
        run(ip, &["-n", &public, "link", "set", &port, "master", "br0"]);
        run(ip, &["-n", &public, "link", "set", &port, "up"]);
        run(ip, &["-n", &router, "addr", "add", &format!("{wan_ip}/24"), "dev", "wan"]);
        run(ip, &["-n", &router, "link", "set", "wan", "up"]);
        // Router LAN side and the host behind it.
        link_add(&["-n", &router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", &host])?;
        run(ip, &["-n", &router, "addr", "add", &format!("192.168.{lan}.1/24"), "dev", "lan"]);
        run(ip, &["-n", &router, "link", "set", "lan", "up"]);
        run(ip, &["-n", &host, "addr", "add", &format!("192.168.{lan}.2/24"), "dev", "eth0"]);
        run(ip, &["-n", &host, "link", "set", "eth0", "up"]);
        run(ip, &["-n", &host, "route", "add", "default", "via", &format!("192.168.{lan}.1")]);
        // Forwarding on, written from inside the namespace (no `sysctl` needed).
        try_run(ip, &["netns", "exec", &router, "tee", "/proc/sys/net/ipv4/ip_forward"], Some("1\n")).unwrap();
        try_run(ip, &["netns", "exec", &router, nft_bin(), "-f", "-"], Some(ROUTER_RULES)).unwrap();
        hosts.push(host);
    }
    let host_b = hosts.pop().unwrap();
    let host_a = hosts.pop().unwrap();
    // A host straight on the public segment, no NAT in front of it.
    let host_p = namespaces.add("hp")?;
    link_add(&["-n", &public, "link", "add", "to-hp", "type", "veth", "peer", "name", "eth0", "netns", &host_p])?;
    run(ip, &["-n", &public, "link", "set", "to-hp", "master", "br0"]);
    run(ip, &["-n", &public, "link", "set", "to-hp", "up"]);
    run(ip, &["-n", &host_p, "addr", "add", &format!("{HOST_P_IP}/24"), "dev", "eth0"]);
    run(ip, &["-n", &host_p, "link", "set", "eth0", "up"]);
    Ok(Topology { public, host_a, host_b, host_p, _namespaces: namespaces })
}

/// The texts of a history, oldest first.
fn texts(history: &[Value]) -> Vec<String> {
    history.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

/// Send `text` from `from` to `to` and wait until `from` sees it delivered.
fn send_delivered(from: &Peer, to: &str, text: &str) {
    let msg = from.json(&["send", to, text, "--json"]);
    let id = msg["id"].as_str().unwrap().to_owned();
    wait_until(DEADLINE, &format!("{text:?} delivered"), || {
        from.history(to).iter().any(|m| m["id"] == id.as_str() && m["state"] == "delivered")
    });
}

#[test]
fn peers_behind_two_nats_hole_punch_a_direct_connection() {
    let net = match topology() {
        Ok(net) => net,
        Err(reason) => return netns::skip_or_fail("peers_behind_two_nats_hole_punch_a_direct_connection", &reason),
    };
    // Declared after `net`, so dropped (processes killed) before the namespaces go.
    let mut relay = Relay::in_netns(&net.public, RELAY_IP, RELAY_AUTONAT);
    relay.start();
    let circuit = format!("{}/p2p-circuit", relay.addr());

    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    let mut pat = Peer::init("Pat");
    for (peer, netns, ip) in
        [(&mut alice, &net.host_a, HOST_A_IP), (&mut bob, &net.host_b, HOST_B_IP), (&mut pat, &net.host_p, HOST_P_IP)]
    {
        peer.ok(&["relay", "add", &relay.addr()]);
        peer.netns = Some(netns.clone());
        peer.env.extend(AUTONAT_KNOBS.map(|(k, v)| (k.to_owned(), v.to_owned())));
        let tcp = format!("/ip4/{ip}/tcp/0");
        let quic = format!("/ip4/{ip}/udp/0/quic-v1");
        if ip == HOST_P_IP {
            peer.start_on(&[&tcp, &quic], &[]);
        } else {
            peer.start_on(&[&tcp, &quic, &circuit], &[]);
            assert!(peer.addrs.iter().any(|a| a.contains("/p2p-circuit")), "{:?}", peer.addrs);
        }
    }
    // Alice's private address really is unreachable from Bob's side (a refused, failed
    // or timed-out connect all count; so does a missing `bash`).
    let alice_tcp = alice.addrs.iter().find(|a| a.starts_with(&format!("/ip4/{HOST_A_IP}/tcp/"))).unwrap();
    let port = alice_tcp.rsplit('/').next().unwrap();
    let probe = format!("exec 3<>/dev/tcp/{HOST_A_IP}/{port}");
    let reached = Command::new(ip_bin())
        .args(["netns", "exec", &net.host_b, "timeout", "2", "bash", "-c", &probe])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!reached.success(), "host B reached Alice's private address: not a NAT setup");

    let alice_events = alice.follow();
    let bob_events = bob.follow();
    // Alice's invite carries her circuit address; Bob reaches her through the relay.
    connect(&alice, &bob);

    // First a relayed connection, then DCUtR upgrades it to a direct one, which can
    // only run between the routers' public addresses: a hole punched through both NATs.
    let opened = |events: &kith_tests::Follow, other: &Peer, relayed: bool| {
        let id = other.peer_id.clone();
        let what = format!("a {} connection to {}", if relayed { "relayed" } else { "direct" }, other.name);
        events.wait_for(DEADLINE, &what, move |e| {
            e["type"] == "connection_opened" && e["peer_id"] == id.as_str() && e["relayed"] == relayed
        })
    };
    for (events, other, router) in [(&alice_events, &bob, ROUTER_B_IP), (&bob_events, &alice, ROUTER_A_IP)] {
        opened(events, other, true);
        let direct = opened(events, other, false);
        let addr = direct["addr"].as_str().unwrap();
        assert!(addr.starts_with(&format!("/ip4/{router}/")), "direct connection to {}: {direct}", other.name);
        eprintln!("hole punched: a direct connection to {} at {addr}", other.name);
    }

    send_delivered(&alice, "Bob", "hello across two NATs");
    send_delivered(&bob, "Alice", "hello back");
    assert_reachability(&alice, &bob, &pat);

    // Without the relay, only the punched hole connects them.
    relay.stop();
    send_delivered(&alice, "Bob", "no relay any more");
    send_delivered(&bob, "Alice", "still here");
    let all = ["hello across two NATs", "hello back", "no relay any more", "still here"];
    for peer in [(&alice, "Bob"), (&bob, "Alice")] {
        let mut got = texts(&peer.0.history(peer.1));
        got.sort();
        let mut want = all.map(String::from).to_vec();
        want.sort();
        assert_eq!(got, want, "{}'s history", peer.0.name);
    }
}

/// The AutoNAT verdicts `kith status` reports once the relay has dialed each node back.
/// Runs while the relay is up: it is the one peer every node asks.
fn assert_reachability(alice: &Peer, bob: &Peer, pat: &Peer) {
    let reachability = |peer: &Peer| peer.json(&["status", "--json"])["reachability"].as_str().unwrap().to_owned();
    for behind_nat in [alice, bob] {
        // Bounded by two probe timeouts (see AUTONAT_KNOBS).
        wait_until(2 * DEADLINE, &format!("AutoNAT finds {} private", behind_nat.name), || {
            reachability(behind_nat) == "private"
        });
    }
    let public = format!("public /ip4/{HOST_P_IP}/");
    wait_until(DEADLINE, "AutoNAT finds Pat public", || reachability(pat).starts_with(&public));
    // The address the relay dialed back: one Pat listens on.
    let verdict = reachability(pat);
    let addr = verdict.strip_prefix("public ").unwrap();
    assert!(pat.addrs.iter().any(|a| addr.starts_with(a.as_str())), "{verdict} vs {:?}", pat.addrs);
    eprintln!("AutoNAT: Alice and Bob private, Pat {verdict}");
}

/// A call between the two hosts behind NATs: each node learns its NAT's mapping from
/// the relay's STUN answer (a server-reflexive candidate), ICE's checks from both sides
/// open the holes, and media runs directly between the routers' public addresses;
/// the relay's TURN server, offered too, carries next to nothing.
#[test]
fn a_call_between_two_nats_runs_direct_through_the_holes_ice_punches() {
    let net = match topology() {
        Ok(net) => net,
        Err(reason) => return netns::skip_or_fail("a_call_between_two_nats_runs_direct_through_the_holes_ice_punches", &reason),
    };
    let metrics = format!("{RELAY_IP}:9100");
    let config = format!("{RELAY_AUTONAT}[media]\nenabled = true\n[metrics]\nlisten = \"{metrics}\"\n");
    let mut relay = Relay::in_netns(&net.public, RELAY_IP, &config);
    relay.start();
    let circuit = format!("{}/p2p-circuit", relay.addr());
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    for (peer, netns, ip) in [(&mut alice, &net.host_a, HOST_A_IP), (&mut bob, &net.host_b, HOST_B_IP)] {
        peer.ok(&["relay", "add", &relay.addr()]);
        peer.netns = Some(netns.clone());
        peer.start_on(&[&format!("/ip4/{ip}/tcp/0"), &circuit], &[]);
    }
    connect(&alice, &bob);

    let tones = ToneCall::new();
    let bob_events = bob.follow();
    let caller = tones.place(&alice);
    bob_events.wait_for(DEADLINE, "the call rings at Bob", |e| e["type"] == "call_ringing");
    tones.answer(&bob, None);
    bob_events.wait_for(DEADLINE, "media flows", |e| e["type"] == "call_connected");
    let out = wait_output(caller, DEADLINE, "alice's call to end");
    assert!(out.status.success(), "kith call failed: {}", String::from_utf8_lossy(&out.stderr));
    // What this test is about is the path, below; how much of the call each side
    // hears is the other call tests' business. Here, with the machine loaded (a
    // compile beside it), one side's recording once began a second late, so the bar
    // is lower than theirs.
    tones.assert_each_heard_at_least(0.6);
    // Through the relay, the call's Opus alone would be over 30 kB (a tone both ways
    // for the whole call); ICE's checks on the relayed pairs are a few hundred bytes
    // a second.
    let relayed = netns::metric(&net.public, &metrics, "kith_relay_turn_relayed_bytes_total").unwrap();
    eprintln!("the TURN server relayed {relayed} bytes of a {CALL_SECONDS} s call");
    assert!(relayed < 12_000.0, "the media went through the relay: {relayed} bytes");
}
