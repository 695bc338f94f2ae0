//! Profiles (issue 17) between real daemons on 127.0.0.1: a name, status line and
//! avatar reach a contact, also one that was offline when they changed; the
//! contact's alias still wins; the name survives a restart; and what a hostile
//! client sends is judged by the receiver (another's signature refused, an older
//! version ignored).

#![allow(clippy::unwrap_used)]

use kith_p2p::dm::DmResult;
use kith_p2p::identity::Identity;
use kith_p2p::payload::Payload;
use kith_p2p::profile::Profile;
use kith_tests::raw::{RawPeer, identity_of};
use kith_tests::{Peer, connected_pair, wait_until};
use serde_json::Value;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn profile_of(peer: &Peer, contact: &str) -> Value {
    peer.json(&["profile", "show", contact, "--json"])
}

/// Waits until `peer` holds a profile of `contact` for which `ready` holds.
fn wait_profile(peer: &Peer, contact: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(DEADLINE, &format!("{}: {what}", peer.name), || {
        last = profile_of(peer, contact);
        ready(&last)
    });
    last
}

fn label_of(peer: &Peer, contact: &Peer) -> (Value, Value) {
    let c = peer.contact(contact).unwrap();
    (c["alias"].clone(), c["display_name"].clone())
}

#[test]
fn a_profile_reaches_a_contact_also_one_that_was_offline_and_their_alias_still_wins() {
    let (mut alice, mut bob) = connected_pair();
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("me.png");
    image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])).save(&picture).unwrap();

    // A first profile that sets only a status keeps the name Bob went by.
    bob.ok(&["profile", "set", "--status", "gardening"]);
    let bobs = wait_profile(&alice, "Bob", "Bob's status", |p| p["status"] == "gardening");
    assert_eq!(bobs["name"], "Bob", "{bobs}");

    let set = alice.json(&[
        "profile", "set", "--name", "Alice Liddell", "--status", "down the rabbit hole", "--avatar",
        picture.to_str().unwrap(), "--json",
    ]);
    assert_eq!(set["name"], "Alice Liddell", "{set}");
    assert_eq!(set["avatar"]["media_type"], "image/png", "{set}");

    let seen = wait_profile(&bob, "Alice", "Alice's profile", |p| p["status"] == "down the rabbit hole");
    assert_eq!(seen["name"], "Alice Liddell", "{seen}");
    assert_eq!(seen["alias"], "Alice", "Bob's own name for her is kept: {seen}");
    let saved = dir.path().join("seen.png");
    bob.ok(&["profile", "show", "Alice", "--avatar-out", saved.to_str().unwrap()]);
    let avatar = image::open(&saved).unwrap();
    assert_eq!((avatar.width(), avatar.height()), (128, 128), "the middle square, made small");
    // The alias wins wherever a name is shown; the chosen name is kept beside it.
    assert_eq!(label_of(&bob, &alice), (Value::from("Alice"), Value::from("Alice Liddell")));
    let human = bob.ok(&["profile", "show", "Alice"]);
    assert!(human.contains("down the rabbit hole") && human.contains("shown instead of their name"), "{human}");

    // Bob is offline while Alice changes her status and drops her picture.
    bob.stop();
    alice.ok(&["profile", "set", "--status", "late for tea", "--no-avatar"]);
    bob.start(&[]);
    let later = wait_profile(&bob, "Alice", "the change made while he was away", |p| p["status"] == "late for tea");
    assert_eq!(later["avatar"], Value::Null, "{later}");
    assert_eq!(later["name"], "Alice Liddell", "what she left out stayed: {later}");

    // Her own name survives a restart of her node.
    alice.stop();
    alice.start(&[]);
    let mine = alice.json(&["profile", "show", "--json"]);
    assert_eq!(mine["name"], "Alice Liddell", "{mine}");
    assert_eq!(mine["status"], "late for tea", "{mine}");
}

#[test]
fn a_profile_signed_by_someone_else_is_refused_and_an_older_one_is_ignored() {
    let (alice, bob) = connected_pair();
    let bob_keys = identity_of(&bob);
    let mut raw = RawPeer::new(bob_keys.clone());
    let signed = |by: &Identity, name: &str, version: u64| {
        let profile = Profile { name: Some(name.into()), status: None, avatar: None, version };
        Payload::Profile { signed: profile.sign(by).unwrap().encode().unwrap() }
    };
    let results = raw.send(&alice, &[signed(&bob_keys, "Bobby", 100)]);
    assert_eq!(results, [DmResult::Stored]);
    assert_eq!(profile_of(&alice, &bob.peer_id)["name"], "Bobby");
    // With no alias, the name Alice sees for Bob is the one his profile chose.
    assert_eq!(label_of(&alice, &bob).1, "Bobby");

    let results = raw.send(&alice, &[signed(&bob_keys, "Robert", 50)]);
    assert_eq!(results, [DmResult::Stored], "an old profile is no error");
    assert_eq!(profile_of(&alice, &bob.peer_id)["name"], "Bobby", "but it changes nothing");

    let mallory = Identity::generate();
    let results = raw.send(&alice, &[signed(&mallory, "Mallory's Bob", 200)]);
    assert!(matches!(results[0], DmResult::Rejected(_)), "{results:?}");
    assert_eq!(profile_of(&alice, &bob.peer_id)["name"], "Bobby");
}
