//! [`Store`]: the opened database, its table handles and the operations that
//! span several tables.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sled::Transactional;

use crate::codec::fixed;
use crate::contacts::Contacts;
use crate::conversations::Conversations;
use crate::error::{OpenError, StoreError, db, tx};
use crate::groups::Groups;
use crate::files::Files;
use crate::invites::Invites;
use crate::keys::KEY_LEN;
use crate::messages::{Direction, Inserted, Message, MessageState, Messages};
use crate::outbox::{Outbox, OutboxEntry};
use crate::replay;
use crate::schema::{
    self, CONTACTS, CONVERSATIONS, GROUP_KEYS, GROUP_OPS, GROUP_PENDING, GROUPS, INVITES, FILES,
    MESSAGE_INDEX, MESSAGES, OUTBOX, SETTINGS, TOMBSTONES, UNREAD,
};
use crate::settings::Settings;
use crate::txn::{Tx, TxResult};
use crate::types::{ConversationId, MessageId};

/// The opened trees, one per logical table.
pub(crate) struct Trees {
    pub(crate) contacts: sled::Tree,
    pub(crate) conversations: sled::Tree,
    pub(crate) messages: sled::Tree,
    pub(crate) message_index: sled::Tree,
    pub(crate) unread: sled::Tree,
    pub(crate) outbox: sled::Tree,
    pub(crate) groups: sled::Tree,
    pub(crate) group_ops: sled::Tree,
    pub(crate) group_keys: sled::Tree,
    pub(crate) group_pending: sled::Tree,
    pub(crate) settings: sled::Tree,
    pub(crate) invites: sled::Tree,
    pub(crate) tombstones: sled::Tree,
    pub(crate) files: sled::Tree,
}

/// State shared by a [`Store`] and all handles made from it.
pub(crate) struct Inner {
    db: sled::Db,
    path: PathBuf,
    pub(crate) trees: Trees,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Runs `f` in one transaction over messages, index, unread set,
    /// conversations, outbox and tombstones. `f` may run several times on
    /// conflict.
    pub(crate) fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        let t = &self.trees;
        tx((
            &t.messages,
            &t.message_index,
            &t.unread,
            &t.conversations,
            &t.outbox,
            &t.tombstones,
        )
            .transaction(
                |(messages, index, unread, conversations, outbox, tombstones)| {
                    f(&Tx {
                        messages,
                        index,
                        unread,
                        conversations,
                        outbox,
                        tombstones,
                    })
                },
            ))
    }

    fn flush(&self) -> Result<usize, StoreError> {
        self.db.flush().map_err(db)
    }
}

