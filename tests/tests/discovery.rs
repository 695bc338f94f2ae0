//! Nodes find each other with no addresses given by hand: through a bootstrap node,
//! and on a LAN through mDNS.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::netns::{self, Lan};
use kith_tests::{Peer, wait_until};

#[test]
fn three_nodes_find_each_other_through_a_bootstrap_node() {
    let mut hub = Peer::init("Hub");
    hub.start(&[]);
    let boot = hub.dial_addr();
    let mut alice = Peer::init("Alice");
    let mut carol = Peer::init("Carol");
    alice.start(&["--bootstrap", &boot]);
    carol.start(&["--bootstrap", &boot]);

    // Carol knows only Alice's peer id: keys and addresses come from Alice's signed
    // peer record in the DHT.
    wait_until(Duration::from_secs(30), "Carol's DHT knows peers", || {
        carol.json(&["status", "--json"])["routing_table_size"].as_u64().unwrap() >= 1
    });
    carol.ok(&["add", &alice.peer_id, "--name", "alice"]);
    wait_until(Duration::from_secs(60), "Carol's request reaches Alice", || {
        alice.json(&["requests", "--json"]).as_array().unwrap().iter().any(|r| r["contact"]["peer_id"] == carol.peer_id.as_str())
    });
    alice.ok(&["accept", &carol.peer_id]);
    wait_until(Duration::from_secs(60), "Carol sees the acceptance", || {
        carol.json(&["contacts", "--json"]).as_array().unwrap().iter().any(|c| c["peer_id"] == alice.peer_id.as_str() && c["state"] == "accepted")
    });
    let msg = carol.json(&["send", "alice", "found you", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
    assert_eq!(alice.history("Carol")[0]["text"], "found you");
}

/// Two nodes on one LAN (two network namespaces joined by a veth pair), with mDNS on
/// and nothing else: no bootstrap, no relay, no address given by hand. Each finds the
/// other by mDNS, so the DHT lookup of a bare peer id reaches it, and a message is
/// delivered.
#[test]
fn two_nodes_on_one_lan_find_each_other_with_mdns() {
    const TEST: &str = "two_nodes_on_one_lan_find_each_other_with_mdns";
    let lan = match Lan::new("md") {
        Ok(lan) => lan,
        Err(reason) => return netns::skip_or_fail(TEST, &reason),
    };
    // Declared after `lan`, so the daemons stop before the namespaces go.
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    for (peer, (host, ip)) in [&mut alice, &mut bob].into_iter().zip(lan.hosts.iter().zip(lan.ips)) {
        peer.netns = Some(host.clone());
        peer.mdns = true;
        peer.start_on(&[&format!("/ip4/{ip}/tcp/0")], &[]);
    }

    // Only mDNS can have put the other node into each routing table.
    for (peer, other) in [(&alice, &bob), (&bob, &alice)] {
        wait_until(Duration::from_secs(60), &format!("{} finds {} by mDNS", peer.name, other.name), || {
            let status = peer.json(&["status", "--json"]);
            status["routing_table_size"].as_u64().unwrap() >= 1
        });
    }
    alice.ok(&["add", &bob.peer_id, "--name", "bob"]);
    wait_until(Duration::from_secs(60), "Alice's request reaches Bob", || {
        bob.json(&["requests", "--json"]).as_array().unwrap().iter().any(|r| r["contact"]["peer_id"] == alice.peer_id.as_str())
    });
    bob.ok(&["accept", &alice.peer_id]);
    let msg = alice.json(&["send", "bob", "found you on the LAN", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
    assert_eq!(bob.history(&alice.peer_id)[0]["text"], "found you on the LAN");
}
