//! Opening and flushing a sled database the way every kith store does: the node's
//! [`Store`] and the relay's mailbox and group-log stores.
//!
//! Opening: sled reports a lock held by another process as a plain I/O error,
//! releases its own lock a moment after its last handle is dropped, and panics on
//! some damaged files; [`open_sled`] retries the first, and turns all of them into
//! one typed [`EngineOpenError`] that each store maps to its own open error.
//!
//! Flushing: see [`SledDb::flush`].
//!
//! [`Store`]: crate::Store

use std::fs::File;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{StoreError, db};
use crate::sled_blobs::BlobSync;

/// First pause between attempts to take a held lock; doubles up to
/// [`LOCK_RETRY_MAX`] (short, because sled usually lets go within ~50 ms).
const LOCK_RETRY_MIN: Duration = Duration::from_millis(5);
/// Longest pause between attempts to take a held lock.
const LOCK_RETRY_MAX: Duration = Duration::from_millis(100);

/// Why sled could not open a database. Exhaustive on purpose: every store maps each
/// case to its own open error.
#[derive(Debug, thiserror::Error)]
pub enum EngineOpenError {
    /// Another process holds the database (still, after the lock wait).
    #[error("the database is in use by another process: {0}")]
    Locked(String),
    /// The files could not be created or read.
    #[error("cannot access the database files")]
    Io(#[source] std::io::Error),
    /// The files exist but sled cannot read them (including a panic of the engine).
    #[error("the database is corrupt: {0}")]
    Corrupt(String),
    /// Any other engine failure.
    #[error("database engine error: {0}")]
    Engine(#[source] sled::Error),
}

/// Opens the sled database at `path` with a page cache of `cache_capacity_bytes`,
/// retrying for up to `lock_wait` while another handle holds its lock.
pub fn open_sled(path: &Path, cache_capacity_bytes: u64, lock_wait: Duration) -> Result<SledDb, EngineOpenError> {
    let db = open_engine(path, cache_capacity_bytes, lock_wait)?;
    // sled keeps its pages in the file `db` of its directory (it created it).
    let file = File::open(path.join("db")).map_err(EngineOpenError::Io)?;
    if !db.was_recovered() {
        // A new database: its files' names must be durable before anything in them
        // is acknowledged, and sled does not sync the directory.
        File::open(path).and_then(|dir| dir.sync_all()).map_err(EngineOpenError::Io)?;
    }
    Ok(SledDb {
        db,
        sync: Arc::new(DurableSync {
            file,
            failed: AtomicBool::new(false),
            asked: AtomicU64::new(0),
            progress: Mutex::new(Progress {
                covered: 0,
                covered_with_also: 0,
                blobs: BlobSync::new(path),
                synced_writes: None,
            }),
        }),
    })
}

/// sled itself, opened with [`open_sled`]'s retries.
fn open_engine(path: &Path, cache_capacity_bytes: u64, lock_wait: Duration) -> Result<sled::Db, EngineOpenError> {
    let deadline = Instant::now() + lock_wait;
    let mut backoff = LOCK_RETRY_MIN;
    loop {
        let config = sled::Config::new().path(path).cache_capacity(cache_capacity_bytes);
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
            Ok(r) => r.map_err(classify),
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("the database engine panicked");
                return Err(EngineOpenError::Corrupt(format!("cannot read the database files: {detail}")));
            }
        };
        match result {
            Err(EngineOpenError::Locked(_)) if Instant::now() + backoff <= deadline => {
                tracing::debug!(path = %path.display(), ?backoff, "database locked, retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(LOCK_RETRY_MAX);
            }
            other => return other,
        }
    }
}

/// A sled database opened by [`open_sled`], with the flush kith's durability rule
/// needs. Dereferences to [`sled::Db`] for everything else; cheap to clone (two
/// `Arc`s). Flush through [`SledDb::flush`], never sled's own `flush` or
/// `flush_async`, which this type's doc says why.
#[derive(Clone)]
pub struct SledDb {
    db: sled::Db,
    sync: Arc<DurableSync>,
}

/// What makes a [`SledDb`]'s flushes durable.
struct DurableSync {
    /// sled's page file, through a descriptor of our own.
    file: File,
    /// A flush has failed since the database was opened.
    failed: AtomicBool,
    /// Flushes asked for so far: each takes the next number when it starts.
    asked: AtomicU64,
    /// Held by a flush from its check of `failed` to its record of how it went, so
    /// flushes run one at a time.
    progress: Mutex<Progress>,
}

/// How far the flushes of a [`SledDb`] have come.
struct Progress {
    /// The newest number a flush that succeeded covered.
    covered: u64,
    /// The same, for [`SledDb::flush_then`]'s flushes only: a plain flush does
    /// not sync what theirs does.
    covered_with_also: u64,
    /// sled's blob files, which it does not sync itself.
    blobs: BlobSync,
    /// [`sled::Db::file_writes`] when the page file was last synced. An
    /// `fdatasync` of a file with nothing new still makes the drive empty its
    /// cache (0.03–0.18 ms here under load, as long as the message log's own
    /// sync), and most flushes of the node have nothing new for sled.
    synced_writes: Option<u64>,
}

impl std::fmt::Debug for SledDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledDb").field("failed", &self.a_flush_failed()).finish_non_exhaustive()
    }
}

