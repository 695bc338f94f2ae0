//! Nodes find each other through a bootstrap node, with no addresses given by hand.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

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
