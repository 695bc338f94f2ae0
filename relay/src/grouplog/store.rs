//! [`GroupLogStore`]: the opened database and its operations.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_p2p::grouplog::{LOG_ID_LEN, MAX_ITEM_LEN};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{
    AppendOutcome, Appended, GroupLogError, GroupLogLimits, GroupLogStats, Refusal, StoredItem,
};
use crate::mailbox::OpenError;
use crate::mailbox::error::db_error;
use crate::mailbox::keys::{self, HASH_LEN, META, Record};
use crate::mailbox::store::{EXPIRE_BATCH, Totals, check_schema, open_sled};
use crate::mailbox::txn::{Delta, EmptyRecords, Tx, TxResult, abort, sweep};

/// The schema version this build writes.
const SCHEMA_VERSION: u32 = 1;

/// `P ‖ seq` → `appended_at_ms ‖ item`.
const ITEMS: &str = "items";
/// `P ‖ blake3(item)` → `seq`.
const HASHES: &str = "hashes";
/// `P` → [`Record`], kept when the log empties.
const LOGS: &str = "logs";
/// `appended_at_ms ‖ P ‖ seq` → empty.
const EXPIRY: &str = "expiry";

/// The durable group log store. Cheap to clone (one `Arc`), `Send + Sync`; every
/// method blocks on disk I/O.
#[derive(Clone)]
pub struct GroupLogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    path: PathBuf,
    items: sled::Tree,
    hashes: sled::Tree,
    logs: sled::Tree,
    expiry: sled::Tree,
    meta: sled::Tree,
    limits: GroupLogLimits,
    /// Logs holding items, items, bytes (the mailbox store's counters, reused).
    totals: Totals,
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
    /// Opens (creating if needed) the store in directory `dir` and checks its schema
    /// version. The directory is made 0700 and its files 0600 (on Unix).
    pub fn open(dir: &Path, limits: GroupLogLimits) -> Result<GroupLogStore, OpenError> {
        kith_p2p::home::create_private_dir(dir).map_err(|source| OpenError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let db = open_sled(dir)?;
        check_schema(&db, &[ITEMS, HASHES, LOGS, EXPIRY, META], SCHEMA_VERSION)?;
        let open = |name: &str| db.open_tree(name).map_err(|e| OpenError::from(db_error(e)));
        let inner = Inner {
            items: open(ITEMS)?,
            hashes: open(HASHES)?,
            logs: open(LOGS)?,
            expiry: open(EXPIRY)?,
            meta: open(META)?,
            db,
            path: dir.to_owned(),
            totals: Totals::default(),
            limits,
        };
        for entry in inner.logs.iter() {
            let (_, value) = entry.map_err(|e| OpenError::from(db_error(e)))?;
            let record = Record::decode(&value)?;
            inner.totals.apply(Delta {
                mailboxes: i64::from(record.count > 0),
                envelopes: i64::try_from(record.count).unwrap_or(i64::MAX),
                bytes: i64::try_from(record.bytes).unwrap_or(i64::MAX),
            });
        }
        kith_p2p::home::restrict_tree(dir).map_err(|source| OpenError::Io {
            path: dir.to_owned(),
            source,
        })?;
        tracing::debug!(path = %dir.display(), stats = ?inner.stats(), "opened group log store");
        Ok(GroupLogStore {
            inner: Arc::new(inner),
        })
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
    /// fit the log's count and byte quotas and the store's total. One transaction and
    /// one flush: when this returns [`AppendOutcome::Appended`], every item is durable.
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
        let prefix = keys::prefix(log)?;
        let limits = &self.inner.limits;
        let hashes: Vec<[u8; HASH_LEN]> = items
            .iter()
            .map(|item| *blake3::hash(item.as_ref()).as_bytes())
            .collect();
        let store_bytes = self.inner.totals.bytes();
        let (outcome, delta) = self.inner.transact(|tx| {
            let (mut record, _) = tx.record(&prefix)?;
            // Decide everything before writing anything: a refused batch must leave
            // no trace, and sled commits whatever the closure wrote once it returns.
            let mut plan = Vec::with_capacity(items.len());
            let mut in_batch: HashMap<&[u8; HASH_LEN], u64> = HashMap::new();
            let mut next_seq = record.next_seq;
            let (mut new_items, mut new_bytes) = (0u64, 0u64);
            for (item, hash) in items.iter().zip(&hashes) {
                if let Some(seq) = tx.hashes.get(keys::hash_key(&prefix, hash))? {
                    plan.push(Appended::Duplicate {
                        seq: keys::decode_u64(&seq).or_else(abort)?,
                    });
                } else if let Some(&seq) = in_batch.get(hash) {
                    plan.push(Appended::Duplicate { seq });
                } else {
                    let seq = next_seq;
                    let Some(next) = seq.checked_add(1) else {
                        return abort(crate::mailbox::MailboxError::Corrupt {
                            detail: "sequence numbers exhausted".into(),
                        });
                    };
                    next_seq = next;
                    in_batch.insert(hash, seq);
                    plan.push(Appended::Stored { seq });
                    new_items += 1;
                    new_bytes += item.as_ref().len() as u64;
                }
            }
            let refusal = if new_items == 0 {
                None
            } else if record.count.saturating_add(new_items) > limits.max_items_per_log {
                Some(Refusal::QuotaCount)
            } else if record.bytes.saturating_add(new_bytes) > limits.max_bytes_per_log {
                Some(Refusal::QuotaBytes)
            } else if store_bytes.saturating_add(new_bytes) > limits.max_total_bytes {
                Some(Refusal::StoreFull)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                return Ok((AppendOutcome::Refused(refusal), Delta::default()));
            }
            for ((item, hash), appended) in items.iter().zip(&hashes).zip(&plan) {
                let Appended::Stored { seq } = *appended else {
                    continue;
                };
                tx.envelopes.insert(
                    keys::envelope_key(&prefix, seq),
                    keys::envelope_value(now_ms, item.as_ref()),
                )?;
                tx.hashes
                    .insert(keys::hash_key(&prefix, hash), &seq.to_be_bytes()[..])?;
                tx.expiry
                    .insert(keys::expiry_key(now_ms, &prefix, seq), &[][..])?;
            }
            let mut delta = Delta::default();
            if new_items > 0 {
                delta.mailboxes = i64::from(record.count == 0);
                delta.envelopes = new_items as i64;
                delta.bytes = new_bytes as i64;
                record = Record {
                    next_seq,
                    count: record.count + new_items,
                    bytes: record.bytes + new_bytes,
                };
                tx.mailboxes
                    .insert(prefix.as_slice(), &record.encode()[..])?;
            }
            Ok((AppendOutcome::Appended(plan), delta))
        })?;
        if let AppendOutcome::Appended(_) = outcome {
            // Also when every item was a duplicate: it may have been committed by a
            // concurrent call that has not flushed yet.
            self.inner.flush()?;
        }
        self.inner.totals.apply(delta);
        Ok(outcome)
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
        let prefix = keys::prefix(log)?;
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let range = keys::envelope_key(&prefix, first)..=keys::envelope_key(&prefix, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in self.inner.items.range(range) {
            if out.len() >= max_items {
                break;
            }
            let (key, value) = entry.map_err(db_error)?;
            let (appended_at_ms, item) = keys::split_envelope_value(&value)?;
            bytes = bytes.saturating_add(item.len());
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(StoredItem {
                seq: keys::seq_of(&key)?,
                bytes: item.to_vec(),
                appended_at_ms,
            });
        }
        Ok(out)
    }

    /// Deletes every item appended at least the TTL before `now_ms`; returns how
    /// many. Works through the time index in bounded transactions (as the mailbox
    /// store does), so appends interleave with a long sweep. Logs keep their records,
    /// so their numbering goes on where it was.
    pub fn expire(&self, now_ms: u64) -> Result<usize, GroupLogError> {
        let ttl_ms = u64::try_from(self.inner.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let Some(cutoff) = now_ms.checked_sub(ttl_ms) else {
            return Ok(0);
        };
        let total = sweep::<GroupLogError>(&self.inner.expiry, cutoff, EXPIRE_BATCH, |batch| {
            let (removed, delta) = self.inner.transact(|tx| tx.expire_batch(batch, EmptyRecords::Keep))?;
            self.inner.totals.apply(delta);
            Ok(removed)
        })?;
        if total > 0 {
            // Not needed for safety (a lost expiry is redone), but frees the space.
            self.inner.flush()?;
            tracing::debug!(expired = total, "expired group log items");
        }
        Ok(total)
    }

    /// Totals over all logs, from counters kept in memory (no scan).
    pub fn stats(&self) -> GroupLogStats {
        self.inner.stats()
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), GroupLogError> {
        self.inner.flush()
    }
}

impl Inner {
    /// Runs `f` as one transaction over all trees; `f` may run several times on
    /// conflict, so it must only write through `tx`.
    fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, GroupLogError> {
        (
            &self.items,
            &self.hashes,
            &self.logs,
            &self.expiry,
            &self.meta,
        )
            .transaction(|(envelopes, hashes, mailboxes, expiry, meta)| {
                // The mailbox store's transaction steps, over the log trees.
                f(&Tx {
                    envelopes,
                    hashes,
                    mailboxes,
                    expiry,
                    meta,
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => GroupLogError::from(e),
                TransactionError::Storage(e) => GroupLogError::from(db_error(e)),
            })
    }

    fn flush(&self) -> Result<(), GroupLogError> {
        self.db.flush().map_err(db_error)?;
        Ok(())
    }

    fn stats(&self) -> GroupLogStats {
        let totals = self.totals.stats();
        GroupLogStats {
            logs: totals.mailboxes,
            items: totals.envelopes,
            bytes: totals.bytes,
        }
    }
}
