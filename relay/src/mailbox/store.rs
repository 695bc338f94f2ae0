//! [`MailboxStore`]: the opened database and its operations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sled::Transactional;
use sled::transaction::TransactionError;

use super::challenge::{Challenges, NONCE_LEN};
use kith_p2p::kith_storage::engine;

use super::error::{db_error, open_err};
use super::keys::{self, ENVELOPES, EXPIRY, HASHES, MAILBOXES, META, Record, SCHEMA_VERSION_KEY};
use super::txn::{Delta, EmptyRecords, Tx, TxResult, abort, sweep};
use super::{
    ChallengeError, DepositOutcome, MailboxError, MailboxLimits, MailboxStats, OpenError, Refusal,
    StoredEnvelope, Usage,
};

/// The schema version this build writes.
const SCHEMA_VERSION: u32 = 1;

/// How long `open` keeps retrying while the database lock is held: sled lets go of it
/// a moment after its last handle is dropped, so even a reopen in the same process
/// may have to wait; another process holding it fails after this.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Expired envelopes removed per transaction, so one sweep never builds a huge
/// transaction or holds up deposits for long.
pub(crate) const EXPIRE_BATCH: usize = 512;

/// sled's page cache bound. sled's default (1 GiB) is more than a volunteer relay
/// should spend; envelopes are read once, so caching buys little.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// The durable mailbox store. Cheap to clone (one `Arc`), `Send + Sync`; every method
/// blocks on disk I/O.
#[derive(Clone)]
pub struct MailboxStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    path: PathBuf,
    envelopes: sled::Tree,
    hashes: sled::Tree,
    mailboxes: sled::Tree,
    expiry: sled::Tree,
    meta: sled::Tree,
    limits: MailboxLimits,
    totals: Totals,
    challenges: Mutex<Challenges>,
}

/// In-memory totals, loaded at open from the mailbox records and moved by each
/// committed transaction's [`Delta`]. Signed so that deltas applied out of commit
/// order by racing threads never wrap.
#[derive(Default)]
pub(crate) struct Totals {
    mailboxes: AtomicI64,
    envelopes: AtomicI64,
    bytes: AtomicI64,
}

