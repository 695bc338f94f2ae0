//! `/kith/media/1`: asking a media node to hold a blob (upload), the client side and
//! the wire format both sides use. The media node pulls the blob from the uploader
//! over `/kith/blob/1` ([`super::transfer::fetch`]), so every chunk it stores is
//! verified exactly as a recipient verifies it; the uploader only asks.
//!
//! One request per stream, integers big-endian (docs/PROTOCOL.md, "Media nodes"):
//!
//! - request, [`REQUEST_LEN`] bytes: version `1`, kind [`KIND_HOLD`], the blob id
//!   (32 bytes), the blob's sealed size (8 bytes: what the media node will store,
//!   [`super::Outboard::sealed_size`]), so the node checks its quotas *before*
//!   pulling anything;
//! - answer: a status byte, then a fixed tail per status ([`Answer`]): [`HELD`] and
//!   the expiry (8 bytes, Unix seconds), or a refusal. At most [`MAX_ANSWER_LEN`]
//!   bytes; an unknown status is a bad answer, never a guess.
//!
//! A sender that has not sealed the file yet can **push** it instead
//! ([`KIND_PUSH`], [`Push`]): the request names only the sealed size, the media node
//! answers [`READY`] once it has admitted it, and the sender writes every sealed
//! chunk in order as it seals them, so sealing and uploading are one pass over the
//! file instead of two in a row. The media node hashes each chunk as it arrives and
//! computes the blob id itself from those hashes ([`receive_push`]): content
//! addressing means a pusher cannot put anything under an id but the one its bytes
//! make. Once it has sealed the whole file, the sender sends the id it computed; the
//! media node holds the blob only if the two agree (a sender whose file changed, or
//! whose disk failed, sends none and nothing is held), and answers [`PUSHED`].
//!
//! Nothing is trusted: the request is fixed-size and read with a deadline, an unknown
//! version is answered [`UNSUPPORTED_VERSION`] (told apart from a malformed request),
//! and the media node checks the outboard it pulls against the declared size. A media
//! node that predates pushes answers a push [`BAD_REQUEST`] (an unknown kind) before
//! any chunk is sent, and the sender falls back to a pull.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;

use super::{BlobError, BlobId, BlobStore};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/media/1");
/// The only request version.
pub const VERSION: u8 = 1;
/// Request kind: hold this blob (pull it from me).
pub const KIND_HOLD: u8 = 1;
/// Request kind: take the blob whose sealed chunks follow on this stream.
pub const KIND_PUSH: u8 = 2;
/// Length of a request: version, kind, id (32 reserved zero bytes in a push), sealed
/// size.
pub const REQUEST_LEN: usize = 2 + 32 + 8;

/// Status: the blob is held, durably, until the expiry that follows.
pub const HELD: u8 = 0;
/// Status: the access policy does not admit the uploader.
pub const NOT_ALLOWED: u8 = 1;
/// Status: the blob is larger than the node takes; the limit follows.
pub const TOO_LARGE: u8 = 2;
/// Status: the uploader's quota would be exceeded; its limit and use follow.
pub const QUOTA_EXCEEDED: u8 = 3;
/// Status: the node's total space is used up.
pub const STORE_FULL: u8 = 4;
/// Status: the node could not pull the blob from the uploader.
pub const FETCH_FAILED: u8 = 5;
/// Status: too many uploads in progress (or this blob is being uploaded): retry.
pub const BUSY: u8 = 6;
/// Status: the request made no sense (unknown kind, a size that does not match).
pub const BAD_REQUEST: u8 = 7;
/// Status: the request's version is not one the node speaks.
pub const UNSUPPORTED_VERSION: u8 = 8;
/// Status: the node's storage failed.
pub const STORAGE: u8 = 9;
/// Status: a push is admitted; the chunks may follow.
pub const READY: u8 = 10;
/// Status: the pushed blob is held, durably; its id and expiry follow.
pub const PUSHED: u8 = 11;
/// The longest answer: a status, a blob id and an 8-byte number.
pub const MAX_ANSWER_LEN: usize = 41;
/// Chunks of a push being hashed and written at once on the media node (memory: a
/// chunk each, plus the one being read).
const PUSH_IN_FLIGHT: usize = 4;
/// How long a push may go without progress, either way: a chunk (or the closing id)
/// arriving at the media node, or a write going out at the uploader. A pusher gone
/// silent frees its upload slot and room after this, not at the whole upload's
/// deadline (hours for a large file).
const PUSH_IDLE: Duration = Duration::from_secs(30);

