//! The durable mailbox store: sealed envelopes held for offline users.
//!
//! A mailbox is named by its owner's id (the peer id as bytes, opaque here, 1 to
//! [`MAX_MAILBOX_ID_LEN`] bytes). Senders [`deposit`](MailboxStore::deposit) batches
//! of envelopes; the owner [`list`](MailboxStore::list)s them in sequence order and
//! [`ack`](MailboxStore::ack)s what it has stored, which deletes them. Envelopes not
//! drained within the TTL are removed by [`expire`](MailboxStore::expire). Drains are
//! guarded by single-use, expiring challenges ([`Challenges`]); checking the owner's
//! signature over one is the caller's job.
//!
//! Durability: `deposit` and `ack` write one atomic batch per call and flush (fsync)
//! before returning, so a deposit may be acknowledged to its sender as soon as
//! `deposit` returns; a `kill -9` afterwards loses nothing. Concurrent calls share
//! flushes. All calls block on disk I/O: call them from `spawn_blocking` in async
//! code.
//!
//! Layout: each mailbox is one log of [`kith_p2p::kith_storage::seqlog::SeqLogs`]
//! (tree `mail`), which de-duplicates envelopes by their bytes (through a hash index
//! kept in memory and rebuilt at open), expires them by walking each mailbox from its
//! oldest and keeps every mailbox's counters in memory. A mailbox's
//! record is deleted when it empties; the store's sequence floor then remembers its
//! next sequence number, and new mailboxes start numbering there, so a sequence
//! number is never reused for a mailbox, across restarts too. Databases of the
//! earlier layouts (one tree per index; hashes on disk) are migrated when opened
//! (`db`).

mod challenge;
// Opening, schema checks, migration and error mapping are shared with the group
// log store (`crate::grouplog`), which has the same shape.
pub(crate) mod db;
pub(crate) mod error;
pub(crate) mod keys;
pub(crate) mod store;
use std::time::Duration;

pub use challenge::{Challenges, NONCE_LEN};
pub use error::{ChallengeError, DbError, MailboxError, OpenError};
pub use keys::MAX_MAILBOX_ID_LEN;
pub use store::MailboxStore;

/// The store's limits. [`MailboxLimits::default`] matches the config defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Envelopes older than this are removed by [`MailboxStore::expire`].
    pub ttl: Duration,
    /// Envelopes one mailbox may hold.
    pub max_messages_per_mailbox: u64,
    /// Envelope bytes one mailbox may hold.
    pub max_bytes_per_mailbox: u64,
    /// Percent of `max_messages_per_mailbox` and `max_bytes_per_mailbox` that
    /// deposits of [`Share::Open`] may fill (1 to 100).
    pub open_share_percent: u8,
    /// Envelope bytes all mailboxes together may hold (checked under the store's
    /// write lock, so concurrent deposits never overshoot it).
    pub max_total_bytes: u64,
    /// Envelopes all mailboxes together may hold (checked under the store's write
    /// lock like `max_total_bytes`). Each held envelope costs memory in the
    /// de-duplication index and time at open, so this bounds both whatever the
    /// envelopes' size.
    pub max_total_envelopes: u64,
    /// Largest accepted envelope, in bytes.
    pub max_envelope_bytes: u64,
    /// How long an issued drain challenge stays valid.
    pub challenge_ttl: Duration,
    /// Challenges outstanding at once; issuing one more drops the oldest.
    pub max_pending_challenges: usize,
    /// Challenges one mailbox may have outstanding; issuing one more drops that
    /// mailbox's own oldest.
    pub max_challenges_per_mailbox: usize,
}

/// Which part of a mailbox's quotas a deposit may fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// The whole quota: the depositor holds the owner's deposit ticket.
    Whole,
    /// [`MailboxLimits::open_share_percent`] of it: any other depositor. Counted
    /// against what the mailbox holds in all, so deposits without a ticket stop once
    /// the mailbox is that full, whoever filled it.
    Open,
}

impl MailboxLimits {
    /// The envelopes and bytes a mailbox may hold when a deposit of `share` comes:
    /// the whole quotas, or their open share (at least one envelope).
    pub fn quota(&self, share: Share) -> (u64, u64) {
        match share {
            Share::Whole => (self.max_messages_per_mailbox, self.max_bytes_per_mailbox),
            Share::Open => {
                let part = |whole: u64| {
                    let part = u128::from(whole) * u128::from(self.open_share_percent.min(100)) / 100;
                    u64::try_from(part).unwrap_or(u64::MAX)
                };
                (part(self.max_messages_per_mailbox).max(1), part(self.max_bytes_per_mailbox))
            }
        }
    }
}

impl Default for MailboxLimits {
    fn default() -> Self {
        crate::config::MailboxConfig::default().limits()
    }
}

/// What happened to one envelope of a [`MailboxStore::deposit`] batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DepositOutcome {
    /// Stored durably under this sequence number.
    Stored {
        /// The envelope's sequence number in its mailbox.
        seq: u64,
    },
    /// The mailbox already holds an identical envelope (same BLAKE3 hash); nothing
    /// was stored. As durable as `Stored`: the sender may count it as delivered.
    Duplicate {
        /// The sequence number of the envelope already held.
        seq: u64,
    },
    /// Not stored, for this reason.
    Refused(Refusal),
}

/// Why an envelope was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The mailbox holds `max_messages_per_mailbox` envelopes.
    QuotaCount,
    /// The envelope would take the mailbox over `max_bytes_per_mailbox`.
    QuotaBytes,
    /// The envelope is larger than `max_envelope_bytes`.
    TooLarge,
    /// The store as a whole is full: the envelope (or batch) would take it over
    /// `max_total_bytes`, or it holds its total count (`max_total_envelopes` for
    /// mailboxes, `max_total_items` for group logs).
    StoreFull,
}

/// An envelope held in a mailbox, as returned by [`MailboxStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Its sequence number in the mailbox.
    pub seq: u64,
    /// The sealed envelope, as deposited.
    pub envelope: Vec<u8>,
    /// When it was deposited (ms since the Unix epoch, as given to `deposit`).
    pub deposited_at_ms: u64,
}

/// Totals over the whole store, from maintained counters (cheap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Mailboxes holding at least one envelope.
    pub mailboxes: u64,
    /// Envelopes held.
    pub envelopes: u64,
    /// Envelope bytes held.
    pub bytes: u64,
}

/// What one mailbox holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Envelopes held.
    pub envelopes: u64,
    /// Envelope bytes held.
    pub bytes: u64,
}
