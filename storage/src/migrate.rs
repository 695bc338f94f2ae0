//! Schema migrations, one function per step (see [`crate::schema`]).
//!
//! A step may be interrupted by a crash at any point and must then finish
//! correctly when it runs again: the version is recorded only after it.

use std::ops::Bound;
use std::path::Path;

use sled::Transactional;

use crate::codec::{decode, fixed};
use crate::engine::SledDb;
use crate::error::{StoreError, db, tx};
use crate::keys::MessageKey;
use crate::messages::Message;
use crate::outbox::OutboxEntry;
use crate::schema::{MESSAGE_INDEX, MESSAGES, OUTBOX, UNREAD};
use crate::types::ID_LEN;

/// Length of a message key in schema version 1: `conversation ‖ lamport ‖ id`.
const V1_KEY_LEN: usize = ID_LEN + 8 + ID_LEN;

/// Messages moved per transaction: small enough for sled to hold a
/// transaction in memory, large enough that a big history migrates quickly.
const CHUNK: usize = 512;

/// Version 1 → 2: messages keyed by author and id.
///
/// Every message moves from `conversation ‖ lamport ‖ id` to
/// `conversation ‖ lamport ‖ id ‖ author digest`; its index entry from
/// `id → key` to `id ‖ author digest → key`; its unread entry (if any) to the
/// new key. Values, conversations (with their unread counts) and the outbox
/// are unchanged. Chunks of messages move in one transaction each, and old
/// keys are told apart from new ones by their length, so a migration
/// interrupted between chunks resumes where it stopped.
pub(crate) fn v1_to_v2(handle: &SledDb) -> Result<(), StoreError> {
    let messages = handle.open_tree(MESSAGES).map_err(db)?;
    let index = handle.open_tree(MESSAGE_INDEX).map_err(db)?;
    let unread = handle.open_tree(UNREAD).map_err(db)?;
    let mut after: Bound<sled::IVec> = Bound::Unbounded;
    let mut moved = 0usize;
    loop {
        // A new key sorts right after its old key (which is its prefix), so
        // the scan from the last old key sees each key once.
        let mut chunk: Vec<([u8; V1_KEY_LEN], MessageKey, sled::IVec)> = Vec::with_capacity(CHUNK);
        for kv in messages.range::<sled::IVec, _>((after.clone(), Bound::Unbounded)) {
            let (key, value) = kv.map_err(db)?;
            if key.len() != V1_KEY_LEN {
                continue;
            }
            let msg: Message = decode(MESSAGES, &value)?;
            chunk.push((fixed(MESSAGES, &key)?, msg.key(), value));
            if chunk.len() == CHUNK {
                break;
            }
        }
        let Some((last, _, _)) = chunk.last() else {
            break;
        };
        after = Bound::Excluded(sled::IVec::from(&last[..]));
        tx((&messages, &index, &unread).transaction(|(m, i, u)| {
            for (old, new, value) in &chunk {
                m.remove(&old[..])?;
                m.insert(&new[..], value.clone())?;
                i.remove(&old[ID_LEN + 8..])?;
                i.insert(&new[ID_LEN + 8..], &new[..])?;
                if u.remove(&old[..])?.is_some() {
                    u.insert(&new[..], &[][..])?;
                }
            }
            Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
        }))?;
        moved += chunk.len();
    }
    // Entries of the old layout that no message claimed (possible only in a
    // damaged database) would point nowhere: drop them.
    let stray = remove_where(&index, |k| k.len() == ID_LEN)?
        + remove_where(&unread, |k| k.len() == V1_KEY_LEN)?;
    tracing::info!(
        messages = moved,
        stray,
        "messages re-keyed by author and id"
    );
    Ok(())
}

/// Removes the keys of `tree` that `old` selects; returns how many.
fn remove_where(tree: &sled::Tree, old: impl Fn(&[u8]) -> bool) -> Result<usize, StoreError> {
    let mut removed = 0;
    for key in tree.iter().keys() {
        let key = key.map_err(db)?;
        if old(&key) {
            tree.remove(key).map_err(db)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Version 2 → 3: messages, their states and the outbox move into the
/// message log.
///
/// The log is written under a temporary name, synced and renamed into place;
/// the old trees stay until the version is recorded (they are dropped when
/// the log is next opened), so a migration interrupted anywhere runs again
/// from the same trees and writes the same log.
pub(crate) fn v2_to_v3(handle: &SledDb, dir: &Path) -> Result<(), StoreError> {
    let messages = handle.open_tree(MESSAGES).map_err(db)?;
    let outbox = handle.open_tree(OUTBOX).map_err(db)?;
    let tmp = dir.join(format!("{}.migrating", crate::msglog::FILE_NAME));
    let moved = std::cell::Cell::new(0usize);
    crate::msglog::write_log(
        &tmp,
        messages.iter().values().map(|v| {
            moved.set(moved.get() + 1);
            decode::<Message>(MESSAGES, &v.map_err(db)?)
        }),
        outbox.iter().values().map(|v| decode::<OutboxEntry>(OUTBOX, &v.map_err(db)?)),
    )?;
    let target = dir.join(crate::msglog::FILE_NAME);
    std::fs::rename(&tmp, &target).map_err(StoreError::Io)?;
    crate::durable::sync_dir(&target)?;
    tracing::info!(messages = moved.get(), outbox = outbox.len(), "messages moved to the message log");
    Ok(())
}
