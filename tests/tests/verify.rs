//! Key verification (issue 18) between real daemons on 127.0.0.1: both sides see the
//! same safety number, a contact is marked verified, and when its end-to-end key
//! changes the user is warned (`key_changed` on `kith follow`) and, the contact being
//! verified, what is sent to it is held until it is verified again.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::home::Home;
use kith_p2p::identity::Identity;
use kith_p2p::keystore::{self, Protection};
use kith_tests::raw::identity_of;
use kith_tests::{connected_pair, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn both_sides_see_one_safety_number_and_a_verified_contact_whose_key_changes_is_held() {
    let (alice, mut bob) = connected_pair();
    let at_alice = alice.json(&["verify", "Bob", "--json"]);
    let at_bob = bob.json(&["verify", "Alice", "--json"]);
    let number = at_alice["safety_number"].as_str().unwrap().to_owned();
    assert_eq!(number.split(' ').count(), 24, "{number}");
    assert!(number.split(' ').all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
    assert_eq!(at_bob["safety_number"], number.as_str(), "the same number on both sides");
    assert!(at_alice["qr"].as_str().unwrap().contains('█'));
    assert_eq!(at_alice["verified_at"], Value::Null);
    let human = alice.ok(&["verify", "Bob"]);
    assert!(human.contains("not verified") && human.contains(&number[..17]), "{human}");

    alice.ok(&["verify", "Bob", "--mark"]);
    assert_eq!(alice.contact(&bob).unwrap()["verified"], true);

    // Bob's node comes back with the same identity but another end-to-end key (a
    // device restored with a new key, or someone holding only his signing key).
    let follow = alice.follow();
    bob.stop();
    let old = identity_of(&bob);
    let path = Home::at(bob.home()).keystore_path();
    std::fs::remove_file(&path).unwrap();
    keystore::create(&path, &Identity::from_secrets(old.ed25519_seed(), [7; 32]), Protection::Unencrypted).unwrap();
    bob.start(&[]);
    // Whatever reaches Alice first under the new key (his presence, his peer record,
    // this message) tells her.
    bob.ok(&["send", "Alice", "it is me, with a new key"]);
    let event = follow.wait_for(DEADLINE, "key_changed", |e| e["type"] == "key_changed");
    assert_eq!(event["contact"]["peer_id"], bob.peer_id.as_str(), "{event}");
    assert_eq!(event["contact"]["verified"], true, "{event}");
    let changed = alice.contact(&bob).unwrap();
    assert_eq!(changed["key_changed"], true, "{changed}");
    assert!(alice.ok(&["verify", "Bob"]).contains("held"), "the user is told why");

    // Held: Alice's message waits, not in flight, though Bob is connected (a message
    // that went out would be in flight at once, then gone from the queue).
    let held = alice.json(&["send", "Bob", "are you really you?", "--json"]);
    wait_until(DEADLINE, "Alice's node holds the message back", || {
        alice.queue_for(&bob).is_some_and(|q| {
            q["waiting"].as_u64() >= Some(1) && q["in_flight"] == false && q["next_try_in_ms"].as_u64() > Some(0)
        })
    });
    assert!(bob.history("Alice").iter().all(|m| m["id"] != held["id"]), "nothing reached Bob");
    assert_eq!(alice.history("Bob").iter().find(|m| m["id"] == held["id"]).unwrap()["state"], "pending");

    // Verified again: the held message goes out.
    alice.ok(&["verify", "Bob", "--mark"]);
    assert_eq!(alice.contact(&bob).unwrap()["key_changed"], Value::Null);
    wait_until(DEADLINE, "Bob gets the held message", || bob.history("Alice").iter().any(|m| m["id"] == held["id"]));
}
