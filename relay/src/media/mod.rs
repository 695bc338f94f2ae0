//! The media role's durable store: sealed blobs as files, and a record per blob of
//! who uploaded it, its size and when it expires, with the quotas checked against
//! them. No networking (`server::media_service` takes pushes, pulls and serves).
//!
//! Layout under the media directory (`media.dir`, default `<data_dir>/media`):
//! - `blobs/`: a [`BlobStore`] (per blob `<id>.outboard`, `.data`, `.have`), served
//!   as is over `/kith/blob/1`;
//! - `held/<id>`: the blob's record, written atomically (temporary file, fsync,
//!   rename, directory fsync) only after the blob is complete and synced: version
//!   `1` (1 byte), sealed size, stored at and expires at (Unix milliseconds; 8 bytes
//!   each, big-endian), then the uploader's peer id bytes.
//!
//! A blob counts as held exactly when its record exists. On [`MediaStore::open`]
//! anything else is swept away: blob files without a record (a pull cut short by a
//! crash: it was never acknowledged), records whose blob files are gone, and
//! temporary files. So after `kill -9` every blob that was answered `held` is still
//! held, and nothing unaccounted stays on disk.
//!
//! Quotas count sealed bytes, per uploader and in total, including uploads in
//! progress ([`Reservation`]s), so concurrent uploads never overshoot a limit. A
//! blob is charged to its first uploader only; uploading a held blob again renews its
//! lifetime ([`MediaStore::renew`]) and charges nobody.
//!
//! The index is in memory behind a mutex that is never held across disk I/O; calls
//! that touch the disk are marked and belong on the blocking pool.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kith_p2p::blob::{BlobError, BlobId, BlobStore};
use kith_p2p::home::{Overwrite, write_private_file};
use libp2p::PeerId;

/// The record format's version.
const RECORD_VERSION: u8 = 1;
/// Length of a record before the uploader's peer id.
const RECORD_HEAD: usize = 1 + 8 + 8 + 8;
/// Longest peer id accepted in a record (an inlined Ed25519 key is 38 bytes).
const MAX_PEER_ID_LEN: usize = 64;

/// The store's limits. [`MediaLimits::default`] matches the config defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaLimits {
    /// How long a blob is held after its (last) upload.
    pub ttl: Duration,
    /// Sealed bytes all blobs together may hold.
    pub max_total_bytes: u64,
    /// Sealed bytes the blobs first uploaded by one peer may hold.
    pub max_bytes_per_uploader: u64,
    /// The largest sealed blob taken.
    pub max_blob_bytes: u64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        crate::config::MediaConfig::default().limits()
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Reading or writing a file failed.
    #[error("media store I/O on {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The blob store failed.
    #[error("media blob store")]
    Blob(#[from] BlobError),
    /// A committed upload's blob is not complete, or not of the reserved size.
    #[error("blob {0} is not complete at the size reserved")]
    Incomplete(BlobId),
}

/// Why an upload is refused before anything is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Larger than `max_blob_bytes`.
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The uploader would hold more than `max_bytes_per_uploader`.
    QuotaExceeded {
        /// The limit.
        limit: u64,
        /// What the uploader holds and is uploading now.
        used: u64,
    },
    /// All blobs together would exceed `max_total_bytes`.
    StoreFull,
    /// The blob is being uploaded (or expired) right now: retry.
    Busy,
}

/// What [`MediaStore::admit`] decides.
#[derive(Debug)]
pub enum Admission {
    /// The blob is held already: [`MediaStore::renew`] it.
    Held,
    /// Room is reserved: pull the blob into [`MediaStore::blobs`], then
    /// [`MediaStore::commit`] or [`MediaStore::discard`].
    Reserved(Reservation),
}

