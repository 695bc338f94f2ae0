//! Messages, kept in the message log (see [`crate::msglog`]).
//!
//! A message is identified by (author, id). A conversation's messages are
//! ordered by (lamport, id, author digest), so paging is a reverse range walk
//! of its in-memory index; lookups by (author, id) and by id alone are
//! O(log n); the text is read from the log file only for the messages
//! returned.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::keys::{self, MessageKey, RefKey};
use crate::msglog::index::{OrderKey, Slot};
use crate::replay::Refusal;
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
    /// The message this one answers, or changes (see [`Link`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
}

/// How a message relates to an earlier one of its conversation (named by id).
///
/// A reply is a message of its own that quotes another. An edit, a delete and a
/// reaction are *changes*: messages that travel, are stored and acknowledged like
/// any other, but are not shown as messages; they change how their target is
/// shown (see [`Messages::annotations`]). Who may make which change is decided
/// when they are read, so that a change arriving before its target (through
/// another relay, say) still counts once the target is there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Answers this message (shown quoted above the text).
    ReplyTo(MessageId),
    /// Replaces this message's text with this message's `text` (only its author's
    /// edits count; every version is kept).
    Edit(MessageId),
    /// Deletes this message for everyone (only its author's delete counts).
    Delete(MessageId),
    /// Hides this message on this node only ("delete for me"): written by the
    /// user's own node and never sent; one that came from a peer counts for nothing.
    Hide(MessageId),
    /// Adds (`on`) or takes back this author's `emoji` reaction to the message.
    React {
        /// The message reacted to.
        target: MessageId,
        /// The reaction, one emoji (at most [`MAX_EMOJI_LEN`] bytes).
        emoji: String,
        /// Whether it is added (`true`) or taken back.
        on: bool,
    },
}

/// Longest reaction, in bytes (an emoji with modifiers and joiners).
pub const MAX_EMOJI_LEN: usize = 64;

/// Most different emoji one person's reactions to one message count with; more
/// are ignored, so that no one can make a message's reactions grow without end.
pub const MAX_REACTIONS_PER_AUTHOR: usize = 8;

/// Whether `emoji` may be a reaction: 1 to [`MAX_EMOJI_LEN`] bytes, no spaces,
/// control characters or bidirectional controls (checked for ours and a peer's).
pub fn valid_emoji(emoji: &str) -> bool {
    !emoji.is_empty()
        && emoji.len() <= MAX_EMOJI_LEN
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

impl Link {
    /// The message a change changes; `None` for a reply (which is a message of its own).
    pub fn changed(&self) -> Option<MessageId> {
        match self {
            Link::ReplyTo(_) => None,
            Link::Edit(target) | Link::Delete(target) | Link::Hide(target) | Link::React { target, .. } => Some(*target),
        }
    }
}

/// How a message is shown once its changes are applied (see [`Messages::annotations`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Annotations {
    /// Its author's edits, oldest first: each later text with the author's time.
    /// The current text is the last one's (or the message's own when empty).
    pub edits: Vec<Version>,
    /// Deleted for everyone by its author (then its text and file are not shown).
    pub deleted: bool,
    /// Hidden on this node by its user ("delete for me"): not shown at all.
    pub hidden: bool,
    /// Reactions held now, one entry per emoji in the order first given, with
    /// who gave each (author peer ids, in the order they reacted).
    pub reactions: Vec<Reaction>,
}

/// One earlier or later text of an edited message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The text.
    pub text: String,
    /// The author's clock when it was written (ms since the Unix epoch).
    pub at_ms: u64,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// The peer ids that reacted with it.
    pub by: Vec<String>,
}

