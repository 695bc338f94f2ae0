//! Blobs on disk, as files (a 4 GiB blob has no place in a database value), for a
//! node's downloads and uploads and for a media node's holdings.
//!
//! Per blob, in the store's directory (all files mode 0600):
//! - `<id>.outboard`: the plaintext length (8 bytes) and the chunk hashes, written
//!   atomically, last, when the blob is added (a blob is held once it is there);
//! - `<id>.data`: its chunks, each at a fixed offset, so they can arrive in any
//!   order and a missing one is a hole. Either sealed chunks back to back (a file
//!   this node sealed, [`BlobStore::seal_file`], or fetched to hold sealed,
//!   [`BlobStore::add`], as a media node does), or, with `<id>.key` beside it, the
//!   plaintext itself at [`CHUNK_SIZE`] strides: a file this node received
//!   ([`BlobStore::add_opened`]), written once and saved as a hard link. The key
//!   seals a chunk again when a peer asks for it, and the resealed chunk is
//!   checked against its hash, so a plaintext edited since is never served;
//! - `<id>.have`: one bit per chunk, set only for chunks that were checked against
//!   their hash and made durable.
//!
//! A received file's full chunks go to the disk with `O_DIRECT` where the file
//! system takes it: on this project's machines a fresh page-cache page costs more
//! CPU than anything else in a fast transfer (docs/PERFORMANCE.md, "Files between
//! daemons"). Sealed blobs go through the page cache: they are read again soon (a
//! sender serves its file at once), and a direct write would only move that cost
//! to the reads.
//!
//! Durability: [`BlobStore::put`] writes a checked chunk but does not sync;
//! [`BlobStore::sync`] syncs the data file first and only then replaces the bitmap,
//! so after a crash (`kill -9`) a chunk marked as held is on disk; chunks written
//! after the last sync are fetched again. A transfer resumes from
//! [`BlobStore::missing`].
//!
//! Concurrency: the store's lock is held only to find a blob. Checking, sealing,
//! opening, reading and syncing run outside it (a chunk's place in the file is fixed),
//! so transfers use both cores and a sync never stops chunks from being stored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use zeroize::Zeroize;

use super::{BlobError, BlobId, BlobKey, CHUNK_SIZE, Outboard, SYNC_EVERY, TAG_SIZE, open_chunk, open_chunk_into, plain_chunk_len, reseal_chunk, seal_each};
use crate::home::{Overwrite, write_private_file};

/// Alignment of buffers, offsets and lengths for `O_DIRECT` writes (the largest
/// logical block size in use).
const DIRECT_ALIGN: usize = 4096;

/// Blobs kept open at most: past this, blobs nobody is using and with nothing
/// waiting for a sync are closed (and opened again when asked for), so a media node
/// holding many thousands of blobs needs only a few hundred file descriptors.
const MAX_OPEN: usize = 256;

