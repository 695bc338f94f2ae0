//! The message log: messages, their delivery states, the outbox and small
//! key/value records (the ratchet's state) in one append-only file of our own,
//! with every index kept in memory.
//!
//! Why not sled: on this hot path sled spends ~25 µs per message per
//! transaction in CPU alone (measured in `storage-bench`; a write-ahead log in
//! front of unflushed sled saved nothing), and a message passed through three
//! of them. Here a batch of messages is one `pwrite` of one frame (see
//! [`frame`]) and one `fdatasync` covers everything written before it. The
//! index (see [`index`]) is rebuilt at open from fixed-size record headers,
//! without decoding any message; message text is read back from the file only
//! when asked for. sled keeps the small tables (conversations, contacts,
//! groups, tombstones, …).
//!
//! The file lives in the database directory as [`FILE_NAME`]. A batch that
//! cannot be written leaves the log refusing further writes (its in-memory
//! index would no longer match the file); reads keep working.
//!
//! Space: records are never rewritten in place; states, outbox and key/value
//! changes are new records. When more than half of the file (and at least
//! [`COMPACT_MIN`]) is garbage, the live records are copied to a new file that
//! replaces the old one atomically ([`MessageLog::compact`]): at open, and while
//! the log is in use, with writers held up only while the index's entries are
//! copied and while the records written during the copy are appended. A slot is
//! read through the [`LogReader`] taken with it, so a read never lands in the
//! other file.

pub(crate) mod frame;
pub(crate) mod index;
pub(crate) mod record;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::codec::{decode, encode};
use crate::error::StoreError;
use crate::follow::{CHECK_LEN, LogCursor, LogEvent, MessagePlace};
use crate::keys::RefKey;
use crate::messages::{Link, Message, MessageState};
use crate::outbox::OutboxEntry;
use crate::types::{ConversationId, MessageId};
use frame::{Frame, MAGIC, RECORD_HEADER};
use index::{ConvIndex, Index, KvSlot, KvValue, Slot};
use record::{MESSAGE_HEADER_LEN, MessageHeader};

/// The log's file name inside the database directory.
pub(crate) const FILE_NAME: &str = "messages.log";

/// Name used in [`StoreError::Corrupt`] for the log's records.
pub(crate) const LOG: &str = FILE_NAME;

/// Garbage below this many bytes is never worth a compaction.
pub(crate) const COMPACT_MIN: u64 = 8 << 20;

/// Zeros written past a frame whenever it passed those written before: the frames
/// after it land inside the file's length, so the `fdatasync` after them has no
/// file size to commit and skips the filesystem's journal (on ext4 here,
/// 0.11 against 0.16 ms alone, 0.18 against 0.26–0.32 ms with a second process
/// syncing). Small, so the zeros' own write-back stays cheap.
pub const PREALLOCATE: u64 = 256 << 10;

/// Payload bytes per frame when copying records (compaction, migration).
const COPY_FRAME_BYTES: usize = 4 << 20;

/// A batch closes its frame and starts another, before its next message or
/// state, once the frame holds this much: a batch has no size limit of its own
/// (a group history sync can be large), a frame must stay under
/// [`frame::MAX_PAYLOAD`]. Each frame is whole or absent after a crash; a
/// message and its outbox entry are never split.
const FRAME_SOFT_LIMIT: usize = 16 << 20;

/// The largest record a batch takes: with a frame closed at
/// [`FRAME_SOFT_LIMIT`], the frame it goes into stays under the maximum.
const MAX_RECORD: usize = frame::MAX_PAYLOAD - FRAME_SOFT_LIMIT - 1024;

/// The open log.
#[derive(Debug)]
pub(crate) struct MessageLog {
    path: PathBuf,
    state: Mutex<LogState>,
    /// The file writes go to, as [`LogState::file`], for syncs: they need not wait
    /// for the lock that writers hold. Replaced only under that lock.
    current: RwLock<Arc<File>>,
    /// Held through a whole compaction: one at a time.
    compacting: Mutex<()>,
    /// Writes made so far (as [`LogState::writes`]), for syncs.
    writes: Arc<AtomicU64>,
    /// `writes` as read by the last sync that succeeded; `u64::MAX` before one.
    synced: AtomicU64,
}

/// What the log's lock guards.
#[derive(Debug)]
pub(crate) struct LogState {
    pub(crate) index: Index,
    /// The file the index's slots point into; a compaction replaces it.
    file: Arc<File>,
    /// Where the next frame goes.
    end: u64,
    /// Up to where zeros are written ahead (see [`PREALLOCATE`]), which the scan at
    /// open reads as the end; `u64::MAX` once writing them failed.
    allocated: u64,
    /// Why writes are refused, after a write failed.
    broken: Option<String>,
    /// How many times a compaction replaced the file since it was opened.
    generation: u64,
    /// Writes to the file since the log was opened (frames, zeros written ahead,
    /// a compaction's replacement), counted once each is done, failed ones too:
    /// a sync that finds the count where the last successful one read it has
    /// nothing to make durable and skips its `fdatasync`, which would still have
    /// the drive empty its cache.
    writes: Arc<AtomicU64>,
    /// Lamport values a conversation's next message must pass, set in memory only
    /// (see [`crate::Conversations::raise_lamport`]); a compaction keeps them.
    pub(crate) lamport_floors: HashMap<ConversationId, u64>,
}

