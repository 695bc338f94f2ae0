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
//!   a small recursion limit ([`RECURSION_LIMIT`]; ciborium's default of 256 is deeper
//!   than we ever need), and rejects trailing bytes so that one body has exactly one
//!   encoding-level meaning.
//! - [`read_frame`] reads a `u32` big-endian length prefix and refuses lengths above the
//!   caller's cap before reading or allocating anything for the body.
//!
//! # Limits while decoding
//! A length cap alone does not bound memory: one CBOR byte (an empty byte string, an
//! empty array, a small integer) can become a 24-byte `Vec` or an 8-byte `u64`, so an
//! 8 MiB frame of empty byte strings would expand to ~200 MB of `Vec<Vec<u8>>` before
//! any check after decoding could run. So every variable-length sequence and every
//! text field that comes from outside is decoded through a bounded helper of [`Max`]
//! that refuses the item (or the text) past its limit *while decoding*, before it is
//! allocated:
//!
//! ```ignore
//! #[serde(deserialize_with = "wire::Max::<MAX_ACK>::seq")]
//! seqs: Vec<u64>,
//! #[serde(serialize_with = "wire::bytes_seq::serialize",
//!         deserialize_with = "wire::Max::<MAX_BATCH>::bytes_seq")]
//! envelopes: Vec<Vec<u8>>,
//! #[serde(deserialize_with = "wire::Max::<MAX_TEXT_LEN>::text")]
//! text: String,
//! #[serde(default, deserialize_with = "wire::Max::<MAX_NAME_BYTES>::opt_text")]
//! name: Option<String>,
//! ```
//!
//! (A const argument that is a path of more than one segment needs braces:
//! `wire::Max::<{ peer_record::MAX_ADDRS }>::seq`.) A violation surfaces from
//! [`decode`] as the typed [`WireError::TooMany`] or [`WireError::TooLong`], nesting
//! deeper than [`RECURSION_LIMIT`] as [`WireError::TooDeep`]. Unknown map entries are
//! skipped without being stored, so they cost time proportional to the (capped) input
//! and no memory. Byte strings grow only as their bytes are actually read, so they
//! cost at most what the input holds.
//!
//! Byte strings: serde encodes `Vec<u8>` and `[u8; N]` as arrays of integers, which in
//! CBOR costs up to two bytes per byte. The [`bytes`], [`byte_array`] and [`bytes_seq`]
//! helpers (for `#[serde(with = "...")]`) encode them as CBOR byte strings instead.

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Deserializer, Serialize, de, de::DeserializeOwned};

/// How deeply nested a CBOR value may be, in levels of arrays, maps and tags.
///
/// Our bodies nest at most a few levels (struct → list → struct); 64 leaves ample room
/// for evolution while keeping worst-case stack use of the recursive decoder small, which
/// matters on tokio worker threads. Deeper input is [`WireError::TooDeep`].
pub const RECURSION_LIMIT: usize = 64;

