//! Targets for sealed bytes: 1:1 envelopes ([`crate::envelope`]) and group messages
//! ([`crate::group::sender_key`]), opened with the fixed keys of
//! [`super::fixtures`].

use std::mem::discriminant;

use crate::envelope::{self, OpenError, Opened, Opener, Sealer, SealerConfig};
use crate::group::sender_key::{self, OpenedGroupMessage};
use crate::group::{GroupError, GroupSecret};
use crate::identity::PublicIdentity;

use super::fixtures::{group_id, group_secret, identity, peer_id, public, sender_key};

/// Mode byte even: open the rest as an envelope sealed to identity 0. Odd: seal the
/// rest as a plaintext from identity 1 to identity 0, then open it.
///
/// Invariants when opening: a caching opener (first and repeated open) and a
/// non-caching one agree; an opened envelope has a plaintext within the limit and a
/// sender whose key binding verifies; failures are input errors, never
/// [`OpenError::Noise`] (which the docs reserve for bugs). When sealing: the envelope
/// is within its limit and opens to the same plaintext and sender, for the
/// recipient only.
pub fn envelope(bytes: &[u8]) {
    super::by_mode(bytes, open_envelope, seal_envelope);
}

fn open_envelope(bytes: &[u8]) {
    let mut cached = Opener::new(identity(0), 4);
    let mut uncached = Opener::new(identity(0), 0);
    let first = cached.open(bytes);
    let again = cached.open(bytes);
    let fresh = uncached.open(bytes);
    assert_same_opening(&first, &again);
    assert_same_opening(&first, &fresh);
    match first {
        Ok(opened) => {
            assert!(opened.plaintext.len() <= envelope::MAX_PLAINTEXT_LEN);
            let sender = PublicIdentity {
                peer_id: opened.sender,
                e2e_public: opened.sender_e2e,
                binding: opened.sender_binding,
            };
            assert!(sender.verify().is_ok(), "an opened envelope's sender binding does not verify");
            // What the node does next with the plaintext.
            super::records::payload(&opened.plaintext);
        }
        Err(OpenError::Noise(e)) => panic!("an input made the Noise library fail: {e}"),
        Err(_) => {}
    }
}

/// Both openings succeeded alike, or failed with the same variant.
fn assert_same_opening(a: &Result<Opened, OpenError>, b: &Result<Opened, OpenError>) {
    match (a, b) {
        (Ok(a), Ok(b)) => assert!(a == b, "two openings of one envelope differ: {a:?} / {b:?}"),
        (Err(a), Err(b)) => assert_eq!(discriminant(a), discriminant(b), "{a:?} / {b:?}"),
        (a, b) => panic!("one opening succeeded, the other did not: {a:?} / {b:?}"),
    }
}

fn seal_envelope(plaintext: &[u8]) {
    let mut sealer = Sealer::new(identity(1), SealerConfig::default());
    let recipient = public(0).e2e_public;
    let sealed = match sealer.seal(&recipient, plaintext) {
        Ok(sealed) => sealed,
        Err(envelope::SealError::TooLarge { .. }) if plaintext.len() > envelope::MAX_PLAINTEXT_LEN => return,
        Err(e) => panic!("sealing {} bytes failed: {e}", plaintext.len()),
    };
    // A second message in the same session: later nonces.
    let second = sealer.seal(&recipient, plaintext).unwrap_or_else(|e| panic!("second seal: {e}"));
    assert!(sealed.len() <= envelope::MAX_ENVELOPE_LEN && second.len() <= envelope::MAX_ENVELOPE_LEN);
    let mut opener = Opener::new(identity(0), 4);
    for envelope in [&sealed, &second] {
        let opened = opener.open(envelope).unwrap_or_else(|e| panic!("open a sealed envelope: {e}"));
        assert_eq!(opened.plaintext, plaintext);
        assert_eq!(opened.sender, peer_id(1));
        assert_eq!(opened.sender_e2e, public(1).e2e_public);
    }
    let wrong = Opener::new(identity(2), 0).open(&sealed);
    assert!(matches!(wrong, Err(OpenError::Decrypt)), "opened by the wrong recipient: {wrong:?}");
}

