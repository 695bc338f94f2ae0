//! [`Store`]: the opened database, its table handles and the operations that
//! span several tables.

use std::borrow::{Borrow, Cow};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p_identity::PeerId;

use crate::codec::decode;
use crate::engine::SledDb;
use crate::contacts::{ContactCache, Contacts};
use crate::conversations::{Conversation, Conversations};
use crate::error::{OpenError, StoreError, db};
use crate::calls::Calls;
use crate::files::Files;
use crate::groups::Groups;
use crate::invites::Invites;
use crate::tickets::DepositTickets;
use crate::messages::{Direction, Inserted, Message, MessageState, Messages};
use crate::msglog::MessageLog;
use crate::outbox::{Outbox, OutboxEntry};
use crate::replay::{self, ContactPayload, Refusal};
use crate::schema::{
    self, CALLS, CONTACT_HEARD, CONTACTS, CONVERSATIONS, DEPOSIT_TICKETS, DRAFTS, GROUP_RECEIPTS, PROFILES, FILES, GROUP_KEYS, GROUP_OPS, GROUP_PENDING, GROUPS, INVITES, MUTES,
    SETTINGS, TOMBSTONES,
};
use crate::prefs::{Drafts, Mutes};
use crate::profiles::Profiles;
use crate::ratchet::RatchetState;
use crate::receipts::GroupReceipts;
use crate::settings::Settings;
use crate::types::{ConversationId, MessageId};

/// The opened sled trees, one per small table. Messages, their states, the
/// outbox and the ratchet state live in the message log instead (see
/// [`crate::msglog`]).
pub(crate) struct Trees {
    pub(crate) contacts: sled::Tree,
    pub(crate) conversations: sled::Tree,
    pub(crate) groups: sled::Tree,
    pub(crate) group_ops: sled::Tree,
    pub(crate) group_keys: sled::Tree,
    pub(crate) group_pending: sled::Tree,
    pub(crate) settings: sled::Tree,
    pub(crate) invites: sled::Tree,
    pub(crate) tombstones: sled::Tree,
    pub(crate) contact_heard: sled::Tree,
    pub(crate) files: sled::Tree,
    pub(crate) calls: sled::Tree,
    pub(crate) mutes: sled::Tree,
    pub(crate) drafts: sled::Tree,
    pub(crate) group_receipts: sled::Tree,
    pub(crate) profiles: sled::Tree,
    pub(crate) deposit_tickets: sled::Tree,
}

/// State shared by a [`Store`] and all handles made from it.
pub(crate) struct Inner {
    db: SledDb,
    pub(crate) path: PathBuf,
    pub(crate) trees: Trees,
    pub(crate) log: MessageLog,
    /// The contacts table, decoded (see [`ContactCache`]).
    pub(crate) contacts: std::sync::Mutex<ContactCache>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Durability point for both sled and the message log. sled goes first, so
    /// a conversation is on disk before messages that need it; the log's
    /// messages of a conversation that did not make it are forgotten at open
    /// (none of them was acknowledged, as that happens only after this).
    /// sled writes nothing when no tree changed since its last flush, and its
    /// page file is then not synced ([`SledDb::flush`]), so a flush after
    /// messages and ratchet state alone costs the log's `fdatasync`. The log's
    /// sync shares sled's rule: after a failure, no flush succeeds until the store
    /// is opened again.
    pub(crate) fn flush(&self) -> Result<usize, StoreError> {
        self.db.flush_then(|| self.log.sync())
    }

