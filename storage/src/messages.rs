//! Messages: the `messages` tree ordered per conversation, and its index.
//!
//! A message is identified by (author, id); see [`crate::keys`] for the key
//! layout. A conversation is one contiguous key range in
//! (lamport, id, author digest) order, so paging is a reverse range scan.
//! `message_index` maps `id ‖ author digest` to the message's key, making
//! lookup by (author, id), idempotent insert and lookups by id alone (a
//! prefix scan) O(log n). Inserting also updates the conversation in the same
//! transaction (see [`Messages::insert`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::{decode, fixed};
use crate::error::{StoreError, db};
use crate::keys::{self, KEY_LEN, MessageKey, REF_LEN, RefKey};
use crate::replay::{self, Refusal};
use crate::schema::{MESSAGE_INDEX, MESSAGES};
use crate::store::Inner;
use crate::types::{ConversationId, MessageId};

/// Delivery state of a message.
///
/// Ordered by progress: `Failed < Pending < Sent < Delivered < Read`.
/// [`MessageState::can_become`] gives the allowed transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Gave up sending; the user may retry (back to `Pending`).
    Failed,
    /// Waiting in the outbox.
    Pending,
    /// Accepted by the peer or by a relay.
    Sent,
    /// End-to-end receipt from the recipient.
    Delivered,
    /// The recipient (or, for incoming messages, the user) has read it.
    Read,
}

impl MessageState {
    /// Whether `self → next` is a forward move: up the progress order, plus
    /// `Pending → Failed`. Moving to the same state is not a move. Once a
    /// message is `Sent`, it can no longer fail; a late receipt may still move
    /// a `Failed` message to `Sent`, `Delivered` or `Read`.
    pub fn can_become(self, next: MessageState) -> bool {
        match next {
            MessageState::Failed => self == MessageState::Pending,
            _ => next > self,
        }
    }
}

/// Who wrote a message, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Written by the local user.
    Outgoing,
    /// Received from a peer.
    Incoming,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Random id chosen by the author; receivers de-duplicate by (author, id).
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// The author's peer id.
    pub author: String,
    /// Lamport counter; with the id (and the author), orders messages within
    /// a conversation.
    pub lamport: u64,
    /// Author's wall clock when sent, in ms since the Unix epoch.
    pub sent_at_ms: u64,
    /// Local wall clock when received (for outgoing: when written), in ms.
    /// For incoming messages it is also the "now" of the replay window (see
    /// [`REPLAY_WINDOW`](crate::REPLAY_WINDOW)).
    pub received_at_ms: u64,
    /// The text.
    pub text: String,
    /// Delivery state.
    pub state: MessageState,
    /// Outgoing or incoming.
    pub direction: Direction,
    /// The file it carries (then `text` is its caption, possibly empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<crate::files::FileRef>>,
}

impl Message {
    /// The local time this message makes its conversation active: when it was
    /// received, or for outgoing messages when it was sent. (A peer's
    /// `sent_at_ms` is not trusted to move a conversation.)
    pub fn activity_ms(&self) -> u64 {
        match self.direction {
            Direction::Incoming => self.received_at_ms,
            Direction::Outgoing => self.sent_at_ms,
        }
    }

    /// Whether it counts towards its conversation's unread count.
    pub(crate) fn is_unread(&self) -> bool {
        self.direction == Direction::Incoming && self.state != MessageState::Read
    }

    /// Its key in the `messages` tree.
    pub(crate) fn key(&self) -> MessageKey {
        keys::message_key(self.conversation, self.lamport, self.id, &self.author)
    }

    /// Its key in `message_index` and `tombstones`.
    pub(crate) fn ref_key(&self) -> RefKey {
        keys::ref_key(self.id, &self.author)
    }
}

/// Outcome of an idempotent insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inserted {
    /// The message was new and has been stored.
    New,
    /// A message with this author and id was already stored; nothing changed.
    Duplicate,
    /// Not stored, and never will be: it was deleted, or it is outside the
    /// replay window (see [`Refusal`]).
    Refused(Refusal),
}

