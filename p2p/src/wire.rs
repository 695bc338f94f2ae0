//! Encoding and framing shared by every kith protocol.
//!
//! Bodies are serde types encoded as CBOR (ciborium): compact, self-describing and
//! evolvable (unknown map keys are ignored, so a newer peer can add optional fields).
//! Every top-level body carries an explicit `v` field; [`decode_versioned`] turns an
//! unknown version into [`WireError::UnsupportedVersion`] rather than a generic parse
//! failure, so callers can tell "peer is newer than us" from "peer is broken".
//!
//! Nothing in here may panic on input from the network:
//! - [`decode`] checks the input length against the caller's cap *before* parsing, uses
//!   a small recursion limit (our types nest a handful of levels; ciborium's default of
//!   256 is deeper than we ever need), and rejects trailing bytes so that one body has
//!   exactly one encoding-level meaning. ciborium may allocate according to lengths
//!   declared inside the CBOR, but byte strings grow as they are actually read and serde
//!   caps sequence pre-allocation, so memory stays proportional to the (bounded) input.
//! - [`read_frame`] reads a `u32` big-endian length prefix and refuses lengths above the
//!   caller's cap before reading or allocating anything for the body.
//!
//! Byte strings: serde encodes `Vec<u8>` and `[u8; N]` as arrays of integers, which in
//! CBOR costs up to two bytes per byte. The [`bytes`], [`byte_array`] and [`bytes_seq`]
//! helpers (for `#[serde(with = "...")]`) encode them as CBOR byte strings instead.

use std::io;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// How deeply nested a CBOR value may be.
///
/// Our bodies nest at most a few levels (struct → list → struct); 64 leaves ample room
/// for evolution while keeping worst-case stack use of the recursive decoder small, which
/// matters on tokio worker threads.
const RECURSION_LIMIT: usize = 64;

/// Length of the frame length prefix in bytes (`u32`, big endian).
const FRAME_PREFIX_LEN: usize = 4;

/// How much of a frame body is pre-allocated before its bytes actually arrive.
///
/// A peer can announce a frame of `max_len` bytes and then stall; growing the buffer as
/// data arrives keeps such stalled streams cheap.
const FRAME_PREALLOC_MAX_BYTES: usize = 16 * 1024;

/// Why a body or a frame could not be encoded, read or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body or frame is longer than the caller allows.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced or actual length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
    /// The stream ended cleanly before the first byte of a frame.
    ///
    /// Distinct from [`WireError::Truncated`] so that a reader of a frame sequence can
    /// tell a peer that finished from a peer that broke off.
    #[error("stream closed before a frame started")]
    Closed,
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The body declares a version this build does not understand.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u32),
    /// A value could not be encoded (only possible for types whose `Serialize`
    /// implementation can fail; never for kith's own wire types).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `value` as CBOR.
///
/// # Errors
/// [`WireError::Encode`] only if `value`'s `Serialize` implementation fails; kith's wire
/// types (plain structs, byte strings, integers, strings) never do.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes one CBOR value of type `T` that must span all of `bytes`.
///
/// # Errors
/// - [`WireError::TooLarge`] if `bytes` is longer than `max_len` (checked first).
/// - [`WireError::Malformed`] if the bytes are not exactly one valid `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, WireError> {
    if bytes.len() > max_len {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    decode_unchecked(bytes)
}

/// Decodes a versioned body: like [`decode`], but tells an unknown version apart.
///
/// `version_of` extracts the body's `v` field. If the body decodes but carries another
/// version, or fails to decode as `T` while still being a map with an integer `v` that
/// differs from `supported` (a newer layout), the result is
/// [`WireError::UnsupportedVersion`].
///
/// # Errors
/// As [`decode`], plus [`WireError::UnsupportedVersion`].
pub fn decode_versioned<T: DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
    supported: u32,
    version_of: impl FnOnce(&T) -> u32,
) -> Result<T, WireError> {
    match decode::<T>(bytes, max_len) {
        Ok(value) => {
            let v = version_of(&value);
            if v == supported {
                Ok(value)
            } else {
                Err(WireError::UnsupportedVersion(v))
            }
        }
        Err(WireError::Malformed(reason)) => {
            // Only on the failure path: probing costs a second parse, and a well-formed
            // current-version body never pays it.
            match decode_unchecked::<VersionProbe>(bytes) {
                Ok(probe) if probe.v != supported => Err(WireError::UnsupportedVersion(probe.v)),
                _ => Err(WireError::Malformed(reason)),
            }
        }
        Err(other) => Err(other),
    }
}

