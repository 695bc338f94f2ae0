//! Blobs on disk, as files (a 4 GiB blob has no place in a database value), for a
//! node's downloads and uploads and for a media node's holdings.
//!
//! Per blob, in the store's directory (all files mode 0600):
//! - `<id>.outboard`: the plaintext length (8 bytes) and the chunk hashes, written
//!   atomically when the blob is added;
//! - `<id>.data`: the sealed chunks, each at its fixed offset (`index` × the sealed
//!   chunk size), so chunks can arrive in any order and a missing one is a hole;
//! - `<id>.have`: one bit per chunk, set only for chunks that were checked against
//!   their hash and made durable.
//!
//! Durability: [`BlobStore::put`] writes a checked chunk but does not sync;
//! [`BlobStore::sync`] syncs the data file first and only then replaces the bitmap,
//! so after a crash (`kill -9`) a chunk marked as held is on disk; chunks written
//! after the last sync are fetched again. A transfer resumes from
//! [`BlobStore::missing`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{BlobError, BlobId, CHUNK_SIZE, Outboard, TAG_SIZE};
use crate::home::{Overwrite, write_private_file};

/// Where sealed chunk `index` starts in a blob's data file.
fn offset(index: u64) -> u64 {
    index * (CHUNK_SIZE + TAG_SIZE) as u64
}

/// One blob being held: its outboard, open data file and which chunks it has.
struct Held {
    outboard: Outboard,
    data: File,
    have: Vec<u8>,
    /// Chunks written since the last sync (not yet in the bitmap on disk).
    unsynced: Vec<u64>,
}

impl Held {
    fn has(&self, index: u64) -> bool {
        self.have.get((index / 8) as usize).is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }

    fn mark(&mut self, index: u64) {
        if let Some(byte) = self.have.get_mut((index / 8) as usize) {
            *byte |= 1 << (index % 8);
        }
    }
}

/// A directory of blobs (see the module docs). Safe to share between threads.
pub struct BlobStore {
    dir: PathBuf,
    open: Mutex<HashMap<BlobId, Held>>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("dir", &self.dir).finish()
    }
}

