//! The message log's in-memory index: every message's place in its
//! conversation and in the file, its current state, the unread set, the
//! conversations' counters, the outbox, and where each key/value record's
//! value lies. Built by replaying the log at open and kept up to date by every
//! append; it holds no message text and no value.
//!
//! It is plain data with no I/O, so every rule here is unit-tested apart from
//! the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::keys::{DIGEST_LEN, REF_LEN, RefKey};
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

/// One message of a conversation's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: OrderKey,
    pub(crate) slot: Slot,
}

/// One conversation's messages and counters.
///
/// The messages are a vector sorted by [`OrderKey`] (56 bytes a message, no tree
/// nodes): messages nearly always arrive in order, so an insert is an append or
/// a short move near the end.
#[derive(Debug, Default)]
pub(crate) struct ConvIndex {
    entries: Vec<Entry>,
    /// The changes (edits, deletes, reactions; see `Link`), apart from the
    /// messages shown: sorted by key, never unread, not counted as activity.
    changes: Vec<ChangeEntry>,
    /// The keys of the changes naming each message, so that reading a message's
    /// changes does not walk every change of the conversation.
    by_target: HashMap<MessageId, Vec<OrderKey>>,
    pub(crate) unread: BTreeSet<OrderKey>,
    /// The latest activity of any message (see `Message::activity_ms`).
    pub(crate) last_activity_ms: u64,
    pub(crate) last_lamport: u64,
}

impl ConvIndex {
    /// The messages, oldest first.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The messages ordered before `key`, oldest first.
    pub(crate) fn before(&self, key: &OrderKey) -> &[Entry] {
        &self.entries[..self.entries.partition_point(|e| e.key < *key)]
    }

    /// The message or change under `key`.
    pub(crate) fn get(&self, key: &OrderKey) -> Option<&Entry> {
        match self.entries.binary_search_by(|e| e.key.cmp(key)) {
            Ok(i) => Some(&self.entries[i]),
            Err(_) => self.changes.binary_search_by(|c| c.entry.key.cmp(key)).ok().map(|i| &self.changes[i].entry),
        }
    }

    /// The slot under `key`, to change its state.
    fn slot_mut(&mut self, key: &OrderKey) -> Option<&mut Slot> {
        match self.entries.binary_search_by(|e| e.key.cmp(key)) {
            Ok(i) => Some(&mut self.entries[i].slot),
            Err(_) => {
                let i = self.changes.binary_search_by(|c| c.entry.key.cmp(key)).ok()?;
                Some(&mut self.changes[i].entry.slot)
            }
        }
    }

    /// The changes, oldest first.
    pub(crate) fn changes(&self) -> &[ChangeEntry] {
        &self.changes
    }

    /// The changes that name `target`, oldest first.
    pub(crate) fn changes_to(&self, target: MessageId) -> impl Iterator<Item = &Entry> + '_ {
        let keys = self.by_target.get(&target).map_or(&[][..], Vec::as_slice);
        keys.iter().filter_map(|key| self.changes.binary_search_by(|c| c.entry.key.cmp(key)).ok().map(|i| &self.changes[i].entry))
    }

    fn insert_change(&mut self, change: ChangeEntry) {
        let keys = self.by_target.entry(change.target).or_default();
        let at = keys.partition_point(|k| *k < change.entry.key);
        keys.insert(at, change.entry.key);
        let at = self.changes.partition_point(|c| c.entry.key < change.entry.key);
        self.changes.insert(at, change);
    }

    /// Number of messages.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn insert(&mut self, entry: Entry) {
        match self.entries.last() {
            Some(last) if last.key > entry.key => {
                let at = self.entries.partition_point(|e| e.key < entry.key);
                self.entries.insert(at, entry);
            }
            _ => self.entries.push(entry),
        }
    }
}

/// One change of a conversation's index, with the message it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChangeEntry {
    pub(crate) entry: Entry,
    pub(crate) target: MessageId,
}

/// Where a key/value record's value lies: in the file, or, when it is at most
/// [`KvSlot::INLINE`] bytes (a copy digest's time: one per message received),
/// in the slot itself, so reading it touches no disk (a start reads every
/// digest's time to prune them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvSlot {
    /// Offset of the value in the file, or the value itself (little-endian, zero
    /// padded) when `len` is at most [`KvSlot::INLINE`].
    at_or_value: u64,
    /// The value's length.
    pub(crate) len: u32,
    /// The size of its whole record, for the live-byte count.
    pub(crate) record_len: u64,
}

