//! The message log's in-memory index: every message's place in its
//! conversation and in the file, its current state, the unread set, the
//! conversations' counters, and the outbox. Built by replaying the log at
//! open and kept up to date by every append; it holds no message text.
//!
//! It is plain data with no I/O, so every rule here is unit-tested apart from
//! the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::keys::{REF_LEN, RefKey};
use crate::messages::{Direction, MessageState};
use crate::outbox::OutboxEntry;
use crate::types::{ConversationId, ID_LEN, MessageId};

/// A message's place in its conversation: lamport, then id, then author
/// digest (the order of the earlier `messages` tree's keys).
pub(crate) type OrderKey = (u64, RefKey);

/// Where a message's CBOR lies in the file, and what may change about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Offset of the CBOR in the file.
    pub(crate) at: u64,
    /// Its length.
    pub(crate) len: u32,
    /// The current state (the CBOR holds the state it was written with).
    pub(crate) state: MessageState,
    pub(crate) direction: Direction,
}

impl Slot {
    fn is_unread(&self) -> bool {
        self.direction == Direction::Incoming && self.state != MessageState::Read
    }
}

/// One conversation's messages and counters.
#[derive(Debug, Default)]
pub(crate) struct ConvIndex {
    pub(crate) messages: BTreeMap<OrderKey, Slot>,
    pub(crate) unread: BTreeSet<OrderKey>,
    /// The latest activity of any message (see `Message::activity_ms`).
    pub(crate) last_activity_ms: u64,
    pub(crate) last_lamport: u64,
}

/// A located message: its conversation, order key and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) conversation: ConversationId,
    pub(crate) key: OrderKey,
    pub(crate) slot: Slot,
}

/// The whole index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    convs: HashMap<ConversationId, ConvIndex>,
    /// Reference → conversation and lamport; ordered so that every author's
    /// use of one id is a range.
    refs: BTreeMap<RefKey, (ConversationId, u64)>,
    outbox: HashMap<MessageId, OutboxEntry>,
    /// Bytes of the file that current records need (message records and
    /// current outbox entries); the rest is garbage a compaction drops.
    live_bytes: u64,
    outbox_bytes: HashMap<MessageId, u64>,
}

impl Index {
    /// Whether a message with this reference is held.
    pub(crate) fn contains(&self, reference: &RefKey) -> bool {
        self.refs.contains_key(reference)
    }

    /// Adds a message; `false` (and nothing changes) if its reference is held.
    /// `record_len` is its whole record's size, for the live-byte count.
    pub(crate) fn add(
        &mut self,
        conversation: ConversationId,
        key: OrderKey,
        slot: Slot,
        activity_ms: u64,
        record_len: u64,
    ) -> bool {
        if self.refs.contains_key(&key.1) {
            return false;
        }
        self.refs.insert(key.1, (conversation, key.0));
        let conv = self.convs.entry(conversation).or_default();
        conv.messages.insert(key, slot);
        if slot.is_unread() {
            conv.unread.insert(key);
        }
        conv.last_activity_ms = conv.last_activity_ms.max(activity_ms);
        conv.last_lamport = conv.last_lamport.max(key.0);
        self.live_bytes += record_len;
        true
    }

    /// The message with this reference.
    pub(crate) fn find(&self, reference: &RefKey) -> Option<Found> {
        let &(conversation, lamport) = self.refs.get(reference)?;
        let key = (lamport, *reference);
        let slot = *self.convs.get(&conversation)?.messages.get(&key)?;
        Some(Found { conversation, key, slot })
    }

    /// Every message with this id, whoever wrote it, in (conversation, order key) order.
    pub(crate) fn with_id(&self, id: MessageId) -> Vec<Found> {
        let mut low = [0u8; REF_LEN];
        low[..ID_LEN].copy_from_slice(&id.0);
        let mut high = [0xffu8; REF_LEN];
        high[..ID_LEN].copy_from_slice(&id.0);
        let mut found: Vec<Found> = self.refs.range(low..=high).filter_map(|(r, _)| self.find(r)).collect();
        found.sort_by_key(|f| (f.conversation, f.key));
        found
    }

