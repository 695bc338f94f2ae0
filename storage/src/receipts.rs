//! Who in a group has received and read each of our messages there: the counts
//! behind "read by 3 of 5".
//!
//! One tree, keyed by conversation id (16 bytes) ‖ message id (16 bytes) ‖ the
//! member's peer id (base58, as messages name authors); the value is one byte, the
//! furthest milestone that member reported ([`Reached`]). A milestone is only ever
//! raised: a late `delivered` after a `read` changes nothing. A conversation's
//! receipts go when it is removed. Nothing here leaves the device.

use std::sync::Arc;

use crate::error::{StoreError, db};
use crate::schema::GROUP_RECEIPTS;
use crate::store::Inner;
use crate::types::{ConversationId, MessageId};

/// How far one of our group messages got with one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reached {
    /// Stored by the member's node.
    Delivered,
    /// Shown to and marked read by the member.
    Read,
}

impl Reached {
    fn to_byte(self) -> u8 {
        match self {
            Reached::Delivered => 1,
            Reached::Read => 2,
        }
    }

    fn from_byte(byte: u8) -> Result<Reached, StoreError> {
        match byte {
            1 => Ok(Reached::Delivered),
            2 => Ok(Reached::Read),
            other => Err(StoreError::corrupt(GROUP_RECEIPTS, format!("unknown milestone {other}"))),
        }
    }
}

/// Handle to the group receipts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupReceipts {
    pub(crate) inner: Arc<Inner>,
}

fn prefix(conversation: ConversationId, id: MessageId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + 52);
    key.extend_from_slice(&conversation.0);
    key.extend_from_slice(&id.0);
    key
}

impl GroupReceipts {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.group_receipts
    }

    /// Records that `member` reached `reached` with message `id` of `conversation`;
    /// returns whether that raised what was known. Not flushed (a receipt lost in a
    /// crash only shows a count one lower).
    pub fn record(
        &self,
        conversation: ConversationId,
        id: MessageId,
        member: &str,
        reached: Reached,
    ) -> Result<bool, StoreError> {
        let mut key = prefix(conversation, id);
        key.extend_from_slice(member.as_bytes());
        let new = reached.to_byte();
        let old = self
            .tree()
            .fetch_and_update(key, |old| match old {
                Some(old) if old.first().copied().unwrap_or(0) >= new => Some(old.to_vec()),
                _ => Some(vec![new]),
            })
            .map_err(db)?;
        Ok(old.and_then(|o| o.first().copied()).is_none_or(|old| old < new))
    }

    /// Every member who reported on message `id` of `conversation`, with how far.
    pub fn of(&self, conversation: ConversationId, id: MessageId) -> Result<Vec<(String, Reached)>, StoreError> {
        let prefix = prefix(conversation, id);
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(&prefix) {
            let (k, v) = kv.map_err(db)?;
            let member = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| StoreError::corrupt(GROUP_RECEIPTS, "a member that is not UTF-8"))?;
            let reached = Reached::from_byte(v.first().copied().unwrap_or(0))?;
            out.push((member.to_owned(), reached));
        }
        Ok(out)
    }

    /// Forgets the receipts of every message of `conversation`. Not flushed.
    pub(crate) fn forget(&self, conversation: ConversationId) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for kv in self.tree().scan_prefix(conversation.0) {
            let (k, _) = kv.map_err(db)?;
            batch.remove(k);
        }
        self.tree().apply_batch(batch).map_err(db)
    }
}
