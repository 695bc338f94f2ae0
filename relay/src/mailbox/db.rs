//! Opening a relay store's database: sled opened as every kith store opens it, the
//! schema version checked, and a database of the earlier layout migrated. Shared by
//! the mailbox and group log stores, which are both [`SeqLogs`] in one tree.
//!
//! Schema versions: 1 kept each key space in a tree of its own (items, hashes,
//! records, expiry index; the mailbox's sequence floor in `meta`); 2 keeps items,
//! hashes and records in one tree, written in atomic batches, and expires by walking
//! each log; 3 keeps the de-duplication hashes in memory only, so the tree holds
//! items and records (see [`kith_p2p::kith_storage::seqlog`]). A build of version 2
//! must not open a version-3 store: it would find no hashes and store repeats, so
//! the version is raised although the change only removes keys.

use std::path::Path;
use std::time::Duration;

use kith_p2p::kith_storage::engine::{self, SledDb, db_error};
use kith_p2p::kith_storage::seqlog::{LegacyTrees, SeqLogs};

use super::MailboxError;
use super::error::{open_err, store_error};
use super::OpenError;

/// The schema version this build writes.
const SCHEMA_VERSION: u32 = 3;

/// Tree of store-wide values.
const META: &str = "meta";
/// `meta` key of the schema version (`u32`).
const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
/// `meta` key of a version-1 mailbox store's sequence floor (`u64`).
const LEGACY_SEQ_FLOOR_KEY: &[u8] = b"seq_floor";
/// The tree sled always creates; it is not ours and stays empty.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// How long `open` keeps retrying while the database lock is held: sled lets go of it
/// a moment after its last handle is dropped, so even a reopen in the same process
/// may have to wait; another process holding it fails after this.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// sled's page cache bound. sled's default (1 GiB) is more than a volunteer relay
/// should spend; items are read once, so caching buys little.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Which store a database holds, and where.
pub(crate) struct Kind {
    /// The tree its logs live in (distinct per kind, so one kind's database is
    /// refused as foreign by the other).
    pub(crate) tree: &'static str,
    /// The version-1 tree names: items, hashes, records, expiry index.
    pub(crate) legacy: [&'static str; 4],
    /// Whether version 1 kept a sequence floor in `meta` (the mailbox store did).
    pub(crate) legacy_floor: bool,
}

/// Opens the store of `kind` in directory `dir` (made 0700, its files 0600), checks
/// or stamps its schema version, migrates a version-1 database, and loads its logs.
pub(crate) fn open_logs(dir: &Path, kind: &Kind) -> Result<(SledDb, SeqLogs), OpenError> {
    kith_p2p::home::create_private_dir(dir).map_err(|source| OpenError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let db = engine::open_sled(dir, CACHE_CAPACITY_BYTES, LOCK_WAIT).map_err(|e| open_err(dir, e))?;
    let logs = check_schema(&db, kind, &dir.join(format!("{}.index", kind.tree)))?;
    kith_p2p::home::restrict_tree(dir).map_err(|source| OpenError::Io {
        path: dir.to_owned(),
        source,
    })?;
    Ok((db, logs))
}

/// `checkpoint`: where a clean shutdown leaves the de-duplication index
/// ([`SeqLogs::checkpoint`]).
fn check_schema(db: &SledDb, kind: &Kind, checkpoint: &Path) -> Result<SeqLogs, OpenError> {
    let err = |e| OpenError::from(MailboxError::Db(db_error(e)));
    let meta = db.open_tree(META).map_err(err)?;
    let found = match meta.get(SCHEMA_VERSION_KEY).map_err(err)? {
        Some(value) => Some(u32::from_be_bytes(fixed(&value, "schema version")?)),
        None => None,
    };
    let ours = |name: &[u8]| {
        name == kind.tree.as_bytes()
            || name == META.as_bytes()
            || name == SLED_DEFAULT_TREE
            || kind.legacy.iter().any(|l| l.as_bytes() == name)
    };
    // Data in a tree that is not ours means another kind of store (the mailbox and
    // group log stores share the version key); empty strays are harmless.
    for name in db.tree_names() {
        let empty = db.open_tree(&name).map_err(err)?.is_empty();
        if !ours(&name) && !empty {
            return Err(OpenError::Foreign {
                detail: format!(
                    "tree {:?} holds data this store does not know",
                    String::from_utf8_lossy(&name)
                ),
            });
        }
        if found.is_none() && !empty && name.as_ref() != META.as_bytes() {
            // Acceptable only for a database holding nothing yet (possibly our own
            // trees left empty by a crash during creation).
            return Err(OpenError::Foreign {
                detail: format!(
                    "no schema version, but tree {:?} holds data",
                    String::from_utf8_lossy(&name)
                ),
            });
        }
    }
    if let Some(found) = found.filter(|v| !(1..=SCHEMA_VERSION).contains(v)) {
        // Refused before anything is written into a newer build's database.
        return Err(OpenError::UnsupportedVersion {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    match found {
        Some(1) | Some(SCHEMA_VERSION) => {}
        // A new store, or version 2: stamped (and flushed) before `SeqLogs::open`
        // removes version 2's on-disk hashes, so a crash in between leaves a
        // version-3 store with some hashes left, which the next open removes, and
        // never a store marked version 2 without its hashes, which a version-2 build
        // would open and then store repeats in. (Stamping after the removal, even a
        // flushed one, leaves that window open.) A new store's trees are empty.
        None | Some(_) => set_version(db, &meta)?,
    }
    let logs = SeqLogs::open(db, kind.tree, Some(checkpoint)).map_err(|e| OpenError::from(store_error(e)))?;
    if found == Some(1) {
        migrate_v1(db, &meta, &logs, kind)?;
    }
    // A migration interrupted after it was recorded leaves the old trees behind
    // (dropping a tree that is not there does nothing).
    for name in kind.legacy {
        db.drop_tree(name).map_err(err)?;
    }
    Ok(logs)
}

/// Copies a version-1 database into the logs' tree, records the current version, and only
/// then (in the caller) drops the old trees: a crash at any point leaves either the
/// old layout whole (the copy runs again) or the new one recorded.
fn migrate_v1(db: &SledDb, meta: &sled::Tree, logs: &SeqLogs, kind: &Kind) -> Result<(), OpenError> {
    let err = |e| OpenError::from(MailboxError::Db(db_error(e)));
    tracing::info!(store = kind.tree, "migrating relay store from schema version 1 to {SCHEMA_VERSION}");
    // The old expiry and hash indexes are not carried over (expiry walks the logs,
    // the hashes are kept in memory); they are dropped with the other old trees.
    let [items, _hashes, records, _expiry] = kind.legacy.map(|name| db.open_tree(name));
    let floor = match meta.get(LEGACY_SEQ_FLOOR_KEY).map_err(err)?.filter(|_| kind.legacy_floor) {
        Some(value) => Some(u64::from_be_bytes(fixed(&value, "sequence floor")?)),
        None => None,
    };
    let legacy = LegacyTrees {
        items: &items.map_err(err)?,
        records: &records.map_err(err)?,
        floor,
    };
    logs.import(&legacy).map_err(|e| OpenError::from(store_error(e)))?;
    db.flush().map_err(|e| OpenError::from(store_error(e)))?;
    set_version(db, meta)?;
    if kind.legacy_floor {
        meta.remove(LEGACY_SEQ_FLOOR_KEY).map_err(err)?;
    }
    Ok(())
}

/// A `meta` value of exactly `N` bytes; anything else is a damaged database.
fn fixed<const N: usize>(value: &[u8], what: &str) -> Result<[u8; N], OpenError> {
    value.try_into().map_err(|_| OpenError::Corrupt {
        detail: format!("malformed {what}"),
    })
}

fn set_version(db: &SledDb, meta: &sled::Tree) -> Result<(), OpenError> {
    let err = |e| OpenError::from(MailboxError::Db(db_error(e)));
    meta.insert(SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes()).map_err(err)?;
    db.flush().map_err(|e| OpenError::from(store_error(e)))?;
    Ok(())
}
