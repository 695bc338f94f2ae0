//! Opening a sled database the way every kith store does: the node's [`Store`] and the
//! relay's mailbox and group-log stores. sled reports a lock held by another process
//! as a plain I/O error, releases its own lock a moment after its last handle is
//! dropped, and panics on some damaged files; this module retries the first, and
//! turns all of them into one typed [`EngineOpenError`] that each store maps to its
//! own open error.
//!
//! [`Store`]: crate::Store

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

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
pub fn open_sled(path: &Path, cache_capacity_bytes: u64, lock_wait: Duration) -> Result<sled::Db, EngineOpenError> {
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
