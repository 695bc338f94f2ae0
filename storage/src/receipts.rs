//! Who in a group has received and read each of our messages there: the counts
//! behind "read by 3 of 5".
//!
//! One record per message, keyed by conversation id (16 bytes) ‖ message id (16
//! bytes). Its value is a header byte — [`EXPECTING`] when the members the message
//! was meant for were recorded at sending ([`GroupReceipts::expect`]), [`OPEN`]
//! otherwise (messages sent before counts existed) — then one 9-byte entry per
//! member, sorted: the first 8 bytes of the BLAKE3 hash of its peer id (base58)
//! and how far it got (0 nothing yet, 1 delivered, 2 read). So a message costs 9
//! bytes a member, whatever the member's id. A milestone only ever rises; with an
//! expectation, a member it does not name (who joined later, and could not read
//! the message anyway) is not counted. A conversation's records go when it is
//! removed. Nothing here leaves the device.

use std::sync::Arc;

use crate::error::{StoreError, db};
use crate::schema::GROUP_RECEIPTS;
use crate::store::Inner;
use crate::types::{ConversationId, MessageId};

/// Header of a record that names the members the message was meant for.
const EXPECTING: u8 = 1;
/// Header of a record that counts whoever reports.
const OPEN: u8 = 0;
/// Bytes of a member's tag.
const TAG_LEN: usize = 8;
/// Bytes of one entry: tag and milestone.
const ENTRY_LEN: usize = TAG_LEN + 1;

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

    fn from_byte(byte: u8) -> Option<Reached> {
        match byte {
            1 => Some(Reached::Delivered),
            2 => Some(Reached::Read),
            _ => None,
        }
    }
}

/// A member's tag in a record.
fn tag(member: &str) -> [u8; TAG_LEN] {
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(&blake3::hash(member.as_bytes()).as_bytes()[..TAG_LEN]);
    tag
}

/// One message's record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    expecting: bool,
    /// Sorted by tag.
    entries: Vec<([u8; TAG_LEN], u8)>,
}

impl Tally {
    fn decode(bytes: &[u8]) -> Result<Tally, StoreError> {
        let corrupt = || StoreError::corrupt(GROUP_RECEIPTS, "a receipts record of a wrong length, header or order");
        let (&header, rest) = bytes.split_first().ok_or_else(corrupt)?;
        if header > EXPECTING || rest.len() % ENTRY_LEN != 0 {
            return Err(corrupt());
        }
        let entries = rest
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let mut tag = [0; TAG_LEN];
                tag.copy_from_slice(&e[..TAG_LEN]);
                (tag, e[TAG_LEN])
            })
            .collect::<Vec<_>>();
        // Lookups search the entries: out of order, repeated or past `Read`, the
        // record would answer wrongly without a word.
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted || entries.iter().any(|(_, level)| *level > Reached::Read.to_byte()) {
            return Err(corrupt());
        }
        Ok(Tally { expecting: header == EXPECTING, entries })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.entries.len() * ENTRY_LEN);
        out.push(if self.expecting { EXPECTING } else { OPEN });
        for (tag, level) in &self.entries {
            out.extend_from_slice(tag);
            out.push(*level);
        }
        out
    }

    /// Raises `member` to `reached`; returns whether that changed anything.
    fn raise(&mut self, member: &str, reached: Reached) -> bool {
        let (tag, level) = (tag(member), reached.to_byte());
        match self.entries.binary_search_by(|(t, _)| t.cmp(&tag)) {
            Ok(at) if self.entries[at].1 < level => {
                self.entries[at].1 = level;
                true
            }
            Ok(_) => false,
            Err(_) if self.expecting => false,
            Err(at) => {
                self.entries.insert(at, (tag, level));
                true
            }
        }
    }

    /// Whether the members the message was meant for were recorded.
    pub fn expecting(&self) -> bool {
        self.expecting
    }

    /// Whether `member` counts for this message: named when it was sent (or
    /// anyone, for a message recorded without them).
    pub fn counts(&self, member: &str) -> bool {
        !self.expecting || self.find(member).is_some()
    }

    /// How far the message got with `member`, if it reported.
    pub fn reached(&self, member: &str) -> Option<Reached> {
        self.find(member).and_then(Reached::from_byte)
    }

    fn find(&self, member: &str) -> Option<u8> {
        let tag = tag(member);
        self.entries.binary_search_by(|(t, _)| t.cmp(&tag)).ok().map(|at| self.entries[at].1)
    }
}

