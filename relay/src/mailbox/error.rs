//! Typed errors of the mailbox store. sled stays an implementation detail: its
//! errors are wrapped in the opaque [`DbError`]. [`OpenError`] is shared with the
//! group log store (`crate::grouplog`), so its messages name no particular store; the
//! caller adds which one.

use std::path::PathBuf;

use kith_p2p::kith_storage::StoreError;
use kith_p2p::kith_storage::engine::{EngineOpenError, db_error};

/// An error reported by the database engine (I/O failure, engine bug, …): the node
/// store's opaque wrapper, shared.
pub use kith_p2p::kith_storage::DbError;

/// Why [`MailboxStore::open`](super::MailboxStore::open) (or the group log store's
/// `open`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory or its files could not be created, read or secured.
    #[error("cannot access the database in {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the database.
    #[error("the database is in use by another process: {detail}")]
    Locked {
        /// The engine's description of the lock failure.
        detail: String,
    },
    /// The files exist but cannot be read as the store's database.
    #[error("the database is corrupt: {detail}")]
    Corrupt {
        /// What was found to be damaged.
        detail: String,
    },
    /// The database was written by a newer kith-relay.
    #[error("database schema version {found} is not supported (this build knows {supported})")]
    UnsupportedVersion {
        /// The version recorded in the database.
        found: u32,
        /// The version this build writes.
        supported: u32,
    },
    /// The directory holds a sled database that is not this kind of store.
    #[error("not a kith-relay database of this kind: {detail}")]
    Foreign {
        /// Why the database was judged foreign.
        detail: String,
    },
    /// The database engine failed for another reason.
    #[error("database error")]
    Db(#[source] DbError),
}

/// Why an operation on an open [`MailboxStore`](super::MailboxStore) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The mailbox id is empty or longer than
    /// [`MAX_MAILBOX_ID_LEN`](super::MAX_MAILBOX_ID_LEN) bytes.
    #[error("invalid mailbox id ({len} bytes)")]
    InvalidMailbox {
        /// Its length.
        len: usize,
    },
    /// A stored entry could not be decoded.
    #[error("corrupt mailbox entry: {detail}")]
    Corrupt {
        /// What failed to decode.
        detail: String,
    },
    /// The database engine failed (I/O error, …).
    #[error("mailbox database error")]
    Db(#[source] DbError),
}

/// Why [`MailboxStore::take_challenge`](super::MailboxStore::take_challenge) refused
/// a nonce. Either way the drain must start over with a fresh challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Never issued for this mailbox, already used, or dropped to make room.
    #[error("unknown or already used challenge")]
    Unknown,
    /// Issued, but its validity ran out (it is now used up too).
    #[error("expired challenge")]
    Expired,
}

impl MailboxError {
    /// Shorthand for [`MailboxError::Corrupt`].
    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        MailboxError::Corrupt {
            detail: detail.into(),
        }
    }
}

/// An error of the shared log layer ([`kith_p2p::kith_storage::seqlog`]) as this
/// store's error.
pub(crate) fn store_error(e: StoreError) -> MailboxError {
    match e {
        StoreError::Db(e) => MailboxError::Db(e),
        other => MailboxError::corrupt(other.to_string()),
    }
}

/// An engine failure while opening the store at `path`, as this store's error.
pub(crate) fn open_err(path: &std::path::Path, e: EngineOpenError) -> OpenError {
    match e {
        EngineOpenError::Locked(detail) => OpenError::Locked { detail },
        EngineOpenError::Io(source) => OpenError::Io { path: path.to_owned(), source },
        EngineOpenError::Corrupt(detail) => OpenError::Corrupt { detail },
        EngineOpenError::Engine(e) => OpenError::Db(db_error(e)),
    }
}

impl From<MailboxError> for OpenError {
    /// Errors of the checks run while opening.
    fn from(e: MailboxError) -> Self {
        match e {
            MailboxError::Db(e) => OpenError::Db(e),
            other => OpenError::Corrupt {
                detail: other.to_string(),
            },
        }
    }
}