/// Where a [`KvSlot`]'s value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvValue {
    /// In the slot: its bytes, zero padded, and its length.
    Held([u8; KvSlot::INLINE], usize),
    /// In the file, at this offset.
    At(u64),
}

impl KvSlot {
    /// The longest value kept in the slot.
    pub(crate) const INLINE: usize = 8;

    /// The slot of `value`, which lies at offset `at` of the file; `None` for a
    /// value too long for a slot to describe.
    pub(crate) fn new(at: u64, value: &[u8], record_len: u64) -> Option<KvSlot> {
        let len = u32::try_from(value.len()).ok()?;
        let at_or_value = if value.len() <= Self::INLINE {
            let mut padded = [0u8; Self::INLINE];
            padded[..value.len()].copy_from_slice(value);
            u64::from_le_bytes(padded)
        } else {
            at
        };
        Some(KvSlot { at_or_value, len, record_len })
    }

    /// Where the value is.
    pub(crate) fn value(&self) -> KvValue {
        let len = self.len as usize;
        if len <= Self::INLINE { KvValue::Held(self.at_or_value.to_le_bytes(), len) } else { KvValue::At(self.at_or_value) }
    }
}

/// A located message: its conversation, order key and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) conversation: ConversationId,
    pub(crate) key: OrderKey,
    pub(crate) slot: Slot,
}

/// Where the first author of an id put it.
#[derive(Debug, Clone, Copy)]
struct Place {
    digest: [u8; DIGEST_LEN],
    conversation: ConversationId,
    lamport: u64,
}

/// The whole index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    convs: HashMap<ConversationId, ConvIndex>,
    /// Message id → where its first author's message is. Keyed by the id alone
    /// (16 bytes, not the 32 of a reference) because a second author of one id
    /// is rare: it goes to `more`.
    places: HashMap<MessageId, Place>,
    /// Reference → conversation and lamport, for every author of an id after
    /// the first; ordered so that an id's authors are a range.
    more: BTreeMap<RefKey, (ConversationId, u64)>,
    outbox: HashMap<MessageId, OutboxEntry>,
    /// Bytes of the file that current records need (message records and
    /// current outbox entries); the rest is garbage a compaction drops.
    live_bytes: u64,
    outbox_bytes: HashMap<MessageId, u64>,
    /// Key/value records by key. Hashed, not ordered: a node that receives
    /// messages holds one record per message of the replay window (the ratchet's
    /// copy digests), looked up and added for every message it opens, while a
    /// walk of every record is rare (at start, at a roll of the ratchet state
    /// key: every 10 minutes while it is written, at a compaction). In a
    /// tree of a few hundred thousand keys, each a separate allocation, a lookup
    /// cost some 35 comparisons and as many cache misses.
    kv: HashMap<Box<[u8]>, KvSlot>,
}

fn split(reference: &RefKey) -> (MessageId, [u8; DIGEST_LEN]) {
    let mut id = [0; ID_LEN];
    id.copy_from_slice(&reference[..ID_LEN]);
    let mut digest = [0; DIGEST_LEN];
    digest.copy_from_slice(&reference[ID_LEN..]);
    (MessageId(id), digest)
}

impl Index {
    /// Where the message with this reference is: conversation and lamport.
    fn place(&self, reference: &RefKey) -> Option<(ConversationId, u64)> {
        let (id, digest) = split(reference);
        match self.places.get(&id) {
            Some(p) if p.digest == digest => Some((p.conversation, p.lamport)),
            Some(_) => self.more.get(reference).copied(),
            None => None,
        }
    }

    /// Whether a message with this reference is held.
    pub(crate) fn contains(&self, reference: &RefKey) -> bool {
        self.place(reference).is_some()
    }

