//! `/kith/blob/1`: fetching blobs over raw libp2p streams, one request per stream.
//!
//! A request is `1` (version, 1 byte), a kind (1 byte) and the blob id (32 bytes):
//! - kind [`KIND_OUTBOARD`]: the answer is a status byte, then on [`OK`] the
//!   plaintext length (8 bytes) and one 32-byte hash per chunk;
//! - kind [`KIND_CHUNKS`]: then a count (2 bytes, 1 to [`MAX_BATCH`]) and that many
//!   chunk indexes (8 bytes each); the answer is, per index, a status byte and on
//!   [`OK`] the sealed chunk, whose size the asker knows from the outboard.
//!
//! Integers are big-endian. Statuses: [`OK`], [`NOT_HELD`], [`BAD_REQUEST`].
//! Nothing a peer sends is trusted: the outboard is checked against the id and every
//! chunk against its hash before it is stored ([`super::BlobStore::put`]). A blob id
//! is a capability: ids travel only inside sealed messages, and whoever names one may
//! fetch its sealed chunks, which are useless without the key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::stream::{self, StreamExt as _};
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams};
use tokio::sync::Semaphore;

use super::{BlobError, BlobId, BlobStore, CHUNK_SIZE, MAX_FILE_SIZE, Outboard, TAG_SIZE, chunk_count};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/blob/1");
/// The only request version.
const VERSION: u8 = 1;
/// Request kind: the blob's outboard.
pub const KIND_OUTBOARD: u8 = 1;
/// Request kind: some of its sealed chunks.
pub const KIND_CHUNKS: u8 = 2;
/// Status: here it is.
pub const OK: u8 = 0;
/// Status: this peer does not hold that blob or chunk.
pub const NOT_HELD: u8 = 1;
/// Status: the request made no sense.
pub const BAD_REQUEST: u8 = 2;
/// Most chunks asked for in one request.
pub const MAX_BATCH: usize = 8;
/// Requests a fetch keeps in flight at once (memory: one chunk each).
const IN_FLIGHT: usize = 4;
/// How often one batch is asked for when its stream fails in passing.
const BATCH_TRIES: u32 = 3;
/// Pause before a batch is asked for again.
const BATCH_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long one request may take, answer included, before it is abandoned.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams served at once; more wait their turn.
const MAX_SERVING: usize = 64;
/// Streams one peer may have in service at once (a fetch uses [`IN_FLIGHT`]); more
/// are dropped, so a stranger holding streams open cannot take every slot.
const MAX_SERVING_PER_PEER: usize = 8;
/// How long a peer has to send its request (a few dozen bytes).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fetch stopped. What was received and checked before stays in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The peer does not hold the blob, or a chunk of it.
    #[error("the peer does not hold {what}")]
    NotHeld {
        /// `the blob` or `chunk N`.
        what: String,
    },
    /// The peer sent something that does not match the blob (or refused our request).
    #[error("the peer sent a bad answer: {0}")]
    BadAnswer(String),
    /// Opening a stream or talking over it failed (the peer went away, a timeout).
    #[error("talking to the peer failed: {0}")]
    Network(String),
    /// Storing failed.
    #[error(transparent)]
    Store(BlobError),
    /// The caller asked it to stop ([`fetch_until`]) before the blob was complete.
    #[error("the fetch was stopped")]
    Stopped,
}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> FetchError {
        FetchError::Network(e.to_string())
    }
}

impl From<BlobError> for FetchError {
    fn from(e: BlobError) -> FetchError {
        match e {
            e @ (BlobError::BadChunk { .. } | BlobError::BadOutboard | BlobError::TooLarge) => {
                FetchError::BadAnswer(e.to_string())
            }
            e => FetchError::Store(e),
        }
    }
}

/// Serves the blobs of `store` to every peer that asks, until `incoming` ends (the
/// swarm is gone). Each stream is served in its own task; at most [`MAX_SERVING`] at
/// once, and a stream that comes while all are taken is dropped (its opener asks
/// again).
pub async fn serve(store: Arc<BlobStore>, incoming: IncomingStreams) {
    serve_counted(store, incoming, Arc::new(|_, _, _| {})).await;
}

/// A callback told the peer, the blob and the size of every sealed chunk written to a peer.
pub type Served = Arc<dyn Fn(&PeerId, &BlobId, u64) + Send + Sync>;

