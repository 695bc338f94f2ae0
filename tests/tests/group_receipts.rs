//! Delivery and read counts of group messages (issue 17: "read by 3 of 5") between
//! real daemons on 127.0.0.1 through a relay: counts as members store and read a
//! message, a member who was offline counted when she comes back, a member who is no
//! contact of the author counted too, `kith follow` told, and a stranger's receipt
//! moving nothing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::dm::DmResult;
use kith_p2p::identity::Identity;
use kith_p2p::payload::{Payload, ReceiptKind};
use kith_tests::group::{id_of, make_group, members, wait_message};
use kith_tests::raw::RawPeer;
use kith_tests::Relay;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);


fn sorted(ids: &Value) -> Vec<String> {
    let mut ids: Vec<String> = ids.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn a_group_message_counts_who_has_it_and_who_read_it_including_a_member_who_was_offline() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let group = make_group(&peers, "club");
    let (bob_id, carol_id) = (peers[1].peer_id.clone(), peers[2].peer_id.clone());
    let follow = peers[0].follow();

    let hello = id_of(&peers[0].json(&["send", "club", "hello all", "--json"]));
    let delivered = wait_message(&peers[0], &group, &hello, "delivered to both", |m| m["receipts"]["delivered"] == 2);
    assert_eq!(delivered["receipts"]["members"], 2, "{delivered}");
    assert_eq!(delivered["receipts"]["read"], 0, "{delivered}");
    assert!(peers[0].ok(&["history", "club"]).contains("delivered to 2 of 2"));

    peers[1].ok(&["read", "club"]);
    let read = wait_message(&peers[0], &group, &hello, "read by Bob", |m| m["receipts"]["read"] == 1);
    assert_eq!(sorted(&read["receipts"]["read_by"]), std::slice::from_ref(&bob_id), "{read}");
    assert_eq!(sorted(&read["receipts"]["delivered_to"]), std::slice::from_ref(&carol_id), "{read}");
    let event = follow.wait_for(DEADLINE, "message_receipts", |e| e["type"] == "message_receipts" && e["receipts"]["read"] == 1);
    assert_eq!(event["id"], hello.as_str(), "{event}");
    assert!(peers[0].ok(&["history", "club"]).contains("read by 1 of 2"));

    // A stranger who learnt the id cannot count itself in. (Its receipt is taken
    // like any payload and then applied to nothing; the node has answered by the
    // time `send` returns.)
    let mut stranger = RawPeer::new(Identity::generate());
    let answer = stranger.send(&peers[0], &[Payload::Receipt { kind: ReceiptKind::Read, ids: vec![hello.parse().unwrap()] }]);
    assert_eq!(answer, [DmResult::Stored], "taken, then applied to nothing");
    let after = peers[0].history(&group).into_iter().find(|m| m["id"] == hello.as_str()).unwrap();
    assert_eq!(after["receipts"], read["receipts"], "the stranger moved nothing");

    // Carol is away while Alice writes again; she is counted once she is back.
    peers[2].stop();
    let later = id_of(&peers[0].json(&["send", "club", "while you were away", "--json"]));
    wait_message(&peers[0], &group, &later, "delivered to Bob", |m| m["receipts"]["delivered"] == 1);
    peers[2].start(&[]);
    wait_message(&peers[2], &group, &later, "Carol gets it from the relay", |_| true);
    peers[2].ok(&["read", "club"]);
    let counted = wait_message(&peers[0], &group, &later, "read by Carol", |m| m["receipts"]["read"] == 1);
    assert_eq!(counted["receipts"]["delivered"], 2, "{counted}");
    assert_eq!(sorted(&counted["receipts"]["read_by"]), std::slice::from_ref(&carol_id), "{counted}");
    let first = wait_message(&peers[0], &group, &hello, "hello read by both", |m| m["receipts"]["read"] == 2);
    assert_eq!(sorted(&first["receipts"]["read_by"]), {
        let mut both = vec![bob_id, carol_id];
        both.sort();
        both
    });

    // Bob's message: Carol is no contact of his, and is counted all the same.
    let from_bob = id_of(&peers[1].json(&["send", "club", "from Bob", "--json"]));
    let reached = wait_message(&peers[1], &group, &from_bob, "delivered to both", |m| m["receipts"]["delivered"] == 2);
    assert_eq!(reached["receipts"]["members"], 2, "{reached}");
    // Received messages carry no counts: only their authors see them.
    let at_alice = wait_message(&peers[0], &group, &from_bob, "Alice has Bob's message", |_| true);
    assert_eq!(at_alice["receipts"], Value::Null, "{at_alice}");
}