/// Handle to the group receipts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupReceipts {
    pub(crate) inner: Arc<Inner>,
}

fn key(conversation: ConversationId, id: MessageId) -> [u8; 32] {
    let mut key = [0; 32];
    key[..16].copy_from_slice(&conversation.0);
    key[16..].copy_from_slice(&id.0);
    key
}

impl GroupReceipts {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.group_receipts
    }

    /// Records whom message `id` of `conversation` was meant for: the members
    /// besides us when it was sent. Receipts from anyone else are not counted. Not
    /// flushed.
    pub fn expect(&self, conversation: ConversationId, id: MessageId, members: &[&str]) -> Result<(), StoreError> {
        let mut entries: Vec<([u8; TAG_LEN], u8)> = members.iter().map(|m| (tag(m), 0)).collect();
        entries.sort_unstable();
        entries.dedup_by_key(|(t, _)| *t);
        let tally = Tally { expecting: true, entries };
        self.tree().insert(key(conversation, id), tally.encode()).map_err(db)?;
        Ok(())
    }

    /// Records that `member` reached `reached` with message `id` of `conversation`;
    /// returns whether that raised what was known (not for a member the message was
    /// not meant for). Not flushed: a receipt lost in a crash only shows a count
    /// one lower.
    pub fn record(
        &self,
        conversation: ConversationId,
        id: MessageId,
        member: &str,
        reached: Reached,
    ) -> Result<bool, StoreError> {
        let mut raised = false;
        let mut damaged = None;
        self.tree()
            .fetch_and_update(key(conversation, id), |old| {
                // sled may run this more than once: each run decides afresh.
                damaged = None;
                raised = false;
                let mut tally = match old.map(Tally::decode) {
                    None => Tally::default(),
                    Some(Ok(tally)) => tally,
                    Some(Err(e)) => {
                        damaged = Some(e);
                        return old.map(<[u8]>::to_vec);
                    }
                };
                raised = tally.raise(member, reached);
                Some(tally.encode())
            })
            .map_err(db)?;
        match damaged {
            Some(e) => Err(e),
            None => Ok(raised),
        }
    }

    /// The record of message `id` of `conversation`, if it has one.
    pub fn of(&self, conversation: ConversationId, id: MessageId) -> Result<Option<Tally>, StoreError> {
        self.tree().get(key(conversation, id)).map_err(db)?.map(|v| Tally::decode(&v)).transpose()
    }

    /// Forgets the receipts of every message of `conversation`. Not flushed.
    pub(crate) fn forget(&self, conversation: ConversationId) -> Result<(), StoreError> {
        // In slices: a long-lived group's records are not all held at once.
        loop {
            let keys: Vec<sled::IVec> = self
                .tree()
                .scan_prefix(conversation.0)
                .keys()
                .take(1024)
                .collect::<Result<_, _>>()
                .map_err(db)?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut batch = sled::Batch::default();
            for k in keys {
                batch.remove(k);
            }
            self.tree().apply_batch(batch).map_err(db)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_out_of_order_or_past_read_is_corrupt_not_trusted() {
        let good = Tally { expecting: true, entries: vec![([1; TAG_LEN], 0), ([2; TAG_LEN], 2)] };
        assert_eq!(Tally::decode(&good.encode()).ok(), Some(good));
        let unsorted = Tally { expecting: true, entries: vec![([2; TAG_LEN], 0), ([1; TAG_LEN], 1)] };
        assert!(Tally::decode(&unsorted.encode()).is_err());
        let repeated = Tally { expecting: false, entries: vec![([1; TAG_LEN], 1), ([1; TAG_LEN], 1)] };
        assert!(Tally::decode(&repeated.encode()).is_err());
        let past_read = Tally { expecting: false, entries: vec![([1; TAG_LEN], 3)] };
        assert!(Tally::decode(&past_read.encode()).is_err());
        assert!(Tally::decode(&[EXPECTING, 1, 2]).is_err(), "a cut entry");
        assert!(Tally::decode(&[]).is_err(), "no header");
    }
}