/// The part of every versioned body that all versions share.
#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

fn decode_unchecked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let mut rest = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut rest, RECURSION_LIMIT)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// Reads one length-prefixed frame (`u32` big-endian length, then that many bytes).
///
/// Not cancel-safe: if the future is dropped part-way, the stream is left in the middle
/// of a frame and must be discarded.
///
/// # Errors
/// - [`WireError::Closed`] if the stream ends before the first prefix byte.
/// - [`WireError::Truncated`] if it ends anywhere after that but before the frame ends.
/// - [`WireError::TooLarge`] if the announced length exceeds `max_len`; nothing of the
///   body is read or allocated.
/// - [`WireError::Io`] for other stream errors.
pub async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    max_len: usize,
) -> Result<Vec<u8>, WireError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    let mut filled = 0;
    while filled < FRAME_PREFIX_LEN {
        match io.read(&mut prefix[filled..]).await {
            Ok(0) if filled == 0 => return Err(WireError::Closed),
            Ok(0) => return Err(WireError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    // u32 always fits in usize on the 32- and 64-bit targets we support; saturate anyway
    // so a hypothetical 16-bit target still rejects rather than wraps.
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max_len {
        return Err(WireError::TooLarge { len, max: max_len });
    }
    let mut body = Vec::with_capacity(len.min(FRAME_PREALLOC_MAX_BYTES));
    // `len` fits in u64 because it came from a u32.
    let read = io.take(len as u64).read_to_end(&mut body).await?;
    if read != len {
        return Err(WireError::Truncated);
    }
    Ok(body)
}

/// Writes one length-prefixed frame and flushes the stream.
///
/// `max_len` should be the limit the receiving side applies, so an oversized frame fails
/// here, locally and with a clear error, instead of being rejected by the peer.
/// Not cancel-safe: a dropped future may leave a partial frame on the stream.
///
/// # Errors
/// [`WireError::TooLarge`] if `frame` is longer than `max_len` or than `u32::MAX`;
/// [`WireError::Io`] if the stream fails.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    frame: &[u8],
    max_len: usize,
) -> Result<(), WireError> {
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|_| frame.len() <= max_len)
        .ok_or(WireError::TooLarge {
            len: frame.len(),
            max: max_len.min(u32::MAX as usize),
        })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.flush().await?;
    Ok(())
}

/// `#[serde(with = "wire::bytes")]` for `Vec<u8>`: a CBOR byte string.
pub mod bytes {
    use serde::{Deserializer, Serializer};

    /// Serializes any byte slice as a byte string.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    /// Deserializes a byte string into a `Vec<u8>`.
    ///
    /// # Errors
    /// If the value is not a byte string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(super::ByteBufVisitor)
    }
}

/// `#[serde(with = "wire::byte_array")]` for `[u8; N]`: a CBOR byte string of exactly
/// `N` bytes.
pub mod byte_array {
    use serde::{Deserializer, Serializer, de::Error as _};

    /// Serializes the array as a byte string.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer, const N: usize>(
        value: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    /// Deserializes a byte string of exactly `N` bytes.
    ///
    /// # Errors
    /// If the value is not a byte string or has another length.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let bytes = deserializer.deserialize_byte_buf(super::ByteBufVisitor)?;
        <[u8; N]>::try_from(bytes.as_slice())
            .map_err(|_| D::Error::invalid_length(bytes.len(), &format!("{N} bytes").as_str()))
    }
}

/// `#[serde(with = "wire::bytes_seq")]` for `Vec<Vec<u8>>`: a CBOR array of byte strings.
pub mod bytes_seq {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes each element as a byte string.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer>(value: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(value.iter().map(|b| ByteStr(b)))
    }