/// Most items a sequence decoded with [`bytes_seq`] (`#[serde(with = "wire::bytes_seq")]`)
/// may hold when its field names no tighter limit.
///
/// A safety net, not a protocol limit: as many as a group may have members
/// ([`crate::group::membership::MAX_MEMBERS`]), the longest list kith sends. Fields
/// with a known bound use [`Max::bytes_seq`] with their own constant instead.
pub const DEFAULT_MAX_ITEMS: usize = 1024;

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
    /// A sequence in the body holds more items than its limit; refused while decoding,
    /// at the first item past the limit (or at a definite length that announces more).
    #[error("a list in the message holds more than {max} items")]
    TooMany {
        /// The limit, in items.
        max: usize,
    },
    /// A text field in the body is longer than its limit; refused while decoding.
    #[error("a text field of {len} bytes exceeds its limit of {max} bytes")]
    TooLong {
        /// The field's length in bytes of UTF-8.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The body nests arrays, maps or tags deeper than [`RECURSION_LIMIT`].
    #[error("message nested deeper than {max} levels")]
    TooDeep {
        /// The limit, in levels.
        max: usize,
    },
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
    // Most values are a few hundred bytes: skip the first doublings from empty.
    let mut out = Vec::with_capacity(256);
    ciborium::ser::into_writer(value, &mut out).map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes one CBOR value of type `T` that must span all of `bytes`.
///
/// # Errors
/// - [`WireError::TooLarge`] if `bytes` is longer than `max_len` (checked first).
/// - [`WireError::TooMany`], [`WireError::TooLong`] if a field decoded through [`Max`]
///   is over its limit; [`WireError::TooDeep`] if the value nests too deeply.
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
/// version, or fails to decode as `T` (malformed or over a limit) while still being a
/// map with an integer `v` that differs from `supported` (a newer layout, which may
/// have other limits), the result is [`WireError::UnsupportedVersion`].
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
        Err(
            e @ (WireError::Malformed(_)
            | WireError::TooMany { .. }
            | WireError::TooLong { .. }
            | WireError::TooDeep { .. }),
        ) => {
            // Only on the failure path: probing costs a second parse (skipping every
            // field but `v`, so it allocates nothing), and a well-formed current-version
            // body never pays it.
            match decode_unchecked::<VersionProbe>(bytes) {
                Ok(probe) if probe.v != supported => Err(WireError::UnsupportedVersion(probe.v)),
                _ => Err(e),
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
    VIOLATION.with(|v| v.set(None));
    let decoded = ciborium::de::from_reader_with_recursion_limit(&mut rest, RECURSION_LIMIT);
    let violation = VIOLATION.with(Cell::take);
    let value = decoded.map_err(|e| match (e, violation) {
        (_, Some(Violation::Count { max })) => WireError::TooMany { max },
        (_, Some(Violation::Length { len, max })) => WireError::TooLong { len, max },
        (ciborium::de::Error::RecursionLimitExceeded, None) => WireError::TooDeep { max: RECURSION_LIMIT },
        (e, None) => WireError::Malformed(e.to_string()),
    })?;
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
    // Grow the buffer as bytes arrive (doubling, but never past `len`): a stalled
    // stream costs little, and a complete frame costs its length, not the next power
    // of two that `read_to_end` would reserve while probing for the end.
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        if body.len() == body.capacity() {
            let target = len.min(body.capacity().saturating_mul(2).max(FRAME_PREALLOC_MAX_BYTES));
            body.reserve_exact(target - body.len());
        }
        let start = body.len();
        body.resize(body.capacity().min(len), 0);
        match io.read(&mut body[start..]).await {
            Ok(0) => return Err(WireError::Truncated),
            Ok(n) => body.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => body.truncate(start),
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    Ok(body)
}

/// Frames up to this length are written together with their length prefix in one
/// write: a write to a muxed stream of up to yamux's 16 KiB split size becomes one
/// muxer frame, so a separate prefix would cost a frame of its own. Longer ones are
/// split by the muxer anyway, so copying them would save nothing.
const ONE_WRITE_MAX: usize = 16 * 1024;

/// Writes one length-prefixed frame and flushes the stream.
///
/// `max_len` should be the limit the receiving side applies, so an oversized frame fails
/// here, locally and with a clear error, instead of being rejected by the peer.
/// A frame of up to 16 KiB leaves in one write, its prefix included.
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
    if frame.len() <= ONE_WRITE_MAX {
        let mut prefixed = Vec::with_capacity(4 + frame.len());
        prefixed.extend_from_slice(&len.to_be_bytes());
        prefixed.extend_from_slice(frame);
        io.write_all(&prefixed).await?;
    } else {
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(frame).await?;
    }
    io.flush().await?;
    Ok(())
}

/// Whether `n` is 0: for `skip_serializing_if` on optional numbers added to a body
/// after it was first defined, so a body without them encodes as it always did.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub fn is_zero(n: &u64) -> bool {
    *n == 0
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
///
/// Decoding is bounded by [`DEFAULT_MAX_ITEMS`](super::DEFAULT_MAX_ITEMS); a field with
/// a known limit pairs [`serialize`] with [`Max::bytes_seq`](super::Max::bytes_seq)
/// instead.
pub mod bytes_seq {
    use serde::{Deserializer, Serialize, Serializer};

    /// Serializes each element as a byte string.
    ///
    /// # Errors
    /// Only those of the serializer.
    pub fn serialize<S: Serializer>(value: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(value.iter().map(|b| ByteStr(b)))
    }

    /// Deserializes an array of at most [`DEFAULT_MAX_ITEMS`](super::DEFAULT_MAX_ITEMS)
    /// byte strings.
    ///
    /// # Errors
    /// If the value is not an array of byte strings, or holds too many.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        super::Max::<{ super::DEFAULT_MAX_ITEMS }>::bytes_seq(deserializer)
    }

    struct ByteStr<'a>(&'a [u8]);

    impl Serialize for ByteStr<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }
}