impl Annotations {
    /// What `changes` (the change messages aimed at `message`, in conversation
    /// order) make of it: only its author's edits and deletes count; each
    /// author's latest word on an emoji counts.
    pub fn of(message: &Message, changes: &[Message]) -> Annotations {
        let mut out = Annotations::default();
        for change in changes {
            match &change.link {
                Some(Link::Edit(target)) if *target == message.id && change.author == message.author && !out.deleted => {
                    out.edits.push(Version { text: change.text.clone(), at_ms: change.sent_at_ms });
                }
                Some(Link::Delete(target)) if *target == message.id && change.author == message.author => {
                    out.deleted = true;
                }
                Some(Link::Hide(target)) if *target == message.id && change.direction == Direction::Outgoing => {
                    out.hidden = true;
                }
                Some(Link::React { target, emoji, on }) if *target == message.id => {
                    let at = out.reactions.iter().position(|r| r.emoji == *emoji);
                    match (at, on) {
                        (_, true) if out.reactions.iter().filter(|r| r.by.contains(&change.author)).count() >= MAX_REACTIONS_PER_AUTHOR => {}
                        (Some(i), true) if !out.reactions[i].by.contains(&change.author) => {
                            out.reactions[i].by.push(change.author.clone());
                        }
                        (None, true) => out.reactions.push(Reaction { emoji: emoji.clone(), by: vec![change.author.clone()] }),
                        (Some(i), false) => out.reactions[i].by.retain(|a| *a != change.author),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        out.reactions.retain(|r| !r.by.is_empty());
        if out.deleted {
            out.edits.clear();
        }
        out
    }

    /// The text to show: the latest edit's, else the message's own; empty once deleted.
    pub fn text<'a>(&'a self, message: &'a Message) -> &'a str {
        if self.deleted {
            return "";
        }
        self.edits.last().map_or(message.text.as_str(), |v| v.text.as_str())
    }
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

/// Where a stored message is, as the index in memory knows it
/// ([`Messages::place_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its conversation.
    pub conversation: ConversationId,
    /// Whether we sent or received it.
    pub direction: Direction,
    /// Whether it is a change (an edit, a delete, a reaction, a hide) rather than
    /// a message shown.
    pub change: bool,
}

/// Handle to the messages table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Messages {
    pub(crate) inner: Arc<Inner>,
}

impl Messages {
    /// The message with this id. Ids are chosen by their authors, so several
    /// authors may have used one: then our own (outgoing) message is returned
    /// if there is one, else the one whose author digest sorts first. Use
    /// [`get_from`](Self::get_from) where the author is known.
    pub fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let (reader, found) = self.inner.log.lookup(|index| index.resolve(id));
        found.map(|f| reader.read(&f.slot)).transpose()
    }

    /// The message stored at `place` (see [`MessagePlace`](crate::MessagePlace)),
    /// if it is still there.
    pub fn at(&self, place: crate::MessagePlace) -> Result<Option<Message>, StoreError> {
        self.inner.log.message_at(place)
    }

    /// The changes (edits, deletes, reactions: see [`Link`]) stored in `conv`
    /// that name `target`, whoever wrote them, in conversation order.
    pub fn changes_to(&self, conv: ConversationId, target: MessageId) -> Result<Vec<Message>, StoreError> {
        let (reader, slots) = self.inner.log.lookup(|index| match index.conversation(conv) {
            Some(c) => c.changes_to(target).map(|e| e.slot).collect::<Vec<Slot>>(),
            None => Vec::new(),
        });
        slots.iter().map(|slot| reader.read(slot)).collect()
    }

    /// Whether the message with this id (as [`get`](Self::get) means it) is a change
    /// (see [`Link`]) rather than a message shown. Reads no text.
    pub fn is_change(&self, id: MessageId) -> bool {
        self.inner.log.lock().index.is_change(id)
    }

    /// How `message` is shown once the changes to it are applied.
    pub fn annotations(&self, message: &Message) -> Result<Annotations, StoreError> {
        Ok(Annotations::of(message, &self.changes_to(message.conversation, message.id)?))
    }

    /// Every message stored with this id, whoever wrote it, in whatever
    /// conversation (ids are chosen by authors: a peer may reuse one it saw).
    pub fn with_id(&self, id: MessageId) -> Result<Vec<Message>, StoreError> {
        let (reader, slots) = self.inner.log.lookup(|index| index.with_id(id).into_iter().map(|f| f.slot).collect::<Vec<Slot>>());
        slots.iter().map(|slot| reader.read(slot)).collect()
    }

    /// The message with this id in `conv` (the oldest, should several authors
    /// have used the id there).
    pub fn get_in(&self, conv: ConversationId, id: MessageId) -> Result<Option<Message>, StoreError> {
        let (reader, found) =
            self.inner.log.lookup(|index| index.with_id(id).into_iter().filter(|f| f.conversation == conv).min_by_key(|f| f.key));
        found.map(|f| reader.read(&f.slot)).transpose()
    }

    /// Where the message `author` wrote with this id is, if stored, from the index
    /// in memory alone (nothing is read from the disk): for checks that most
    /// messages fail, such as a peer's receipt naming ids of ours.
    pub fn place_from(&self, author: &str, id: MessageId) -> Option<Placed> {
        let (_, placed) = self.inner.log.lookup(|index| {
            index.find(&keys::ref_key(id, author)).map(|f| Placed {
                conversation: f.conversation,
                direction: f.slot.direction,
                change: index.is_change_at(f.conversation, &f.key),
            })
        });
        placed
    }

    /// The message `author` wrote with this id, if stored.
    pub fn get_from(&self, author: &str, id: MessageId) -> Result<Option<Message>, StoreError> {
        let (reader, found) = self.inner.log.lookup(|index| index.find(&keys::ref_key(id, author)));
        found.map(|f| reader.read(&f.slot)).transpose()
    }

    /// Stores a message unless one with the same author and id exists (then
    /// nothing changes, even if the contents differ) or it is refused (a
    /// deleted message, or an incoming one outside the replay window: see
    /// [`Refusal`]). The conversation's `last_activity_ms` and `last_lamport`
    /// move up to the message's, and an unread incoming message counts in
    /// `unread`.
    ///
    /// Fails with [`StoreError::NotFound`] if the conversation does not exist
    /// (create it first with [`Conversations::get_or_create`](crate::Conversations::get_or_create)).
    /// Not flushed.
    pub fn insert(&self, msg: &Message) -> Result<Inserted, StoreError> {
        let inserted = self.inner.stage_messages(std::iter::once((msg, None)))?;
        Ok(inserted.first().copied().unwrap_or(Inserted::Duplicate))
    }

    /// Why [`insert`](Self::insert) would refuse `msg`, without writing
    /// anything: `None` if it would store it or already holds it. Lets a
    /// caller skip the side effects of a message that will not be stored
    /// (e.g. creating a contact request for a replayed, deleted message).
    pub fn refusal(&self, msg: &Message) -> Result<Option<Refusal>, StoreError> {
        if self.inner.log.lock().index.contains(&msg.ref_key()) {
            return Ok(None);
        }
        self.inner.refusal_of(msg)
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
        let (reader, slots) = {
            let state = self.inner.log.lock();
            let index = &state.index;
            let oldest_in = |id: MessageId| index.with_id(id).into_iter().filter(|f| f.conversation == conv).map(|f| f.key).min();
            let bound = match before {
                None => None,
                Some(id) => match oldest_in(id) {
                    Some(key) => Some(key),
                    None => {
                        return Err(StoreError::not_found(
                            "message",
                            format_args!("{id} in conversation {conv}"),
                        ));
                    }
                },
            };
            let mut page: Vec<(OrderKey, Slot)> = Vec::new();
            if let Some(c) = index.conversation(conv) {
                let older = match bound {
                    None => c.entries(),
                    Some(key) => c.before(&key),
                };
                for entry in older.iter().rev() {
                    if page.len() >= limit {
                        // Extend the page until its first message is the oldest with its id.
                        let id = page.last().map(|(k, _)| MessageId(id_of(&k.1)));
                        match (id.and_then(oldest_in), page.last()) {
                            (Some(oldest), Some((last, _))) if oldest < *last => {}
                            _ => break,
                        }
                    }
                    page.push((entry.key, entry.slot));
                }
            }
            (state.reader(), page)
        };
        slots.iter().rev().map(|(_, slot)| reader.read(slot)).collect()
    }

    /// Number of messages stored in `conv`.
    pub fn count(&self, conv: ConversationId) -> Result<usize, StoreError> {
        Ok(self.inner.log.lock().index.conversation(conv).map_or(0, |c| c.len()))
    }

    /// How many messages `conv` holds and how many bytes of text (reads every
    /// message: O(messages)).
    pub fn usage(&self, conv: ConversationId) -> Result<Usage, StoreError> {
        let (reader, slots) = self.inner.log.lookup(|index| match index.conversation(conv) {
            Some(c) => c.entries().iter().map(|e| e.slot).collect::<Vec<Slot>>(),
            None => Vec::new(),
        });
        let mut usage = Usage::default();
        for slot in &slots {
            let msg = reader.read(slot)?;
            usage.messages += 1;
            usage.text_bytes = usage.text_bytes.saturating_add(msg.text.len());
        }
        Ok(usage)
    }

    /// The newest message of `conv` in (lamport, id, author digest) order, if any.
    pub fn latest(&self, conv: ConversationId) -> Result<Option<Message>, StoreError> {
        let (reader, slot) =
            self.inner.log.lookup(|index| index.conversation(conv).and_then(|c| c.entries().last().map(|e| e.slot)));
        slot.map(|s| reader.read(&s)).transpose()
    }
}

/// The message id at the front of a reference.
fn id_of(reference: &RefKey) -> [u8; ID_LEN] {
    let mut id = [0; ID_LEN];
    id.copy_from_slice(&reference[..ID_LEN]);
    id
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
