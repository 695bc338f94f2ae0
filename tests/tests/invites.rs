//! One-time invites used twice or too late: the token no longer makes a contact, so
//! the redeemer's "add me" arrives as an ordinary contact request that the inviter
//! answers (docs/CLI.md, `kith add`). An invite handed out is durable: it survives
//! `kill -9` of the inviter right after `kith invite` answered.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::{Peer, connect, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// `peer`'s pending request from `other`, if any.
fn request(peer: &Peer, other: &Peer) -> Option<Value> {
    let requests = peer.json(&["requests", "--json"]);
    requests.as_array().unwrap().iter().find(|r| r["contact"]["peer_id"] == other.peer_id.as_str()).cloned()
}

/// Waits until `inviter` holds `redeemer`'s contact request, then checks that it is
/// only a request; accepting it makes them contacts on both sides.
fn held_as_request_until_accepted(inviter: &Peer, redeemer: &Peer) {
    wait_until(DEADLINE, &format!("{}'s request reaches {}", redeemer.name, inviter.name), || {
        request(inviter, redeemer).is_some()
    });
    let pending = inviter.contact(redeemer);
    assert!(
        pending.as_ref().is_none_or(|c| c["state"] != "accepted"),
        "the token made {} a contact: {pending:?}",
        redeemer.name
    );
    inviter.ok(&["accept", &redeemer.peer_id]);
    wait_until(DEADLINE, "the request is accepted on both sides", || {
        inviter.contact(redeemer).is_some_and(|c| c["state"] == "accepted")
            && redeemer.contact(inviter).is_some_and(|c| c["state"] == "accepted")
    });
    let msg = redeemer.json(&["send", &inviter.peer_id, "accepted at last", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
}

#[test]
fn an_invite_redeemed_twice_makes_the_second_redeemer_a_contact_request() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    let mut carol = Peer::init("Carol");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.start(&[]);
    }
    let invite = alice.invite();
    let said = bob.ok(&["add", &invite, "--name", "Alice", "--timeout", "60"]);
    assert!(said.contains("Alice is now a contact"), "{said}");
    wait_until(DEADLINE, "Bob is Alice's contact through the invite", || {
        alice.contact(&bob).is_some_and(|c| c["state"] == "accepted")
            && bob.contact(&alice).is_some_and(|c| c["state"] == "accepted")
    });
    assert!(request(&alice, &bob).is_none(), "the first redeemer needs no approval");

    // The same invite again, from someone else: the token is spent, and Carol is told
    // that she sent a request rather than that she is a contact.
    let said = carol.ok(&["add", &invite, "--name", "Alice", "--timeout", "2"]);
    assert!(said.contains("contact request sent to Alice"), "{said}");
    assert_eq!(carol.contact(&alice).unwrap()["state"], "pending_out", "not a contact until Alice accepts");
    held_as_request_until_accepted(&alice, &carol);
    // Bob was never affected.
    assert_eq!(alice.contact(&bob).unwrap()["state"], "accepted");
}

#[test]
fn an_expired_invite_makes_a_contact_request() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    // Alice's invites expire a millisecond after they are made.
    alice.env.push(("KITH_INVITE_TTL_MS".into(), "1".into()));
    alice.start(&[]);
    bob.start(&[]);
    let invite = alice.invite();
    bob.ok(&["add", &invite, "--name", "Alice"]);
    held_as_request_until_accepted(&alice, &bob);

    // A fresh invite from a daemon with the default lifetime still works at once.
    alice.stop();
    alice.env.clear();
    alice.start(&[]);
    let mut carol = Peer::init("Carol");
    carol.start(&[]);
    connect(&alice, &carol);
}

#[test]
fn an_invite_survives_kill_9_right_after_it_is_handed_out() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.start(&[]);
    bob.start(&[]);
    // `kith invite` answered: the token is on disk, whatever happens next.
    let invite = alice.invite();
    alice.kill9();
    alice.start(&[]);
    bob.ok(&["add", &invite, "--name", "Alice"]);
    wait_until(DEADLINE, "Bob is Alice's contact through the invite", || {
        alice.contact(&bob).is_some_and(|c| c["state"] == "accepted")
            && bob.contact(&alice).is_some_and(|c| c["state"] == "accepted")
    });
    assert!(request(&alice, &bob).is_none(), "the token made Bob a contact, not a request");
}
