//! Two or three real daemons on 127.0.0.1 chatting through the `kith` CLI.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use kith_tests::{Peer, connect, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn texts(history: &[Value]) -> Vec<String> {
    history.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

/// What both sides must agree on: order, ids, authors, bodies.
fn shape(history: &[Value]) -> Vec<(String, String, String)> {
    history
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["author"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn invite_add_and_chat_both_ways_byte_exact() {
    let (mut alice, mut bob) = kith_tests::connected_pair();

    let big: String = "абв😀xyz\n".repeat(60 * 1024 / 14);
    assert!(big.len() >= 60 * 1024 - 16 && big.len() <= 64 * 1024);
    let sent = [
        (&bob, "Alice", "hello Alice".to_owned()),
        (&alice, "Bob", "line one\nline two\n\ttabbed".to_owned()),
        (&bob, "Alice", "Привет, как дела? 👋🏽🇺🇦 漢字".to_owned()),
        (&alice, "Bob", big.clone()),
    ];
    for (from, to, text) in &sent {
        let msg = from.json(&["send", to, text, "--wait", "delivered", "--json"]);
        assert_eq!(msg["state"], "delivered");
    }
    wait_until(DEADLINE, "both histories complete", || {
        alice.history("Bob").len() == 4 && bob.history("Alice").len() == 4
    });
    let a = alice.history("Bob");
    let b = bob.history("Alice");
    assert_eq!(shape(&a), shape(&b), "histories differ");
    let received = texts(&a);
    let expected: Vec<String> = sent.iter().map(|(_, _, t)| t.clone()).collect();
    assert_eq!(received, expected, "texts must arrive byte-exact and in order");
    for m in a.iter().filter(|m| m["direction"] == "outgoing") {
        assert!(["delivered", "read"].contains(&m["state"].as_str().unwrap()), "{m}");
    }

    // Reading on one side shows as read on the other.
    alice.ok(&["read", "Bob"]);
    wait_until(DEADLINE, "read receipts", || {
        bob.history("Alice").iter().filter(|m| m["direction"] == "outgoing").all(|m| m["state"] == "read")
    });
    alice.stop();
    bob.stop();
}

#[test]
fn receiver_sigkilled_during_200_messages_gets_each_once_in_order() {
    let (alice, mut bob) = kith_tests::connected_pair();

    let mut ids = Vec::new();
    for i in 0..200 {
        if i == 60 {
            bob.kill9();
        }
        if i == 140 {
            bob.start(&[]);
        }
        let msg = alice.json(&["send", "Bob", &format!("message {i:03}"), "--json"]);
        ids.push(msg["id"].as_str().unwrap().to_owned());
    }
    wait_until(DEADLINE, "all 200 at Bob", || bob.history("Alice").len() >= 200);
    let history = bob.history("Alice");
    assert_eq!(history.len(), 200, "no duplicates");
    let got: Vec<String> = history.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, ids, "every message exactly once, in send order");
    wait_until(DEADLINE, "all delivered at Alice", || {
        alice.history("Bob").iter().all(|m| m["state"] == "delivered")
    });
}

#[test]
fn sender_sigkilled_mid_send_finishes_its_outbox_after_restart() {
    let (mut alice, mut bob) = kith_tests::connected_pair();
    // Bob goes away so Alice's messages pile up in her outbox, then Alice is killed.
    bob.stop();
    let mut ids = Vec::new();
    for i in 0..50 {
        let msg = alice.json(&["send", "Bob", &format!("queued {i}"), "--json"]);
        ids.push(msg["id"].as_str().unwrap().to_owned());
    }
    alice.kill9();
    bob.start(&[]);
    alice.start(&[]);
    wait_until(DEADLINE, "Bob has the 50 queued messages", || bob.history("Alice").len() >= 50);
    let got: Vec<String> = bob.history("Alice").iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, ids);
    wait_until(DEADLINE, "Alice's outbox drained", || {
        alice.json(&["status", "--json"])["outbox"] == 0
    });
}

