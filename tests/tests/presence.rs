//! Presence (issue 17) between real daemons on 127.0.0.1: a contact is seen online
//! when the other starts, offline (with when it was last seen) when it stops, and a
//! node with presence off neither shows itself nor sees others, while messages
//! still flow.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::{Peer, connected_pair, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

/// What `who` knows of `other`'s presence: online or not, and when last seen.
fn seen(who: &Peer, other: &Peer) -> Option<(bool, Option<u64>)> {
    let list = who.json(&["presence", "--json"]);
    list.as_array().unwrap().iter().find(|p| p["peer_id"] == other.peer_id.as_str()).map(|p| (p["online"].as_bool().unwrap(), p["last_seen"].as_u64()))
}

#[test]
fn a_contact_is_seen_coming_and_going_and_presence_off_shows_nothing_either_way() {
    let (alice, mut bob) = connected_pair();
    wait_until(DEADLINE, "Alice sees Bob online", || seen(&alice, &bob).is_some_and(|(online, _)| online));
    wait_until(DEADLINE, "Bob sees Alice online", || seen(&bob, &alice).is_some_and(|(online, _)| online));
    assert!(alice.ok(&["presence"]).contains("Bob") && alice.ok(&["presence"]).contains("online"));

    // Bob stops: Alice sees him offline at once (he says goodbye), last seen just now.
    let before = kith_p2p::ops::now_ms();
    let follow = alice.follow();
    bob.stop();
    let event = follow.wait_for(DEADLINE, "Bob's presence event", |e| e["type"] == "presence" && e["online"] == false);
    assert_eq!(event["peer_id"], bob.peer_id.as_str());
    let (online, last_seen) = seen(&alice, &bob).unwrap();
    assert!(!online);
    assert!((before..=kith_p2p::ops::now_ms()).contains(&last_seen.unwrap()), "last seen when he left");
    assert!(alice.ok(&["presence"]).contains("last seen"));

    // Back: online again, by the connection his start opens.
    bob.start(&[]);
    follow.wait_for(DEADLINE, "Bob online again", |e| e["type"] == "presence" && e["online"] == true);
    drop(follow);

    // With presence off, Bob sends nothing: Alice, connected and talking to him,
    // sees him offline; and Bob sees no one.
    bob.stop();
    wait_until(DEADLINE, "Bob offline at Alice", || seen(&alice, &bob).is_some_and(|(online, _)| !online));
    bob.ok(&["config", "set", "presence", "false"]);
    bob.start(&[]);
    bob.ok(&["send", "Alice", "still here, quietly", "--wait", "delivered"]);
    alice.ok(&["send", "Bob", "I know", "--wait", "delivered"]);
    assert_eq!(seen(&alice, &bob).map(|(online, _)| online), Some(false), "no announcement came from Bob");
    assert!(bob.json(&["presence", "--json"]).as_array().unwrap().is_empty(), "Bob keeps nothing of Alice's");
    assert!(bob.ok(&["presence"]).contains("presence is off"));
}