/// An open kith database.
///
/// Cheap to clone (one `Arc`); `Send + Sync`. sled allows one process per
/// database, so open it once and share clones. Dropping the last clone
/// closes the database (unflushed writes are still flushed by sled's
/// background thread and on drop, but only the calls listed under
/// "Durability" in the crate docs guarantee it).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the database in directory `path` with default [`OpenOptions`],
    /// creating it if missing, and checks its schema version (see
    /// [`OpenError`] for what is refused).
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// [`open`](Self::open) with explicit options.
    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<Store, OpenError> {
        let handle = open_sled(path, options)?;
        schema::check(&handle)?;
        let open = |name: &str| handle.open_tree(name).map_err(|e| OpenError::from(db(e)));
        let trees = Trees {
            contacts: open(CONTACTS)?,
            conversations: open(CONVERSATIONS)?,
            messages: open(MESSAGES)?,
            message_index: open(MESSAGE_INDEX)?,
            unread: open(UNREAD)?,
            outbox: open(OUTBOX)?,
            groups: open(GROUPS)?,
            group_ops: open(GROUP_OPS)?,
            group_keys: open(GROUP_KEYS)?,
            group_pending: open(GROUP_PENDING)?,
            settings: open(SETTINGS)?,
            invites: open(INVITES)?,
            tombstones: open(TOMBSTONES)?,
            files: open(FILES)?,
        };
        tracing::debug!(path = %path.display(), "opened store");
        Ok(Store {
            inner: Arc::new(Inner {
                db: handle,
                path: path.to_owned(),
                trees,
            }),
        })
    }

    /// The directory this store was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The contacts table.
    pub fn contacts(&self) -> Contacts {
        Contacts {
            inner: self.inner.clone(),
        }
    }

    /// The conversations table.
    pub fn conversations(&self) -> Conversations {
        Conversations {
            inner: self.inner.clone(),
        }
    }

    /// The messages table.
    pub fn messages(&self) -> Messages {
        Messages {
            inner: self.inner.clone(),
        }
    }

    /// The persistent outbox.
    pub fn outbox(&self) -> Outbox {
        Outbox {
            inner: self.inner.clone(),
        }
    }

    /// The groups table.
    pub fn groups(&self) -> Groups {
        Groups {
            inner: self.inner.clone(),
        }
    }

    /// Named settings.
    pub fn settings(&self) -> Settings {
        Settings {
            inner: self.inner.clone(),
        }
    }

    /// One-time invite tokens.
    pub fn invites(&self) -> Invites {
        Invites {
            inner: self.inner.clone(),
        }
    }

    /// Files sent and received, and where each stands.
    pub fn files(&self) -> Files {
        Files {
            inner: self.inner.clone(),
        }
    }

    /// Durability point: every write made before this call survives a crash
    /// once it returns `Ok`. Returns the number of bytes written. Blocks.
    pub fn flush(&self) -> Result<usize, StoreError> {
        self.inner.flush()
    }

    /// [`flush`](Self::flush) without blocking the calling task (the fsync
    /// runs on sled's thread pool). Cancel-safe: dropping the future does not
    /// stop the flush, it only loses the result.
    pub async fn flush_async(&self) -> Result<usize, StoreError> {
        self.inner.db.flush_async().await.map_err(db)
    }

    /// Atomically stores an outgoing message (forced to `Pending` and
    /// `Outgoing`), its outbox entry, and the conversation's
    /// `last_activity_ms`/`last_lamport`; then flushes. If a message with
    /// this author and id already exists (or was deleted) nothing is written
    /// (idempotent retry).
    /// Fails with [`StoreError::NotFound`] if the conversation does not exist.
    pub fn append_outgoing(&self, msg: &Message, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.stage_outgoing(&[(msg.clone(), entry.clone())])?;
        self.flush()?;
        Ok(())
    }

    /// [`Store::append_outgoing`] for a batch, in one transaction and without
    /// the flush, for group commit: the writes are atomic and visible at once,
    /// but durable only after the caller's next [`Store::flush`], which must
    /// come before any of the messages is reported to anyone as stored.
    /// (One transaction per batch matters: each sled transaction costs a log
    /// write of its own.)
    pub fn stage_outgoing(&self, items: &[(Message, OutboxEntry)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let items: Vec<(Message, &OutboxEntry)> = items
            .iter()
            .map(|(msg, entry)| {
                let msg = Message {
                    state: MessageState::Pending,
                    direction: Direction::Outgoing,
                    ..msg.clone()
                };
                (msg, entry)
            })
            .collect();
        let inserted = self.inner.transact(|tx| {
            let mut inserted = Vec::with_capacity(items.len());
            for (msg, entry) in &items {
                let result = tx.insert_message(msg)?;
                if result == Inserted::New {
                    tx.put_outbox(entry)?;
                }
                inserted.push(result);
            }
            Ok(inserted)
        })?;
        self.record_files(items.iter().map(|(m, _)| m), &inserted)
    }

    /// Starts a [`FileRecord`](crate::FileRecord) for every newly stored message
    /// that carries a file, unless its blob has one. Outside the messages'
    /// transaction (files are rare; the hot path keeps its trees) but before the
    /// caller's flush, so both become durable together.
    fn record_files<'a>(
        &self,
        msgs: impl Iterator<Item = &'a Message>,
        inserted: &[Inserted],
    ) -> Result<(), StoreError> {
        for (msg, result) in msgs.zip(inserted) {
            if *result == Inserted::New
                && let Some(record) = crate::files::FileRecord::of(msg)
            {
                self.files().put_new(&record)?;
            }
        }
        Ok(())
    }

    /// Stores many received messages in one transaction — idempotent by
    /// (author, id), one [`Inserted`] per input in order (a repeat within the
    /// batch is a `Duplicate`) — updating each conversation as
    /// [`Messages::insert`] does, then flushes once (group commit): the
    /// network layer may acknowledge the messages when this returns `Ok`.
    ///
    /// A message that was deleted, or whose `sent_at_ms` lies outside the
    /// replay window around its `received_at_ms`, is
    /// [`Inserted::Refused`] and leaves no trace (see [`crate::Refusal`]).
    /// Every conversation of a message that is not refused must exist,
    /// otherwise [`StoreError::NotFound`] and nothing is stored.
    pub fn insert_incoming_batch(&self, msgs: &[Message]) -> Result<Vec<Inserted>, StoreError> {
        let inserted = self.stage_incoming(msgs)?;
        if !msgs.is_empty() {
            self.flush()?;
        }
        Ok(inserted)
    }

    /// [`Store::insert_incoming_batch`] without the flush, for group commit: the
    /// messages are stored atomically and visible at once, but durable only after
    /// the caller's next [`Store::flush`], which must come before anyone is told
    /// they were stored.
    pub fn stage_incoming(&self, msgs: &[Message]) -> Result<Vec<Inserted>, StoreError> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let inserted: Vec<Inserted> = self
            .inner
            .transact(|tx| msgs.iter().map(|m| tx.insert_message(m)).collect())?;
        self.record_files(msgs.iter(), &inserted)?;
        Ok(inserted)
    }

    /// [`Store::set_message_state`] for many messages in one transaction
    /// (one answer from a peer covers a batch). Per item, `Some(state)` if it
    /// moved; `None` if it did not or if the id is not a message (an outbox
    /// item such as a receipt). With `remove_outbox`, every id's outbox entry
    /// goes. **Not flushed.**
    pub fn set_message_states(
        &self,
        updates: &[(MessageId, MessageState)],
        remove_outbox: bool,
    ) -> Result<Vec<Option<MessageState>>, StoreError> {
        let keys = updates
            .iter()
            .map(|(id, _)| self.inner.keys_with_id(*id))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.transact(|tx| {
            updates
                .iter()
                .zip(&keys)
                .map(|(&(id, state), keys)| tx.set_state_if_message(id, keys, state, remove_outbox))
                .collect()
        })
    }

    /// Moves a message to `state` if that is a forward move (see
    /// [`MessageState::can_become`]): `Ok(Some(state))` if it changed,
    /// `Ok(None)` if not (same or stale state), [`StoreError::NotFound`] for
    /// an unknown id. The id is resolved as [`Messages::get`] does: our own
    /// message if we wrote one with this id. With `remove_outbox`, the outbox
    /// entry with the same id is removed in the same transaction (also when
    /// the state did not move). A message that stops being unread decrements
    /// its conversation's `unread`. **Not flushed**: callers flush in batches.
    pub fn set_message_state(
        &self,
        id: MessageId,
        state: MessageState,
        remove_outbox: bool,
    ) -> Result<Option<MessageState>, StoreError> {
        let keys = self.inner.keys_with_id(id)?;
        self.inner
            .transact(|tx| tx.set_state(id, &keys, state, remove_outbox))
    }

    /// Deletes the tombstones of deleted messages that a replay received at
    /// `now_ms` could no longer pass the replay window with; returns how
    /// many. [`Conversations::remove`] prunes too; call this at start so
    /// tombstones never outlive the window by long. Not flushed.
    pub fn prune_tombstones(&self, now_ms: u64) -> Result<usize, StoreError> {
        replay::prune(&self.inner.trees.tombstones, now_ms)
    }

    /// Number of tombstones kept (messages deleted within the replay window).
    pub fn tombstone_count(&self) -> usize {
        self.inner.trees.tombstones.len()
    }

    /// Marks every unread incoming message of `conv` `Read` and lowers its
    /// `unread` count accordingly (to 0 unless a message arrives
    /// concurrently); returns the messages newly marked, oldest first, e.g.
    /// to send read receipts. Flushed. [`StoreError::NotFound`] if the
    /// conversation does not exist.
    pub fn mark_read(&self, conv: ConversationId) -> Result<Vec<Message>, StoreError> {
        let read = self.stage_read(conv)?;
        self.flush()?;
        Ok(read)
    }

    /// [`Store::mark_read`] without the flush: atomic and visible at once,
    /// durable after the caller's next [`Store::flush`].
    pub fn stage_read(&self, conv: ConversationId) -> Result<Vec<Message>, StoreError> {
        let keys = self
            .inner
            .trees
            .unread
            .scan_prefix(conv.0)
            .keys()
            .map(|k| fixed::<KEY_LEN>(UNREAD, &k.map_err(db)?))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.transact(|tx| tx.mark_read(conv, &keys))
    }
}

