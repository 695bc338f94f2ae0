use kith_storage::Store;

use super::*;

const NOW: u64 = 1_800_000_000_000;

/// One node's side: an identity, a real store in a temp dir, its ratchets.
struct Side {
    identity: Identity,
    peer: PeerId,
    store: Store,
    ratchets: Ratchets,
    _dir: tempfile::TempDir,
}

impl Side {
    fn new() -> Side {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let identity = Identity::generate();
        let ratchets = Ratchets::load(store.ratchet(), &identity, NOW).unwrap();
        Side { peer: identity.peer_id(), identity, store, ratchets, _dir: dir }
    }

    /// `self` learns `other`'s offer.
    fn learns_from(&mut self, other: &mut Side, reset: bool) -> Learned {
        let offer = other.ratchets.offer(&other.identity, &self.peer, reset).unwrap();
        self.ratchets.learn(&other.peer, &offer).unwrap()
    }

    fn seal(&mut self, to: &Side, text: &str) -> (u8, Vec<u8>) {
        let sealed = self.ratchets.seal(&to.peer, text.as_bytes()).unwrap().expect("ready to seal");
        self.ratchets.persist(NOW).unwrap();
        sealed
    }

    fn open(&mut self, from: &Side, (kind, body): &(u8, Vec<u8>)) -> Result<String, RatchetError> {
        let opened = self.ratchets.open(&from.peer, *kind, body, NOW)?;
        self.ratchets.record(copy_digest(*kind, body));
        self.ratchets.persist(NOW).unwrap();
        Ok(String::from_utf8(opened).unwrap())
    }

    /// What an attacker who takes this node's keys and database holds: the ratchet
    /// records copied into another store, minus the copy digests (an attacker need
    /// not honour them).
    fn stolen(&self) -> (Store, Ratchets, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let copied: Vec<RatchetChange> =
            self.store.ratchet().scan(b"").unwrap().into_iter().filter(|(key, _)| !key.starts_with(SEEN_PREFIX)).map(|(k, v)| (k, Some(v))).collect();
        store.ratchet().write(&copied).unwrap();
        let ratchets = Ratchets::load(store.ratchet(), &self.identity, NOW).unwrap();
        (store, ratchets, dir)
    }
}

/// Alice holds Bob's offer (the usual start: Bob accepted her and offered keys).
fn pair() -> (Side, Side) {
    let (mut alice, mut bob) = (Side::new(), Side::new());
    assert_eq!(alice.learns_from(&mut bob, false), Learned::Prekey);
    (alice, bob)
}

#[test]
fn nothing_is_sealed_without_keys_and_a_first_message_needs_no_round_trip() {
    let (mut alice, mut bob) = (Side::new(), Side::new());
    assert!(alice.ratchets.seal(&bob.peer, b"hi").unwrap().is_none(), "no session and no offer: nothing to seal with");
    alice.learns_from(&mut bob, false);
    let first = alice.seal(&bob, "hello");
    assert_eq!(first.0, PRE_KEY_MESSAGE);
    assert_eq!(bob.open(&alice, &first).unwrap(), "hello");
    let reply = bob.seal(&alice, "hi back");
    assert_eq!(reply.0, NORMAL_MESSAGE, "bob's session is established by alice's first message");
    assert_eq!(alice.open(&bob, &reply).unwrap(), "hi back");
    let next = alice.seal(&bob, "again");
    assert_eq!(next.0, NORMAL_MESSAGE);
    assert_eq!(bob.open(&alice, &next).unwrap(), "again");
}

#[test]
fn a_copy_is_recognised_also_after_a_restart() {
    let (mut alice, mut bob) = pair();
    let first = alice.seal(&bob, "one");
    let second = alice.seal(&bob, "two");
    assert_eq!(bob.open(&alice, &first).unwrap(), "one");
    assert!(matches!(bob.open(&alice, &first), Err(RatchetError::Duplicate)));
    assert_eq!(bob.open(&alice, &second).unwrap(), "two");
    assert!(matches!(bob.open(&alice, &second), Err(RatchetError::Duplicate)));

    // Copies are recognised after a restart too (the digests are stored).
    let reloaded = Ratchets::load(bob.store.ratchet(), &bob.identity, NOW).unwrap();
    bob.ratchets = reloaded;
    assert!(matches!(bob.open(&alice, &first), Err(RatchetError::Duplicate)));

    // Another contact's session is its own: Bob's keys for it work beside Alice's.
    let mut mallory = Side::new();
    mallory.learns_from(&mut bob, false);
    let from_mallory = mallory.seal(&bob, "hi");
    assert_eq!(bob.open(&mallory, &from_mallory).unwrap(), "hi");
}