    /// Adds a message — a change when it names a `target` — and `false` (and
    /// nothing changes) if its reference is held. `record_len` is its whole
    /// record's size, for the live-byte count.
    pub(crate) fn add(
        &mut self,
        conversation: ConversationId,
        key: OrderKey,
        slot: Slot,
        activity_ms: u64,
        record_len: u64,
        target: Option<MessageId>,
    ) -> bool {
        // One look-up in `places` (most ids are new): with a few hundred
        // thousand ids, each probe is a cache miss.
        let (id, digest) = split(&key.1);
        match self.places.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Place { digest, conversation, lamport: key.0 });
            }
            std::collections::hash_map::Entry::Occupied(first) => {
                // A second author of an id is rare: `more` is small.
                if first.get().digest == digest || self.more.contains_key(&key.1) {
                    return false;
                }
                self.more.insert(key.1, (conversation, key.0));
            }
        }
        let conv = self.convs.entry(conversation).or_default();
        conv.last_lamport = conv.last_lamport.max(key.0);
        self.live_bytes += record_len;
        if let Some(target) = target {
            conv.insert_change(ChangeEntry { entry: Entry { key, slot }, target });
            return true;
        }
        conv.insert(Entry { key, slot });
        if slot.is_unread() {
            conv.unread.insert(key);
        }
        conv.last_activity_ms = conv.last_activity_ms.max(activity_ms);
        true
    }

    /// The message with this reference.
    pub(crate) fn find(&self, reference: &RefKey) -> Option<Found> {
        let (conversation, lamport) = self.place(reference)?;
        self.found_at(conversation, (lamport, *reference))
    }

    /// The message under `key` in `conversation`, if its entry is there.
    fn found_at(&self, conversation: ConversationId, key: OrderKey) -> Option<Found> {
        let slot = self.convs.get(&conversation)?.get(&key)?.slot;
        Some(Found { conversation, key, slot })
    }

    /// Every message with this id, whoever wrote it, in author digest order.
    pub(crate) fn with_id(&self, id: MessageId) -> Vec<Found> {
        let Some(first) = self.places.get(&id) else {
            return Vec::new();
        };
        let mut reference = [0u8; REF_LEN];
        reference[..ID_LEN].copy_from_slice(&id.0);
        reference[ID_LEN..].copy_from_slice(&first.digest);
        let mut found: Vec<Found> = self.found_at(first.conversation, (first.lamport, reference)).into_iter().collect();
        if self.more.is_empty() {
            return found;
        }
        let mut low = [0u8; REF_LEN];
        low[..ID_LEN].copy_from_slice(&id.0);
        let mut high = [0xffu8; REF_LEN];
        high[..ID_LEN].copy_from_slice(&id.0);
        found.extend(self.more.range(low..=high).filter_map(|(r, (conv, lamport))| self.found_at(*conv, (*lamport, *r))));
        found.sort_by_key(|f| f.key.1);
        found
    }

    /// Whether the message an id alone means (see [`Index::resolve`]) is a change
    /// (an edit, a delete, a reaction, a hide) rather than a message shown.
    pub(crate) fn is_change(&self, id: MessageId) -> bool {
        self.resolve(id).is_some_and(|f| self.is_change_at(f.conversation, &f.key))
    }

    /// Whether the message at `key` in `conversation` is a change (see
    /// [`Index::is_change`]).
    pub(crate) fn is_change_at(&self, conversation: ConversationId, key: &OrderKey) -> bool {
        self.convs.get(&conversation).is_some_and(|c| c.changes.binary_search_by(|e| e.entry.key.cmp(key)).is_ok())
    }

    /// The message an id alone means: ours (outgoing) if we wrote one, else the
    /// one whose author digest sorts first.
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
        if let Some(slot) = conv.slot_mut(&found.key) {
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
        for entry in conv.entries.iter().chain(conv.changes.iter().map(|c| &c.entry)) {
            let (id, digest) = split(&entry.key.1);
            match self.places.get(&id) {
                Some(p) if p.digest == digest && p.conversation == conversation => {
                    self.places.remove(&id);
                    // Another author's message with this id becomes the first.
                    let mut low = [0u8; REF_LEN];
                    low[..ID_LEN].copy_from_slice(&id.0);
                    let mut high = [0xffu8; REF_LEN];
                    high[..ID_LEN].copy_from_slice(&id.0);
                    let next = self.more.range(low..=high).next().map(|(r, place)| (*r, *place));
                    if let Some((reference, (conversation, lamport))) = next {
                        self.more.remove(&reference);
                        let (_, digest) = split(&reference);
                        self.places.insert(id, Place { digest, conversation, lamport });
                    }
                }
                _ => {
                    self.more.remove(&entry.key.1);
                }
            }
            self.live_bytes = self.live_bytes.saturating_sub(record_len_of(&entry.slot));
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

    /// Sets or replaces the key/value record under `key`; the replaced one's
    /// bytes become garbage.
    pub(crate) fn put_kv(&mut self, key: &[u8], slot: KvSlot) {
        // Most keys are new (a copy digest per message opened): one hashing.
        if let Some(old) = self.kv.insert(key.into(), slot) {
            self.live_bytes = self.live_bytes.saturating_sub(old.record_len);
        }
        self.live_bytes += slot.record_len;
    }

    /// Removes the key/value record under `key`; returns whether there was one.
    pub(crate) fn drop_kv(&mut self, key: &[u8]) -> bool {
        match self.kv.remove(key) {
            Some(old) => {
                self.live_bytes = self.live_bytes.saturating_sub(old.record_len);
                true
            }
            None => false,
        }
    }

    /// The key/value record under `key`.
    pub(crate) fn kv(&self, key: &[u8]) -> Option<&KvSlot> {
        self.kv.get(key)
    }

    /// The key/value records whose key starts with `prefix` and that `keep` takes
    /// (by key and value length), in key order: a walk over every record (see
    /// `kv`), sorting only what it keeps.
    pub(crate) fn kv_prefix<'a>(&'a self, prefix: &[u8], keep: impl Fn(&[u8], usize) -> bool) -> Vec<(&'a [u8], &'a KvSlot)> {
        let mut found: Vec<(&[u8], &KvSlot)> = self
            .kv
            .iter()
            .filter(|(k, slot)| k.starts_with(prefix) && keep(k, slot.len as usize))
            .map(|(k, slot)| (&**k, slot))
            .collect();
        found.sort_unstable_by_key(|(k, _)| *k);
        found
    }

    /// Every key/value record, in no particular order: a compaction copies them
    /// under the log's lock and needs none.
    pub(crate) fn kv_records(&self) -> impl Iterator<Item = (&[u8], &KvSlot)> {
        self.kv.iter().map(|(k, slot)| (&**k, slot))
    }

    /// Gives back the room vectors and maps grew into while the log was read
    /// (a vector that doubled to hold its last message is up to half empty).
    pub(crate) fn shrink(&mut self) {
        for conv in self.convs.values_mut() {
            conv.entries.shrink_to_fit();
            conv.changes.shrink_to_fit();
        }
        self.places.shrink_to_fit();
        self.outbox.shrink_to_fit();
        self.outbox_bytes.shrink_to_fit();
        self.kv.shrink_to_fit();
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
        assert!(index.add(CONV, (5, r), slot(Direction::Incoming, Delivered), 1_000, 10, None));
        assert!(!index.add(CONV, (9, r), slot(Direction::Incoming, Delivered), 9_000, 10, None), "same reference");
        let c = index.conversation(CONV).unwrap();
        assert_eq!((c.len(), c.unread.len(), c.last_lamport, c.last_activity_ms), (1, 1, 5, 1_000));
        assert!(index.add(CONV, (3, reference(2, 1)), slot(Direction::Outgoing, Pending), 500, 10, None));
        let c = index.conversation(CONV).unwrap();
        assert_eq!((c.unread.len(), c.last_lamport, c.last_activity_ms), (1, 5, 1_000), "ours are never unread; maxima kept");
    }

    #[test]
    fn states_only_move_forward_and_reading_leaves_the_unread_set() {
        let mut index = Index::default();
        let r = reference(1, 1);
        index.add(CONV, (1, r), slot(Direction::Incoming, Delivered), 1, 10, None);
        assert!(!index.set_state(&r, Sent), "backwards");
        assert!(!index.set_state(&r, Delivered), "same");
        assert_eq!(index.conversation(CONV).unwrap().unread.len(), 1);
        assert!(index.set_state(&r, Read));
        assert_eq!(index.find(&r).unwrap().slot.state, Read);
        assert!(index.conversation(CONV).unwrap().unread.is_empty());
        assert!(!index.set_state(&reference(9, 9), Read), "unknown");
    }

    #[test]
    fn an_id_alone_means_ours_first_then_the_lowest_author_digest() {
        let mut index = Index::default();
        let (theirs, other, ours) = (reference(7, 1), reference(7, 2), reference(7, 3));
        index.add(CONV, (4, other), slot(Direction::Incoming, Delivered), 1, 10, None);
        index.add(CONV, (9, theirs), slot(Direction::Incoming, Delivered), 1, 10, None);
        assert_eq!(index.resolve(MessageId([7; 16])).unwrap().key.1, theirs, "lowest author digest first");
        index.add(ConversationId([9; 16]), (8, ours), slot(Direction::Outgoing, Sent), 1, 10, None);
        assert_eq!(index.resolve(MessageId([7; 16])).unwrap().key.1, ours);
        assert_eq!(index.with_id(MessageId([7; 16])).len(), 3);
        assert!(index.with_id(MessageId([8; 16])).is_empty());
    }

    #[test]
    fn forgetting_a_conversation_frees_its_references_and_bytes() {
        let mut index = Index::default();
        let r = reference(1, 1);
        let s = slot(Direction::Incoming, Delivered);
        index.add(CONV, (1, r), s, 1, record_len_of(&s), None);
        index.put_outbox(entry(3), 40);
        assert_eq!(index.live_bytes(), record_len_of(&s) + 40);
        assert_eq!(index.forget(CONV).unwrap().len(), 1);
        assert!(!index.contains(&r) && index.conversation(CONV).is_none());
        assert_eq!(index.live_bytes(), 40);
        assert!(index.add(CONV, (1, r), s, 1, 1, None), "a forgotten reference may come back");
    }

    #[test]
    fn messages_arriving_out_of_order_are_kept_in_order() {
        let mut index = Index::default();
        for lamport in [5u64, 1, 9, 3, 7, 2] {
            assert!(index.add(CONV, (lamport, reference(lamport as u8, 1)), slot(Direction::Incoming, Read), 1, 1, None));
        }
        let c = index.conversation(CONV).unwrap();
        let order: Vec<u64> = c.entries().iter().map(|e| e.key.0).collect();
        assert_eq!(order, [1, 2, 3, 5, 7, 9]);
        assert_eq!(c.before(&(5, reference(5, 1))).len(), 3);
        assert_eq!(c.get(&(7, reference(7, 1))).unwrap().key.0, 7);
        assert!(c.get(&(7, reference(7, 2))).is_none(), "another author's reference");
    }

    #[test]
    fn a_second_author_of_an_id_survives_the_first_ones_conversation_going() {
        let mut index = Index::default();
        let other = ConversationId([2; 16]);
        let (first, second) = (reference(7, 1), reference(7, 2));
        index.add(CONV, (1, first), slot(Direction::Incoming, Read), 1, 1, None);
        index.add(other, (4, second), slot(Direction::Incoming, Read), 1, 1, None);
        assert!(index.contains(&first) && index.contains(&second));
        index.forget(CONV);
        assert!(!index.contains(&first));
        assert_eq!(index.find(&second).unwrap().conversation, other);
        assert_eq!(index.with_id(MessageId([7; 16])).len(), 1);
        assert!(index.add(CONV, (1, first), slot(Direction::Incoming, Read), 1, 1, None), "back once forgotten");
        assert_eq!(index.with_id(MessageId([7; 16])).len(), 2);
        index.forget(other);
        assert_eq!(index.resolve(MessageId([7; 16])).unwrap().key.1, first);
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
    fn key_value_records_count_only_their_latest_record_and_a_prefix_comes_in_key_order() {
        let mut index = Index::default();
        let slot = |record_len| KvSlot::new(1, b"v", record_len).unwrap();
        index.put_kv(b"p/b", slot(30));
        index.put_kv(b"p/a", slot(20));
        index.put_kv(b"q", slot(5));
        index.put_kv(b"p", slot(7));
        index.put_kv(b"p/a", slot(25));
        assert_eq!(index.live_bytes(), 30 + 25 + 5 + 7);
        let keys: Vec<&[u8]> = index.kv_prefix(b"p/", |_, _| true).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"p/a"[..], b"p/b"]);
        let all: Vec<&[u8]> = index.kv_prefix(b"", |_, _| true).into_iter().map(|(k, _)| k).collect();
        assert_eq!(all, [&b"p"[..], b"p/a", b"p/b", b"q"], "every record, in key order");
        let long: Vec<&[u8]> = index.kv_prefix(b"p", |k, _| k.len() > 1).into_iter().map(|(k, _)| k).collect();
        assert_eq!(long, [&b"p/a"[..], b"p/b"], "only what `keep` takes");
        assert_eq!(index.kv_records().count(), 4, "every record, for a compaction");
        assert_eq!(index.kv(b"p/a").map(|s| s.record_len), Some(25));
        assert!(index.drop_kv(b"p/a"));
        assert!(!index.drop_kv(b"p/a"));
        assert_eq!(index.live_bytes(), 30 + 5 + 7);
        assert!(index.kv(b"p/a").is_none());
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