/// One CBOR byte string, as an element of [`Max::bytes_seq`].
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor).map(ByteBuf)
    }
}

/// Which limit a [`Max`] deserializer hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Violation {
    /// A sequence had more than `max` items.
    Count { max: usize },
    /// A text was `len` bytes, more than `max`.
    Length { len: usize, max: usize },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Count { max } => write!(f, "more than {max} items"),
            Violation::Length { len, max } => write!(f, "text of {len} bytes, limit {max}"),
        }
    }
}

thread_local! {
    /// The limit the decode running on this thread hit, if any. serde's error type
    /// carries only text; [`decode_unchecked`] clears this before and reads it after
    /// a decode to turn a violation into [`WireError::TooMany`] / [`WireError::TooLong`]
    /// without parsing messages. Decoding is synchronous, so one slot per thread is
    /// exact.
    static VIOLATION: Cell<Option<Violation>> = const { Cell::new(None) };
}

/// Records `violation` for [`decode`] and returns the serde error that stops decoding.
fn refuse<E: de::Error>(violation: Violation) -> E {
    VIOLATION.with(|v| v.set(Some(violation)));
    E::custom(violation)
}

/// Bounded deserializers: `#[serde(deserialize_with = "wire::Max::<N>::seq")]` and
/// friends (see the [module docs](self)). `N` counts items for sequences and bytes of
/// UTF-8 for texts. Each refuses the first item or byte past `N` *while decoding*,
/// before allocating for it, and [`decode`] reports that as [`WireError::TooMany`] or
/// [`WireError::TooLong`]. Serializing needs no helper (except [`bytes_seq::serialize`]
/// for arrays of byte strings): the limits guard what comes in.
#[derive(Debug, Clone, Copy)]
pub struct Max<const N: usize>;

impl<const N: usize> Max<N> {
    /// A sequence of at most `N` items of `T`.
    ///
    /// # Errors
    /// If the value is not a sequence of `T`, or holds more than `N` items.
    pub fn seq<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        deserializer.deserialize_seq(SeqVisitor::<T, N>(PhantomData))
    }

    /// An array of at most `N` CBOR byte strings (the encoding of
    /// [`bytes_seq::serialize`]).
    ///
    /// # Errors
    /// If the value is not an array of byte strings, or holds more than `N`.
    pub fn bytes_seq<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = deserializer.deserialize_seq(SeqVisitor::<ByteBuf, N>(PhantomData))?;
        Ok(items.into_iter().map(|b| b.0).collect())
    }

    /// A text of at most `N` bytes of UTF-8.
    ///
    /// # Errors
    /// If the value is not a text string, or is longer than `N` bytes.
    pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(TextVisitor::<N>)
    }

    /// An optional text of at most `N` bytes (`null` is `None`). Pair it with
    /// `#[serde(default)]` so that an absent field stays `None`, as it is without a helper.
    ///
    /// # Errors
    /// If the value is neither null nor a text string, or is longer than `N` bytes.
    pub fn opt_text<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_option(OptTextVisitor::<N>)
    }
}

/// Collects at most `N` items; item `N + 1` is only skipped over (never stored) to see
/// that it exists, and a definite length above `N` is refused before the first item.
struct SeqVisitor<T, const N: usize>(PhantomData<fn() -> T>);

impl<'de, T: Deserialize<'de>, const N: usize> de::Visitor<'de> for SeqVisitor<T, N> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a sequence of at most {N} items")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let announced = seq.size_hint();
        if announced.is_some_and(|n| n > N) {
            return Err(refuse(Violation::Count { max: N }));
        }
        let mut out = Vec::with_capacity(announced.unwrap_or(0));
        loop {
            if out.len() == N {
                return match seq.next_element::<de::IgnoredAny>()? {
                    Some(_) => Err(refuse(Violation::Count { max: N })),
                    None => Ok(out),
                };
            }
            match seq.next_element()? {
                Some(item) => out.push(item),
                None => return Ok(out),
            }
        }
    }
}

/// Accepts a text string of at most `N` bytes.
struct TextVisitor<const N: usize>;

impl<const N: usize> de::Visitor<'_> for TextVisitor<N> {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a text of at most {N} bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        check_len::<E, N>(v.len())?;
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        check_len::<E, N>(v.len())?;
        Ok(v)
    }
}

fn check_len<E: de::Error, const N: usize>(len: usize) -> Result<(), E> {
    if len > N {
        return Err(refuse(Violation::Length { len, max: N }));
    }
    Ok(())
}

