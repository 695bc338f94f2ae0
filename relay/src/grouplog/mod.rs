//! The durable group log store: per group, an append-only log of sealed messages
//! that members fetch with a cursor (`/kith/grouplog/1`).
//!
//! A log is named by a 32-byte id, a hash of a secret group id
//! ([`kith_p2p::grouplog::log_id`]); the relay learns neither the group nor what the
//! items say. Members [`append`](GroupLogStore::append) batches of items and anyone
//! naming the log [`fetch`](GroupLogStore::fetch)es the items above a cursor, in
//! order. Nothing is deleted on request (a log has many readers): items older than
//! the TTL are removed by [`expire`](GroupLogStore::expire).
//!
//! Sequence numbers only grow: a log starts at 1, or at the store's sequence floor.
//! A log's record (its next sequence number) is deleted when expiry empties it, and
//! the floor is raised past it, so a number is never reused and a member's cursor
//! ("after `seq`") stays valid however long it was away, while the store holds
//! records only for logs holding items, not for every log id ever written to.
//!
//! An append is all or nothing: either every item is stored (or found already
//! stored: identical bytes in the same log keep their first sequence number, so a
//! retried append stores nothing twice), or the batch is refused as a whole
//! ([`Refusal`], reused from the mailbox: size, per-log count and byte quotas, the
//! store's total size and total item count).
//!
//! The store has the mailbox store's shape and shares its parts: each log is one
//! log of [`kith_p2p::kith_storage::seqlog::SeqLogs`] (tree `grouplog`), opened, checked and migrated from the earlier layout as
//! the mailbox store is (`mailbox::db`). Its own sled database lives in
//! `<data_dir>/grouplog`.
//!
//! Durability: `append` writes one atomic batch and flushes (fsync) before it
//! returns, so its sequence numbers may be sent to the member as soon as it returns.
//! All calls block on disk I/O: call them from `spawn_blocking`.

mod store;

use std::time::Duration;

pub use crate::mailbox::Refusal;
pub use store::GroupLogStore;

use crate::mailbox::DbError;

/// The store's limits. [`GroupLogLimits::default`] matches the config defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLogLimits {
    /// Items older than this are removed by [`GroupLogStore::expire`].
    pub ttl: Duration,
    /// Items one log may hold.
    pub max_items_per_log: u64,
    /// Item bytes one log may hold.
    pub max_bytes_per_log: u64,
    /// Item bytes all logs together may hold (checked under the store's write lock,
    /// so concurrent appends never overshoot it).
    pub max_total_bytes: u64,
    /// Items all logs together may hold (checked under the store's write lock like
    /// `max_total_bytes`). Each held item costs memory in the de-duplication index
    /// and time at open, so this bounds both whatever the items' size.
    pub max_total_items: u64,
}

impl Default for GroupLogLimits {
    fn default() -> Self {
        crate::config::GroupLogConfig::default().limits()
    }
}

/// What [`GroupLogStore::append`] did with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendOutcome {
    /// Every item is durable; one entry per item, in order.
    Appended(Vec<Appended>),
    /// Nothing was stored, for this reason.
    Refused(Refusal),
}

/// How one item of an accepted batch is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored now under this sequence number.
    Stored {
        /// Its sequence number in the log.
        seq: u64,
    },
    /// The log already held identical bytes (or the batch held them earlier) under
    /// this sequence number; nothing was stored again.
    Duplicate {
        /// The sequence number of the item already held.
        seq: u64,
    },
}

impl Appended {
    /// The item's sequence number, stored now or before.
    pub fn seq(&self) -> u64 {
        match *self {
            Appended::Stored { seq } | Appended::Duplicate { seq } => seq,
        }
    }
}

/// An item held in a log, as returned by [`GroupLogStore::fetch`].
pub use kith_p2p::kith_storage::seqlog::StoredItem;

/// Totals over the whole store, from maintained counters (cheap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupLogStats {
    /// Logs holding at least one item.
    pub logs: u64,
    /// Items held.
    pub items: u64,
    /// Item bytes held.
    pub bytes: u64,
}

/// Why an operation on an open [`GroupLogStore`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupLogError {
    /// A stored entry could not be decoded.
    #[error("corrupt group log entry: {detail}")]
    Corrupt {
        /// What failed to decode.
        detail: String,
    },
    /// The database engine failed (I/O error, …).
    #[error("group log database error")]
    Db(#[source] DbError),
}

impl From<kith_p2p::kith_storage::StoreError> for GroupLogError {
    /// Errors of the shared log layer (`kith_storage::seqlog`).
    fn from(e: kith_p2p::kith_storage::StoreError) -> Self {
        match e {
            kith_p2p::kith_storage::StoreError::Db(e) => GroupLogError::Db(e),
            other => GroupLogError::Corrupt {
                detail: other.to_string(),
            },
        }
    }
}
