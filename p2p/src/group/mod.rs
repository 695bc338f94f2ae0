//! Groups (issue 5), the parts that need no network: membership as a set of signed
//! operations that every member folds to the same state, and sender-key encryption
//! of group messages.
//!
//! Not yet wired to the node: distribution of operations and sender keys over the 1:1
//! channel, the gossipsub topic and the relays' group log come next.

pub mod membership;
pub mod sender_key;

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
