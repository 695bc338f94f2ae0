//! [`SeqLogs`]: many append-only logs of opaque items in one sled tree, written in
//! atomic single-tree batches, with their counters kept in memory.
//!
//! This is the engine-level layer the relay's mailbox and group-log stores are built
//! on (it exposes sled, unlike [`Store`](crate::Store)). A log is named by an id of
//! 1 to 255 bytes; its items get sequence numbers that only grow, are de-duplicated
//! by their bytes, carry the time they were appended, and leave by
//! [`Writer::remove`] or by age ([`SeqLogs::expire`], which walks each log from its
//! oldest item, so no time index is written).
//!
//! One key per item: sled's cost is per key written (it copies the leaf each key
//! lands on), and a de-duplication key per item, landing on a random leaf, cost a
//! relay a third of its deposit rate. So the de-duplication index lives in memory: a
//! keyed 64-bit hash (blake3) of each held item's log and bytes → its sequence
//! number, rebuilt by reading every item at open (16 bytes plus the map's slack per
//! item). The hash's key is random (new at each open that reads the items; a
//! checkpoint keeps it with the index), so nobody can aim collisions at it, and a match
//! is confirmed by comparing the stored bytes, so a collision can never make a new
//! item pass for a held one: at worst the colliding item is not indexed (and if it
//! also has the other's sequence number in another log, removing it removes the
//! other's entry), and a repeat is stored again (its reader de-duplicates what it
//! reads). A 64-bit collision is ~2⁻²⁵ likely among a million items.
//!
//! Why one tree: sled serialises multi-tree transactions and copies every tree node
//! they touch, which cost ~70 µs per relay envelope. A [`sled::Batch`] on one tree is
//! atomic too (all or nothing across a crash), so every key space lives in one tree
//! and a writer holds a mutex instead of a transaction: the in-memory records are
//! the truth the checks read, and a batch applies whole or not at all.
//!
//! Layout (`P` is the log id prefixed by its length, so no id is a prefix of
//! another; integers big-endian, so byte order is numeric order):
//!
//! | key | value |
//! | --- | --- |
//! | `i ‖ P ‖ seq` | `appended_at_ms ‖ item` |
//! | `r ‖ P` | `next_seq ‖ count ‖ bytes` |
//! | `f` | the sequence floor (`u64`) |
//!
//! A log whose last item goes loses its record, and the floor is raised to the
//! record's next sequence number; a log without a record starts numbering at the
//! floor. So a number is never reused for a log, a reader's cursor ("after `seq`")
//! stays valid however long it was away, and the records held are those of logs
//! holding items, whatever ids were ever written to.
//!
//! Before, `h ‖ P ‖ blake3(item)` → `seq` held the de-duplication index on disk;
//! [`SeqLogs::open`] removes such keys.
//!
//! Reading every item at open costs ~1.7 µs per item here (~0.7 s for 400,000), so
//! a clean shutdown may leave the index in a checkpoint file ([`SeqLogs::checkpoint`])
//! that the next open loads instead. The file is trusted only if the tree holds the
//! random token `c` → `token` that the checkpoint wrote after the file was durable,
//! and the next open removes that token (flushed) before anything can be written:
//! a checkpoint is used at most once, and only by the open right after the
//! shutdown that wrote it. Any write after a checkpoint removes the token too. And
//! the file carries a fingerprint of every log's record and the floor, which any
//! append or removal changes, so even a build that knows nothing of the token (an
//! earlier one, run between the stop and this open) cannot leave an index behind
//! that is trusted. A file that does not match (torn, damaged, from an earlier
//! shutdown, of other records) is ignored and the items are read as before. Even a wrong index could not make a new item
//! pass for a held one, since every match is confirmed against the stored bytes.
//!
//! Durability: a committed [`Writer`] is atomic but not flushed; call
//! [`SeqLogs::flush`] (one fsync for everything committed so far, by any thread)
//! before acknowledging what it wrote.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::engine::SledDb;
use crate::error::{StoreError, db};

/// Name used in [`StoreError::Corrupt`] for this layer's entries.
const TREE: &str = "seqlog";

const ITEM: u8 = b'i';
/// The de-duplication index's keys before it moved to memory; removed at open.
const FORMER_HASH: u8 = b'h';
const RECORD: u8 = b'r';
const FLOOR: u8 = b'f';
/// The token of the checkpoint the last clean shutdown wrote.
const CHECKPOINT: u8 = b'c';

/// The first bytes of a checkpoint file (its format's version is the last byte).
const CHECKPOINT_MAGIC: &[u8; 8] = b"kithidx1";
/// Magic, token, hash key, the records' fingerprint, entry count; then the
/// entries, then a blake3 digest of everything before it.
const CHECKPOINT_HEADER_LEN: usize = 8 + 16 + 32 + 32 + 8;

/// Entries and bytes per batch when importing an earlier layout.
const IMPORT_BATCH_ENTRIES: usize = 4096;
const IMPORT_BATCH_BYTES: usize = 16 << 20;

/// The first sequence number of the first log.
pub const FIRST_SEQ: u64 = 1;

/// A log's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// The sequence number the next appended item gets.
    pub next_seq: u64,
    /// Items held.
    pub count: u64,
    /// Item bytes held.
    pub bytes: u64,
}

impl Record {
    fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[..8].copy_from_slice(&self.next_seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.count.to_be_bytes());
        out[16..].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }

    fn decode(value: &[u8]) -> Result<Record, StoreError> {
        match (value.len(), u64_at(value, 0), u64_at(value, 8), u64_at(value, 16)) {
            (24, Some(next_seq), Some(count), Some(bytes)) => Ok(Record { next_seq, count, bytes }),
            _ => Err(StoreError::corrupt(TREE, "malformed log record")),
        }
    }
}

/// Totals over every log, kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Totals {
    /// Logs holding at least one item.
    pub logs: u64,
    /// Items held.
    pub items: u64,
    /// Item bytes held.
    pub bytes: u64,
}

/// One stored item, as [`SeqLogs::list`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredItem {
    /// Its sequence number in its log.
    pub seq: u64,
    /// The bytes, as appended.
    pub bytes: Vec<u8>,
    /// When it was appended (ms since the Unix epoch, as given to [`Writer::append`]).
    pub appended_at_ms: u64,
}

/// Where the de-duplication index came from when the logs were opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexSource {
    /// Every item was read and hashed.
    Scan,
    /// The checkpoint the last clean shutdown wrote was loaded.
    Checkpoint,
}