impl LogState {
    /// Counts a write to the file, once it is done (see [`Self::writes`]).
    fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// Writes [`PREALLOCATE`] zeros past `written` (where the frame just written
    /// ends), after the frame, so they never take space the frame needed. A failure
    /// (a full disk) is not the frame's: the log stops writing ahead until the next
    /// start or compaction, and frames grow the file themselves.
    fn write_ahead(&mut self, written: u64) {
        static ZEROS: [u8; PREALLOCATE as usize] = [0; PREALLOCATE as usize];
        let to = written + PREALLOCATE;
        #[cfg(test)]
        let refused = tests::FAIL_WRITE_AHEAD.with(|fail| fail.replace(false));
        #[cfg(not(test))]
        let refused = false;
        let result = match refused {
            true => Err(io::Error::from(io::ErrorKind::StorageFull)),
            false => self.file.write_all_at(&ZEROS, written),
        };
        self.count_write();
        match result {
            Ok(()) => self.allocated = to,
            Err(e) => {
                tracing::warn!(error = %e, "writing zeros ahead of the message log failed; it stops doing so until it is next opened");
                self.allocated = u64::MAX;
            }
        }
    }

    /// A reader of the file that the index's slots point into now.
    pub(crate) fn reader(&self) -> LogReader {
        LogReader { file: Arc::clone(&self.file) }
    }

    fn writable(&self) -> Result<(), StoreError> {
        match &self.broken {
            Some(why) => Err(StoreError::Io(io::Error::other(format!("the message log refuses writes: {why}")))),
            None => Ok(()),
        }
    }
}

/// The log's file as it was when the reader was taken: slots taken from the
/// index under the same lock read right through it, even if a compaction has
/// replaced the file since (the old one stays open until its last reader goes).
#[derive(Debug, Clone)]
pub(crate) struct LogReader {
    file: Arc<File>,
}

impl LogReader {
    /// Reads the message in `slot`, with the state the slot holds.
    pub(crate) fn read(&self, slot: &Slot) -> Result<Message, StoreError> {
        let mut bytes = vec![0; slot.len as usize];
        self.file.read_exact_at(&mut bytes, slot.at).map_err(io_error)?;
        let mut msg: Message = decode(LOG, &bytes)?;
        msg.state = slot.state;
        Ok(msg)
    }

    /// Reads the value in `slot`.
    pub(crate) fn read_kv(&self, slot: &KvSlot) -> Result<Vec<u8>, StoreError> {
        let at = match slot.value() {
            KvValue::Held(bytes, len) => return Ok(bytes[..len].to_vec()),
            KvValue::At(at) => at,
        };
        let mut value = vec![0; slot.len as usize];
        self.file.read_exact_at(&mut value, at).map_err(io_error)?;
        Ok(value)
    }
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCompaction {
    /// Bytes of frames before (the file may hold up to 256 KiB of zeros more, written
    /// ahead).
    pub before_bytes: u64,
    /// Bytes of frames after.
    pub after_bytes: u64,
    /// How long it held the log's lock, during which writers waited: to copy the
    /// index's entries at the start, and to append what was written meanwhile and
    /// put the new file in place at the end.
    pub writers_waited: std::time::Duration,
}

impl MessageLog {
    /// Opens (or creates) the log in database directory `dir` and rebuilds its
    /// index. A damaged tail — frames a crash cut short, never acknowledged — is
    /// cut off. Messages of conversations not in `conversations` (their creation
    /// was lost in a crash before any of them was acknowledged, or their removal
    /// reached sled but not the log) are forgotten.
    pub(crate) fn open(dir: &Path, conversations: &HashSet<ConversationId>, create: bool) -> Result<MessageLog, StoreError> {
        let path = dir.join(FILE_NAME);
        // A compaction a crash cut short leaves its new file unfinished, unused.
        crate::durable::remove_if_present(&compacting_path(&path))?;
        if !path.exists() {
            if !create {
                return Err(StoreError::corrupt(LOG, "the message log is missing"));
            }
            write_log_file(&path, |_| Ok(()))?;
            crate::durable::sync_dir(&path)?;
        }
        let log = Self::open_file(&path)?;
        let orphans: Vec<ConversationId> = {
            let state = log.lock();
            state.index.conversations().filter(|c| !conversations.contains(c)).collect()
        };
        if !orphans.is_empty() {
            tracing::warn!(conversations = orphans.len(), "forgetting messages of conversations that no longer exist");
            let mut batch = log.batch();
            for conv in orphans {
                batch.forget(conv)?;
            }
            batch.commit()?;
            log.sync()?;
        }
        if let Err(e) = log.compact_if_due() {
            if log.lock().broken.is_some() {
                return Err(e);
            }
            tracing::warn!(error = %e, "the message log could not be compacted; it is used as it is");
        }
        Ok(log)
    }

    /// Opens the file and replays it into a fresh index.
    fn open_file(path: &Path) -> Result<MessageLog, StoreError> {
        let Loaded { file, index, end, allocated } = load(path)?;
        let file = Arc::new(file);
        let writes = Arc::new(AtomicU64::new(0));
        Ok(MessageLog {
            path: path.to_owned(),
            current: RwLock::new(Arc::clone(&file)),
            state: Mutex::new(LogState {
                index,
                file,
                end,
                allocated,
                broken: None,
                generation: 0,
                writes: Arc::clone(&writes),
                lamport_floors: HashMap::new(),
            }),
            compacting: Mutex::new(()),
            writes,
            synced: AtomicU64::new(u64::MAX),
        })
    }