/// How long opening the stream and sending the request may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// An upload's answer may take this long for the node to start and finish...
const UPLOAD_BASE_TIME: Duration = Duration::from_secs(60);
/// ...plus the time to pull the blob at this rate (bytes per second): slow enough for
/// a poor uplink, bounded for every size.
const UPLOAD_MIN_RATE: u64 = 256 * 1024;

/// How long an upload of a blob of `sealed_size` bytes may take, pull included: the
/// client's deadline for the answer and the media node's for its pull.
pub fn upload_deadline(sealed_size: u64) -> Duration {
    UPLOAD_BASE_TIME + Duration::from_secs(sealed_size / UPLOAD_MIN_RATE)
}

/// What an uploader asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Hold blob `id`, of `sealed_size` sealed bytes: pull it from me.
    Hold {
        /// The blob.
        id: BlobId,
        /// Its sealed size (what the media node stores).
        sealed_size: u64,
    },
    /// Take the blob of `sealed_size` sealed bytes whose chunks follow, in order,
    /// once answered [`READY`].
    Push {
        /// Its sealed size.
        sealed_size: u64,
    },
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A version this side does not speak (answered [`UNSUPPORTED_VERSION`]).
    #[error("unsupported request version {0}")]
    UnsupportedVersion(u8),
    /// An unknown kind (answered [`BAD_REQUEST`]).
    #[error("unknown request kind {0}")]
    UnknownKind(u8),
    /// The stream ended or failed before the whole request arrived.
    #[error("reading the request failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Request {
    /// The sealed size the request declares.
    pub fn sealed_size(&self) -> u64 {
        match *self {
            Request::Hold { sealed_size, .. } | Request::Push { sealed_size } => sealed_size,
        }
    }

    /// The request's bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[0] = VERSION;
        match self {
            Request::Hold { id, .. } => {
                out[1] = KIND_HOLD;
                out[2..34].copy_from_slice(&id.0);
            }
            Request::Push { .. } => out[1] = KIND_PUSH,
        }
        out[34..].copy_from_slice(&self.sealed_size().to_be_bytes());
        out
    }

    /// Parses a request's bytes.
    pub fn decode(bytes: &[u8; REQUEST_LEN]) -> Result<Request, RequestError> {
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[2..34]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[34..]);
        let sealed_size = u64::from_be_bytes(size);
        match (bytes[0], bytes[1]) {
            (VERSION, KIND_HOLD) => Ok(Request::Hold { id: BlobId(id), sealed_size }),
            // The id field is reserved in a push: ignored, so it may carry
            // something in a later version.
            (VERSION, KIND_PUSH) => Ok(Request::Push { sealed_size }),
            (VERSION, kind) => Err(RequestError::UnknownKind(kind)),
            (version, _) => Err(RequestError::UnsupportedVersion(version)),
        }
    }

    /// Reads one request from `stream` (exactly [`REQUEST_LEN`] bytes; the caller
    /// puts a deadline on it). An unknown version is reported as soon as its byte
    /// arrives, so a newer client is answered even if its request is longer.
    pub async fn read(stream: &mut (impl futures::io::AsyncRead + Unpin)) -> Result<Request, RequestError> {
        let mut bytes = [0u8; REQUEST_LEN];
        stream.read_exact(&mut bytes[..1]).await?;
        if bytes[0] != VERSION {
            return Err(RequestError::UnsupportedVersion(bytes[0]));
        }
        stream.read_exact(&mut bytes[1..]).await?;
        Request::decode(&bytes)
    }
}