/// The opened logs. `Send + Sync`; every method blocks on disk I/O.
pub struct SeqLogs {
    db: SledDb,
    tree: sled::Tree,
    /// Keys the de-duplication hashes (random per store; kept in a checkpoint).
    hash_key: [u8; 32],
    /// Where [`checkpoint`](Self::checkpoint) writes the index, if anywhere.
    checkpoint_path: Option<PathBuf>,
    index_source: IndexSource,
    state: Mutex<State>,
}

impl std::fmt::Debug for SeqLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqLogs").field("tree", &String::from_utf8_lossy(&self.tree.name())).finish_non_exhaustive()
    }
}

/// Item hash → sequence number. The keys are already keyed hashes, so the map
/// uses them as they are.
type HashIndex = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

/// A [`Hasher`] for keys that are uniformly random `u64`s already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than lose it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// What the writers read and move: every log's record (by prefix), the floor, the
/// totals and the de-duplication index. Only a committed batch changes it.
struct State {
    records: HashMap<Vec<u8>, Record>,
    floor: u64,
    totals: Totals,
    hashes: HashIndex,
    /// The tree holds a checkpoint's token, which the next write must remove.
    checkpointed: bool,
}

/// A checkpoint file's contents.
struct Checkpoint {
    /// The hash key its index was made with.
    key: [u8; 32],
    index: HashIndex,
    /// [`records_fingerprint`] when it was written.
    records: [u8; 32],
}

/// A digest of the floor and every log's record: any append or removal changes it.
fn records_fingerprint(floor: u64, records: &HashMap<Vec<u8>, Record>) -> [u8; 32] {
    let mut sorted: Vec<_> = records.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut digest = blake3::Hasher::new();
    digest.update(&floor.to_be_bytes());
    for (prefix, record) in sorted {
        // The prefix starts with its length, so the entries cannot run together.
        digest.update(prefix);
        digest.update(&record.encode());
    }
    *digest.finalize().as_bytes()
}

impl State {
    /// Reads the floor and every record from `tree`, and takes the checkpoint's
    /// index as the de-duplication index if it was written with these records, or
    /// else hashes every item; says which. Records of logs that hold no item (an
    /// earlier build kept a group log's) are removed in one atomic batch, raising
    /// the floor past their numbers; not flushed: if that is lost, the next open
    /// does it again.
    /// Returns the key of the index taken: the checkpoint's, or `scan_key`, which
    /// hashes the items when no checkpoint is taken.
    fn load(
        tree: &sled::Tree,
        checkpoint: Option<Checkpoint>,
        scan_key: [u8; 32],
    ) -> Result<(State, IndexSource, [u8; 32]), StoreError> {
        let mut state = State {
            records: HashMap::new(),
            floor: FIRST_SEQ,
            totals: Totals::default(),
            hashes: HashIndex::default(),
            checkpointed: false,
        };
        if let Some(value) = tree.get([FLOOR]).map_err(db)? {
            state.floor = decode_u64(&value)?;
        }
        let mut empty = sled::Batch::default();
        let mut emptied = 0usize;
        for entry in tree.scan_prefix([RECORD]) {
            let (key, value) = entry.map_err(db)?;
            let record = Record::decode(&value)?;
            if record.count == 0 {
                state.floor = state.floor.max(record.next_seq);
                empty.remove(key);
                emptied += 1;
                continue;
            }
            state.totals.add(&record);
            state.records.insert(key[1..].to_vec(), record);
        }
        if emptied > 0 {
            empty.insert(&[FLOOR][..], &state.floor.to_be_bytes()[..]);
            tree.apply_batch(empty).map_err(db)?;
            tracing::info!(tree = ?String::from_utf8_lossy(&tree.name()), emptied, "removed the records of empty logs");
        }
        if let Some(checkpoint) = checkpoint {
            if checkpoint.records == records_fingerprint(state.floor, &state.records) {
                state.hashes = checkpoint.index;
                return Ok((state, IndexSource::Checkpoint, checkpoint.key));
            }
            tracing::warn!(tree = ?String::from_utf8_lossy(&tree.name()), "index checkpoint not used: the logs changed after it was written; reading every item");
        }
        state.hashes.reserve(usize::try_from(state.totals.items).unwrap_or(0));
        let mut damaged = 0usize;
        for entry in tree.scan_prefix([ITEM]) {
            let (key, value) = entry.map_err(db)?;
            // A damaged item is left out of the index rather than refusing the whole
            // store: reading it reports it, as before the index was in memory.
            let (Some(prefix), Ok(seq), Ok((_, item))) =
                (key.get(1..key.len().saturating_sub(8)).filter(|p| p.len() > 1), seq_of(&key), split_item_value(&value))
            else {
                damaged += 1;
                continue;
            };
            state.hashes.entry(item_hash(&scan_key, prefix, item)).or_insert(seq);
        }
        if damaged > 0 {
            tracing::warn!(damaged, "damaged items left out of the de-duplication index");
        }
        Ok((state, IndexSource::Scan, scan_key))
    }
}

/// Removes every key of the former on-disk de-duplication index, in bounded
/// batches; returns how many there were.
fn drop_former_hashes(tree: &sled::Tree) -> Result<usize, StoreError> {
    let mut dropped = 0;
    loop {
        let keys: Vec<sled::IVec> = tree
            .scan_prefix([FORMER_HASH])
            .keys()
            .take(IMPORT_BATCH_ENTRIES)
            .collect::<Result<_, _>>()
            .map_err(db)?;
        if keys.is_empty() {
            return Ok(dropped);
        }
        dropped += keys.len();
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(key);
        }
        tree.apply_batch(batch).map_err(db)?;
    }
}

