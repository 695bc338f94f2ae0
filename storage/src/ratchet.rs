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
//! ([`RATCHET_KEY_FILE`]), one fixed-size slot that each write overwrites in place,
//! so the contents it replaces do not stay in the file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::StoreError;
use crate::msglog::{check_kv, io_error};
use crate::store::Inner;

/// A stored record: its key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// One change of [`RatchetState::write`]: the key, and its new value (`None`
/// removes it).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// The key file's name in the database directory.
pub const RATCHET_KEY_FILE: &str = "ratchet.key";

/// The most bytes the key file holds (see [`RatchetState::write_key_file`]).
pub const RATCHET_KEY_FILE_CAPACITY: usize = KEY_SLOT_LEN - 2;

/// The key file's size: one slot of one disk sector, written whole at offset 0,
/// which disks write all or nothing in practice (as SQLite's "powersafe
/// overwrite" assumes). A torn write would make the key file unreadable, not
/// wrong: its contents are authenticated by the network layer.
const KEY_SLOT_LEN: usize = 512;

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

    /// Applies `changes` in order (a later change of a key wins) as one frame
    /// of the message log, written with one `pwrite`: after a crash all or none
    /// of them are there (a batch past the log's frame size is split, each part
    /// all or nothing). Visible at once; durable after the next
    /// [`Store::flush`](crate::Store::flush). A key longer than 65 535 bytes or
    /// a value too large for the log is refused before anything is written.
    pub fn write(&self, changes: &[Change]) -> Result<(), StoreError> {
        for (key, value) in changes {
            check_kv(key, value.as_ref().map_or(0, Vec::len))?;
        }
        let mut batch = self.inner.log.batch();
        for (key, value) in changes {
            match value {
                Some(value) => batch.put_kv(key, value)?,
                None => {
                    batch.drop_kv(key)?;
                }
            }
        }
        batch.commit()
    }

    /// Makes every write so far durable: [`Store::flush`](crate::Store::flush)
    /// (sled writes and syncs nothing when it holds no change).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().map(drop)
    }

    /// The key file's contents, as [`write_key_file`](Self::write_key_file)
    /// last wrote them; `None` if there is no key file. A file of the wrong
    /// size, or whose length field runs past its slot, is
    /// [`StoreError::Corrupt`].
    pub fn read_key_file(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = match std::fs::read(self.key_file()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let corrupt = || StoreError::corrupt(RATCHET_KEY_FILE, "not a ratchet key file");
        if bytes.len() != KEY_SLOT_LEN {
            return Err(corrupt());
        }
        let len = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        bytes.get(2..2 + len).map(|c| Some(c.to_vec())).ok_or_else(corrupt)
    }

    /// Replaces the key file's contents (at most [`RATCHET_KEY_FILE_CAPACITY`] bytes)
    /// and syncs them: durable when it returns `Ok`. An existing file is
    /// overwritten in place, its whole slot (the rest zeroed), so what it held
    /// before is not left in the file; a new one is written beside it and
    /// renamed into place, owner-only (0600), so it never exists half-written.
    /// (Filesystems that copy on write, and flash translation layers, may keep
    /// the old block elsewhere on the device: this protects against a copy of
    /// the files, not against a forensic reading of the disk.)
    pub fn write_key_file(&self, contents: &[u8]) -> Result<(), StoreError> {
        if contents.len() > RATCHET_KEY_FILE_CAPACITY {
            return Err(StoreError::Encode { detail: format!("{} bytes do not fit the ratchet key file", contents.len()) });
        }
        let mut slot = [0u8; KEY_SLOT_LEN];
        slot[..2].copy_from_slice(&(contents.len() as u16).to_le_bytes());
        slot[2..2 + contents.len()].copy_from_slice(contents);
        let path = self.key_file();
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) => {
                file.write_all_at(&slot, 0).map_err(io_error)?;
                file.sync_data().map_err(io_error)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let fresh = path.with_extension("key.new");
                let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&fresh).map_err(io_error)?;
                file.write_all_at(&slot, 0).map_err(io_error)?;
                file.sync_all().map_err(io_error)?;
                std::fs::rename(&fresh, &path).map_err(io_error)?;
                File::open(&self.inner.path).and_then(|d| d.sync_all()).map_err(io_error)
            }
            Err(e) => Err(io_error(e)),
        }
    }

    fn key_file(&self) -> PathBuf {
        self.inner.path.join(RATCHET_KEY_FILE)
    }
}
