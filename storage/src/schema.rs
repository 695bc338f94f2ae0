//! Tree names, the schema version and the checks run when a database opens.
//!
//! The `meta` tree holds `schema_version` as a big-endian `u32`. Opening an
//! empty database stamps the current version; an older version is upgraded by
//! [`migrate`] one step at a time; a newer one, or a database that holds data
//! but no version, is refused.

use std::collections::HashSet;
use std::path::Path;

use crate::engine::SledDb;
use crate::error::{OpenError, StoreError, db};
use crate::msglog::MessageLog;
use crate::types::ConversationId;

/// The schema version written by this build.
///
/// 1. The first layout.
/// 2. Messages are keyed by author and id (see [`crate::keys`]); deleted
///    messages leave tombstones.
/// 3. Messages, their states and the outbox move from sled trees to the
///    message log (see [`crate::msglog`]).
/// 4. The message log may hold change records (edits, deletes, reactions); a
///    version-3 log is a version-4 log without them, so the step writes
///    nothing. An older build refuses a version-4 database instead of reading
///    change records as damage.
/// 5. The ratchet state moves from the `ratchet` tree into the message log as
///    key/value records (copied when the log opens, see [`open_log`]); like 4,
///    the step itself writes nothing, and an older build refuses the database
///    instead of reading those records as damage.
pub const SCHEMA_VERSION: u32 = 5;

/// Tree holding database-wide metadata (the schema version).
pub(crate) const META: &str = "meta";
/// peer id (UTF-8) → `Contact`.
pub(crate) const CONTACTS: &str = "contacts";
/// conversation id → `Conversation`.
pub(crate) const CONVERSATIONS: &str = "conversations";
/// Up to version 2: conversation id ‖ lamport (u64 BE) ‖ message id ‖ author digest → `Message`.
pub(crate) const MESSAGES: &str = "messages";
/// Up to version 2: message id ‖ author digest → its key in [`MESSAGES`].
pub(crate) const MESSAGE_INDEX: &str = "message_index";
/// message id ‖ author digest of a deleted message → its `sent_at_ms` (u64 BE).
pub(crate) const TOMBSTONES: &str = "tombstones";
/// peer id (base58) ‖ `/request` or `/acceptance` → issue time (u64 BE, µs) of the
/// newest contact payload of that kind taken from it (see [`crate::replay`]); kept
/// after the contact goes.
pub(crate) const CONTACT_HEARD: &str = "contact_heard";
/// Up to version 2: keys (as in [`MESSAGES`]) of incoming messages not yet read → empty.
pub(crate) const UNREAD: &str = "unread";
/// Up to version 2: item id → `OutboxEntry`.
pub(crate) const OUTBOX: &str = "outbox";
/// group id → `Group`.
pub(crate) const GROUPS: &str = "groups";
pub(crate) const GROUP_OPS: &str = "group_ops";
pub(crate) const GROUP_KEYS: &str = "group_keys";
pub(crate) const GROUP_PENDING: &str = "group_pending";
/// setting name (UTF-8) → CBOR value.
pub(crate) const SETTINGS: &str = "settings";
/// invite token → expiry (u64 BE, ms).
pub(crate) const INVITES: &str = "invites";
/// blob id (32 bytes) → `FileRecord`.
pub(crate) const FILES: &str = "files";
/// start time (u64 BE, ms) ‖ call id → `CallRecord`.
pub(crate) const CALLS: &str = "calls";
/// conversation id → end of its mute (u64 BE, ms; `u64::MAX`: forever).
pub(crate) const MUTES: &str = "mutes";
/// conversation id → its unsent draft (UTF-8).
pub(crate) const DRAFTS: &str = "drafts";
/// conversation id ‖ message id → who it was meant for and how far it got with each.
pub(crate) const GROUP_RECEIPTS: &str = "group_receipts";
/// peer id (base58) → its signed profile, as it arrived.
pub(crate) const PROFILES: &str = "profiles";
/// `held/` or `given/` ‖ peer id (base58) → a deposit ticket's expiry (u64 BE, ms),
/// and for a held one its signature (see [`crate::tickets`]).
pub(crate) const DEPOSIT_TICKETS: &str = "deposit_tickets";
/// Up to version 4: ratchet state (the Olm account, per-peer sessions, both
/// encrypted by the network layer, and digests of opened ratchet messages), now
/// key/value records of the message log.
pub(crate) const RATCHET: &str = "ratchet";

