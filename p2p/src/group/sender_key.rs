//! Sender keys: a group message is encrypted once by its author.
//!
//! Each member holds a sender key per group and generation, and gives it to every
//! other current member over the pairwise end-to-end channel (inside the 1:1 ratchet,
//! see [`crate::ratchet`]). When someone leaves or is removed, every remaining member
//! starts a new generation and shares it only with the remaining members, so the
//! departed member cannot read anything sent afterwards.
//!
//! # A ratcheting chain (Megolm-like)
//! A sender key is a point of a hash chain: `(index, chain key)`. Message `index` is
//! sealed under `BLAKE3-derive("kith group message key v1", chain_index)`, and the
//! author then steps its own key to `chain_{index+1} = BLAKE3-derive("kith group
//! chain v1", chain_index)`, dropping the old one. So a leaked current key opens no
//! earlier message, and a member added later — given the author's key as it is then
//! — cannot open what was sent before. A receiver keeps the earliest point it was
//! given and derives forward (at most [`MAX_CHAIN_SKIP`] steps), so messages that
//! arrive late or out of order, and history from relays, still open; that point is
//! what a copy of the receiver's database would expose (as with Megolm). Keys of
//! version 2 messages (before the chain) are the chain at index 0 and open them as
//! they were sealed.
//!
//! A sealed message has two layers:
//! - **inside**, the body is sealed with XChaCha20-Poly1305 under the message key,
//!   and the header (group id, author, generation, sequence number, chain index,
//!   nonce) with the body is signed with the author's identity key — a symmetric key
//!   shared by all members would otherwise let any member forge messages from another;
//! - **outside**, all of that (author included) is sealed again under a key derived
//!   from the group's [`GroupSecret`]. What a relay or a gossip peer sees is a
//!   version, a random nonce and ciphertext: no group id, no author, no generation.
//!
//! The receiver checks, in order: size and shape, the outer layer (only holders of
//! the group secret made it), the author's signature (an unauthenticated byte is
//! never kept), then membership and the sender key. [`authenticate`] does the first
//! three, so a message whose key has not arrived yet can be kept knowing who wrote it.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_storage::GroupId;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{GroupError, GroupSecret};
use crate::identity::{Identity, verify_signature};
use crate::wire;

/// Domain separation for message signatures (and the inner layer's associated data).
pub const MESSAGE_CONTEXT: &[u8] = b"kith/group-msg/3\0";
/// The same for version 2 messages (sealed before the chain), still opened.
const LEGACY_MESSAGE_CONTEXT: &[u8] = b"kith/group-msg/2\0";
/// BLAKE3 key-derivation context of a message key from a chain key.
const MESSAGE_KEY_CONTEXT: &str = "kith group message key v1";
/// BLAKE3 key-derivation context of the next chain key.
const CHAIN_CONTEXT: &str = "kith group chain v1";
/// Most chain steps a receiver derives to reach a message's key (about 0.2 s of
/// hashing here): a member cannot make us hash for long with one message.
pub const MAX_CHAIN_SKIP: u64 = 1 << 20;
/// Associated data of the outer layer: binds its version.
const OUTER_AAD: &[u8] = b"kith/group-outer/2\0";
/// BLAKE3 key-derivation context of the outer layer's key.
const OUTER_KEY_CONTEXT: &str = "kith group envelope v2";
/// Largest encoded group message accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 96 * 1024;
const MESSAGE_VERSION: u32 = 3;
/// Messages sealed under the generation's key itself, before the chain.
const LEGACY_VERSION: u32 = 2;

/// One generation of an author's sender key, at one point of its chain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderKey {
    /// Generation number; a new one starts whenever membership shrinks.
    pub generation: u32,
    /// The chain index `key` is at: the first message this key opens.
    #[serde(default)]
    pub index: u64,
    /// The chain key.
    #[serde(with = "wire::byte_array")]
    pub key: [u8; 32],
}

impl std::fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKey").field("generation", &self.generation).field("index", &self.index).field("key", &"<secret>").finish()
    }
}

impl SenderKey {
    /// A fresh random key of `generation`, at the start of its chain.
    pub fn generate(generation: u32) -> SenderKey {
        SenderKey { generation, index: 0, key: rand::random() }
    }

    /// The key one step along the chain (what the author keeps after sealing with
    /// this one; this one is then forgotten).
    pub fn next(&self) -> SenderKey {
        SenderKey { generation: self.generation, index: self.index.saturating_add(1), key: blake3::derive_key(CHAIN_CONTEXT, &self.key) }
    }