impl SeqLogs {
    /// Opens the logs kept in tree `tree` of `database`: loads every log's record,
    /// and loads the de-duplication index from the checkpoint at `checkpoint` if the
    /// last shutdown left a valid one there, or else reads every item to rebuild it.
    /// A checkpoint's token is removed (flushed) before this returns, so the file is
    /// never trusted again. Also removes the former on-disk index if the tree still
    /// has one (not flushed: it is redone if lost).
    pub fn open(database: &SledDb, tree: &str, checkpoint: Option<&Path>) -> Result<SeqLogs, StoreError> {
        let tree = database.open_tree(tree).map_err(db)?;
        let dropped = drop_former_hashes(&tree)?;
        if dropped > 0 {
            tracing::info!(tree = ?String::from_utf8_lossy(&tree.name()), dropped, "removed the former on-disk de-duplication index");
        }
        let started = std::time::Instant::now();
        let name = String::from_utf8_lossy(&tree.name()).into_owned();
        let loaded = match (checkpoint, tree.get([CHECKPOINT]).map_err(db)?) {
            (Some(path), Some(token)) => {
                let loaded = read_checkpoint(path, &token);
                if let Err(reason) = &loaded {
                    tracing::warn!(path = %path.display(), %reason, "index checkpoint not used; reading every item");
                }
                loaded.ok()
            }
            _ => None,
        };
        if tree.remove([CHECKPOINT]).map_err(db)?.is_some() {
            database.flush()?;
        }
        if let Some(path) = checkpoint {
            // Spent either way; a failure to remove it only leaves a file no token
            // matches. A temporary file is what a failed checkpoint left.
            for spent in [path.to_path_buf(), path.with_extension("tmp")] {
                if let Err(e) = crate::durable::remove_if_present(&spent) {
                    tracing::warn!(path = %spent.display(), error = %e, "could not remove a spent index checkpoint");
                }
            }
        }
        // A key of its own for an index read from the items: the key of a
        // checkpoint not taken is not reused.
        let (state, index_source, hash_key) = State::load(&tree, loaded, rand::random())?;
        if checkpoint.is_some() && state.totals.items > 0 {
            let ms = started.elapsed().as_millis();
            match index_source {
                IndexSource::Checkpoint => tracing::info!(tree = name, items = state.totals.items, ms, "de-duplication index loaded from the last clean stop's checkpoint"),
                IndexSource::Scan => tracing::info!(tree = name, items = state.totals.items, ms, "de-duplication index rebuilt by reading every item (no usable checkpoint from a clean stop)"),
            }
        }
        Ok(SeqLogs {
            state: Mutex::new(state),
            hash_key,
            checkpoint_path: checkpoint.map(Path::to_owned),
            index_source,
            db: database.clone(),
            tree,
        })
    }

    /// Where the de-duplication index came from at open.
    pub fn index_source(&self) -> IndexSource {
        self.index_source
    }