    /// The index, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `look` finds in the index, with the reader its slots are read through.
    pub(crate) fn lookup<T>(&self, look: impl FnOnce(&Index) -> T) -> (LogReader, T) {
        let state = self.lock();
        (state.reader(), look(&state.index))
    }

    /// How many times a compaction replaced the file since it was opened.
    /// Whether a write failed since the log was opened, so that it refuses writes.
    pub(crate) fn refuses_writes(&self) -> bool {
        self.lock().broken.is_some()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Starts a batch of records written as one frame.
    pub(crate) fn batch(&self) -> Batch<'_> {
        Batch { state: self.lock(), closed: Vec::new(), frame: Frame::new(), dirty: false }
    }

    /// Hands `each` every message added and every conversation forgotten after
    /// `from` (from the start when `None`), in the order they were written, up
    /// to the end of what is written now; returns the cursor to go on from.
    /// When `from` does not fit this file (see [`LogCursor`]; a compaction
    /// makes every earlier cursor unfit), the first event is
    /// [`LogEvent::Reset`] and the rest start from the beginning. Reads without
    /// holding the log's lock, so writers go on meanwhile.
    pub(crate) fn follow(
        &self,
        from: Option<&LogCursor>,
        mut each: impl FnMut(LogEvent) -> Result<(), StoreError>,
    ) -> Result<LogCursor, StoreError> {
        let (file, end) = {
            let state = self.lock();
            (Arc::clone(&state.file), state.end)
        };
        let start = MAGIC.len() as u64;
        let from = match from {
            Some(cursor) if cursor.offset >= start && cursor.offset <= end && check_at(&file, cursor.offset)? == cursor.check => {
                cursor.offset
            }
            Some(_) => {
                each(LogEvent::Reset)?;
                start
            }
            None => start,
        };
        let reader = BufReader::with_capacity(1 << 20, Positioned { file: &file, at: from, end });
        let scanned = frame::scan_from(reader, from, io_error, |r| match r.kind {
            record::MESSAGE | record::CHANGE => {
                let h = MessageHeader::decode(r.body).ok_or_else(|| StoreError::corrupt(LOG, "a message record that does not read"))?;
                let mut message: Message = decode(LOG, &r.body[MESSAGE_HEADER_LEN..])?;
                message.state = h.state;
                each(LogEvent::Added { message, place: MessagePlace(r.at + MESSAGE_HEADER_LEN as u64) })
            }
            record::FORGET => {
                let id = record::decode_id(r.body).ok_or_else(|| StoreError::corrupt(LOG, "a forget record that does not read"))?;
                each(LogEvent::Forgotten(ConversationId(id)))
            }
            // States, the outbox and key/value records are no messages to follow.
            _ => Ok(()),
        })?;
        Ok(LogCursor { offset: scanned.valid_end, check: check_at(&file, scanned.valid_end)? })
    }

    /// The message at `place` (as [`follow`](Self::follow) gave it), with its
    /// current state, if it is still stored there. Any other number — past the
    /// end, inside a record, a message since forgotten — is `None`.
    pub(crate) fn message_at(&self, place: MessagePlace) -> Result<Option<Message>, StoreError> {
        let Some(header_at) = place.0.checked_sub(MESSAGE_HEADER_LEN as u64) else { return Ok(None) };
        let (reader, slot) = {
            let state = self.lock();
            if place.0 >= state.end {
                return Ok(None);
            }
            let mut header = [0; MESSAGE_HEADER_LEN];
            if state.file.read_exact_at(&mut header, header_at).is_err() {
                return Ok(None);
            }
            let Some(h) = MessageHeader::decode(&header) else { return Ok(None) };
            match state.index.find(&h.reference) {
                Some(found) if found.slot.at == place.0 => (state.reader(), found.slot),
                _ => return Ok(None),
            }
        };
        reader.read(&slot).map(Some)
    }

    /// The value of the key/value record under `key`: one positioned read,
    /// without holding the lock while the disk works.
    pub(crate) fn get_kv(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (reader, slot) = self.lookup(|index| index.kv(key).copied());
        slot.map(|slot| reader.read_kv(&slot)).transpose()
    }

    /// Every key/value record whose key starts with `prefix`, in key order.
    /// Values are read after the lock is let go: records are never rewritten
    /// in place, so a value replaced meanwhile reads as it was.
    pub(crate) fn scan_kv(&self, prefix: &[u8]) -> Result<Vec<crate::ratchet::Record>, StoreError> {
        self.scan_kv_where(prefix, |_, _| true)
    }

    /// [`scan_kv`](Self::scan_kv) of the records `keep` takes, judged by key and
    /// value length from the index: the others' values are not read at all.
    pub(crate) fn scan_kv_where(
        &self,
        prefix: &[u8],
        keep: impl Fn(&[u8], usize) -> bool,
    ) -> Result<Vec<crate::ratchet::Record>, StoreError> {
        let (reader, slots) = self.lookup(|index| {
            index
                .kv_prefix(prefix, &keep)
                .into_iter()
                .map(|(k, s)| (k.to_vec(), *s))
                .collect::<Vec<(Vec<u8>, KvSlot)>>()
        });
        slots.into_iter().map(|(key, slot)| Ok((key, reader.read_kv(&slot)?))).collect()
    }