    /// Flushes sled alone (for operations whose sled half must be durable
    /// before their log half is written).
    pub(crate) fn flush_sled(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop)
    }

    /// Whether the conversation exists (in sled).
    pub(crate) fn conversation_exists(&self, id: ConversationId) -> Result<bool, StoreError> {
        self.trees.conversations.contains_key(id.0).map_err(db)
    }

    /// Why a message not held would be refused: deleted (a tombstone) or
    /// outside the replay window.
    pub(crate) fn refusal_of(&self, msg: &Message) -> Result<Option<Refusal>, StoreError> {
        if self.trees.tombstones.contains_key(msg.ref_key()).map_err(db)? {
            return Ok(Some(Refusal::Deleted));
        }
        Ok(replay::window(msg))
    }

    /// Stores messages (each with the outbox entry to queue beside it, if
    /// any) in one frame of the log: idempotent by (author, id), one
    /// [`Inserted`] per input in order. A duplicate is told apart before a
    /// refusal, so a sender retrying a message we hold hears that we hold it,
    /// however old it is. Every conversation of a message to store must exist,
    /// else [`StoreError::NotFound`] and nothing is stored. Not synced.
    pub(crate) fn stage_messages<'a>(
        &self,
        items: impl Iterator<Item = (&'a Message, Option<&'a OutboxEntry>)> + Clone,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut batch = self.log.batch();
        let mut seen = HashSet::new();
        let mut exists: HashMap<ConversationId, bool> = HashMap::new();
        let mut verdicts = Vec::new();
        for (msg, _) in items.clone() {
            let reference = msg.ref_key();
            let verdict = if batch.index().contains(&reference) || seen.contains(&reference) {
                Inserted::Duplicate
            } else if let Some(refusal) = self.refusal_of(msg)? {
                Inserted::Refused(refusal)
            } else {
                let known = match exists.entry(msg.conversation) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(slot) => *slot.insert(self.conversation_exists(msg.conversation)?),
                };
                if !known {
                    return Err(StoreError::not_found("conversation", msg.conversation));
                }
                seen.insert(reference);
                Inserted::New
            };
            verdicts.push(verdict);
        }
        for ((msg, entry), verdict) in items.zip(&verdicts) {
            if *verdict == Inserted::New {
                batch.add_message(msg)?;
                if let Some(entry) = entry {
                    batch.put_outbox(entry)?;
                }
            }
        }
        batch.commit()?;
        Ok(verdicts)
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
        schema::check(&handle, path)?;
        let open = |name: &str| handle.open_tree(name).map_err(|e| OpenError::from(db(e)));
        let trees = Trees {
            contacts: open(CONTACTS)?,
            conversations: open(CONVERSATIONS)?,
            groups: open(GROUPS)?,
            group_ops: open(GROUP_OPS)?,
            group_keys: open(GROUP_KEYS)?,
            group_pending: open(GROUP_PENDING)?,
            settings: open(SETTINGS)?,
            invites: open(INVITES)?,
            tombstones: open(TOMBSTONES)?,
            contact_heard: open(CONTACT_HEARD)?,
            files: open(FILES)?,
            calls: open(CALLS)?,
            mutes: open(MUTES)?,
            drafts: open(DRAFTS)?,
            group_receipts: open(GROUP_RECEIPTS)?,
            profiles: open(PROFILES)?,
            deposit_tickets: open(DEPOSIT_TICKETS)?,
        };
        let conversations = trees
            .conversations
            .iter()
            .keys()
            .map(|k| crate::codec::fixed(CONVERSATIONS, &k.map_err(db)?).map(ConversationId))
            .collect::<Result<HashSet<_>, _>>()?;
        let log = schema::open_log(&handle, path, &conversations)?;
        let contacts = ContactCache::load(&trees.contacts)?;
        tracing::debug!(path = %path.display(), "opened store");
        Ok(Store {
            inner: Arc::new(Inner {
                db: handle,
                path: path.to_owned(),
                trees,
                log,
                contacts: std::sync::Mutex::new(contacts),
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

    /// Deposit tickets held from contacts and given to them.
    pub fn deposit_tickets(&self) -> DepositTickets {
        DepositTickets {
            inner: self.inner.clone(),
        }
    }

    /// The call history.
    pub fn calls(&self) -> Calls {
        Calls {
            inner: self.inner.clone(),
        }
    }

    /// Conversation mutes.
    pub fn mutes(&self) -> Mutes {
        Mutes {
            inner: self.inner.clone(),
        }
    }

    /// Who in a group received and read each of our messages there.
    pub fn group_receipts(&self) -> GroupReceipts {
        GroupReceipts {
            inner: self.inner.clone(),
        }
    }

    /// Profiles as their owners signed them.
    pub fn profiles(&self) -> Profiles {
        Profiles {
            inner: self.inner.clone(),
        }
    }

    /// Ratchet state, as opaque (already encrypted) records in the message log,
    /// and its key file.
    pub fn ratchet(&self) -> RatchetState {
        RatchetState {
            inner: self.inner.clone(),
        }
    }

    /// Unsent drafts, per conversation.
    pub fn drafts(&self) -> Drafts {
        Drafts {
            inner: self.inner.clone(),
        }
    }

    /// Files sent and received, and where each stands.
    pub fn files(&self) -> Files {
        Files {
            inner: self.inner.clone(),
        }
    }

    /// Hands `each` every message stored and every conversation removed since
    /// `from` (`None`: since the log began), in the order they were written,
    /// and returns the cursor to go on from next time. If `from` was taken from
    /// a log that has since been rewritten (a compaction, a migration at open,
    /// or an operating-system crash that lost its tail), the first event is
    /// [`LogEvent`](crate::LogEvent)`::Reset` and the rest replay the whole
    /// log. Messages are read back from the file; writers are not held up. An
    /// error from `each` stops the walk and is returned.
    pub fn follow_log(
        &self,
        from: Option<&crate::LogCursor>,
        each: impl FnMut(crate::LogEvent) -> Result<(), StoreError>,
    ) -> Result<crate::LogCursor, StoreError> {
        self.inner.log.follow(from, each)
    }

    /// Compacts the message log if more than half of it (and at least 8 MiB) is
    /// records no longer live: replaced delivery states, delivered outbox
    /// entries, rolled ratchet state, removed conversations. Writers go on
    /// meanwhile, held up only while the index's entries are copied and while
    /// the last records written during the copy are appended and the new file
    /// takes the old one's place; a crash at any point loses nothing written
    /// before it. Refused unless the disk has room for the live records and
    /// 64 MiB besides. Followers of the log
    /// ([`follow_log`](Self::follow_log)) start again from the beginning
    /// afterwards. Blocks for as long as copying the live records takes.
    pub fn compact_log_if_due(&self) -> Result<Option<crate::LogCompaction>, StoreError> {
        self.inner.log.compact_if_due()
    }

    /// [`compact_log_if_due`](Self::compact_log_if_due) whether or not it is due.
    pub fn compact_log(&self) -> Result<crate::LogCompaction, StoreError> {
        self.inner.log.compact()
    }

    /// How many times the message log was compacted since the store opened: a
    /// [`MessagePlace`](crate::MessagePlace) taken before a compaction no longer
    /// names its message after it.
    pub fn log_generation(&self) -> u64 {
        self.inner.log.generation()
    }

    /// Durability point: every write made before this call survives a crash of
    /// the process or of the machine once it returns `Ok`. Returns the number of
    /// bytes sled wrote (0 if a flush running at the same time covered this one).
    /// Blocks.
    /// After a flush failed, every later one fails too, until the store is
    /// opened again ([`StoreError::FlushFailedBefore`]).
    pub fn flush(&self) -> Result<usize, StoreError> {
        self.inner.flush()
    }

    /// Whether a flush of this store has failed since it was opened. After a failed
    /// `fdatasync` the kernel may have dropped the pages it held, so what was
    /// written before it may not be durable even if a later `fdatasync` succeeds:
    /// every later flush fails with [`StoreError::FlushFailedBefore`].
    pub fn a_flush_failed(&self) -> bool {
        self.inner.db.a_flush_failed()
    }

    /// Whether the store has stopped storing since it was opened: a flush failed
    /// ([`a_flush_failed`](Self::a_flush_failed)), or a write to the message log
    /// did (a full disk), after which the log refuses writes because its index in
    /// memory no longer matches its file. Either way nothing new becomes durable
    /// until the store is opened again, when it reads what its files hold.
    pub fn failed(&self) -> bool {
        self.a_flush_failed() || self.inner.log.refuses_writes()
    }

    /// Atomically stores an outgoing message (forced to `Pending` and
    /// `Outgoing`) and its outbox entry; then flushes. If a message with
    /// this author and id already exists (or was deleted) nothing is written
    /// (idempotent retry).
    /// Fails with [`StoreError::NotFound`] if the conversation does not exist.
    pub fn append_outgoing(&self, msg: &Message, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.stage_outgoing(&[(msg, entry)])?;
        self.flush()?;
        Ok(())
    }

    /// [`Store::append_outgoing`] for a batch, in one frame of the message log
    /// and without the flush, for group commit: the writes are atomic and
    /// visible at once, but durable only after the caller's next
    /// [`Store::flush`], which must come before any of the messages is
    /// reported to anyone as stored.
    pub fn stage_outgoing<M, E>(&self, items: &[(M, E)]) -> Result<(), StoreError>
    where
        M: Borrow<Message>,
        E: Borrow<OutboxEntry>,
    {
        let items: Vec<(Cow<'_, Message>, Option<&OutboxEntry>)> = items
            .iter()
            .map(|(msg, entry)| {
                let msg = msg.borrow();
                // A copy only for a message that is not already as it is stored.
                let msg = if msg.state == MessageState::Pending && msg.direction == Direction::Outgoing {
                    Cow::Borrowed(msg)
                } else {
                    Cow::Owned(Message {
                        state: MessageState::Pending,
                        direction: Direction::Outgoing,
                        ..msg.clone()
                    })
                };
                (msg, Some(entry.borrow()))
            })
            .collect();
        let inserted = self.inner.stage_messages(items.iter().map(|(m, e)| (m.as_ref(), *e)))?;
        self.record_files(items.iter().map(|(m, _)| m.as_ref()), &inserted)
    }

    /// Starts a [`FileRecord`](crate::FileRecord) for every newly stored message
    /// that carries a file, unless its blob has one. Our own message's record
    /// replaces one that is there: we sealed that blob just now under a new key,
    /// so an earlier message naming it can only be someone who learned its id (a
    /// media node we upload to) and must not own our file. In sled, before the
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
                match msg.direction {
                    Direction::Outgoing => self.files().put(&record)?,
                    Direction::Incoming => self.files().claim(&record)?,
                }
            }
        }
        Ok(())
    }

    /// Stores many received messages in one frame of the message log —
    /// idempotent by (author, id), one [`Inserted`] per input in order (a
    /// repeat within the batch is a `Duplicate`) — then flushes once (group
    /// commit): the network layer may acknowledge the messages when this
    /// returns `Ok`.
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
        let inserted = self.inner.stage_messages(msgs.iter().map(|m| (m, None)))?;
        self.record_files(msgs.iter(), &inserted)?;
        Ok(inserted)
    }

    /// [`Store::set_message_state`] for many messages in one frame (one answer
    /// from a peer covers a batch). Per item, `Some(state)` if it moved; `None`
    /// if it did not or if the id is not a message (an outbox item such as a
    /// receipt). With `remove_outbox`, every id's outbox entry goes. **Not
    /// flushed.**
    pub fn set_message_states(
        &self,
        updates: &[(MessageId, MessageState)],
        remove_outbox: bool,
    ) -> Result<Vec<Option<MessageState>>, StoreError> {
        let mut batch = self.inner.log.batch();
        let mut moved = Vec::with_capacity(updates.len());
        for &(id, state) in updates {
            if remove_outbox {
                batch.drop_outbox(id)?;
            }
            let found = batch.index().resolve(id);
            moved.push(match found {
                Some(found) if batch.set_state(&found.key.1, state)? => Some(state),
                _ => None,
            });
        }
        batch.commit()?;
        Ok(moved)
    }

    /// Moves a message to `state` if that is a forward move (see
    /// [`MessageState::can_become`]): `Ok(Some(state))` if it changed,
    /// `Ok(None)` if not (same or stale state), [`StoreError::NotFound`] for
    /// an unknown id (and then nothing changes). The id is resolved as
    /// [`Messages::get`] does: our own message if we wrote one with this id.
    /// With `remove_outbox`, the outbox entry with the same id is removed in
    /// the same frame (also when the state did not move). A message that stops
    /// being unread leaves its conversation's `unread` count. **Not flushed**:
    /// callers flush in batches.
    pub fn set_message_state(
        &self,
        id: MessageId,
        state: MessageState,
        remove_outbox: bool,
    ) -> Result<Option<MessageState>, StoreError> {
        let mut batch = self.inner.log.batch();
        let Some(found) = batch.index().resolve(id) else {
            return Err(StoreError::not_found("message", id));
        };
        if remove_outbox {
            batch.drop_outbox(id)?;
        }
        let moved = batch.set_state(&found.key.1, state)?;
        batch.commit()?;
        Ok(moved.then_some(state))
    }

    /// Deletes the tombstones of deleted messages that a replay received at
    /// `now_ms` could no longer pass the replay window with (and the contact
    /// payloads' issue times of [`Store::note_contact_payload`] likewise);
    /// returns how many tombstones. [`Conversations::remove`] prunes too; call this at start so
    /// tombstones never outlive the window by long. Not flushed.
    pub fn prune_tombstones(&self, now_ms: u64) -> Result<usize, StoreError> {
        replay::prune_heard(&self.inner.trees.contact_heard, now_ms)?;
        replay::prune(&self.inner.trees.tombstones, now_ms)
    }

    /// Whether a contact payload of `kind` from `peer`, issued at `issued_us` (µs
    /// since the Unix epoch, the sender's clock) and received at `now_ms`, is
    /// refused: outside the replay window ([`Refusal::Expired`],
    /// [`Refusal::Future`]) or not issued after the last one of that kind taken from
    /// `peer` ([`Refusal::Replayed`]; see [`Store::note_contact_payload`]). Those
    /// payloads carry no message id, so their issue time is what tells a copy a
    /// relay kept from a new one. Writes nothing.
    pub fn contact_payload_refusal(
        &self,
        peer: &PeerId,
        kind: ContactPayload,
        issued_us: u64,
        now_ms: u64,
    ) -> Result<Option<Refusal>, StoreError> {
        if let Some(refusal) = replay::outside(issued_us / 1000, now_ms) {
            return Ok(Some(refusal));
        }
        match self.contact_payload_mark(peer, kind)? {
            Some(last) if last >= issued_us => Ok(Some(Refusal::Replayed)),
            _ => Ok(None),
        }
    }

    /// The issue time (µs) of the last contact payload of `kind` noted for `peer`
    /// ([`Store::note_contact_payload`]), if one is kept. A damaged mark counts as
    /// none: it must not refuse every payload of `peer`.
    pub fn contact_payload_mark(&self, peer: &PeerId, kind: ContactPayload) -> Result<Option<u64>, StoreError> {
        let heard = self.inner.trees.contact_heard.get(replay::heard_key(peer, kind)).map_err(db)?;
        Ok(heard.and_then(|v| replay::heard_us(&v)))
    }

    /// Remembers that a contact payload of `kind` from `peer` issued at `issued_us`
    /// was taken, so no copy of it (or of one of that kind `peer` issued before) is
    /// taken again, even after the contact is removed or its request rejected. Kept
    /// until the replay window would refuse such a copy anyway (pruned when
    /// [`Store::prune_tombstones`] runs, at start). Not flushed.
    ///
    /// [`ContactPayload::Asked`] (our own latest request) is replaced instead: after
    /// our clock went back, a later request may carry an earlier time.
    pub fn note_contact_payload(&self, peer: &PeerId, kind: ContactPayload, issued_us: u64) -> Result<(), StoreError> {
        let tree = &self.inner.trees.contact_heard;
        if kind == ContactPayload::Asked {
            tree.insert(replay::heard_key(peer, kind), &issued_us.to_be_bytes()).map_err(db)?;
            return Ok(());
        }
        tree.fetch_and_update(replay::heard_key(peer, kind), |old| {
            let old = old.and_then(replay::heard_us).unwrap_or(0);
            Some(old.max(issued_us).to_be_bytes().to_vec())
        })
        .map_err(db)?;
        Ok(())
    }

    /// Number of tombstones kept (messages deleted within the replay window).
    pub fn tombstone_count(&self) -> usize {
        self.inner.trees.tombstones.len()
    }

    /// Marks every unread incoming message of `conv` `Read` and lowers its
    /// `unread` count to 0; returns the messages newly marked, oldest first,
    /// e.g. to send read receipts. Flushed. [`StoreError::NotFound`] if the
    /// conversation does not exist.
    pub fn mark_read(&self, conv: ConversationId) -> Result<Vec<Message>, StoreError> {
        let read = self.stage_read(conv)?;
        self.flush()?;
        Ok(read)
    }

    /// [`Store::mark_read`] without the flush: atomic and visible at once,
    /// durable after the caller's next [`Store::flush`].
    pub fn stage_read(&self, conv: ConversationId) -> Result<Vec<Message>, StoreError> {
        if !self.inner.conversation_exists(conv)? {
            return Err(StoreError::not_found("conversation", conv));
        }
        let mut batch = self.inner.log.batch();
        let unread: Vec<_> = match batch.index().conversation(conv) {
            Some(c) => c.unread.iter().filter_map(|key| c.get(key).map(|e| (*key, e.slot))).collect(),
            None => Vec::new(),
        };
        for (key, _) in &unread {
            batch.set_state(&key.1, MessageState::Read)?;
        }
        let reader = batch.reader();
        batch.commit()?;
        unread
            .into_iter()
            .map(|(_, slot)| {
                let mut msg = reader.read(&slot)?;
                msg.state = MessageState::Read;
                Ok(msg)
            })
            .collect()
    }
}