    /// The message an id alone means: ours (outgoing) if we wrote one, else the
    /// first in (conversation, order key) order.
    pub(crate) fn resolve(&self, id: MessageId) -> Option<Found> {
        let all = self.with_id(id);
        all.iter().find(|f| f.slot.direction == Direction::Outgoing).or(all.first()).copied()
    }

    /// Moves a message to `state` if that is a forward move (see
    /// [`MessageState::can_become`]), keeping the unread set in step; returns
    /// whether it moved.
    pub(crate) fn set_state(&mut self, reference: &RefKey, state: MessageState) -> bool {
        let Some(found) = self.find(reference) else {
            return false;
        };
        if !found.slot.state.can_become(state) {
            return false;
        }
        let Some(conv) = self.convs.get_mut(&found.conversation) else {
            return false;
        };
        if let Some(slot) = conv.messages.get_mut(&found.key) {
            slot.state = state;
            if !slot.is_unread() {
                conv.unread.remove(&found.key);
            }
        }
        true
    }

    /// Drops a conversation's messages; returns them.
    pub(crate) fn forget(&mut self, conversation: ConversationId) -> Option<ConvIndex> {
        let conv = self.convs.remove(&conversation)?;
        for ((_, reference), slot) in &conv.messages {
            self.refs.remove(reference);
            self.live_bytes = self.live_bytes.saturating_sub(record_len_of(slot));
        }
        Some(conv)
    }

    /// A conversation's messages and counters, if it has any message.
    pub(crate) fn conversation(&self, conversation: ConversationId) -> Option<&ConvIndex> {
        self.convs.get(&conversation)
    }

    /// Every conversation that holds messages.
    pub(crate) fn conversations(&self) -> impl Iterator<Item = ConversationId> + '_ {
        self.convs.keys().copied()
    }

    /// Queues or replaces an outbox entry; `record_len` is the size of its record.
    pub(crate) fn put_outbox(&mut self, entry: OutboxEntry, record_len: u64) {
        let id = entry.id;
        if let Some(old) = self.outbox_bytes.insert(id, record_len) {
            self.live_bytes = self.live_bytes.saturating_sub(old);
        }
        self.live_bytes += record_len;
        self.outbox.insert(id, entry);
    }

    /// Removes an outbox entry; returns whether it was queued.
    pub(crate) fn drop_outbox(&mut self, id: MessageId) -> bool {
        if let Some(old) = self.outbox_bytes.remove(&id) {
            self.live_bytes = self.live_bytes.saturating_sub(old);
        }
        self.outbox.remove(&id).is_some()
    }

    /// The outbox.
    pub(crate) fn outbox(&self) -> &HashMap<MessageId, OutboxEntry> {
        &self.outbox
    }

    /// Bytes of the file current records need.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes
    }
}

