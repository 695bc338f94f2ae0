//! [`MailboxStore`]: the opened database and its operations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use kith_p2p::kith_storage::seqlog::{SeqLogs, Totals};

use super::challenge::{Challenges, NONCE_LEN};
use super::db::{Kind, open_logs};
use super::error::store_error;
use super::keys;
use super::{
    ChallengeError, DepositOutcome, MailboxError, MailboxLimits, MailboxStats, OpenError, Refusal, Share,
    StoredEnvelope, Usage,
};

/// Expired envelopes removed per batch, so one sweep never builds a huge batch or
/// holds up deposits for long.
pub(crate) const EXPIRE_BATCH: usize = 512;

/// Where the mailboxes live, and what they were before.
const KIND: Kind = Kind {
    tree: "mail",
    legacy_floor: true,
    legacy: ["envelopes", "hashes", "mailboxes", "expiry"],
};

/// Whether one more envelope of `len` bytes would take a store holding `totals`
/// over its total bytes or envelopes.
fn store_full(totals: Totals, len: u64, limits: &MailboxLimits) -> bool {
    totals.bytes.saturating_add(len) > limits.max_total_bytes
        || totals.items >= limits.max_total_envelopes
}

/// The durable mailbox store. Cheap to clone (one `Arc`), `Send + Sync`; every method
/// blocks on disk I/O.
#[derive(Clone)]
pub struct MailboxStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    logs: SeqLogs,
    limits: MailboxLimits,
    challenges: Mutex<Challenges>,
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
    /// Opens (creating if needed) the store in directory `dir`, checks its schema
    /// version and migrates an older layout. The directory is made 0700 and its
    /// files 0600 (on Unix).
    pub fn open(dir: &Path, limits: MailboxLimits) -> Result<MailboxStore, OpenError> {
        let (_db, logs) = open_logs(dir, &KIND)?;
        let store = MailboxStore {
            inner: Arc::new(Inner {
                path: dir.to_owned(),
                logs,
                challenges: Mutex::new(Challenges::new(
                    limits.challenge_ttl,
                    limits.max_pending_challenges,
                    limits.max_challenges_per_mailbox,
                )),
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
    pub fn limits(&self) -> &MailboxLimits {
        &self.inner.limits
    }

    /// Deposits a batch of envelopes into `mailbox` at time `now_ms`, one outcome per
    /// envelope in order. Checks, in order: size ([`Refusal::TooLarge`]), an identical
    /// envelope already held or earlier in the batch ([`DepositOutcome::Duplicate`],
    /// so a retry is answered even when the mailbox or store is full), then the
    /// mailbox's quotas and the store's total bytes and envelopes
    /// ([`Refusal::StoreFull`]), all under the write lock, so concurrent deposits
    /// never overshoot a total. A refused envelope stores nothing. The batch is one
    /// atomic write followed by one flush: when this returns `Ok`, every `Stored` and
    /// `Duplicate` envelope is durable and may be acknowledged to the sender.
    pub fn deposit<E: AsRef<[u8]>>(
        &self,
        mailbox: &[u8],
        envelopes: &[E],
        now_ms: u64,
    ) -> Result<Vec<DepositOutcome>, MailboxError> {
        self.deposit_in(mailbox, envelopes, now_ms, Share::Whole)
    }

    /// [`MailboxStore::deposit`] of a depositor that may fill only `share` of the
    /// mailbox's quotas ([`MailboxLimits::quota`]); refusals past it are the quotas'
    /// own ([`Refusal::QuotaCount`], [`Refusal::QuotaBytes`]).
    pub fn deposit_in<E: AsRef<[u8]>>(
        &self,
        mailbox: &[u8],
        envelopes: &[E],
        now_ms: u64,
        share: Share,
    ) -> Result<Vec<DepositOutcome>, MailboxError> {
        keys::check(mailbox)?;
        if envelopes.is_empty() {
            return Ok(Vec::new());
        }
        let limits = &self.inner.limits;
        let (max_messages, max_bytes) = limits.quota(share);
        let mut writer = self.inner.logs.writer();
        let mut outcomes = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let envelope = envelope.as_ref();
            let len = envelope.len() as u64;
            let record = writer.record(mailbox).map_err(store_error)?;
            let outcome = if len > limits.max_envelope_bytes {
                DepositOutcome::Refused(Refusal::TooLarge)
            } else if let Some(seq) = writer.find(mailbox, envelope).map_err(store_error)? {
                DepositOutcome::Duplicate { seq }
            } else if record.count >= max_messages {
                DepositOutcome::Refused(Refusal::QuotaCount)
            } else if record.bytes.saturating_add(len) > max_bytes {
                DepositOutcome::Refused(Refusal::QuotaBytes)
            } else if store_full(writer.totals(), len, limits) {
                DepositOutcome::Refused(Refusal::StoreFull)
            } else {
                let seq = writer.append(mailbox, now_ms, envelope).map_err(store_error)?;
                DepositOutcome::Stored { seq }
            };
            outcomes.push(outcome);
        }
        writer.commit().map_err(store_error)?;
        // Also when nothing new was stored: a `Duplicate` may have been committed by a
        // concurrent call that has not flushed yet.
        self.flush()?;
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
        keys::check(mailbox)?;
        let first = match after_seq {
            None => 0,
            Some(seq) => match seq.checked_add(1) {
                Some(first) => first,
                None => return Ok(Vec::new()),
            },
        };
        let items = self
            .inner
            .logs
            .list(mailbox, first, max_items, max_bytes)
            .map_err(store_error)?;
        Ok(items
            .into_iter()
            .map(|item| StoredEnvelope {
                seq: item.seq,
                envelope: item.bytes,
                deposited_at_ms: item.appended_at_ms,
            })
            .collect())
    }

    /// Deletes the envelopes `seqs` of `mailbox` (the owner has stored them) and
    /// flushes; returns how many were deleted. Unknown or already deleted sequence
    /// numbers are ignored, so a repeated ack is harmless.
    pub fn ack(&self, mailbox: &[u8], seqs: &[u64]) -> Result<usize, MailboxError> {
        keys::check(mailbox)?;
        if seqs.is_empty() {
            return Ok(0);
        }
        let mut writer = self.inner.logs.writer();
        let mut removed = 0;
        for &seq in seqs {
            if writer.remove(mailbox, seq).map_err(store_error)?.is_some() {
                removed += 1;
            }
        }
        writer.commit().map_err(store_error)?;
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    /// Deletes every envelope deposited at least the TTL before `now_ms`; returns how
    /// many. Walks each mailbox from its oldest envelope in bounded batches, so it
    /// costs a seek per non-empty mailbox plus what expired, and deposits interleave
    /// with a long sweep.
    pub fn expire(&self, now_ms: u64) -> Result<usize, MailboxError> {
        let ttl_ms = u64::try_from(self.inner.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let Some(cutoff) = now_ms.checked_sub(ttl_ms) else {
            return Ok(0);
        };
        let total = self.inner.logs.expire(cutoff, EXPIRE_BATCH).map_err(store_error)?;
        if total > 0 {
            // Not needed for safety (a lost expiry is redone), but frees the space.
            self.flush()?;
            tracing::debug!(expired = total, "expired mailbox envelopes");
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

    /// Totals over all mailboxes, from counters kept in memory (no scan).
    pub fn stats(&self) -> MailboxStats {
        let totals = self.inner.logs.totals();
        MailboxStats {
            mailboxes: totals.logs,
            envelopes: totals.items,
            bytes: totals.bytes,
        }
    }

    /// What `mailbox` holds (from memory).
    pub fn usage(&self, mailbox: &[u8]) -> Result<Usage, MailboxError> {
        keys::check(mailbox)?;
        Ok(self
            .inner
            .logs
            .record(mailbox)
            .map(|record| Usage {
                envelopes: record.count,
                bytes: record.bytes,
            })
            .unwrap_or_default())
    }

    /// Issues a drain challenge for `mailbox`: a random nonce the owner must sign,
    /// valid for `challenge_ttl` from `now_ms` and usable once (see [`Challenges`]).
    pub fn issue_challenge(
        &self,
        mailbox: &[u8],
        now_ms: u64,
    ) -> Result<[u8; NONCE_LEN], MailboxError> {
        keys::check(mailbox)?;
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
        self.inner.logs.flush().map_err(store_error)
    }

    /// For a clean shutdown, after the last write: flushes, and leaves the
    /// de-duplication index in a checkpoint the next open loads instead of reading
    /// every envelope. A write after this is still safe (it voids the checkpoint).
    pub fn checkpoint(&self) -> Result<(), MailboxError> {
        self.inner.logs.checkpoint().map_err(store_error)
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