impl Conversation {
    /// Fills in the counters the message log keeps (the stored record holds
    /// only what its creation, or an older layout, wrote).
    pub(crate) fn with_counters(mut self, log: &MessageLog) -> Conversation {
        let state = log.lock();
        match state.index.conversation(self.id) {
            Some(c) => {
                self.unread = u32::try_from(c.unread.len()).unwrap_or(u32::MAX);
                self.last_activity_ms = self.last_activity_ms.max(c.last_activity_ms);
                self.last_lamport = self.last_lamport.max(c.last_lamport);
            }
            None => self.unread = 0,
        }
        if let Some(floor) = state.lamport_floors.get(&self.id) {
            self.last_lamport = self.last_lamport.max(*floor);
        }
        self
    }

    /// Decodes a stored record and fills in its counters.
    pub(crate) fn read(bytes: &[u8], log: &MessageLog) -> Result<Conversation, StoreError> {
        decode::<Conversation>(CONVERSATIONS, bytes).map(|c| c.with_counters(log))
    }
}

/// Opens sled for [`Store::open_with`] (see [`crate::engine::open_sled`]).
fn open_sled(path: &Path, options: &OpenOptions) -> Result<SledDb, OpenError> {
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::StoreError;

    #[test]
    fn store_and_handles_are_send_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<super::Store>();
        check::<crate::Messages>();
        check::<crate::Contacts>();
    }

    /// After a failed `fdatasync` the kernel may have dropped the pages it was to
    /// write, and the next `fdatasync` succeeds all the same: a store that then
    /// reported success would have the node acknowledge a message it may not hold.
    #[test]
    fn after_a_failed_flush_no_flush_succeeds_until_the_store_is_opened_again() {
        use crate::msglog::tests::{CONV, message};
        use crate::{ConversationKind, Direction, MessageId, MessageState};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let options = crate::OpenOptions::default().with_lock_wait(std::time::Duration::from_secs(10));
        let delivered = |n: u8| message(n, Direction::Incoming, MessageState::Delivered);
        {
            let store = super::Store::open_with(&path, &options).unwrap();
            store.conversations().get_or_create(CONV, ConversationKind::Direct { peer_id: "them".into() }, 0).unwrap();
            store.messages().insert(&delivered(1)).unwrap();
            store.flush().unwrap();
            assert!(!store.a_flush_failed());

            store.messages().insert(&delivered(2)).unwrap();
            crate::msglog::tests::FAIL_SYNC.with(|fail| fail.set(true));
            assert!(matches!(store.flush(), Err(StoreError::Io(_))), "the injected failure is reported");
            assert!(store.a_flush_failed());
            // The disk would take this flush; the store still refuses to call it durable.
            assert!(matches!(store.flush(), Err(StoreError::FlushFailedBefore)));
            store.messages().insert(&delivered(3)).unwrap();
            assert!(matches!(store.flush(), Err(StoreError::FlushFailedBefore)));
        }
        // Opened again, the store reads what its files hold and flushes as before.
        let store = super::Store::open_with(&path, &options).unwrap();
        assert!(!store.a_flush_failed());
        assert!(store.messages().get(MessageId([1; 16])).unwrap().is_some(), "flushed before the failure");
        store.messages().insert(&delivered(4)).unwrap();
        store.flush().unwrap();
    }
}