/// What a media node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// Held durably until `expires_at` (Unix seconds).
    Held {
        /// When the node may delete it.
        expires_at: u64,
    },
    /// A push is admitted: send the chunks.
    Ready,
    /// The pushed blob is held durably, under `id` (computed by the media node from
    /// the chunks it received), until `expires_at` (Unix seconds).
    Pushed {
        /// The blob's id.
        id: BlobId,
        /// When the node may delete it.
        expires_at: u64,
    },
    /// The access policy does not admit the uploader.
    NotAllowed,
    /// The blob is larger than `max` sealed bytes.
    TooLarge {
        /// The node's limit.
        max: u64,
    },
    /// The uploader would hold more than `limit` bytes; it holds `used`.
    QuotaExceeded {
        /// The per-uploader limit.
        limit: u64,
        /// What the uploader holds (or is uploading) now.
        used: u64,
    },
    /// The node's total space is used up.
    StoreFull,
    /// The node could not pull the blob from the uploader.
    FetchFailed,
    /// Too many uploads in progress, or this blob is being uploaded: retry later.
    Busy,
    /// The request made no sense.
    BadRequest,
    /// The request's version is not spoken.
    UnsupportedVersion,
    /// The node's storage failed.
    Storage,
}

impl Answer {
    /// The answer's bytes (at most [`MAX_ANSWER_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_ANSWER_LEN);
        match *self {
            Answer::Held { expires_at } => {
                out.push(HELD);
                out.extend_from_slice(&expires_at.to_be_bytes());
            }
            Answer::Ready => out.push(READY),
            Answer::Pushed { id, expires_at } => {
                out.push(PUSHED);
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&expires_at.to_be_bytes());
            }
            Answer::NotAllowed => out.push(NOT_ALLOWED),
            Answer::TooLarge { max } => {
                out.push(TOO_LARGE);
                out.extend_from_slice(&max.to_be_bytes());
            }
            Answer::QuotaExceeded { limit, used } => {
                out.push(QUOTA_EXCEEDED);
                out.extend_from_slice(&limit.to_be_bytes());
                out.extend_from_slice(&used.to_be_bytes());
            }
            Answer::StoreFull => out.push(STORE_FULL),
            Answer::FetchFailed => out.push(FETCH_FAILED),
            Answer::Busy => out.push(BUSY),
            Answer::BadRequest => out.push(BAD_REQUEST),
            Answer::UnsupportedVersion => out.push(UNSUPPORTED_VERSION),
            Answer::Storage => out.push(STORAGE),
        }
        out
    }

    /// How many bytes follow `status`, or `None` for a status this side does not know.
    fn tail_len(status: u8) -> Option<usize> {
        match status {
            HELD | TOO_LARGE => Some(8),
            QUOTA_EXCEEDED => Some(16),
            PUSHED => Some(40),
            READY | NOT_ALLOWED | STORE_FULL | FETCH_FAILED | BUSY | BAD_REQUEST | UNSUPPORTED_VERSION | STORAGE => Some(0),
            _ => None,
        }
    }

    /// Parses `status` and its tail (exactly [`Answer::tail_len`] bytes).
    fn decode(status: u8, tail: &[u8]) -> Option<Answer> {
        let number = |at: usize| -> Option<u64> { Some(u64::from_be_bytes(tail.get(at..at + 8)?.try_into().ok()?)) };
        Some(match status {
            HELD => Answer::Held { expires_at: number(0)? },
            READY => Answer::Ready,
            PUSHED => Answer::Pushed { id: BlobId(tail.get(..32)?.try_into().ok()?), expires_at: number(32)? },
            NOT_ALLOWED => Answer::NotAllowed,
            TOO_LARGE => Answer::TooLarge { max: number(0)? },
            QUOTA_EXCEEDED => Answer::QuotaExceeded { limit: number(0)?, used: number(8)? },
            STORE_FULL => Answer::StoreFull,
            FETCH_FAILED => Answer::FetchFailed,
            BUSY => Answer::Busy,
            BAD_REQUEST => Answer::BadRequest,
            UNSUPPORTED_VERSION => Answer::UnsupportedVersion,
            STORAGE => Answer::Storage,
            _ => return None,
        })
    }

    /// Reads one answer from `stream`; `None` for an unknown status (the stream is
    /// then left unread: the caller drops it).
    pub async fn read(stream: &mut (impl futures::io::AsyncRead + Unpin)) -> std::io::Result<Option<Answer>> {
        let mut status = [0u8; 1];
        stream.read_exact(&mut status).await?;
        let Some(len) = Answer::tail_len(status[0]) else { return Ok(None) };
        let mut tail = [0u8; MAX_ANSWER_LEN - 1];
        stream.read_exact(&mut tail[..len]).await?;
        Ok(Answer::decode(status[0], &tail[..len]))
    }
}