impl Deref for SledDb {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

impl SledDb {
    /// Durability point: every write to this database made before the call survives
    /// a crash of the process or of the machine once it returns `Ok`; returns the
    /// bytes sled wrote (0 for a flush that another one covered). Blocks.
    ///
    /// Flushes run one at a time, and share the work (group commit): a flush
    /// that finds, once its turn comes, that one which started after it was asked
    /// for has succeeded returns at once, since that one covered every write made
    /// before it was asked for.
    ///
    /// sled's own flush is not enough. It writes its buffers with
    /// `sync_file_range`, which neither empties the drive's write cache nor commits
    /// the file's size (sled issue #1452): what it flushed survives `kill -9` but
    /// not a power cut. And items over ~128 KiB (large values, or whole leaves) go
    /// to blob files it never syncs ([`crate::sled_blobs`]). So this follows it
    /// with an `fdatasync` of every blob file created since the last flush, of their
    /// directory, and of sled's page file. The page file's goes through a descriptor
    /// of our own, because Linux reports a failed write-back once per open file:
    /// sled's background thread, whose own `fsync` only logs a failure, cannot take
    /// the report from us. It is skipped when sled has written nothing to the file
    /// since the last one ([`sled::Db::file_writes`]): an `fdatasync` of an
    /// unchanged file still empties the drive's cache.
    ///
    /// After a failure the kernel may have dropped the pages the failed flush was
    /// to write, so a later flush that succeeds would prove nothing about them:
    /// every later flush fails with [`StoreError::FlushFailedBefore`] until the
    /// database is opened again.
    pub fn flush(&self) -> Result<usize, StoreError> {
        self.flush_with(None::<fn() -> Result<(), StoreError>>)
    }

    /// [`flush`](Self::flush), then `also` (another file's sync that must share
    /// the rule), under the same lock and the same record of failure: a sync that
    /// ran beside a failing one could otherwise succeed, after its check, for pages
    /// the other lost. Such a flush is covered only by another `flush_then`, so
    /// every `flush_then` of one database must pass the same kind of `also` (the
    /// node's store passes its message log's sync).
    pub fn flush_then(&self, also: impl FnOnce() -> Result<(), StoreError>) -> Result<usize, StoreError> {
        self.flush_with(Some(also))
    }