/// Mode byte even: authenticate and open the rest as a message of the fixed group,
/// where identity 1 is a member holding [`super::fixtures::sender_key`]. Odd: seal the rest
/// as a plaintext by identity 1, then open it.
///
/// Invariants when opening: [`sender_key::authenticate`] followed by
/// [`sender_key::Authentic::open`] agrees with [`sender_key::open`]; an opened
/// message's author is the authenticated one; failures are typed. When sealing:
/// the message is within [`sender_key::MAX_MESSAGE_LEN`] (or refused as too long)
/// and opens to the same plaintext, author, sequence number and generation, for the
/// group's secret only.
pub fn group_message(bytes: &[u8]) {
    super::by_mode(bytes, open_group_message, seal_group_message);
}

fn open_with_fixed_key(bytes: &[u8], secret: &GroupSecret) -> Result<OpenedGroupMessage, GroupError> {
    let key = sender_key();
    let member = peer_id(1);
    sender_key::open(
        bytes,
        group_id(),
        secret,
        |author| *author == member,
        |author, generation| (*author == member && generation == key.generation).then(|| key.clone()),
    )
}

fn open_group_message(bytes: &[u8]) {
    let secret = group_secret();
    let opened = open_with_fixed_key(bytes, &secret);
    let authentic = match sender_key::authenticate(bytes, group_id(), &secret) {
        Ok(authentic) => authentic,
        Err(e) => {
            assert!(
                matches!(e, GroupError::Malformed(_) | GroupError::Decrypt | GroupError::BadSignature),
                "authenticate: unexpected error {e:?}"
            );
            let Err(o) = &opened else { panic!("open succeeded where authenticate failed: {e:?}") };
            assert_eq!(discriminant(o), discriminant(&e), "{o:?} / {e:?}");
            return;
        }
    };
    if authentic.author != peer_id(1) {
        assert!(matches!(opened, Err(GroupError::NotMember(_))), "{opened:?}");
        return;
    }
    let direct = authentic.open(&sender_key());
    match (&direct, &opened) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(discriminant(a), discriminant(b), "{a:?} / {b:?}"),
        (a, b) => panic!("authenticate+open and open disagree: {a:?} / {b:?}"),
    }
    if let Ok(message) = direct {
        assert_eq!((message.author, message.seq, message.generation), (authentic.author, authentic.seq, authentic.generation));
        assert!(message.plaintext.len() <= sender_key::MAX_MESSAGE_LEN);
        // What the node does next with the plaintext.
        super::group::group_post(&message.plaintext);
    }
}

fn seal_group_message(plaintext: &[u8]) {
    let secret = group_secret();
    let key = sender_key();
    let seq = u64::try_from(plaintext.len()).unwrap_or(u64::MAX);
    let sealed = match sender_key::seal(identity(1), group_id(), &secret, &key, seq, plaintext) {
        Ok(sealed) => sealed,
        Err(GroupError::Malformed(_)) if plaintext.len() > sender_key::MAX_MESSAGE_LEN / 2 => return,
        Err(e) => panic!("sealing {} bytes failed: {e}", plaintext.len()),
    };
    assert!(sealed.len() <= sender_key::MAX_MESSAGE_LEN);
    let opened = open_with_fixed_key(&sealed, &secret).unwrap_or_else(|e| panic!("open a sealed message: {e}"));
    assert_eq!(opened.plaintext, plaintext);
    assert_eq!((opened.author, opened.seq, opened.generation), (peer_id(1), seq, key.generation));
    let other = GroupSecret::from_bytes([0x43; 32]);
    let wrong = open_with_fixed_key(&sealed, &other);
    assert!(matches!(wrong, Err(GroupError::Decrypt)), "opened under another group's secret: {wrong:?}");
}