/// [`serve`], telling `served` of every sealed chunk written to a peer (a media node
/// counts the bytes it serves; a node, what an upload to a media node has taken).
pub async fn serve_counted(store: Arc<BlobStore>, mut incoming: IncomingStreams, served: Served) {
    let permits = Arc::new(Semaphore::new(MAX_SERVING));
    let per_peer: Arc<std::sync::Mutex<HashMap<PeerId, usize>>> = Arc::default();
    while let Some((peer, stream)) = incoming.next().await {
        // One peer cannot take every slot: past its share its streams are dropped.
        if !take_share(&per_peer, peer) {
            tracing::debug!(%peer, "too many blob requests from one peer; dropping a stream");
            continue;
        }
        // Waiting for a slot would leave the streams behind this one in libp2p-stream's
        // buffer, past their openers' patience: a stream with no slot is dropped now,
        // and its opener asks again.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                tracing::debug!(%peer, "every blob serving slot is taken; dropping a stream");
                give_share_back(&per_peer, peer);
                continue;
            }
            Err(tokio::sync::TryAcquireError::Closed) => return,
        };
        let store = store.clone();
        let per_peer = per_peer.clone();
        let counter = served.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let served = tokio::time::timeout(REQUEST_TIMEOUT, answer(&store, &mut stream, &|id: &BlobId, n: u64| counter(&peer, id, n))).await;
            if let Ok(Err(e)) | Err(e) = served.map_err(std::io::Error::from) {
                tracing::debug!(%peer, error = %e, "serving a blob request failed");
            }
            // Answered: the peer may ask again at once, while this stream still
            // closes (which waits on the peer), so the close no longer counts
            // against its share.
            give_share_back(&per_peer, peer);
            let _ = tokio::time::timeout(ASK_TIMEOUT, stream.close()).await;
            drop(permit);
        });
    }
}

/// Counts a stream against `peer`'s share; false when it already has
/// [`MAX_SERVING_PER_PEER`] in service.
fn take_share(shares: &std::sync::Mutex<HashMap<PeerId, usize>>, peer: PeerId) -> bool {
    let mut shares = shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = shares.entry(peer).or_default();
    if *count >= MAX_SERVING_PER_PEER {
        return false;
    }
    *count += 1;
    true
}

fn give_share_back(shares: &std::sync::Mutex<HashMap<PeerId, usize>>, peer: PeerId) {
    let mut shares = shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(count) = shares.get_mut(&peer) {
        *count -= 1;
        if *count == 0 {
            shares.remove(&peer);
        }
    }
}

/// Reads one request from `stream` and answers it, telling `served` each chunk's size.
async fn answer(store: &Arc<BlobStore>, stream: &mut libp2p::Stream, served: &(dyn Fn(&BlobId, u64) + Send + Sync)) -> std::io::Result<()> {
    let mut head = [0u8; 34];
    tokio::time::timeout(ASK_TIMEOUT, stream.read_exact(&mut head)).await??;
    let id = BlobId(head[2..].try_into().unwrap_or([0; 32]));
    let outboard = match head[..2] {
        [VERSION, KIND_OUTBOARD | KIND_CHUNKS] => store.outboard(&id).map_err(std::io::Error::other)?,
        _ => return stream.write_all(&[BAD_REQUEST]).await,
    };
    if head[1] == KIND_OUTBOARD {
        let Some(outboard) = outboard else { return stream.write_all(&[NOT_HELD]).await };
        let mut out = Vec::with_capacity(9 + outboard.hashes().len() * 32);
        out.push(OK);
        out.extend_from_slice(&outboard.len().to_be_bytes());
        for hash in outboard.hashes() {
            out.extend_from_slice(hash);
        }
        return stream.write_all(&out).await;
    }
    let mut count = [0u8; 2];
    tokio::time::timeout(ASK_TIMEOUT, stream.read_exact(&mut count)).await??;
    let count = u16::from_be_bytes(count) as usize;
    if count == 0 || count > MAX_BATCH {
        return stream.write_all(&[BAD_REQUEST]).await;
    }
    let mut indexes = vec![0u8; count * 8];
    tokio::time::timeout(ASK_TIMEOUT, stream.read_exact(&mut indexes)).await??;
    for index in indexes.chunks_exact(8) {
        let index = u64::from_be_bytes(index.try_into().unwrap_or([0xff; 8]));
        // Reading and checking (for a plaintext blob: sealing again) off the async
        // workers, like storing on the fetching side.
        let reading = store.clone();
        let chunk = tokio::task::spawn_blocking(move || reading.get(&id, index))
            .await
            .unwrap_or_else(|e| Err(BlobError::Io(std::io::Error::other(e))));
        match chunk {
            Ok(Some(sealed)) => {
                stream.write_all(&[OK]).await?;
                stream.write_all(&sealed).await?;
                served(&id, sealed.len() as u64);
            }
            Ok(None) => stream.write_all(&[NOT_HELD]).await?,
            Err(e) => {
                tracing::warn!(blob = %id, index, error = %e, "a held chunk cannot be served");
                stream.write_all(&[NOT_HELD]).await?;
            }
        }
    }
    stream.flush().await
}

