//! Messages: the `messages` tree ordered per conversation, and its id index.
//!
//! A message's key is `conversation (16) ‖ lamport (u64 BE) ‖ id (16)`, so a
//! conversation is one contiguous key range in (lamport, id) order and paging
//! is a reverse range scan. `message_index` maps an id to that key, making
//! lookup by id, idempotent insert and `before` paging O(log n). Inserting
//! also updates the conversation in the same transaction (see
//! [`Messages::insert`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::decode;
use crate::error::{StoreError, db};
use crate::schema::MESSAGES;
use crate::store::Inner;
use crate::types::{ConversationId, ID_LEN, MessageId};

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
    /// Random id chosen by the author; receivers de-duplicate by it.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// The author's peer id.
    pub author: String,
    /// Lamport counter; with the id, orders messages within a conversation.
    pub lamport: u64,
    /// Author's wall clock when sent, in ms since the Unix epoch.
    pub sent_at_ms: u64,
    /// Local wall clock when received (for outgoing: when written), in ms.
    pub received_at_ms: u64,
    /// The text.
    pub text: String,
    /// Delivery state.
    pub state: MessageState,
    /// Outgoing or incoming.
    pub direction: Direction,
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
        let mut key = [0u8; KEY_LEN];
        key[..ID_LEN].copy_from_slice(&self.conversation.0);
        key[ID_LEN..ID_LEN + 8].copy_from_slice(&self.lamport.to_be_bytes());
        key[ID_LEN + 8..].copy_from_slice(&self.id.0);
        key
    }
}

/// Outcome of an idempotent insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inserted {
    /// The message was new and has been stored.
    New,
    /// A message with this id was already stored; nothing changed.
    Duplicate,
}

/// Length of a key in the `messages` tree.
pub(crate) const KEY_LEN: usize = ID_LEN + 8 + ID_LEN;
/// A key in the `messages` tree.
pub(crate) type MessageKey = [u8; KEY_LEN];

/// Handle to the messages table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Messages {
    pub(crate) inner: Arc<Inner>,
}

impl Messages {
    /// The message with this id, if stored.
    pub fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let t = &self.inner.trees;
        let Some(key) = t.message_index.get(id.0).map_err(db)? else {
            return Ok(None);
        };
        match t.messages.get(&key).map_err(db)? {
            Some(v) => decode(MESSAGES, &v).map(Some),
            None => Err(StoreError::corrupt(
                MESSAGES,
                format!("index entry of {id} points nowhere"),
            )),
        }
    }

    /// Stores a message unless one with the same id exists (then nothing
    /// changes, even if the contents differ). In the same transaction the
    /// conversation's `last_activity_ms` and `last_lamport` move up to the
    /// message's, and an unread incoming message increments `unread`.
    ///
    /// Fails with [`StoreError::NotFound`] if the conversation does not exist
    /// (create it first with [`Conversations::get_or_create`](crate::Conversations::get_or_create)).
    /// Not flushed.
    pub fn insert(&self, msg: &Message) -> Result<Inserted, StoreError> {
        self.inner.transact(|tx| tx.insert_message(msg))
    }

    /// Pages backwards from the newest message: the (at most) `limit`
    /// messages of `conv` ordered before `before` (exclusive; `None` starts
    /// after the newest), returned oldest first. Order is (lamport, id).
    /// Passing the first message of a page as the next `before` visits every
    /// message exactly once. Fails with [`StoreError::NotFound`] if `before`
    /// is not a message of `conv`.
    pub fn page(
        &self,
        conv: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let t = &self.inner.trees;
        let iter = match before {
            None => t.messages.scan_prefix(conv.0),
            Some(id) => {
                let key = t.message_index.get(id.0).map_err(db)?;
                match key {
                    Some(key) if key.starts_with(&conv.0) => {
                        t.messages.range(conv.0.as_slice()..key.as_ref())
                    }
                    _ => {
                        return Err(StoreError::not_found(
                            "message",
                            format_args!("{id} in conversation {conv}"),
                        ));
                    }
                }
            }
        };
        let mut page = iter
            .values()
            .rev()
            .take(limit)
            .map(|v| decode(MESSAGES, &v.map_err(db)?))
            .collect::<Result<Vec<Message>, _>>()?;
        page.reverse();
        Ok(page)
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

    /// The newest message of `conv` in (lamport, id) order, if any.
    pub fn latest(&self, conv: ConversationId) -> Result<Option<Message>, StoreError> {
        match self.inner.trees.messages.scan_prefix(conv.0).next_back() {
            Some(kv) => decode(MESSAGES, &kv.map_err(db)?.1).map(Some),
            None => Ok(None),
        }
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
