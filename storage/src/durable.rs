//! Files written whole and made durable: the message log's new files and the relay
//! logs' index checkpoints.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::StoreError;

/// Creates `path` (mode 0600 from the first byte; an existing file is truncated)
/// holding what `fill` writes through a 1 MiB buffer, and syncs it; not its
/// directory: for a file renamed into place next, whose directory sync covers both
/// (or a new file whose directory the caller syncs, see [`sync_dir`]).
pub(crate) fn write_synced(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(StoreError::Io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    fill(&mut out)?;
    let file = out.into_inner().map_err(|e| StoreError::Io(e.into_error()))?;
    file.sync_all().map_err(StoreError::Io)
}

/// Writes `path` whole through `temporary` ([`write_synced`], then a rename and
/// a sync of the directory): a crash leaves the old file or the new one. A file
/// left at `temporary` is removed first, so the new one gets mode 0600 whatever
/// the old one had, and so is what a failed write left there.
pub(crate) fn replace_file(
    path: &Path,
    temporary: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    remove_if_present(temporary)?;
    if let Err(e) = write_synced(temporary, fill) {
        if let Err(left) = remove_if_present(temporary) {
            tracing::warn!(path = %temporary.display(), error = %left, "could not remove an unfinished file");
        }
        return Err(e);
    }
    std::fs::rename(temporary, path).map_err(StoreError::Io)?;
    sync_dir(path)
}

/// Removes `path` if it is there: a file that is not there is no error.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io(e)),
        _ => Ok(()),
    }
}

/// Syncs the directory holding `path`, so a file created or renamed there stays.
pub(crate) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::Io)
}
