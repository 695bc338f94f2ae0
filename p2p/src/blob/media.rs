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
//! Nothing is trusted: the request is fixed-size and read with a deadline, an unknown
//! version is answered [`UNSUPPORTED_VERSION`] (told apart from a malformed request),
//! and the media node checks the outboard it pulls against the declared size.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::{Control, OpenStreamError};

use super::{BlobError, BlobId, BlobStore};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/media/1");
/// The only request version.
pub const VERSION: u8 = 1;
/// Request kind: hold this blob.
pub const KIND_HOLD: u8 = 1;
/// Length of a request: version, kind, id, sealed size.
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
/// The longest answer: a status and two 8-byte numbers.
pub const MAX_ANSWER_LEN: usize = 17;

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

/// What an uploader asks: hold blob `id`, of `sealed_size` sealed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The blob.
    pub id: BlobId,
    /// Its sealed size (what the media node stores).
    pub sealed_size: u64,
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
    /// The request's bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[0] = VERSION;
        out[1] = KIND_HOLD;
        out[2..34].copy_from_slice(&self.id.0);
        out[34..].copy_from_slice(&self.sealed_size.to_be_bytes());
        out
    }

    /// Parses a request's bytes.
    pub fn decode(bytes: &[u8; REQUEST_LEN]) -> Result<Request, RequestError> {
        match (bytes[0], bytes[1]) {
            (VERSION, KIND_HOLD) => {}
            (VERSION, kind) => return Err(RequestError::UnknownKind(kind)),
            (version, _) => return Err(RequestError::UnsupportedVersion(version)),
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[2..34]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[34..]);
        Ok(Request { id: BlobId(id), sealed_size: u64::from_be_bytes(size) })
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
            NOT_ALLOWED | STORE_FULL | FETCH_FAILED | BUSY | BAD_REQUEST | UNSUPPORTED_VERSION | STORAGE => Some(0),
            _ => None,
        }
    }

    /// Parses `status` and its tail (exactly [`Answer::tail_len`] bytes).
    fn decode(status: u8, tail: &[u8]) -> Option<Answer> {
        let number = |at: usize| -> Option<u64> { Some(u64::from_be_bytes(tail.get(at..at + 8)?.try_into().ok()?)) };
        Some(match status {
            HELD => Answer::Held { expires_at: number(0)? },
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
    let opening = async {
        let mut stream = crate::streams::open(control, media, PROTOCOL).await.map_err(|e| match e {
            OpenStreamError::UnsupportedProtocol(_) => UploadError::NotOffered,
            e => UploadError::Network(e.to_string()),
        })?;
        stream.write_all(&Request { id, sealed_size: size }.encode()).await.map_err(network)?;
        stream.flush().await.map_err(network)?;
        Ok::<_, UploadError>(stream)
    };
    let mut stream = tokio::time::timeout(OPEN_TIMEOUT, opening).await.map_err(|_| UploadError::Network("timed out".into()))??;
    let answer = tokio::time::timeout(upload_deadline(size), Answer::read(&mut stream))
        .await
        .map_err(|_| UploadError::Network("no answer in time".into()))?
        .map_err(network)?
        .ok_or_else(|| UploadError::BadAnswer("an unknown status".into()))?;
    match answer {
        Answer::Held { expires_at } => Ok(Held { expires_at: UNIX_EPOCH + Duration::from_secs(expires_at) }),
        Answer::NotAllowed => Err(UploadError::NotAllowed),
        Answer::TooLarge { max } => Err(UploadError::TooLarge { size, max }),
        Answer::QuotaExceeded { limit, used } => Err(UploadError::QuotaExceeded { limit, used }),
        Answer::StoreFull => Err(UploadError::StoreFull),
        Answer::FetchFailed => Err(UploadError::FetchFailed),
        Answer::Busy => Err(UploadError::Busy),
        Answer::BadRequest => Err(UploadError::BadRequest),
        Answer::UnsupportedVersion => Err(UploadError::UnsupportedVersion),
        Answer::Storage => Err(UploadError::Storage),
    }
}

fn network(e: std::io::Error) -> UploadError {
    UploadError::Network(e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn every_answer() -> Vec<Answer> {
        vec![
            Answer::Held { expires_at: 1_900_000_000 },
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
        let request = Request { id: BlobId([7; 32]), sealed_size: 3 * 1024 * 1024 + 48 };
        let bytes = request.encode();
        assert_eq!(Request::decode(&bytes).unwrap(), request);
        let mut newer = bytes;
        newer[0] = 2;
        assert!(matches!(Request::decode(&newer), Err(RequestError::UnsupportedVersion(2))));
        let mut odd = bytes;
        odd[1] = 9;
        assert!(matches!(Request::decode(&odd), Err(RequestError::UnknownKind(9))));
    }

    #[tokio::test]
    async fn requests_are_read_exactly_and_short_ones_fail() {
        let request = Request { id: BlobId([1; 32]), sealed_size: 16 };
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

    #[test]
    fn the_deadline_grows_with_the_size_and_stays_bounded() {
        assert_eq!(upload_deadline(0), UPLOAD_BASE_TIME);
        assert!(upload_deadline(4 << 30) > upload_deadline(1 << 20));
        assert!(upload_deadline(crate::blob::MAX_FILE_SIZE * 2) < Duration::from_secs(7 * 24 * 3600));
    }
}