/// Fetches blob `id` from `peer` into `store`: its outboard first (unless held), then
/// every chunk still missing, [`IN_FLIGHT`] requests at a time, each chunk checked
/// before it is stored. Resumes whatever an earlier fetch (from any peer) left: only
/// missing chunks are asked for. `progress` is told how many chunks are held so far
/// and how many there are. On success the blob is complete and durable.
pub async fn fetch(
    control: &Control,
    peer: PeerId,
    id: BlobId,
    store: &Arc<BlobStore>,
    progress: impl FnMut(u64, u64),
) -> Result<(), FetchError> {
    fetch_until(control, peer, id, store, progress, &AtomicBool::new(false)).await
}

/// [`fetch`], which asks for no more chunks once `stop` is set: the requests
/// already in flight end first, what they stored is made durable, and it returns
/// [`FetchError::Stopped`] (unless the blob is complete by then).
pub async fn fetch_until(
    control: &Control,
    peer: PeerId,
    id: BlobId,
    store: &Arc<BlobStore>,
    mut progress: impl FnMut(u64, u64),
    stop: &AtomicBool,
) -> Result<(), FetchError> {
    let outboard = match store.outboard(&id)? {
        Some(outboard) => outboard,
        None => {
            let outboard = fetch_outboard(control.clone(), peer, id).await?;
            store.add(&outboard)?;
            outboard
        }
    };
    let missing = store.missing(&id)?.unwrap_or_default();
    let total = outboard.chunks();
    let mut held = total - missing.len() as u64;
    progress(held, total);
    let batches: Vec<Vec<u64>> = missing.chunks(MAX_BATCH).map(<[u64]>::to_vec).collect();
    let mut results = stream::iter(batches)
        .take_while(|_| std::future::ready(!stop.load(Ordering::Acquire)))
        .map(|batch| fetch_batch(control, peer, id, &outboard, store, batch))
        .buffer_unordered(IN_FLIGHT);
    let mut since_sync = 0;
    // A sync runs beside the fetch (chunks keep arriving and being stored while the
    // disk catches up); the next one waits for it.
    let mut syncing: Option<tokio::task::JoinHandle<Result<(), BlobError>>> = None;
    while let Some(result) = results.next().await {
        let stored = match result {
            Ok(stored) => stored,
            Err(e) => {
                finish(syncing.take()).await?;
                sync(store, id).await?;
                return Err(e);
            }
        };
        held += stored;
        since_sync += stored;
        if since_sync >= super::SYNC_EVERY {
            finish(syncing.take()).await?;
            let store = store.clone();
            syncing = Some(tokio::task::spawn_blocking(move || store.sync(&id)));
            since_sync = 0;
        }
        progress(held, total);
    }
    finish(syncing.take()).await?;
    sync(store, id).await?;
    if stop.load(Ordering::Acquire) && !store.is_complete(&id)? {
        return Err(FetchError::Stopped);
    }
    Ok(())
}

/// Waits for a sync started earlier, if any.
async fn finish(syncing: Option<tokio::task::JoinHandle<Result<(), BlobError>>>) -> Result<(), FetchError> {
    if let Some(syncing) = syncing {
        syncing.await.map_err(|e| FetchError::Store(BlobError::Io(std::io::Error::other(e))))??;
    }
    Ok(())
}

/// Makes what was stored durable (fsync, off the async workers).
async fn sync(store: &Arc<BlobStore>, id: BlobId) -> Result<(), FetchError> {
    let store = store.clone();
    finish(Some(tokio::task::spawn_blocking(move || store.sync(&id)))).await
}

/// Opens a stream to `peer` and sends `request`.
async fn ask(control: Control, peer: PeerId, request: &[u8]) -> Result<libp2p::Stream, FetchError> {
    let mut stream = crate::streams::open(&control, peer, PROTOCOL).await.map_err(|e| FetchError::Network(e.to_string()))?;
    stream.write_all(request).await?;
    stream.flush().await?;
    Ok(stream)
}

/// The request head: version, kind, id.
fn head(kind: u8, id: &BlobId) -> Vec<u8> {
    let mut out = vec![VERSION, kind];
    out.extend_from_slice(&id.0);
    out
}

/// Reads a status byte; anything but [`OK`] ends the request.
async fn status(stream: &mut libp2p::Stream, what: impl FnOnce() -> String) -> Result<(), FetchError> {
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).await?;
    match status[0] {
        OK => Ok(()),
        NOT_HELD => Err(FetchError::NotHeld { what: what() }),
        other => Err(FetchError::BadAnswer(format!("status {other}"))),
    }
}

