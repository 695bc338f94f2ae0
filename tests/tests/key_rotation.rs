//! Rotating one's end-to-end key (issue 18) between real daemons on 127.0.0.1: the
//! new key is announced and used, contacts are warned, it survives a restart, mail
//! sealed to the old key still opens, and nobody holding the old key can make a
//! contact take it back.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::dm::{DmResult, RejectReason};
use kith_p2p::keyring::KeyRing;
use kith_p2p::home::Home;
use kith_p2p::payload::Payload;
use kith_tests::raw::{RawPeer, identity_of};
use kith_relay::mailbox::{MailboxLimits, MailboxStore};
use kith_tests::{Peer, Relay, connected_pair, pair_pinning, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// A text payload as the real client sends it.
fn text(words: &str) -> Payload {
    Payload::Text {
        id: kith_p2p::ops::new_message_id(),
        lamport: 1,
        sent_at_ms: kith_p2p::ops::now_ms(),
        text: words.into(),
        file: None,
        link: None,
    }
}

fn delivered(from: &Peer, to: &Peer, to_name: &str, words: &str) {
    let sent = from.json(&["send", to_name, words, "--json"]);
    let from_name = if to_name == "Bob" { "Alice" } else { "Bob" };
    wait_until(DEADLINE, words, || to.history(from_name).iter().any(|m| m["id"] == sent["id"]));
}

#[test]
fn a_rotated_key_is_announced_and_used_survives_a_restart_and_mail_to_the_old_key_still_opens() {
    let (mut alice, bob) = connected_pair();
    delivered(&alice, &bob, "Bob", "before the rotation");
    let before = alice.json(&["keys", "show", "--json"]);
    let keystore = identity_of(&alice);
    let old_key = bs58::encode(keystore.e2e_public()).into_string();
    assert_eq!(before["e2e_public"], old_key.as_str(), "the keystore's key, taken into use: {before}");
    assert!(before["version"].as_u64().unwrap() > 0, "versioned: {before}");
    assert!(before["expires_ms"].as_u64().unwrap() > kith_p2p::ops::now_ms(), "{before}");

    let follow = bob.follow();
    let after = alice.json(&["keys", "rotate", "--json"]);
    let new_key = after["e2e_public"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    assert!(after["version"].as_u64() > before["version"].as_u64(), "{after}");
    assert_eq!(after["retired"][0]["e2e_public"], old_key.as_str(), "{after}");
    assert_eq!(alice.json(&["id", "--json"])["e2e_public"], new_key.as_str(), "`kith id` shows the key in use");

    // Bob is told without Alice writing to him, and warned.
    let event = follow.wait_for(DEADLINE, "key_changed", |e| e["type"] == "key_changed");
    assert_eq!(event["contact"]["peer_id"], alice.peer_id.as_str(), "{event}");
    assert_eq!(bob.contact(&alice).unwrap()["key_changed"], true);
    delivered(&bob, &alice, "Alice", "to the new key");
    delivered(&alice, &bob, "Bob", "from the new key");

    // Someone who still has the old key (a message sealed before the news arrived, or
    // waiting in a relay): it opens. A stranger's text is a contact request.
    let mut stranger = RawPeer::new(kith_p2p::identity::Identity::generate());
    assert_eq!(stranger.send(&alice, &[text("sealed to your old key")]), vec![DmResult::Stored]);
    wait_until(DEADLINE, "the stranger's request", || {
        alice.json(&["requests", "--json"]).as_array().unwrap().iter().any(|r| r["contact"]["peer_id"] == stranger.identity.peer_id().to_string().as_str())
    });

    // A restart keeps the new key in use and the old one for its window.
    alice.stop();
    alice.start(&[]);
    let restarted = alice.json(&["keys", "show", "--json"]);
    assert_eq!(restarted["e2e_public"], new_key.as_str(), "{restarted}");
    assert_eq!(restarted["version"], after["version"]);
    assert_eq!(restarted["retired"][0]["e2e_public"], old_key.as_str());
    delivered(&bob, &alice, "Alice", "after the restart");
    let ring = std::fs::read(Home::at(alice.home()).key_ring_path()).unwrap();
    assert!(!kith_tests::contains_bytes(&ring, &keystore.x25519_secret()), "the ring is sealed");
}

#[test]
fn a_contacts_old_key_and_binding_replayed_after_a_rotation_are_refused() {
    let (alice, bob) = connected_pair();
    // What Alice's node signed for its first key: someone who copied that key (and
    // recorded its binding from any envelope or the DHT) can reproduce exactly this.
    let keystore = identity_of(&alice);
    let ring = KeyRing::read(&Home::at(alice.home()).key_ring_path(), &keystore).unwrap().unwrap();
    let old_alice = ring.identity(&keystore);
    assert_eq!(old_alice.e2e_public(), keystore.e2e_public());
    delivered(&alice, &bob, "Bob", "hello");

    alice.ok(&["keys", "rotate"]);
    wait_until(DEADLINE, "Bob learns Alice's new key", || bob.contact(&alice).unwrap()["key_changed"] == true);
    bob.ok(&["verify", "Alice", "--mark"]);

    let mut impostor = RawPeer::new(old_alice);
    assert_eq!(
        impostor.send(&bob, &[text("it's me, on my old key")]),
        vec![DmResult::Rejected(RejectReason::Forged)],
        "an older key than the one Bob holds is not taken back"
    );
    let contact = bob.contact(&alice).unwrap();
    assert_eq!(contact["key_changed"], Value::Null, "nothing changed at Bob: {contact}");
    assert!(bob.history("Alice").iter().all(|m| m["text"] != "it's me, on my old key"));
    delivered(&alice, &bob, "Bob", "the real Alice, new key");
}

#[test]
fn mail_a_contact_sealed_before_it_rotated_still_opens_after_its_new_key_arrived() {
    let mut relay = Relay::new("");
    relay.start();
    let (alice, mut bob) = pair_pinning(&[&relay]);
    delivered(&alice, &bob, "Bob", "warm-up");
    delivered(&bob, &alice, "Alice", "warm-up back");

    bob.stop();
    let sent = alice.json(&["send", "Bob", "sealed before the rotation", "--json"]);
    wait_until(DEADLINE, "the relay holds it", || {
        alice.history("Bob").iter().any(|m| m["id"] == sent["id"] && m["state"] == "sent")
    });
    // Taken out of the relay, as if it were still on a slower path (another relay).
    relay.stop();
    let envelope = {
        let store = MailboxStore::open(&relay.data_dir.join("mailbox"), MailboxLimits::default()).unwrap();
        let mailbox = kith_p2p::mailbox::mailbox_id(&bob.peer_id.parse().unwrap());
        let items = store.list(&mailbox, None, 100, 64 << 20).unwrap();
        assert_eq!(items.len(), 1);
        store.ack(&mailbox, &[items[0].seq]).unwrap();
        store.flush().unwrap();
        items[0].envelope.clone()
    };
    relay.start();

    // Alice rotates; Bob learns the new key before the old envelope reaches him.
    alice.ok(&["keys", "rotate"]);
    bob.start(&[]);
    wait_until(DEADLINE, "Bob holds Alice's new key", || bob.contact(&alice).unwrap()["key_changed"] == true);

    // The envelope is under her older key, but its ratchet message proves her.
    let mut courier = RawPeer::new(kith_p2p::identity::Identity::generate());
    assert_eq!(courier.send_envelopes(&bob, vec![envelope]), vec![DmResult::Stored]);
    wait_until(DEADLINE, "Bob has the message", || bob.history("Alice").iter().any(|m| m["id"] == sent["id"]));
}
