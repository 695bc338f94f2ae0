//! sled's blob files, made durable by the flush that needs them.
//!
//! sled 0.34 writes any log item over a quarter of a segment (~128 KiB with its
//! default 512 KiB segments) to a file of its own under `blobs/`, named by the
//! item's log sequence number, and never syncs the file or the directory. Such an
//! item is a large value, or a whole leaf of a tree whose entries add up to that
//! (sixteen relay envelopes of 8 KiB do), so the page file can point to a blob a
//! power cut would lose, and with it every entry of the leaf and, since sled's
//! recovery stops at an unreadable item, everything logged after it.
//!
//! A flush of a [`SledDb`](crate::engine::SledDb) runs [`BlobSync::before_flush`],
//! sled's flush, [`BlobSync::after_flush`], then [`BlobSync::sync`]. sled reserves an
//! item's place in its log before it creates the item's blob file, and its flush
//! returns only once every item reserved before the flush began is written; so a
//! blob file listed before the flush is whole after it. A blob file that appears
//! during the flush may belong to an item reserved before it (whose writer was slow
//! to create the file) and is whole too, or to a later item still being written: it
//! is synced now and once more by the next flush, and counted as synced only then.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// More than the step of the coarse clock Linux stamps file times with (a jiffy,
/// at most 10 ms): on a filesystem with fine time stamps, a directory last changed
/// more than this before it was listed shows any later change as a new time.
const CLOCK_STEP: Duration = Duration::from_millis(50);

/// The blob files of one sled database, as far as syncing them goes (see the
/// module docs).
#[derive(Debug)]
pub(crate) struct BlobSync {
    dir: PathBuf,
    /// Whole when synced, so durable.
    synced: HashSet<OsString>,
    /// Synced once, but perhaps while sled was still writing them.
    again: HashSet<OsString>,
    /// The directory's modification time when it was last listed, and the time it
    /// was listed at.
    listed: Option<(SystemTime, SystemTime)>,
    /// How many times the directory was listed (for the tests).
    #[cfg(test)]
    pub(crate) listings: usize,
}

/// The blob files a flush must sync, from [`BlobSync::before_flush`] and
/// [`BlobSync::after_flush`].
#[derive(Debug, Default)]
pub(crate) struct ToSync {
    /// Whole once sled's flush has returned.
    whole: HashSet<OsString>,
    /// Appeared during sled's flush: whole only if they are the flush's own.
    appeared: Vec<OsString>,
}

impl BlobSync {
    /// For the sled database in `sled_dir`. Blob files already there are synced
    /// by the first flush.
    pub(crate) fn new(sled_dir: &Path) -> BlobSync {
        BlobSync {
            dir: sled_dir.join("blobs"),
            synced: HashSet::new(),
            again: HashSet::new(),
            listed: None,
            #[cfg(test)]
            listings: 0,
        }
    }

    /// Before sled's flush: the blob files to sync once it has returned.
    pub(crate) fn before_flush(&mut self) -> io::Result<ToSync> {
        let mut whole: HashSet<OsString> = self.again.drain().collect();
        if let Some(present) = self.list_if_changed()? {
            whole.extend(present.into_iter().filter(|name| !self.synced.contains(name)));
        }
        Ok(ToSync { whole, appeared: Vec::new() })
    }

    /// After sled's flush: adds the blob files that appeared during it.
    pub(crate) fn after_flush(&mut self, to_sync: &mut ToSync) -> io::Result<()> {
        if let Some(present) = self.list_if_changed()? {
            to_sync.appeared = present
                .into_iter()
                .filter(|name| !self.synced.contains(name) && !to_sync.whole.contains(name))
                .collect();
        }
        Ok(())
    }

