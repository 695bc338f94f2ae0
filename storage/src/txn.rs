//! The transactional view used by operations that span trees.
//!
//! [`Inner::transact`](crate::store::Inner::transact) runs a closure over one
//! sled transaction covering messages, their index, the unread set,
//! conversations, the outbox and the tombstones, so every cross-tree
//! invariant (a message and its index entry; `unread` matching the unread
//! set; an outgoing message and its outbox entry; a deleted message and its
//! tombstone) is kept atomically. The closure may be retried on conflict and
//! must have no other side effects.
//!
//! sled transactions cannot scan, so operations that find messages by id
//! alone look their keys up first ([`Inner::keys_with_id`](crate::store::Inner))
//! and pass them in; a key whose message went away meanwhile is skipped.

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionalTree,
};

use crate::codec::{decode, encode};
use crate::conversations::Conversation;
use crate::error::StoreError;
use crate::keys::{self, MessageKey};
use crate::messages::{Direction, Inserted, Message, MessageState};
use crate::outbox::OutboxEntry;
use crate::replay::{self, Refusal};
use crate::schema::{CONVERSATIONS, MESSAGES};
use crate::types::{ConversationId, MessageId};

/// Result of a step inside a transaction.
pub(crate) type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

/// Aborts the transaction with a [`StoreError`].
fn abort<T>(r: Result<T, StoreError>) -> TxResult<T> {
    r.map_err(ConflictableTransactionError::Abort)
}

/// The trees of one cross-tree transaction.
pub(crate) struct Tx<'a> {
    pub(crate) messages: &'a TransactionalTree,
    pub(crate) index: &'a TransactionalTree,
    pub(crate) unread: &'a TransactionalTree,
    pub(crate) conversations: &'a TransactionalTree,
    pub(crate) outbox: &'a TransactionalTree,
    pub(crate) tombstones: &'a TransactionalTree,
}