impl BlobStore {
    /// The store in `dir`, created (mode 0700) if missing.
    pub fn open(dir: &Path) -> io::Result<BlobStore> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(BlobStore { dir: dir.to_path_buf(), open: Mutex::new(HashMap::new()) })
    }

    fn path(&self, id: &BlobId, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, Held>> {
        // A panic while holding the lock leaves no half-made state worth refusing.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts holding the blob `outboard` describes (nothing if it is held already).
    /// The outboard is written durably before this returns.
    pub fn add(&self, outboard: &Outboard) -> Result<(), BlobError> {
        let id = outboard.id();
        let mut open = self.lock();
        if open.contains_key(&id) || self.path(&id, "outboard").exists() {
            return Ok(());
        }
        let data = self.data_file(&id)?;
        data.set_len(outboard.sealed_size())?;
        data.sync_all()?;
        let have = vec![0u8; outboard.chunks().div_ceil(8) as usize];
        write_private_file(&self.path(&id, "have"), &have, Overwrite::Allowed)?;
        self.write_outboard(outboard)?;
        open.insert(id, Held { outboard: outboard.clone(), data, have, unsynced: Vec::new() });
        Ok(())
    }

    /// Takes `sealed`, a file [`super::seal`] wrote (its chunks in order, which is
    /// this store's data layout), as the whole blob `outboard` describes, moving it
    /// into the store: the blob is then complete and durable. `sealed` must be on
    /// the store's file system. A blob already held is left as it is (and `sealed`
    /// removed).
    pub fn import(&self, outboard: &Outboard, sealed: &Path) -> Result<(), BlobError> {
        let id = outboard.id();
        let mut open = self.lock();
        if open.contains_key(&id) || self.path(&id, "outboard").exists() {
            std::fs::remove_file(sealed)?;
            return Ok(());
        }
        let file = File::open(sealed)?;
        if file.metadata()?.len() != outboard.sealed_size() {
            return Err(BlobError::WrongLength("sealed blob"));
        }
        file.sync_all()?;
        std::fs::rename(sealed, self.path(&id, "data"))?;
        let mut have = vec![0xffu8; outboard.chunks().div_ceil(8) as usize];
        if !outboard.chunks().is_multiple_of(8)
            && let Some(last) = have.last_mut()
        {
            *last = (1u8 << (outboard.chunks() % 8)) - 1;
        }
        write_private_file(&self.path(&id, "have"), &have, Overwrite::Allowed)?;
        self.write_outboard(outboard)?;
        let data = self.data_file(&id)?;
        open.insert(id, Held { outboard: outboard.clone(), data, have, unsynced: Vec::new() });
        Ok(())
    }

    /// The outboard file, written last: a blob counts as held once it is there.
    fn write_outboard(&self, outboard: &Outboard) -> Result<(), BlobError> {
        let mut record = outboard.len().to_be_bytes().to_vec();
        for hash in outboard.hashes() {
            record.extend_from_slice(hash);
        }
        write_private_file(&self.path(&outboard.id(), "outboard"), &record, Overwrite::Allowed)?;
        Ok(())
    }

    /// A temporary file in the store's directory (so it can be moved into the store).
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new().prefix(".incoming-").tempfile_in(&self.dir)
    }

    fn data_file(&self, id: &BlobId) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(self.path(id, "data"))
    }

    /// Runs `f` on the held blob `id`, loading it from disk first if needed.
    fn with<T>(&self, id: &BlobId, f: impl FnOnce(&mut Held) -> Result<T, BlobError>) -> Result<Option<T>, BlobError> {
        let mut open = self.lock();
        if !open.contains_key(id) {
            let Some(held) = self.load(id)? else { return Ok(None) };
            open.insert(*id, held);
        }
        match open.get_mut(id) {
            Some(held) => f(held).map(Some),
            None => Ok(None),
        }
    }

    /// A blob's files as written by [`BlobStore::add`] and [`BlobStore::sync`].
    fn load(&self, id: &BlobId) -> Result<Option<Held>, BlobError> {
        let mut record = Vec::new();
        match File::open(self.path(id, "outboard")) {
            Ok(mut file) => file.read_to_end(&mut record)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some((len, hashes)) = record.split_first_chunk::<8>() else { return Err(BlobError::BadOutboard) };
        if hashes.len() % 32 != 0 {
            return Err(BlobError::BadOutboard);
        }
        let hashes = hashes.chunks_exact(32).filter_map(|h| <[u8; 32]>::try_from(h).ok()).collect();
        let outboard = Outboard::new(id, u64::from_be_bytes(*len), hashes)?;
        let mut have = std::fs::read(self.path(id, "have"))?;
        have.resize(outboard.chunks().div_ceil(8) as usize, 0);
        let data = self.data_file(id)?;
        Ok(Some(Held { outboard, data, have, unsynced: Vec::new() }))
    }

    /// The outboard of a held blob.
    pub fn outboard(&self, id: &BlobId) -> Result<Option<Outboard>, BlobError> {
        self.with(id, |held| Ok(held.outboard.clone()))
    }

    /// Stores sealed chunk `index` of blob `id` after checking it against its hash
    /// ([`BlobError::BadChunk`] otherwise; nothing is written then). Not durable until
    /// [`BlobStore::sync`]. `Ok(false)` if the blob is not held.
    pub fn put(&self, id: &BlobId, index: u64, sealed: &[u8]) -> Result<bool, BlobError> {
        let stored = self.with(id, |held| {
            held.outboard.check(index, sealed)?;
            if !held.has(index) {
                held.data.write_all_at(sealed, offset(index))?;
                held.mark(index);
                held.unsynced.push(index);
            }
            Ok(())
        })?;
        Ok(stored.is_some())
    }

    /// Makes every chunk stored so far durable and records it as held.
    pub fn sync(&self, id: &BlobId) -> Result<(), BlobError> {
        self.with(id, |held| {
            if held.unsynced.is_empty() {
                return Ok(());
            }
            held.data.sync_data()?;
            write_private_file(&self.path(id, "have"), &held.have, Overwrite::Allowed)?;
            held.unsynced.clear();
            Ok(())
        })?;
        Ok(())
    }

    /// Sealed chunk `index` of blob `id`, if held (read back and checked again, so a
    /// chunk damaged on disk is never served).
    pub fn get(&self, id: &BlobId, index: u64) -> Result<Option<Vec<u8>>, BlobError> {
        let chunk = self.with(id, |held| {
            if !held.has(index) {
                return Ok(None);
            }
            let size = held.outboard.sealed_len(index).unwrap_or(0);
            let mut sealed = vec![0u8; size];
            held.data.read_exact_at(&mut sealed, offset(index))?;
            held.outboard.check(index, &sealed)?;
            Ok(Some(sealed))
        })?;
        Ok(chunk.flatten())
    }

    /// The chunks of blob `id` not held yet, in order (all of them for a blob that
    /// is not held: `None`).
    pub fn missing(&self, id: &BlobId) -> Result<Option<Vec<u64>>, BlobError> {
        self.with(id, |held| Ok((0..held.outboard.chunks()).filter(|i| !held.has(*i)).collect()))
    }

    /// Whether every chunk of blob `id` is held.
    pub fn is_complete(&self, id: &BlobId) -> Result<bool, BlobError> {
        Ok(self.missing(id)?.is_some_and(|missing| missing.is_empty()))
    }

    /// Reads the whole sealed blob `id` in order (for [`super::open`]), or `None` if
    /// it is not complete.
    pub fn reader(&self, id: &BlobId) -> Result<Option<File>, BlobError> {
        if !self.is_complete(id)? {
            return Ok(None);
        }
        Ok(Some(File::open(self.path(id, "data"))?))
    }

    /// Forgets blob `id` and deletes its files.
    pub fn remove(&self, id: &BlobId) -> Result<(), BlobError> {
        let mut open = self.lock();
        open.remove(id);
        for ext in ["outboard", "have", "data"] {
            match std::fs::remove_file(self.path(id, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{BlobKey, open, seal};
    use super::*;

    /// A sealed file of `len` bytes: its key, outboard, plaintext and sealed chunks.
    fn blob(len: usize) -> (BlobKey, Outboard, Vec<u8>, Vec<Vec<u8>>) {
        let key = BlobKey::generate();
        let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut sealed = Vec::new();
        let outboard = seal(&key, len as u64, &mut plain.as_slice(), &mut sealed).unwrap();
        let chunks = sealed.chunks(CHUNK_SIZE + TAG_SIZE).map(<[u8]>::to_vec).collect();
        (key, outboard, plain, chunks)
    }

    #[test]
    fn chunks_arrive_in_any_order_and_the_whole_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (key, outboard, plain, chunks) = blob(3 * CHUNK_SIZE + 17);
        let id = outboard.id();
        store.add(&outboard).unwrap();
        assert_eq!(store.missing(&id).unwrap(), Some(vec![0, 1, 2, 3]));
        for index in [2u64, 0, 3, 1] {
            assert!(store.put(&id, index, &chunks[index as usize]).unwrap());
        }
        store.sync(&id).unwrap();
        assert!(store.is_complete(&id).unwrap());
        assert_eq!(store.get(&id, 1).unwrap().unwrap(), chunks[1]);
        let mut out = Vec::new();
        open(&key, &outboard, &mut store.reader(&id).unwrap().unwrap(), &mut out).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn a_bad_chunk_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (_, outboard, _, chunks) = blob(CHUNK_SIZE + 1);
        let id = outboard.id();
        store.add(&outboard).unwrap();
        let mut forged = chunks[0].clone();
        forged[0] ^= 1;
        assert!(matches!(store.put(&id, 0, &forged), Err(BlobError::BadChunk { index: 0 })));
        assert!(matches!(store.put(&id, 1, &chunks[0]), Err(BlobError::BadChunk { index: 1 })));
        assert_eq!(store.missing(&id).unwrap(), Some(vec![0, 1]));
        // A blob that is not held takes nothing.
        let (_, other, _, other_chunks) = blob(10);
        assert!(!store.put(&other.id(), 0, &other_chunks[0]).unwrap());
        assert_eq!(store.missing(&other.id()).unwrap(), None);
    }

    #[test]
    fn after_a_restart_only_synced_chunks_count_and_the_transfer_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (key, outboard, plain, chunks) = blob(2 * CHUNK_SIZE + 5);
        let id = outboard.id();
        {
            let store = BlobStore::open(dir.path()).unwrap();
            store.add(&outboard).unwrap();
            store.put(&id, 0, &chunks[0]).unwrap();
            store.sync(&id).unwrap();
            // Written, never synced: as if the process died here.
            store.put(&id, 2, &chunks[2]).unwrap();
        }
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(store.outboard(&id).unwrap(), Some(outboard.clone()));
        assert_eq!(store.missing(&id).unwrap(), Some(vec![1, 2]), "resume from what was durable");
        store.put(&id, 1, &chunks[1]).unwrap();
        store.put(&id, 2, &chunks[2]).unwrap();
        store.sync(&id).unwrap();
        let mut out = Vec::new();
        open(&key, &outboard, &mut store.reader(&id).unwrap().unwrap(), &mut out).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn a_sealed_file_is_imported_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        for len in [0, 10, 9 * CHUNK_SIZE + 3] {
            let key = BlobKey::generate();
            let plain: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
            let mut temp = store.temp_file().unwrap();
            let outboard = seal(&key, len as u64, &mut plain.as_slice(), temp.as_file_mut()).unwrap();
            let (_, path) = temp.keep().unwrap();
            store.import(&outboard, &path).unwrap();
            let id = outboard.id();
            assert_eq!(store.missing(&id).unwrap(), Some(vec![]), "{len}");
            let reopened = BlobStore::open(dir.path()).unwrap();
            let mut out = Vec::new();
            open(&key, &outboard, &mut reopened.reader(&id).unwrap().unwrap(), &mut out).unwrap();
            assert_eq!(out, plain);
        }
    }

    #[test]
    fn a_chunk_damaged_on_disk_is_not_served_and_removal_deletes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (_, outboard, _, chunks) = blob(100);
        let id = outboard.id();
        store.add(&outboard).unwrap();
        store.put(&id, 0, &chunks[0]).unwrap();
        store.sync(&id).unwrap();
        let data = dir.path().join(format!("{id}.data"));
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&data, bytes).unwrap();
        assert!(matches!(BlobStore::open(dir.path()).unwrap().get(&id, 0), Err(BlobError::BadChunk { index: 0 })));
        store.remove(&id).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(store.outboard(&id).unwrap(), None);
    }
}
