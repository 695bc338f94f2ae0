//! The operations shared by the store's transactions: reading and writing mailbox
//! records and removing one envelope with its index entries, so every path keeps the
//! counters and indexes consistent the same way.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::MailboxError;
use super::keys::{self, FIRST_SEQ, Record, SEQ_FLOOR_KEY};

/// Result of a step inside a transaction.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<MailboxError>>;

/// Aborts the transaction with `e`.
pub(crate) fn abort<T>(e: MailboxError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// The trees as seen inside one transaction.
pub(crate) struct Tx<'a> {
    pub(crate) envelopes: &'a TransactionalTree,
    pub(crate) hashes: &'a TransactionalTree,
    pub(crate) mailboxes: &'a TransactionalTree,
    pub(crate) expiry: &'a TransactionalTree,
    pub(crate) meta: &'a TransactionalTree,
}

/// Net change made by a committed transaction, applied to the in-memory totals.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Delta {
    pub(crate) mailboxes: i64,
    pub(crate) envelopes: i64,
    pub(crate) bytes: i64,
}

impl Tx<'_> {
    /// The mailbox's record; a mailbox without one is empty and numbers from the
    /// floor. The flag says whether the record existed.
    pub(crate) fn record(&self, prefix: &[u8]) -> TxResult<(Record, bool)> {
        match self.mailboxes.get(prefix)? {
            Some(value) => match Record::decode(&value) {
                Ok(record) => Ok((record, true)),
                Err(e) => abort(e),
            },
            None => Ok((
                Record {
                    next_seq: self.seq_floor()?,
                    count: 0,
                    bytes: 0,
                },
                false,
            )),
        }
    }

    /// Writes the record back; an empty mailbox's record is deleted and its next
    /// sequence number raised into the floor, so it is never reused. Returns the
    /// change in the number of mailboxes (-1, 0 or 1).
    pub(crate) fn put_record(&self, prefix: &[u8], record: Record, existed: bool) -> TxResult<i64> {
        if record.count > 0 {
            self.mailboxes.insert(prefix, &record.encode()[..])?;
            return Ok(if existed { 0 } else { 1 });
        }
        if !existed {
            return Ok(0);
        }
        self.mailboxes.remove(prefix)?;
        if record.next_seq > self.seq_floor()? {
            self.meta
                .insert(SEQ_FLOOR_KEY, &record.next_seq.to_be_bytes()[..])?;
        }
        Ok(-1)
    }

    /// Removes envelope `seq` of the mailbox with its hash and expiry entries and
    /// takes it off `record`; returns its length, or `None` if it is not there.
    pub(crate) fn remove_envelope(
        &self,
        prefix: &[u8],
        seq: u64,
        record: &mut Record,
    ) -> TxResult<Option<u64>> {
        let Some(value) = self.envelopes.remove(keys::envelope_key(prefix, seq))? else {
            return Ok(None);
        };
        let (at_ms, envelope) = match keys::split_envelope_value(&value) {
            Ok(parts) => parts,
            Err(e) => return abort(e),
        };
        let hash = *blake3::hash(envelope).as_bytes();
        self.hashes.remove(keys::hash_key(prefix, &hash))?;
        self.expiry.remove(keys::expiry_key(at_ms, prefix, seq))?;
        let len = envelope.len() as u64;
        match (record.count.checked_sub(1), record.bytes.checked_sub(len)) {
            (Some(count), Some(bytes)) => {
                record.count = count;
                record.bytes = bytes;
            }
            _ => return abort(MailboxError::corrupt("mailbox counters below its contents")),
        }
        Ok(Some(len))
    }

    fn seq_floor(&self) -> TxResult<u64> {
        match self.meta.get(SEQ_FLOOR_KEY)? {
            Some(value) => keys::decode_u64(&value).or_else(abort),
            None => Ok(FIRST_SEQ),
        }
    }
}

/// What happens to a record left empty by expiry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyRecords {
    /// Delete it (a mailbox; the sequence floor keeps numbering monotonic).
    Drop,
    /// Keep it: it holds the next sequence number (a group log has many readers,
    /// whose cursors must stay valid).
    Keep,
}

impl Tx<'_> {
    /// Removes the items named by a batch of expiry-index keys with their index
    /// entries and updates their records; returns how many items went and the change
    /// to the totals.
    pub(crate) fn expire_batch(&self, batch: &[sled::IVec], empty: EmptyRecords) -> TxResult<(usize, Delta)> {
        // Per record: as it goes, and whether it held items before.
        let mut records: HashMap<&[u8], (Record, bool)> = HashMap::new();
        let mut delta = Delta::default();
        for key in batch {
            let (prefix, seq) = keys::split_expiry_key(key).or_else(abort)?;
            let (record, _) = match records.entry(prefix) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let (record, existed) = self.record(prefix)?;
                    entry.insert((record, existed && record.count > 0))
                }
            };
            if let Some(len) = self.remove_envelope(prefix, seq, record)? {
                delta.envelopes -= 1;
                delta.bytes -= len as i64;
            }
            // Gone already (acked meanwhile) or not: the index entry goes.
            self.expiry.remove(key.as_ref())?;
        }
        for (prefix, (record, held)) in records {
            delta.mailboxes += match empty {
                EmptyRecords::Drop => self.put_record(prefix, record, held)?,
                EmptyRecords::Keep => {
                    self.mailboxes.insert(prefix, &record.encode()[..])?;
                    if held && record.count == 0 { -1 } else { 0 }
                }
            };
        }
        Ok((delta.envelopes.unsigned_abs() as usize, delta))
    }
}

/// Expires everything the `expiry` index (`at_ms ‖ prefix ‖ seq` keys) holds from
/// before `cutoff_ms`, in transactions of at most `batch` keys made by `expire`, so
/// writes interleave with a long sweep; returns how many items went.
pub(crate) fn sweep<E: From<MailboxError>>(
    expiry: &sled::Tree,
    cutoff_ms: u64,
    batch: usize,
    mut expire: impl FnMut(&[sled::IVec]) -> Result<usize, E>,
) -> Result<usize, E> {
    let end = cutoff_ms.saturating_add(1).to_be_bytes();
    let mut total = 0;
    loop {
        let keys = expiry
            .range(..end.as_slice())
            .keys()
            .take(batch)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| E::from(super::error::db_error(e)))?;
        if keys.is_empty() {
            return Ok(total);
        }
        total += expire(&keys)?;
        if keys.len() < batch {
            return Ok(total);
        }
    }
}