    /// The keys of the key/value records under `prefix` whose value `keep`
    /// takes, in no order. A value held in the index (see [`KvSlot`]) is judged
    /// under the log's lock with no disk access; the others are read after it.
    pub(crate) fn kv_keys_where(&self, prefix: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<Vec<Vec<u8>>, StoreError> {
        let (reader, (mut kept, in_file)) = self.lookup(|index| {
            let (mut kept, mut in_file) = (Vec::new(), Vec::new());
            for (key, slot) in index.kv_records().filter(|(key, _)| key.starts_with(prefix)) {
                match slot.value() {
                    KvValue::Held(bytes, len) if keep(&bytes[..len]) => kept.push(key.to_vec()),
                    KvValue::Held(..) => {}
                    KvValue::At(_) => in_file.push((key.to_vec(), *slot)),
                }
            }
            (kept, in_file)
        });
        for (key, slot) in in_file {
            if keep(&reader.read_kv(&slot)?) {
                kept.push(key);
            }
        }
        Ok(kept)
    }

    /// Applies key/value `changes` in order (a later change of a key wins) as one
    /// batch: every key and value is checked before anything is written, so a
    /// refused change leaves the log as it was. Not synced.
    pub(crate) fn write_kv(&self, changes: &[crate::ratchet::Change]) -> Result<(), StoreError> {
        for (key, value) in changes {
            check_kv(key, value.as_ref().map_or(0, Vec::len))?;
        }
        let mut batch = self.batch();
        for (key, value) in changes {
            match value {
                Some(value) => batch.put_kv(key, value)?,
                None => {
                    batch.drop_kv(key)?;
                }
            }
        }
        batch.commit()
    }

    /// Makes everything written so far durable (one `fdatasync`, none when
    /// nothing was written since the last successful sync). Does not hold the lock
    /// while the disk works, so writers go on meanwhile. What was written to a
    /// file that a compaction has replaced since was synced in the new file before
    /// the replacement.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        // Read before the file is taken: a write counted after this read (to
        // this file or, after a replacement, to the next) moves the count again.
        let writes = self.writes.load(Ordering::SeqCst);
        if self.synced.load(Ordering::SeqCst) == writes {
            return Ok(());
        }
        let file = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        let synced = file.sync_data();
        #[cfg(test)]
        tests::SYNCS.with(|n| n.set(n.get() + 1));
        #[cfg(test)]
        let synced = match tests::FAIL_SYNC.with(|fail| fail.replace(false)) {
            true => Err(io::Error::other("an injected fdatasync failure")),
            false => synced,
        };
        synced.map_err(io_error)?;
        // Two syncs at once may store their counts in either order: an older one
        // stored last costs one more sync, never one less.
        self.synced.store(writes, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the garbage is worth a compaction: more than [`COMPACT_MIN`]
    /// and more than the live records.
    pub(crate) fn compaction_due(&self) -> bool {
        let state = self.lock();
        let live = state.index.live_bytes();
        let garbage = state.end.saturating_sub(MAGIC.len() as u64 + live);
        garbage > COMPACT_MIN && garbage > live && state.broken.is_none()
    }

    /// [`compact`](Self::compact)s if [`compaction_due`](Self::compaction_due).
    pub(crate) fn compact_if_due(&self) -> Result<Option<LogCompaction>, StoreError> {
        if !self.compaction_due() {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Copies the live records to a new file that then replaces this one, while
    /// the log stays in use: the live records as they stand at the start are
    /// copied without the lock; then, under it, the frames written meanwhile are
    /// appended as they are, the new file is synced and renamed over the old
    /// one, and the directory is synced, before any write goes to the new file.
    /// A crash at any point leaves the old file or the whole new one, each
    /// holding everything written before it. On an error the old file goes on.
    /// Refused, before anything is written, unless the disk has room for the live
    /// records and [`COMPACT_HEADROOM`] besides: a compaction must not be what fills
    /// it, since a write the disk refuses leaves the log refusing writes.
    pub(crate) fn compact(&self) -> Result<LogCompaction, StoreError> {
        self.compact_then(|_| {})
    }

    /// [`compact`](Self::compact), calling `meanwhile` at each [`Step`] (tests
    /// write there).
    fn compact_then(&self, meanwhile: impl FnMut(Step)) -> Result<LogCompaction, StoreError> {
        let _one = self.compacting.lock().unwrap_or_else(PoisonError::into_inner);
        let tmp = compacting_path(&self.path);
        crate::durable::remove_if_present(&tmp)?;
        let needed = self.lock().index.live_bytes() + COMPACT_HEADROOM;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let available = fs4::available_space(dir).map_err(io_error)?;
        if available < needed {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("compacting the message log needs {needed} bytes free, {available} are"),
            )));
        }
        let (live, reader, copied_to, snapshot) = {
            let state = self.lock();
            let started = std::time::Instant::now();
            state.writable()?;
            (Live::of(&state.index), state.reader(), state.end, started.elapsed())
        };
        let replaced = self.replace_with(&tmp, live, &reader, copied_to, meanwhile).map(|mut done| {
            done.writers_waited += snapshot;
            done
        });
        if replaced.is_err()
            && let Err(e) = crate::durable::remove_if_present(&tmp)
        {
            tracing::warn!(error = %e, "the message log's unfinished compaction file stays until the next open");
        }
        replaced
    }

    fn replace_with(
        &self,
        tmp: &Path,
        live: Live,
        old: &LogReader,
        copied_to: u64,
        mut meanwhile: impl FnMut(Step),
    ) -> Result<LogCompaction, StoreError> {
        write_log_file(tmp, |out| live.write(old, out))?;
        drop(live);
        // The new file's index comes from reading it back: every frame's checksum is
        // checked, so a bad copy fails here instead of replacing the log.
        let Loaded { file: new, mut index, end: mut new_end, .. } = load(tmp)?;
        meanwhile(Step::Copied);
        // Catch up with what was written meanwhile without the lock, until little
        // is left: writers then wait only for that little.
        let mut copied = copied_to;
        for _ in 0..CATCH_UP_ROUNDS {
            let end = self.lock().end;
            if end - copied <= CATCH_UP_ENOUGH {
                break;
            }
            new_end = append_copy(old, &new, &mut index, copied..end, new_end)?;
            copied = end;
        }
        // Synced here so that the sync under the lock has only the last frames to write.
        new.sync_data().map_err(io_error)?;
        index.shrink();
        meanwhile(Step::CaughtUp);
        let mut state = self.lock();
        let started = std::time::Instant::now();
        state.writable()?;
        let before_bytes = state.end;
        new_end = append_copy(&state.reader(), &new, &mut index, copied..state.end, new_end)?;
        new.sync_data().map_err(io_error)?;
        fs::rename(tmp, &self.path).map_err(io_error)?;
        if let Err(e) = crate::durable::sync_dir(&self.path) {
            // A crash may leave either file under the name. Both hold everything
            // written so far; the old one is what the next syncs make durable (so
            // nothing is acknowledged that only the new one holds), and no write is
            // taken any more, since it could not go to both.
            tracing::error!(error = %e, "the message log's directory did not sync after a compaction; the log refuses writes");
            state.broken = Some(format!("its directory did not sync after a compaction: {e}"));
            return Err(e);
        }
        state.index = index;
        state.file = Arc::new(new);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&state.file);
        state.end = new_end;
        state.allocated = new_end;
        state.generation += 1;
        state.count_write();
        let writers_waited = started.elapsed();
        tracing::info!(before_bytes, after_bytes = state.end, ?writers_waited, "compacted the message log");
        Ok(LogCompaction { before_bytes, after_bytes: state.end, writers_waited })
    }
}

/// Where a compaction is, for tests that write in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The live records are copied; what was written since is not.
    Copied,
    /// What was written since is copied too, but for the last few frames; the lock
    /// is taken next.
    CaughtUp,
}