const VERSION_KEY: &[u8] = b"schema_version";
/// Present once the message log was created: from then on its absence is damage.
const LOG_KEY: &[u8] = b"message_log";
/// The trees version 3 moved into the message log, dropped once it exists.
const MOVED_TO_LOG: [&str; 4] = [MESSAGES, MESSAGE_INDEX, UNREAD, OUTBOX];
/// The tree sled always creates; it is not ours and must stay empty.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// Checks (and for a new database, stamps) the schema version, running
/// migrations if the database is older than this build.
pub(crate) fn check(db: &SledDb, dir: &Path) -> Result<(), OpenError> {
    let names = db.tree_names();
    let meta = if names.iter().any(|n| n == META.as_bytes()) {
        Some(db.open_tree(META).map_err(db_err)?)
    } else {
        None
    };
    let stored = match &meta {
        Some(meta) => meta.get(VERSION_KEY).map_err(db_err)?,
        None => None,
    };
    let Some(stored) = stored else {
        // No version: acceptable only for a database that holds nothing yet
        // (possibly a `meta` tree left empty by a crash during creation).
        let foreign: Vec<String> = names
            .iter()
            .filter(|n| *n != SLED_DEFAULT_TREE && *n != META.as_bytes())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        if !foreign.is_empty() {
            return Err(OpenError::Foreign {
                detail: format!("no schema version, unknown trees: {}", foreign.join(", ")),
            });
        }
        if !db.is_empty() || meta.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(OpenError::Foreign {
                detail: "no schema version, but the database holds data".into(),
            });
        }
        let meta = db.open_tree(META).map_err(db_err)?;
        set_version(db, &meta, SCHEMA_VERSION)?;
        tracing::debug!(version = SCHEMA_VERSION, "created database");
        return Ok(());
    };
    let found = u32::from_be_bytes(stored.as_ref().try_into().map_err(|_| OpenError::Corrupt {
        detail: format!("schema_version is {} bytes, expected 4", stored.len()),
    })?);
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Greater => Err(OpenError::UnsupportedVersion {
            found,
            supported: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => {
            let meta = db.open_tree(META).map_err(db_err)?;
            migrate(db, dir, &meta, found)
        }
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// One migration step: upgrades the database in directory `dir` from version
/// `v` to `v + 1`.
type Step = fn(&SledDb, &Path) -> Result<(), StoreError>;

/// The step that upgrades from version `from`, if this build knows one.
fn step(from: u32) -> Option<Step> {
    match from {
        1 => Some(|db, _| crate::migrate::v1_to_v2(db)),
        2 => Some(crate::migrate::v2_to_v3),
        3 | 4 => Some(|_, _| Ok(())),
        _ => None,
    }
}

/// Upgrades the database from schema version `from` to [`SCHEMA_VERSION`],
/// recording (and flushing) the version after each step so an interrupted
/// migration resumes where it stopped.
fn migrate(db: &SledDb, dir: &Path, meta: &sled::Tree, from: u32) -> Result<(), OpenError> {
    for version in from..SCHEMA_VERSION {
        let step = step(version).ok_or_else(|| OpenError::Corrupt {
            detail: format!("unknown schema version {version}"),
        })?;
        tracing::info!(from = version, to = version + 1, "migrating database");
        step(db, dir)?;
        set_version(db, meta, version + 1)?;
    }
    Ok(())
}

/// Opens the message log of a checked database (creating it for a new one),
/// moves the `ratchet` tree's records into it, then drops the sled trees an
/// upgrade moved into it.
pub(crate) fn open_log(
    db: &SledDb,
    dir: &Path,
    conversations: &HashSet<ConversationId>,
) -> Result<MessageLog, OpenError> {
    let meta = db.open_tree(META).map_err(db_err)?;
    let created = meta.get(LOG_KEY).map_err(db_err)?.is_some();
    let log = MessageLog::open(dir, conversations, !created)?;
    if !created {
        meta.insert(LOG_KEY, &[1][..]).map_err(db_err)?;
        db.flush()?;
    }
    let names = db.tree_names();
    move_ratchet_tree(db, &names, &log)?;
    for tree in MOVED_TO_LOG {
        if names.iter().any(|n| n == tree.as_bytes()) {
            db.drop_tree(tree).map_err(db_err)?;
        }
    }
    Ok(log)
}

/// Copies the records of the `ratchet` tree (schema version 4 and older) into
/// the log as key/value records in one frame, syncs the log, then drops the tree
/// and flushes sled. A crash before the drop is durable copies them again at the
/// next open, over the same values (nothing else writes ratchet state before the
/// store is open): idempotent.
fn move_ratchet_tree(db: &SledDb, names: &[sled::IVec], log: &MessageLog) -> Result<(), OpenError> {
    if !names.iter().any(|n| n == RATCHET.as_bytes()) {
        return Ok(());
    }
    let tree = db.open_tree(RATCHET).map_err(db_err)?;
    let records = tree
        .iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), Some(v.to_vec()))).map_err(db_err))
        .collect::<Result<Vec<_>, _>>()?;
    if !records.is_empty() {
        log.write_kv(&records)?;
        log.sync()?;
        tracing::info!(records = records.len(), "moved the ratchet state into the message log");
    }
    drop(tree);
    db.drop_tree(RATCHET).map_err(db_err)?;
    db.flush()?;
    Ok(())
}

fn set_version(db: &SledDb, meta: &sled::Tree, version: u32) -> Result<(), OpenError> {
    meta.insert(VERSION_KEY, &version.to_be_bytes())
        .map_err(db_err)?;
    db.flush()?;
    Ok(())
}

fn db_err(e: sled::Error) -> OpenError {
    db(e).into()
}