impl Tx<'_> {
    /// The conversation, or abort with `NotFound`.
    pub(crate) fn conversation(&self, id: ConversationId) -> TxResult<Conversation> {
        match self.conversations.get(id.0)? {
            Some(v) => abort(decode(CONVERSATIONS, &v)),
            None => abort(Err(StoreError::not_found("conversation", id))),
        }
    }

    pub(crate) fn put_conversation(&self, conv: &Conversation) -> TxResult<()> {
        self.conversations
            .insert(&conv.id.0[..], abort(encode(conv))?)?;
        Ok(())
    }

    /// The message stored under `key`; its absence is corruption (callers got
    /// the key from the index or the unread set).
    pub(crate) fn message_at(&self, key: &MessageKey) -> TxResult<Message> {
        match self.messages.get(key)? {
            Some(v) => abort(decode(MESSAGES, &v)),
            None => abort(Err(StoreError::corrupt(
                MESSAGES,
                "a key in an index points nowhere",
            ))),
        }
    }

    pub(crate) fn put_message(&self, key: &MessageKey, msg: &Message) -> TxResult<()> {
        self.messages.insert(&key[..], abort(encode(msg))?)?;
        Ok(())
    }

    /// Idempotent insert of a message plus its index entry, unread entry and
    /// conversation counters (see [`Messages::insert`](crate::Messages::insert)).
    /// A duplicate is told apart before a refusal, so a sender retrying a
    /// message we hold hears that we hold it, however old it is.
    pub(crate) fn insert_message(&self, msg: &Message) -> TxResult<Inserted> {
        let reference = msg.ref_key();
        if self.index.get(reference)?.is_some() {
            return Ok(Inserted::Duplicate);
        }
        if self.tombstones.get(reference)?.is_some() {
            return Ok(Inserted::Refused(Refusal::Deleted));
        }
        if let Some(refusal) = replay::window(msg) {
            return Ok(Inserted::Refused(refusal));
        }
        let mut conv = self.conversation(msg.conversation)?;
        let key = msg.key();
        self.put_message(&key, msg)?;
        self.index.insert(&reference[..], &key[..])?;
        if msg.is_unread() {
            self.unread.insert(&key[..], &[][..])?;
            conv.unread = conv.unread.saturating_add(1);
        }
        conv.last_activity_ms = conv.last_activity_ms.max(msg.activity_ms());
        conv.last_lamport = conv.last_lamport.max(msg.lamport);
        self.put_conversation(&conv)?;
        Ok(Inserted::New)
    }

    /// Of the messages under `keys` (all with one id), ours (outgoing) if
    /// there is one, else the first; keys whose message is gone are skipped.
    fn resolve(&self, keys: &[MessageKey]) -> TxResult<Option<(MessageKey, Message)>> {
        let mut first = None;
        for key in keys {
            let Some(v) = self.messages.get(key)? else {
                continue;
            };
            let msg: Message = abort(decode(MESSAGES, &v))?;
            if msg.direction == Direction::Outgoing {
                return Ok(Some((*key, msg)));
            }
            first.get_or_insert((*key, msg));
        }
        Ok(first)
    }

    /// Moves the message with this id (found under `keys`, resolved as
    /// [`Messages::get`](crate::Messages::get) does) to `state` if that is a
    /// forward move (see [`MessageState::can_become`]), keeping the unread
    /// count in step; removes its outbox entry if asked, whether or not the
    /// state moved. Aborts with `NotFound` if there is no such message.
    pub(crate) fn set_state(
        &self,
        id: MessageId,
        keys: &[MessageKey],
        state: MessageState,
        remove_outbox: bool,
    ) -> TxResult<Option<MessageState>> {
        if remove_outbox {
            self.outbox.remove(&id.0[..])?;
        }
        let Some((key, mut msg)) = self.resolve(keys)? else {
            return abort(Err(StoreError::not_found("message", id)));
        };
        self.move_state(&key, &mut msg, state)
    }

    /// Like [`Tx::set_state`], but an id that is not a message is `None`
    /// (its outbox entry still removed on request) instead of an abort.
    pub(crate) fn set_state_if_message(
        &self,
        id: MessageId,
        keys: &[MessageKey],
        state: MessageState,
        remove_outbox: bool,
    ) -> TxResult<Option<MessageState>> {
        if remove_outbox {
            self.outbox.remove(&id.0[..])?;
        }
        match self.resolve(keys)? {
            Some((key, mut msg)) => self.move_state(&key, &mut msg, state),
            None => Ok(None),
        }
    }

    fn move_state(
        &self,
        key: &MessageKey,
        msg: &mut Message,
        state: MessageState,
    ) -> TxResult<Option<MessageState>> {
        if !msg.state.can_become(state) {
            return Ok(None);
        }
        let was_unread = msg.is_unread();
        msg.state = state;
        self.put_message(key, msg)?;
        if was_unread && !msg.is_unread() {
            self.unread.remove(&key[..])?;
            let mut conv = self.conversation(msg.conversation)?;
            conv.unread = conv.unread.saturating_sub(1);
            self.put_conversation(&conv)?;
        }
        Ok(Some(state))
    }

    /// Deletes the message under `key` with its index and unread entries,
    /// leaving a tombstone if a replay of it could pass the window at
    /// `now_ms`. Does not touch its conversation.
    pub(crate) fn delete_message(&self, key: &MessageKey, now_ms: u64) -> TxResult<()> {
        let Some(v) = self.messages.remove(&key[..])? else {
            return Ok(());
        };
        let msg: Message = abort(decode(MESSAGES, &v))?;
        let reference = keys::ref_of(key);
        self.unread.remove(&key[..])?;
        self.index.remove(reference)?;
        if replay::needs_tombstone(msg.sent_at_ms, now_ms) {
            self.tombstones
                .insert(reference, &msg.sent_at_ms.to_be_bytes()[..])?;
        }
        Ok(())
    }

    /// Marks the listed unread messages of `conv` read, skipping any that are
    /// no longer unread; returns them as updated.
    pub(crate) fn mark_read(
        &self,
        conv: ConversationId,
        keys: &[MessageKey],
    ) -> TxResult<Vec<Message>> {
        let mut c = self.conversation(conv)?;
        let mut read = Vec::new();
        for key in keys {
            if self.unread.remove(&key[..])?.is_none() {
                continue;
            }
            let mut msg = self.message_at(key)?;
            msg.state = MessageState::Read;
            self.put_message(key, &msg)?;
            read.push(msg);
        }
        let n = u32::try_from(read.len()).unwrap_or(u32::MAX);
        c.unread = c.unread.saturating_sub(n);
        self.put_conversation(&c)?;
        Ok(read)
    }

    /// Stores an outbox entry (replacing one with the same id).
    pub(crate) fn put_outbox(&self, entry: &OutboxEntry) -> TxResult<()> {
        self.outbox.insert(&entry.id.0[..], abort(encode(entry))?)?;
        Ok(())
    }
}