/// How much a conversation holds (see [`Messages::usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Number of messages.
    pub messages: usize,
    /// Sum of their texts' lengths, in bytes.
    pub text_bytes: usize,
}

/// Handle to the messages table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Messages {
    pub(crate) inner: Arc<Inner>,
}

impl Messages {
    /// The message with this id. Ids are chosen by their authors, so several
    /// authors may have used one: then our own (outgoing) message is returned
    /// if there is one, else the one whose author sorts first in key order.
    /// Use [`get_from`](Self::get_from) where the author is known.
    pub fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let keys = self.inner.keys_with_id(id)?;
        let mut first = None;
        for key in &keys {
            let msg = self.at(key)?;
            if msg.direction == Direction::Outgoing {
                return Ok(Some(msg));
            }
            first.get_or_insert(msg);
        }
        Ok(first)
    }

    /// The message `author` wrote with this id, if stored.
    pub fn get_from(&self, author: &str, id: MessageId) -> Result<Option<Message>, StoreError> {
        let t = &self.inner.trees;
        match t.message_index.get(keys::ref_key(id, author)).map_err(db)? {
            Some(key) => self.at(&fixed(MESSAGE_INDEX, &key)?).map(Some),
            None => Ok(None),
        }
    }

    /// The message under `key` (taken from an index: its absence is corruption).
    fn at(&self, key: &MessageKey) -> Result<Message, StoreError> {
        match self.inner.trees.messages.get(key).map_err(db)? {
            Some(v) => decode(MESSAGES, &v),
            None => Err(StoreError::corrupt(
                MESSAGES,
                "an index entry points nowhere",
            )),
        }
    }

    /// Stores a message unless one with the same author and id exists (then
    /// nothing changes, even if the contents differ) or it is refused (a
    /// deleted message, or an incoming one outside the replay window: see
    /// [`Refusal`]). In the same transaction the conversation's
    /// `last_activity_ms` and `last_lamport` move up to the message's, and an
    /// unread incoming message increments `unread`.
    ///
    /// Fails with [`StoreError::NotFound`] if the conversation does not exist
    /// (create it first with [`Conversations::get_or_create`](crate::Conversations::get_or_create)).
    /// Not flushed.
    pub fn insert(&self, msg: &Message) -> Result<Inserted, StoreError> {
        self.inner.transact(|tx| tx.insert_message(msg))
    }

    /// Why [`insert`](Self::insert) would refuse `msg`, without writing
    /// anything: `None` if it would store it or already holds it. Lets a
    /// caller skip the side effects of a message that will not be stored
    /// (e.g. creating a contact request for a replayed, deleted message).
    pub fn refusal(&self, msg: &Message) -> Result<Option<Refusal>, StoreError> {
        let t = &self.inner.trees;
        let key = msg.ref_key();
        if t.message_index.contains_key(key).map_err(db)? {
            return Ok(None);
        }
        if t.tombstones.contains_key(key).map_err(db)? {
            return Ok(Some(Refusal::Deleted));
        }
        Ok(replay::window(msg))
    }

    /// Pages backwards from the newest message: the messages of `conv`
    /// ordered before `before` (exclusive; `None` starts after the newest),
    /// returned oldest first, in (lamport, id, author digest) order.
    ///
    /// `before` is an id alone. If several authors used it in `conv` (only a
    /// hostile author makes that happen), it means the oldest of them, and a
    /// page is extended past `limit` until its first message is the oldest
    /// with its id in `conv`. So passing the first message of a page as the
    /// next `before` still visits every message exactly once; pages longer
    /// than `limit` happen only in such a conversation. Fails with
    /// [`StoreError::NotFound`] if `before` is not a message of `conv`.
    pub fn page(
        &self,
        conv: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let t = &self.inner.trees;
        let iter = match before {
            None => t.messages.scan_prefix(conv.0),
            Some(id) => match self.oldest_in(conv, id)? {
                Some(key) => t.messages.range(conv.0.as_slice()..key.as_slice()),
                None => {
                    return Err(StoreError::not_found(
                        "message",
                        format_args!("{id} in conversation {conv}"),
                    ));
                }
            },
        };
        let mut page = Vec::new();
        for kv in iter.rev() {
            if page.len() >= limit {
                match page.last() {
                    Some((key, msg)) if !self.is_oldest_in(conv, msg, key)? => {}
                    _ => break,
                }
            }
            let (key, value) = kv.map_err(db)?;
            let key: MessageKey = fixed(MESSAGES, &key)?;
            page.push((key, decode::<Message>(MESSAGES, &value)?));
        }
        Ok(page.into_iter().rev().map(|(_, msg)| msg).collect())
    }

    /// The key of the oldest message of `conv` with this id.
    fn oldest_in(
        &self,
        conv: ConversationId,
        id: MessageId,
    ) -> Result<Option<MessageKey>, StoreError> {
        Ok(self
            .inner
            .keys_with_id(id)?
            .into_iter()
            .filter(|k| k.starts_with(&conv.0))
            .min())
    }

    /// Whether `msg` (under `key`) is the oldest message of `conv` with its id.
    fn is_oldest_in(
        &self,
        conv: ConversationId,
        msg: &Message,
        key: &MessageKey,
    ) -> Result<bool, StoreError> {
        Ok(self
            .oldest_in(conv, msg.id)?
            .is_none_or(|oldest| oldest >= *key))
    }

    /// Number of messages stored in `conv` (a scan: O(messages)).
    pub fn count(&self, conv: ConversationId) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self.inner.trees.messages.scan_prefix(conv.0).keys() {
            k.map_err(db)?;
            n += 1;
        }
        Ok(n)
    }

    /// How many messages `conv` holds and how many bytes of text (a scan
    /// that decodes every message: O(messages)).
    pub fn usage(&self, conv: ConversationId) -> Result<Usage, StoreError> {
        let mut usage = Usage::default();
        for v in self.inner.trees.messages.scan_prefix(conv.0).values() {
            let msg: Message = decode(MESSAGES, &v.map_err(db)?)?;
            usage.messages += 1;
            usage.text_bytes = usage.text_bytes.saturating_add(msg.text.len());
        }
        Ok(usage)
    }

    /// The newest message of `conv` in (lamport, id, author digest) order, if any.
    pub fn latest(&self, conv: ConversationId) -> Result<Option<Message>, StoreError> {
        match self.inner.trees.messages.scan_prefix(conv.0).next_back() {
            Some(kv) => decode(MESSAGES, &kv.map_err(db)?.1).map(Some),
            None => Ok(None),
        }
    }
}