/// Opens sled for [`Store::open_with`] (see [`crate::engine::open_sled`]).
fn open_sled(path: &Path, options: &OpenOptions) -> Result<sled::Db, OpenError> {
    crate::engine::open_sled(path, options.cache_capacity_bytes, options.lock_wait).map_err(OpenError::from)
}

/// How [`Store::open_with`] opens a database. Build with
/// `OpenOptions::default()` and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// How long to keep retrying while the database lock is held before
    /// failing with [`OpenError::Locked`]. Default 1 s: sled releases its
    /// lock a moment *after* its last handle is dropped, so even a reopen in
    /// the same process may need to wait; another process holding the
    /// database makes the open fail once this runs out.
    pub lock_wait: Duration,
    /// Upper bound of sled's page cache, in bytes. Default 64 MiB (sled's own
    /// default, 1 GiB, is too much for a chat client).
    pub cache_capacity_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            lock_wait: Duration::from_secs(1),
            cache_capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

impl OpenOptions {
    /// Sets [`lock_wait`](Self::lock_wait).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Sets [`cache_capacity_bytes`](Self::cache_capacity_bytes).
    pub fn with_cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_and_handles_are_send_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<super::Store>();
        check::<crate::Messages>();
        check::<crate::Contacts>();
    }
}