#[test]
fn forward_secrecy_the_receivers_keys_and_database_after_reading_open_none_of_the_captured_messages() {
    let (mut alice, mut bob) = pair();
    // A conversation with round trips, as people have them.
    let mut captured = Vec::new();
    for round in 0..5 {
        for i in 0..4 {
            let sealed = alice.seal(&bob, &format!("secret {round}.{i}"));
            captured.push(sealed.clone());
            assert_eq!(bob.open(&alice, &sealed).unwrap(), format!("secret {round}.{i}"));
        }
        let reply = bob.seal(&alice, "ok");
        alice.open(&bob, &reply).unwrap();
    }
    let (_store, mut attacker, _dir) = bob.stolen();
    for sealed in &captured {
        let tried = attacker.open(&alice.peer, sealed.0, &sealed.1, NOW);
        assert!(
            matches!(tried, Err(RatchetError::KeyGone(_) | RatchetError::NoSession | RatchetError::UnknownPrekey)),
            "a captured message opened with the state taken after it was read: {tried:?}"
        );
    }
}

#[test]
fn post_compromise_security_one_round_trip_locks_out_a_copied_state() {
    let (mut alice, mut bob) = pair();
    let hello = alice.seal(&bob, "hello");
    bob.open(&alice, &hello).unwrap();
    let (_store, mut attacker, _dir) = bob.stolen();

    // Before the round trip the copy still reads what Alice sends (nothing heals
    // without new randomness from Bob): shown, so the test below means something.
    let before = alice.seal(&bob, "before");
    assert_eq!(String::from_utf8(attacker.open(&alice.peer, before.0, &before.1, NOW).unwrap()).unwrap(), "before");
    bob.open(&alice, &before).unwrap();

    let reply = bob.seal(&alice, "reply");
    alice.open(&bob, &reply).unwrap();
    let after = alice.seal(&bob, "after the round trip");
    assert_eq!(bob.open(&alice, &after).unwrap(), "after the round trip");
    let tried = attacker.open(&alice.peer, after.0, &after.1, NOW);
    assert!(tried.is_err(), "the copied state opened a message sent after a round trip");
}

#[test]
fn out_of_order_messages_open_once_each_and_one_past_the_skip_bound_is_refused() {
    let (mut alice, mut bob) = pair();
    let first = alice.seal(&bob, "start");
    bob.open(&alice, &first).unwrap();
    let reply = bob.seal(&alice, "go");
    alice.open(&bob, &reply).unwrap();

    let sealed: Vec<_> = (0..40).map(|i| alice.seal(&bob, &format!("m{i}"))).collect();
    // A fixed shuffle: reversed halves, interleaved.
    let mut order: Vec<usize> = (0..40).rev().step_by(2).collect();
    order.extend((0..40).step_by(2));
    let mut opened = Vec::new();
    for &i in &order {
        opened.push(bob.open(&alice, &sealed[i]).unwrap());
        assert!(matches!(bob.open(&alice, &sealed[i]), Err(RatchetError::Duplicate)));
    }
    opened.sort_by_key(|t| t[1..].parse::<u32>().unwrap());
    assert_eq!(opened, (0..40).map(|i| format!("m{i}")).collect::<Vec<_>>());

    // Past the bound of skipped keys: a typed refusal, and the session still works.
    let skipped: Vec<_> = (0..2100).map(|i| alice.seal(&bob, &format!("s{i}"))).collect();
    let last = skipped.last().unwrap();
    assert!(matches!(bob.open(&alice, last), Err(RatchetError::TooFarAhead(..))), "a message past the skip bound must be refused");
    assert_eq!(bob.open(&alice, &skipped[10]).unwrap(), "s10");
}

