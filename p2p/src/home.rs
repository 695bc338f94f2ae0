//! The kith home directory: where one user's identity, database, config, control
//! socket, lock and log live.
//!
//! Resolution order ([`Home::resolve`]): an explicit `--home` flag, else the
//! `KITH_HOME` environment variable (if non-empty), else `kith` under the platform's
//! data directory (`$XDG_DATA_HOME/kith`, usually `~/.local/share/kith`, on Linux).
//! The directory holds secrets, so [`Home::ensure`] keeps it at mode 0700.
//!
//! Layout:
//!
//! | file          | what                                   |
//! |---------------|----------------------------------------|
//! | `identity.key`| the keystore ([`crate::keystore`])     |
//! | `db/`         | the node's database                    |
//! | `config.toml` | user settings ([`crate::config`])      |
//! | `kith.sock`   | the daemon's control socket            |
//! | `daemon.lock` | held by the running daemon             |
//! | `kith.log`    | the daemon's log file                  |

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that overrides the default home directory.
pub const HOME_ENV: &str = "KITH_HOME";

/// The home directory's mode: private to the user, since it holds the keystore and
/// the control socket.
const HOME_MODE: u32 = 0o700;

/// Errors locating or preparing the home directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// No `--home`, no `KITH_HOME`, and the platform has no data directory.
    #[error("cannot find a data directory for kith; pass --home or set {HOME_ENV}")]
    NoDataDir,
    /// Creating or securing the directory failed.
    #[error("kith home {}: {source}", path.display())]
    Io {
        /// The directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A kith home directory. Only computes paths; nothing touches the disk until
/// [`Home::ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Finds the home directory: `flag` if given, else `$KITH_HOME` if set and
    /// non-empty, else `<data dir>/kith`. Fails with [`HomeError::NoDataDir`] only if
    /// none of these exists.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Home, HomeError> {
        resolve_from(flag, std::env::var_os(HOME_ENV), dirs::data_dir())
    }

    /// A home at exactly `root`.
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// Creates the directory (and missing parents) if needed and makes sure it is
    /// a directory with mode 0700, tightening an existing one's mode. Idempotent.
    pub fn ensure(&self) -> Result<(), HomeError> {
        create_private_dir(&self.root).map_err(|source| HomeError::Io { path: self.root.clone(), source })
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The encrypted identity file: `identity.key`.
    pub fn keystore_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// The end-to-end key ring, sealed for the identity: `e2e-keys` (see
    /// [`crate::keyring`]).
    pub fn key_ring_path(&self) -> PathBuf {
        self.root.join(crate::keyring::FILE_NAME)
    }

    /// The node's database directory: `db`.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    /// The user configuration: `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The daemon's control socket: `kith.sock`.
    ///
    /// Unix socket paths are limited to about 100 bytes, so a very deep home
    /// directory may be unable to host the socket.
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("kith.sock")
    }

    /// The lock file held by the running daemon: `daemon.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The daemon's log file: `kith.log`.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("kith.log")
    }

    /// The node's files, sealed (see `kith_p2p::blob`): `blobs`.
    pub fn blobs_path(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where received files are saved: `files`.
    pub fn files_path(&self) -> PathBuf {
        self.root.join("files")
    }

    /// The node's file settings: blobs and downloads under this home, automatic
    /// downloads up to `auto_download_max` bytes.
    pub fn files_config(&self, auto_download_max: u64) -> crate::node::FilesConfig {
        crate::node::FilesConfig {
            blob_dir: self.blobs_path(),
            download_dir: self.files_path(),
            auto_download_max,
        }
    }
}

/// [`Home::resolve`] with its inputs passed in, so the precedence is testable
/// without touching the process environment.
fn resolve_from(
    flag: Option<PathBuf>,
    env: Option<OsString>,
    data_dir: Option<PathBuf>,
) -> Result<Home, HomeError> {
    if let Some(root) = flag {
        return Ok(Home::at(root));
    }
    if let Some(root) = env.filter(|value| !value.is_empty()) {
        return Ok(Home::at(root));
    }
    data_dir
        .map(|dir| Home::at(dir.join("kith")))
        .ok_or(HomeError::NoDataDir)
}

/// Create `dir` (and missing parents) owner-only (0700), tightening it if it exists.
/// Fails with `NotADirectory` if a file is in the way.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(HOME_MODE).create(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
    }
    if meta.permissions().mode() & 0o777 != HOME_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(HOME_MODE))?;
    }
    Ok(())
}

