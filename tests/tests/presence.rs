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
    let (mut alice, mut bob) = connected_pair();
    let follow = alice.follow();
    wait_until(DEADLINE, "Alice sees Bob online", || seen(&alice, &bob).is_some_and(|(online, _)| online));
    wait_until(DEADLINE, "Bob sees Alice online", || seen(&bob, &alice).is_some_and(|(online, _)| online));
    assert!(alice.ok(&["presence"]).contains("Bob") && alice.ok(&["presence"]).contains("online"));

    // Bob stops: Alice sees him offline at once (he says goodbye; his announcement
    // would hold for 10 minutes), last seen just now.
    let before = kith_p2p::ops::now_ms();
    bob.stop();
    wait_until(DEADLINE, "Alice sees Bob offline", || seen(&alice, &bob).is_some_and(|(online, _)| !online));
    let (_, last_seen) = seen(&alice, &bob).unwrap();
    assert!((before..=kith_p2p::ops::now_ms()).contains(&last_seen.unwrap()), "last seen when he left");
    assert!(alice.ok(&["presence"]).contains("last seen"));
    let bob_id = bob.peer_id.clone();
    let is_bob = |e: &serde_json::Value, online: bool| e["type"] == "presence" && e["peer_id"] == bob_id.as_str() && e["online"] == online;
    follow.wait_for(DEADLINE, "the event of Bob leaving", |e| is_bob(e, false));

    // Back: online again, by the connection his start opens; the follower hears it.
    bob.start(&[]);
    wait_until(DEADLINE, "Alice sees Bob online again", || seen(&alice, &bob).is_some_and(|(online, _)| online));
    follow.wait_for(DEADLINE, "the event of Bob back", |e| is_bob(e, true));
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

    // When Bob was last seen survives Alice's restart.
    let (_, before_restart) = seen(&alice, &bob).unwrap();
    assert!(before_restart.is_some(), "Alice knows when Bob was last seen");
    alice.stop();
    alice.start(&[]);
    assert_eq!(seen(&alice, &bob), Some((false, before_restart)), "last seen, kept in his contact record");
}

/// Asks `peer`'s node to tell `target` it is typing; returns how many peers it told.
fn typing(peer: &Peer, target: &str) -> u64 {
    let socket = kith_p2p::home::Home::at(peer.home()).socket_path();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = kith_p2p::control::Client::connect(&socket).await.unwrap();
        let answer = client.request(&kith_p2p::control::Request::Typing { contact: target.to_owned() }).await.unwrap();
        answer["told"].as_u64().unwrap()
    })
}

#[test]
fn typing_reaches_a_contact_and_group_members_at_most_every_few_seconds_and_is_never_stored() {
    let mut relay = kith_tests::Relay::new("");
    relay.start();
    let peers = kith_tests::group::members(&relay, &["Alice", "Bob", "Carol"]);
    let group = kith_tests::group::make_group(&peers, "club");
    let (alice, bob, carol) = (&peers[0], &peers[1], &peers[2]);
    let bob_events = bob.follow();
    let carol_events = carol.follow();

    // `kith follow` subscribes a moment after it starts: type until Bob's hears it.
    let mut event = None;
    for _ in 0..5 {
        if typing(alice, "Bob") == 1 {
            assert_eq!(typing(alice, "Bob"), 0, "not again within a few seconds");
        }
        event = bob_events.try_wait_for(Duration::from_secs(4), |e| e["type"] == "typing");
        if event.is_some() {
            break;
        }
    }
    let event = event.expect("Bob heard Alice typing");
    assert_eq!(event["peer_id"], alice.peer_id.as_str());
    assert_eq!(event["group"], serde_json::Value::Null);

    // In the group, every member connected now hears it, with the group named.
    wait_until(DEADLINE, "Alice connected to both", || {
        let connected = alice.json(&["status", "--json"])["connected_peers"].clone();
        [bob, carol].iter().all(|p| connected.as_array().unwrap().iter().any(|c| c == p.peer_id.as_str()))
    });
    assert_eq!(typing(alice, "club"), 2);
    for events in [&bob_events, &carol_events] {
        let event = events.wait_for(DEADLINE, "Alice typing in the group", |e| e["type"] == "typing" && e["group"] == group.as_str());
        assert_eq!(event["peer_id"], alice.peer_id.as_str());
    }
    // Nothing of it is stored: the conversations hold no message.
    assert!(bob.history("Alice").is_empty());
    assert!(bob.history(&group).is_empty());
}
