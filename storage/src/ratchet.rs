//! Ratchet state as opaque records: the network layer encrypts what it keeps here
//! (the Olm account and each peer's sessions) and decides what the keys mean.
//!
//! The records live in the message log (key/value records, see
//! [`crate::msglog`]), so the `fdatasync` that makes a batch of messages durable
//! covers the ratchet state they changed too. Writes are not synced: the caller
//! syncs them with [`Store::flush`](crate::Store::flush) together with whatever
//! they belong to (an incoming message, or before an envelope sealed with them
//! leaves).
//!
//! An append-only log keeps every replaced value until a compaction, so the
//! network layer seals records under a key it can destroy: the *key file*
//! ([`RATCHET_KEY_FILE`]), two fixed-size slots overwritten in place: a write goes
//! to the slot not in use and, once synced, the other is zeroed, so the contents it
//! replaces do not stay in the file and a torn write leaves the previous contents.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::StoreError;
use crate::msglog::io_error;
use crate::store::Inner;

/// A stored record: its key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// One change of [`RatchetState::write`]: the key, and its new value (`None`
/// removes it).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// The key file's name in the database directory.
pub const RATCHET_KEY_FILE: &str = "ratchet.key";

/// The most bytes the key file holds (see [`RatchetState::write_key_file`]).
pub const RATCHET_KEY_FILE_CAPACITY: usize = KEY_SLOT_LEN - SLOT_HEADER - SLOT_CHECK;

/// One slot of the key file: a disk sector. A slot is `sequence (u64 LE) ‖ length
/// (u16 LE) ‖ contents ‖ zeros ‖ check`, the check being the first 8 bytes of
/// BLAKE3 of everything before it; the valid slot with the highest sequence holds
/// the contents. A torn or zeroed slot fails its check and is ignored.
const KEY_SLOT_LEN: usize = 512;
const SLOT_HEADER: usize = 8 + 2;
const SLOT_CHECK: usize = 8;
/// The key file's size: two slots.
const KEY_FILE_LEN: usize = 2 * KEY_SLOT_LEN;

/// Handle to the ratchet state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RatchetState {
    pub(crate) inner: Arc<Inner>,
}