/// Set 0700 on `root` and the directories below it and 0600 on every file: for
/// databases, which create their files with the process umask.
pub fn restrict_tree(root: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if meta.is_dir() {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(root)? {
            restrict_tree(&entry?.path())?;
        }
    } else if meta.is_file() {
        fs::set_permissions(root, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Whether [`write_private_file`] may replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`io::ErrorKind::AlreadyExists`] if the target exists.
    Never,
    /// Atomically replace the target.
    Allowed,
}

/// Atomically writes a private (mode 0600) file: a temporary file in the same
/// directory is written and fsynced, moved into place, then the directory is fsynced.
/// A crash leaves the old content or the new, never a mix. On error the target is
/// untouched and the temporary file removed.
pub fn write_private_file(
    path: &Path,
    bytes: &[u8],
    overwrite: Overwrite,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    if overwrite == Overwrite::Never && path.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
    }
    let suffix: u64 = rand::random();
    let tmp = dir.join(format!(
        ".{}.tmp-{suffix:016x}",
        file_name.to_string_lossy()
    ));
    let result = write_then_move(&tmp, path, bytes, overwrite);
    if result.is_err() {
        // Best effort: the temp file may already be gone (or never created).
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)?.sync_all()
}

fn write_then_move(tmp: &Path, path: &Path, bytes: &[u8], overwrite: Overwrite) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    match overwrite {
        Overwrite::Allowed => fs::rename(tmp, path),
        Overwrite::Never => match fs::hard_link(tmp, path) {
            // link(2), unlike rename(2), fails if the target exists, so a file created
            // concurrently is never clobbered.
            Ok(()) => fs::remove_file(tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            // Filesystems without hard links: check, then rename. Racy, but only
            // against another writer creating the same file at the same moment.
            Err(_) => {
                if path.symlink_metadata().is_ok() {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
                }
                fs::rename(tmp, path)
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ensure_creates_with_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(tmp.path().join("a/b/kith"));
        home.ensure().unwrap();
        assert!(home.root().is_dir());
        assert_eq!(mode(home.root()), 0o700);
        home.ensure().unwrap();
        assert_eq!(mode(home.root()), 0o700);
    }

    #[test]
    fn ensure_tightens_an_existing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("kith");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        Home::at(&root).ensure().unwrap();
        assert_eq!(mode(&root), 0o700);
    }

    #[test]
    fn ensure_rejects_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("kith");
        fs::write(&root, b"").unwrap();
        assert!(matches!(
            Home::at(&root).ensure(),
            Err(HomeError::Io { .. })
        ));
    }

    #[test]
    fn flag_wins() {
        let home = Home::resolve(Some(PathBuf::from("/from/flag"))).unwrap();
        assert_eq!(home.root(), Path::new("/from/flag"));
        let home = resolve_from(
            Some("/from/flag".into()),
            Some("/from/env".into()),
            Some("/data".into()),
        )
        .unwrap();
        assert_eq!(home.root(), Path::new("/from/flag"));
    }

    #[test]
    fn env_beats_data_dir_unless_empty() {
        let home = resolve_from(None, Some("/from/env".into()), Some("/data".into())).unwrap();
        assert_eq!(home.root(), Path::new("/from/env"));
        let home = resolve_from(None, Some(OsString::new()), Some("/data".into())).unwrap();
        assert_eq!(home.root(), Path::new("/data/kith"));
        let home = resolve_from(None, None, Some("/data".into())).unwrap();
        assert_eq!(home.root(), Path::new("/data/kith"));
    }

    #[test]
    fn no_data_dir_is_an_error() {
        assert!(matches!(
            resolve_from(None, None, None),
            Err(HomeError::NoDataDir)
        ));
        assert!(matches!(
            resolve_from(None, Some(OsString::new()), None),
            Err(HomeError::NoDataDir)
        ));
    }

    #[test]
    fn paths_live_under_root() {
        let home = Home::at("/h");
        assert_eq!(home.keystore_path(), Path::new("/h/identity.key"));
        assert_eq!(home.db_path(), Path::new("/h/db"));
        assert_eq!(home.config_path(), Path::new("/h/config.toml"));
        assert_eq!(home.socket_path(), Path::new("/h/kith.sock"));
        assert_eq!(home.lock_path(), Path::new("/h/daemon.lock"));
        assert_eq!(home.log_path(), Path::new("/h/kith.log"));
    }

    #[test]
    fn private_file_write_and_no_clobber() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        write_private_file(&path, b"one", Overwrite::Never).unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = write_private_file(&path, b"two", Overwrite::Never).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_private_file(&path, b"three", Overwrite::Allowed).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "temp files left behind"
        );
    }
}