#[test]
fn both_sides_starting_at_once_converge_and_every_message_opens() {
    let (mut alice, mut bob) = (Side::new(), Side::new());
    alice.learns_from(&mut bob, false);
    bob.learns_from(&mut alice, false);
    let from_alice = alice.seal(&bob, "a0");
    let from_bob = bob.seal(&alice, "b0");
    assert_eq!((from_alice.0, from_bob.0), (PRE_KEY_MESSAGE, PRE_KEY_MESSAGE));
    assert_eq!(bob.open(&alice, &from_alice).unwrap(), "a0");
    assert_eq!(alice.open(&bob, &from_bob).unwrap(), "b0");
    for round in 1..6 {
        let a = alice.seal(&bob, &format!("a{round}"));
        let b = bob.seal(&alice, &format!("b{round}"));
        assert_eq!(bob.open(&alice, &a).unwrap(), format!("a{round}"));
        assert_eq!(alice.open(&bob, &b).unwrap(), format!("b{round}"));
    }
    assert!(alice.ratchets.peers[&bob.peer].sessions.len() <= 2);
}

#[test]
fn a_reset_device_offers_new_keys_and_the_conversation_goes_on() {
    let (mut alice, mut bob) = pair();
    let m = alice.seal(&bob, "before");
    bob.open(&alice, &m).unwrap();
    let reply = bob.seal(&alice, "reply");
    alice.open(&bob, &reply).unwrap();

    // Bob's device is restored without its ratchet state: same identity, new account.
    let mut restored = Side::new();
    restored.identity = Identity::from_secrets(bob.identity.ed25519_seed(), bob.identity.x25519_secret());
    restored.peer = bob.peer;
    restored.ratchets = Ratchets::load(restored.store.ratchet(), &restored.identity, NOW).unwrap();
    let lost = alice.seal(&restored, "lost");
    assert!(matches!(restored.open(&alice, &lost), Err(RatchetError::NoSession)));

    assert_eq!(alice.learns_from(&mut restored, true), Learned::IdentityChanged, "a new account is a new identity key");
    let again = alice.seal(&restored, "lost, sent again");
    assert_eq!(again.0, PRE_KEY_MESSAGE);
    assert_eq!(restored.open(&alice, &again).unwrap(), "lost, sent again");
}

#[test]
fn offers_are_signed_and_a_session_is_kept_against_an_offer_without_reset() {
    let (mut alice, mut bob) = pair();
    let mallory = Side::new();
    let mut forged = bob.ratchets.offer(&bob.identity, &alice.peer, true).unwrap();
    forged.signature = mallory.identity.sign(&offer_signed(&forged));
    assert!(matches!(alice.ratchets.learn(&bob.peer, &forged), Err(RatchetError::Forged)));
    // Every field is signed: Bob's own offer with another one-time key, or turned
    // into a reset, does not verify.
    let genuine = bob.ratchets.offer(&bob.identity, &alice.peer, false).unwrap();
    let swapped = Offer { one_time: [9; 32], ..genuine.clone() };
    assert!(matches!(alice.ratchets.learn(&bob.peer, &swapped), Err(RatchetError::Forged)));
    let made_reset = Offer { reset: true, ..genuine.clone() };
    assert!(matches!(alice.ratchets.learn(&bob.peer, &made_reset), Err(RatchetError::Forged)));

    let m = alice.seal(&bob, "hi");
    bob.open(&alice, &m).unwrap();
    assert_eq!(alice.learns_from(&mut bob, false), Learned::Ignored, "a running session is not replaced without a reset");

    // A pre-key message under another identity key than the pinned one is refused.
    let mut impostor = Side::new();
    impostor.peer = alice.peer;
    impostor.learns_from(&mut bob, false);
    let fake = impostor.seal(&bob, "it's me, alice");
    assert!(matches!(bob.open(&alice, &fake), Err(RatchetError::IdentityMismatch)));
}