/// Room reserved for one upload in progress. Dropping it (an upload abandoned, a
/// task aborted) gives the room back; the blob's files, if any, are swept at the
/// next [`MediaStore::open`] or by [`MediaStore::discard`].
#[derive(Debug)]
pub struct Reservation {
    index: Arc<Mutex<Index>>,
    id: BlobId,
    uploader: PeerId,
    size: u64,
    released: bool,
}

impl Reservation {
    /// The blob being uploaded.
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// Its sealed size, as declared.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.released {
            lock(&self.index).unreserve(&self.id, self.uploader, self.size);
        }
    }
}

/// What the store holds (gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Blobs held.
    pub blobs: u64,
    /// Their sealed bytes.
    pub bytes: u64,
}

/// What one expiry sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Blobs deleted.
    pub blobs: u64,
    /// Their sealed bytes.
    pub bytes: u64,
}

/// A held blob's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    uploader: PeerId,
    size: u64,
    stored_at_ms: u64,
    expires_at_ms: u64,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEAD + MAX_PEER_ID_LEN);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.stored_at_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&self.uploader.to_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() > RECORD_HEAD + MAX_PEER_ID_LEN || bytes.first() != Some(&RECORD_VERSION) {
            return None;
        }
        let number = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Record {
            size: number(1)?,
            stored_at_ms: number(9)?,
            expires_at_ms: number(17)?,
            uploader: PeerId::from_bytes(bytes.get(RECORD_HEAD..)?).ok()?,
        })
    }
}

/// A pull cut short whose chunks are kept for its uploader to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parked {
    uploader: PeerId,
    size: u64,
    until_ms: u64,
}

/// How long a pull cut short is kept for its uploader to try again: long enough
/// for a connection to come back, short enough that abandoned parts do not hold
/// disk (they stay charged to the uploader meanwhile).
pub const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The in-memory index: held records, reservations and the sums the quotas use.
#[derive(Debug, Default)]
struct Index {
    held: HashMap<BlobId, Record>,
    /// Uploads in progress and blobs being expired: no second upload may start.
    busy: HashMap<BlobId, u64>,
    /// Pulls cut short, kept until `until_ms` for their uploader to resume; their
    /// bytes stay charged.
    parked: HashMap<BlobId, Parked>,
    /// Bytes per uploader, held and reserved.
    per_uploader: HashMap<PeerId, u64>,
    /// Bytes held and reserved, in all.
    total: u64,
    /// Bytes held.
    held_bytes: u64,
}

/// The least a blob counts against the quotas, whatever its size: each blob costs
/// a few files and an entry in memory, so byte quotas alone would let one uploader
/// hold hundreds of millions of tiny ones.
pub const MIN_BLOB_CHARGE: u64 = 64 * 1024;

/// What a blob of `size` sealed bytes counts against the quotas.
fn charged(size: u64) -> u64 {
    size.max(MIN_BLOB_CHARGE)
}

impl Index {
    fn charge(&mut self, uploader: PeerId, size: u64) {
        let size = charged(size);
        *self.per_uploader.entry(uploader).or_default() += size;
        self.total += size;
    }

    fn uncharge(&mut self, uploader: PeerId, size: u64) {
        let size = charged(size);
        if let Some(used) = self.per_uploader.get_mut(&uploader) {
            *used = used.saturating_sub(size);
            if *used == 0 {
                self.per_uploader.remove(&uploader);
            }
        }
        self.total = self.total.saturating_sub(size);
    }

    fn unreserve(&mut self, id: &BlobId, uploader: PeerId, size: u64) {
        if self.busy.remove(id).is_some() {
            self.uncharge(uploader, size);
        }
    }

    fn hold(&mut self, id: BlobId, record: Record) {
        self.held_bytes += record.size;
        self.held.insert(id, record);
    }
}

fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // Every update leaves the index consistent before it can panic.
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The media store (see the module docs). Cheap to clone; shared between tasks.
#[derive(Clone, Debug)]
pub struct MediaStore {
    dir: PathBuf,
    records: PathBuf,
    blobs: Arc<BlobStore>,
    limits: MediaLimits,
    index: Arc<Mutex<Index>>,
}

