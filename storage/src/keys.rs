//! Key layout of the message tables (schema version 2).
//!
//! A message is identified by its author *and* its id: ids are chosen by
//! authors, so an id alone would let one author claim another's id first and
//! suppress the real message. Keys therefore end in a fixed-size digest of the
//! author:
//!
//! - `messages`: `conversation (16) ‖ lamport (u64 BE) ‖ id (16) ‖ author digest (16)`
//!   ([`MessageKey`]), so a conversation is one contiguous range in
//!   (lamport, id, author digest) order;
//! - `message_index` and `tombstones`: `id (16) ‖ author digest (16)`
//!   ([`RefKey`], the last 32 bytes of the message key), so a lookup by
//!   (author, id) is one `get` and a lookup by id alone one prefix scan.
//!
//! The digest is BLAKE3 in key-derivation mode truncated to 128 bits: finding
//! another author string with the same digest as a given one (a second
//! preimage) costs about 2^128 hashes, and authors are authenticated peer ids.

use crate::types::{ConversationId, ID_LEN, MessageId};

/// Length of an author digest in keys.
pub(crate) const DIGEST_LEN: usize = 16;
/// Offset of the `id ‖ author digest` suffix in a message key.
const REF_AT: usize = ID_LEN + 8;
/// Length of a key in the `messages` tree.
pub(crate) const KEY_LEN: usize = REF_AT + ID_LEN + DIGEST_LEN;
/// Length of a key in `message_index` and `tombstones`.
pub(crate) const REF_LEN: usize = ID_LEN + DIGEST_LEN;

/// A key in the `messages` tree (and the `unread` set).
pub(crate) type MessageKey = [u8; KEY_LEN];
/// `id ‖ author digest`: a key in `message_index` and `tombstones`.
pub(crate) type RefKey = [u8; REF_LEN];

/// BLAKE3 key-derivation context of the author digest; changing it changes
/// the on-disk layout.
const DIGEST_CONTEXT: &str = "kith 2026 message author digest v1";

/// The digest of an author (a peer id, opaque here) used in keys.
pub(crate) fn author_digest(author: &str) -> [u8; DIGEST_LEN] {
    let full = blake3::derive_key(DIGEST_CONTEXT, author.as_bytes());
    let mut digest = [0u8; DIGEST_LEN];
    digest.copy_from_slice(&full[..DIGEST_LEN]);
    digest
}

/// The `id ‖ author digest` key of a message.
pub(crate) fn ref_key(id: MessageId, author: &str) -> RefKey {
    let mut key = [0u8; REF_LEN];
    key[..ID_LEN].copy_from_slice(&id.0);
    key[ID_LEN..].copy_from_slice(&author_digest(author));
    key
}

/// The `messages` key of a message.
pub(crate) fn message_key(
    conversation: ConversationId,
    lamport: u64,
    id: MessageId,
    author: &str,
) -> MessageKey {
    let mut key = [0u8; KEY_LEN];
    key[..ID_LEN].copy_from_slice(&conversation.0);
    key[ID_LEN..REF_AT].copy_from_slice(&lamport.to_be_bytes());
    key[REF_AT..].copy_from_slice(&ref_key(id, author));
    key
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let key = message_key(ConversationId([1; 16]), 0x0203, MessageId([4; 16]), "ann");
        assert_eq!(&key[..16], &[1; 16]);
        assert_eq!(&key[16..24], &0x0203u64.to_be_bytes());
        assert_eq!(&key[REF_AT..], &ref_key(MessageId([4; 16]), "ann")[..]);
        assert_eq!(&key[24..40], &[4; 16]);
        assert_ne!(author_digest("ann"), author_digest("bob"));
        assert_eq!(author_digest("ann"), author_digest("ann"));
    }
}