    /// The key at `index`, derived forward from this one.
    ///
    /// # Errors
    /// [`GroupError::BeforeKey`] for an index before this key (the chain runs one
    /// way), [`GroupError::TooFarAhead`] past [`MAX_CHAIN_SKIP`] steps.
    pub fn at(&self, index: u64) -> Result<SenderKey, GroupError> {
        let Some(steps) = index.checked_sub(self.index) else {
            return Err(GroupError::BeforeKey { index, held: self.index });
        };
        if steps > MAX_CHAIN_SKIP {
            return Err(GroupError::TooFarAhead { index, max: MAX_CHAIN_SKIP });
        }
        let mut key = self.key;
        for _ in 0..steps {
            key = blake3::derive_key(CHAIN_CONTEXT, &key);
        }
        Ok(SenderKey { generation: self.generation, index, key })
    }

    fn message_key(&self) -> [u8; 32] {
        blake3::derive_key(MESSAGE_KEY_CONTEXT, &self.key)
    }
}

/// What the signature and the inner layer's associated data cover.
#[derive(Serialize)]
struct Header<'a> {
    group: GroupId,
    #[serde(with = "wire::bytes")]
    author: &'a [u8],
    generation: u32,
    seq: u64,
    #[serde(with = "wire::byte_array")]
    nonce: [u8; 24],
    /// Absent from version 2 headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
}

/// The outer layer: all a non-member sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Outer {
    v: u32,
    #[serde(with = "wire::byte_array")]
    nonce: [u8; 24],
    #[serde(with = "wire::bytes")]
    sealed: Vec<u8>,
}

/// The inner layer, once the outer one is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Inner {
    #[serde(with = "wire::bytes")]
    author: Vec<u8>,
    generation: u32,
    /// The author's per-group counter: orders its messages.
    seq: u64,
    /// The chain index of the message key (version 3; absent in version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    #[serde(with = "wire::byte_array")]
    nonce: [u8; 24],
    #[serde(with = "wire::bytes")]
    body: Vec<u8>,
    #[serde(with = "wire::byte_array")]
    sig: [u8; 64],
}

/// An opened group message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedGroupMessage {
    /// The authenticated author.
    pub author: PeerId,
    /// The author's sequence number.
    pub seq: u64,
    /// The key generation it was sealed with.
    pub generation: u32,
    /// The plaintext.
    pub plaintext: Vec<u8>,
}

/// A message whose outer layer opened and whose signature verified: its author is
/// known for certain; its body still needs the author's sender key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentic {
    /// The author (its signature verified).
    pub author: PeerId,
    /// The key generation it was sealed with.
    pub generation: u32,
    /// The author's sequence number.
    pub seq: u64,
    group: GroupId,
    inner: Inner,
}

fn malformed(e: impl std::fmt::Display) -> GroupError {
    GroupError::Malformed(e.to_string())
}

/// What the signature covers: version 3 headers name the chain index, version 2
/// headers (`index` `None`) are as they were.
fn header_bytes(group: GroupId, author: &[u8], generation: u32, seq: u64, nonce: [u8; 24], index: Option<u64>) -> Result<Vec<u8>, GroupError> {
    let header = wire::encode(&Header { group, author, generation, seq, nonce, index }).map_err(malformed)?;
    let context = if index.is_some() { MESSAGE_CONTEXT } else { LEGACY_MESSAGE_CONTEXT };
    Ok([context, &header].concat())
}

fn signed_bytes(header: &[u8], body: &[u8]) -> Vec<u8> {
    [&(header.len() as u64).to_be_bytes()[..], header, body].concat()
}

fn outer_cipher(secret: &GroupSecret) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new((&secret.derive(OUTER_KEY_CONTEXT)).into())
}

