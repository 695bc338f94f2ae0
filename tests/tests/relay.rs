//! Relays with real processes on 127.0.0.1 (issue 4): offline delivery through
//! mailboxes, a relay killed between deposit and drain, two relays with one down, one
//! that loses what it held after the other came back, no
//! plaintext at rest on the relay, refusals that keep messages pending, a stranger
//! who fills the share of a mailbox open to anyone, and a node reachable only
//! through a relay circuit.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::libp2p::PeerId;
use kith_p2p::mailbox::{self, DepositResult, MailboxRequest, MailboxResponse, Refusal};
use kith_tests::raw::ask_relay;
use kith_tests::{Peer, Relay, connect, contains_bytes, files_under, pair_pinning, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

fn states(history: &[Value]) -> Vec<String> {
    history.iter().map(|m| m["state"].as_str().unwrap().to_owned()).collect()
}

fn texts(history: &[Value]) -> Vec<String> {
    history.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

/// Alice sends Bob `count` texts, `{text} #000` onward, and waits until a relay
/// holds them all (`sent`); returns their ids in order.
fn send_until_held(alice: &Peer, count: usize, text: &str) -> Vec<String> {
    let ids = (0..count)
        .map(|i| {
            let msg = alice.json(&["send", "Bob", &format!("{text} #{i:03}"), "--json"]);
            msg["id"].as_str().unwrap().to_owned()
        })
        .collect();
    wait_until(DEADLINE, &format!("all {count} held by a relay (sent)"), || {
        alice.history("Bob").iter().all(|m| m["state"] == "sent")
    });
    ids
}

/// Two peers that pin `relays`, are mutual contacts, and are both running.
#[test]
fn never_online_together_delivery_through_a_relay() {
    let mut relay = Relay::new("");
    relay.start();
    let (mut alice, mut bob) = pair_pinning(&[&relay]);
    bob.stop();

    let secret = "the eagle lands at midnight";
    let ids = send_until_held(&alice, 100, secret);
    alice.stop();

    // At rest the relay holds only ciphertext.
    relay.stop();
    for file in files_under(&relay.data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains_bytes(&bytes, secret.as_bytes()), "plaintext found in {}", file.display());
        assert!(!contains_bytes(&bytes, b"eagle"), "plaintext found in {}", file.display());
    }
    relay.start();

    bob.start(&[]);
    wait_until(DEADLINE, "Bob has all 100", || bob.history("Alice").len() >= 100);
    let got = bob.history("Alice");
    assert_eq!(got.len(), 100, "exactly once");
    let got_ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(got_ids, ids, "in send order");
    assert_eq!(texts(&got)[7], format!("{secret} #007"));

    // Bob's delivery receipts reach Alice when she is back.
    alice.start(&[]);
    wait_until(DEADLINE, "Alice sees all delivered", || {
        states(&alice.history("Bob")).iter().all(|s| s == "delivered")
    });
}

#[test]
fn relay_sigkilled_between_deposit_and_drain_loses_nothing() {
    let mut relay = Relay::new("");
    relay.start();
    let (alice, mut bob) = pair_pinning(&[&relay]);
    bob.stop();
    for i in 0..20 {
        alice.json(&["send", "Bob", &format!("survives the crash {i}"), "--json"]);
    }
    wait_until(DEADLINE, "all 20 held by the relay", || {
        alice.history("Bob").iter().all(|m| m["state"] == "sent")
    });
    relay.kill9();
    relay.start();
    bob.start(&[]);
    wait_until(DEADLINE, "Bob has all 20", || bob.history("Alice").len() >= 20);
    assert_eq!(bob.history("Alice").len(), 20);
}

#[test]
fn two_pinned_relays_with_one_down_still_deliver() {
    let mut up = Relay::new("");
    let mut down = Relay::new("");
    up.start();
    down.start();
    let (alice, mut bob) = pair_pinning(&[&down, &up]);
    bob.stop();
    down.stop();
    for i in 0..10 {
        alice.json(&["send", "Bob", &format!("via the other relay {i}"), "--json"]);
    }
    wait_until(DEADLINE, "held by the relay that is up", || {
        alice.history("Bob").iter().all(|m| m["state"] == "sent")
    });
    bob.start(&[]);
    wait_until(DEADLINE, "Bob has all 10", || bob.history("Alice").len() >= 10);
    assert_eq!(bob.history("Alice").len(), 10);
}

/// A relay can say it holds mail and lose it (a crash that eats its disk, a hostile
/// operator). Alice's messages are held by the first of Bob's two relays while the
/// second is down; the second comes back, and later the first loses its mailboxes.
/// Bob still gets every message: Alice sent them again to the relay that missed them.
#[test]
fn mail_a_relay_loses_still_arrives_through_the_other_relay_that_was_down_when_it_was_sent() {
    let mut first = Relay::new("");
    let second_metrics = kith_tests::free_port();
    let mut second = Relay::new(&format!("[metrics]\nlisten = \"127.0.0.1:{second_metrics}\"\n"));
    first.start();
    second.start();
    let (mut alice, mut bob) = pair_pinning(&[&first, &second]);
    alice.stop();
    // Tries 1.5 s, 4.5 s ... 46.5 s after the first deposit: a slow restart of the
    // second relay still falls inside them.
    alice.env.push(("KITH_REDEPOSIT_MS".into(), "1500".into()));
    alice.start(&[]);
    bob.stop();
    second.stop();
    let ids = send_until_held(&alice, 5, "held twice");
    second.start();
    wait_until(DEADLINE, "Alice's mail sent again to the relay that was down", || {
        kith_tests::relay_mailbox_envelopes(second_metrics).is_some_and(|n| n >= 5.0)
    });
    // The first relay loses every mailbox it held (its identity stays).
    first.stop();
    std::fs::remove_dir_all(first.data_dir.join("mailbox")).unwrap();
    first.start();

    bob.start(&[]);
    wait_until(DEADLINE, "Bob has all 5", || bob.history("Alice").len() >= 5);
    let got = bob.history("Alice");
    let got_ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(got_ids, ids, "each once, in order");
    wait_until(DEADLINE, "Alice sees all delivered", || {
        states(&alice.history("Bob")).iter().all(|s| s == "delivered")
    });
}

#[test]
fn quota_full_is_a_typed_refusal_and_messages_stay_pending() {
    let mut relay = Relay::new("[mailbox]\nmax_messages_per_mailbox = 5\n");
    relay.start();
    let (alice, mut bob) = pair_pinning(&[&relay]);
    bob.stop();
    let events = alice.follow();
    for i in 0..8 {
        alice.json(&["send", "Bob", &format!("quota {i}"), "--json"]);
    }
    let refusal = events.wait_for(DEADLINE, "quota refusal", |e| e["type"] == "relay_refused");
    assert_eq!(refusal["code"], "quota_count", "{refusal}");
    assert_eq!(refusal["recipient"], bob.peer_id.as_str());
    wait_until(DEADLINE, "five held", || {
        states(&alice.history("Bob")).iter().filter(|s| *s == "sent").count() == 5
    });
    let history = alice.history("Bob");
    assert_eq!(states(&history)[5..], ["pending", "pending", "pending"], "the rest stays pending");

    // Bob drains (freeing the quota); the rest then gets through.
    bob.start(&[]);
    wait_until(DEADLINE, "all 8 at Bob", || bob.history("Alice").len() >= 8);
    assert_eq!(bob.history("Alice").len(), 8);
}

/// A stranger (a new identity of its own, no kith node) deposits `count` envelopes
/// of junk into `owner`'s mailbox at `relay` in one request; returns the results.
fn stranger_deposits(relay: &Relay, owner: &str, count: u8) -> Vec<DepositResult> {
    let owner: PeerId = owner.parse().unwrap();
    let junk: Vec<Vec<u8>> = (0..count).map(|n| vec![n; 100]).collect();
    let mut request = Some(MailboxRequest::deposit(&owner, junk));
    let responses = ask_relay(relay, mailbox::Codec::default(), mailbox::PROTOCOL, |_| request.take());
    match responses.into_iter().next() {
        Some(MailboxResponse::Deposited { results }) => results,
        other => panic!("deposit refused: {other:?}"),
    }
}

/// A stranger who fills the share of Bob's mailbox open to anyone (where contact
/// requests go) does not shut Bob's contacts out: Alice's mail carries the deposit
/// ticket Bob gave her and fills the rest.
#[test]
fn a_stranger_filling_a_mailbox_leaves_room_for_its_owners_contacts() {
    let mut relay = Relay::new("[mailbox]\nmax_messages_per_mailbox = 12\nopen_share_percent = 25\n");
    relay.start();
    let (alice, mut bob) = pair_pinning(&[&relay]);
    // Each has the other's ticket once nothing waits in their outboxes.
    wait_until(DEADLINE, "the contacts' tickets delivered", || {
        [&alice, &bob].iter().all(|p| p.json(&["status", "--json"])["outbox"] == 0)
    });
    bob.stop();

    // The stranger fills the open quarter (three of twelve) and is refused past it.
    let refused = DepositResult::Refused(Refusal::QuotaCount);
    let results = stranger_deposits(&relay, &bob.peer_id, 5);
    assert_eq!(results, [DepositResult::Stored, DepositResult::Stored, DepositResult::Stored, refused, refused]);

    // Alice's mail still finds room: all eight held by the relay, then drained.
    let ids = send_until_held(&alice, 8, "past the stranger");
    bob.start(&[]);
    wait_until(DEADLINE, "Bob has Alice's eight", || bob.history("Alice").len() >= 8);
    let got: Vec<String> = bob.history("Alice").iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, ids);
}