/// Why a media node did not take a blob. Each refusal is its own variant, for the
/// user to see and for callers to branch on (retry later, try another node, give up).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// This node does not hold the whole blob, so it cannot be uploaded.
    #[error("this node does not hold the whole blob {0}")]
    NotHeldHere(BlobId),
    /// Reading the blob from this node's store failed.
    #[error("reading the blob here failed")]
    Local(#[source] BlobError),
    /// The peer is not a media node (or its media role is off): it does not speak
    /// `/kith/media/1`.
    #[error("the peer is not a media node")]
    NotOffered,
    /// The media node's access policy does not admit this node.
    #[error("the media node does not take uploads from this node")]
    NotAllowed,
    /// The blob is larger than the media node takes.
    #[error("the file is too large for the media node ({size} bytes sealed, at most {max})")]
    TooLarge {
        /// The blob's sealed size.
        size: u64,
        /// The media node's limit.
        max: u64,
    },
    /// This node's quota on the media node would be exceeded.
    #[error("the media node's quota is full ({used} of {limit} bytes used)")]
    QuotaExceeded {
        /// The per-uploader limit.
        limit: u64,
        /// What this node holds (or is uploading) there now.
        used: u64,
    },
    /// The media node's total space is used up.
    #[error("the media node is full")]
    StoreFull,
    /// The media node could not pull the blob from this node (a connection problem,
    /// or this node stopped serving it).
    #[error("the media node could not fetch the file from this node")]
    FetchFailed,
    /// The media node is busy (too many uploads, or this blob is being uploaded by
    /// someone else): retry later.
    #[error("the media node is busy; try again later")]
    Busy,
    /// The media node found the request malformed (a bug on one side).
    #[error("the media node refused the request as malformed")]
    BadRequest,
    /// The media node does not speak this version of the protocol.
    #[error("the media node does not speak this protocol version")]
    UnsupportedVersion,
    /// The media node's storage failed.
    #[error("the media node's storage failed")]
    Storage,
    /// The media node answered something this node does not understand.
    #[error("the media node sent a bad answer: {0}")]
    BadAnswer(String),
    /// Talking to the media node failed (unreachable, went away, timed out).
    #[error("talking to the media node failed: {0}")]
    Network(String),
}

impl UploadError {
    /// Whether trying again soon may succeed: the network, a busy node, a pull that
    /// failed, or a protocol not offered yet on a connection still being set up.
    pub fn is_transient(&self) -> bool {
        matches!(self, UploadError::Network(_) | UploadError::Busy | UploadError::FetchFailed | UploadError::NotOffered)
    }
}

impl UploadError {
    /// Whether the media node decided against this file: asking it again, by push
    /// or by pull, gets the same answer.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UploadError::NotAllowed | UploadError::TooLarge { .. } | UploadError::QuotaExceeded { .. } | UploadError::StoreFull | UploadError::Storage
        )
    }
}

/// A blob a media node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// When the media node may delete it.
    pub expires_at: SystemTime,
}

/// Asks the media node `media` to hold blob `id`, which must be complete in `store`
/// (the blob store this node serves `/kith/blob/1` from: the media node pulls it from
/// there). Returns once the media node holds it durably, or with the node's typed
/// refusal. Uploading a blob the node already holds is answered at once (and renews
/// its lifetime there).
///
/// Cancel-safe: dropping the future drops the stream; the media node then abandons
/// the pull (or keeps the blob, if it was already held).
pub async fn upload(control: &Control, store: &BlobStore, media: PeerId, id: BlobId) -> Result<Held, UploadError> {
    let outboard = store.outboard(&id).map_err(UploadError::Local)?.ok_or(UploadError::NotHeldHere(id))?;
    if !store.is_complete(&id).map_err(UploadError::Local)? {
        return Err(UploadError::NotHeldHere(id));
    }
    let size = outboard.sealed_size();
    let mut stream = open(control, media, Request::Hold { id, sealed_size: size }).await?;
    match read_answer(&mut stream, tokio::time::Instant::now() + upload_deadline(size)).await? {
        Answer::Held { expires_at } => Ok(held_until(expires_at)),
        answer => Err(refused(answer, size)),
    }
}