    /// Starts a batch of changes. Holds the store's write lock until the writer is
    /// committed or dropped (dropping discards it), so keep it short.
    pub fn writer(&self) -> Writer<'_> {
        Writer {
            logs: self,
            state: self.state.lock().unwrap_or_else(PoisonError::into_inner),
            batch: sled::Batch::default(),
            staged: HashMap::new(),
            staged_hashes: HashMap::new(),
            removed: HashSet::new(),
            appended: HashMap::new(),
            floor: None,
        }
    }

    /// Items of `log` with a sequence number of at least `first_seq`, in order: at
    /// most `max_items`, and no more than `max_bytes` of item bytes, except that the
    /// first item is returned whatever its size, so a reader always makes progress.
    pub fn list(
        &self,
        log: &[u8],
        first_seq: u64,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredItem>, StoreError> {
        let prefix = prefix(log)?;
        let range = item_key(&prefix, first_seq)..=item_key(&prefix, u64::MAX);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in self.tree.range(range) {
            if out.len() >= max_items {
                break;
            }
            let (key, value) = entry.map_err(db)?;
            let (appended_at_ms, item) = split_item_value(&value)?;
            bytes = bytes.saturating_add(item.len());
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(StoredItem {
                seq: seq_of(&key)?,
                bytes: item.to_vec(),
                appended_at_ms,
            });
        }
        Ok(out)
    }

    /// The record of `log`, if it has one (from memory).
    pub fn record(&self, log: &[u8]) -> Option<Record> {
        let prefix = prefix(log).ok()?;
        self.lock().records.get(&prefix).copied()
    }

    /// Totals over every log (from memory).
    pub fn totals(&self) -> Totals {
        self.lock().totals
    }

    /// Deletes every item appended before or at `cutoff_ms`, in batches of at most
    /// `batch` items so writers interleave with a long sweep; returns how many went.
    /// Each log is walked from its oldest item while items are old enough: items are
    /// appended in time order, so the old ones are at the front (an item appended
    /// after the clock was set back waits for the ones before it). Costs a seek per
    /// log holding items plus the items that go. Not flushed (a lost expiry is simply
    /// redone).
    pub fn expire(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError> {
        let batch = batch.max(1);
        let logs: Vec<Vec<u8>> =
            self.lock().records.iter().filter(|(_, r)| r.count > 0).map(|(p, _)| p.clone()).collect();
        let mut total = 0;
        for prefix in logs {
            loop {
                let mut due = Vec::new();
                for entry in self.tree.range(item_key(&prefix, 0)..=item_key(&prefix, u64::MAX)).take(batch) {
                    let (key, value) = entry.map_err(db)?;
                    let (at_ms, _) = split_item_value(&value)?;
                    if at_ms > cutoff_ms {
                        break;
                    }
                    due.push(seq_of(&key)?);
                }
                if due.is_empty() {
                    break;
                }
                let mut writer = self.writer();
                for seq in &due {
                    if writer.remove_prefixed(&prefix, *seq)?.is_some() {
                        total += 1;
                    }
                }
                writer.commit()?;
                if due.len() < batch {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Whether the store has failed for good, and refuses every write until it is
    /// opened again: a flush failed ([`SledDb::a_flush_failed`]). Flushes to find
    /// out, so call it after an operation failed: sled fails every operation
    /// after a failed write of its own (a full disk), and then this flush fails
    /// and says so, where an error of the request itself leaves it succeeding.
    pub fn failed_for_good(&self) -> bool {
        self.db.a_flush_failed() || self.db.flush().is_err()
    }

    /// Flushes (fsyncs) everything committed so far, by any writer.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// For a clean shutdown: flushes everything committed, then writes the
    /// de-duplication index to the checkpoint file given at open (durably, mode
    /// 0600), then records its token in the tree and flushes again, so the next
    /// open can load it instead of reading every item. A write after this (by a
    /// late writer) removes the token again. Without a checkpoint path this is
    /// [`flush`](Self::flush). Fails only if a flush fails: a checkpoint that
    /// cannot be written (a full disk) is logged and skipped, since the next open
    /// can always read the items instead.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let Some(path) = &self.checkpoint_path else {
            return self.flush();
        };
        let mut state = self.lock();
        self.flush()?;
        let token: [u8; 16] = rand::random();
        let records = records_fingerprint(state.floor, &state.records);
        if let Err(e) = write_checkpoint(path, &token, &self.hash_key, &records, &state.hashes) {
            tracing::warn!(path = %path.display(), error = ?e, "could not write the index checkpoint; the next start reads every item");
            return Ok(());
        }
        self.tree.insert([CHECKPOINT], &token[..]).map_err(db)?;
        state.checkpointed = true;
        self.flush()
    }

    /// Copies a database of the earlier layout (one tree per key space, the same
    /// keys without the space tag) into this tree, in batches, then reloads the
    /// records and rebuilds the de-duplication index. Run it on an empty tree (it clears this tree first, so an
    /// interrupted copy can simply run again); the caller records that it finished
    /// and drops the old trees after.
    pub fn import(&self, old: &LegacyTrees<'_>) -> Result<(), StoreError> {
        self.tree.clear().map_err(db)?;
        for (tree, tag) in [(old.items, ITEM), (old.records, RECORD)] {
            // Bounded in entries and bytes, so large envelopes do not pile up in memory.
            let mut batch = sled::Batch::default();
            let (mut entries, mut bytes) = (0usize, 0usize);
            for entry in tree.iter() {
                let (key, value) = entry.map_err(db)?;
                entries += 1;
                bytes += key.len() + value.len();
                batch.insert([&[tag], key.as_ref()].concat(), value);
                if entries >= IMPORT_BATCH_ENTRIES || bytes >= IMPORT_BATCH_BYTES {
                    self.tree.apply_batch(std::mem::take(&mut batch)).map_err(db)?;
                    (entries, bytes) = (0, 0);
                }
            }
            self.tree.apply_batch(batch).map_err(db)?;
        }
        if let Some(floor) = old.floor {
            self.tree.insert([FLOOR], &floor.to_be_bytes()[..]).map_err(db)?;
        }
        *self.lock() = State::load(&self.tree, None, self.hash_key)?.0;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as it was before the
        // writer (it changes only after a batch applied), so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The trees of the layout before [`SeqLogs`] (relay schema version 1): the same
/// keys and values, one tree per key space, and the floor as a plain number. (Its
/// expiry and de-duplication indexes are not carried over: expiry walks the logs,
/// and the de-duplication index is rebuilt in memory.)
#[derive(Clone, Copy)]
pub struct LegacyTrees<'a> {
    /// `P ‖ seq` → `appended_at_ms ‖ item`.
    pub items: &'a sled::Tree,
    /// `P` → record.
    pub records: &'a sled::Tree,
    /// The sequence floor, if one was recorded.
    pub floor: Option<u64>,
}

/// A batch of changes under the store's write lock. Reads see the batch's own
/// changes; nothing reaches the tree (or the in-memory records) until
/// [`commit`](Writer::commit).
pub struct Writer<'a> {
    logs: &'a SeqLogs,
    state: MutexGuard<'a, State>,
    batch: sled::Batch,
    /// Records changed by this batch.
    staged: HashMap<Vec<u8>, Record>,
    /// De-duplication entries this batch sets (`Some(seq)`) or removes (`None`).
    staged_hashes: HashMap<u64, Option<u64>>,
    /// Item keys removed by this batch.
    removed: HashSet<Vec<u8>>,
    /// Items appended by this batch: key → bytes.
    appended: HashMap<Vec<u8>, Vec<u8>>,
    /// The floor, if this batch raised it.
    floor: Option<u64>,
}

impl Writer<'_> {
    /// The record of `log` as this batch leaves it; a log without one is empty and
    /// numbers from the floor.
    pub fn record(&self, log: &[u8]) -> Result<Record, StoreError> {
        Ok(self.record_of(&prefix(log)?))
    }

    /// Totals as this batch leaves them.
    pub fn totals(&self) -> Totals {
        let mut totals = self.state.totals;
        for (prefix, record) in &self.staged {
            if let Some(old) = self.state.records.get(prefix) {
                totals.remove(old);
            }
            totals.add(record);
        }
        totals
    }

    /// The sequence number of the item of `log` with these exact bytes, if the log
    /// holds one (or this batch appended one). Reads the disk only to confirm a
    /// match.
    pub fn find(&self, log: &[u8], item: &[u8]) -> Result<Option<u64>, StoreError> {
        let prefix = prefix(log)?;
        let Some(seq) = self.indexed(item_hash(&self.logs.hash_key, &prefix, item)) else {
            return Ok(None);
        };
        let key = item_key(&prefix, seq);
        if self.removed.contains(&key) {
            return Ok(None);
        }
        let same = match self.appended.get(&key) {
            Some(bytes) => bytes == item,
            None => match self.logs.tree.get(&key).map_err(db)? {
                Some(value) => split_item_value(&value)?.1 == item,
                None => false,
            },
        };
        Ok(same.then_some(seq))
    }

    /// Appends `item` to `log` at time `at_ms` and returns its sequence number. No
    /// check for a duplicate (see [`find`](Self::find)) or a quota: those are the
    /// caller's policy.
    pub fn append(&mut self, log: &[u8], at_ms: u64, item: &[u8]) -> Result<u64, StoreError> {
        let prefix = prefix(log)?;
        let mut record = self.record_of(&prefix);
        let seq = record.next_seq;
        record.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| StoreError::corrupt(TREE, "sequence numbers exhausted"))?;
        record.count += 1;
        record.bytes += item.len() as u64;
        let hash = item_hash(&self.logs.hash_key, &prefix, item);
        // A colliding item already indexed keeps the entry (see the module docs).
        if self.indexed(hash).is_none() {
            self.staged_hashes.insert(hash, Some(seq));
        }
        let key = item_key(&prefix, seq);
        self.batch.insert(key.clone(), [&at_ms.to_be_bytes()[..], item].concat());
        self.appended.insert(key, item.to_vec());
        self.put_record(prefix, record);
        Ok(seq)
    }

    /// Removes item `seq` of `log` with its index entries; returns its length, or
    /// `None` if the log does not hold it.
    pub fn remove(&mut self, log: &[u8], seq: u64) -> Result<Option<u64>, StoreError> {
        let prefix = prefix(log)?;
        self.remove_prefixed(&prefix, seq)
    }

    /// Applies the batch atomically and moves the in-memory records to match. Not
    /// flushed: see [`SeqLogs::flush`].
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.state.checkpointed {
            // The checkpoint no longer holds this batch's index entries.
            self.batch.remove(&[CHECKPOINT][..]);
        }
        self.logs.tree.apply_batch(std::mem::take(&mut self.batch)).map_err(db)?;
        let state = &mut *self.state;
        state.checkpointed = false;
        for (prefix, record) in self.staged.drain() {
            if let Some(old) = state.records.get(&prefix) {
                state.totals.remove(old);
            }
            if record.count == 0 {
                state.records.remove(&prefix);
            } else {
                state.totals.add(&record);
                state.records.insert(prefix, record);
            }
        }
        if let Some(floor) = self.floor {
            state.floor = floor;
        }
        for (hash, seq) in self.staged_hashes.drain() {
            match seq {
                Some(seq) => state.hashes.insert(hash, seq),
                None => state.hashes.remove(&hash),
            };
        }
        Ok(())
    }

    /// The sequence number the de-duplication index gives `hash`, as this batch
    /// leaves it.
    fn indexed(&self, hash: u64) -> Option<u64> {
        match self.staged_hashes.get(&hash) {
            Some(staged) => *staged,
            None => self.state.hashes.get(&hash).copied(),
        }
    }

    fn record_of(&self, prefix: &[u8]) -> Record {
        self.staged
            .get(prefix)
            .or_else(|| self.state.records.get(prefix))
            .copied()
            .unwrap_or(Record {
                next_seq: self.floor.unwrap_or(self.state.floor),
                count: 0,
                bytes: 0,
            })
    }

    fn remove_prefixed(&mut self, prefix: &[u8], seq: u64) -> Result<Option<u64>, StoreError> {
        let key = item_key(prefix, seq);
        if self.removed.contains(&key) {
            return Ok(None);
        }
        let (len, hash) = match self.appended.remove(&key) {
            Some(bytes) => (bytes.len() as u64, item_hash(&self.logs.hash_key, prefix, &bytes)),
            None => {
                let Some(value) = self.logs.tree.get(&key).map_err(db)? else {
                    return Ok(None);
                };
                let item = split_item_value(&value)?.1;
                (item.len() as u64, item_hash(&self.logs.hash_key, prefix, item))
            }
        };
        let mut record = self.record_of(prefix);
        match (record.count.checked_sub(1), record.bytes.checked_sub(len)) {
            (Some(count), Some(bytes)) => {
                record.count = count;
                record.bytes = bytes;
            }
            _ => return Err(StoreError::corrupt(TREE, "log counters below its contents")),
        }
        if self.indexed(hash) == Some(seq) {
            self.staged_hashes.insert(hash, None);
        }
        self.batch.remove(key.clone());
        self.removed.insert(key);
        self.put_record(prefix.to_vec(), record);
        Ok(Some(len))
    }

    fn put_record(&mut self, prefix: Vec<u8>, record: Record) {
        let key = [&[RECORD], prefix.as_slice()].concat();
        if record.count == 0 {
            self.batch.remove(key);
            let floor = self.floor.unwrap_or(self.state.floor);
            if record.next_seq > floor {
                self.floor = Some(record.next_seq);
                self.batch.insert(&[FLOOR][..], &record.next_seq.to_be_bytes()[..]);
            }
        } else {
            self.batch.insert(key, &record.encode()[..]);
        }
        self.staged.insert(prefix, record);
    }
}

