use std::time::Instant;

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
    /// records and the key file copied into another store, minus the copy digests
    /// (an attacker need not honour them).
    fn stolen(&self) -> (Store, Ratchets, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let copied: Vec<RatchetChange> =
            self.store.ratchet().scan(b"").unwrap().into_iter().filter(|(key, _)| !key.starts_with(SEEN_PREFIX)).map(|(k, v)| (k, Some(v))).collect();
        store.ratchet().write(&copied).unwrap();
        store.ratchet().write_key_file(&self.store.ratchet().read_key_file().unwrap().unwrap()).unwrap();
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
fn a_roll_deletes_the_copy_digests_past_the_retention_and_a_restart_prunes_the_rest_at_their_own_time() {
    let (mut alice, mut bob) = pair();
    let retention = u64::try_from(SEEN_RETENTION.as_millis()).unwrap();
    let digests = |bob: &Side| bob.store.ratchet().scan(SEEN_PREFIX).unwrap().len();
    let old = alice.seal(&bob, "old");
    assert_eq!(bob.open(&alice, &old).unwrap(), "old");
    // A second message, opened half a retention later.
    let half = NOW + retention / 2;
    let recent = alice.seal(&bob, "recent");
    bob.ratchets.open(&alice.peer, recent.0, &recent.1, half).unwrap();
    bob.ratchets.record(copy_digest(recent.0, &recent.1));
    bob.ratchets.persist(half).unwrap();
    assert_eq!(digests(&bob), 2);

    // A node that keeps running: its rolls prune, not only its start.
    bob.ratchets.roll(Instant::now(), NOW + retention).unwrap();
    assert_eq!(digests(&bob), 2, "not older than the retention yet");
    bob.ratchets.roll(Instant::now(), NOW + retention + 1).unwrap();
    assert_eq!(digests(&bob), 1, "the first message's digest is past the retention");
    assert!(matches!(bob.open(&alice, &recent), Err(RatchetError::Duplicate)), "the newer digest still recognises a copy");

    // After a restart the remaining digest keeps its own time.
    bob.ratchets = Ratchets::load(bob.store.ratchet(), &bob.identity, half + retention).unwrap();
    assert_eq!(digests(&bob), 1);
    bob.ratchets.roll(Instant::now(), half + retention + 1).unwrap();
    assert_eq!(digests(&bob), 0);
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

    // The state keys are sealed under a key from the Ed25519 seed: an identity
    // restored with a new end-to-end (X25519) key keeps its sessions.
    let old_identity = bob.ratchets.identity_key();
    let rotated = Identity::from_secrets(bob.identity.ed25519_seed(), [7; 32]);
    let mut kept = Ratchets::load(bob.store.ratchet(), &rotated, NOW).unwrap();
    assert_eq!(kept.identity_key(), old_identity);
    assert!(kept.ready(&alice.peer).unwrap(), "the session survives");
    let m = alice.seal(&bob, "three");
    assert_eq!(String::from_utf8(kept.open(&alice.peer, m.0, &m.1, NOW).unwrap()).unwrap(), "three");
    kept.persist(NOW).unwrap();
    drop(kept);

    // Another identity's keys open nothing: the node starts afresh with a new Olm
    // identity rather than refusing to start.
    let mut afresh = Ratchets::load(bob.store.ratchet(), &Identity::generate(), NOW).unwrap();
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

/// Every key someone who takes `side`'s keys and files can derive or read: the
/// state keys in the key file (opened with the key from the Ed25519 seed), that
/// key itself, and the key from the X25519 secret that sealed state before state
/// keys — what a fresh [`Ratchets::load`] derives.
fn disk_keys(side: &Side) -> Vec<[u8; 32]> {
    let file_key = keys::file_key(&side.identity);
    let legacy = keys::legacy_key(&side.identity);
    let mut found = vec![*file_key, *legacy];
    if let Some(bytes) = side.store.ratchet().read_key_file().unwrap() {
        found.extend(StateKeys::from_file(&file_key, &bytes, || legacy.clone()).unwrap().raw());
    }
    found
}

/// What the sessions in a peer record sealed as `record` (stored under `at`) make of
/// `captured`, trying every key in `keys` in either sealing format; `None` if no key
/// opens the record.
fn open_captured(keys: &[[u8; 32]], at: &[u8], record: &[u8], captured: &(u8, Vec<u8>)) -> Option<String> {
    let plain = keys.iter().find_map(|key| {
        let with_epoch = record.split_at_checked(4).and_then(|(epoch, sealed)| keys::open_raw(key, &[epoch, at].concat(), sealed).ok());
        with_epoch.or_else(|| keys::open_raw(key, at, record).ok())
    })?;
    let r: PeerRecord = wire::decode(&plain, MAX_RECORD_LEN).unwrap();
    let message = OlmMessage::from_parts(usize::from(captured.0), &captured.1).unwrap();
    let opened = r.sessions.into_iter().map(Session::from_pickle).find_map(|mut s| s.decrypt(&message).ok());
    Some(String::from_utf8(opened.expect("the record opens but none of its sessions opens the message")).unwrap())
}

fn log_holds(side: &Side, bytes: &[u8]) -> bool {
    let log = std::fs::read(side.store.path().join("messages.log")).unwrap();
    log.windows(bytes.len()).any(|w| w == bytes)
}

#[test]
fn after_a_roll_a_replaced_record_left_in_the_log_opens_with_nothing_on_disk() {
    let (mut alice, mut bob) = pair();
    let first = alice.seal(&bob, "first");
    bob.open(&alice, &first).unwrap();
    let at = peer_key(&alice.peer);
    let replaced = bob.store.ratchet().get(&at).unwrap().unwrap();
    let captured = alice.seal(&bob, "captured secret");
    assert_eq!(bob.open(&alice, &captured).unwrap(), "captured secret");
    assert_ne!(bob.store.ratchet().get(&at).unwrap().unwrap(), replaced, "the record was replaced");
    assert!(log_holds(&bob, &replaced), "the append-only log still holds the replaced record");

    // Before the roll, what is on disk opens the replaced record, whose session still
    // holds the key of a message Bob has read (and deleted the key of).
    assert_eq!(open_captured(&disk_keys(&bob), &at, &replaced, &captured).as_deref(), Some("captured secret"));

    bob.ratchets.roll(Instant::now(), NOW).unwrap();
    assert!(log_holds(&bob, &replaced), "still in the file: only its key is gone");
    assert_eq!(open_captured(&disk_keys(&bob), &at, &replaced, &captured), None);
    // A restart derives no key that opens it either, and the current state works on.
    bob.ratchets = Ratchets::load(bob.store.ratchet(), &bob.identity, NOW).unwrap();
    assert_eq!(open_captured(&disk_keys(&bob), &at, &replaced, &captured), None);
    let next = alice.seal(&bob, "after the roll");
    assert_eq!(bob.open(&alice, &next).unwrap(), "after the roll");
}

#[test]
fn a_roll_is_due_once_state_was_written_and_the_interval_passed() {
    let (mut alice, mut bob) = pair();
    let every = Duration::from_secs(60);
    alice.ratchets = Ratchets::load(alice.store.ratchet(), &alice.identity, NOW).unwrap().with_roll_interval(every);
    let later = Instant::now() + every;
    assert!(!alice.ratchets.roll_due(later), "nothing written since the roll at load");
    assert_eq!(alice.ratchets.next_roll(), None);
    alice.learns_from(&mut bob, false);
    alice.ratchets.persist(NOW).unwrap();
    assert!(!alice.ratchets.roll_due(Instant::now()), "not before the interval");
    assert!(alice.ratchets.roll_due(later + Duration::from_millis(1)));
    alice.ratchets.roll(later, NOW).unwrap();
    assert!(!alice.ratchets.roll_due(later + every * 2), "nothing written since");
    alice.ratchets.forget(&bob.peer).unwrap();
    assert!(!alice.ratchets.roll_due(later + every - Duration::from_millis(1)));
    assert!(alice.ratchets.roll_due(later + every), "an interval after the last roll");
}

/// The epochs of the sealed parts of `side`'s records.
fn stored_epochs(side: &Side) -> Vec<u32> {
    let mut epochs: Vec<u32> = side
        .store
        .ratchet()
        .scan(b"")
        .unwrap()
        .into_iter()
        .filter_map(|(key, value)| value.get(sealed_from(&key)..sealed_from(&key) + 4).map(|e| u32::from_be_bytes(e.try_into().unwrap())))
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    epochs
}

/// A pair after one message Alice → Bob, then a second one Bob opened and holds (its
/// payload waits for a retry), his state written: the sealed second message.
fn pair_with_a_held_message(text: &str) -> (Side, Side, (u8, Vec<u8>)) {
    let (mut alice, mut bob) = pair();
    let m = alice.seal(&bob, "one");
    bob.open(&alice, &m).unwrap();
    let held = alice.seal(&bob, text);
    let plaintext = bob.ratchets.open(&alice.peer, held.0, &held.1, NOW).unwrap();
    bob.ratchets.hold(copy_digest(held.0, &held.1), plaintext);
    bob.ratchets.persist(NOW).unwrap();
    (alice, bob, held)
}

#[test]
fn a_crash_between_the_steps_of_a_roll_leaves_every_record_readable() {
    for resealed in ["none", "the peers only", "all"] {
        let (mut alice, mut bob, held) = pair_with_a_held_message("held for a retry");
        let (records, identity_key) = (bob.store.ratchet().scan(b"").unwrap().len(), bob.ratchets.identity_key());
        assert_eq!(stored_epochs(&bob), [1]);

        let opened = bob.ratchets.roll_begin().unwrap();
        match resealed {
            "none" => {}
            "the peers only" => bob.ratchets.roll_reseal(&opened, |key| key.starts_with(PEER_PREFIX)).unwrap(),
            _ => bob.ratchets.roll_reseal(&opened, |_| true).unwrap(),
        }
        bob.store.flush().unwrap();
        let expected: &[u32] = match resealed {
            "none" => &[1],
            "the peers only" => &[1, 2],
            _ => &[2],
        };
        assert_eq!(stored_epochs(&bob), expected, "{resealed}");
        let file = StateKeys::from_file(&keys::file_key(&bob.identity), &bob.store.ratchet().read_key_file().unwrap().unwrap(), || unreachable!());
        assert_eq!(file.unwrap().epochs(), [1, 2], "the key file holds both keys mid-roll");

        // The crash: the node starts again from what is on disk.
        bob.ratchets = Ratchets::load(bob.store.ratchet(), &bob.identity, NOW).unwrap();
        assert_eq!(bob.ratchets.identity_key(), identity_key, "{resealed}: the account opened");
        assert_eq!(bob.store.ratchet().scan(b"").unwrap().len(), records, "{resealed}: no record dropped");
        assert_eq!(stored_epochs(&bob), [3], "{resealed}: the restart's roll finished the job");
        assert_eq!(bob.ratchets.open(&alice.peer, held.0, &held.1, NOW).unwrap(), b"held for a retry", "{resealed}");
        let next = alice.seal(&bob, "after the crash");
        assert_eq!(bob.open(&alice, &next).unwrap(), "after the crash", "{resealed}: the session opened");
    }
}

/// Makes `side`'s stored state as it was before state keys: every record sealed
/// under the key from the X25519 secret, with no epoch, and no key file.
fn to_legacy(side: &Side) {
    let legacy = keys::legacy_key(&side.identity);
    let mut changes: Vec<RatchetChange> = Vec::new();
    for (key, value) in side.store.ratchet().scan(b"").unwrap() {
        let from = sealed_from(&key);
        if value.len() <= from {
            continue;
        }
        let (plain, _) = side.ratchets.keys.open(&key, &value[from..]).unwrap();
        changes.push((key.clone(), Some([&value[..from], &keys::seal_raw(&legacy, &key, &plain).unwrap()].concat())));
    }
    side.store.ratchet().write(&changes).unwrap();
    side.store.flush().unwrap();
    std::fs::remove_file(side.store.path().join(kith_storage::RATCHET_KEY_FILE)).unwrap();
}

#[test]
fn state_sealed_under_the_end_to_end_key_is_read_once_and_re_sealed_under_a_state_key() {
    let (mut alice, mut bob, held) = pair_with_a_held_message("held");
    let identity_key = bob.ratchets.identity_key();
    to_legacy(&bob);
    let legacy_account = bob.store.ratchet().get(ACCOUNT_KEY).unwrap().unwrap();
    assert!(keys::open_raw(&keys::legacy_key(&bob.identity), ACCOUNT_KEY, &legacy_account).is_ok(), "sealed the old way");

    // A crash during the upgrade's roll, after the key file was written: it names the
    // legacy key, and the records are still sealed under it.
    let mut upgrading = Ratchets::load_unrolled(bob.store.ratchet(), &bob.identity).unwrap();
    upgrading.roll_begin().unwrap();
    drop(upgrading);

    bob.ratchets = Ratchets::load(bob.store.ratchet(), &bob.identity, NOW).unwrap();
    assert_eq!(bob.ratchets.identity_key(), identity_key, "the account was read");
    let file_key = keys::file_key(&bob.identity);
    let keys_now = StateKeys::from_file(&file_key, &bob.store.ratchet().read_key_file().unwrap().unwrap(), || unreachable!()).unwrap();
    assert!(!keys_now.has_legacy(), "the key file no longer names the legacy key");
    for (key, value) in bob.store.ratchet().scan(b"").unwrap() {
        let sealed = &value[sealed_from(&key)..];
        if !sealed.is_empty() {
            assert_eq!(keys_now.open(&key, sealed).unwrap().1, keys_now.current_epoch(), "{key:?} re-sealed under the state key");
        }
    }
    assert_eq!(bob.ratchets.open(&alice.peer, held.0, &held.1, NOW).unwrap(), b"held");
    let next = alice.seal(&bob, "after the upgrade");
    assert_eq!(bob.open(&alice, &next).unwrap(), "after the upgrade");
    let reply = bob.seal(&alice, "and back");
    assert_eq!(alice.open(&bob, &reply).unwrap(), "and back");

    // State still sealed the old way does not open under a new X25519 key (as before
    // state keys): the node starts afresh.
    to_legacy(&bob);
    let rotated = Identity::from_secrets(bob.identity.ed25519_seed(), [7; 32]);
    let afresh = Ratchets::load(bob.store.ratchet(), &rotated, NOW).unwrap();
    assert_ne!(afresh.identity_key(), identity_key);
}

/// Alice and Bob after a round trip, and Alice's sending chain started (the stored
/// state has it, so the messages she seals next continue it).
fn talking() -> (Side, Side) {
    let (mut alice, mut bob) = pair();
    let first = alice.seal(&bob, "hello");
    bob.open(&alice, &first).unwrap();
    let reply = bob.seal(&alice, "hi");
    alice.open(&bob, &reply).unwrap();
    let next = alice.seal(&bob, "how are you");
    bob.open(&alice, &next).unwrap();
    (alice, bob)
}

/// Alice seals `n` messages whose state is never written (a crash took it), and Bob
/// receives them all; then Alice starts again on her stored state and seals one more.
/// Returns what Bob makes of that one.
fn crash_after_sending_ahead(alice: &mut Side, bob: &mut Side, n: usize) -> Result<String, RatchetError> {
    for i in 0..n {
        let lost = alice.ratchets.seal(&bob.peer, format!("lost {i}").as_bytes()).unwrap().unwrap();
        assert_eq!(bob.open(alice, &lost).unwrap(), format!("lost {i}"));
    }
    alice.ratchets = Ratchets::load(alice.store.ratchet(), &alice.identity, NOW).unwrap();
    // A failed write anywhere rolls unwritten changes back; the skip must not be one.
    alice.ratchets.rollback();
    let after = alice.seal(bob, "after the crash");
    bob.open(alice, &after)
}

#[test]
fn a_crash_while_sending_ahead_never_seals_two_messages_with_one_key() {
    // Unmarked, the stored state is behind the keys the lost messages used: the next
    // message reuses one, and Bob, who read the lost one, has no key left for it.
    let (mut alice, mut bob) = talking();
    assert!(matches!(crash_after_sending_ahead(&mut alice, &mut bob, 3), Err(RatchetError::KeyGone(_))));

    // Marked (and the mark durable) before anything leaves ahead: the start finds the
    // mark and skips the keys, up to the bound the sender keeps.
    let (mut alice, mut bob) = talking();
    assert!(!alice.ratchets.is_marked(&bob.peer).unwrap());
    assert!(alice.ratchets.mark_sends_ahead(&bob.peer).unwrap());
    assert!(alice.ratchets.is_marked(&bob.peer).unwrap());
    assert!(!alice.ratchets.mark_sends_ahead(&bob.peer).unwrap(), "marked once");
    alice.ratchets.persist(NOW).unwrap();
    assert!(alice.store.ratchet().get(MARKED_KEY).unwrap().is_some(), "a start looks for marks");
    assert_eq!(crash_after_sending_ahead(&mut alice, &mut bob, MAX_SENT_AHEAD).unwrap(), "after the crash");
    assert_eq!(alice.ratchets.marked_at_load(), &[bob.peer]);

    // The mark stays after such a start: a second crash skips again.
    assert_eq!(crash_after_sending_ahead(&mut alice, &mut bob, 5).unwrap(), "after the crash");

    // A clean stop clears it: the next start skips nothing and finds no mark.
    alice.ratchets.clear_sends_ahead().unwrap();
    alice.ratchets.persist(NOW).unwrap();
    assert!(alice.store.ratchet().get(MARKED_KEY).unwrap().is_none(), "a start reads no peer record");
    alice.ratchets = Ratchets::load(alice.store.ratchet(), &alice.identity, NOW).unwrap();
    assert!(alice.ratchets.marked_at_load().is_empty());
    assert!(!alice.ratchets.is_marked(&bob.peer).unwrap());
    let next = alice.seal(&bob, "after a clean stop");
    assert_eq!(bob.open(&alice, &next).unwrap(), "after a clean stop");
}

#[test]
fn seals_that_may_start_a_sending_chain_are_reported() {
    let (mut alice, mut bob) = pair();
    assert!(alice.ratchets.take_new_chains().is_empty());
    let first = alice.seal(&bob, "first");
    assert_eq!(alice.ratchets.take_new_chains(), HashSet::from([bob.peer]), "a new session");
    alice.seal(&bob, "second");
    assert!(alice.ratchets.take_new_chains().is_empty(), "the chain goes on");

    // Bob answers: Alice's next seal takes a ratchet step, a new chain.
    bob.open(&alice, &first).unwrap();
    let reply = bob.seal(&alice, "reply");
    alice.open(&bob, &reply).unwrap();
    alice.seal(&bob, "third");
    assert_eq!(alice.ratchets.take_new_chains(), HashSet::from([bob.peer]), "a ratchet step");
    alice.seal(&bob, "fourth");
    assert!(alice.ratchets.take_new_chains().is_empty());

    // After a load the chain in use is not known: the first seal counts.
    alice.ratchets = Ratchets::load(alice.store.ratchet(), &alice.identity, NOW).unwrap();
    alice.seal(&bob, "fifth");
    assert_eq!(alice.ratchets.take_new_chains(), HashSet::from([bob.peer]));
}