impl Inner {
    /// The keys of every message with this id, whatever its author (a prefix
    /// scan of the index; usually one key).
    pub(crate) fn keys_with_id(&self, id: MessageId) -> Result<Vec<MessageKey>, StoreError> {
        self.trees
            .message_index
            .scan_prefix(id.0)
            .map(|kv| {
                let (k, v) = kv.map_err(db)?;
                if k.len() != REF_LEN {
                    return Err(StoreError::corrupt(
                        MESSAGE_INDEX,
                        format!("key of {} bytes", k.len()),
                    ));
                }
                fixed::<KEY_LEN>(MESSAGE_INDEX, &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::MessageState::{self, *};

    #[test]
    fn transitions() {
        let all = [Failed, Pending, Sent, Delivered, Read];
        let allowed = |a: MessageState, b: MessageState| a.can_become(b);
        for a in all {
            assert!(!allowed(a, a), "{a:?} → itself is not a move");
        }
        assert!(allowed(Pending, Sent) && allowed(Sent, Delivered) && allowed(Delivered, Read));
        assert!(allowed(Pending, Read), "states may be skipped");
        assert!(allowed(Pending, Failed) && allowed(Failed, Pending));
        assert!(!allowed(Sent, Failed) && !allowed(Read, Failed) && !allowed(Delivered, Failed));
        assert!(!allowed(Read, Delivered) && !allowed(Delivered, Sent) && !allowed(Sent, Pending));
        assert!(allowed(Failed, Delivered), "a late receipt is a fact");
    }
}