impl Totals {
    fn add(&mut self, record: &Record) {
        if record.count > 0 {
            self.logs += 1;
        }
        self.items += record.count;
        self.bytes += record.bytes;
    }

    fn remove(&mut self, record: &Record) {
        if record.count > 0 {
            self.logs = self.logs.saturating_sub(1);
        }
        self.items = self.items.saturating_sub(record.count);
        self.bytes = self.bytes.saturating_sub(record.bytes);
    }
}

/// `len ‖ id`: the key prefix of a log.
fn prefix(log: &[u8]) -> Result<Vec<u8>, StoreError> {
    let len = u8::try_from(log.len())
        .ok()
        .filter(|len| *len > 0)
        .ok_or_else(|| StoreError::corrupt(TREE, format!("log id of {} bytes", log.len())))?;
    Ok([&[len], log].concat())
}

/// The de-duplication hash of `item` in the log of `prefix`: keyed blake3, so its
/// values cannot be aimed at without the store's key (`prefix` carries its length,
/// so prefix and item cannot be re-split).
fn item_hash(key: &[u8; 32], prefix: &[u8], item: &[u8]) -> u64 {
    let digest = blake3::Hasher::new_keyed(key).update(prefix).update(item).finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Writes `hashes` to `path` whole and durably (through a temporary file beside
/// it, mode 0600), with a digest of everything before it.
fn write_checkpoint(
    path: &Path,
    token: &[u8; 16],
    key: &[u8; 32],
    records: &[u8; 32],
    hashes: &HashIndex,
) -> Result<(), StoreError> {
    crate::durable::replace_file(path, &path.with_extension("tmp"), |out| {
        let mut digest = blake3::Hasher::new();
        let mut put = |bytes: &[u8]| {
            digest.update(bytes);
            out.write_all(bytes).map_err(StoreError::Io)
        };
        put(CHECKPOINT_MAGIC)?;
        put(token)?;
        put(key)?;
        put(records)?;
        put(&(hashes.len() as u64).to_be_bytes())?;
        for (hash, seq) in hashes {
            put(&hash.to_be_bytes())?;
            put(&seq.to_be_bytes())?;
        }
        out.write_all(digest.finalize().as_bytes()).map_err(StoreError::Io)
    })
}

/// Reads a checkpoint written for `token`, or says why not.
fn read_checkpoint(path: &Path, token: &[u8]) -> Result<Checkpoint, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut header = [0; CHECKPOINT_HEADER_LEN];
    input.read_exact(&mut header).map_err(|e| format!("header: {e}"))?;
    let mut digest = blake3::Hasher::new();
    digest.update(&header);
    if &header[..8] != CHECKPOINT_MAGIC {
        return Err("not an index checkpoint".into());
    }
    if &header[8..24] != token {
        return Err("written by an earlier shutdown".into());
    }
    let mut key = [0; 32];
    key.copy_from_slice(&header[24..56]);
    let mut records = [0; 32];
    records.copy_from_slice(&header[56..88]);
    let count = u64_at(&header, 88).unwrap_or(u64::MAX);
    let expected = count.checked_mul(16).and_then(|n| n.checked_add((CHECKPOINT_HEADER_LEN + 32) as u64));
    if expected != Some(len) {
        return Err(format!("{len} bytes for {count} entries"));
    }
    let mut hashes = HashIndex::default();
    hashes.reserve(usize::try_from(count).map_err(|e| e.to_string())?);
    let mut entry = [0; 16];
    for _ in 0..count {
        input.read_exact(&mut entry).map_err(|e| e.to_string())?;
        digest.update(&entry);
        let (hash, seq) = (u64_at(&entry, 0).unwrap_or(0), u64_at(&entry, 8).unwrap_or(0));
        hashes.insert(hash, seq);
    }
    let mut stored = [0; 32];
    input.read_exact(&mut stored).map_err(|e| e.to_string())?;
    if digest.finalize() != blake3::Hash::from(stored) {
        return Err("damaged: its digest does not match".into());
    }
    Ok(Checkpoint { key, index: hashes, records })
}

fn item_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    [&[ITEM], prefix, &seq.to_be_bytes()].concat()
}