impl RatchetState {
    /// The record under `key`: one read from the file.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.log.get_kv(key)
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        self.inner.log.scan_kv(prefix)
    }

    /// Every record whose key starts with `prefix` and that `keep` takes, judged
    /// by its key and its value's length alone: the values of those it leaves are
    /// not read (a scan for the few sealed records among many small ones).
    pub fn scan_where(&self, prefix: &[u8], keep: impl Fn(&[u8], usize) -> bool) -> Result<Vec<Record>, StoreError> {
        self.inner.log.scan_kv_where(prefix, keep)
    }

    /// The keys under `prefix` whose value `keep` takes, in no order. Values of
    /// at most 8 bytes are held in memory: judging them reads no disk.
    pub fn keys_where(&self, prefix: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.log.kv_keys_where(prefix, keep)
    }

    /// Applies `changes` in order (a later change of a key wins) as one frame
    /// of the message log, written with one `pwrite`: after a crash all or none
    /// of them are there (a batch past the log's frame size is split, each part
    /// all or nothing). Visible at once; durable after the next
    /// [`Store::flush`](crate::Store::flush). A key longer than 65 535 bytes or
    /// a value too large for the log is refused before anything is written.
    pub fn write(&self, changes: &[Change]) -> Result<(), StoreError> {
        self.inner.log.write_kv(changes)
    }

    /// Makes every write so far durable: [`Store::flush`](crate::Store::flush)
    /// (sled writes and syncs nothing when it holds no change).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().map(drop)
    }

    /// The key file's contents, as [`write_key_file`](Self::write_key_file)
    /// last wrote them whole; `None` if there is no key file. A file of the wrong
    /// size, or with no valid slot, is [`StoreError::Corrupt`].
    pub fn read_key_file(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = match std::fs::read(self.key_file()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        match newest_slot(&bytes) {
            Some((_, _, contents)) => Ok(Some(contents.to_vec())),
            None => Err(StoreError::corrupt(RATCHET_KEY_FILE, "not a ratchet key file, or no slot in it is whole")),
        }
    }

    /// Replaces the key file's contents (at most [`RATCHET_KEY_FILE_CAPACITY`] bytes)
    /// and syncs them: durable when it returns `Ok`. In an existing file the
    /// contents go to the slot not in use, which is synced, then the other slot is
    /// zeroed and synced: what the file held before does not stay in it, and a
    /// crash or torn write at any point leaves either the old contents or the new
    /// (the slot with the higher sequence wins when both are whole). A file with no
    /// whole slot (missing, of another size, or damaged) is replaced whole: written
    /// beside it and renamed into place, owner-only (0600).
    /// (Filesystems that copy on write, and flash translation layers, may keep the
    /// old block elsewhere on the device: this protects against a copy of the
    /// files, not against a forensic reading of the disk.)
    pub fn write_key_file(&self, contents: &[u8]) -> Result<(), StoreError> {
        if contents.len() > RATCHET_KEY_FILE_CAPACITY {
            return Err(StoreError::Encode { detail: format!("{} bytes do not fit the ratchet key file", contents.len()) });
        }
        let path = self.key_file();
        // A read error is the caller's: taking it for "no slot" would write over the
        // keys in use.
        let in_use = match std::fs::read(&path) {
            Ok(bytes) => newest_slot(&bytes).map(|(index, seq, _)| (index, seq)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(e)),
        };
        match in_use {
            Some((old, seq)) => {
                let file = OpenOptions::new().write(true).open(&path).map_err(io_error)?;
                file.write_all_at(&encode_slot(seq + 1, contents), ((1 - old) * KEY_SLOT_LEN) as u64).map_err(io_error)?;
                file.sync_data().map_err(io_error)?;
                file.write_all_at(&[0u8; KEY_SLOT_LEN], (old * KEY_SLOT_LEN) as u64).map_err(io_error)?;
                file.sync_data().map_err(io_error)
            }
            None => {
                let fresh = path.with_extension("key.new");
                let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&fresh).map_err(io_error)?;
                let mut bytes = encode_slot(1, contents).to_vec();
                bytes.resize(KEY_FILE_LEN, 0);
                file.write_all_at(&bytes, 0).map_err(io_error)?;
                file.sync_all().map_err(io_error)?;
                std::fs::rename(&fresh, &path).map_err(io_error)?;
                File::open(&self.inner.path).and_then(|d| d.sync_all()).map_err(io_error)
            }
        }
    }

    fn key_file(&self) -> PathBuf {
        self.inner.path.join(RATCHET_KEY_FILE)
    }
}

/// A key file slot holding `contents` (at most [`RATCHET_KEY_FILE_CAPACITY`] bytes)
/// at sequence `seq`.
fn encode_slot(seq: u64, contents: &[u8]) -> [u8; KEY_SLOT_LEN] {
    let mut slot = [0u8; KEY_SLOT_LEN];
    slot[..8].copy_from_slice(&seq.to_le_bytes());
    slot[8..SLOT_HEADER].copy_from_slice(&u16::try_from(contents.len()).unwrap_or(u16::MAX).to_le_bytes());
    slot[SLOT_HEADER..SLOT_HEADER + contents.len()].copy_from_slice(contents);
    let check = blake3::hash(&slot[..KEY_SLOT_LEN - SLOT_CHECK]);
    slot[KEY_SLOT_LEN - SLOT_CHECK..].copy_from_slice(&check.as_bytes()[..SLOT_CHECK]);
    slot
}

/// The valid slot of a key file with the highest sequence: (its index, sequence,
/// contents). `None` for a file of the wrong size or without a valid slot.
fn newest_slot(file: &[u8]) -> Option<(usize, u64, &[u8])> {
    if file.len() != KEY_FILE_LEN {
        return None;
    }
    file.chunks_exact(KEY_SLOT_LEN)
        .enumerate()
        .filter_map(|(index, slot)| {
            let (body, check) = slot.split_at(KEY_SLOT_LEN - SLOT_CHECK);
            if blake3::hash(body).as_bytes()[..SLOT_CHECK] != *check {
                return None;
            }
            let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
            let len = usize::from(u16::from_le_bytes(body[8..SLOT_HEADER].try_into().ok()?));
            let contents = body.get(SLOT_HEADER..SLOT_HEADER + len)?;
            Some((index, seq, contents))
        })
        .max_by_key(|(_, seq, _)| *seq)
}