/// Locks `mutex`; a panic while it was held leaves no half-made state worth refusing.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A buffer whose start is aligned for `O_DIRECT` (found inside a larger
/// allocation, so no unsafe code is needed).
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let bytes = vec![0u8; len + DIRECT_ALIGN];
        let start = bytes.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        Aligned { bytes, start, len }
    }

    fn buf(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

thread_local! {
    /// Each storing thread's buffer for a chunk on its way to a direct write.
    static ALIGNED: std::cell::RefCell<Aligned> = std::cell::RefCell::new(Aligned::new(CHUNK_SIZE));
}

/// `path` opened for `O_DIRECT` writes, where the file system takes them (not
/// tmpfs, for one).
fn direct_file(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Writes `bytes` at `offset` with `direct` when there is one and it takes the
/// write, else with `buffered`. `bytes`, `offset` and the length must be aligned for
/// a direct write to be tried.
fn write_at(direct: Option<&File>, buffered: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    let aligned = bytes.as_ptr().align_offset(DIRECT_ALIGN) == 0
        && bytes.len().is_multiple_of(DIRECT_ALIGN)
        && offset.is_multiple_of(DIRECT_ALIGN as u64);
    if let Some(direct) = direct
        && aligned
    {
        match direct.write_all_at(bytes, offset) {
            Ok(()) => return Ok(()),
            // Refused for this write (alignment rules vary): the page cache takes it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    buffered.write_all_at(bytes, offset)
}

/// How a blob's chunks lie in its data file (see the module docs).
enum Layout {
    /// Sealed chunks back to back.
    Sealed,
    /// The plaintext, opened with this key.
    Opened(BlobKey),
}

impl Layout {
    /// Where chunk `index` starts in the data file.
    fn offset(&self, index: u64) -> u64 {
        index
            * match self {
                Layout::Sealed => (CHUNK_SIZE + TAG_SIZE) as u64,
                Layout::Opened(_) => CHUNK_SIZE as u64,
            }
    }

    /// The data file's length for `outboard`.
    fn data_len(&self, outboard: &Outboard) -> u64 {
        match self {
            Layout::Sealed => outboard.sealed_size(),
            Layout::Opened(_) => outboard.len(),
        }
    }
}

/// Which chunks a blob has, and how many were written since the last sync.
struct Have {
    bits: Vec<u8>,
    unsynced: usize,
}

impl Have {
    fn has(&self, index: u64) -> bool {
        self.bits.get((index / 8) as usize).is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }

    fn mark(&mut self, index: u64) {
        if let Some(byte) = self.bits.get_mut((index / 8) as usize) {
            *byte |= 1 << (index % 8);
        }
    }
}

/// One blob being held: its outboard, open data file and which chunks it has.
struct Held {
    outboard: Outboard,
    layout: Layout,
    data: File,
    /// The data file again, for direct writes.
    direct: Option<File>,
    have: Mutex<Have>,
    /// Serialises syncs, so an older bitmap never replaces a newer one.
    syncing: Mutex<()>,
    /// Serialises writes: a file system takes one writer per file at a time anyway,
    /// and writers spinning on its lock cost more than waiting here.
    writing: Mutex<()>,
}

impl Held {
    fn new(outboard: Outboard, layout: Layout, data: File, direct: Option<File>, bits: Vec<u8>) -> Held {
        Held {
            outboard,
            layout,
            data,
            direct,
            have: Mutex::new(Have { bits, unsynced: 0 }),
            syncing: Mutex::new(()),
            writing: Mutex::new(()),
        }
    }

    fn has(&self, index: u64) -> bool {
        lock(&self.have).has(index)
    }

    /// Checks sealed chunk `index` and writes it as this blob keeps it (a
    /// plaintext one opened into this thread's aligned buffer first).
    fn store(&self, index: u64, sealed: &[u8]) -> Result<(), BlobError> {
        let offset = self.layout.offset(index);
        match &self.layout {
            Layout::Sealed => {
                self.outboard.check(index, sealed)?;
                let _writing = lock(&self.writing);
                Ok(self.data.write_all_at(sealed, offset)?)
            }
            Layout::Opened(key) => ALIGNED.with(|aligned| {
                let mut aligned = aligned.borrow_mut();
                let buffer = aligned.buf();
                let result = open_chunk_into(key, &self.outboard, index, sealed, buffer).and_then(|len| {
                    let _writing = lock(&self.writing);
                    Ok(write_at(self.direct.as_ref(), &self.data, &buffer[..len], offset)?)
                });
                buffer.zeroize();
                result
            }),
        }
    }

    /// Sealed chunk `index` as read back (a plaintext one sealed again), checked.
    fn read(&self, index: u64) -> Result<Vec<u8>, BlobError> {
        let offset = self.layout.offset(index);
        match &self.layout {
            Layout::Sealed => {
                let mut sealed = vec![0u8; self.outboard.sealed_len(index).unwrap_or(0)];
                self.data.read_exact_at(&mut sealed, offset)?;
                self.outboard.check(index, &sealed)?;
                Ok(sealed)
            }
            Layout::Opened(key) => {
                let mut plain = vec![0u8; plain_chunk_len(&self.outboard, index)];
                self.data.read_exact_at(&mut plain, offset)?;
                let sealed = reseal_chunk(key, &self.outboard, index, &plain);
                plain.zeroize();
                sealed
            }
        }
    }
}

/// A directory of blobs (see the module docs). Safe to share between threads.
pub struct BlobStore {
    dir: PathBuf,
    open: Mutex<HashMap<BlobId, Arc<Held>>>,
    /// Held by [`BlobStore::add_as`] while it creates a blob's files, so two adds
    /// never write the same blob's files at once, while `open` (which the node's
    /// event loop takes to find any blob) is held only to look up and to keep.
    adding: Mutex<()>,
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
        Ok(BlobStore { dir: dir.to_path_buf(), open: Mutex::new(HashMap::new()), adding: Mutex::new(()) })
    }

    fn path(&self, id: &BlobId, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Starts holding the blob `outboard` describes, as sealed chunks (nothing if it
    /// is held already). The outboard is written durably before this returns.
    pub fn add(&self, outboard: &Outboard) -> Result<(), BlobError> {
        self.add_as(outboard, Layout::Sealed)
    }

    /// Starts holding the blob `outboard` describes as plaintext opened with `key`
    /// (a file this node receives): each chunk is checked, then opened as it is
    /// stored ([`BlobError::WrongKey`] if it does not open), and served sealed again.
    /// A blob held already is left as it is, whichever way it is kept.
    pub fn add_opened(&self, outboard: &Outboard, key: &BlobKey) -> Result<(), BlobError> {
        self.add_as(outboard, Layout::Opened(key.clone()))
    }

    fn add_as(&self, outboard: &Outboard, layout: Layout) -> Result<(), BlobError> {
        let id = outboard.id();
        let _adding = lock(&self.adding);
        // Until its outboard is written the blob counts as not held, so finding
        // blobs meanwhile sees it absent rather than half made.
        if lock(&self.open).contains_key(&id) || self.path(&id, "outboard").exists() {
            return Ok(());
        }
        let path = self.path(&id, "data");
        let data = data_file(&path)?;
        data.set_len(layout.data_len(outboard))?;
        data.sync_all()?;
        if let Layout::Opened(key) = &layout {
            write_private_file(&self.path(&id, "key"), &key.0, Overwrite::Allowed)?;
        }
        let bits = vec![0u8; outboard.chunks().div_ceil(8) as usize];
        write_private_file(&self.path(&id, "have"), &bits, Overwrite::Allowed)?;
        self.write_outboard(outboard)?;
        let direct = opened_direct(&layout, &path);
        let mut open = lock(&self.open);
        // Found (and loaded from its files) once the outboard was written: that one
        // may be in use already, so it stays.
        if !open.contains_key(&id) {
            keep(&mut open, id, Arc::new(Held::new(outboard.clone(), layout, data, direct, bits)));
        }
        Ok(())
    }

    /// Seals the `len` bytes `plaintext` yields under `key` into the store as a
    /// complete, durable blob ([`super::seal`], written under a temporary name and
    /// moved in when whole) and returns its outboard. A blob already held is left as
    /// it is.
    pub fn seal_file(&self, key: &BlobKey, len: u64, plaintext: &mut impl Read) -> Result<Outboard, BlobError> {
        self.seal_file_each(key, len, plaintext, |_, _| Ok(()))
    }

    /// [`BlobStore::seal_file`], also handing each sealed chunk (its index, its
    /// bytes) to `also` once it is written, in order: the pass that seals a file can
    /// stream it to a media node too ([`super::media::Push`]). An error from `also`
    /// stops the sealing; nothing is then added to the store.
    pub fn seal_file_each(
        &self,
        key: &BlobKey,
        len: u64,
        plaintext: &mut impl Read,
        mut also: impl FnMut(u64, Vec<u8>) -> Result<(), BlobError>,
    ) -> Result<Outboard, BlobError> {
        let mut temp = self.temp_file()?;
        let syncing = temp.as_file().try_clone()?;
        let outboard = std::thread::scope(|scope| -> Result<Outboard, BlobError> {
            // A sync runs beside the sealing every so often, so the one that makes
            // the blob durable at the end (in `import`) finds little left to write.
            // Linux reports a write error to one fsync only, so the first error of
            // these is kept and returned: the final sync would not see it again.
            let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
            let syncer = scope.spawn(move || -> io::Result<()> {
                while asked.recv().is_ok() {
                    syncing.sync_data()?;
                }
                Ok(())
            });
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
            let sealed = seal_each(key, len, plaintext, |index, chunk| {
                writer.write_all(&chunk)?;
                if index % SYNC_EVERY == SYNC_EVERY - 1 {
                    // Already asked and not done yet: this one is covered by it.
                    // Gone: it failed, and says so when joined below.
                    let _ = ask.try_send(());
                }
                also(index, chunk)
            });
            let flushed = sealed.and_then(|outboard| {
                writer.flush()?;
                Ok(outboard)
            });
            drop(ask);
            let synced = syncer.join().unwrap_or_else(|_| Err(io::Error::other("the sync thread panicked")));
            let outboard = flushed?;
            synced?;
            Ok(outboard)
        })?;
        self.import(&outboard, temp.into_temp_path())?;
        Ok(outboard)
    }

    /// Takes `sealed`, a temporary file of this store ([`BlobStore::temp_file`])
    /// holding what [`super::seal`] writes (its chunks in order, which is this
    /// store's sealed layout), as the whole blob `outboard` describes, moving it
    /// into the store: the blob is then complete and durable. A blob already held is
    /// left as it is; `sealed` is deleted then, and on any error.
    pub fn import(&self, outboard: &Outboard, sealed: tempfile::TempPath) -> Result<(), BlobError> {
        let id = outboard.id();
        let held = |open: &HashMap<BlobId, Arc<Held>>| open.contains_key(&id) || self.path(&id, "outboard").exists();
        if held(&lock(&self.open)) {
            return Ok(());
        }
        // The sealed file is ours alone until it is moved in: its sync (seconds for a
        // large file) runs without the store's lock, which the node's event loop takes
        // to find any blob.
        let file = File::open(&sealed)?;
        if file.metadata()?.len() != outboard.sealed_size() {
            return Err(BlobError::WrongLength("sealed blob"));
        }
        file.sync_all()?;
        // After `adding`, as every taker of both: an add of the same blob is not
        // writing its files meanwhile.
        let _adding = lock(&self.adding);
        let mut open = lock(&self.open);
        if held(&open) {
            return Ok(());
        }
        let path = self.path(&id, "data");
        sealed.persist(&path).map_err(|e| BlobError::Io(e.error))?;
        let mut bits = vec![0xffu8; outboard.chunks().div_ceil(8) as usize];
        if !outboard.chunks().is_multiple_of(8)
            && let Some(last) = bits.last_mut()
        {
            *last = (1u8 << (outboard.chunks() % 8)) - 1;
        }
        write_private_file(&self.path(&id, "have"), &bits, Overwrite::Allowed)?;
        self.write_outboard(outboard)?;
        let data = data_file(&path)?;
        keep(&mut open, id, Arc::new(Held::new(outboard.clone(), Layout::Sealed, data, None, bits)));
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

    /// The held blob `id`, loaded from disk first if needed; the store's lock is
    /// held only while it is looked up.
    fn held(&self, id: &BlobId) -> Result<Option<Arc<Held>>, BlobError> {
        let mut open = lock(&self.open);
        if let Some(held) = open.get(id) {
            return Ok(Some(held.clone()));
        }
        let Some(held) = self.load(id)? else { return Ok(None) };
        let held = Arc::new(held);
        keep(&mut open, *id, held.clone());
        Ok(Some(held))
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
        let layout = match std::fs::read(self.path(id, "key")) {
            Ok(mut bytes) => {
                let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| BlobError::BadOutboard);
                bytes.zeroize();
                Layout::Opened(BlobKey(key?))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Layout::Sealed,
            Err(e) => return Err(e.into()),
        };
        let mut bits = std::fs::read(self.path(id, "have"))?;
        bits.resize(outboard.chunks().div_ceil(8) as usize, 0);
        let path = self.path(id, "data");
        let data = data_file(&path)?;
        let direct = opened_direct(&layout, &path);
        Ok(Some(Held::new(outboard, layout, data, direct, bits)))
    }

    /// The outboard of a held blob.
    pub fn outboard(&self, id: &BlobId) -> Result<Option<Outboard>, BlobError> {
        Ok(self.held(id)?.map(|held| held.outboard.clone()))
    }

    /// Stores sealed chunk `index` of blob `id` after checking it against its hash
    /// ([`BlobError::BadChunk`] otherwise; nothing is written then), opened first
    /// for a blob kept as plaintext ([`BlobError::WrongKey`] if it does not open).
    /// Not durable until [`BlobStore::sync`]. `Ok(false)` if the blob is not held.
    pub fn put(&self, id: &BlobId, index: u64, sealed: &[u8]) -> Result<bool, BlobError> {
        let Some(held) = self.held(id)? else { return Ok(false) };
        if held.has(index) {
            held.outboard.check(index, sealed)?;
            return Ok(true);
        }
        held.store(index, sealed)?;
        let mut have = lock(&held.have);
        if !have.has(index) {
            have.mark(index);
            have.unsynced += 1;
        }
        Ok(true)
    }

    /// Makes every chunk stored so far durable and records it as held. Chunks keep
    /// being stored while it runs; those stored after it began wait for the next.
    pub fn sync(&self, id: &BlobId) -> Result<(), BlobError> {
        let Some(held) = self.held(id)? else { return Ok(()) };
        let _one_at_a_time = lock(&held.syncing);
        let (bits, covered) = {
            let have = lock(&held.have);
            if have.unsynced == 0 {
                return Ok(());
            }
            (have.bits.clone(), have.unsynced)
        };
        // Every chunk marked in `bits` was written before it was marked, so this
        // sync covers it (direct writes included: they are the same file).
        held.data.sync_data()?;
        write_private_file(&self.path(id, "have"), &bits, Overwrite::Allowed)?;
        lock(&held.have).unsynced -= covered;
        Ok(())
    }

    /// Sealed chunk `index` of blob `id`, if held (read back and checked again, so a
    /// chunk damaged or edited on disk is never served; a plaintext one is sealed
    /// again first).
    pub fn get(&self, id: &BlobId, index: u64) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(held) = self.held(id)? else { return Ok(None) };
        if !held.has(index) {
            return Ok(None);
        }
        held.read(index).map(Some)
    }

    /// The chunks of blob `id` not held yet, in order (all of them for a blob that
    /// is not held: `None`).
    pub fn missing(&self, id: &BlobId) -> Result<Option<Vec<u64>>, BlobError> {
        Ok(self.held(id)?.map(|held| {
            let have = lock(&held.have);
            (0..held.outboard.chunks()).filter(|i| !have.has(*i)).collect()
        }))
    }

    /// Whether every chunk of blob `id` is held.
    pub fn is_complete(&self, id: &BlobId) -> Result<bool, BlobError> {
        Ok(self.missing(id)?.is_some_and(|missing| missing.is_empty()))
    }

    /// The file holding blob `id` as plaintext, if it is complete and kept that
    /// way: saving it is a hard link to this file, as long as nothing edited it
    /// since it was checked (the caller's to know: right after the download).
    pub fn opened_path(&self, id: &BlobId) -> Result<Option<PathBuf>, BlobError> {
        let Some(held) = self.held(id)? else { return Ok(None) };
        if !matches!(held.layout, Layout::Opened(_)) || !self.is_complete(id)? {
            return Ok(None);
        }
        Ok(Some(self.path(id, "data")))
    }

    /// Writes the complete blob `id`, opened with `key`, to `out` in order, one chunk
    /// in memory at a time: every chunk is checked against its hash (a plaintext one
    /// by sealing it again) and must open with `key`. What was written before a
    /// failure stays written, so callers write to a temporary file.
    pub fn open_into(&self, id: &BlobId, key: &BlobKey, out: &mut impl Write) -> Result<(), BlobError> {
        let held = self.held(id)?.ok_or(BlobError::WrongLength("blob (not held)"))?;
        for index in 0..held.outboard.chunks() {
            let sealed = self.get(id, index)?.ok_or(BlobError::WrongLength("blob (not complete)"))?;
            let mut plain = open_chunk(key, &held.outboard, index, &sealed)?;
            let written = out.write_all(&plain);
            plain.zeroize();
            written?;
        }
        Ok(())
    }

    /// Forgets blob `id` and deletes its files.
    pub fn remove(&self, id: &BlobId) -> Result<(), BlobError> {
        // Not while an add makes its files (the order every taker of both keeps).
        let _adding = lock(&self.adding);
        let mut open = lock(&self.open);
        open.remove(id);
        for ext in ["outboard", "have", "key", "data"] {
            match std::fs::remove_file(self.path(id, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Adds `held` to the open blobs, first closing idle ones when there are
/// [`MAX_OPEN`] (down to three quarters of it). A blob in use (someone holds it) or
/// with chunks not yet synced stays open: closing it would let a second copy of its
/// state replace the first's bitmap.
fn keep(open: &mut HashMap<BlobId, Arc<Held>>, id: BlobId, held: Arc<Held>) {
    if open.len() >= MAX_OPEN {
        let surplus = open.len() - MAX_OPEN * 3 / 4;
        let idle: Vec<BlobId> = open
            .iter()
            .filter(|(_, held)| Arc::strong_count(held) == 1 && lock(&held.have).unsynced == 0)
            .map(|(id, _)| *id)
            .take(surplus)
            .collect();
        for id in idle {
            open.remove(&id);
        }
    }
    open.insert(id, held);
}

/// The data file of a plaintext blob opened again for direct writes.
fn opened_direct(layout: &Layout, path: &Path) -> Option<File> {
    match layout {
        Layout::Sealed => None,
        Layout::Opened(_) => direct_file(path),
    }
}

fn data_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{BlobKey, seal};
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

    /// Blob `id` opened with `key`, every chunk checked.
    fn opened(store: &BlobStore, id: &BlobId, key: &BlobKey) -> Vec<u8> {
        let mut out = Vec::new();
        store.open_into(id, key, &mut out).unwrap();
        out
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
        assert_eq!(opened(&store, &id, &key), plain);
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
        assert_eq!(opened(&store, &id, &key), plain);
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
            store.import(&outboard, temp.into_temp_path()).unwrap();
            let id = outboard.id();
            assert_eq!(store.missing(&id).unwrap(), Some(vec![]), "{len}");
            let reopened = BlobStore::open(dir.path()).unwrap();
            assert_eq!(opened(&reopened, &id, &key), plain);
        }
    }

    #[test]
    fn sealing_into_the_store_writes_what_seal_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        for len in [0, 1, CHUNK_SIZE, 9 * CHUNK_SIZE + 3] {
            let key = BlobKey::generate();
            let plain: Vec<u8> = (0..len).map(|i| (i % 239) as u8).collect();
            let outboard = store.seal_file(&key, len as u64, &mut plain.as_slice()).unwrap();
            let mut expected = Vec::new();
            assert_eq!(seal(&key, len as u64, &mut plain.as_slice(), &mut expected).unwrap(), outboard, "{len}");
            let id = outboard.id();
            assert_eq!(std::fs::read(dir.path().join(format!("{id}.data"))).unwrap(), expected, "{len}");
            let reopened = BlobStore::open(dir.path()).unwrap();
            assert_eq!(reopened.missing(&id).unwrap(), Some(vec![]), "{len}");
            assert_eq!(opened(&reopened, &id, &key), plain, "{len}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert!(left.iter().all(|name| !name.to_string_lossy().starts_with(".incoming")), "no temporary file left: {left:?}");
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

    #[test]
    fn a_received_file_is_kept_as_its_plaintext_and_served_sealed_as_it_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (key, outboard, plain, chunks) = blob(3 * CHUNK_SIZE + 17);
        let id = outboard.id();
        store.add_opened(&outboard, &key).unwrap();
        for index in [3u64, 1, 0, 2] {
            assert!(store.put(&id, index, &chunks[index as usize]).unwrap());
        }
        store.sync(&id).unwrap();
        assert!(store.is_complete(&id).unwrap());
        let data = store.opened_path(&id).unwrap().expect("kept opened");
        assert_eq!(std::fs::read(&data).unwrap(), plain, "the data file is the file itself");
        for (index, chunk) in chunks.iter().enumerate() {
            assert_eq!(&store.get(&id, index as u64).unwrap().unwrap(), chunk, "chunk {index} sealed again");
        }
        assert_eq!(opened(&store, &id, &key), plain);
        // After a restart the blob is still kept opened, with its key.
        let reopened = BlobStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get(&id, 2).unwrap().unwrap(), chunks[2]);
        assert_eq!(reopened.opened_path(&id).unwrap(), Some(data));
    }

    #[test]
    fn chunks_that_match_their_hashes_but_not_the_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (_, outboard, _, chunks) = blob(CHUNK_SIZE + 1);
        let id = outboard.id();
        store.add_opened(&outboard, &BlobKey::generate()).unwrap();
        assert!(matches!(store.put(&id, 1, &chunks[1]), Err(BlobError::WrongKey { index: 1 })));
        assert_eq!(store.missing(&id).unwrap(), Some(vec![0, 1]), "nothing counts as held");
    }

    #[test]
    fn an_edited_plaintext_is_neither_served_nor_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (key, outboard, _, chunks) = blob(2 * CHUNK_SIZE);
        let id = outboard.id();
        store.add_opened(&outboard, &key).unwrap();
        for (index, chunk) in chunks.iter().enumerate() {
            store.put(&id, index as u64, chunk).unwrap();
        }
        store.sync(&id).unwrap();
        // The user edits the saved file (a hard link to the data file) in place.
        let data = store.opened_path(&id).unwrap().unwrap();
        let file = OpenOptions::new().write(true).open(&data).unwrap();
        file.write_all_at(b"edited", CHUNK_SIZE as u64 + 10).unwrap();
        assert_eq!(store.get(&id, 0).unwrap().unwrap(), chunks[0], "untouched chunks still serve");
        assert!(matches!(store.get(&id, 1), Err(BlobError::BadChunk { index: 1 })));
        assert!(matches!(store.open_into(&id, &key, &mut Vec::new()), Err(BlobError::BadChunk { index: 1 })));
    }

    #[test]
    fn chunks_stored_from_many_threads_while_syncing_all_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(dir.path()).unwrap());
        let (key, outboard, plain, chunks) = blob(24 * CHUNK_SIZE + 3);
        let id = outboard.id();
        store.add_opened(&outboard, &key).unwrap();
        let chunks = Arc::new(chunks);
        let writers: Vec<_> = (0..3u64)
            .map(|lane| {
                let (store, chunks) = (store.clone(), chunks.clone());
                std::thread::spawn(move || {
                    for index in (lane..chunks.len() as u64).step_by(3) {
                        store.put(&id, index, &chunks[index as usize]).unwrap();
                        store.sync(&id).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        store.sync(&id).unwrap();
        // What the bitmap on disk says after a restart is what was synced: all of it.
        let reopened = BlobStore::open(dir.path()).unwrap();
        assert_eq!(reopened.missing(&id).unwrap(), Some(vec![]));
        assert_eq!(opened(&reopened, &id, &key), plain);
    }

    #[test]
    fn idle_blobs_are_closed_past_the_limit_and_unsynced_ones_stay_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        // One blob with a chunk written and not yet synced.
        let (_, pending, _, pending_chunks) = blob(2 * CHUNK_SIZE);
        store.add(&pending).unwrap();
        store.put(&pending.id(), 0, &pending_chunks[0]).unwrap();
        let mut ids = Vec::new();
        for n in 0..MAX_OPEN + 40 {
            let key = BlobKey::generate();
            let plain = n.to_be_bytes();
            let outboard = store.seal_file(&key, plain.len() as u64, &mut plain.as_slice()).unwrap();
            ids.push((outboard.id(), key, plain));
        }
        assert!(lock(&store.open).len() <= MAX_OPEN, "{} blobs open", lock(&store.open).len());
        assert!(lock(&store.open).contains_key(&pending.id()), "a blob with unsynced chunks stays open");
        // Every blob still reads, closed or not.
        for (id, key, plain) in &ids {
            let mut out = Vec::new();
            store.open_into(id, key, &mut out).unwrap();
            assert_eq!(&out, plain);
        }
        // The unsynced chunk is still the one that gets synced.
        store.sync(&pending.id()).unwrap();
        assert_eq!(BlobStore::open(dir.path()).unwrap().missing(&pending.id()).unwrap(), Some(vec![1]));
    }
}
