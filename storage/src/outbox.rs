//! The persistent outbox: items waiting to be sent, keyed by item id.
//!
//! Entries are records of the message log (see [`crate::msglog`]), so an
//! outgoing message and its entry are written in one frame; the queue itself
//! is held in memory, as it is small (what has not been acknowledged yet).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::Inner;
use crate::types::{GroupId, MessageId};
use libp2p_identity::PeerId;

/// Who an outbox item goes to.
///
/// Stored as text — a peer id, or `group:` followed by the group id — the layout
/// databases already have, so the type changes nothing on disk. Text that is
/// neither is kept as [`Recipient::Unreadable`] rather than making the outbox
/// unreadable: the node drops such an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Recipient {
    /// One peer.
    Peer(PeerId),
    /// The members of a group: a sealed group message waiting for its first
    /// durable hold.
    Group(GroupId),
    /// Stored text that names neither (from a broken or newer build), as it was.
    Unreadable(String),
}

/// The prefix of a group recipient's stored text.
const GROUP_PREFIX: &str = "group:";

impl From<String> for Recipient {
    fn from(text: String) -> Recipient {
        if let Some(group) = text.strip_prefix(GROUP_PREFIX).and_then(|g| g.parse().ok()) {
            return Recipient::Group(group);
        }
        match text.parse() {
            Ok(peer) => Recipient::Peer(peer),
            Err(_) => Recipient::Unreadable(text),
        }
    }
}

impl From<Recipient> for String {
    fn from(recipient: Recipient) -> String {
        recipient.to_string()
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Peer(peer) => f.write_str(&crate::peer::text(peer)),
            Recipient::Group(group) => write!(f, "{GROUP_PREFIX}{group}"),
            Recipient::Unreadable(text) => f.write_str(text),
        }
    }
}

/// One item waiting to be sent, with its retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The item's id: a message id, or a receipt's own id.
    pub id: MessageId,
    /// Who it goes to.
    pub recipient: Recipient,
    /// Opaque bytes (the network layer's encoded inner message), stored as a CBOR
    /// byte string; entries that earlier versions stored as an array of integers
    /// read the same.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, in ms since the Unix epoch.
    pub next_attempt_ms: u64,
    /// When the item was queued, in ms.
    pub created_at_ms: u64,
}

/// Handle to the outbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub(crate) inner: Arc<Inner>,
}

impl Outbox {
    /// Inserts or replaces the entry with this id (e.g. to reschedule it).
    /// Not flushed.
    pub fn put(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let mut batch = self.inner.log.batch();
        batch.put_outbox(entry)?;
        batch.commit()
    }

    /// The entry with this id, if queued.
    pub fn get(&self, id: MessageId) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self.inner.log.lock().index.outbox().get(&id).cloned())
    }

    /// Removes an entry; returns whether it was queued. Not flushed.
    pub fn remove(&self, id: MessageId) -> Result<bool, StoreError> {
        let mut batch = self.inner.log.batch();
        let was = batch.drop_outbox(id)?;
        batch.commit()?;
        Ok(was)
    }

    /// All entries, soonest `next_attempt_ms` first (ties by id).
    pub fn list(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut all: Vec<OutboxEntry> = self.inner.log.lock().index.outbox().values().cloned().collect();
        all.sort_by_key(|e| (e.next_attempt_ms, e.id));
        Ok(all)
    }

    /// The entries due at `now_ms` (`next_attempt_ms <= now_ms`), soonest first.
    pub fn due(&self, now_ms: u64) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut due: Vec<OutboxEntry> =
            self.inner.log.lock().index.outbox().values().filter(|e| e.next_attempt_ms <= now_ms).cloned().collect();
        due.sort_by_key(|e| (e.next_attempt_ms, e.id));
        Ok(due)
    }

    /// Number of queued entries.
    pub fn len(&self) -> usize {
        self.inner.log.lock().index.outbox().len()
    }

    /// Whether the outbox is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recipients_keep_their_stored_text() {
        let group = GroupId::from_bytes([7; 16]);
        let peer: PeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".parse().unwrap();
        for recipient in [Recipient::Peer(peer), Recipient::Group(group), Recipient::Unreadable("12D3KooWbroken".into())] {
            let text = String::from(recipient.clone());
            assert_eq!(Recipient::from(text.clone()), recipient);
            let stored = crate::codec::encode(&text).unwrap();
            assert_eq!(crate::codec::decode::<Recipient>(crate::schema::OUTBOX, &stored).unwrap(), recipient, "read as before");
        }
        assert_eq!(String::from(Recipient::Group(group)), format!("group:{group}"));
        // Neither a group id after the prefix nor a peer id: kept as it was.
        assert_eq!(Recipient::from("group:nonsense".to_owned()), Recipient::Unreadable("group:nonsense".into()));
    }

    #[test]
    fn a_payload_is_a_byte_string_and_one_stored_as_integers_reads_the_same() {
        let peer: PeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".parse().unwrap();
        let entry = OutboxEntry {
            id: MessageId::from_bytes([3; 16]),
            recipient: Recipient::Peer(peer),
            payload: (0..=255).collect(),
            attempts: 2,
            next_attempt_ms: 5,
            created_at_ms: 4,
        };
        let stored = crate::codec::encode(&entry).unwrap();
        // 0x59 0x01 0x00: a byte string of 256 bytes, then the bytes themselves.
        let at = stored.windows(3).position(|w| w == [0x59, 0x01, 0x00]).expect("a byte string header");
        assert_eq!(&stored[at + 3..at + 259], entry.payload.as_slice());

        /// The entry as earlier versions wrote it: the payload a sequence of integers.
        #[derive(Serialize)]
        struct Earlier<'a> {
            id: MessageId,
            recipient: Recipient,
            payload: &'a Vec<u8>,
            attempts: u32,
            next_attempt_ms: u64,
            created_at_ms: u64,
        }
        let earlier = crate::codec::encode(&Earlier {
            id: entry.id,
            recipient: entry.recipient.clone(),
            payload: &entry.payload,
            attempts: 2,
            next_attempt_ms: 5,
            created_at_ms: 4,
        })
        .unwrap();
        assert!(earlier.len() > stored.len() + 100, "integers over 23 take two bytes each");
        assert_eq!(crate::codec::decode::<OutboxEntry>(crate::schema::OUTBOX, &earlier).unwrap(), entry);
        assert_eq!(crate::codec::decode::<OutboxEntry>(crate::schema::OUTBOX, &stored).unwrap(), entry);
    }
}
