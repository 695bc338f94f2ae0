//! The relay's host key: an Ed25519 libp2p keypair whose public half is the relay's
//! peer id, the name users pin.
//!
//! Like an ssh host key it is stored unencrypted (a daemon has nobody to type a
//! passphrase): the libp2p protobuf encoding of the keypair, in a file of mode 0600
//! inside a directory of mode 0700. Whoever reads the file can impersonate the relay;
//! losing it changes the relay's peer id, so users must re-pin it. Back it up with the
//! same care as an ssh host key.
//!
//! The file is created on first start: written to a temporary sibling, fsynced and
//! renamed into place, so a crash never leaves a truncated key behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kith_p2p::home::{Overwrite, create_private_dir, write_private_file};
use libp2p::identity::Keypair;

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key file or its directory could not be read, created or secured. The
    /// reason is the source, not repeated in the message.
    #[error("relay identity {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file exists but does not hold a libp2p keypair.
    #[error("relay identity {}: not a libp2p keypair ({detail})", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What failed to decode.
        detail: String,
    },
    /// The file holds a keypair of another type than Ed25519.
    #[error("relay identity {}: not an Ed25519 key", path.display())]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
    },
}

/// Whether [`load_or_create`] found the key or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Read from an existing file.
    Loaded,
    /// Generated and written now.
    Created,
}

/// Reads the keypair at `path`, or generates one and writes it there if the file does
/// not exist. Missing parent directories are created with mode 0700. A key file that
/// others may read is used but logged as a warning.
pub fn load_or_create(path: &Path) -> Result<(Keypair, Origin), IdentityError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| IdentityError::Io { path, source }
    };
    match fs::read(path) {
        Ok(bytes) => {
            warn_if_exposed(path);
            Ok((decode(path, &bytes)?, Origin::Loaded))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if !dir.exists() {
                create_private_dir(dir).map_err(io_err(dir))?;
            }
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Malformed {
                    path: path.to_owned(),
                    detail: e.to_string(),
                })?;
            // Never replaces a file: two relays started at once on one data directory
            // never overwrite each other's fresh key.
            write_private_file(path, &bytes, Overwrite::Never).map_err(io_err(path))?;
            Ok((keypair, Origin::Created))
        }
        Err(e) => Err(IdentityError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Reads the keypair at `path` if the file exists, creating nothing: `None` when
/// there is no file yet. For checks that must leave no trace (`check-config`).
pub fn load_existing(path: &Path) -> Result<Option<Keypair>, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => {
            warn_if_exposed(path);
            decode(path, &bytes).map(Some)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair, IdentityError> {
    let keypair = Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Malformed {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(IdentityError::NotEd25519 {
            path: path.to_owned(),
        });
    }
    Ok(keypair)
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "the relay identity key is readable by other users; run chmod 600 on it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/identity.key");
        let (created, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, Origin::Created);
        let (loaded, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(created.public(), loaded.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("state")), 0o700);
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("state")).unwrap().count(), 1);
    }

    #[test]
    fn garbage_and_foreign_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(IdentityError::Malformed { .. })
        ));
        // Left untouched: an operator's key is never overwritten.
        assert_eq!(fs::read(&path).unwrap(), b"not a key");
    }
}