#[test]
fn state_survives_a_restart_and_the_legacy_path_closes_after_the_grace() {
    let (mut alice, mut bob) = pair();
    assert!(!bob.ratchets.legacy_closed(&alice.peer, NOW, LEGACY_GRACE).unwrap());
    let m = alice.seal(&bob, "one");
    bob.open(&alice, &m).unwrap();

    alice.ratchets = Ratchets::load(alice.store.ratchet(), &alice.identity, NOW).unwrap();
    bob.ratchets = Ratchets::load(bob.store.ratchet(), &bob.identity, NOW).unwrap();
    let m = alice.seal(&bob, "two");
    assert_eq!(bob.open(&alice, &m).unwrap(), "two");

    let grace_ms = u64::try_from(LEGACY_GRACE.as_millis()).unwrap();
    assert!(!bob.ratchets.legacy_closed(&alice.peer, NOW + grace_ms, LEGACY_GRACE).unwrap());
    assert!(bob.ratchets.legacy_closed(&alice.peer, NOW + grace_ms + 1, LEGACY_GRACE).unwrap());

    // Records are encrypted under the end-to-end key: under another one (an identity
    // restored with a new key) they are unreadable, and the node starts afresh with a
    // new Olm identity rather than refusing to start.
    let old_identity = bob.ratchets.identity_key();
    let other = Identity::from_secrets(bob.identity.ed25519_seed(), [7; 32]);
    let mut afresh = Ratchets::load(bob.store.ratchet(), &other, NOW).unwrap();
    assert_ne!(afresh.identity_key(), old_identity);
    assert!(!afresh.ready(&alice.peer).unwrap(), "no session survives");
}

#[test]
fn a_message_held_for_a_retry_opens_again_and_once_recorded_is_a_copy() {
    let (mut alice, mut bob) = pair();
    let sealed = alice.seal(&bob, "a key for a group not known yet");
    let (kind, body) = (&sealed.0, &sealed.1);
    let opened = bob.ratchets.open(&alice.peer, *kind, body, NOW).unwrap();
    // Its payload cannot be taken yet: held, and the retry (the same bytes) opens.
    bob.ratchets.hold(copy_digest(*kind, body), opened.clone());
    assert_eq!(bob.ratchets.open(&alice.peer, *kind, body, NOW).unwrap(), opened, "held, in memory");
    bob.ratchets.persist(NOW).unwrap();
    bob.ratchets = Ratchets::load(bob.store.ratchet(), &bob.identity, NOW).unwrap();
    assert_eq!(bob.ratchets.open(&alice.peer, *kind, body, NOW).unwrap(), opened, "held, after a restart");
    bob.ratchets.record(copy_digest(*kind, body));
    bob.ratchets.persist(NOW).unwrap();
    assert!(matches!(bob.ratchets.open(&alice.peer, *kind, body, NOW), Err(RatchetError::Duplicate)));
}

#[test]
fn a_replayed_or_older_offer_changes_nothing() {
    let (mut alice, mut bob) = (Side::new(), Side::new());
    let first = bob.ratchets.offer(&bob.identity, &alice.peer, false).unwrap();
    let reset = bob.ratchets.offer(&bob.identity, &alice.peer, true).unwrap();
    assert!(reset.issued_us > first.issued_us);
    assert_eq!(alice.ratchets.learn(&bob.peer, &reset).unwrap(), Learned::Prekey);
    let m = alice.seal(&bob, "hi");
    bob.open(&alice, &m).unwrap();
    // A relay replays the reset, or delivers the older offer late: nothing changes,
    // the running session stays.
    assert_eq!(alice.ratchets.learn(&bob.peer, &reset).unwrap(), Learned::Stale);
    assert_eq!(alice.ratchets.learn(&bob.peer, &first).unwrap(), Learned::Stale);
    let next = alice.seal(&bob, "still the same session");
    assert_eq!(next.0, PRE_KEY_MESSAGE, "no reply yet, so still a pre-key message of the first session");
    assert_eq!(bob.open(&alice, &next).unwrap(), "still the same session");
    // Also after a restart (the newest offer taken is kept).
    alice.ratchets = Ratchets::load(alice.store.ratchet(), &alice.identity, NOW).unwrap();
    assert_eq!(alice.ratchets.learn(&bob.peer, &reset).unwrap(), Learned::Stale);
}
