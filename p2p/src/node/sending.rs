//! Progress of files being sent, for [`Event::FileSending`]: sealing (bytes read from
//! the file) and uploads to media nodes (sealed bytes the media node has pulled, as
//! counted where this node serves them).

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::broadcast;

use super::event::{Event, SendingPhase};
use crate::blob::{BlobId, sealed_size_of};

/// Reports one phase of one file's sending, at most once per `every`
/// (`Timers::file_progress_every`; the first report and the one that reaches the
/// size always go out).
pub(crate) struct Progress {
    events: broadcast::Sender<Event>,
    path: String,
    size: u64,
    phase: SendingPhase,
    every: Duration,
    last: Option<Instant>,
}

impl Progress {
    pub(crate) fn new(
        events: broadcast::Sender<Event>,
        path: String,
        size: u64,
        phase: SendingPhase,
        every: Duration,
    ) -> Progress {
        Progress { events, path, size, phase, every, last: None }
    }

    /// Says `have` bytes of the file are done in this phase.
    pub(crate) fn report(&mut self, have: u64) {
        let now = Instant::now();
        if have < self.size && self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            return;
        }
        self.last = Some(now);
        let (path, phase, size) = (self.path.clone(), self.phase, self.size);
        // Nobody listening is fine.
        let _ = self.events.send(Event::FileSending { path, phase, have: have.min(size), size });
    }

    /// The same report started afresh (another media node's upload).
    pub(crate) fn fresh(&self) -> Progress {
        Progress::new(self.events.clone(), self.path.clone(), self.size, self.phase, self.every)
    }

    /// The least time between two reports.
    pub(crate) fn every(&self) -> Duration {
        self.every
    }

    /// The file's size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// A reader that reports how much of the file was read (sealing reads it once).
pub(crate) struct Counting<R> {
    inner: R,
    read: u64,
    progress: Progress,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R, progress: Progress) -> Counting<R> {
        Counting { inner, read: 0, progress }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.report(self.read);
        Ok(n)
    }
}

/// Uploads being watched (a blob and the media node pulling it), and the sealed
/// bytes of each served to that node since. Bytes of the blob served to anyone
/// else (a group member fetching it directly) are not the upload's.
#[derive(Clone, Default)]
pub(crate) struct Uploads(Arc<Mutex<HashMap<UploadKey, Arc<AtomicU64>>>>);

/// An upload: the media node pulling it, and the blob.
type UploadKey = (PeerId, BlobId);

impl Uploads {
    /// Counts `bytes` of blob `id` served to `peer` (a no-op unless that upload is watched).
    pub(crate) fn served(&self, peer: &PeerId, id: &BlobId, bytes: u64) {
        if let Some(count) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&(*peer, *id)) {
            count.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Starts counting what is served of blob `id` to `media`, from zero, until the
    /// watch drops.
    pub(crate) fn watch(&self, media: PeerId, id: BlobId) -> Watch {
        let served = Arc::new(AtomicU64::new(0));
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert((media, id), served.clone());
        Watch { uploads: self.clone(), key: (media, id), served }
    }
}

/// One upload being watched ([`Uploads::watch`]).
pub(crate) struct Watch {
    uploads: Uploads,
    key: UploadKey,
    served: Arc<AtomicU64>,
}

impl Watch {
    /// The plaintext bytes of a file of `size` bytes served so far (sealing adds a
    /// tag per chunk; served counts sealed bytes, and may count a chunk twice when
    /// it is asked for again).
    pub(crate) fn plain_served(&self, size: u64) -> u64 {
        let sealed = sealed_size_of(size);
        let served = u128::from(self.served.load(Ordering::Relaxed));
        u64::try_from(served * u128::from(size) / u128::from(sealed.max(1))).unwrap_or(size).min(size)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.uploads.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::blob::TAG_SIZE;

    #[test]
    fn progress_is_throttled_but_the_first_and_the_end_always_go_out() {
        let (events, mut rx) = broadcast::channel(1024);
        let size = 10_000;
        let mut progress = Progress::new(events, "/f".into(), size, SendingPhase::Sealing, Duration::from_millis(250));
        for have in 1..=size {
            progress.report(have);
        }
        let haves: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| match e {
                Event::FileSending { have, .. } => have,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(haves.first(), Some(&1));
        assert_eq!(haves.last(), Some(&size));
        // Ten thousand reports in a tight loop: a handful of events even on a machine
        // that stalls now and then, not one per report.
        assert!(haves.len() < 100, "{} events for {size} reports", haves.len());
    }

    #[test]
    fn only_watched_uploads_count_and_a_dropped_watch_stops_counting() {
        let uploads = Uploads::default();
        let (a, b) = (BlobId([1; 32]), BlobId([2; 32]));
        let size = 3 * crate::blob::CHUNK_SIZE as u64;
        let (media, member) = (PeerId::random(), PeerId::random());
        let watch = uploads.watch(media, a);
        uploads.served(&media, &a, size / 3 + TAG_SIZE as u64);
        uploads.served(&media, &b, 1 << 20);
        uploads.served(&member, &a, 1 << 20);
        assert_eq!(watch.plain_served(size), size / 3, "only what the media node took of this blob");
        drop(watch);
        uploads.served(&media, &a, 1);
        assert!(uploads.0.lock().unwrap().is_empty());
    }
}