/// Rounds of copying what was written during a compaction before it takes the lock.
const CATCH_UP_ROUNDS: usize = 8;

/// Free space a compaction leaves beside its new file, at least.
const COMPACT_HEADROOM: u64 = 64 << 20;

/// Bytes written during a compaction few enough to copy under the lock.
const CATCH_UP_ENOUGH: u64 = 256 << 10;

/// Appends the frames at `range` of `from` byte for byte to `to` at `at`, replays
/// them into `index` (as the new file's records) and returns where they end in `to`.
/// Not synced.
fn append_copy(
    from: &LogReader,
    to: &File,
    index: &mut Index,
    range: std::ops::Range<u64>,
    at: u64,
) -> Result<u64, StoreError> {
    let mut chunk = vec![0; COPY_FRAME_BYTES];
    let (mut read, mut written) = (range.start, at);
    while read < range.end {
        let n = usize::try_from(range.end - read).map_or(chunk.len(), |left| left.min(chunk.len()));
        from.file.read_exact_at(&mut chunk[..n], read).map_err(io_error)?;
        to.write_all_at(&chunk[..n], written).map_err(io_error)?;
        read += n as u64;
        written += n as u64;
    }
    let copied = BufReader::with_capacity(1 << 20, Positioned { file: to, at, end: written });
    let scanned = frame::scan_from(copied, at, io_error, |r| replay(index, &r))?;
    if scanned.damaged_tail || scanned.valid_end != written {
        return Err(StoreError::corrupt(LOG, "frames written during a compaction do not read back"));
    }
    Ok(written)
}

/// Where a compaction writes its new file.
fn compacting_path(path: &Path) -> PathBuf {
    path.with_extension("log.compacting")
}

/// A log file opened and replayed.
struct Loaded {
    file: File,
    index: Index,
    /// Where the next frame goes.
    end: u64,
    /// The file's length: zeros written ahead from `end` up to it.
    allocated: u64,
}

/// Opens the log file at `path` and replays it into a fresh index; cuts off a
/// damaged tail, and keeps a tail of zeros written ahead ([`PREALLOCATE`]).
fn load(path: &Path) -> Result<Loaded, StoreError> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io_error)?;
    let mut magic = [0u8; MAGIC.len()];
    file.read_exact(&mut magic).map_err(|_| StoreError::corrupt(LOG, "not a message log"))?;
    if &magic != MAGIC {
        return Err(StoreError::corrupt(LOG, "not a message log"));
    }
    let mut index = Index::default();
    let scanned = frame::scan(BufReader::with_capacity(1 << 20, &file), io_error, |r| replay(&mut index, &r))?;
    index.shrink();
    let len = file.seek(SeekFrom::End(0)).map_err(io_error)?;
    // Nothing past the last whole frame reached the disk but zeros: no frame was
    // cut short there, and the zeros stay written ahead.
    if len > scanned.valid_end && zeros_from(&file, scanned.valid_end, len)? {
        return Ok(Loaded { file, index, end: scanned.valid_end, allocated: len });
    }
    if scanned.damaged_tail || len != scanned.valid_end {
        tracing::warn!(
            dropped_bytes = len - scanned.valid_end,
            "the message log ends in a frame a crash cut short; it was never acknowledged and is dropped"
        );
        file.set_len(scanned.valid_end).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
    }
    Ok(Loaded { file, index, end: scanned.valid_end, allocated: scanned.valid_end })
}