#[test]
fn stranger_lands_in_requests_and_blocked_peer_is_dropped() {
    let mut alice = Peer::init("Alice");
    let mut mallory = Peer::init("Mallory");
    alice.start(&[]);
    // Mallory joins the network through Alice's node; no one adds anyone by hand.
    mallory.start(&["--bootstrap", &alice.dial_addr()]);
    // Mallory has only Alice's public contact card (no one-time token).
    let card = alice.json(&["id", "--json"])["invite"].as_str().unwrap().to_owned();
    mallory.ok(&["add", &card, "--name", "alice"]);
    mallory.json(&["send", "alice", "hi, remember me?", "--json"]);
    // The request and the message travel separately: wait for both.
    wait_until(DEADLINE, "request with the held message at Alice", || {
        let requests = alice.json(&["requests", "--json"]);
        requests.as_array().unwrap().len() == 1 && requests[0]["held_messages"] == 1
    });
    let requests = alice.json(&["requests", "--json"]);
    assert_eq!(requests[0]["contact"]["peer_id"], mallory.peer_id.as_str());
    assert_eq!(requests[0]["held_messages"], 1);
    assert_eq!(requests[0]["preview"], "hi, remember me?");
    // Not a conversation: the inbox stays empty and contacts show it as pending.
    assert_eq!(alice.json(&["inbox", "--json"]), serde_json::json!([]));

    alice.ok(&["block", &mallory.peer_id]);
    let msg = mallory.json(&["send", "alice", "let me in", "--wait", "sent", "--json"]);
    assert_eq!(msg["state"], "sent", "a blocked sender is not told it was delivered");
    let held = alice.json(&["history", &mallory.peer_id, "--json"]);
    let texts: HashSet<&str> = held.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(!texts.contains("let me in"), "blocked traffic must not be stored");
}

#[test]
fn chat_over_quic_only() {
    let quic = ["/ip4/127.0.0.1/udp/0/quic-v1"];
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.start_on(&quic, &[]);
    bob.start_on(&quic, &[]);
    assert!(alice.addrs.iter().all(|a| a.contains("/quic-v1")), "{:?}", alice.addrs);
    connect(&alice, &bob);
    for (from, to, text) in [(&alice, "Bob", "over quic →"), (&bob, "Alice", "← and back")] {
        let msg = from.json(&["send", to, text, "--wait", "delivered", "--json"]);
        assert_eq!(msg["state"], "delivered");
    }
    assert_eq!(texts(&alice.history("Bob")), ["over quic →", "← and back"]);
    assert_eq!(shape(&alice.history("Bob")), shape(&bob.history("Alice")));
}

/// Sets `read_receipts` in `peer`'s config.toml (read when its daemon starts).
fn set_read_receipts(peer: &Peer, on: bool) {
    let path = kith_p2p::home::Home::at(peer.home()).config_path();
    let mut config = kith_p2p::config::Config::load(&path).unwrap();
    config.read_receipts = on;
    config.save(&path).unwrap();
}

/// The state of message `id` in `peer`'s history with `contact`.
fn state_of(peer: &Peer, contact: &str, id: &Value) -> String {
    let history = peer.history(contact);
    let message = history.iter().find(|m| &m["id"] == id).unwrap_or_else(|| panic!("no message {id}"));
    message["state"].as_str().unwrap().to_owned()
}

#[test]
fn read_receipts_off_sends_no_read_receipt() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    set_read_receipts(&bob, false);
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);

    let unseen = alice.json(&["send", "Bob", "read but never told", "--wait", "delivered", "--json"]);
    assert_eq!(bob.ok(&["read", "Alice"]).trim(), "marked 1 message(s) read");
    assert_eq!(bob.json(&["inbox", "--json"]), serde_json::json!([]), "Bob did read it");
    // A barrier: Bob's next message to Alice travels the same queue, after anything
    // marking it read would have been queued. Once Alice has it, a read receipt would
    // have arrived too.
    let barrier = bob.json(&["send", "Alice", "after reading", "--wait", "delivered", "--json"]);
    assert!(alice.history("Bob").iter().any(|m| m["id"] == barrier["id"]));
    assert_eq!(state_of(&alice, "Bob", &unseen["id"]), "delivered", "no read receipt reached Alice");

    // The same two with receipts on: the next read is reported, the earlier one never.
    bob.stop();
    set_read_receipts(&bob, true);
    bob.start(&[]);
    let seen = alice.json(&["send", "Bob", "read and told", "--wait", "delivered", "--json"]);
    bob.ok(&["read", "Alice"]);
    wait_until(DEADLINE, "the read receipt reaches Alice", || state_of(&alice, "Bob", &seen["id"]) == "read");
    assert_eq!(state_of(&alice, "Bob", &unseen["id"]), "delivered");
}