impl MediaStore {
    /// Opens (creating, mode 0700) the store in `dir`, loads the records and sweeps
    /// what no record accounts for. Blocks on disk I/O.
    pub fn open(dir: &Path, limits: MediaLimits) -> Result<MediaStore, MediaError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MediaError::Io { path, source }
        };
        kith_p2p::home::create_private_dir(dir).map_err(io(dir))?;
        let records = dir.join("held");
        kith_p2p::home::create_private_dir(&records).map_err(io(&records))?;
        let blob_dir = dir.join("blobs");
        let blobs = Arc::new(BlobStore::open(&blob_dir).map_err(io(&blob_dir))?);
        let store = MediaStore {
            dir: dir.to_path_buf(),
            records,
            blobs,
            limits,
            index: Arc::default(),
        };
        store.load()?;
        Ok(store)
    }

    /// Loads every record whose blob is there and deletes every other file.
    fn load(&self) -> Result<(), MediaError> {
        let mut index = Index::default();
        for (name, path) in entries(&self.records)? {
            let record = parse_id(&name).and_then(|id| {
                let bytes = std::fs::read(&path).ok()?;
                Some((id, Record::decode(&bytes)?))
            });
            match record {
                Some((id, record)) if self.blob_file(&id, "outboard").exists() => {
                    index.charge(record.uploader, record.size);
                    index.hold(id, record);
                }
                _ => {
                    if !name.starts_with('.') {
                        tracing::warn!(file = %path.display(), "dropping a media record without its blob");
                    }
                    remove_file(&path)?;
                }
            }
        }
        let mut orphans = Vec::new();
        for (name, path) in entries(&self.blobs_dir())? {
            match name.split_once('.').and_then(|(id, _)| parse_id(id)) {
                Some(id) if index.held.contains_key(&id) => {}
                Some(id) => orphans.push(id),
                // Temporary files (`.incoming-…`, `.<id>.have.tmp-…`).
                None => remove_file(&path)?,
            }
        }
        orphans.sort();
        orphans.dedup();
        for id in &orphans {
            self.blobs.remove(id)?;
        }
        if !orphans.is_empty() {
            tracing::info!(
                blobs = orphans.len(),
                "removed blobs of uploads never completed"
            );
        }
        *lock(&self.index) = index;
        Ok(())
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    fn blob_file(&self, id: &BlobId, ext: &str) -> PathBuf {
        self.blobs_dir().join(format!("{id}.{ext}"))
    }

    fn record_path(&self, id: &BlobId) -> PathBuf {
        self.records.join(id.to_string())
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The blob store the blobs are pulled into and served from.
    pub fn blobs(&self) -> Arc<BlobStore> {
        self.blobs.clone()
    }

    /// The limits.
    pub fn limits(&self) -> &MediaLimits {
        &self.limits
    }

    /// What is held now.
    pub fn stats(&self) -> MediaStats {
        let index = lock(&self.index);
        MediaStats {
            blobs: index.held.len() as u64,
            bytes: index.held_bytes,
        }
    }

    /// Whether blob `id` is held (recorded).
    pub fn holds(&self, id: &BlobId) -> bool {
        lock(&self.index).held.contains_key(id)
    }

    /// Decides whether `uploader` may upload blob `id` of `size` sealed bytes, and if
    /// so reserves the room. Memory only: never blocks on disk.
    pub fn admit(&self, uploader: PeerId, id: BlobId, size: u64) -> Result<Admission, Refusal> {
        let mut index = lock(&self.index);
        if index.held.contains_key(&id) {
            return Ok(Admission::Held);
        }
        if index.busy.contains_key(&id) {
            return Err(Refusal::Busy);
        }
        if let Some(parked) = index.parked.get(&id).copied() {
            // Its own uploader resumes it, the room still charged; anyone else waits
            // until it is resumed or swept.
            if parked.uploader != uploader || parked.size != size {
                return Err(Refusal::Busy);
            }
            index.parked.remove(&id);
            index.busy.insert(id, size);
            return Ok(Admission::Reserved(Reservation {
                index: self.index.clone(),
                id,
                uploader,
                size,
                released: false,
            }));
        }
        self.reserve(&mut index, uploader, id, size).map(Admission::Reserved)
    }

    /// Decides whether `uploader` may push a blob of `size` sealed bytes, whose id is
    /// known only once all of it has arrived, and if so reserves the room under a
    /// provisional id; [`MediaStore::settle`] names the blob then. Memory only.
    pub fn admit_push(&self, uploader: PeerId, size: u64) -> Result<Reservation, Refusal> {
        let mut index = lock(&self.index);
        let provisional = BlobId(rand::random());
        self.reserve(&mut index, uploader, provisional, size)
    }

    /// Names the blob a push's `reservation` is for, once every chunk arrived and
    /// its id is known: `Ok(true)` if `id` is held already (renew it; dropping the
    /// reservation frees its room), `Ok(false)` once the reservation is for `id`
    /// (import the blob into [`MediaStore::blobs`], then [`MediaStore::commit`]),
    /// [`Refusal::Busy`] if `id` is being uploaded, parked or expired right now.
    /// Memory only.
    pub fn settle(&self, reservation: &mut Reservation, id: BlobId) -> Result<bool, Refusal> {
        let mut index = lock(&self.index);
        if index.held.contains_key(&id) {
            return Ok(true);
        }
        if index.busy.contains_key(&id) || index.parked.contains_key(&id) {
            return Err(Refusal::Busy);
        }
        if let Some(size) = index.busy.remove(&reservation.id) {
            index.busy.insert(id, size);
        }
        reservation.id = id;
        Ok(false)
    }

    /// Checks the limits for `size` more bytes from `uploader` and reserves them
    /// under `id`.
    fn reserve(&self, index: &mut Index, uploader: PeerId, id: BlobId, size: u64) -> Result<Reservation, Refusal> {
        let limits = &self.limits;
        if size > limits.max_blob_bytes {
            return Err(Refusal::TooLarge {
                max: limits.max_blob_bytes,
            });
        }
        let used = index.per_uploader.get(&uploader).copied().unwrap_or(0);
        if used.saturating_add(charged(size)) > limits.max_bytes_per_uploader {
            return Err(Refusal::QuotaExceeded {
                limit: limits.max_bytes_per_uploader,
                used,
            });
        }
        if index.total.saturating_add(charged(size)) > limits.max_total_bytes {
            return Err(Refusal::StoreFull);
        }
        index.busy.insert(id, size);
        index.charge(uploader, size);
        Ok(Reservation {
            index: self.index.clone(),
            id,
            uploader,
            size,
            released: false,
        })
    }

    /// Records the pulled blob of `reservation` as held until `now_ms` plus the TTL
    /// and returns that expiry (Unix ms). The blob must be complete and synced in
    /// [`MediaStore::blobs`] at the reserved size ([`MediaError::Incomplete`]
    /// otherwise; the reservation is then still to be discarded). Durable when it
    /// returns. Blocks on disk I/O.
    pub fn commit(&self, reservation: &mut Reservation, now_ms: u64) -> Result<u64, MediaError> {
        let id = reservation.id;
        let complete = self.blobs.is_complete(&id)?
            && self
                .blobs
                .outboard(&id)?
                .is_some_and(|o| o.sealed_size() == reservation.size);
        if !complete {
            return Err(MediaError::Incomplete(id));
        }
        let record = Record {
            uploader: reservation.uploader,
            size: reservation.size,
            stored_at_ms: now_ms,
            expires_at_ms: self.expiry(now_ms),
        };
        self.write_record(&id, &record)?;
        let mut index = lock(&self.index);
        // The bytes stay charged to the uploader: from reserved to held.
        index.busy.remove(&id);
        index.hold(id, record);
        reservation.released = true;
        Ok(record.expires_at_ms)
    }

    /// Keeps what the upload of `reservation` pulled so far, its room still charged,
    /// for the same uploader to resume (its next [`MediaStore::admit`] of the blob)
    /// until [`PARKED_FOR`] from `now_ms`; [`MediaStore::expire`] deletes it after.
    /// Memory only (a restart sweeps it, having no record).
    pub fn park(&self, mut reservation: Reservation, now_ms: u64) {
        let until_ms = now_ms.saturating_add(u64::try_from(PARKED_FOR.as_millis()).unwrap_or(u64::MAX));
        let mut index = lock(&self.index);
        index.busy.remove(&reservation.id);
        index.parked.insert(
            reservation.id,
            Parked {
                uploader: reservation.uploader,
                size: reservation.size,
                until_ms,
            },
        );
        reservation.released = true;
    }

    /// Gives up the upload of `reservation`: deletes what was pulled and frees the
    /// room. Blocks on disk I/O.
    pub fn discard(&self, reservation: Reservation) -> Result<(), MediaError> {
        // Files first, while the id is still busy, so no new upload races them.
        let removed = self.blobs.remove(&reservation.id);
        drop(reservation);
        removed.map_err(MediaError::from)
    }

    /// Renews held blob `id` to expire at `now_ms` plus the TTL (never earlier than
    /// it would have); returns the new expiry, or `None` if the blob is not held
    /// (expired meanwhile). Durable when it returns. Blocks on disk I/O.
    ///
    /// A renewal that would move the expiry by less than 1/64 of the TTL is answered
    /// with the expiry already durable and writes nothing: anyone can ask to hold a
    /// blob the node holds, and each write is a sync.
    pub fn renew(&self, id: &BlobId, now_ms: u64) -> Result<Option<u64>, MediaError> {
        let wanted = self.expiry(now_ms);
        let step = u64::try_from(self.limits.ttl.as_millis() / 64).unwrap_or(u64::MAX);
        // The expiry in memory moves only once written: it is what was made durable,
        // so a renewal answered from it (or after a failed write, a retry) is true.
        let mut record = {
            let index = lock(&self.index);
            let Some(record) = index.held.get(id) else {
                return Ok(None);
            };
            if wanted.saturating_sub(record.expires_at_ms) < step.max(1) {
                return Ok(Some(record.expires_at_ms));
            }
            *record
        };
        record.expires_at_ms = wanted;
        self.write_record(id, &record)?;
        if let Some(held) = lock(&self.index).held.get_mut(id) {
            held.expires_at_ms = held.expires_at_ms.max(wanted);
        }
        Ok(Some(wanted))
    }

    /// Deletes every blob whose expiry is at or before `now_ms`, record first (from
    /// then on it is not held), then its files; and every parked pull past its time
    /// ([`MediaStore::park`]). Blocks on disk I/O.
    pub fn expire(&self, now_ms: u64) -> Result<Expired, MediaError> {
        let abandoned: Vec<(BlobId, Parked)> = {
            let mut index = lock(&self.index);
            let abandoned: Vec<(BlobId, Parked)> =
                index.parked.iter().filter(|(_, p)| p.until_ms <= now_ms).map(|(id, p)| (*id, *p)).collect();
            for (id, parked) in &abandoned {
                index.parked.remove(id);
                index.busy.insert(*id, parked.size);
            }
            abandoned
        };
        for (id, parked) in abandoned {
            if let Err(e) = self.blobs.remove(&id) {
                tracing::warn!(blob = %id, error = %e, "deleting an abandoned upload failed");
            }
            lock(&self.index).unreserve(&id, parked.uploader, parked.size);
        }
        let due: Vec<(BlobId, Record)> = {
            let mut index = lock(&self.index);
            let due: Vec<(BlobId, Record)> = index
                .held
                .iter()
                .filter(|(_, r)| r.expires_at_ms <= now_ms)
                .map(|(id, r)| (*id, *r))
                .collect();
            for (id, record) in &due {
                // Busy while its files go, so no new upload of it starts meanwhile.
                index.held.remove(id);
                index.held_bytes = index.held_bytes.saturating_sub(record.size);
                index.busy.insert(*id, record.size);
            }
            due
        };
        let mut expired = Expired::default();
        let mut failure = None;
        for (id, record) in due {
            let removed = remove_file(&self.record_path(&id))
                .and_then(|()| self.blobs.remove(&id).map_err(MediaError::from));
            lock(&self.index).unreserve(&id, record.uploader, record.size);
            match removed {
                Ok(()) => {
                    expired.blobs += 1;
                    expired.bytes += record.size;
                }
                // Its files are swept at the next start.
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if expired.blobs == 0 => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "some expired media blobs could not be deleted");
                Ok(expired)
            }
            None => Ok(expired),
        }
    }

    fn expiry(&self, now_ms: u64) -> u64 {
        let ttl_ms = u64::try_from(self.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_add(ttl_ms)
    }

    fn write_record(&self, id: &BlobId, record: &Record) -> Result<(), MediaError> {
        let path = self.record_path(id);
        write_private_file(&path, &record.encode(), Overwrite::Allowed)
            .map_err(|source| MediaError::Io { path, source })
    }
}

/// The files of `dir`: name and path.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, MediaError> {
    let io = |source| MediaError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    Ok(out)
}

