//! Key and value encodings of the mailbox trees (see the table in the module docs).

use super::MailboxError;

/// Longest mailbox id, in bytes (a libp2p peer id is at most 42 + a few bytes).
pub const MAX_MAILBOX_ID_LEN: usize = 64;

/// Length of a BLAKE3 hash.
pub(crate) const HASH_LEN: usize = 32;

/// `P ‖ seq` → `deposited_at_ms ‖ envelope`.
pub(crate) const ENVELOPES: &str = "envelopes";
/// `P ‖ blake3(envelope)` → `seq`.
pub(crate) const HASHES: &str = "hashes";
/// `P` → [`Record`], only for non-empty mailboxes.
pub(crate) const MAILBOXES: &str = "mailboxes";
/// `deposited_at_ms ‖ P ‖ seq` → empty.
pub(crate) const EXPIRY: &str = "expiry";
/// Store-wide values (the keys below).
pub(crate) const META: &str = "meta";

/// `meta` key of the schema version (`u32`).
pub(crate) const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
/// `meta` key of the first sequence number of a new mailbox (`u64`): at least the
/// next sequence number of every mailbox deleted when it emptied.
pub(crate) const SEQ_FLOOR_KEY: &[u8] = b"seq_floor";

/// The first sequence number of the first mailbox.
pub(crate) const FIRST_SEQ: u64 = 1;

/// `len ‖ id`: the key prefix of a mailbox. Validates the id.
pub(crate) fn prefix(mailbox: &[u8]) -> Result<Vec<u8>, MailboxError> {
    let len = u8::try_from(mailbox.len())
        .ok()
        .filter(|len| (1..=MAX_MAILBOX_ID_LEN).contains(&usize::from(*len)))
        .ok_or(MailboxError::InvalidMailbox { len: mailbox.len() })?;
    let mut key = Vec::with_capacity(1 + mailbox.len());
    key.push(len);
    key.extend_from_slice(mailbox);
    Ok(key)
}

/// `P ‖ seq`.
pub(crate) fn envelope_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    [prefix, &seq.to_be_bytes()].concat()
}

/// The sequence number at the end of an `envelopes` key.
pub(crate) fn seq_of(key: &[u8]) -> Result<u64, MailboxError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| u64_at(key, at))
        .ok_or_else(|| MailboxError::corrupt("short envelope key"))
}

/// `P ‖ hash`.
pub(crate) fn hash_key(prefix: &[u8], hash: &[u8; HASH_LEN]) -> Vec<u8> {
    [prefix, hash].concat()
}

/// `deposited_at_ms ‖ P ‖ seq`.
pub(crate) fn expiry_key(at_ms: u64, prefix: &[u8], seq: u64) -> Vec<u8> {
    [&at_ms.to_be_bytes(), prefix, &seq.to_be_bytes()].concat()
}

/// Splits an `expiry` key into the mailbox prefix and sequence number.
pub(crate) fn split_expiry_key(key: &[u8]) -> Result<(&[u8], u64), MailboxError> {
    let bad = || MailboxError::corrupt("malformed expiry key");
    let rest = key.get(8..).ok_or_else(bad)?;
    let len = usize::from(*rest.first().ok_or_else(bad)?);
    let prefix = rest.get(..1 + len).ok_or_else(bad)?;
    let seq = rest
        .get(1 + len..)
        .filter(|s| s.len() == 8)
        .ok_or_else(bad)?;
    Ok((prefix, u64_at(seq, 0).ok_or_else(bad)?))
}

/// `deposited_at_ms ‖ envelope`.
pub(crate) fn envelope_value(at_ms: u64, envelope: &[u8]) -> Vec<u8> {
    [&at_ms.to_be_bytes(), envelope].concat()
}

/// Splits an `envelopes` value into deposit time and envelope.
pub(crate) fn split_envelope_value(value: &[u8]) -> Result<(u64, &[u8]), MailboxError> {
    match (u64_at(value, 0), value.get(8..)) {
        (Some(at), Some(envelope)) => Ok((at, envelope)),
        _ => Err(MailboxError::corrupt("short envelope value")),
    }
}

/// Decodes a big-endian `u64` value (`hashes` values, `seq_floor`).
pub(crate) fn decode_u64(value: &[u8]) -> Result<u64, MailboxError> {
    u64_at(value, 0)
        .filter(|_| value.len() == 8)
        .ok_or_else(|| MailboxError::corrupt("expected an 8-byte integer"))
}

/// A mailbox's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The sequence number the next stored envelope gets.
    pub(crate) next_seq: u64,
    /// Envelopes held.
    pub(crate) count: u64,
    /// Envelope bytes held.
    pub(crate) bytes: u64,
}

impl Record {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[..8].copy_from_slice(&self.next_seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.count.to_be_bytes());
        out[16..].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Record, MailboxError> {
        match (
            value.len(),
            u64_at(value, 0),
            u64_at(value, 8),
            u64_at(value, 16),
        ) {
            (24, Some(next_seq), Some(count), Some(bytes)) => Ok(Record {
                next_seq,
                count,
                bytes,
            }),
            _ => Err(MailboxError::corrupt("malformed mailbox record")),
        }
    }
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefix_checks_length() {
        assert!(prefix(b"").is_err());
        assert!(prefix(&[7; MAX_MAILBOX_ID_LEN + 1]).is_err());
        assert_eq!(prefix(b"ab").unwrap(), [2, b'a', b'b']);
    }

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        let p = prefix(b"owner").unwrap();
        assert_eq!(seq_of(&envelope_key(&p, 258)).unwrap(), 258);
        assert!(envelope_key(&p, 255) < envelope_key(&p, 256));
        let key = expiry_key(1_000, &p, 9);
        assert_eq!(split_expiry_key(&key).unwrap(), (p.as_slice(), 9));
        assert!(expiry_key(999, &p, 9) < expiry_key(1_000, &prefix(b"a").unwrap(), 0));
        assert!(split_expiry_key(&key[..key.len() - 1]).is_err());
        let value = envelope_value(5, b"sealed");
        assert_eq!(split_envelope_value(&value).unwrap(), (5, &b"sealed"[..]));
        let record = Record {
            next_seq: 3,
            count: 2,
            bytes: 100,
        };
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        assert!(Record::decode(&[0; 23]).is_err());
    }
}