impl Totals {
    pub(crate) fn apply(&self, delta: Delta) {
        self.mailboxes.fetch_add(delta.mailboxes, Ordering::Relaxed);
        self.envelopes.fetch_add(delta.envelopes, Ordering::Relaxed);
        self.bytes.fetch_add(delta.bytes, Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self) -> u64 {
        u64::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The totals as [`MailboxStats`] (for the group log: logs, items, bytes).
    pub(crate) fn stats(&self) -> MailboxStats {
        let get = |n: &AtomicI64| u64::try_from(n.load(Ordering::Relaxed)).unwrap_or(0);
        MailboxStats {
            mailboxes: get(&self.mailboxes),
            envelopes: get(&self.envelopes),
            bytes: get(&self.bytes),
        }
    }
}

impl fmt::Debug for MailboxStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxStore")
            .field("path", &self.inner.path)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl MailboxStore {
    /// Opens (creating if needed) the store in directory `dir` and checks its schema
    /// version. The directory is made 0700 and its files 0600 (on Unix).
    pub fn open(dir: &Path, limits: MailboxLimits) -> Result<MailboxStore, OpenError> {
        kith_p2p::home::create_private_dir(dir).map_err(|source| OpenError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let db = open_sled(dir)?;
        check_schema(
            &db,
            &[ENVELOPES, HASHES, MAILBOXES, EXPIRY, META],
            SCHEMA_VERSION,
        )?;
        let open = |name: &str| db.open_tree(name).map_err(|e| OpenError::from(db_error(e)));
        let inner = Inner {
            envelopes: open(ENVELOPES)?,
            hashes: open(HASHES)?,
            mailboxes: open(MAILBOXES)?,
            expiry: open(EXPIRY)?,
            meta: open(META)?,
            db,
            path: dir.to_owned(),
            totals: Totals::default(),
            challenges: Mutex::new(Challenges::new(
                limits.challenge_ttl,
                limits.max_pending_challenges,
                limits.max_challenges_per_mailbox,
            )),
            limits,
        };
        for entry in inner.mailboxes.iter() {
            let (_, value) = entry.map_err(|e| OpenError::from(db_error(e)))?;
            let record = Record::decode(&value)?;
            inner.totals.apply(Delta {
                mailboxes: 1,
                envelopes: i64::try_from(record.count).unwrap_or(i64::MAX),
                bytes: i64::try_from(record.bytes).unwrap_or(i64::MAX),
            });
        }
        kith_p2p::home::restrict_tree(dir).map_err(|source| OpenError::Io {
            path: dir.to_owned(),
            source,
        })?;
        tracing::debug!(path = %dir.display(), stats = ?inner.stats(), "opened mailbox store");
        Ok(MailboxStore {
            inner: Arc::new(inner),
        })
    }

    /// The directory the store was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The limits the store enforces.
    pub fn limits(&self) -> &MailboxLimits {
        &self.inner.limits
    }

    /// Deposits a batch of envelopes into `mailbox` at time `now_ms`, one outcome per
    /// envelope in order. Checks, in order: size ([`Refusal::TooLarge`]), an identical
    /// envelope already held or earlier in the batch ([`DepositOutcome::Duplicate`]),
    /// then the mailbox and store quotas. The batch is one transaction followed by
    /// one flush: when this returns `Ok`, every `Stored` and `Duplicate` envelope is
    /// durable and may be acknowledged to the sender.
    pub fn deposit<E: AsRef<[u8]>>(
        &self,
        mailbox: &[u8],
        envelopes: &[E],
        now_ms: u64,
    ) -> Result<Vec<DepositOutcome>, MailboxError> {
        let prefix = keys::prefix(mailbox)?;
        if envelopes.is_empty() {
            return Ok(Vec::new());
        }
        let limits = &self.inner.limits;
        let hashes: Vec<[u8; keys::HASH_LEN]> = envelopes
            .iter()
            .map(|e| *blake3::hash(e.as_ref()).as_bytes())
            .collect();
        let store_bytes = self.inner.totals.bytes();
        let (outcomes, delta) = self.inner.transact(|tx| {
            let (mut record, existed) = tx.record(&prefix)?;
            let mut delta = Delta::default();
            let mut outcomes = Vec::with_capacity(envelopes.len());
            for (envelope, hash) in envelopes.iter().zip(&hashes) {
                let envelope = envelope.as_ref();
                let len = envelope.len() as u64;
                let hash_key = keys::hash_key(&prefix, hash);
                let outcome = if len > limits.max_envelope_bytes {
                    DepositOutcome::Refused(Refusal::TooLarge)
                } else if let Some(seq) = tx.hashes.get(&hash_key)? {
                    DepositOutcome::Duplicate {
                        seq: keys::decode_u64(&seq).or_else(abort)?,
                    }
                } else if record.count >= limits.max_messages_per_mailbox {
                    DepositOutcome::Refused(Refusal::QuotaCount)
                } else if record.bytes.saturating_add(len) > limits.max_bytes_per_mailbox {
                    DepositOutcome::Refused(Refusal::QuotaBytes)
                } else if store_bytes
                    .saturating_add_signed(delta.bytes)
                    .saturating_add(len)
                    > limits.max_total_bytes
                {
                    DepositOutcome::Refused(Refusal::StoreFull)
                } else {
                    let seq = record.next_seq;
                    let Some(next_seq) = seq.checked_add(1) else {
                        return abort(MailboxError::corrupt("sequence numbers exhausted"));
                    };
                    tx.envelopes.insert(
                        keys::envelope_key(&prefix, seq),
                        keys::envelope_value(now_ms, envelope),
                    )?;
                    tx.hashes.insert(hash_key, &seq.to_be_bytes()[..])?;
                    tx.expiry
                        .insert(keys::expiry_key(now_ms, &prefix, seq), &[][..])?;
                    record = Record {
                        next_seq,
                        count: record.count + 1,
                        bytes: record.bytes + len,
                    };
                    delta.envelopes += 1;
                    delta.bytes += len as i64;
                    DepositOutcome::Stored { seq }
                };
                outcomes.push(outcome);
            }
            if delta.envelopes > 0 {
                delta.mailboxes = tx.put_record(&prefix, record, existed)?;
            }
            Ok((outcomes, delta))
        })?;
        // Also when nothing new was stored: a `Duplicate` may have been committed by a
        // concurrent call that has not flushed yet.
        self.inner.flush()?;
        self.inner.totals.apply(delta);
        Ok(outcomes)
    }

    /// Envelopes of `mailbox` with a sequence number above `after_seq` (all if
    /// `None`), in sequence order: at most `max_items`, and no more than `max_bytes`
    /// of envelopes — except that the first envelope is returned whatever its size,
    /// so a drain always makes progress.
    pub fn list(
        &self,
        mailbox: &[u8],
        after_seq: Option<u64>,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, MailboxError> {
        let prefix = keys::prefix(mailbox)?;
        let first = match after_seq {
            None => 0,
            Some(seq) => match seq.checked_add(1) {
                Some(first) => first,
                None => return Ok(Vec::new()),
            },
        };
        let range = keys::envelope_key(&prefix, first)..=keys::envelope_key(&prefix, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in self.inner.envelopes.range(range) {
            if out.len() >= max_items {
                break;
            }
            let (key, value) = entry.map_err(db_error)?;
            let (deposited_at_ms, envelope) = keys::split_envelope_value(&value)?;
            bytes = bytes.saturating_add(envelope.len());
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(StoredEnvelope {
                seq: keys::seq_of(&key)?,
                envelope: envelope.to_vec(),
                deposited_at_ms,
            });
        }
        Ok(out)
    }

    /// Deletes the envelopes `seqs` of `mailbox` (the owner has stored them) and
    /// flushes; returns how many were deleted. Unknown or already deleted sequence
    /// numbers are ignored, so a repeated ack is harmless.
    pub fn ack(&self, mailbox: &[u8], seqs: &[u64]) -> Result<usize, MailboxError> {
        let prefix = keys::prefix(mailbox)?;
        if seqs.is_empty() {
            return Ok(0);
        }
        let (removed, delta) = self.inner.transact(|tx| {
            let (mut record, existed) = tx.record(&prefix)?;
            let mut delta = Delta::default();
            if !existed {
                return Ok((0, delta));
            }
            for &seq in seqs {
                if let Some(len) = tx.remove_envelope(&prefix, seq, &mut record)? {
                    delta.envelopes -= 1;
                    delta.bytes -= len as i64;
                }
            }
            if delta.envelopes < 0 {
                delta.mailboxes = tx.put_record(&prefix, record, existed)?;
            }
            Ok((delta.envelopes.unsigned_abs() as usize, delta))
        })?;
        if removed > 0 {
            self.inner.flush()?;
        }
        self.inner.totals.apply(delta);
        Ok(removed)
    }

    /// Deletes every envelope deposited at least the TTL before `now_ms`; returns how
    /// many. Works through the time index in bounded transactions, so it costs time
    /// in proportion to what expired, and deposits interleave with a long sweep.
    pub fn expire(&self, now_ms: u64) -> Result<usize, MailboxError> {
        let ttl_ms = u64::try_from(self.inner.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let Some(cutoff) = now_ms.checked_sub(ttl_ms) else {
            return Ok(0);
        };
        let total = sweep::<MailboxError>(&self.inner.expiry, cutoff, EXPIRE_BATCH, |batch| {
            let (removed, delta) = self.inner.transact(|tx| tx.expire_batch(batch, EmptyRecords::Drop))?;
            self.inner.totals.apply(delta);
            Ok(removed)
        })?;
        if total > 0 {
            // Not needed for safety (a lost expiry is redone), but frees the space.
            self.inner.flush()?;
            tracing::debug!(expired = total, "expired mailbox envelopes");
        }
        Ok(total)
    }

    /// Totals over all mailboxes, from counters kept in memory (no scan).
    pub fn stats(&self) -> MailboxStats {
        self.inner.stats()
    }

    /// What `mailbox` holds.
    pub fn usage(&self, mailbox: &[u8]) -> Result<Usage, MailboxError> {
        let prefix = keys::prefix(mailbox)?;
        match self.inner.mailboxes.get(prefix).map_err(db_error)? {
            Some(value) => {
                let record = Record::decode(&value)?;
                Ok(Usage {
                    envelopes: record.count,
                    bytes: record.bytes,
                })
            }
            None => Ok(Usage::default()),
        }
    }

    /// Issues a drain challenge for `mailbox`: a random nonce the owner must sign,
    /// valid for `challenge_ttl` from `now_ms` and usable once (see [`Challenges`]).
    pub fn issue_challenge(
        &self,
        mailbox: &[u8],
        now_ms: u64,
    ) -> Result<[u8; NONCE_LEN], MailboxError> {
        keys::prefix(mailbox)?;
        Ok(self.challenges().issue(mailbox, now_ms))
    }

    /// Consumes a challenge issued for `mailbox`. Call it after verifying the owner's
    /// signature over the nonce; a used, expired or unknown nonce is refused.
    pub fn take_challenge(
        &self,
        mailbox: &[u8],
        nonce: &[u8; NONCE_LEN],
        now_ms: u64,
    ) -> Result<(), ChallengeError> {
        self.challenges().take(mailbox, nonce, now_ms)
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), MailboxError> {
        self.inner.flush()
    }

    fn challenges(&self) -> std::sync::MutexGuard<'_, Challenges> {
        // A panic while holding the lock cannot leave the map half-updated in a way
        // that matters (at worst a stale entry), so poisoning is ignored.
        self.inner
            .challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Runs `f` as one transaction over all trees; `f` may run several times on
    /// conflict, so it must only write through `tx`.
    fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, MailboxError> {
        (
            &self.envelopes,
            &self.hashes,
            &self.mailboxes,
            &self.expiry,
            &self.meta,
        )
            .transaction(|(envelopes, hashes, mailboxes, expiry, meta)| {
                f(&Tx {
                    envelopes,
                    hashes,
                    mailboxes,
                    expiry,
                    meta,
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => db_error(e),
            })
    }

    fn flush(&self) -> Result<(), MailboxError> {
        self.db.flush().map_err(db_error)?;
        Ok(())
    }

    fn stats(&self) -> MailboxStats {
        self.totals.stats()
    }
}

/// Opens sled as every kith store does ([`kith_p2p::kith_storage::engine::open_sled`]:
/// waiting up to [`LOCK_WAIT`] for a held lock, engine panics turned into
/// [`OpenError::Corrupt`]).
pub(crate) fn open_sled(dir: &Path) -> Result<sled::Db, OpenError> {
    engine::open_sled(dir, CACHE_CAPACITY_BYTES, LOCK_WAIT).map_err(|e| open_err(dir, e))
}

/// Checks (and for a new database, stamps) the schema version `version`, kept in
/// tree [`META`]; `ours` names every tree the store uses, so that a database holding
/// anything else is refused as foreign.
pub(crate) fn check_schema(db: &sled::Db, ours: &[&str], version: u32) -> Result<(), OpenError> {
    let err = |e| OpenError::from(db_error(e));
    let meta = db.open_tree(META).map_err(err)?;
    match meta.get(SCHEMA_VERSION_KEY).map_err(err)? {
        Some(value) => {
            let found = <[u8; 4]>::try_from(value.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| OpenError::Corrupt {
                    detail: "malformed schema version".into(),
                })?;
            if found != version {
                return Err(OpenError::UnsupportedVersion {
                    found,
                    supported: version,
                });
            }
            // The mailbox and group log stores share the version key: data in a
            // tree that is not ours means the other kind of store (empty strays,
            // left by such a mistaken open, are harmless).
            for name in db.tree_names() {
                let known = ours.iter().any(|n| n.as_bytes() == name.as_ref());
                if !known
                    && name.as_ref() != b"__sled__default"
                    && !db.open_tree(&name).map_err(err)?.is_empty()
                {
                    return Err(OpenError::Foreign {
                        detail: format!(
                            "tree {:?} holds data this store does not know",
                            String::from_utf8_lossy(&name)
                        ),
                    });
                }
            }
            Ok(())
        }
        None => {
            // Acceptable only for a database holding nothing yet (possibly our own
            // trees left empty by a crash during creation).
            for name in db.tree_names() {
                let tree = db.open_tree(&name).map_err(err)?;
                let known = ours.iter().any(|n| n.as_bytes() == name.as_ref());
                if !tree.is_empty() || !(known || name.as_ref() == b"__sled__default") {
                    return Err(OpenError::Foreign {
                        detail: format!(
                            "no schema version, but tree {:?} exists or holds data",
                            String::from_utf8_lossy(&name)
                        ),
                    });
                }
            }
            meta.insert(SCHEMA_VERSION_KEY, &version.to_be_bytes())
                .map_err(err)?;
            db.flush().map_err(err)?;
            Ok(())
        }
    }
}