/// Fetches the outboard of `id` from `peer`, checked against the id (a media node
/// reads the blob's size from it before pulling any chunk).
pub async fn fetch_outboard(control: Control, peer: PeerId, id: BlobId) -> Result<Outboard, FetchError> {
    let fetching = async {
        let mut stream = ask(control, peer, &head(KIND_OUTBOARD, &id)).await?;
        status(&mut stream, || "the blob".into()).await?;
        let mut len = [0u8; 8];
        stream.read_exact(&mut len).await?;
        let len = u64::from_be_bytes(len);
        if len > MAX_FILE_SIZE {
            return Err(FetchError::BadAnswer("a blob over the size limit".into()));
        }
        // Bounded by the size limit: at most 8 MiB of hashes.
        let mut hashes = vec![0u8; chunk_count(len) as usize * 32];
        stream.read_exact(&mut hashes).await?;
        let hashes = hashes.chunks_exact(32).filter_map(|h| <[u8; 32]>::try_from(h).ok()).collect();
        Ok(Outboard::new(&id, len, hashes)?)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetching).await.map_err(|_| FetchError::Network("timed out".into()))?
}

/// [`fetch_chunks`], asked again (for what is still missing) when the stream failed
/// in passing, up to [`BATCH_TRIES`] times: one reset stream does not end a transfer
/// of thousands. A wrong answer ends it at once (the caller tries another source).
async fn fetch_batch(
    control: &Control,
    peer: PeerId,
    id: BlobId,
    outboard: &Outboard,
    store: &Arc<BlobStore>,
    batch: Vec<u64>,
) -> Result<u64, FetchError> {
    let all = batch.len() as u64;
    let mut asking = batch;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_chunks(control.clone(), peer, id, outboard, store, asking.clone()).await {
            Ok(_) => return Ok(all),
            Err(FetchError::Network(e)) if attempt < BATCH_TRIES => {
                tracing::debug!(%peer, error = %e, attempt, "a blob request failed in passing; asking again");
                tokio::time::sleep(BATCH_RETRY_PAUSE).await;
                let missing = store.missing(&id)?.unwrap_or_default();
                asking.retain(|index| missing.binary_search(index).is_ok());
                if asking.is_empty() {
                    return Ok(all);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Fetches `batch` (chunk indexes) of `id` and stores each as it arrives; returns how
/// many were stored.
async fn fetch_chunks(
    control: Control,
    peer: PeerId,
    id: BlobId,
    outboard: &Outboard,
    store: &Arc<BlobStore>,
    batch: Vec<u64>,
) -> Result<u64, FetchError> {
    let fetching = async {
        let mut request = head(KIND_CHUNKS, &id);
        request.extend_from_slice(&(batch.len() as u16).to_be_bytes());
        for index in &batch {
            request.extend_from_slice(&index.to_be_bytes());
        }
        let mut stream = ask(control, peer, &request).await?;
        let mut chunk = vec![0u8; CHUNK_SIZE + TAG_SIZE];
        for &index in &batch {
            status(&mut stream, || format!("chunk {index}")).await?;
            let size = outboard.sealed_len(index).ok_or_else(|| FetchError::BadAnswer("a chunk past the end".into()))?;
            stream.read_exact(&mut chunk[..size]).await?;
            // Checking, opening and writing a chunk is ~1 ms of CPU and disk: done on
            // the blocking pool, so the batches in flight spread over the cores.
            let storing = store.clone();
            chunk = tokio::task::spawn_blocking(move || storing.put(&id, index, &chunk[..size]).map(|_| chunk))
                .await
                .map_err(|e| FetchError::Store(BlobError::Io(std::io::Error::other(e))))??;
        }
        Ok(batch.len() as u64)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetching).await.map_err(|_| FetchError::Network("timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_gets_a_bounded_share_of_the_serving_slots() {
        let shares = std::sync::Mutex::new(HashMap::new());
        let (greedy, other) = (PeerId::random(), PeerId::random());
        for _ in 0..MAX_SERVING_PER_PEER {
            assert!(take_share(&shares, greedy));
        }
        assert!(!take_share(&shares, greedy), "past its share");
        assert!(take_share(&shares, other), "others are still served");
        give_share_back(&shares, greedy);
        assert!(take_share(&shares, greedy), "a finished stream frees a place");
        for _ in 0..MAX_SERVING_PER_PEER {
            give_share_back(&shares, greedy);
        }
        give_share_back(&shares, other);
        assert!(shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty(), "nothing left behind");
    }
}
