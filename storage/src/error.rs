//! Typed errors of the crate.
//!
//! sled is an implementation detail: its errors are wrapped in the opaque
//! [`DbError`], which keeps the original as its `source()` for diagnostics but
//! exposes no sled type. Conversions from sled errors are crate-private
//! functions, not `From` impls, so they cannot leak into the public API.

use std::fmt;

/// An error reported by the underlying database engine (I/O failure, engine
/// bug, …). Opaque on purpose; its `Display` and `source()` carry the detail.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(sled::Error);

/// Why [`Store::open`](crate::Store::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database directory or its files could not be read or written.
    #[error("cannot access the database")]
    Io(#[source] std::io::Error),
    /// Another process — or a `Store` of this process not yet fully closed —
    /// still held the database when [`OpenOptions::lock_wait`](crate::OpenOptions::lock_wait) ran out.
    #[error("the database is locked by another user: {detail}")]
    Locked {
        /// The engine's description of the lock failure.
        detail: String,
    },
    /// The database engine failed for another reason.
    #[error("database error")]
    Db(#[source] DbError),
    /// The files exist but their contents are damaged.
    #[error("the database is corrupt: {detail}")]
    Corrupt {
        /// What was found to be damaged.
        detail: String,
    },
    /// The database was written by a newer kith whose format we do not know.
    #[error("database schema version {found} is newer than the supported version {supported}")]
    UnsupportedVersion {
        /// The version recorded in the database.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The path holds a sled database that was not created by kith.
    #[error("not a kith database: {detail}")]
    Foreign {
        /// Why the database was judged foreign.
        detail: String,
    },
}

/// Why an operation on an open [`Store`](crate::Store) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database engine failed (I/O error, …).
    #[error("database error")]
    Db(#[source] DbError),
    /// A stored value or key could not be decoded.
    #[error("corrupt entry in tree `{tree}`: {detail}")]
    Corrupt {
        /// The logical table holding the bad entry.
        tree: &'static str,
        /// What failed to decode.
        detail: String,
    },
    /// A value could not be encoded (only possible for caller-provided types,
    /// e.g. a [`Settings`](crate::Settings) value whose `Serialize` fails).
    #[error("cannot encode value: {detail}")]
    Encode {
        /// The encoder's message.
        detail: String,
    },
    /// A file of the database could not be read or written (a full disk, for
    /// one): the message log, or sled's page file when a flush synced it. After a
    /// failed write the log refuses further writes until reopened.
    #[error("the disk refused a read or write: {0}")]
    Io(#[source] std::io::Error),
    /// A flush of this store failed earlier. The kernel may have dropped the pages
    /// that flush was to write, so a later flush reporting success would not prove
    /// that what was written before it is durable: every flush fails until the
    /// store is opened again, and nothing more is acknowledged.
    #[error("a flush of the store failed earlier; nothing is durable until the node restarts")]
    FlushFailedBefore,
    /// A value is larger than its table takes (a draft over
    /// [`MAX_DRAFT_LEN`](crate::MAX_DRAFT_LEN)).
    #[error("{len} bytes; the limit is {max}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The operation needs an entry that does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// The missing entry, e.g. `message 0123…`.
        what: String,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::NotFound`] naming the missing entry.
    pub(crate) fn not_found(kind: &str, key: impl fmt::Display) -> Self {
        StoreError::NotFound {
            what: format!("{kind} {key}"),
        }
    }

    /// Shorthand for [`StoreError::Corrupt`].
    pub(crate) fn corrupt(tree: &'static str, detail: impl fmt::Display) -> Self {
        StoreError::Corrupt {
            tree,
            detail: detail.to_string(),
        }
    }
}

impl DbError {
    /// Wraps an engine error (for [`crate::engine::db_error`]).
    pub(crate) fn new(e: sled::Error) -> DbError {
        DbError(e)
    }
}

/// Wraps an engine error for [`StoreError`].
pub(crate) fn db(e: sled::Error) -> StoreError {
    StoreError::Db(DbError(e))
}

impl From<crate::engine::EngineOpenError> for OpenError {
    fn from(e: crate::engine::EngineOpenError) -> OpenError {
        use crate::engine::EngineOpenError as E;
        match e {
            E::Locked(detail) => OpenError::Locked { detail },
            E::Io(io) => OpenError::Io(io),
            E::Corrupt(detail) => OpenError::Corrupt { detail },
            E::Engine(e) => OpenError::Db(DbError(e)),
        }
    }
}

/// Converts the outcome of a sled transaction whose closure aborts with
/// [`StoreError`].
pub(crate) fn tx<T>(
    r: sled::transaction::TransactionResult<T, StoreError>,
) -> Result<T, StoreError> {
    use sled::transaction::TransactionError;
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => db(e),
    })
}

impl From<StoreError> for OpenError {
    /// Errors of the schema check performed while opening.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => OpenError::Db(e),
            other => OpenError::Corrupt {
                detail: other.to_string(),
            },
        }
    }
}
