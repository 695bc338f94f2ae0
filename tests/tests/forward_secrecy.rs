//! Forward secrecy and post-compromise security of 1:1 messages, shown the way an
//! attacker would try: ciphertexts captured from a relay's store, opened with the
//! recipient's keys and database taken later.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use kith_p2p::dm::{DmResult, RejectReason};
use kith_p2p::envelope::Opener;
use kith_p2p::home::Home;
use kith_p2p::identity::Identity;
use kith_p2p::keystore;
use kith_p2p::libp2p::PeerId;
use kith_p2p::payload::Payload;
use kith_p2p::ratchet::{RatchetError, Ratchets};
use kith_relay::mailbox::{MailboxLimits, MailboxStore};
use kith_storage::Store;
use kith_tests::raw::{RawPeer, identity_of};
use kith_tests::{Peer, Relay, connected_pair, pair_pinning, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// Sends `text` from `from` to `to` and waits until `from` sees it delivered.
fn delivered(from: &Peer, to: &str, text: &str) {
    let id = from.json(&["send", to, text, "--json"])["id"].as_str().unwrap().to_owned();
    wait_until(DEADLINE, &format!("{text:?} delivered"), || {
        from.history(to).iter().any(|m| m["id"] == id.as_str() && matches!(m["state"].as_str(), Some("delivered" | "read")))
    });
}

/// A round trip, each way delivered: both sides hold a session and have ratcheted.
fn round_trip(alice: &Peer, bob: &Peer, tag: &str) {
    delivered(alice, "Bob", &format!("ping {tag}"));
    delivered(bob, "Alice", &format!("pong {tag}"));
}

/// A running relay and Alice and Bob pinning it, after one round trip (so both hold a
/// session).
fn relayed_pair() -> (Relay, Peer, Peer) {
    let mut relay = Relay::new("");
    relay.start();
    let (alice, bob) = pair_pinning(&[&relay]);
    round_trip(&alice, &bob, "warm-up");
    (relay, alice, bob)
}

/// Removes every ratchet record of `peer` (stopped): its Olm account and sessions are
/// gone, its state key file stays.
fn wipe_ratchet_state(peer: &Peer) {
    let store = Store::open(&Home::at(peer.home()).db_path()).unwrap();
    let all: Vec<_> = store.ratchet().scan(b"").unwrap().into_iter().map(|(key, _)| (key, None)).collect();
    store.ratchet().write(&all).unwrap();
    store.flush().unwrap();
}

/// Sends `texts` while the recipient is offline and waits until the relays hold them.
fn sent_to_relays(alice: &Peer, texts: &[String]) {
    for text in texts {
        alice.ok(&["send", "Bob", text]);
    }
    wait_until(DEADLINE, "the relays hold every message", || {
        let history = alice.history("Bob");
        texts.iter().all(|t| history.iter().any(|m| m["text"] == t.as_str() && m["state"] != "pending"))
    });
}

/// Every envelope the relay holds for `owner`, read from its store as its operator
/// could (the relay stopped, then started again).
fn captured(relay: &mut Relay, owner: &Peer) -> Vec<Vec<u8>> {
    relay.stop();
    let owner: PeerId = owner.peer_id.parse().unwrap();
    let envelopes = {
        let store = MailboxStore::open(&relay.data_dir.join("mailbox"), MailboxLimits::default()).unwrap();
        store.list(&kith_p2p::mailbox::mailbox_id(&owner), None, 10_000, 64 << 20).unwrap()
    };
    relay.start();
    envelopes.into_iter().map(|e| e.envelope).collect()
}

/// The attacker's view of one captured envelope: opened with the recipient's static
/// key (the outer layer has no forward secrecy), it must hold only a ratchet
/// message; the ratchet state taken from the recipient's database must not open it.
fn attack(identity: &Identity, ratchets: &mut Ratchets, envelope: &[u8], secret: &str) -> Result<Vec<u8>, RatchetError> {
    let opened = Opener::new(identity, 0).open(envelope).unwrap();
    assert!(
        !kith_tests::contains_bytes(&opened.plaintext, secret.as_bytes()),
        "the outer layer alone shows the message"
    );
    match Payload::decode(&opened.plaintext).unwrap() {
        Payload::Ratcheted { kind, body } => ratchets.open(&opened.sender, kind, &body, kith_p2p::ops::now_ms()),
        other => panic!("a captured message was not ratcheted: {other:?}"),
    }
}

/// The ratchet state in a stopped peer's home, as an attacker holding its keystore
/// and database loads it, minus the digests that recognise copies (an attacker need
/// not honour them).
fn stolen_ratchets(home: &Path) -> (Identity, Store, Ratchets) {
    let home = Home::at(home);
    let identity = keystore::load(&home.keystore_path(), None).unwrap();
    let store = Store::open(&home.db_path()).unwrap();
    let digests: Vec<_> = store.ratchet().scan(b"d/").unwrap().into_iter().map(|(key, _)| (key, None)).collect();
    store.ratchet().write(&digests).unwrap();
    let ratchets = Ratchets::load(store.ratchet(), &identity, kith_p2p::ops::now_ms()).unwrap();
    (identity, store, ratchets)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn texts_of(history: &[Value]) -> Vec<String> {
    history.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_receivers_keys_and_database_taken_after_reading_open_none_of_the_captured_messages() {
    let (mut relay, alice, mut bob) = relayed_pair();

    bob.stop();
    let secret = "the ferry leaves at dawn";
    let texts: Vec<String> = (0..5).map(|i| format!("{secret} #{i}")).collect();
    sent_to_relays(&alice, &texts);
    let envelopes = captured(&mut relay, &bob);
    assert!(envelopes.len() >= texts.len(), "the relay holds {} envelopes", envelopes.len());

    bob.start(&[]);
    wait_until(DEADLINE, "Bob reads every message", || {
        let got = texts_of(&bob.history("Alice"));
        texts.iter().all(|t| got.contains(t))
    });
    bob.stop();

    let (identity, _store, mut ratchets) = stolen_ratchets(bob.home());
    for envelope in &envelopes {
        let tried = attack(&identity, &mut ratchets, envelope, secret);
        assert!(tried.is_err(), "a captured message opened with the keys and database taken after it was read");
        assert!(!matches!(tried, Err(RatchetError::Duplicate)), "refused as a copy, which proves nothing about the keys");
    }
}

#[test]
fn one_round_trip_locks_a_copied_state_out_of_later_messages() {
    let (mut relay, alice, mut bob) = relayed_pair();

    // The attacker copies Bob's whole home: keystore, database, ratchet state.
    bob.stop();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(bob.home(), copy.path());
    bob.start(&[]);

    round_trip(&alice, &bob, "after the copy");
    bob.stop();
    let secret = "meet me behind the library";
    sent_to_relays(&alice, &[secret.to_owned()]);
    let envelopes = captured(&mut relay, &bob);
    assert!(!envelopes.is_empty());

    let (identity, _store, mut ratchets) = stolen_ratchets(copy.path());
    for envelope in &envelopes {
        let tried = attack(&identity, &mut ratchets, envelope, secret);
        assert!(tried.is_err(), "the copied state opened a message sent after a round trip");
    }
    bob.start(&[]);
    wait_until(DEADLINE, "Bob gets it", || texts_of(&bob.history("Alice")).iter().any(|t| t == secret));
}

#[test]
fn fifty_messages_through_two_relays_and_directly_at_once_open_exactly_once() {
    let mut relays = [Relay::new(""), Relay::new("")];
    for r in &mut relays {
        r.start();
    }
    let (alice, mut bob) = pair_pinning(&[&relays[0], &relays[1]]);
    round_trip(&alice, &bob, "warm-up");

    // Half while Bob is away: deposited to both relays (copies of one envelope).
    bob.stop();
    let texts: Vec<String> = (0..50).map(|i| format!("message {i:02}")).collect();
    sent_to_relays(&alice, &texts[..25]);
    // The rest while he comes back and drains both relays: direct and relayed mail
    // reach his ratchet interleaved.
    bob.start(&[]);
    for text in &texts[25..] {
        alice.ok(&["send", "Bob", text]);
    }
    wait_until(DEADLINE, "Bob has all fifty", || {
        let got = texts_of(&bob.history("Alice"));
        texts.iter().all(|t| got.contains(t))
    });
    let got = texts_of(&bob.history("Alice"));
    for text in &texts {
        assert_eq!(got.iter().filter(|t| *t == text).count(), 1, "{text:?} exactly once");
    }
    wait_until(DEADLINE, "Alice sees all fifty delivered", || {
        alice.history("Bob").iter().filter(|m| texts.contains(&m["text"].as_str().unwrap().to_owned())).all(|m| m["state"] == "delivered")
    });
}

#[test]
fn a_contacts_payloads_sealed_without_the_ratchet_are_refused_once_its_grace_is_over() {
    let mut relay = Relay::new("");
    relay.start();
    let (alice, mut bob) = pair_pinning(&[&relay]);
    // Before Alice's first ratcheted message, the old way is open (migration: mail
    // sealed before the upgrade still opens).
    // A fresh client per send (Bob restarts in between), sealing as Alice.
    let raw = || RawPeer::new(identity_of(&alice));
    let legacy = |n: u8| Payload::Text {
        id: kith_storage::MessageId([n; 16]),
        lamport: 1_000 + u64::from(n),
        sent_at_ms: kith_p2p::ops::now_ms(),
        text: format!("sealed the old way {n}"),
        file: None,
        link: None,
    };
    assert_eq!(raw().send(&bob, &[legacy(1)]), vec![DmResult::Stored]);

    // Bob's grace is zero: after Alice's first ratcheted message, the old way closes.
    bob.stop();
    bob.env.push(("KITH_RATCHET_LEGACY_GRACE_MS".into(), "0".into()));
    bob.start(&[]);
    round_trip(&alice, &bob, "ratcheted");
    assert_eq!(raw().send(&bob, &[legacy(2)]), vec![DmResult::Rejected(RejectReason::Unsupported)]);
    let got = texts_of(&bob.history("Alice"));
    assert!(got.contains(&"sealed the old way 1".to_owned()));
    assert!(!got.contains(&"sealed the old way 2".to_owned()));
    // What needs no ratchet (presence, typing) still passes.
    assert_eq!(raw().send(&bob, &[Payload::Presence { online: true, ttl_s: 60 }]), vec![DmResult::Stored]);
}

#[test]
fn a_node_that_lost_its_ratchet_state_gets_new_sessions_and_nothing_sent_is_lost() {
    let (_relay, alice, mut bob) = relayed_pair();

    // Bob's ratchet state is gone (a restore from an old copy, a wiped tree): same
    // identity, new Olm account, no sessions.
    bob.stop();
    wipe_ratchet_state(&bob);
    bob.start(&[]);

    // Alice's next message is sealed in a session Bob no longer has: he offers new
    // keys, she starts again, and the message arrives.
    delivered(&alice, "Bob", "after the loss");
    assert!(texts_of(&bob.history("Alice")).contains(&"after the loss".to_owned()));
    delivered(&bob, "Alice", "and back");
    // A new ratchet identity is a key change, shown to Alice, never silent.
    let contact = alice.contact(&bob).unwrap();
    assert_eq!(contact["key_changed"], true, "{contact}");
}

#[test]
fn mail_sealed_in_a_session_its_receiver_lost_is_sent_again_once_and_the_relay_lets_go_of_it() {
    let (mut relay, alice, mut bob) = relayed_pair();
    bob.stop();
    let texts: Vec<String> = (0..3).map(|i| format!("waiting in the relay {i}")).collect();
    sent_to_relays(&alice, &texts);
    assert_eq!(captured(&mut relay, &bob).len(), 3, "the relay holds them");

    // Bob comes back without his ratchet state: what waits for him was sealed in
    // sessions he no longer has.
    comes_back_without_ratchet_state(&mut relay, &alice, &mut bob, &texts);
}

/// `bob` (stopped) starts again without his ratchet state while `relay` holds
/// `texts` from `alice` that no longer open: his reset tells her, she sends again
/// what was not known delivered, each arrives once, and the relay drops the dead
/// copies (refused for good) instead of bringing them, and a reset, back at every
/// drain.
fn comes_back_without_ratchet_state(relay: &mut Relay, alice: &Peer, bob: &mut Peer, texts: &[String]) {
    wipe_ratchet_state(bob);
    bob.env.push(("KITH_DRAIN_INTERVAL_MS".into(), "300".into()));
    bob.start(&[]);
    wait_until(DEADLINE, "every message reaches Bob after all", || {
        let got = texts_of(&bob.history("Alice"));
        texts.iter().all(|t| got.contains(t))
    });
    wait_until(DEADLINE, "Alice sees them delivered", || {
        let history = alice.history("Bob");
        texts.iter().all(|t| history.iter().any(|m| m["text"] == t.as_str() && m["state"] == "delivered"))
    });
    wait_until(DEADLINE, "the relay let go of the mail that never opens", || captured(relay, bob).is_empty());
    let got = texts_of(&bob.history("Alice"));
    for t in texts {
        assert_eq!(got.iter().filter(|g| *g == t).count(), 1, "{t:?} once: {got:?}");
    }
}

#[test]
fn pre_key_mail_naming_a_one_time_key_its_receiver_lost_is_sent_again_once_and_the_relay_lets_go_of_it() {
    let mut relay = Relay::new("");
    relay.start();
    let (alice, mut bob) = pair_pinning(&[&relay]);
    // Bob goes before anything is sent: Alice's first messages start a session on
    // one of his one-time keys, as pre-key messages.
    bob.stop();
    let texts: Vec<String> = (0..3).map(|i| format!("first words {i}")).collect();
    sent_to_relays(&alice, &texts);
    let mail = captured(&mut relay, &bob);
    assert_eq!(mail.len(), 3, "the relay holds them");
    let identity = identity_of(&bob);
    for e in &mail {
        let payload = Payload::decode(&Opener::new(&identity, 0).open(e).unwrap().plaintext).unwrap();
        assert!(
            matches!(payload, Payload::Ratcheted { kind: kith_p2p::ratchet::PRE_KEY_MESSAGE, .. }),
            "pre-key messages: {payload:?}"
        );
    }

    // Bob comes back without his ratchet state: the one-time key they name is gone,
    // so they never open.
    comes_back_without_ratchet_state(&mut relay, &alice, &mut bob, &texts);
}

#[test]
fn the_first_message_after_accepting_a_contact_request_is_already_ratcheted() {
    let mut relay = Relay::new("");
    relay.start();
    let (alice, mut bob) = kith_tests::strangers_pinning(&[&relay]);
    // Alice's contact card has no token: Bob's add is a request she must accept.
    let card = alice.json(&["id", "--json"])["invite"].as_str().unwrap().to_owned();
    bob.ok(&["add", &card, "--name", "Alice"]);
    wait_until(DEADLINE, "Alice has Bob's request", || {
        alice.json(&["requests", "--json"]).as_array().unwrap().iter().any(|r| r["contact"]["peer_id"] == bob.peer_id.as_str())
    });
    wait_until(DEADLINE, "Bob's request settled", || bob.queue_for(&alice).is_none());

    // Bob goes away; Alice accepts and writes at once. Nothing has come from Bob since
    // his request, whose keys start the session.
    bob.stop();
    let requester = alice.json(&["requests", "--json"])[0]["contact"]["peer_id"].as_str().unwrap().to_owned();
    alice.ok(&["accept", &requester]);
    let secret = "the first words after accepting";
    alice.ok(&["send", &requester, secret]);
    wait_until(DEADLINE, "the relay holds it", || {
        alice.history(&requester).iter().any(|m| m["text"] == secret && m["state"] == "sent")
    });
    let mail = captured(&mut relay, &bob);
    let identity = identity_of(&bob);
    let inner: Vec<Payload> = mail
        .iter()
        .map(|e| Payload::decode(&Opener::new(&identity, 0).open(e).unwrap().plaintext).unwrap())
        .collect();
    assert!(inner.iter().any(|p| matches!(p, Payload::Ratcheted { .. })), "{inner:?}");
    assert!(!inner.iter().any(|p| matches!(p, Payload::Text { .. })), "no text went the old way: {inner:?}");
    for e in &mail {
        let opened = Opener::new(&identity, 0).open(e).unwrap();
        assert!(!kith_tests::contains_bytes(&opened.plaintext, secret.as_bytes()));
    }
    bob.start(&[]);
    wait_until(DEADLINE, "Bob reads it", || texts_of(&bob.history("Alice")).contains(&secret.to_owned()));
}

#[test]
fn a_running_node_replaces_its_ratchet_state_key_after_writing_state() {
    let (alice, mut bob) = connected_pair();
    bob.stop();
    bob.env.push(("KITH_RATCHET_STATE_ROLL_MS".into(), "200".into()));
    bob.start(&[]);
    let key_file = Home::at(bob.home()).db_path().join(kith_storage::RATCHET_KEY_FILE);
    let read = || std::fs::read(&key_file).unwrap();
    round_trip(&alice, &bob, "warm-up");
    // A message written into Bob's sessions after this read: within the interval, a
    // roll rewrites the key file (sealed anew, so its bytes change) while he runs.
    let before = read();
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&key_file).unwrap());
    let file_before = inode();
    delivered(&alice, "Bob", "state written");
    wait_until(DEADLINE, "Bob's node rolls its ratchet state key", || read() != before);
    round_trip(&alice, &bob, "after the roll");
    // A replaced file would leave the old key's blocks behind it on disk.
    assert_eq!(inode(), file_before, "the same file, its slots overwritten in place");
}
