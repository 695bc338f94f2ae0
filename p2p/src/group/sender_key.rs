//! Sender keys: a group message is encrypted once by its author.
//!
//! Each member holds a symmetric sender key per group and generation, and gives it to
//! every other current member over the pairwise end-to-end channel. A message is
//! sealed with XChaCha20-Poly1305 under the author's current key (the header is the
//! associated data) and signed with the author's identity key, because a symmetric key
//! shared by all members would otherwise let any member forge messages from another.
//! When someone leaves or is removed, every remaining member starts a new generation
//! and shares it only with the remaining members, so the departed member cannot read
//! anything sent afterwards.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_storage::GroupId;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::GroupError;
use crate::identity::{Identity, verify_signature};
use crate::wire;

/// Domain separation for message signatures.
pub const MESSAGE_CONTEXT: &[u8] = b"kith/group-msg/1\0";
/// Largest encoded group message accepted.
pub const MAX_MESSAGE_LEN: usize = 96 * 1024;
const MESSAGE_VERSION: u32 = 1;

/// One generation of an author's sender key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderKey {
    /// Generation number; a new one starts whenever membership shrinks.
    pub generation: u32,
    /// The symmetric key.
    #[serde(with = "wire::byte_array")]
    pub key: [u8; 32],
}

impl std::fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKey").field("generation", &self.generation).field("key", &"<secret>").finish()
    }
}

impl SenderKey {
    /// A fresh random key of `generation`.
    pub fn generate(generation: u32) -> SenderKey {
        SenderKey { generation, key: rand::random() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    v: u32,
    group: GroupId,
    #[serde(with = "wire::bytes")]
    author: Vec<u8>,
    generation: u32,
    /// The author's per-group counter: orders its messages, names replays.
    seq: u64,
    #[serde(with = "wire::byte_array")]
    nonce: [u8; 24],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sealed {
    header: Header,
    #[serde(with = "wire::bytes")]
    ciphertext: Vec<u8>,
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

fn malformed(e: impl std::fmt::Display) -> GroupError {
    GroupError::Malformed(e.to_string())
}

fn signed_bytes(header: &Header, ciphertext: &[u8]) -> Result<Vec<u8>, GroupError> {
    let header = wire::encode(header).map_err(malformed)?;
    Ok([MESSAGE_CONTEXT, &(header.len() as u64).to_be_bytes(), &header, ciphertext].concat())
}

/// Seal `plaintext` for `group` under `key`, authored and signed by `author`.
pub fn seal(author: &Identity, group: GroupId, key: &SenderKey, seq: u64, plaintext: &[u8]) -> Result<Vec<u8>, GroupError> {
    let header = Header {
        v: MESSAGE_VERSION,
        group,
        author: author.peer_id().to_bytes(),
        generation: key.generation,
        seq,
        nonce: rand::random(),
    };
    let aad = wire::encode(&header).map_err(malformed)?;
    let cipher = XChaCha20Poly1305::new((&key.key).into());
    let ciphertext = cipher
        .encrypt(&XNonce::from(header.nonce), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| GroupError::Malformed("encryption failed".into()))?;
    let sig = author.sign(&signed_bytes(&header, &ciphertext)?);
    let sealed = Sealed { header, ciphertext, sig };
    let bytes = wire::encode(&sealed).map_err(malformed)?;
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(GroupError::Malformed(format!("message of {} bytes over {MAX_MESSAGE_LEN}", bytes.len())));
    }
    Ok(bytes)
}

/// Open a group message of `group`. `is_member` says whether an author may post now;
/// `key_of(author, generation)` finds the sender key we were given.
///
/// Checks, in order: size and shape, group, membership of the author, the author's
/// signature, then decryption. A non-member's message is refused before any key is
/// looked up.
pub fn open(
    bytes: &[u8],
    group: GroupId,
    is_member: impl Fn(&PeerId) -> bool,
    key_of: impl Fn(&PeerId, u32) -> Option<SenderKey>,
) -> Result<OpenedGroupMessage, GroupError> {
    let sealed: Sealed = wire::decode(bytes, MAX_MESSAGE_LEN).map_err(malformed)?;
    let header = &sealed.header;
    if header.v != MESSAGE_VERSION {
        return Err(GroupError::Malformed(format!("unsupported message version {}", header.v)));
    }
    if header.group != group {
        return Err(GroupError::WrongGroup);
    }
    let author = PeerId::from_bytes(&header.author).map_err(malformed)?;
    if !is_member(&author) {
        return Err(GroupError::NotMember(author.to_string()));
    }
    verify_signature(&author, &signed_bytes(header, &sealed.ciphertext)?, &sealed.sig)
        .map_err(|_| GroupError::BadSignature)?;
    let key = key_of(&author, header.generation)
        .ok_or_else(|| GroupError::UnknownKey { author: author.to_string(), generation: header.generation })?;
    let aad = wire::encode(header).map_err(malformed)?;
    let cipher = XChaCha20Poly1305::new((&key.key).into());
    let plaintext = cipher
        .decrypt(&XNonce::from(header.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
        .map_err(|_| GroupError::Decrypt)?;
    Ok(OpenedGroupMessage { author, seq: header.seq, generation: header.generation, plaintext })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const G: GroupId = GroupId([3; 16]);

    #[test]
    fn members_read_outsiders_and_stale_keys_do_not() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        let gen1 = SenderKey::generate(1);
        let gen2 = SenderKey::generate(2);
        let msg = seal(&alice, G, &gen1, 7, "привет, группа 👋".as_bytes()).unwrap();

        let keys: HashMap<(PeerId, u32), SenderKey> = [((alice.peer_id(), 1), gen1.clone())].into();
        let key_of = |p: &PeerId, g: u32| keys.get(&(*p, g)).cloned();
        let opened = open(&msg, G, |p| *p == alice.peer_id(), key_of).unwrap();
        assert_eq!(opened.plaintext, "привет, группа 👋".as_bytes());
        assert_eq!((opened.author, opened.seq, opened.generation), (alice.peer_id(), 7, 1));

        // Removed from the group: the author is no longer a member → refused unread.
        assert_eq!(open(&msg, G, |_| false, key_of), Err(GroupError::NotMember(alice.peer_id().to_string())));
        // After rotation a departed member holds only generation 1: generation 2 is closed to it.
        let after = seal(&alice, G, &gen2, 8, b"after the removal").unwrap();
        assert!(matches!(open(&after, G, |_| true, key_of), Err(GroupError::UnknownKey { generation: 2, .. })));
        // Another group, a forged author, a tampered ciphertext.
        assert_eq!(open(&msg, GroupId([4; 16]), |_| true, key_of), Err(GroupError::WrongGroup));
        let forged = seal(&mallory, G, &gen1, 1, b"i am alice").unwrap();
        let mut sealed: Sealed = wire::decode(&forged, MAX_MESSAGE_LEN).unwrap();
        sealed.header.author = alice.peer_id().to_bytes();
        let forged = wire::encode(&sealed).unwrap();
        assert_eq!(open(&forged, G, |_| true, key_of), Err(GroupError::BadSignature));
        let mut tampered = msg.clone();
        let at = tampered.len() - 70;
        tampered[at] ^= 1;
        assert!(open(&tampered, G, |_| true, key_of).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = open(&bytes, G, |_| true, |_, _| Some(SenderKey { generation: 1, key: [0; 32] }));
        }
    }
}