    /// Deserializes an array of byte strings.
    ///
    /// # Errors
    /// If the value is not an array of byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = Vec::<ByteBuf>::deserialize(deserializer)?;
        Ok(items.into_iter().map(|b| b.0).collect())
    }

    struct ByteStr<'a>(&'a [u8]);

    impl Serialize for ByteStr<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer
                .deserialize_byte_buf(super::ByteBufVisitor)
                .map(ByteBuf)
        }
    }
}

/// Accepts only CBOR byte strings (not arrays of integers: one encoding per value).
struct ByteBufVisitor;

impl serde::de::Visitor<'_> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(v)
    }
}

/// A protocol body on a request-response stream, with its version: `{v, body}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame<T> {
    /// The protocol's frame version.
    pub v: u32,
    /// The request or response.
    pub body: T,
}

/// A [`WireError`] as the `io::Error` a libp2p codec must return: I/O errors stay
/// themselves, everything else is `InvalidData` carrying the typed error.
pub fn into_io(e: WireError) -> io::Error {
    match e {
        WireError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// Read one length-prefixed [`Frame`] of at most `max` bytes and return its body;
/// a version other than `version` is [`WireError::UnsupportedVersion`].
pub async fn read_body<T, R>(io: &mut R, max: usize, version: u32) -> io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + Send,
{
    let bytes = read_frame(io, max).await.map_err(into_io)?;
    let frame: Frame<T> = decode_versioned(&bytes, max, version, |f: &Frame<T>| f.v).map_err(into_io)?;
    Ok(frame.body)
}

/// Write `body` as one length-prefixed [`Frame`] of version `version`, refusing to
/// send more than `max` bytes.
pub async fn write_body<T, W>(io: &mut W, body: T, max: usize, version: u32) -> io::Result<()>
where
    T: Serialize,
    W: AsyncWrite + Unpin + Send,
{
    let bytes = encode(&Frame { v: version, body }).map_err(into_io)?;
    write_frame(io, &bytes, max).await.map_err(into_io)
}

/// A request or response of a kith request-response protocol: one CBOR body in a
/// length-prefixed [`Frame`] of version [`PROTOCOL_FRAME_VERSION`], at most
/// [`Message::MAX_LEN`] bytes, with the protocol's own count limits.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// Largest frame accepted or sent.
    const MAX_LEN: usize;

    /// Limits beyond the frame size (how many items a body may carry), checked on
    /// every body read: a violation is an [`io::ErrorKind::InvalidData`] error.
    fn check(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// The check made before sending: a violation is an
    /// [`io::ErrorKind::InvalidInput`] error. By default the same as [`Message::check`].
    fn check_outgoing(&self) -> Result<(), &'static str> {
        self.check()
    }
}

/// The frame version of every kith request-response protocol.
pub const PROTOCOL_FRAME_VERSION: u32 = 1;

/// The libp2p request-response codec of a kith protocol whose requests are `Req` and
/// responses `Resp`: lengths are checked before anything is allocated, bodies after
/// decoding (see [`Message`]).
pub struct Codec<Req, Resp>(std::marker::PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for Codec<Req, Resp> {
    fn default() -> Self {
        Codec(std::marker::PhantomData)
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<Req, Resp> std::fmt::Debug for Codec<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wire::Codec")
    }
}

async fn read_message<M: Message, R: AsyncRead + Unpin + Send>(io: &mut R) -> io::Result<M> {
    let body: M = read_body(io, M::MAX_LEN, PROTOCOL_FRAME_VERSION).await?;
    body.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(body)
}

async fn write_message<M: Message, W: AsyncWrite + Unpin + Send>(io: &mut W, body: M) -> io::Result<()> {
    body.check_outgoing().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    write_body(io, body, M::MAX_LEN, PROTOCOL_FRAME_VERSION).await
}

impl<Req: Message, Resp: Message> libp2p::request_response::Codec for Codec<Req, Resp> {
    type Protocol = libp2p::StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &libp2p::StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await
    }

    async fn read_response<T>(&mut self, _: &libp2p::StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await
    }

    async fn write_request<T>(&mut self, _: &libp2p::StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, req).await
    }

    async fn write_response<T>(&mut self, _: &libp2p::StreamProtocol, io: &mut T, res: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, res).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::{executor::block_on, io::Cursor};
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        v: u32,
        #[serde(with = "bytes")]
        data: Vec<u8>,
        #[serde(with = "byte_array")]
        key: [u8; 32],
        #[serde(with = "bytes_seq")]
        parts: Vec<Vec<u8>>,
        name: Option<String>,
        n: u64,
    }

    fn body(data: Vec<u8>, parts: Vec<Vec<u8>>, name: Option<String>, n: u64) -> Body {
        Body {
            v: 1,
            data,
            key: [7; 32],
            parts,
            name,
            n,
        }
    }

    #[test]
    fn byte_strings_are_compact() {
        let b = body(vec![0xff; 1000], vec![vec![0xee; 100]], None, 0);
        let enc = encode(&b).unwrap();
        // Arrays of integers would take ~2 bytes per 0xff byte.
        assert!(
            enc.len() < 1000 + 100 + 32 + 64,
            "encoded {} bytes",
            enc.len()
        );
        assert_eq!(decode::<Body>(&enc, 4096).unwrap(), b);
    }

    #[test]
    fn decode_checks_length_first() {
        let enc = encode(&body(vec![1; 100], vec![], None, 0)).unwrap();
        let err = decode::<Body>(&enc, enc.len() - 1).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { len, max }
                if len == enc.len() && max == enc.len() - 1));
    }

    #[test]
    fn decode_rejects_garbage_and_trailing_bytes() {
        assert!(matches!(
            decode::<Body>(&[0xff, 0x00, 0x13], 100),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Body>(&[], 100),
            Err(WireError::Malformed(_))
        ));
        let mut enc = encode(&body(vec![], vec![], None, 0)).unwrap();
        enc.push(0);
        assert!(matches!(
            decode::<Body>(&enc, 1000),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn decode_rejects_wrong_array_length() {
        #[derive(Serialize)]
        struct Short {
            #[serde(with = "byte_array")]
            key: [u8; 31],
        }
        #[derive(Debug, Deserialize)]
        struct Long {
            #[serde(with = "byte_array")]
            #[allow(dead_code)]
            key: [u8; 32],
        }
        let enc = encode(&Short { key: [0; 31] }).unwrap();
        assert!(matches!(
            decode::<Long>(&enc, 100),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        // 100_000 nested one-element arrays: 0x81 0x81 ... 0x00.
        let mut evil = vec![0x81u8; 100_000];
        evil.push(0);
        let r = decode::<ciborium::Value>(&evil, 200_000);
        assert!(matches!(r, Err(WireError::Malformed(_))));
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A byte string and an array announcing 2^63 elements, with no content.
        let bstr = [0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode::<ciborium::Value>(&bstr, 100),
            Err(WireError::Malformed(_))
        ));
        let arr = [0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode::<Vec<u64>>(&arr, 100),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn versions_are_told_apart() {
        #[derive(Serialize)]
        struct V2 {
            v: u32,
            other: String,
        }
        let enc = encode(&V2 {
            v: 2,
            other: "x".into(),
        })
        .unwrap();
        let r = decode_versioned::<Body>(&enc, 1000, 1, |b| b.v);
        assert!(matches!(r, Err(WireError::UnsupportedVersion(2))));

        let mut b = body(vec![], vec![], None, 0);
        b.v = 9;
        let enc = encode(&b).unwrap();
        let r = decode_versioned::<Body>(&enc, 1000, 1, |b| b.v);
        assert!(matches!(r, Err(WireError::UnsupportedVersion(9))));

        // A v1 body missing fields is malformed, not unsupported.
        let enc = encode(&V2 {
            v: 1,
            other: "x".into(),
        })
        .unwrap();
        let r = decode_versioned::<Body>(&enc, 1000, 1, |b| b.v);
        assert!(matches!(r, Err(WireError::Malformed(_))));

        let enc = encode(&body(vec![1], vec![], None, 0)).unwrap();
        assert!(decode_versioned::<Body>(&enc, 1000, 1, |b| b.v).is_ok());
    }

    #[test]
    fn frame_round_trip_and_sequence() {
        let mut buf = Cursor::new(Vec::new());
        block_on(async {
            write_frame(&mut buf, b"hello", 100).await.unwrap();
            write_frame(&mut buf, b"", 100).await.unwrap();
            write_frame(&mut buf, &[9; 100], 100).await.unwrap();
        });
        let mut r = Cursor::new(buf.into_inner());
        block_on(async {
            assert_eq!(read_frame(&mut r, 100).await.unwrap(), b"hello");
            assert_eq!(read_frame(&mut r, 100).await.unwrap(), b"");
            assert_eq!(read_frame(&mut r, 100).await.unwrap(), vec![9; 100]);
            assert!(matches!(
                read_frame(&mut r, 100).await,
                Err(WireError::Closed)
            ));
        });
    }

    #[test]
    fn oversize_frames_are_rejected_on_both_sides() {
        let mut buf = Cursor::new(Vec::new());
        let r = block_on(write_frame(&mut buf, &[0; 11], 10));
        assert!(matches!(r, Err(WireError::TooLarge { len: 11, max: 10 })));
        assert!(buf.get_ref().is_empty());

        // A prefix announcing 4 GiB, with no body: rejected without reading further.
        let mut r = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let res = block_on(read_frame(&mut r, 1 << 20));
        assert!(matches!(res, Err(WireError::TooLarge { len, max })
                if len == u32::MAX as usize && max == 1 << 20));
    }

    #[test]
    fn truncated_frames_are_reported() {
        for input in [
            vec![0u8],
            vec![0, 0, 0],
            vec![0, 0, 0, 5, 1, 2],
            vec![0, 0, 1, 0],
        ] {
            let mut r = Cursor::new(input.clone());
            let res = block_on(read_frame(&mut r, 1000));
            assert!(
                matches!(res, Err(WireError::Truncated)),
                "{input:?}: {res:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn prop_body_round_trip(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            name in proptest::option::of(".{0,40}"),
            n in any::<u64>(),
        ) {
            let b = body(data, parts, name, n);
            let enc = encode(&b).unwrap();
            prop_assert_eq!(decode::<Body>(&enc, enc.len()).unwrap(), b);
        }

        #[test]
        fn prop_garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Body>(&garbage, 1024);
            let _ = decode_versioned::<Body>(&garbage, 1024, 1, |b| b.v);
            let _ = decode::<ciborium::Value>(&garbage, 1024);
            let mut r = Cursor::new(garbage);
            let _ = block_on(read_frame(&mut r, 256));
        }

        #[test]
        fn prop_frame_round_trip(
            frames in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300),
                0..6,
            ),
        ) {
            let mut buf = Cursor::new(Vec::new());
            block_on(async {
                for f in &frames {
                    write_frame(&mut buf, f, 300).await.unwrap();
                }
            });
            let mut r = Cursor::new(buf.into_inner());
            block_on(async {
                for f in &frames {
                    prop_assert_eq!(&read_frame(&mut r, 300).await.unwrap(), f);
                }
                prop_assert!(matches!(read_frame(&mut r, 300).await, Err(WireError::Closed)));
                Ok(())
            })?;
        }

        #[test]
        fn prop_frame_cut_anywhere_is_truncated(
            frame in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = Cursor::new(Vec::new());
            block_on(write_frame(&mut buf, &frame, 200)).unwrap();
            let full = buf.into_inner();
            let cut = 1 + cut.index(full.len() - 1); // 1..len: never empty, never whole
            if cut < full.len() {
                let mut r = Cursor::new(full[..cut].to_vec());
                let res = block_on(read_frame(&mut r, 200));
                prop_assert!(matches!(res, Err(WireError::Truncated)));
            }
        }
    }
}
