//! Conversations: one per direct peer or group, keyed by id.
//!
//! A conversation carries the counters the conversation list needs (last
//! activity, unread count, highest Lamport value). sled keeps the record as
//! created; the counters come from the message log's index, which every
//! message operation keeps up to date.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use sled::Transactional;

use crate::codec::encode;
use crate::error::{StoreError, db, tx};
use crate::keys::REF_LEN;
use crate::replay;
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
            Some(v) => Conversation::read(&v, &self.inner.log).map(Some),
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
        // Nearly always it exists (every received message asks): a plain read
        // first, as a sled transaction writes to sled's log even when it only reads.
        if let Some(v) = self.inner.trees.conversations.get(id.0).map_err(db)? {
            return Conversation::read(&v, &self.inner.log);
        }
        self.create(id, kind, now_ms)
    }

    /// [`get_or_create`](Self::get_or_create) for a caller that needs only the
    /// conversation to exist: an existing one is neither decoded nor given its
    /// counters (a received message asks this for every message).
    pub fn ensure(&self, id: ConversationId, kind: ConversationKind, now_ms: u64) -> Result<(), StoreError> {
        if self.inner.trees.conversations.contains_key(id.0).map_err(db)? {
            return Ok(());
        }
        self.create(id, kind, now_ms).map(drop)
    }

    /// Creates conversation `id` unless a concurrent writer did; returns it.
    fn create(&self, id: ConversationId, kind: ConversationKind, now_ms: u64) -> Result<Conversation, StoreError> {
        let fresh = Conversation {
            id,
            kind,
            last_activity_ms: now_ms,
            unread: 0,
            last_lamport: 0,
        };
        let encoded = encode(&fresh)?;
        let conv = tx(self.inner.trees.conversations.transaction(|t| {
            use sled::transaction::ConflictableTransactionError::Abort;
            match t.get(id.0)? {
                Some(v) => crate::codec::decode(crate::schema::CONVERSATIONS, &v).map_err(Abort),
                None => {
                    t.insert(&id.0[..], encoded.as_slice())?;
                    Ok(fresh.clone())
                }
            }
        }))?;
        Ok(conv.with_counters(&self.inner.log))
    }

    /// Makes `last_lamport` of conversation `id` at least `floor` from now on, so its
    /// next message gets a higher value, in memory only: the caller sets it again
    /// at every start for as long as it is needed. A sender that may have lost, in
    /// a crash, messages its contact received (docs/PROTOCOL.md, *Delivery*, *Sending ahead*) gives
    /// its next ones values above theirs, so that they stay in the order written.
    pub fn raise_lamport(&self, id: ConversationId, floor: u64) {
        let mut state = self.inner.log.lock();
        let current = state.lamport_floors.entry(id).or_default();
        *current = (*current).max(floor);
    }

    /// The highest Lamport value of conversation `id`'s messages (0 if none), or its
    /// raised floor if higher; from the log's index in memory, so it reads no record
    /// and cannot fail.
    pub fn highest_lamport(&self, id: ConversationId) -> u64 {
        let state = self.inner.log.lock();
        let stored = state.index.conversation(id).map_or(0, |c| c.last_lamport);
        stored.max(state.lamport_floors.get(&id).copied().unwrap_or(0))
    }

    /// All conversations, most recently active first (ties by id).
    pub fn list(&self) -> Result<Vec<Conversation>, StoreError> {
        let mut all = self
            .inner
            .trees
            .conversations
            .iter()
            .values()
            .map(|v| Conversation::read(&v.map_err(db)?, &self.inner.log))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| {
            b.last_activity_ms
                .cmp(&a.last_activity_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok(all)
    }

    /// Removes a conversation and all its messages; returns whether it
    /// existed. Each message leaves a tombstone while a replay of it could
    /// still pass the replay window (see [`crate::REPLAY_WINDOW`]), so a peer
    /// replaying it cannot bring it back; expired tombstones are pruned.
    ///
    /// The record and the tombstones go first and are flushed, then the
    /// messages leave the log (not synced: the caller's flush makes that
    /// durable). A crash in between leaves messages of a conversation that no
    /// longer exists in the log, and opening forgets them.
    pub fn remove(&self, id: ConversationId, now_ms: u64) -> Result<bool, StoreError> {
        let t = &self.inner.trees;
        let mut batch = self.inner.log.batch();
        let slots: Vec<([u8; REF_LEN], crate::msglog::index::Slot)> = match batch.index().conversation(id) {
            // Its changes (edits, deletes, reactions, hides) go too, tombstoned
            // like its messages, so that no replay brings one back.
            Some(c) => c.entries().iter().chain(c.changes().iter().map(|c| &c.entry)).map(|e| (e.key.1, e.slot)).collect(),
            None => Vec::new(),
        };
        let mut tombstones = Vec::new();
        let reader = batch.reader();
        for (reference, slot) in &slots {
            let msg = reader.read(slot)?;
            if replay::needs_tombstone(msg.sent_at_ms, now_ms) {
                tombstones.push((*reference, msg.sent_at_ms));
            }
        }
        let existed = tx((&t.conversations, &t.tombstones).transaction(|(conversations, stones)| {
            for (reference, sent_at_ms) in &tombstones {
                stones.insert(&reference[..], &sent_at_ms.to_be_bytes()[..])?;
            }
            Ok(conversations.remove(&id.0)?.is_some())
        }))?;
        // Its mute and draft go with it (a re-added contact starts afresh).
        t.mutes.remove(id.0).map_err(db)?;
        t.drafts.remove(id.0).map_err(db)?;
        crate::receipts::GroupReceipts { inner: self.inner.clone() }.forget(id)?;
        if !slots.is_empty() {
            self.inner.flush_sled()?;
            batch.forget(id)?;
        }
        batch.commit()?;
        replay::prune(&t.tombstones, now_ms)?;
        Ok(existed)
    }
}
