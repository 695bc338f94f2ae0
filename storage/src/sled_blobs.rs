//! sled's blob files, made durable by the flush that needs them.
//!
//! sled 0.34 writes any log item over a quarter of a segment (~128 KiB with its
//! default 512 KiB segments) to a file of its own under `blobs/`, named by the
//! item's log sequence number, and never syncs the file or the directory. Such an
//! item is a large value, or a whole leaf of a tree whose entries add up to that
//! (sixteen relay envelopes of 8 KiB do), so the page file can point to a blob a
//! power cut would lose, and with it every entry of the leaf. [`BlobSync`] finds the
//! blob files created since it last looked and syncs them and their directory.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// More than the step of the coarse clock Linux stamps file times with (a jiffy,
/// at most 10 ms): a directory last changed more than this before it was listed
/// shows any later change as a new modification time.
const FILE_TIME_STEP: Duration = Duration::from_millis(50);

/// The blob files of one sled database already synced (see the module docs).
#[derive(Debug)]
pub(crate) struct BlobSync {
    dir: PathBuf,
    synced: HashSet<OsString>,
    /// The directory's modification time when it was last listed, and the time it
    /// was listed at.
    listed: Option<(SystemTime, SystemTime)>,
}

impl BlobSync {
    /// For the sled database in `sled_dir`. Blob files already there are synced
    /// by the first flush.
    pub(crate) fn new(sled_dir: &Path) -> BlobSync {
        BlobSync { dir: sled_dir.join("blobs"), synced: HashSet::new(), listed: None }
    }

    /// The blob files not synced yet. Listed before sled's flush runs: a blob
    /// file is created after its item's place in the log is reserved, so one
    /// listed here belongs to an item the flush then writes, and is whole once
    /// the flush has returned. Lists the directory only if it may have changed
    /// since it was last listed.
    pub(crate) fn unsynced(&mut self) -> io::Result<Vec<OsString>> {
        let modified = match fs::metadata(&self.dir) {
            Ok(meta) => meta.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if let Some((seen, at)) = self.listed
            && seen == modified
            && at.duration_since(seen).is_ok_and(|gap| gap > FILE_TIME_STEP)
        {
            return Ok(Vec::new());
        }
        let now = SystemTime::now();
        let mut present = HashSet::new();
        for entry in fs::read_dir(&self.dir)? {
            present.insert(entry?.file_name());
        }
        self.synced.retain(|name| present.contains(name));
        self.listed = Some((modified, now));
        Ok(present.into_iter().filter(|name| !self.synced.contains(name)).collect())
    }

    /// Syncs the blob files `names` from [`unsynced`](Self::unsynced) (whole by
    /// now) and, if there were any, the directory that names them. A file sled
    /// removed meanwhile is skipped.
    pub(crate) fn sync(&mut self, names: Vec<OsString>) -> io::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            match File::open(self.dir.join(&name)) {
                Ok(file) => file.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            self.synced.insert(name);
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Whether the blob file `name` has been synced (for the tests).
    #[cfg(test)]
    pub(crate) fn is_synced(&self, name: &std::ffi::OsStr) -> bool {
        self.synced.contains(name)
    }
}