/// `null` or a text string of at most `N` bytes.
struct OptTextVisitor<const N: usize>;

impl<'de, const N: usize> de::Visitor<'de> for OptTextVisitor<N> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "null or a text of at most {N} bytes")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        Max::<N>::text(deserializer).map(Some)
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

/// The typed [`WireError`] inside an error a codec returned, if any.
#[cfg(test)]
pub(crate) fn wire_error(e: &io::Error) -> Option<&WireError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<WireError>())
}

/// `body` as a length-prefixed frame of version `v`, bypassing every check a codec
/// makes before sending, as a hostile peer would.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn raw_frame<T: Serialize>(body: T, v: u32) -> Vec<u8> {
    let bytes = encode(&Frame { v, body }).unwrap();
    let mut out = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
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

    /// `depth` nested one-element arrays around a 0: 0x81 0x81 ... 0x00.
    fn nested(depth: usize) -> Vec<u8> {
        let mut out = vec![0x81u8; depth];
        out.push(0);
        out
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        let r = decode::<ciborium::Value>(&nested(100_000), 200_000);
        assert!(matches!(r, Err(WireError::TooDeep { max: RECURSION_LIMIT })), "{r:?}");
    }

    #[test]
    fn recursion_limit_at_and_past() {
        // The outermost array is level 1: RECURSION_LIMIT arrays decode, one more is
        // refused with the typed error.
        assert!(decode::<ciborium::Value>(&nested(RECURSION_LIMIT), 1000).is_ok());
        let r = decode::<ciborium::Value>(&nested(RECURSION_LIMIT + 1), 1000);
        assert!(matches!(r, Err(WireError::TooDeep { max: RECURSION_LIMIT })), "{r:?}");
        // Also inside a typed body, in a field the type ignores.
        #[derive(Debug, Deserialize)]
        struct Tiny {
            #[allow(dead_code)]
            v: u32,
        }
        let mut body = vec![0xa2, 0x61, b'v', 0x01, 0x61, b'x'];
        body.extend(nested(RECURSION_LIMIT + 1));
        let r = decode::<Tiny>(&body, 1000);
        assert!(matches!(r, Err(WireError::TooDeep { .. })), "{r:?}");
    }

    const LIMIT: usize = 4;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Bounded {
        #[serde(deserialize_with = "Max::<LIMIT>::seq")]
        nums: Vec<u64>,
        #[serde(serialize_with = "bytes_seq::serialize", deserialize_with = "Max::<LIMIT>::bytes_seq")]
        blobs: Vec<Vec<u8>>,
        #[serde(deserialize_with = "Max::<LIMIT>::text")]
        text: String,
        #[serde(default, deserialize_with = "Max::<LIMIT>::opt_text")]
        name: Option<String>,
    }

    fn bounded(n: usize, text: &str, name: Option<&str>) -> Bounded {
        Bounded {
            nums: vec![7; n],
            blobs: vec![vec![]; n],
            text: text.into(),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn max_helpers_accept_at_the_limit() {
        for b in [
            bounded(LIMIT, "abcd", Some("wxyz")),
            bounded(0, "", None),
            bounded(1, "ж", Some("")),
        ] {
            assert_eq!(decode::<Bounded>(&encode(&b).unwrap(), 1000).unwrap(), b);
        }
        // An absent optional text is None, as without the helper.
        #[derive(Serialize)]
        struct NoName {
            nums: Vec<u64>,
            #[serde(with = "bytes_seq")]
            blobs: Vec<Vec<u8>>,
            text: String,
        }
        let enc = encode(&NoName { nums: vec![], blobs: vec![], text: "t".into() }).unwrap();
        assert_eq!(decode::<Bounded>(&enc, 1000).unwrap().name, None);
    }

    #[test]
    fn max_helpers_refuse_past_the_limit_with_typed_errors() {
        let mut too_many_nums = bounded(LIMIT, "", None);
        too_many_nums.nums.push(1);
        let mut too_many_blobs = bounded(LIMIT, "", None);
        too_many_blobs.blobs.push(vec![]);
        for b in [too_many_nums, too_many_blobs] {
            let r = decode::<Bounded>(&encode(&b).unwrap(), 1000);
            assert!(matches!(r, Err(WireError::TooMany { max: LIMIT })), "{r:?}");
        }
        // Four bytes of UTF-8 are the limit, not four characters.
        for (text, name) in [("abcde", None), ("", Some("abcde")), ("жж ", None)] {
            let r = decode::<Bounded>(&encode(&bounded(0, text, name)).unwrap(), 1000);
            assert!(matches!(r, Err(WireError::TooLong { len: 5, max: LIMIT })), "{r:?}");
        }
        // Not a typed limit error: a wrong type is still malformed, and the slot is
        // cleared between decodes.
        let r = decode::<Bounded>(&encode(&"text").unwrap(), 1000);
        assert!(matches!(r, Err(WireError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn definite_lengths_over_the_limit_are_refused_before_any_item() {
        // {"nums": [announcing 2^32 items, none present]}
        let mut evil = vec![0xa1, 0x64];
        evil.extend_from_slice(b"nums");
        evil.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
        let r = decode::<Bounded>(&evil, 1000);
        assert!(matches!(r, Err(WireError::TooMany { max: LIMIT })), "{r:?}");
    }

    #[test]
    fn indefinite_lengths_are_refused_at_the_first_extra_item() {
        // {"blobs": [_ h'', h'', ... ]} with LIMIT + 1 empty byte strings and no end:
        // refused at item LIMIT + 1, before the missing "break" is noticed.
        let mut evil = vec![0xa1, 0x65];
        evil.extend_from_slice(b"blobs");
        evil.push(0x9f);
        evil.extend(std::iter::repeat_n(0x40, LIMIT + 1));
        let r = decode::<Bounded>(&evil, 1000);
        assert!(matches!(r, Err(WireError::TooMany { max: LIMIT })), "{r:?}");
        // With exactly LIMIT and a break it is only missing the other fields.
        evil.truncate(evil.len() - 1);
        evil.push(0xff);
        let r = decode::<Bounded>(&evil, 1000);
        assert!(matches!(r, Err(WireError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn default_bytes_seq_is_bounded() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Loose {
            #[serde(with = "bytes_seq")]
            parts: Vec<Vec<u8>>,
        }
        let at = Loose { parts: vec![vec![]; DEFAULT_MAX_ITEMS] };
        assert_eq!(decode::<Loose>(&encode(&at).unwrap(), 1 << 20).unwrap(), at);
        let past = Loose { parts: vec![vec![]; DEFAULT_MAX_ITEMS + 1] };
        let r = decode::<Loose>(&encode(&past).unwrap(), 1 << 20);
        assert!(matches!(r, Err(WireError::TooMany { max: DEFAULT_MAX_ITEMS })), "{r:?}");
    }

    #[test]
    fn a_newer_version_over_our_limits_is_unsupported_not_too_many() {
        #[derive(Serialize)]
        struct Future {
            v: u32,
            nums: Vec<u64>,
        }
        #[derive(Debug, Deserialize)]
        struct Current {
            v: u32,
            #[serde(deserialize_with = "Max::<LIMIT>::seq")]
            #[allow(dead_code)]
            nums: Vec<u64>,
        }
        let enc = encode(&Future { v: 2, nums: vec![0; LIMIT + 1] }).unwrap();
        let r = decode_versioned::<Current>(&enc, 1000, 1, |c| c.v);
        assert!(matches!(r, Err(WireError::UnsupportedVersion(2))), "{r:?}");
        let enc = encode(&Future { v: 1, nums: vec![0; LIMIT + 1] }).unwrap();
        let r = decode_versioned::<Current>(&enc, 1000, 1, |c| c.v);
        assert!(matches!(r, Err(WireError::TooMany { max: LIMIT })), "{r:?}");
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

    /// A stream that records the length of each write it is handed.
    #[derive(Default)]
    struct Writes(Vec<usize>, Vec<u8>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.push(buf.len());
            self.1.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_message_sized_frame_leaves_in_one_write_with_its_length() {
        let mut small = Writes::default();
        block_on(write_frame(&mut small, &[7; 700], 1 << 20)).unwrap();
        assert_eq!(small.0, vec![704], "one write: prefix and frame together");
        let mut read = Cursor::new(small.1);
        assert_eq!(block_on(read_frame(&mut read, 1 << 20)).unwrap(), vec![7; 700]);

        let mut large = Writes::default();
        let frame = vec![8; ONE_WRITE_MAX + 1];
        block_on(write_frame(&mut large, &frame, 1 << 20)).unwrap();
        assert_eq!(large.0, vec![4, ONE_WRITE_MAX + 1], "a long frame is not copied first");
        let mut read = Cursor::new(large.1);
        assert_eq!(block_on(read_frame(&mut read, 1 << 20)).unwrap(), frame);
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