/// Seal `plaintext` for `group` under `key`, authored and signed by `author`, hidden
/// from non-members under the group's `secret`.
pub fn seal(
    author: &Identity,
    group: GroupId,
    secret: &GroupSecret,
    key: &SenderKey,
    seq: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, GroupError> {
    let author_bytes = author.peer_id().to_bytes();
    let nonce: [u8; 24] = rand::random();
    let header = header_bytes(group, &author_bytes, key.generation, seq, nonce, Some(key.index))?;
    let body = XChaCha20Poly1305::new((&key.message_key()).into())
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &header })
        .map_err(|_| GroupError::Malformed("encryption failed".into()))?;
    let sig = author.sign(&signed_bytes(&header, &body));
    let inner = Inner { author: author_bytes, generation: key.generation, seq, index: Some(key.index), nonce, body, sig };
    let inner = wire::encode(&inner).map_err(malformed)?;
    let outer_nonce: [u8; 24] = rand::random();
    let sealed = outer_cipher(secret)
        .encrypt(&XNonce::from(outer_nonce), Payload { msg: &inner, aad: OUTER_AAD })
        .map_err(|_| GroupError::Malformed("encryption failed".into()))?;
    let bytes = wire::encode(&Outer { v: MESSAGE_VERSION, nonce: outer_nonce, sealed }).map_err(malformed)?;
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(GroupError::Malformed(format!("message of {} bytes over {MAX_MESSAGE_LEN}", bytes.len())));
    }
    Ok(bytes)
}

/// Open the outer layer and check the author's signature: everything but the body.
///
/// Fails with [`GroupError::Decrypt`] if the outer layer was not sealed with this
/// group's secret (another group's message, or a non-member's), with
/// [`GroupError::BadSignature`] if the author did not sign it.
pub fn authenticate(bytes: &[u8], group: GroupId, secret: &GroupSecret) -> Result<Authentic, GroupError> {
    let outer: Outer = wire::decode(bytes, MAX_MESSAGE_LEN).map_err(malformed)?;
    if outer.v != MESSAGE_VERSION && outer.v != LEGACY_VERSION {
        return Err(GroupError::Malformed(format!("unsupported message version {}", outer.v)));
    }
    let inner = outer_cipher(secret)
        .decrypt(&XNonce::from(outer.nonce), Payload { msg: &outer.sealed, aad: OUTER_AAD })
        .map_err(|_| GroupError::Decrypt)?;
    let inner: Inner = wire::decode(&inner, MAX_MESSAGE_LEN).map_err(malformed)?;
    if inner.index.is_some() != (outer.v == MESSAGE_VERSION) {
        return Err(GroupError::Malformed(format!("a version {} message with a chain index: {}", outer.v, inner.index.is_some())));
    }
    let author = PeerId::from_bytes(&inner.author).map_err(malformed)?;
    let header = header_bytes(group, &inner.author, inner.generation, inner.seq, inner.nonce, inner.index)?;
    verify_signature(&author, &signed_bytes(&header, &inner.body), &inner.sig).map_err(|_| GroupError::BadSignature)?;
    Ok(Authentic { author, generation: inner.generation, seq: inner.seq, group, inner })
}

impl Authentic {
    /// The chain index of its message key (`None`: a version 2 message, sealed under
    /// the generation's key itself).
    pub fn index(&self) -> Option<u64> {
        self.inner.index
    }

    /// Open the body with the author's sender key of this message's generation.
    pub fn open(&self, key: &SenderKey) -> Result<OpenedGroupMessage, GroupError> {
        if key.generation != self.generation {
            return Err(GroupError::UnknownKey { author: self.author.to_string(), generation: self.generation });
        }
        let i = &self.inner;
        let message_key = match i.index {
            Some(index) => key.at(index)?.message_key(),
            // Version 2: sealed under the generation's key itself, which only the
            // start of the chain is.
            None if key.index == 0 => key.key,
            None => return Err(GroupError::BeforeKey { index: 0, held: key.index }),
        };
        let header = header_bytes(self.group, &i.author, i.generation, i.seq, i.nonce, i.index)?;
        let plaintext = XChaCha20Poly1305::new((&message_key).into())
            .decrypt(&XNonce::from(i.nonce), Payload { msg: &i.body, aad: &header })
            .map_err(|_| GroupError::Decrypt)?;
        Ok(OpenedGroupMessage { author: self.author, seq: self.seq, generation: self.generation, plaintext })
    }
}