/// The sequence number at the end of an item key.
fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| u64_at(key, at))
        .ok_or_else(|| StoreError::corrupt(TREE, "short item key"))
}

fn split_item_value(value: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match (u64_at(value, 0), value.get(8..)) {
        (Some(at), Some(item)) => Ok((at, item)),
        _ => Err(StoreError::corrupt(TREE, "short item value")),
    }
}

fn decode_u64(value: &[u8]) -> Result<u64, StoreError> {
    u64_at(value, 0)
        .filter(|_| value.len() == 8)
        .ok_or_else(|| StoreError::corrupt(TREE, "expected an 8-byte integer"))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> (SledDb, SeqLogs) {
        // sled lets go of its lock a moment after the last handle is dropped: wait.
        let db = crate::engine::open_sled(dir, 16 << 20, std::time::Duration::from_secs(10)).unwrap();
        let logs = SeqLogs::open(&db, "log", Some(&checkpoint_file(dir))).unwrap();
        (db, logs)
    }

    fn checkpoint_file(dir: &std::path::Path) -> PathBuf {
        dir.join("log.index")
    }

    /// Items `0..n` of 40 bytes over logs `a`, `b` and `c`.
    fn fill(logs: &SeqLogs, n: u64) {
        let mut w = logs.writer();
        for i in 0..n {
            w.append(&[b'a' + (i % 3) as u8], 1, format!("{i:040}").as_bytes()).unwrap();
        }
        w.commit().unwrap();
    }

    fn held(logs: &SeqLogs, i: u64) -> Option<u64> {
        logs.writer().find(&[b'a' + (i % 3) as u8], format!("{i:040}").as_bytes()).unwrap()
    }

    fn append(logs: &SeqLogs, log: &[u8], at: u64, items: &[&[u8]]) -> Vec<u64> {
        let mut w = logs.writer();
        let seqs = items.iter().map(|i| w.append(log, at, i).unwrap()).collect();
        w.commit().unwrap();
        seqs
    }

    #[test]
    fn appended_items_list_in_order_and_are_found_by_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        assert_eq!(append(&logs, b"a", 5, &[b"one", b"two"]), [1, 2]);
        assert_eq!(append(&logs, b"b", 6, &[b"x"]), [1]);
        let listed = logs.list(b"a", 0, 10, 1 << 20).unwrap();
        assert_eq!(listed.iter().map(|i| (i.seq, i.bytes.as_slice(), i.appended_at_ms)).collect::<Vec<_>>(),
            [(1, &b"one"[..], 5), (2, &b"two"[..], 5)]);
        assert_eq!(logs.list(b"a", 2, 10, 1 << 20).unwrap().len(), 1);
        // The byte bound stops a page, except for its first item.
        assert_eq!(logs.list(b"a", 0, 10, 1).unwrap().len(), 1);
        let w = logs.writer();
        assert_eq!(w.find(b"a", b"two").unwrap(), Some(2));
        assert_eq!(w.find(b"b", b"two").unwrap(), None);
        drop(w);
        assert_eq!(logs.totals(), Totals { logs: 2, items: 3, bytes: 7 });
    }

    #[test]
    fn a_dropped_writer_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        let mut w = logs.writer();
        w.append(b"a", 1, b"lost").unwrap();
        assert_eq!(w.find(b"a", b"lost").unwrap(), Some(1), "a batch sees its own writes");
        drop(w);
        assert!(logs.list(b"a", 0, 10, 100).unwrap().is_empty());
        assert_eq!(logs.totals(), Totals::default());
        assert_eq!(logs.record(b"a"), None);
    }

    #[test]
    fn removal_is_idempotent_and_an_emptied_mailbox_never_reuses_a_number() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, logs) = open(dir.path());
            append(&logs, b"a", 1, &[b"one", b"two"]);
            let mut w = logs.writer();
            assert_eq!(w.remove(b"a", 1).unwrap(), Some(3));
            assert_eq!(w.remove(b"a", 1).unwrap(), None, "removed twice in one batch");
            assert_eq!(w.find(b"a", b"one").unwrap(), None);
            assert_eq!(w.remove(b"a", 2).unwrap(), Some(3));
            assert_eq!(w.remove(b"a", 9).unwrap(), None);
            w.commit().unwrap();
            assert_eq!(logs.record(b"a"), None, "an empty mailbox has no record");
            assert_eq!(logs.totals(), Totals::default());
            logs.flush().unwrap();
        }
        // Across a reopen, a new log (and the emptied one) number above the floor.
        let (_db, logs) = open(dir.path());
        assert_eq!(append(&logs, b"a", 2, &[b"one"]), [3]);
        assert_eq!(append(&logs, b"c", 2, &[b"z"]), [3]);
    }

    #[test]
    fn an_item_appended_and_removed_in_one_batch_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        let mut w = logs.writer();
        let seq = w.append(b"a", 1, b"brief").unwrap();
        assert_eq!(w.remove(b"a", seq).unwrap(), Some(5));
        assert_eq!(w.find(b"a", b"brief").unwrap(), None);
        w.commit().unwrap();
        assert!(logs.list(b"a", 0, 10, 100).unwrap().is_empty());
        assert_eq!(logs.totals(), Totals::default());
        assert_eq!(append(&logs, b"a", 2, &[b"next"]), [seq + 1], "its number is not reused");
    }

    #[test]
    fn an_expired_log_leaves_no_record_and_numbers_on_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        append(&logs, b"g", 1, &[b"one", b"two"]);
        assert_eq!(logs.expire(1, 16).unwrap(), 2);
        assert_eq!(logs.record(b"g"), None, "nothing is held for a log without items");
        assert_eq!(logs.totals(), Totals::default());
        // Expired items are forgotten: the same bytes are stored anew, after a
        // reader's cursor at 2.
        assert_eq!(append(&logs, b"g", 3, &[b"one"]), [3]);
        assert_eq!(logs.list(b"g", 3, 10, 100).unwrap().len(), 1);
    }

    /// An earlier build kept the records of group logs emptied by expiry, one per
    /// log id ever written to. They go at open, and the numbers they held stay
    /// used.
    #[test]
    fn records_of_empty_logs_left_by_an_earlier_build_go_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, logs) = open(dir.path());
            append(&logs, b"kept", 1, &[b"one"]);
            append(&logs, b"full", 1, &[b"held"]);
            // What that build left: a record with no items.
            let mut w = logs.writer();
            w.remove(b"kept", 1).unwrap();
            w.commit().unwrap();
            let record = Record { next_seq: 7, count: 0, bytes: 0 };
            let key = [&[RECORD][..], &prefix(b"kept").unwrap()].concat();
            logs.tree.insert(key, &record.encode()[..]).unwrap();
            logs.tree.remove([FLOOR]).unwrap();
            logs.flush().unwrap();
        }
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.record(b"kept"), None);
        assert_eq!(logs.record(b"full").map(|r| r.count), Some(1));
        assert_eq!(append(&logs, b"kept", 2, &[b"again"]), [7], "its old numbers are not reused");
    }

    #[test]
    fn expiry_takes_what_is_old_enough_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        for at in 0..50u64 {
            append(&logs, &[1 + (at % 3) as u8], at, &[&at.to_be_bytes()]);
        }
        assert_eq!(logs.expire(29, 7).unwrap(), 30);
        assert_eq!(logs.totals().items, 20);
        let left: u64 = (1..=3u8).map(|l| logs.list(&[l], 0, 100, 1 << 20).unwrap().len() as u64).sum();
        assert_eq!(left, 20);
        assert_eq!(logs.expire(29, 7).unwrap(), 0);
    }

    #[test]
    fn an_item_appended_after_the_clock_went_back_waits_for_the_ones_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        append(&logs, b"a", 100, &[b"first"]);
        append(&logs, b"a", 50, &[b"second, clock set back"]);
        assert_eq!(logs.expire(60, 16).unwrap(), 0, "the older item in front is not due");
        assert_eq!(logs.expire(100, 16).unwrap(), 2);
    }

    #[test]
    fn records_and_totals_are_rebuilt_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (_db, logs) = open(dir.path());
            append(&logs, b"a", 1, &[b"one", b"two"]);
            append(&logs, b"b", 1, &[b"three"]);
            logs.flush().unwrap();
            (logs.totals(), logs.record(b"a"))
        };
        let (_db, logs) = open(dir.path());
        assert_eq!((logs.totals(), logs.record(b"a")), before);
        assert_eq!(append(&logs, b"a", 2, &[b"four"]), [3]);
    }

    #[test]
    fn a_legacy_layout_is_imported_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::engine::open_sled(dir.path(), 16 << 20, std::time::Duration::from_secs(10)).unwrap();
        let t = |n: &str| db.open_tree(n).unwrap();
        let (items, records) = (t("envelopes"), t("mailboxes"));
        let p = prefix(b"a").unwrap();
        items.insert([&p[..], &7u64.to_be_bytes()].concat(), [&5u64.to_be_bytes()[..], b"old"].concat()).unwrap();
        records.insert(&p, &Record { next_seq: 8, count: 1, bytes: 3 }.encode()[..]).unwrap();
        let logs = SeqLogs::open(&db, "log", None).unwrap();
        let old = LegacyTrees { items: &items, records: &records, floor: Some(4) };
        logs.import(&old).unwrap();
        logs.import(&old).unwrap(); // an interrupted import runs again
        assert_eq!(logs.totals(), Totals { logs: 1, items: 1, bytes: 3 });
        let listed = logs.list(b"a", 0, 10, 100).unwrap();
        assert_eq!((listed[0].seq, listed[0].bytes.as_slice(), listed[0].appended_at_ms), (7, &b"old"[..], 5));
        assert_eq!(logs.writer().find(b"a", b"old").unwrap(), Some(7));
        assert_eq!(append(&logs, b"new", 6, &[b"x"]), [4], "the floor came along");
        assert_eq!(logs.expire(5, 10).unwrap(), 1, "its time came along");
        assert_eq!(logs.totals().items, 1);
    }

    #[test]
    fn duplicates_are_found_after_a_reopen_and_the_former_disk_index_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, logs) = open(dir.path());
            append(&logs, b"a", 1, &[b"one", b"two"]);
            // An entry of the former on-disk index, as the earlier layout wrote it.
            let tree = db.open_tree("log").unwrap();
            let former = [&[FORMER_HASH][..], &prefix(b"a").unwrap(), blake3::hash(b"one").as_bytes()].concat();
            tree.insert(former, &1u64.to_be_bytes()[..]).unwrap();
            logs.flush().unwrap();
        }
        let (db, logs) = open(dir.path());
        assert_eq!(db.open_tree("log").unwrap().scan_prefix([FORMER_HASH]).count(), 0);
        let mut w = logs.writer();
        assert_eq!(w.find(b"a", b"one").unwrap(), Some(1));
        assert_eq!(w.find(b"a", b"two").unwrap(), Some(2));
        assert_eq!(w.find(b"b", b"one").unwrap(), None, "the index is per log");
        assert_eq!(w.remove(b"a", 1).unwrap(), Some(3));
        assert_eq!(w.find(b"a", b"one").unwrap(), None, "a removed item is not found");
        w.commit().unwrap();
        assert_eq!(logs.writer().find(b"a", b"one").unwrap(), None);
    }

    #[test]
    fn a_hash_collision_never_passes_a_new_item_for_a_held_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        append(&logs, b"a", 1, &[b"held"]);
        // Make "other" collide with "held": its hash now names item 1.
        let other_hash = item_hash(&logs.hash_key, &prefix(b"a").unwrap(), b"other");
        logs.lock().hashes.insert(other_hash, 1);
        let mut w = logs.writer();
        assert_eq!(w.find(b"a", b"other").unwrap(), None, "the bytes differ");
        assert_eq!(w.append(b"a", 1, b"other").unwrap(), 2);
        w.commit().unwrap();
        // The held item keeps the entry; removing the unindexed one leaves it alone.
        let mut w = logs.writer();
        assert_eq!(w.find(b"a", b"held").unwrap(), Some(1));
        assert_eq!(w.remove(b"a", 2).unwrap(), Some(5));
        w.commit().unwrap();
        assert_eq!(logs.lock().hashes.get(&other_hash), Some(&1));
        assert_eq!(logs.writer().find(b"a", b"held").unwrap(), Some(1));
    }

    #[test]
    fn an_item_repeated_within_one_batch_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        let mut w = logs.writer();
        let seq = w.append(b"a", 1, b"once").unwrap();
        assert_eq!(w.find(b"a", b"once").unwrap(), Some(seq));
        drop(w);
        assert_eq!(logs.writer().find(b"a", b"once").unwrap(), None, "a dropped batch indexed nothing");
    }

    #[test]
    fn damaged_items_do_not_stop_the_logs_from_opening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, logs) = open(dir.path());
            append(&logs, b"a", 1, &[b"kept"]);
            let tree = db.open_tree("log").unwrap();
            // A key with no log id, and an item value too short for its time.
            tree.insert([&[ITEM][..], &9u64.to_be_bytes()].concat(), &b"x"[..]).unwrap();
            tree.insert(item_key(&prefix(b"a").unwrap(), 7), &b"short"[..]).unwrap();
            logs.flush().unwrap();
        }
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.writer().find(b"a", b"kept").unwrap(), Some(1));
        assert!(logs.list(b"a", 7, 1, 100).is_err(), "reading the damaged item reports it");
    }

    #[test]
    fn a_clean_shutdowns_checkpoint_is_loaded_once_and_knows_every_item() {
        let dir = tempfile::tempdir().unwrap();
        let seq_of_7 = {
            let (_db, logs) = open(dir.path());
            assert_eq!(logs.index_source(), IndexSource::Scan);
            fill(&logs, 1000);
            let seq = held(&logs, 7);
            logs.checkpoint().unwrap();
            seq
        };
        assert!(checkpoint_file(dir.path()).exists());
        {
            let (_db, logs) = open(dir.path());
            assert_eq!(logs.index_source(), IndexSource::Checkpoint);
            assert!(!checkpoint_file(dir.path()).exists(), "a checkpoint is spent by the open that loads it");
            assert_eq!(held(&logs, 7), seq_of_7);
            assert!((0..1000).all(|i| held(&logs, i).is_some()), "every held item is found");
            assert_eq!(held(&logs, 1000), None);
            // The loaded index is kept up to date like a scanned one.
            let mut w = logs.writer();
            assert!(w.remove(b"b", seq_of_7.unwrap()).unwrap().is_some());
            w.commit().unwrap();
            assert_eq!(held(&logs, 7), None);
            logs.flush().unwrap();
        }
        // No clean shutdown this time (as after a crash): the items are read.
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.index_source(), IndexSource::Scan);
        assert_eq!(held(&logs, 7), None);
        assert_eq!(held(&logs, 8), Some(3));
    }

    #[test]
    fn a_write_after_the_checkpoint_voids_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, logs) = open(dir.path());
            fill(&logs, 10);
            logs.checkpoint().unwrap();
            // A late writer, after the shutdown's checkpoint.
            append(&logs, b"late", 1, &[b"after"]);
            logs.flush().unwrap();
        }
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.index_source(), IndexSource::Scan);
        assert_eq!(logs.writer().find(b"late", b"after").unwrap(), Some(1));
        assert!((0..10).all(|i| held(&logs, i).is_some()));
    }

    #[test]
    fn a_damaged_stale_or_missing_checkpoint_is_passed_over_for_reading_the_items() {
        let dir = tempfile::tempdir().unwrap();
        let file = checkpoint_file(dir.path());
        let stale = dir.path().join("stale");
        {
            let (_db, logs) = open(dir.path());
            fill(&logs, 100);
            logs.checkpoint().unwrap();
        }
        std::fs::copy(&file, &stale).unwrap();
        let damaged = |change: &dyn Fn(&mut Vec<u8>)| {
            {
                let (_db, logs) = open(dir.path());
                logs.checkpoint().unwrap();
            }
            let mut bytes = std::fs::read(&file).unwrap();
            change(&mut bytes);
            std::fs::write(&file, bytes).unwrap();
            let (_db, logs) = open(dir.path());
            assert_eq!(logs.index_source(), IndexSource::Scan);
            assert!((0..100).all(|i| held(&logs, i).is_some()), "the items were read instead");
        };
        damaged(&|bytes| bytes[CHECKPOINT_HEADER_LEN + 5] ^= 1);
        damaged(&|bytes| bytes.truncate(bytes.len() - 16));
        damaged(&|bytes| bytes.truncate(10));
        damaged(&|bytes| *bytes = std::fs::read(&stale).unwrap());
        damaged(&|bytes| bytes[0] = b'X');
        {
            let (_db, logs) = open(dir.path());
            logs.checkpoint().unwrap();
        }
        std::fs::remove_file(&file).unwrap();
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.index_source(), IndexSource::Scan);
        assert!((0..100).all(|i| held(&logs, i).is_some()));
    }

    #[test]
    fn a_checkpoint_is_not_trusted_after_writes_that_left_its_token() {
        // A build that knows nothing of checkpoints (an earlier one, run between the
        // stop and this open) appends without removing the token.
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, logs) = open(dir.path());
            fill(&logs, 10);
            logs.checkpoint().unwrap();
        }
        {
            let db = crate::engine::open_sled(dir.path(), 16 << 20, std::time::Duration::from_secs(10)).unwrap();
            let tree = db.open_tree("log").unwrap();
            let prefix = prefix(b"a").unwrap();
            let key = [&[RECORD], prefix.as_slice()].concat();
            let mut record = Record::decode(&tree.get(&key).unwrap().unwrap()).unwrap();
            tree.insert(item_key(&prefix, record.next_seq), [&1u64.to_be_bytes()[..], b"by an older build"].concat()).unwrap();
            record.next_seq += 1;
            record.count += 1;
            record.bytes += 17;
            tree.insert(key, &record.encode()[..]).unwrap();
            assert!(tree.get([CHECKPOINT]).unwrap().is_some(), "the token is still there");
            db.flush().unwrap();
        }
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.index_source(), IndexSource::Scan);
        assert_eq!(logs.writer().find(b"a", b"by an older build").unwrap(), Some(5));
        assert!((0..10).all(|i| held(&logs, i).is_some()));
    }

    #[test]
    fn a_checkpoint_that_cannot_be_written_fails_nothing_and_the_items_are_read() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the write fails.
        std::fs::create_dir(checkpoint_file(dir.path())).unwrap();
        {
            let (_db, logs) = open(dir.path());
            fill(&logs, 10);
            logs.checkpoint().unwrap();
        }
        let (_db, logs) = open(dir.path());
        assert_eq!(logs.index_source(), IndexSource::Scan);
        assert!((0..10).all(|i| held(&logs, i).is_some()));
        assert!(!dir.path().join("log.tmp").exists(), "no temporary file is left behind");
    }

    #[test]
    fn a_checkpoint_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (_db, logs) = open(dir.path());
        fill(&logs, 3);
        logs.checkpoint().unwrap();
        let mode = std::fs::metadata(checkpoint_file(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
