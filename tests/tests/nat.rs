//! Hole punching through NATs (issue 4), in network namespaces on this machine.
//!
//! ```text
//!                       public segment 10.0.0.0/24 (bridge in ns `pub`)
//!        kith-relay 10.0.0.1:4001 (tcp + quic)
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
//! Needs root, `ip netns`, `nft` and kernel NAT, veth and bridge support; otherwise it
//! prints "skipping: <reason>" and passes. The namespaces are named after the test's
//! pid and deleted on drop, also when the test fails. Nothing leaves the machine: the
//! namespaces have no link to the outside. `KITH_NETNS_LOG=<RUST_LOG filter>` shows
//! the daemons' and the relay's logs.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use kith_tests::{Peer, Relay, connect, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// The `ip` binary, wherever this distribution keeps it.
fn ip_bin() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

fn nft_bin() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// Run `program args...`; Err with its output if it fails or cannot start.
fn try_run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    if let Some(input) = stdin {
        // A program that exits early shows in its status; a broken pipe says nothing more.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run(program: &str, args: &[&str]) {
    try_run(program, args, None).unwrap();
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid: real effective saved fs"
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// The namespaces of one test run; deleted on drop, also when the test fails.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Create a namespace named `kith<pid>-<suffix>` with loopback up.
    fn add(&mut self, suffix: &str) -> Result<String, String> {
        let name = format!("kith{}-{suffix}", std::process::id());
        try_run(ip_bin(), &["netns", "add", &name], None)?;
        self.names.push(name.clone());
        try_run(ip_bin(), &["-n", &name, "link", "set", "lo", "up"], None)?;
        Ok(name)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            // Deleting the namespace also deletes the veth pairs in it.
            if let Err(e) = try_run(ip_bin(), &["netns", "del", name], None) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Names of the five namespaces.
struct Topology {
    public: String,
    host_a: String,
    host_b: String,
    _namespaces: Namespaces,
}

const RELAY_IP: &str = "10.0.0.1";
const ROUTER_A_IP: &str = "10.0.0.2";
const ROUTER_B_IP: &str = "10.0.0.3";
const HOST_A_IP: &str = "192.168.1.2";
const HOST_B_IP: &str = "192.168.2.2";

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

/// Delete namespaces left by runs of this test that were killed before their cleanup
/// (`kith<pid>-...` whose process is gone).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new(ip_bin()).args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some((pid, _)) = name.strip_prefix("kith").and_then(|rest| rest.split_once('-')) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = try_run(ip_bin(), &["netns", "del", name], None);
        }
    }
}

/// Build the topology, or say why this machine cannot (the reason to skip).
fn topology() -> Result<Topology, String> {
    if !is_root() {
        return Err("not running as root (network namespaces need it)".into());
    }
    try_run(ip_bin(), &["-V"], None).map_err(|e| format!("iproute2 `ip` unavailable: {e}"))?;
    try_run(nft_bin(), &["--version"], None).map_err(|e| format!("`nft` unavailable: {e}"))?;
    remove_stale_namespaces();
    let mut namespaces = Namespaces { names: Vec::new() };
    let public = namespaces.add("pub").map_err(|e| format!("`ip netns add` does not work here: {e}"))?;
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
    Ok(Topology { public, host_a, host_b, _namespaces: namespaces })
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
        Err(reason) => {
            eprintln!("skipping: {reason}");
            return;
        }
    };
    // Declared after `net`, so dropped (processes killed) before the namespaces go.
    let mut relay = Relay::in_netns(&net.public, RELAY_IP, "");
    relay.start();
    let circuit = format!("{}/p2p-circuit", relay.addr());

    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    for (peer, netns, ip) in [(&mut alice, &net.host_a, HOST_A_IP), (&mut bob, &net.host_b, HOST_B_IP)] {
        peer.ok(&["relay", "add", &relay.addr()]);
        peer.netns = Some(netns.clone());
        let tcp = format!("/ip4/{ip}/tcp/0");
        let quic = format!("/ip4/{ip}/udp/0/quic-v1");
        peer.start_on(&[&tcp, &quic, &circuit], &[]);
        assert!(peer.addrs.iter().any(|a| a.contains("/p2p-circuit")), "{:?}", peer.addrs);
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