#[test]
fn members_only_relay_refuses_strangers_mailboxes_and_serves_members() {
    // Only Alice is a member: mail for Bob is refused, mail for Alice accepted.
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    let mut relay = Relay::new(&format!("[access]\npolicy = \"members\"\nmembers = [\"{}\"]\n", alice.peer_id));
    relay.start();
    for peer in [&alice, &bob] {
        peer.ok(&["relay", "add", &relay.addr()]);
    }
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);

    bob.stop();
    let events = alice.follow();
    alice.json(&["send", "Bob", "for a non-member", "--json"]);
    let refusal = events.wait_for(DEADLINE, "members-only refusal", |e| e["type"] == "relay_refused");
    assert_eq!(refusal["code"], "not_member", "{refusal}");
    assert_eq!(states(&alice.history("Bob")), ["pending"]);

    // The relay keeps serving its member.
    bob.start(&[]);
    alice.stop();
    bob.json(&["send", "Alice", "for the member", "--json"]);
    wait_until(DEADLINE, "held for Alice", || bob.history("Alice").iter().any(|m| m["text"] == "for the member" && m["state"] == "sent"));
    alice.start(&[]);
    wait_until(DEADLINE, "Alice drained it", || {
        alice.history("Bob").iter().any(|m| m["text"] == "for the member")
    });
}