    fn flush_with(&self, also: Option<impl FnOnce() -> Result<(), StoreError>>) -> Result<usize, StoreError> {
        let sync = &*self.sync;
        // A poisoned database skips sled's I/O; checked again under the lock.
        sync.check()?;
        // Taken after the caller's writes: a flush that reads `asked` after this
        // starts after them too.
        let ticket = sync.asked.fetch_add(1, Ordering::AcqRel) + 1;
        #[cfg(test)]
        if let Some(pause) = tests::AFTER_TICKET.take() {
            pause();
        }
        let mut progress = sync.progress.lock().unwrap_or_else(|poisoned| {
            // A flush panicked while it held the turn: what it was writing may or
            // may not be on disk, as after a failed flush. Its `FailOnUnwind` has
            // said so already; this holds even for a panic outside it.
            fail_after_panic(&sync.failed);
            poisoned.into_inner()
        });
        sync.check()?;
        let covered = match also {
            Some(_) => progress.covered_with_also,
            None => progress.covered,
        };
        if covered >= ticket {
            return Ok(0);
        }
        let upto = sync.asked.load(Ordering::Acquire);
        let with_also = also.is_some();
        // Marks the database failed the moment a panic unwinds out of this flush,
        // not only when the next flush finds the turn poisoned.
        let _unwinding = FailOnUnwind(&sync.failed);
        let Progress { blobs, synced_writes, .. } = &mut *progress;
        let flushed = blobs.before_flush().map_err(StoreError::Io).and_then(|mut to_sync| {
            let n = self.db.flush().map_err(db)?;
            blobs.after_flush(&mut to_sync).map_err(StoreError::Io)?;
            blobs.sync(to_sync).map_err(StoreError::Io)?;
            // Read after sled's flush has waited for its writes, before the sync:
            // a write counted by then is covered by this sync, and one that
            // completes later moves the count again. Not the bytes `flush`
            // returns: sled's own flushing thread writes too, and what it wrote
            // counts there as already flushed.
            let writes = self.db.file_writes();
            if *synced_writes != Some(writes) {
                #[cfg(test)]
                tests::PAGE_SYNCS.with(|n| n.set(n.get() + 1));
                sync.file.sync_data().map_err(StoreError::Io)?;
                *synced_writes = Some(writes);
            }
            match also {
                Some(also) => also().map(|()| n),
                None => Ok(n),
            }
        });
        #[cfg(test)]
        let flushed = flushed.and_then(|n| match tests::FAIL_FLUSH.take() {
            true => Err(StoreError::Io(std::io::Error::other("injected flush failure"))),
            false => Ok(n),
        });
        match &flushed {
            Ok(_) => {
                progress.covered = upto;
                if with_also {
                    progress.covered_with_also = upto;
                }
            }
            Err(e) => {
                if !sync.failed.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, "flushing the database failed: nothing more is acknowledged until it is opened again");
                }
            }
        }
        flushed
    }

    /// Whether a flush of this database has failed since it was opened (see
    /// [`flush`](Self::flush)).
    pub fn a_flush_failed(&self) -> bool {
        self.sync.failed.load(Ordering::Relaxed)
    }
}

/// Sets its flag when dropped by a panic's unwinding (see [`SledDb::flush_then`]).
struct FailOnUnwind<'a>(&'a AtomicBool);

impl Drop for FailOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fail_after_panic(self.0);
        }
    }
}

/// Marks the database failed because a flush panicked, saying so once.
fn fail_after_panic(failed: &AtomicBool) {
    if !failed.swap(true, Ordering::AcqRel) {
        tracing::error!("a flush of the database panicked: nothing more is acknowledged until it is opened again");
    }
}

impl DurableSync {
    /// [`StoreError::FlushFailedBefore`] once a flush has failed.
    fn check(&self) -> Result<(), StoreError> {
        match self.failed.load(Ordering::Acquire) {
            true => Err(StoreError::FlushFailedBefore),
            false => Ok(()),
        }
    }
}

/// Classifies an engine error raised while opening.
fn classify(e: sled::Error) -> EngineOpenError {
    match e {
        // sled reports a held file lock as a generic I/O error; its message is the
        // only way to tell it apart.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            EngineOpenError::Locked(io.to_string())
        }
        sled::Error::Io(io) => EngineOpenError::Io(io),
        // At open time, "unsupported" means sled cannot read the files (e.g. a
        // damaged `conf`), which for us is a damaged database.
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => EngineOpenError::Corrupt(e.to_string()),
        other => EngineOpenError::Engine(other),
    }
}