/// Opens a `/kith/media/1` stream to `media` and sends `request`, within [`OPEN_TIMEOUT`].
async fn open(control: &Control, media: PeerId, request: Request) -> Result<libp2p::Stream, UploadError> {
    let opening = async {
        // A media node without the role says so on the first answer, not here
        // (streams are negotiated lazily): see `network`.
        let mut stream = crate::streams::open(control, media, PROTOCOL).await.map_err(|e| UploadError::Network(e.to_string()))?;
        stream.write_all(&request.encode()).await.map_err(network)?;
        stream.flush().await.map_err(network)?;
        Ok::<_, UploadError>(stream)
    };
    tokio::time::timeout(OPEN_TIMEOUT, opening).await.map_err(|_| UploadError::Network("timed out".into()))?
}

/// Reads the media node's answer, by `deadline`.
async fn read_answer(stream: &mut libp2p::Stream, deadline: tokio::time::Instant) -> Result<Answer, UploadError> {
    tokio::time::timeout_at(deadline, Answer::read(stream))
        .await
        .map_err(|_| UploadError::Network("no answer in time".into()))?
        .map_err(network)?
        .ok_or_else(|| UploadError::BadAnswer("an unknown status".into()))
}

fn held_until(expires_at: u64) -> Held {
    Held { expires_at: UNIX_EPOCH + Duration::from_secs(expires_at) }
}

/// The error an answer that is not the one hoped for means, for a blob of `size`
/// sealed bytes.
fn refused(answer: Answer, size: u64) -> UploadError {
    match answer {
        Answer::NotAllowed => UploadError::NotAllowed,
        Answer::TooLarge { max } => UploadError::TooLarge { size, max },
        Answer::QuotaExceeded { limit, used } => UploadError::QuotaExceeded { limit, used },
        Answer::StoreFull => UploadError::StoreFull,
        Answer::FetchFailed => UploadError::FetchFailed,
        Answer::Busy => UploadError::Busy,
        Answer::BadRequest => UploadError::BadRequest,
        Answer::UnsupportedVersion => UploadError::UnsupportedVersion,
        Answer::Storage => UploadError::Storage,
        Answer::Held { .. } | Answer::Ready | Answer::Pushed { .. } => UploadError::BadAnswer(format!("{answer:?} out of place")),
    }
}

fn network(e: std::io::Error) -> UploadError {
    if crate::streams::refused_protocol(&e) { UploadError::NotOffered } else { UploadError::Network(e.to_string()) }
}

/// A blob being pushed to a media node ([`KIND_PUSH`]): admitted, and taking its
/// sealed chunks in order as they are sealed ([`Push::send`]); [`Push::finish`]
/// waits for the media node to hold it. Dropping it drops the stream: the media node
/// then deletes what arrived.
pub struct Push {
    media: PeerId,
    stream: libp2p::Stream,
    sealed_size: u64,
    sent: u64,
    deadline: tokio::time::Instant,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push").field("media", &self.media).field("sealed_size", &self.sealed_size).field("sent", &self.sent).finish()
    }
}

impl Push {
    /// Asks `media` to take a pushed blob of `sealed_size` sealed bytes; returns once
    /// it is admitted, or with the media node's typed refusal. A media node that
    /// predates pushes answers [`UploadError::BadRequest`]: upload with [`upload`]
    /// once the blob is sealed.
    pub async fn start(control: &Control, media: PeerId, sealed_size: u64) -> Result<Push, UploadError> {
        let deadline = tokio::time::Instant::now() + upload_deadline(sealed_size);
        let mut stream = open(control, media, Request::Push { sealed_size }).await?;
        let admitted = tokio::time::Instant::now() + OPEN_TIMEOUT;
        match read_answer(&mut stream, admitted.min(deadline)).await? {
            Answer::Ready => Ok(Push { media, stream, sealed_size, sent: 0, deadline }),
            answer => Err(refused(answer, sealed_size)),
        }
    }

