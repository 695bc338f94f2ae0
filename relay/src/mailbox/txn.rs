//! The operations shared by the store's transactions: reading and writing mailbox
//! records and removing one envelope with its index entries, so every path keeps the
//! counters and indexes consistent the same way.

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