/// The size of a message's whole record, from its slot: the record header,
/// the message header and the CBOR.
pub(crate) fn record_len_of(slot: &Slot) -> u64 {
    (super::frame::RECORD_HEADER + super::record::MESSAGE_HEADER_LEN) as u64 + u64::from(slot.len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::messages::MessageState::*;

    const CONV: ConversationId = ConversationId([1; 16]);

    fn reference(id: u8, author: u8) -> RefKey {
        let mut r = [author; REF_LEN];
        r[..ID_LEN].copy_from_slice(&[id; ID_LEN]);
        r
    }

    fn slot(direction: Direction, state: MessageState) -> Slot {
        Slot { at: 100, len: 50, state, direction }
    }

    #[test]
    fn a_reference_is_added_once_and_counters_follow() {
        let mut index = Index::default();
        let r = reference(1, 1);
        assert!(index.add(CONV, (5, r), slot(Direction::Incoming, Delivered), 1_000, 10));
        assert!(!index.add(CONV, (9, r), slot(Direction::Incoming, Delivered), 9_000, 10), "same reference");
        let c = index.conversation(CONV).unwrap();
        assert_eq!((c.messages.len(), c.unread.len(), c.last_lamport, c.last_activity_ms), (1, 1, 5, 1_000));
        assert!(index.add(CONV, (3, reference(2, 1)), slot(Direction::Outgoing, Pending), 500, 10));
        let c = index.conversation(CONV).unwrap();
        assert_eq!((c.unread.len(), c.last_lamport, c.last_activity_ms), (1, 5, 1_000), "ours are never unread; maxima kept");
    }

    #[test]
    fn states_only_move_forward_and_reading_leaves_the_unread_set() {
        let mut index = Index::default();
        let r = reference(1, 1);
        index.add(CONV, (1, r), slot(Direction::Incoming, Delivered), 1, 10);
        assert!(!index.set_state(&r, Sent), "backwards");
        assert!(!index.set_state(&r, Delivered), "same");
        assert_eq!(index.conversation(CONV).unwrap().unread.len(), 1);
        assert!(index.set_state(&r, Read));
        assert_eq!(index.find(&r).unwrap().slot.state, Read);
        assert!(index.conversation(CONV).unwrap().unread.is_empty());
        assert!(!index.set_state(&reference(9, 9), Read), "unknown");
    }

    #[test]
    fn an_id_alone_means_ours_first_then_the_first_in_order() {
        let mut index = Index::default();
        let (theirs, other, ours) = (reference(7, 1), reference(7, 2), reference(7, 3));
        index.add(CONV, (4, other), slot(Direction::Incoming, Delivered), 1, 10);
        index.add(CONV, (2, theirs), slot(Direction::Incoming, Delivered), 1, 10);
        assert_eq!(index.resolve(MessageId([7; 16])).unwrap().key.1, theirs, "lowest lamport first");
        index.add(ConversationId([9; 16]), (8, ours), slot(Direction::Outgoing, Sent), 1, 10);
        assert_eq!(index.resolve(MessageId([7; 16])).unwrap().key.1, ours);
        assert_eq!(index.with_id(MessageId([7; 16])).len(), 3);
        assert!(index.with_id(MessageId([8; 16])).is_empty());
    }

    #[test]
    fn forgetting_a_conversation_frees_its_references_and_bytes() {
        let mut index = Index::default();
        let r = reference(1, 1);
        let s = slot(Direction::Incoming, Delivered);
        index.add(CONV, (1, r), s, 1, record_len_of(&s));
        index.put_outbox(entry(3), 40);
        assert_eq!(index.live_bytes(), record_len_of(&s) + 40);
        assert_eq!(index.forget(CONV).unwrap().messages.len(), 1);
        assert!(!index.contains(&r) && index.conversation(CONV).is_none());
        assert_eq!(index.live_bytes(), 40);
        assert!(index.add(CONV, (1, r), s, 1, 1), "a forgotten reference may come back");
    }

    fn entry(id: u8) -> OutboxEntry {
        OutboxEntry {
            id: MessageId([id; 16]),
            recipient: crate::Recipient::Unreadable("x".into()),
            payload: vec![1, 2, 3],
            attempts: 0,
            next_attempt_ms: 0,
            created_at_ms: 0,
        }
    }

    #[test]
    fn the_outbox_counts_only_each_entrys_latest_record() {
        let mut index = Index::default();
        index.put_outbox(entry(1), 40);
        index.put_outbox(entry(1), 50);
        assert_eq!((index.outbox().len(), index.live_bytes()), (1, 50));
        assert!(index.drop_outbox(MessageId([1; 16])));
        assert!(!index.drop_outbox(MessageId([1; 16])));
        assert_eq!(index.live_bytes(), 0);
    }
}