fn remove_file(path: &Path) -> Result<(), MediaError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(MediaError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A blob id from its 64 lowercase hex digits (its `Display`).
fn parse_id(text: &str) -> Option<BlobId> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        id[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(BlobId(id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_p2p::blob::{BlobKey, seal};

    use super::*;

    const MIB: u64 = 1 << 20;

    fn limits() -> MediaLimits {
        MediaLimits {
            ttl: Duration::from_secs(60),
            max_total_bytes: 10 * MIB,
            max_bytes_per_uploader: 4 * MIB,
            max_blob_bytes: 4 * MIB,
        }
    }

    /// Seals `len` bytes into `store`'s blob store as a pull would leave them.
    fn pulled(store: &MediaStore, len: usize) -> (BlobId, u64) {
        let plain = vec![7u8; len];
        let mut temp = store.blobs().temp_file().unwrap();
        let outboard = seal(
            &BlobKey::generate(),
            len as u64,
            &mut plain.as_slice(),
            temp.as_file_mut(),
        )
        .unwrap();
        store.blobs().import(&outboard, temp.into_temp_path()).unwrap();
        (outboard.id(), outboard.sealed_size())
    }

    fn reserve(store: &MediaStore, uploader: PeerId, id: BlobId, size: u64) -> Reservation {
        match store.admit(uploader, id, size) {
            Ok(Admission::Reserved(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = Record {
            uploader: PeerId::random(),
            size: 1234,
            stored_at_ms: 5,
            expires_at_ms: 6,
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(&[]), None);
        assert_eq!(Record::decode(&record.encode()[..20]), None);
        let mut newer = record.encode();
        newer[0] = 2;
        assert_eq!(Record::decode(&newer), None);
        assert_eq!(Record::decode(&vec![1; 4096]), None);
        let id = BlobId([0xa5; 32]);
        assert_eq!(parse_id(&id.to_string()), Some(id));
        assert_eq!(parse_id("zz"), None);
        assert_eq!(parse_id(&"G".repeat(64)), None);
    }

    #[test]
    fn quotas_count_uploads_in_progress_and_a_blob_is_charged_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), limits()).unwrap();
        let (alice, bob) = (PeerId::random(), PeerId::random());
        assert_eq!(
            store
                .admit(alice, BlobId([1; 32]), 4 * MIB + 1)
                .unwrap_err(),
            Refusal::TooLarge { max: 4 * MIB }
        );
        let first = reserve(&store, alice, BlobId([1; 32]), 3 * MIB);
        // The same blob again while it is pulled: busy, not a second reservation.
        assert_eq!(
            store.admit(bob, BlobId([1; 32]), 3 * MIB).unwrap_err(),
            Refusal::Busy
        );
        assert_eq!(
            store.admit(alice, BlobId([2; 32]), 2 * MIB).unwrap_err(),
            Refusal::QuotaExceeded {
                limit: 4 * MIB,
                used: 3 * MIB
            }
        );
        let _second = reserve(&store, bob, BlobId([2; 32]), 3 * MIB);
        let _third = reserve(&store, PeerId::random(), BlobId([3; 32]), 3 * MIB);
        assert_eq!(
            store
                .admit(PeerId::random(), BlobId([4; 32]), 2 * MIB)
                .unwrap_err(),
            Refusal::StoreFull
        );
        // An abandoned upload gives its room back.
        drop(first);
        assert!(matches!(
            store.admit(alice, BlobId([5; 32]), MIB),
            Ok(Admission::Reserved(_))
        ));
    }

    #[test]
    fn a_committed_blob_survives_a_restart_and_an_unfinished_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let alice = PeerId::random();
        let (held, unfinished) = {
            let store = MediaStore::open(dir.path(), limits()).unwrap();
            let (id, size) = pulled(&store, 300_000);
            let mut reservation = reserve(&store, alice, id, size);
            let expires = store.commit(&mut reservation, 1_000).unwrap();
            assert_eq!(expires, 61_000);
            assert!(store.holds(&id));
            // Pulled but never committed: as if the relay died mid-upload.
            let (other, other_size) = pulled(&store, 10);
            std::mem::forget(reserve(&store, alice, other, other_size));
            (id, other)
        };
        let store = MediaStore::open(dir.path(), limits()).unwrap();
        assert!(store.holds(&held));
        assert!(!store.holds(&unfinished));
        assert!(store.blobs().is_complete(&held).unwrap());
        assert_eq!(
            store.blobs().outboard(&unfinished).unwrap(),
            None,
            "its files are gone"
        );
        assert_eq!(
            store.stats(),
            MediaStats {
                blobs: 1,
                bytes: 300_000 + 2 * 16
            }
        );
        // Still charged to its uploader after the restart.
        assert!(matches!(
            store.admit(alice, BlobId([9; 32]), 4 * MIB),
            Err(Refusal::QuotaExceeded { .. })
        ));
    }

    #[test]
    fn a_commit_of_a_blob_not_pulled_or_of_another_size_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), limits()).unwrap();
        let mut missing = reserve(&store, PeerId::random(), BlobId([1; 32]), 100);
        assert!(matches!(
            store.commit(&mut missing, 0),
            Err(MediaError::Incomplete(_))
        ));
        store.discard(missing).unwrap();
        let (id, size) = pulled(&store, 1000);
        let mut wrong = reserve(&store, PeerId::random(), id, size - 1);
        assert!(matches!(
            store.commit(&mut wrong, 0),
            Err(MediaError::Incomplete(_))
        ));
        store.discard(wrong).unwrap();
        assert_eq!(store.blobs().outboard(&id).unwrap(), None);
        assert_eq!(store.stats(), MediaStats::default());
    }

    #[test]
    fn tiny_blobs_count_at_least_the_minimum_charge_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), limits()).unwrap();
        let alice = PeerId::random();
        // 16 sealed bytes each (an empty file): without a minimum, 4 MiB would hold
        // some 260,000 of them.
        let fit = usize::try_from(limits().max_bytes_per_uploader / MIN_BLOB_CHARGE).unwrap();
        let held: Vec<Reservation> = (0..fit).map(|n| reserve(&store, alice, BlobId([n as u8; 32]), 16)).collect();
        assert!(matches!(store.admit(alice, BlobId([255; 32]), 16), Err(Refusal::QuotaExceeded { .. })));
        drop(held);
        assert!(matches!(store.admit(alice, BlobId([255; 32]), 16), Ok(Admission::Reserved(_))), "room again once they go");
    }

    #[test]
    fn renewal_extends_the_lifetime_and_expiry_deletes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), limits()).unwrap();
        let alice = PeerId::random();
        let (id, size) = pulled(&store, 5000);
        let mut reservation = reserve(&store, alice, id, size);
        store.commit(&mut reservation, 0).unwrap();
        assert!(matches!(
            store.admit(PeerId::random(), id, size),
            Ok(Admission::Held)
        ));
        assert_eq!(store.renew(&id, 30_000).unwrap(), Some(90_000));
        // Asked again within 1/64 of the TTL: the same expiry, nothing rewritten.
        let record = store.record_path(&id);
        let written = std::fs::metadata(&record).unwrap().modified().unwrap();
        assert_eq!(store.renew(&id, 30_500).unwrap(), Some(90_000));
        assert_eq!(std::fs::metadata(&record).unwrap().modified().unwrap(), written, "no write for a renewal that moves nothing");
        assert_eq!(store.expire(60_000).unwrap(), Expired::default());
        assert_eq!(
            store.expire(90_000).unwrap(),
            Expired {
                blobs: 1,
                bytes: size
            }
        );
        assert_eq!(store.renew(&id, 90_000).unwrap(), None);
        assert_eq!(store.stats(), MediaStats::default());
        assert!(
            kith_files(dir.path()).is_empty(),
            "{:?}",
            kith_files(dir.path())
        );
        // Its quota is free again.
        assert!(matches!(
            store.admit(alice, BlobId([3; 32]), 4 * MIB),
            Ok(Admission::Reserved(_))
        ));
    }

    /// Every file under `dir`.
    fn kith_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["held", "blobs"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                out.push(entry.unwrap().path());
            }
        }
        out
    }

    #[test]
    fn a_parked_pull_is_resumed_by_its_uploader_only_and_swept_when_its_time_is_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path(), limits()).unwrap();
        let (alice, mallory) = (PeerId::random(), PeerId::random());
        let (id, size) = pulled(&store, MIB as usize);
        store.park(reserve(&store, alice, id, size), 1_000);
        assert!(!store.holds(&id));
        assert!(matches!(store.admit(mallory, id, size), Err(Refusal::Busy)), "another uploader waits");
        // Still charged to Alice: her quota (4 MiB) has room for less than 3 more MiB.
        assert!(matches!(store.admit(alice, BlobId([9; 32]), 3 * MIB + 1), Err(Refusal::QuotaExceeded { .. })));
        // Alice resumes it; the room is not charged twice.
        let mut resumed = reserve(&store, alice, id, size);
        store.commit(&mut resumed, 1 << 40).unwrap();
        assert!(store.holds(&id));
        assert_eq!(lock(&store.index).per_uploader.get(&alice).copied(), Some(size));

        // A part left alone is deleted once its time is up, and its room freed.
        let (other, other_size) = pulled(&store, MIB as usize);
        store.park(reserve(&store, alice, other, other_size), 1_000);
        let parked_ms = u64::try_from(PARKED_FOR.as_millis()).unwrap();
        store.expire(1_000 + parked_ms - 1).unwrap();
        assert!(store.blobs().outboard(&other).unwrap().is_some(), "kept until its time");
        store.expire(1_000 + parked_ms).unwrap();
        assert!(store.blobs().outboard(&other).unwrap().is_none(), "deleted after");
        assert_eq!(lock(&store.index).per_uploader.get(&alice).copied(), Some(size), "only the held blob is charged");
        assert!(matches!(store.admit(mallory, other, other_size), Ok(Admission::Reserved(_))));
    }
}