    /// The media node.
    pub fn media(&self) -> PeerId {
        self.media
    }

    /// Sends the next sealed chunk (waiting while the media node catches up).
    pub async fn send(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        let size = chunk.len() as u64;
        if self.sent + size > self.sealed_size {
            return Err(UploadError::Local(BlobError::WrongLength("pushed blob")));
        }
        self.write(chunk).await?;
        self.sent += size;
        Ok(())
    }

    /// Writes `bytes`, within [`PUSH_IDLE`] and the upload's deadline.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        let until = self.deadline.min(tokio::time::Instant::now() + PUSH_IDLE);
        let writing = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout_at(until, writing)
            .await
            .map_err(|_| UploadError::Network("the media node stopped taking the file".into()))?
            .map_err(network)
    }

    /// After every chunk was sent and the blob is sealed whole here: sends its id
    /// (which the media node checks against the id it computed; only then does it
    /// hold the blob) and waits until the media node holds it.
    pub async fn finish(mut self, id: BlobId) -> Result<Held, UploadError> {
        if self.sent != self.sealed_size {
            return Err(UploadError::Local(BlobError::WrongLength("pushed blob")));
        }
        self.write(&id.0).await?;
        match read_answer(&mut self.stream, self.deadline).await? {
            Answer::Pushed { id: held, expires_at } if held == id => Ok(held_until(expires_at)),
            Answer::Pushed { id: held, .. } => Err(UploadError::BadAnswer(format!("the media node holds the file as {held}, not {id}"))),
            answer => Err(refused(answer, self.sealed_size)),
        }
    }
}

/// Why a push could not be taken in ([`receive_push`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// No blob has the declared sealed size.
    #[error("no blob is {0} bytes sealed")]
    BadSize(u64),
    /// The pusher stopped sending, or the stream failed.
    #[error("the push was cut short: {0}")]
    Interrupted(std::io::Error),
    /// Writing it here failed.
    #[error("storing the push failed")]
    Storage(#[source] BlobError),
    /// The id the pusher sent after the chunks is not the id they make.
    #[error("the pushed chunks make blob {computed}, not {claimed}")]
    IdMismatch {
        /// What the chunks hash to.
        computed: BlobId,
        /// What the pusher sent.
        claimed: BlobId,
    },
}

