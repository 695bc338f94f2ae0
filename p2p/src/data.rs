//! The node's files in the kith home, created and opened with owner-only permissions.
//!
//! sled creates its files with the process umask (often 0644); message history is as
//! private as the keys, so after opening we tighten every file to 0600 and every
//! directory to 0700.

use std::io;
use std::path::PathBuf;

use kith_storage::Store;

use crate::config::Config;
use crate::home::Home;

/// Why the node's local data could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The database could not be opened (corrupt, foreign, newer, or locked by another process).
    #[error("opening the database in {path}: {source}")]
    Store {
        /// The database directory.
        path: PathBuf,
        /// What the store reported.
        #[source]
        source: kith_storage::OpenError,
    },
    /// The configuration could not be written.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Setting permissions failed.
    #[error("securing {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Create what `kith init` leaves behind besides the keystore: `config.toml` (with the
/// display name, if given, and only if no config exists yet) and an empty database.
pub fn init_home_files(home: &Home, peer_id: &libp2p::PeerId, display_name: Option<&str>) -> Result<(), DataError> {
    let config_path = home.config_path();
    if !config_path.exists() {
        let config = Config {
            display_name: display_name.map(str::to_owned),
            ..Config::default()
        };
        config.save(&config_path)?;
    }
    let store = open_store(home)?;
    // Recorded in the clear so commands that need no keys (history, contacts) work
    // without the passphrase; the peer id is public anyway.
    store.settings().set(PEER_ID_SETTING, &peer_id.to_string()).map_err(store_err)?;
    store.flush().map_err(store_err)?;
    Ok(())
}

/// The settings key holding this home's peer id.
pub const PEER_ID_SETTING: &str = "peer_id";

fn store_err(e: kith_storage::StoreError) -> DataError {
    DataError::Io { path: PathBuf::from("db"), source: io::Error::other(e) }
}

/// This home's peer id as recorded by `init` (no passphrase needed).
pub fn recorded_peer_id(store: &Store) -> Option<libp2p::PeerId> {
    store.settings().get::<String>(PEER_ID_SETTING).ok().flatten()?.parse().ok()
}

/// Open (creating if needed) the home's database and make its files owner-only.
///
/// sled holds an exclusive lock on the database while it is open, so a second process
/// gets [`DataError::Store`] instead of a corrupted database.
pub fn open_store(home: &Home) -> Result<Store, DataError> {
    let path = home.db_path();
    let store = Store::open(&path).map_err(|source| DataError::Store {
        path: path.clone(),
        source,
    })?;
    crate::home::restrict_tree(&path).map_err(|source| DataError::Io { path, source })?;
    Ok(store)
}

