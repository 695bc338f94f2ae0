//! Groups: membership as a causal history of signed operations that every member
//! folds to the same state ([`membership`]), sender-key encryption of group messages
//! ([`sender_key`]) and what a group message carries ([`post`]).
//!
//! The node ([`crate::node`]) distributes operations and sender keys over the 1:1
//! end-to-end channel, publishes messages on the group's gossipsub [`topic`] and
//! appends them to the group's log on its relays ([`crate::grouplog`]). The topic,
//! the log and the outer encryption of every message derive from the group's
//! [`GroupSecret`], which only members hold: a relay or a gossip peer learns neither
//! the group's id nor who wrote what.

pub mod membership;
pub mod op;
pub mod state;
pub mod post;
pub mod sender_key;
#[cfg(test)]
pub(crate) mod test_support;

use kith_storage::{ConversationId, GroupId};
use serde::{Deserialize, Serialize};

use crate::wire;

/// BLAKE3 key-derivation context of a group's gossipsub topic name.
const TOPIC_CONTEXT: &str = "kith group topic v2";

/// The secret a group's `Create` carries: known to every member (and to former
/// members), to nobody else. Names the group's relay log and gossip topic and keys
/// the outer layer of its messages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSecret(#[serde(with = "wire::byte_array")] [u8; 32]);

impl std::fmt::Debug for GroupSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupSecret(<secret>)")
    }
}

impl GroupSecret {
    /// A fresh random secret.
    pub fn generate() -> GroupSecret {
        GroupSecret(rand::random())
    }

    /// A secret from its bytes (tests, tools).
    pub fn from_bytes(bytes: [u8; 32]) -> GroupSecret {
        GroupSecret(bytes)
    }

    /// A key derived from the secret for one purpose (`context` names it).
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }
}

/// The gossipsub topic of a group: a one-way hash of its secret, so a gossip peer
/// can neither tell which group it is nor name the topic of a group it is not in.
pub fn topic(secret: &GroupSecret) -> libp2p::gossipsub::IdentTopic {
    libp2p::gossipsub::IdentTopic::new(format!("/kith/group/2/{}", hex::encode(secret.derive(TOPIC_CONTEXT))))
}

/// Longest group name accepted from the wire, in bytes of UTF-8: the
/// [`membership::MAX_NAME_CHARS`] characters a name may have, at up to 4 bytes each.
/// Enforced while decoding an operation.
pub const MAX_NAME_BYTES: usize = 4 * membership::MAX_NAME_CHARS;

/// Largest group whose messages count who has them and who read them ("read by 3
/// of 5"): in a larger one no receipts are sent or counted, as their traffic (one
/// per member per message) would crowd the author's relay mailbox.
pub const MAX_COUNTED_MEMBERS: usize = 64;

/// The conversation that holds a group's messages (the same id on every member).
pub fn conversation(group: &GroupId) -> ConversationId {
    ConversationId(group.0)
}

/// Why a group operation or message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The bytes are not a well-formed operation or message (or exceed the size caps).
    #[error("malformed: {0}")]
    Malformed(String),
    /// The signature does not verify against the claimed author.
    #[error("bad signature")]
    BadSignature,
    /// It belongs to another group.
    #[error("wrong group")]
    WrongGroup,
    /// The author is not a member of the group.
    #[error("{0} is not a member of the group")]
    NotMember(String),
    /// No sender key of this author and generation is known (yet).
    #[error("no sender key for {author} generation {generation}")]
    UnknownKey {
        /// The author's peer id.
        author: String,
        /// The key generation named by the message.
        generation: u32,
    },
    /// Decryption failed: tampered, or sealed under another key.
    #[error("cannot decrypt")]
    Decrypt,
    /// Sealed before the point of the sender's chain we were given (we joined after
    /// it, or hold only a later key): its key cannot be derived.
    #[error("sealed at chain index {index}, before the key we hold (index {held})")]
    BeforeKey {
        /// The message's chain index.
        index: u64,
        /// The index of the key we hold.
        held: u64,
    },
    /// Its chain index lies further ahead of our key than we derive keys for.
    #[error("chain index {index} is more than {max} steps past the key we hold")]
    TooFarAhead {
        /// The message's chain index.
        index: u64,
        /// [`sender_key::MAX_CHAIN_SKIP`].
        max: u64,
    },
    /// The history must start with a `Create` operation.
    #[error("a group's history starts with its Create")]
    NoCreate,
    /// A group has exactly one `Create`, the one its id is the hash of.
    #[error("a group has exactly one Create")]
    SecondCreate,
    /// The operation builds on operations we do not hold yet.
    #[error("{} parent operation(s) not known yet", .0.len())]
    MissingParents(Vec<membership::OpId>),
    /// The author had no right to this operation in the state its parents reached.
    #[error("not permitted: {0}")]
    NoRight(String),
    /// The group's history holds [`membership::MAX_OPS`] operations.
    #[error("the group's history is full ({} operations)", membership::MAX_OPS)]
    HistoryFull,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_storage::MessageId;

    use super::membership::{MemberCard, OpKind};
    use super::post::GroupPost;
    use super::*;
    use crate::payload::MAX_TEXT_LEN;
    use crate::peer_record::MAX_ADDRS;
    use crate::wire::{self, WireError};

    fn decode(kind: &OpKind) -> Result<OpKind, WireError> {
        wire::decode(&wire::encode(kind).unwrap(), membership::MAX_OP_LEN)
    }

    fn create(name: String, relays: usize) -> OpKind {
        let owner = MemberCard { peer_id: vec![1; 38], e2e_public: [2; 32], binding: [3; 64] };
        OpKind::Create { name, owner, relays: vec![vec![4; 8]; relays], secret: GroupSecret::from_bytes([5; 32]) }
    }

    #[test]
    fn operation_limits_at_and_past_while_decoding() {
        let at = "ж".repeat(MAX_NAME_BYTES / 2);
        for kind in [create(at.clone(), MAX_ADDRS), OpKind::Rename { name: at }] {
            assert_eq!(decode(&kind).unwrap(), kind);
        }
        let past = "x".repeat(MAX_NAME_BYTES + 1);
        for kind in [create(past.clone(), 0), OpKind::Rename { name: past }] {
            let r = decode(&kind);
            assert!(matches!(r, Err(WireError::TooLong { max: MAX_NAME_BYTES, .. })), "{r:?}");
        }
        let r = decode(&create("g".into(), MAX_ADDRS + 1));
        assert!(matches!(r, Err(WireError::TooMany { max: MAX_ADDRS })), "{r:?}");
    }

    #[test]
    fn post_text_at_and_past_while_decoding() {
        let post = |text| GroupPost::Text { id: MessageId([1; 16]), lamport: 1, sent_at_ms: 1, text, file: None, link: None };
        let at = post("x".repeat(MAX_TEXT_LEN));
        assert_eq!(GroupPost::decode(&at.encode().unwrap()).unwrap(), at);
        let r = GroupPost::decode(&post("x".repeat(MAX_TEXT_LEN + 1)).encode().unwrap());
        assert!(matches!(r, Err(WireError::TooLong { max: MAX_TEXT_LEN, .. })), "{r:?}");
    }
}