/// The media node's side of a push: reads the `sealed_size` bytes of sealed chunks
/// that follow on `stream`, hashing each with its index and writing it at its place
/// in a temporary file of `store` ([`PUSH_IN_FLIGHT`] chunks hashed and written at
/// once on the blocking pool), then the 32-byte id the pusher computed, which must
/// be the id those hashes make ([`PushError::IdMismatch`] otherwise). Returns the
/// outboard and the file, complete and synced-to-be by [`BlobStore::import`]. Each
/// read must come within [`PUSH_IDLE`]; the caller bounds the whole. On any error
/// the temporary file is deleted.
pub async fn receive_push(
    stream: &mut (impl futures::io::AsyncRead + Unpin),
    store: &BlobStore,
    sealed_size: u64,
) -> Result<(super::Outboard, tempfile::TempPath), PushError> {
    use futures::stream::{FuturesUnordered, StreamExt};

    let len = super::plain_size_of(sealed_size).ok_or(PushError::BadSize(sealed_size))?;
    let temp = store.temp_file().map_err(|e| PushError::Storage(e.into()))?;
    temp.as_file().set_len(sealed_size).map_err(|e| PushError::Storage(e.into()))?;
    let (file, path) = temp.into_parts();
    let file = std::sync::Arc::new(file);
    let count = super::chunk_count(len);
    let mut hashes = vec![[0u8; 32]; count as usize];
    let mut writing = FuturesUnordered::new();
    let mut syncing = None;
    for index in 0..count {
        // A sync runs beside the push every so often, so the one that makes the
        // blob durable at the end finds little left to write.
        if index % super::SYNC_EVERY == super::SYNC_EVERY - 1 && syncing.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            if let Some(done) = syncing.take() {
                joined(done.await)?;
            }
            let file = file.clone();
            syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        }
        if writing.len() >= PUSH_IN_FLIGHT
            && let Some(done) = writing.next().await
        {
            let (at, hash) = joined(done)?;
            hashes[at as usize] = hash;
        }
        let mut chunk = vec![0u8; super::sealed_chunk_len(len, index)];
        read_within(stream, &mut chunk).await?;
        let file = file.clone();
        writing.push(tokio::task::spawn_blocking(move || -> std::io::Result<(u64, [u8; 32])> {
            use std::os::unix::fs::FileExt;
            let hash = super::chunk_hash(index, &chunk);
            // Sealed chunks back to back: every one but the last is full.
            file.write_all_at(&chunk, index * (super::CHUNK_SIZE + super::TAG_SIZE) as u64)?;
            Ok((index, hash))
        }));
    }
    while let Some(done) = writing.next().await {
        let (at, hash) = joined(done)?;
        hashes[at as usize] = hash;
    }
    if let Some(done) = syncing {
        joined(done.await)?;
    }
    let outboard = super::Outboard::hashed(len, hashes).map_err(PushError::Storage)?;
    // The pusher's own id, sent once it sealed the whole file: one that gave up
    // (its file changed, its disk failed) sends none, and nothing is held.
    let mut claimed = [0u8; 32];
    read_within(stream, &mut claimed).await?;
    let (computed, claimed) = (outboard.id(), BlobId(claimed));
    if computed != claimed {
        return Err(PushError::IdMismatch { computed, claimed });
    }
    Ok((outboard, path))
}

/// Reads exactly `buf.len()` bytes of a push within [`PUSH_IDLE`].
async fn read_within(stream: &mut (impl futures::io::AsyncRead + Unpin), buf: &mut [u8]) -> Result<(), PushError> {
    match tokio::time::timeout(PUSH_IDLE, stream.read_exact(buf)).await {
        Ok(read) => read.map_err(PushError::Interrupted),
        Err(_) => Err(PushError::Interrupted(std::io::Error::new(std::io::ErrorKind::TimedOut, "the pusher went silent"))),
    }
}

