//! Conversations: one per direct peer or group, keyed by id.
//!
//! A conversation carries the counters the conversation list needs (last
//! activity, unread count, highest Lamport value), which the message
//! operations keep up to date in the same transaction as the messages.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, fixed};
use crate::error::{StoreError, db, tx};
use crate::keys::KEY_LEN;
use crate::replay;
use crate::schema::{CONVERSATIONS, MESSAGES};
use crate::store::Inner;
use crate::types::{ConversationId, GroupId};

/// What a conversation is with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// A one-to-one chat.
    Direct {
        /// The other peer's id.
        peer_id: String,
    },
    /// A group's chat.
    Group {
        /// The group.
        group_id: GroupId,
    },
}

/// A conversation and its list counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id (computed by callers, e.g. from the two peer ids).
    pub id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Latest activity (creation or a message's `activity_ms`), in ms.
    pub last_activity_ms: u64,
    /// Incoming messages not yet read.
    pub unread: u32,
    /// Highest Lamport value of its messages (0 if none).
    pub last_lamport: u64,
}

/// Handle to the conversations table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Conversations {
    pub(crate) inner: Arc<Inner>,
}

impl Conversations {
    /// The conversation with this id, if any.
    pub fn get(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        match self.inner.trees.conversations.get(id.0).map_err(db)? {
            Some(v) => decode(CONVERSATIONS, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The conversation with this id, created (empty, active at `now_ms`) if
    /// missing. An existing conversation is returned unchanged, whatever
    /// `kind` says. Atomic; not flushed.
    pub fn get_or_create(
        &self,
        id: ConversationId,
        kind: ConversationKind,
        now_ms: u64,
    ) -> Result<Conversation, StoreError> {
        let fresh = Conversation {
            id,
            kind,
            last_activity_ms: now_ms,
            unread: 0,
            last_lamport: 0,
        };
        let encoded = encode(&fresh)?;
        tx(self.inner.trees.conversations.transaction(|t| {
            use sled::transaction::ConflictableTransactionError::Abort;
            match t.get(id.0)? {
                Some(v) => decode(CONVERSATIONS, &v).map_err(Abort),
                None => {
                    t.insert(&id.0[..], encoded.as_slice())?;
                    Ok(fresh.clone())
                }
            }
        }))
    }

    /// All conversations, most recently active first (ties by id).
    pub fn list(&self) -> Result<Vec<Conversation>, StoreError> {
        let mut all = self
            .inner
            .trees
            .conversations
            .iter()
            .values()
            .map(|v| decode::<Conversation>(CONVERSATIONS, &v.map_err(db)?))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| {
            b.last_activity_ms
                .cmp(&a.last_activity_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok(all)
    }

    /// Deletes the conversation together with all its messages (and their
    /// index and unread entries) in one transaction; returns whether it
    /// existed. Outbox entries are left alone. Not flushed.
    ///
    /// Deleted messages stay deleted: each one a replay could still bring
    /// back at `now_ms` (one inside the replay window) leaves a tombstone
    /// with its `sent_at_ms`, so inserting it again is
    /// [`Refusal::Deleted`](crate::Refusal::Deleted), whichever conversation
    /// it names. Tombstones no longer needed at `now_ms` are pruned.
    pub fn remove(&self, id: ConversationId, now_ms: u64) -> Result<bool, StoreError> {
        let t = &self.inner.trees;
        let keys = t
            .messages
            .scan_prefix(id.0)
            .keys()
            .map(|k| fixed::<KEY_LEN>(MESSAGES, &k.map_err(db)?))
            .collect::<Result<Vec<_>, _>>()?;
        let existed = self.inner.transact(|tx| {
            for key in &keys {
                tx.delete_message(key, now_ms)?;
            }
            Ok(tx.conversations.remove(&id.0)?.is_some())
        })?;
        replay::prune(&t.tombstones, now_ms)?;
        Ok(existed)
    }
}
