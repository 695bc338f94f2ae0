//! [`GroupLogStore`]: the opened database and its operations.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_p2p::grouplog::{LOG_ID_LEN, MAX_ITEM_LEN};
use kith_p2p::kith_storage::seqlog::SeqLogs;

use super::{
    AppendOutcome, Appended, GroupLogError, GroupLogLimits, GroupLogStats, Refusal, StoredItem,
};
use crate::mailbox::OpenError;
use crate::mailbox::db::{Kind, open_logs};
use crate::mailbox::store::EXPIRE_BATCH;

/// Where the logs live, and what they were before.
const KIND: Kind = Kind {
    tree: "grouplog",
    legacy_floor: false,
    legacy: ["items", "hashes", "logs", "expiry"],
};

/// The durable group log store. Cheap to clone (one `Arc`), `Send + Sync`; every
/// method blocks on disk I/O.
#[derive(Clone)]
pub struct GroupLogStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    logs: SeqLogs,
    limits: GroupLogLimits,
}

impl fmt::Debug for GroupLogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupLogStore")
            .field("path", &self.inner.path)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl GroupLogStore {
    /// Opens (creating if needed) the store in directory `dir`, checks its schema
    /// version and migrates an older layout. The directory is made 0700 and its
    /// files 0600 (on Unix).
    pub fn open(dir: &Path, limits: GroupLogLimits) -> Result<GroupLogStore, OpenError> {
        let (_db, logs) = open_logs(dir, &KIND)?;
        let store = GroupLogStore {
            inner: Arc::new(Inner {
                path: dir.to_owned(),
                logs,
                limits,
            }),
        };
        Ok(store)
    }

    /// The directory the store was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The limits the store enforces.
    pub fn limits(&self) -> &GroupLogLimits {
        &self.inner.limits
    }

    /// Appends `items` to `log` at time `now_ms`, all or nothing. Checks, in order:
    /// every item's size ([`Refusal::TooLarge`] above
    /// [`MAX_ITEM_LEN`](kith_p2p::grouplog::MAX_ITEM_LEN)), which items the log
    /// already holds (they keep their sequence numbers), then whether the new ones
    /// fit the log's count and byte quotas and the store's total bytes and items
    /// ([`Refusal::StoreFull`]), under the write lock, so concurrent appends never
    /// overshoot a total. A batch of duplicates only is accepted even when the store
    /// is full, so a retry is answered. One atomic write
    /// and one flush: when this returns [`AppendOutcome::Appended`], every item is
    /// durable.
    pub fn append<E: AsRef<[u8]>>(
        &self,
        log: &[u8; LOG_ID_LEN],
        items: &[E],
        now_ms: u64,
    ) -> Result<AppendOutcome, GroupLogError> {
        if items.iter().any(|item| item.as_ref().len() > MAX_ITEM_LEN) {
            return Ok(AppendOutcome::Refused(Refusal::TooLarge));
        }
        if items.is_empty() {
            return Ok(AppendOutcome::Appended(Vec::new()));
        }
        let limits = &self.inner.limits;
        let mut writer = self.inner.logs.writer();
        let record = writer.record(log)?;
        let totals = writer.totals();
        // Decide everything before writing anything: a refused batch leaves no trace.
        let mut in_batch: HashMap<&[u8], ()> = HashMap::new();
        let (mut new_items, mut new_bytes) = (0u64, 0u64);
        for item in items {
            let item = item.as_ref();
            if writer.find(log, item)?.is_none() && in_batch.insert(item, ()).is_none() {
                new_items += 1;
                new_bytes += item.len() as u64;
            }
        }
        let refusal = if new_items == 0 {
            None
        } else if record.count.saturating_add(new_items) > limits.max_items_per_log {
            Some(Refusal::QuotaCount)
        } else if record.bytes.saturating_add(new_bytes) > limits.max_bytes_per_log {
            Some(Refusal::QuotaBytes)
        } else if totals.bytes.saturating_add(new_bytes) > limits.max_total_bytes
            || totals.items.saturating_add(new_items) > limits.max_total_items
        {
            Some(Refusal::StoreFull)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Ok(AppendOutcome::Refused(refusal));
        }
        let mut plan = Vec::with_capacity(items.len());
        for item in items {
            let item = item.as_ref();
            plan.push(match writer.find(log, item)? {
                Some(seq) => Appended::Duplicate { seq },
                None => Appended::Stored {
                    seq: writer.append(log, now_ms, item)?,
                },
            });
        }
        writer.commit()?;
        // Also when every item was a duplicate: it may have been committed by a
        // concurrent call that has not flushed yet.
        self.flush()?;
        Ok(AppendOutcome::Appended(plan))
    }

    /// Items of `log` with a sequence number above `after`, in sequence order: at
    /// most `max_items`, and no more than `max_bytes` of item bytes — except that the
    /// first item is returned whatever its size, so a reader always makes progress.
    /// An unknown log is an empty one.
    pub fn fetch(
        &self,
        log: &[u8; LOG_ID_LEN],
        after: u64,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredItem>, GroupLogError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        Ok(self
            .inner
            .logs
            .list(log, first, max_items, max_bytes)
            ?)
    }

    /// Deletes every item appended at least the TTL before `now_ms`; returns how
    /// many. Walks each log from its oldest item in bounded batches (as the mailbox
    /// store does), so appends interleave with a long sweep. Logs keep their records, so
    /// their numbering goes on where it was.
    pub fn expire(&self, now_ms: u64) -> Result<usize, GroupLogError> {
        let ttl_ms = u64::try_from(self.inner.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let Some(cutoff) = now_ms.checked_sub(ttl_ms) else {
            return Ok(0);
        };
        let total = self.inner.logs.expire(cutoff, EXPIRE_BATCH)?;
        if total > 0 {
            // Not needed for safety (a lost expiry is redone), but frees the space.
            self.flush()?;
            tracing::debug!(expired = total, "expired group log items");
        }
        Ok(total)
    }

    /// Whether the store has failed for good and refuses every request until the
    /// relay restarts (a failed flush, or a failed write of sled's; see
    /// [`kith_storage::SeqLogs::failed_for_good`]). Flushes: call it after a
    /// failure.
    pub fn failed_for_good(&self) -> bool {
        self.inner.logs.failed_for_good()
    }

    /// Totals over all logs, from counters kept in memory (no scan).
    pub fn stats(&self) -> GroupLogStats {
        let totals = self.inner.logs.totals();
        GroupLogStats {
            logs: totals.logs,
            items: totals.items,
            bytes: totals.bytes,
        }
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), GroupLogError> {
        Ok(self.inner.logs.flush()?)
    }

    /// For a clean shutdown, after the last write: flushes, and leaves the
    /// de-duplication index in a checkpoint the next open loads instead of reading
    /// every item. A write after this is still safe (it voids the checkpoint).
    pub fn checkpoint(&self) -> Result<(), GroupLogError> {
        Ok(self.inner.logs.checkpoint()?)
    }
}