/// What disk work of a push on the blocking pool came to.
fn joined<T>(done: Result<std::io::Result<T>, tokio::task::JoinError>) -> Result<T, PushError> {
    done.map_err(std::io::Error::other).and_then(|r| r).map_err(|e| PushError::Storage(e.into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn every_answer() -> Vec<Answer> {
        vec![
            Answer::Held { expires_at: 1_900_000_000 },
            Answer::Ready,
            Answer::Pushed { id: BlobId([9; 32]), expires_at: 1_900_000_001 },
            Answer::NotAllowed,
            Answer::TooLarge { max: 4 << 30 },
            Answer::QuotaExceeded { limit: 1 << 33, used: 12345 },
            Answer::StoreFull,
            Answer::FetchFailed,
            Answer::Busy,
            Answer::BadRequest,
            Answer::UnsupportedVersion,
            Answer::Storage,
        ]
    }

    #[test]
    fn requests_round_trip_and_unknown_versions_are_told_apart() {
        let request = Request::Hold { id: BlobId([7; 32]), sealed_size: 3 * 1024 * 1024 + 48 };
        let bytes = request.encode();
        assert_eq!(Request::decode(&bytes).unwrap(), request);
        let push = Request::Push { sealed_size: 1 << 30 };
        assert_eq!(Request::decode(&push.encode()).unwrap(), push);
        assert_eq!(push.encode().len(), REQUEST_LEN, "a media node that predates pushes reads it whole");
        let mut newer = bytes;
        newer[0] = 2;
        assert!(matches!(Request::decode(&newer), Err(RequestError::UnsupportedVersion(2))));
        let mut odd = bytes;
        odd[1] = 9;
        assert!(matches!(Request::decode(&odd), Err(RequestError::UnknownKind(9))));
    }

    #[tokio::test]
    async fn requests_are_read_exactly_and_short_ones_fail() {
        let request = Request::Hold { id: BlobId([1; 32]), sealed_size: 16 };
        let bytes = request.encode();
        assert_eq!(Request::read(&mut &bytes[..]).await.unwrap(), request);
        assert!(matches!(Request::read(&mut &bytes[..41]).await, Err(RequestError::Io(_))));
        // A newer version is known from its first byte, whatever follows.
        assert!(matches!(Request::read(&mut &[3u8][..]).await, Err(RequestError::UnsupportedVersion(3))));
        assert!(matches!(Request::read(&mut &[][..]).await, Err(RequestError::Io(_))));
    }

    #[tokio::test]
    async fn every_answer_round_trips_within_the_length_limit() {
        for answer in every_answer() {
            let bytes = answer.encode();
            assert!(bytes.len() <= MAX_ANSWER_LEN, "{answer:?}");
            assert_eq!(Answer::read(&mut &bytes[..]).await.unwrap(), Some(answer));
            // Cut short anywhere: an error, not a guess.
            for cut in 0..bytes.len() {
                assert!(Answer::read(&mut &bytes[..cut]).await.is_err(), "{answer:?} cut at {cut}");
            }
        }
        assert_eq!(Answer::read(&mut &[200u8, 1, 2][..]).await.unwrap(), None, "an unknown status");
    }

    /// A sealed file of `len` bytes: its outboard and sealed chunks back to back.
    fn sealed(len: usize) -> (crate::blob::Outboard, Vec<u8>) {
        let plain: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
        let mut sealed = Vec::new();
        let outboard = crate::blob::seal(&crate::blob::BlobKey::generate(), len as u64, &mut plain.as_slice(), &mut sealed).unwrap();
        (outboard, sealed)
    }

    #[tokio::test]
    async fn a_push_is_hashed_as_it_arrives_into_the_id_its_bytes_make() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        for len in [0, 1, crate::blob::CHUNK_SIZE, 9 * crate::blob::CHUNK_SIZE + 77] {
            let (outboard, bytes) = sealed(len);
            let pushing = [&bytes[..], &outboard.id().0].concat();
            let (pushed, path) = receive_push(&mut &pushing[..], &store, bytes.len() as u64).await.unwrap();
            assert_eq!(pushed, outboard, "{len}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "every chunk at its place");
            store.import(&pushed, path).unwrap();
            assert!(store.is_complete(&outboard.id()).unwrap());
        }
    }

    #[tokio::test]
    async fn a_push_cut_short_without_its_id_with_a_wrong_id_or_of_a_size_no_blob_has_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (outboard, bytes) = sealed(3 * crate::blob::CHUNK_SIZE);
        let cut = &bytes[..bytes.len() - 1];
        let result = receive_push(&mut &cut[..], &store, bytes.len() as u64).await;
        assert!(matches!(result, Err(PushError::Interrupted(_))), "{result:?}");
        // Every chunk, but no id: the pusher gave up (its file changed).
        let result = receive_push(&mut &bytes[..], &store, bytes.len() as u64).await;
        assert!(matches!(result, Err(PushError::Interrupted(_))), "{result:?}");
        // Every chunk, and an id they do not make.
        let lying = [&bytes[..], &[7u8; 32][..]].concat();
        let result = receive_push(&mut &lying[..], &store, bytes.len() as u64).await;
        assert!(matches!(result, Err(PushError::IdMismatch { computed, .. }) if computed == outboard.id()), "{result:?}");
        let result = receive_push(&mut &bytes[..], &store, 15).await;
        assert!(matches!(result, Err(PushError::BadSize(15))), "{result:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the temporary file is gone");
    }

    #[test]
    fn the_deadline_grows_with_the_size_and_stays_bounded() {
        assert_eq!(upload_deadline(0), UPLOAD_BASE_TIME);
        assert!(upload_deadline(4 << 30) > upload_deadline(1 << 20));
        assert!(upload_deadline(crate::blob::MAX_FILE_SIZE * 2) < Duration::from_secs(7 * 24 * 3600));
    }
}