/// Open a group message of `group`. `is_member` says whether an author may post now;
/// `key_of(author, generation)` finds the sender key we were given.
///
/// Checks, in order: size and shape, the outer layer, the author's signature,
/// membership of the author, then decryption with the author's key.
pub fn open(
    bytes: &[u8],
    group: GroupId,
    secret: &GroupSecret,
    is_member: impl Fn(&PeerId) -> bool,
    key_of: impl Fn(&PeerId, u32) -> Option<SenderKey>,
) -> Result<OpenedGroupMessage, GroupError> {
    let authentic = authenticate(bytes, group, secret)?;
    if !is_member(&authentic.author) {
        return Err(GroupError::NotMember(authentic.author.to_string()));
    }
    let key = key_of(&authentic.author, authentic.generation).ok_or_else(|| GroupError::UnknownKey {
        author: authentic.author.to_string(),
        generation: authentic.generation,
    })?;
    authentic.open(&key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const G: GroupId = GroupId([3; 16]);

    fn secret() -> GroupSecret {
        GroupSecret::from_bytes([5; 32])
    }

    #[test]
    fn members_read_outsiders_and_stale_keys_do_not() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        let gen1 = SenderKey::generate(1);
        let gen2 = SenderKey::generate(2);
        let s = secret();
        let msg = seal(&alice, G, &s, &gen1, 7, "привет, группа 👋".as_bytes()).unwrap();

        let keys: HashMap<(PeerId, u32), SenderKey> = [((alice.peer_id(), 1), gen1.clone())].into();
        let key_of = |p: &PeerId, g: u32| keys.get(&(*p, g)).cloned();
        let opened = open(&msg, G, &s, |p| *p == alice.peer_id(), key_of).unwrap();
        assert_eq!(opened.plaintext, "привет, группа 👋".as_bytes());
        assert_eq!((opened.author, opened.seq, opened.generation), (alice.peer_id(), 7, 1));

        // Removed from the group: the author is no longer a member → refused unread.
        assert_eq!(open(&msg, G, &s, |_| false, key_of), Err(GroupError::NotMember(alice.peer_id().to_string())));
        // After rotation a departed member holds only generation 1: generation 2 is closed to it.
        let after = seal(&alice, G, &s, &gen2, 8, b"after the removal").unwrap();
        assert!(matches!(open(&after, G, &s, |_| true, key_of), Err(GroupError::UnknownKey { generation: 2, .. })));
        // Another group's secret cannot open the outer layer; another group id breaks
        // the signature.
        let other = GroupSecret::from_bytes([6; 32]);
        assert_eq!(open(&msg, G, &other, |_| true, key_of), Err(GroupError::Decrypt));
        assert_eq!(open(&msg, GroupId([4; 16]), &s, |_| true, key_of), Err(GroupError::BadSignature));
        // A member claiming to be another member.
        let forged = seal(&mallory, G, &s, &gen1, 1, b"i am alice").unwrap();
        let outer: Outer = wire::decode(&forged, MAX_MESSAGE_LEN).unwrap();
        let inner = outer_cipher(&s).decrypt(&XNonce::from(outer.nonce), Payload { msg: &outer.sealed, aad: OUTER_AAD }).unwrap();
        let mut inner: Inner = wire::decode(&inner, MAX_MESSAGE_LEN).unwrap();
        inner.author = alice.peer_id().to_bytes();
        let resealed = outer_cipher(&s)
            .encrypt(&XNonce::from(outer.nonce), Payload { msg: &wire::encode(&inner).unwrap(), aad: OUTER_AAD })
            .unwrap();
        let forged = wire::encode(&Outer { v: MESSAGE_VERSION, nonce: outer.nonce, sealed: resealed }).unwrap();
        assert_eq!(open(&forged, G, &s, |_| true, key_of), Err(GroupError::BadSignature));
        let mut tampered = msg.clone();
        let at = tampered.len() - 70;
        tampered[at] ^= 1;
        assert!(open(&tampered, G, &s, |_| true, key_of).is_err());
    }

    /// The author's side: seal with the current key, keep only the next one.
    fn send(author: &Identity, key: &mut SenderKey, seq: u64, text: &str) -> Vec<u8> {
        let sealed = seal(author, G, &secret(), key, seq, text.as_bytes()).unwrap();
        *key = key.next();
        sealed
    }

    fn open_with(msg: &[u8], key: &SenderKey) -> Result<Vec<u8>, GroupError> {
        authenticate(msg, G, &secret())?.open(key).map(|o| o.plaintext)
    }

    #[test]
    fn a_member_added_after_twenty_messages_opens_none_of_them_and_every_later_one() {
        let alice = Identity::generate();
        let mut key = SenderKey::generate(1);
        let at_start = key.clone();
        let before: Vec<Vec<u8>> = (0..20).map(|i| send(&alice, &mut key, 100 + i, &format!("before {i}"))).collect();
        // Carol is added now: Alice gives her the key as it is at this point.
        let carols = key.clone();
        assert_eq!(carols.index, 20);
        let after: Vec<Vec<u8>> = (0..5).map(|i| send(&alice, &mut key, 200 + i, &format!("after {i}"))).collect();
        for (i, msg) in before.iter().enumerate() {
            assert!(
                matches!(open_with(msg, &carols), Err(GroupError::BeforeKey { index, held: 20 }) if index == i as u64),
                "message {i} sent before Carol joined opened with her key"
            );
            // Whoever held the key from the start opens it (late or out of order).
            assert_eq!(open_with(msg, &at_start).unwrap(), format!("before {i}").as_bytes());
        }
        for (i, msg) in after.iter().enumerate().rev() {
            assert_eq!(open_with(msg, &carols).unwrap(), format!("after {i}").as_bytes());
        }
    }

    #[test]
    fn a_leaked_chain_key_opens_no_earlier_message_and_a_far_jump_is_refused() {
        let alice = Identity::generate();
        let mut key = SenderKey::generate(1);
        let sent: Vec<Vec<u8>> = (0..10).map(|i| send(&alice, &mut key, i, "secret")).collect();
        // The author's current key leaks (its device is taken).
        let leaked = key.clone();
        for msg in &sent {
            assert!(matches!(open_with(msg, &leaked), Err(GroupError::BeforeKey { .. })));
        }
        // Nor can the key of one message be turned into another's: a different chain
        // point gives a different message key.
        let one = key.at(11).unwrap();
        let next = send(&alice, &mut key.at(12).unwrap(), 12, "twelve");
        assert!(matches!(open_with(&next, &one.next().next()), Err(GroupError::BeforeKey { .. })));
        assert_eq!(open_with(&next, &one).unwrap(), b"twelve");

        let far = key.at(key.index + MAX_CHAIN_SKIP + 1).unwrap_err();
        assert!(matches!(far, GroupError::TooFarAhead { .. }));
        let mut forged_far = SenderKey { index: key.index + MAX_CHAIN_SKIP + 1, ..key.clone() };
        let msg = send(&alice, &mut forged_far, 13, "far");
        assert!(matches!(open_with(&msg, &key), Err(GroupError::TooFarAhead { .. })));
    }

    #[test]
    fn a_version_2_message_opens_with_the_generations_key_at_the_chain_start() {
        let alice = Identity::generate();
        let key = SenderKey::generate(1);
        // Sealed as before the chain: the generation's key itself, no index.
        let author_bytes = alice.peer_id().to_bytes();
        let nonce: [u8; 24] = [7; 24];
        let header = header_bytes(G, &author_bytes, 1, 5, nonce, None).unwrap();
        let body = XChaCha20Poly1305::new((&key.key).into()).encrypt(&XNonce::from(nonce), Payload { msg: b"old", aad: &header }).unwrap();
        let sig = alice.sign(&signed_bytes(&header, &body));
        let inner = wire::encode(&Inner { author: author_bytes, generation: 1, seq: 5, index: None, nonce, body, sig }).unwrap();
        let outer_nonce = [9; 24];
        let sealed = outer_cipher(&secret()).encrypt(&XNonce::from(outer_nonce), Payload { msg: &inner, aad: OUTER_AAD }).unwrap();
        let msg = wire::encode(&Outer { v: LEGACY_VERSION, nonce: outer_nonce, sealed }).unwrap();
        assert_eq!(open_with(&msg, &key).unwrap(), b"old");
        assert!(matches!(open_with(&msg, &key.next()), Err(GroupError::BeforeKey { .. })));
    }

    #[test]
    fn outsiders_see_neither_group_nor_author() {
        let alice = Identity::generate();
        let group = GroupId([0xab; 16]);
        let msg = seal(&alice, group, &secret(), &SenderKey::generate(1), 1, b"hi").unwrap();
        let author = alice.peer_id().to_bytes();
        let contains = |needle: &[u8]| msg.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&group.0), "the group id is not in the clear");
        assert!(!contains(&author), "the author is not in the clear");
        assert!(!contains(&author[author.len() - 16..]), "nor part of it");
        let outer: Outer = wire::decode(&msg, MAX_MESSAGE_LEN).unwrap();
        assert_eq!(outer.v, MESSAGE_VERSION);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = open(&bytes, G, &secret(), |_| true, |_, _| Some(SenderKey { generation: 1, index: 0, key: [0; 32] }));
        }
    }
}