/// Wraps an engine error as the opaque [`DbError`](crate::DbError), for stores built
/// on sled directly (the relay's).
pub fn db_error(e: sled::Error) -> crate::DbError {
    crate::DbError::new(e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Makes this thread's next [`SledDb::flush`] fail after its I/O, as a
        /// failed `fdatasync` would.
        pub(crate) static FAIL_FLUSH: Cell<bool> = const { Cell::new(false) };
        /// Runs in this thread's next flush once it has taken its number, before
        /// it waits for its turn.
        pub(crate) static AFTER_TICKET: Cell<Option<Box<dyn FnOnce()>>> = const { Cell::new(None) };
        /// How many times this thread's flushes synced sled's page file.
        pub(crate) static PAGE_SYNCS: Cell<u64> = const { Cell::new(0) };
    }

    fn open(dir: &Path) -> SledDb {
        open_sled(dir, 1 << 20, Duration::from_secs(1)).unwrap()
    }

    /// Waits (10 s at most) until `n` flushes of `db` have taken their numbers.
    fn until_asked(db: &SledDb, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while db.sync.asked.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "{n} flushes were not asked for within 10 s");
            std::thread::yield_now();
        }
    }

    fn page_syncs() -> u64 {
        PAGE_SYNCS.with(Cell::get)
    }

    #[test]
    fn a_flush_syncs_the_page_file_only_when_something_was_written_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let before = page_syncs();
        db.insert(b"k1", b"v".as_slice()).unwrap();
        db.flush().unwrap();
        assert_eq!(page_syncs(), before + 1, "a flush after a write syncs the page file");
        db.flush().unwrap();
        db.flush().unwrap();
        assert_eq!(page_syncs(), before + 1, "flushes with nothing written do not sync it again");
        db.insert(b"k2", b"v".as_slice()).unwrap();
        db.flush().unwrap();
        assert_eq!(page_syncs(), before + 2, "the next write is synced");
    }

    #[test]
    fn a_write_sled_flushed_by_itself_is_still_synced_by_the_next_flush() {
        // sled's own flushing thread writes dirty pages every half second; the
        // bytes our flush then reports are zero, but the file is not synced.
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.insert(b"k1", b"v".as_slice()).unwrap();
        db.flush().unwrap();
        let before = page_syncs();
        db.insert(b"k2", b"v".as_slice()).unwrap();
        // sled's own flush (or its thread, if it came first) writes the page.
        sled::Tree::flush(&db.db).unwrap();
        assert_eq!(db.flush().unwrap(), 0, "our flush found nothing left for sled to write");
        assert_eq!(page_syncs(), before + 1, "and still synced the page file");
    }

    #[test]
    fn a_flushed_write_is_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path());
            db.insert(b"k", b"v".as_slice()).unwrap();
            assert!(db.flush().unwrap() > 0, "the write was flushed");
        }
        let db = open(dir.path());
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(b"v".as_slice()));
    }

    #[test]
    fn after_a_failed_flush_no_flush_succeeds_until_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path());
            db.insert(b"a", b"1".as_slice()).unwrap();
            db.flush().unwrap();
            assert!(!db.a_flush_failed());
            FAIL_FLUSH.set(true);
            db.insert(b"b", b"2".as_slice()).unwrap();
            assert!(matches!(db.flush(), Err(StoreError::Io(_))), "the failure is reported");
            assert!(db.a_flush_failed());
            let clone = db.clone();
            for _ in 0..2 {
                assert!(matches!(clone.flush(), Err(StoreError::FlushFailedBefore)), "and every flush after it fails");
                assert!(matches!(clone.flush_then(|| Ok(())), Err(StoreError::FlushFailedBefore)));
            }
        }
        let db = open(dir.path());
        assert!(!db.a_flush_failed(), "a reopened database starts clean");
        assert_eq!(db.get(b"a").unwrap().as_deref(), Some(b"1".as_slice()));
        db.insert(b"c", b"3".as_slice()).unwrap();
        db.flush().unwrap();
    }

    /// Group commit: while one flush runs, two more are asked for; once it ends,
    /// one of them flushes for both (it started after both were asked for), and
    /// the other returns without I/O of its own.
    #[test]
    fn a_flush_covers_every_flush_asked_for_before_it_started() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::mpsc;

        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let syncs = AtomicUsize::new(0);
        let (in_first, first_is_in) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let (db, syncs) = (&db, &syncs);
            let first = scope.spawn(move || {
                db.insert(b"first", b"1".as_slice()).unwrap();
                db.flush_then(|| {
                    syncs.fetch_add(1, Ordering::SeqCst);
                    in_first.send(()).unwrap();
                    released.recv().unwrap();
                    Ok(())
                })
            });
            first_is_in.recv().unwrap();
            let later: Vec<_> = [b"second".as_slice(), b"third".as_slice()]
                .map(|key| {
                    scope.spawn(move || {
                        db.insert(key, b"2".as_slice()).unwrap();
                        db.flush_then(|| {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                    })
                })
                .into();
            // Both have asked (taken their numbers) and wait for the first one.
            until_asked(db, 3);
            release.send(()).unwrap();
            first.join().unwrap().unwrap();
            for flush in later {
                flush.join().unwrap().unwrap();
            }
        });
        assert_eq!(syncs.into_inner(), 2, "the first flush, then one for both later ones");
        assert_eq!(db.sync.progress.lock().unwrap().covered_with_also, 3, "the last flush covered all three");
    }

    /// A plain flush syncs less than a `flush_then`, so it never covers one: a
    /// `flush_then` asked for before a plain flush started still runs its `also`.
    #[test]
    fn a_plain_flush_does_not_cover_a_flush_that_syncs_more() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::mpsc;

        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let alsos = AtomicUsize::new(0);
        let (in_first, first_is_in) = mpsc::channel();
        let (release_first, first_released) = mpsc::channel::<()>();
        let (more_asked, more_has_asked) = mpsc::channel();
        let (release_more, more_released) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let (db, alsos) = (&db, &alsos);
            // 1. A flush_then runs, holding the turn.
            let first = scope.spawn(move || {
                db.flush_then(|| {
                    alsos.fetch_add(1, Ordering::SeqCst);
                    in_first.send(()).unwrap();
                    first_released.recv().unwrap();
                    Ok(())
                })
            });
            first_is_in.recv().unwrap();
            // 2. A plain flush asks, and waits for its turn.
            let plain = scope.spawn(move || db.flush());
            until_asked(db, 2);
            // 3. A flush_then asks too, and stops before waiting for its turn.
            let more = scope.spawn(move || {
                db.insert(b"more", b"1".as_slice()).unwrap();
                AFTER_TICKET.set(Some(Box::new(move || {
                    more_asked.send(()).unwrap();
                    more_released.recv().unwrap();
                })));
                db.flush_then(|| {
                    alsos.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            });
            more_has_asked.recv().unwrap();
            // 4. The first ends; the plain flush runs next, covering number 3.
            release_first.send(()).unwrap();
            first.join().unwrap().unwrap();
            plain.join().unwrap().unwrap();
            assert_eq!(db.sync.progress.lock().unwrap().covered, 3, "the plain flush covered all three numbers");
            // 5. The flush_then still syncs what the plain flush did not.
            release_more.send(()).unwrap();
            more.join().unwrap().unwrap();
        });
        assert_eq!(alsos.into_inner(), 2, "the second flush_then ran its own `also`");
    }

    /// sled puts an item over ~128 KiB in a blob file of its own: each flush syncs
    /// the blob files sled wrote since the last one.
    #[test]
    fn a_flush_syncs_the_blob_files_sled_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let blobs = dir.path().join("blobs");
        let all_synced = |db: &SledDb| {
            let progress = db.sync.progress.lock().unwrap();
            let names: Vec<_> = std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(!names.is_empty(), "sled wrote blob files");
            names.iter().all(|name| progress.blobs.is_synced(name))
        };
        let big = vec![7u8; 200 << 10];
        db.insert(b"first", big.as_slice()).unwrap();
        db.flush().unwrap();
        assert!(all_synced(&db), "the first blob is synced");
        for key in [b"second", b"third_"] {
            db.insert(key, big.as_slice()).unwrap();
            db.flush().unwrap();
            assert!(all_synced(&db), "a blob made right after a flush is synced by the next");
        }
    }

    /// Puts a file where `dir`'s blob directory was, so that creating a blob
    /// fails (even for root), or the directory back.
    fn blob_dir_broken(dir: &Path, broken: bool) {
        let blobs = dir.join("blobs");
        if broken {
            std::fs::remove_dir_all(&blobs).unwrap();
            std::fs::write(&blobs, b"").unwrap();
        } else {
            std::fs::remove_file(&blobs).unwrap();
            std::fs::create_dir(&blobs).unwrap();
        }
    }

    /// sled writes an item over ~128 KiB to a blob file of its own as it is
    /// inserted. When that write fails (a full disk), the insert fails, and so
    /// does everything after it, flushes included, until the database is opened
    /// again, which finds what was flushed before: unpatched sled instead left its
    /// log buffer claimed and every later flush waited for it forever
    /// (vendor/sled/KITH-PATCH.md).
    #[test]
    fn a_failed_blob_write_fails_what_follows_until_a_reopen_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(dir.path()));
        db.insert(b"small", b"kept".as_slice()).unwrap();
        db.flush().unwrap();
        blob_dir_broken(dir.path(), true);
        let big = vec![7u8; 200 << 10];
        assert!(db.insert(b"big", big.as_slice()).is_err(), "the blob could not be written");
        blob_dir_broken(dir.path(), false);

        // In a thread with a deadline: unpatched, this flush never returns.
        let (done, finished) = std::sync::mpsc::channel();
        let flushing = Arc::clone(&db);
        std::thread::spawn(move || {
            let _ = done.send(flushing.flush().map(|_| ()));
        });
        let flushed = finished.recv_timeout(Duration::from_secs(10)).expect("the flush after a failed blob write finished");
        assert!(flushed.is_err(), "a flush after a failed write reports the failure");
        assert!(db.insert(b"later", b"refused".as_slice()).is_err(), "nothing more is written");
        drop(db);

        let db = open(dir.path());
        assert_eq!(db.get(b"small").unwrap().as_deref(), Some(b"kept".as_slice()));
        assert_eq!(db.get(b"big").unwrap(), None);
        assert_eq!(db.get(b"later").unwrap(), None);
        db.insert(b"big", big.as_slice()).unwrap();
        db.flush().unwrap();
        drop(db);
        let db = open(dir.path());
        assert_eq!(db.get(b"big").unwrap().as_deref(), Some(big.as_slice()));
    }

    /// A batch that a failed blob write cuts short leaves none of its writes,
    /// after a reopen: with the patch's release of the slot alone, what came
    /// before the failure would have reached the disk.
    #[test]
    fn a_batch_cut_short_by_a_failed_blob_write_leaves_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.insert(b"before", b"kept".as_slice()).unwrap();
        db.flush().unwrap();
        blob_dir_broken(dir.path(), true);
        let mut batch = sled::Batch::default();
        batch.insert(b"a_small".as_slice(), b"first of the batch".as_slice());
        batch.insert(b"z_big".as_slice(), vec![7u8; 200 << 10]);
        assert!(db.apply_batch(batch).is_err());
        assert!(db.flush().is_err());
        drop(db);
        blob_dir_broken(dir.path(), false);

        let db = open(dir.path());
        assert_eq!(db.get(b"before").unwrap().as_deref(), Some(b"kept".as_slice()));
        assert_eq!(db.get(b"a_small").unwrap(), None, "half a batch");
        assert_eq!(db.get(b"z_big").unwrap(), None);
    }

    #[test]
    fn a_flush_that_panicked_counts_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(dir.path()));
        db.insert(b"k", b"v".as_slice()).unwrap();
        let panicking = Arc::clone(&db);
        let joined = std::thread::spawn(move || panicking.flush_then(|| panic!("a sync that panics"))).join();
        assert!(joined.is_err(), "the flush panicked");
        // Failed as soon as the panic left the flush, before any other flush.
        assert!(db.a_flush_failed());
        assert!(matches!(db.flush(), Err(StoreError::FlushFailedBefore)));
    }

    #[test]
    fn a_failure_of_the_sync_that_shares_the_flush_poisons_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let failed = db.flush_then(|| Err(StoreError::Io(std::io::Error::other("the log's fdatasync failed"))));
        assert!(matches!(failed, Err(StoreError::Io(_))));
        assert!(matches!(db.flush(), Err(StoreError::FlushFailedBefore)));
    }
}
