//! Owner-only files: the relay's state is as private as its keys.
//!
//! sled creates files with the process umask (often 0644), so after opening a
//! database its directory is tightened to 0700 (which also covers files sled creates
//! later) and its files to 0600. No-ops on non-Unix platforms.

use std::fs;
use std::io;
use std::path::Path;

/// Creates `dir` (and missing parents) and sets it to mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Sets 0700 on `root` and the directories below it, and 0600 on every file.
pub(crate) fn restrict_tree(root: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if meta.is_dir() {
        set_mode(root, 0o700)?;
        for entry in fs::read_dir(root)? {
            restrict_tree(&entry?.path())?;
        }
    } else if meta.is_file() {
        set_mode(root, 0o600)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