/// Whether `file` holds only zeros from `start` to `end`.
fn zeros_from(file: &File, start: u64, end: u64) -> Result<bool, StoreError> {
    let mut chunk = vec![0u8; 64 << 10];
    let mut at = start;
    while at < end {
        let n = usize::try_from(end - at).map_or(chunk.len(), |left| left.min(chunk.len()));
        file.read_exact_at(&mut chunk[..n], at).map_err(io_error)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// The [`CHECK_LEN`] bytes of `file` before `offset`, zero-padded at the start.
fn check_at(file: &File, offset: u64) -> Result<[u8; CHECK_LEN], StoreError> {
    let mut check = [0; CHECK_LEN];
    let len = offset.min(CHECK_LEN as u64) as usize;
    file.read_exact_at(&mut check[..len], offset - len as u64).map_err(io_error)?;
    Ok(check)
}

/// The live records at one moment, as slots of the file they lie in: what a
/// compaction copies. Takes only the index's own entries, no message text.
struct Live {
    conversations: Vec<(ConversationId, Vec<index::Entry>, Vec<index::Entry>)>,
    outbox: Vec<OutboxEntry>,
    kv: Vec<(Vec<u8>, KvSlot)>,
}

impl Live {
    fn of(index: &Index) -> Live {
        let conversations = index
            .conversations()
            .filter_map(|conv| {
                let c = index.conversation(conv)?;
                Some((conv, c.entries().to_vec(), c.changes().iter().map(|c| c.entry).collect()))
            })
            .collect();
        let outbox = index.outbox().values().cloned().collect();
        let kv = index.kv_records().map(|(k, s)| (k.to_vec(), *s)).collect();
        Live { conversations, outbox, kv }
    }

    /// Writes the records (their message text read from `file`) after the magic.
    fn write(&self, file: &LogReader, out: &mut io::BufWriter<File>) -> Result<(), StoreError> {
        let mut frame = Frame::new();
        for (conv, entries, changes) in &self.conversations {
            let messages = entries.iter().map(|e| (record::MESSAGE, e));
            for (kind, entry) in messages.chain(changes.iter().map(|e| (record::CHANGE, e))) {
                // The record as written, header and CBOR, in one read; its header
                // takes the state the index holds now.
                let slot = &entry.slot;
                let mut record = vec![0; MESSAGE_HEADER_LEN + slot.len as usize];
                file.file.read_exact_at(&mut record, slot.at - MESSAGE_HEADER_LEN as u64).map_err(io_error)?;
                let (header, cbor) = record.split_at(MESSAGE_HEADER_LEN);
                let mut header = MessageHeader::decode(header)
                    .filter(|h| h.conversation == *conv && (h.lamport, h.reference) == entry.key)
                    .ok_or_else(|| StoreError::corrupt(LOG, "a message record that does not read"))?;
                header.state = slot.state;
                push_message(&mut frame, kind, &header, cbor)?;
                frame = flush_full(out, frame)?;
            }
        }
        for entry in &self.outbox {
            frame.record(record::OUTBOX_PUT, &encode(entry)?).map_err(io_error)?;
            frame = flush_full(out, frame)?;
        }
        for (key, slot) in &self.kv {
            push_kv(&mut frame, key, &file.read_kv(slot)?)?;
            frame = flush_full(out, frame)?;
        }
        finish_frame(out, frame)
    }
}

/// Reads the file from `at` up to `end` by positioned reads, leaving the
/// file's own position (and its writers) alone.
struct Positioned<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for Positioned<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Writes `frame` out once it holds enough, returning the frame to go on with.
fn flush_full(out: &mut io::BufWriter<File>, mut frame: Frame) -> Result<Frame, StoreError> {
    use std::io::Write;
    if frame.body().len() < COPY_FRAME_BYTES {
        return Ok(frame);
    }
    out.write_all(&frame.finish().map_err(io_error)?).map_err(io_error)?;
    Ok(Frame::new())
}

/// Writes out what is left in `frame`.
fn finish_frame(out: &mut io::BufWriter<File>, frame: Frame) -> Result<(), StoreError> {
    use std::io::Write;
    if !frame.is_empty() {
        out.write_all(&frame.finish().map_err(io_error)?).map_err(io_error)?;
    }
    Ok(())
}

/// Writes a new log at `path` holding `messages` (with the states they carry)
/// and `outbox`, for a migration from the sled layout, synced; the caller
/// renames it into place and syncs the directory. Replaces any file there.
pub(crate) fn write_log(
    path: &Path,
    messages: impl Iterator<Item = Result<Message, StoreError>>,
    outbox: impl Iterator<Item = Result<OutboxEntry, StoreError>>,
) -> Result<(), StoreError> {
    write_log_file(path, |out| {
        let mut frame = Frame::new();
        for msg in messages {
            let msg = msg?;
            push_message(&mut frame, record::MESSAGE, &MessageHeader::of(&msg), &encode(&msg)?)?;
            frame = flush_full(out, frame)?;
        }
        for entry in outbox {
            frame.record(record::OUTBOX_PUT, &encode(&entry?)?).map_err(io_error)?;
            frame = flush_full(out, frame)?;
        }
        finish_frame(out, frame)
    })
}

/// Adds a message record (header, then CBOR) to `frame`; returns the CBOR's
/// offset from the frame's start.
fn push_message(frame: &mut Frame, kind: u8, header: &MessageHeader, cbor: &[u8]) -> Result<usize, StoreError> {
    let at = frame.begin_record(kind);
    header.encode_into(frame.body());
    frame.body().extend_from_slice(cbor);
    frame.end_record(at).map_err(io_error)?;
    Ok(at + MESSAGE_HEADER_LEN)
}

/// Adds a [`record::KV_PUT`] record to `frame`; returns the value's offset
/// from the frame's start.
fn push_kv(frame: &mut Frame, key: &[u8], value: &[u8]) -> Result<usize, StoreError> {
    let at = frame.begin_record(record::KV_PUT);
    record::kv_key_into(frame.body(), key);
    let value_at = frame.body().len();
    frame.body().extend_from_slice(value);
    frame.end_record(at).map_err(io_error)?;
    Ok(value_at)
}

/// Refuses a key/value record the log cannot hold: a key longer than a u16
/// counts, or a record past [`MAX_RECORD`].
pub(crate) fn check_kv(key: &[u8], value_len: usize) -> Result<(), StoreError> {
    if key.len() > record::MAX_KV_KEY {
        return Err(StoreError::Encode { detail: format!("a key of {} bytes is too long to store", key.len()) });
    }
    if 2 + key.len() + value_len > MAX_RECORD {
        return Err(StoreError::Encode { detail: format!("a value of {value_len} bytes is too large to store") });
    }
    Ok(())
}

/// Creates `path` holding [`MAGIC`] and what `fill` writes, synced (its
/// directory is the caller's to sync, after renaming it into place).
fn write_log_file(
    path: &Path,
    fill: impl FnOnce(&mut io::BufWriter<File>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use std::io::Write;
    // Owner-only from the first byte: the log holds message history.
    crate::durable::write_synced(path, |out| {
        out.write_all(MAGIC).map_err(io_error)?;
        fill(out)
    })
}

/// Applies one record read back from the file to the index.
fn replay(index: &mut Index, r: &frame::RecordRef<'_>) -> Result<(), StoreError> {
    let bad = |what: &str| StoreError::corrupt(LOG, format!("a {what} record that does not read"));
    match r.kind {
        record::MESSAGE | record::CHANGE => {
            let h = MessageHeader::decode(r.body).ok_or_else(|| bad("message"))?;
            let len = u32::try_from(r.body.len() - MESSAGE_HEADER_LEN).map_err(|_| bad("message"))?;
            let slot = Slot { at: r.at + MESSAGE_HEADER_LEN as u64, len, state: h.state, direction: h.direction };
            let target = match r.kind {
                record::CHANGE => {
                    let msg: Message = decode(LOG, &r.body[MESSAGE_HEADER_LEN..])?;
                    Some(msg.link.as_ref().and_then(Link::changed).ok_or_else(|| bad("change"))?)
                }
                _ => None,
            };
            let record_len = (RECORD_HEADER + r.body.len()) as u64;
            index.add(h.conversation, (h.lamport, h.reference), slot, h.activity_ms, record_len, target);
        }
        record::STATE => {
            let (reference, state) = record::decode_state(r.body).ok_or_else(|| bad("state"))?;
            index.set_state(&reference, state);
        }
        record::OUTBOX_PUT => {
            let entry: OutboxEntry = decode(LOG, r.body)?;
            index.put_outbox(entry, (RECORD_HEADER + r.body.len()) as u64);
        }
        record::OUTBOX_DROP => {
            index.drop_outbox(record::decode_drop(r.body).ok_or_else(|| bad("outbox"))?);
        }
        record::FORGET => {
            index.forget(ConversationId(record::decode_id(r.body).ok_or_else(|| bad("forget"))?));
        }
        record::KV_PUT => {
            let (key, value_at) = record::decode_kv_put(r.body).ok_or_else(|| bad("key/value"))?;
            let record_len = (RECORD_HEADER + r.body.len()) as u64;
            let slot = KvSlot::new(r.at + value_at as u64, &r.body[value_at..], record_len).ok_or_else(|| bad("key/value"))?;
            index.put_kv(key, slot);
        }
        record::KV_DROP => {
            index.drop_kv(record::decode_kv_drop(r.body).ok_or_else(|| bad("key/value drop"))?);
        }
        other => return Err(StoreError::corrupt(LOG, format!("a record of unknown kind {other}"))),
    }
    Ok(())
}

/// Records written together, applied to the index as they are added: one
/// frame, or several for a batch past [`FRAME_SOFT_LIMIT`]. [`Batch::commit`]
/// writes them with one `pwrite`; a batch dropped with records unwritten leaves
/// the log refusing writes, because its index moved ahead of the file (callers
/// check everything that can fail before adding records).
pub(crate) struct Batch<'a> {
    state: MutexGuard<'a, LogState>,
    /// Frames already closed, to be written before `frame`.
    closed: Vec<u8>,
    frame: Frame,
    dirty: bool,
}

impl Batch<'_> {
    /// The index as this batch has left it so far.
    pub(crate) fn index(&self) -> &Index {
        &self.state.index
    }

    /// A reader of the file the index's slots point into.
    pub(crate) fn reader(&self) -> LogReader {
        self.state.reader()
    }

    /// Where the current frame will start in the file.
    fn base(&self) -> u64 {
        self.state.end + self.closed.len() as u64
    }

    /// Closes the current frame if it is past [`FRAME_SOFT_LIMIT`].
    fn close_if_full(&mut self) -> Result<(), StoreError> {
        if self.frame.len() >= FRAME_SOFT_LIMIT {
            let full = std::mem::replace(&mut self.frame, Frame::new());
            self.closed.extend_from_slice(&full.finish().map_err(io_error)?);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), StoreError> {
        self.state.writable()
    }

    /// Adds a message unless one with its reference is held; returns whether it
    /// was added.
    pub(crate) fn add_message(&mut self, msg: &Message) -> Result<bool, StoreError> {
        self.check()?;
        let header = MessageHeader::of(msg);
        if self.state.index.contains(&header.reference) {
            return Ok(false);
        }
        let cbor = encode(msg)?;
        if cbor.len() + MESSAGE_HEADER_LEN > MAX_RECORD {
            return Err(StoreError::Encode { detail: format!("a message of {} bytes is too large to store", cbor.len()) });
        }
        let len = u32::try_from(cbor.len()).map_err(|_| StoreError::Encode { detail: "message too large".into() })?;
        self.close_if_full()?;
        let target = msg.link.as_ref().and_then(Link::changed);
        let kind = if target.is_some() { record::CHANGE } else { record::MESSAGE };
        let at = push_message(&mut self.frame, kind, &header, &cbor)?;
        self.dirty = true;
        let slot = Slot { at: self.base() + at as u64, len, state: msg.state, direction: msg.direction };
        let record_len = (RECORD_HEADER + MESSAGE_HEADER_LEN) as u64 + u64::from(len);
        self.state.index.add(msg.conversation, (msg.lamport, header.reference), slot, header.activity_ms, record_len, target);
        Ok(true)
    }

    /// Moves a message to `state` if that is a forward move; returns whether it moved.
    pub(crate) fn set_state(&mut self, reference: &RefKey, state: MessageState) -> Result<bool, StoreError> {
        self.check()?;
        self.close_if_full()?;
        if !self.state.index.set_state(reference, state) {
            return Ok(false);
        }
        self.dirty = true;
        self.frame.record(record::STATE, &record::state_body(reference, state)).map_err(io_error)?;
        Ok(true)
    }

    /// Queues or replaces an outbox entry.
    pub(crate) fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.check()?;
        let body = encode(entry)?;
        if body.len() > MAX_RECORD {
            return Err(StoreError::Encode { detail: format!("an outbox entry of {} bytes is too large to store", body.len()) });
        }
        self.dirty = true;
        self.frame.record(record::OUTBOX_PUT, &body).map_err(io_error)?;
        self.state.index.put_outbox(entry.clone(), (RECORD_HEADER + body.len()) as u64);
        Ok(())
    }

    /// Removes an outbox entry; returns whether it was queued (only then is a
    /// record written).
    pub(crate) fn drop_outbox(&mut self, id: MessageId) -> Result<bool, StoreError> {
        self.check()?;
        if !self.state.index.drop_outbox(id) {
            return Ok(false);
        }
        self.dirty = true;
        self.frame.record(record::OUTBOX_DROP, &id.0).map_err(io_error)?;
        Ok(true)
    }

    /// Sets or replaces the key/value record under `key`. Refused before
    /// anything is added if the log cannot hold it (see [`check_kv`]).
    pub(crate) fn put_kv(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        check_kv(key, value.len())?;
        self.close_if_full()?;
        self.dirty = true;
        let value_at = push_kv(&mut self.frame, key, value)?;
        let record_len = (RECORD_HEADER + 2 + key.len() + value.len()) as u64;
        let slot = KvSlot::new(self.base() + value_at as u64, value, record_len)
            .ok_or_else(|| StoreError::Encode { detail: "value too large".into() })?;
        self.state.index.put_kv(key, slot);
        Ok(())
    }

    /// Removes the key/value record under `key`; returns whether there was one
    /// (only then is a record written).
    pub(crate) fn drop_kv(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        self.check()?;
        self.close_if_full()?;
        if !self.state.index.drop_kv(key) {
            return Ok(false);
        }
        self.dirty = true;
        let at = self.frame.begin_record(record::KV_DROP);
        record::kv_key_into(self.frame.body(), key);
        self.frame.end_record(at).map_err(io_error)?;
        Ok(true)
    }

    /// Drops a conversation's messages; returns what it held.
    pub(crate) fn forget(&mut self, conversation: ConversationId) -> Result<Option<ConvIndex>, StoreError> {
        self.check()?;
        self.dirty = true;
        self.frame.record(record::FORGET, &conversation.0).map_err(io_error)?;
        Ok(self.state.index.forget(conversation))
    }

    /// Writes the batch's frame (nothing if it is empty). Not synced.
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        self.dirty = false;
        let frame = std::mem::replace(&mut self.frame, Frame::new());
        let mut bytes = std::mem::take(&mut self.closed);
        if !frame.is_empty() {
            match frame.finish() {
                Ok(last) => bytes.extend_from_slice(&last),
                Err(e) => {
                    self.state.broken = Some(e.to_string());
                    return Err(io_error(e));
                }
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let written = self.state.end + bytes.len() as u64;
        let result = self.state.file.write_all_at(&bytes, self.state.end);
        self.state.count_write();
        match result {
            Ok(()) => {
                self.state.end = written;
                if written > self.state.allocated {
                    self.state.write_ahead(written);
                }
                Ok(())
            }
            Err(e) => {
                self.state.broken = Some(e.to_string());
                Err(io_error(e))
            }
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.dirty {
            tracing::error!("a message log batch was abandoned after changing the index; the log refuses writes");
            self.state.broken = Some("a batch was abandoned half-way".into());
        }
    }
}

pub(crate) fn io_error(e: io::Error) -> StoreError {
    StoreError::Io(e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests;