#[test]
fn node_listening_only_through_a_relay_circuit_is_reachable() {
    let mut relay = Relay::new("");
    relay.start();
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.start(&[]);
    // Bob has no direct address at all: only a reservation on the relay.
    let circuit = format!("{}/p2p-circuit", relay.addr());
    bob.start_on(&[&circuit], &[]);
    assert!(bob.addrs.iter().all(|a| a.contains("/p2p-circuit")), "{:?}", bob.addrs);
    connect(&bob, &alice);
    for (from, to, text) in [(&alice, "Bob", "through the circuit"), (&bob, "Alice", "and back")] {
        let msg = from.json(&["send", to, text, "--wait", "delivered", "--json"]);
        assert_eq!(msg["state"], "delivered");
    }
    assert_eq!(texts(&bob.history("Alice")), ["through the circuit", "and back"]);
}

#[test]
fn relay_add_list_remove_reach_a_running_node() {
    let mut relay = Relay::new("");
    relay.start();
    let mut alice = Peer::init("Alice");
    alice.start(&[]);
    let addr = relay.addr();
    let listed = alice.json(&["relay", "add", &addr, "--json"]);
    assert_eq!(listed["relays"], serde_json::json!([addr]));
    // The running node switched at once: no restart needed.
    assert_eq!(alice.json(&["status", "--json"])["relays"], serde_json::json!([addr]));
    assert_eq!(alice.json(&["relay", "list", "--json"])["relays"], serde_json::json!([addr]));
    // New invites advertise it: whoever redeems one knows where to leave mail.
    let mut bob = Peer::init("Bob");
    bob.start(&[]);
    let contact = bob.json(&["add", &alice.invite(), "--name", "alice", "--json"]);
    assert_eq!(contact["relays"], serde_json::json!([addr]));

    // An address that does not name the relay is a usage error (exit 2).
    let bad = alice.run(&["relay", "add", "/ip4/127.0.0.1/tcp/4001"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    alice.ok(&["relay", "remove", &addr]);
    assert_eq!(alice.json(&["status", "--json"])["relays"], serde_json::json!([]));
    assert_eq!(alice.run(&["relay", "remove", &addr]).status.code(), Some(2));
}