    /// Syncs the files of `to_sync` and, if there were any, the directory that
    /// names them. A file sled removed meanwhile is skipped.
    pub(crate) fn sync(&mut self, to_sync: ToSync) -> io::Result<()> {
        if to_sync.whole.is_empty() && to_sync.appeared.is_empty() {
            return Ok(());
        }
        for name in to_sync.whole.iter().chain(&to_sync.appeared) {
            match File::open(self.dir.join(name)) {
                Ok(file) => file.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        File::open(&self.dir)?.sync_all()?;
        self.synced.extend(to_sync.whole);
        self.again.extend(to_sync.appeared);
        Ok(())
    }

    /// The directory's entries, unless it cannot have changed since it was last
    /// listed: its time is the same, it was listed more than a clock step after
    /// that time, and the time has a fraction of a second (a filesystem that
    /// stamps whole seconds, or two, could hide a change within one).
    fn list_if_changed(&mut self) -> io::Result<Option<HashSet<OsString>>> {
        let modified = match fs::metadata(&self.dir) {
            Ok(meta) => meta.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let fine = modified.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|t| t.subsec_nanos() != 0);
        if let Some((seen, at)) = self.listed
            && fine
            && seen == modified
            && at.duration_since(seen).is_ok_and(|gap| gap > CLOCK_STEP)
        {
            return Ok(None);
        }
        let now = SystemTime::now();
        let mut present = HashSet::new();
        for entry in fs::read_dir(&self.dir)? {
            present.insert(entry?.file_name());
        }
        self.synced.retain(|name| present.contains(name));
        self.listed = Some((modified, now));
        #[cfg(test)]
        {
            self.listings += 1;
        }
        Ok(Some(present))
    }

    /// Whether the blob file `name` is counted as synced (for the tests).
    #[cfg(test)]
    pub(crate) fn is_synced(&self, name: &std::ffi::OsStr) -> bool {
        self.synced.contains(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn blob_dir() -> (tempfile::TempDir, BlobSync) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("blobs")).unwrap();
        let sync = BlobSync::new(dir.path());
        (dir, sync)
    }

    fn create(sync: &BlobSync, name: &str) {
        fs::write(sync.dir.join(name), b"blob").unwrap();
    }

    fn set_dir_time(sync: &BlobSync, time: SystemTime) {
        File::open(&sync.dir).unwrap().set_modified(time).unwrap();
    }

    /// What a [`SledDb`](crate::engine::SledDb) flush does with its blobs, with
    /// `during` in the place of sled's flush.
    fn flush(sync: &mut BlobSync, during: impl FnOnce(&BlobSync)) {
        let mut to_sync = sync.before_flush().unwrap();
        during(sync);
        sync.after_flush(&mut to_sync).unwrap();
        sync.sync(to_sync).unwrap();
    }

    /// A blob file that appears while sled flushes is synced by that flush, and
    /// by the next one again before it counts as synced (it may have been half
    /// written the first time).
    #[test]
    fn a_blob_that_appears_during_the_flush_is_synced_then_and_again_after() {
        let (_dir, mut sync) = blob_dir();
        create(&sync, "100");
        flush(&mut sync, |sync| create(sync, "200"));
        assert!(sync.is_synced("100".as_ref()));
        assert!(!sync.is_synced("200".as_ref()) && sync.again.contains(&OsString::from("200")));
        flush(&mut sync, |_| {});
        assert!(sync.is_synced("200".as_ref()), "synced again, now counted");
        assert!(sync.again.is_empty());
    }

    /// A directory that cannot have changed is not listed again; one that changed
    /// is; and on a filesystem that stamps whole seconds it always is.
    #[test]
    fn the_directory_is_listed_again_only_when_it_may_have_changed() {
        let (_dir, mut sync) = blob_dir();
        create(&sync, "1");
        let long_ago = SystemTime::now() - Duration::from_secs(10) + Duration::from_nanos(123);
        set_dir_time(&sync, long_ago);
        flush(&mut sync, |_| {});
        let listed = sync.listings;
        flush(&mut sync, |_| {});
        assert_eq!(sync.listings, listed, "unchanged since a listing well after its time: not listed");
        create(&sync, "2");
        flush(&mut sync, |_| {});
        assert!(sync.is_synced("2".as_ref()), "a new file changes the directory's time");

        let whole_second = SystemTime::UNIX_EPOCH
            + Duration::from_secs((SystemTime::now() - Duration::from_secs(10)).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
        set_dir_time(&sync, whole_second);
        flush(&mut sync, |_| {});
        let listed = sync.listings;
        flush(&mut sync, |_| {});
        assert!(sync.listings > listed, "a time in whole seconds could hide a change: listed again");
    }
}
