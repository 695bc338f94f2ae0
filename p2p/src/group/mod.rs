//! Groups: membership as a set of signed operations that every member folds to the
//! same state ([`membership`]), sender-key encryption of group messages
//! ([`sender_key`]) and what a group message carries ([`post`]).
//!
//! The node ([`crate::node`]) distributes operations and sender keys over the 1:1
//! end-to-end channel, publishes messages on the group's gossipsub [`topic`] and
//! appends them to the group's log on its relays ([`crate::grouplog`]).

pub mod membership;
pub mod post;
pub mod sender_key;

use kith_storage::{ConversationId, GroupId};

/// The gossipsub topic of a group: named by the same one-way hash as its relay log,
/// so neither reveals the group id.
pub fn topic(group: &GroupId) -> libp2p::gossipsub::IdentTopic {
    let id = crate::grouplog::log_id(group);
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    libp2p::gossipsub::IdentTopic::new(format!("/kith/group/1/{hex}"))
}

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
    /// The log must start with a `Create` operation.
    #[error("a group log starts with Create")]
    NoCreate,
}
