//! Targets for the framing and the request-response protocols: length-prefixed
//! frames ([`crate::wire`]) and the bodies of `/kith/dm/1`, `/kith/mailbox/1` and
//! `/kith/grouplog/1`, read through the codecs a libp2p stream uses.

use std::fmt::Debug;
use std::io;

use futures::executor::block_on;
use futures::io::Cursor;

use crate::wire::{self, Message, WireError};
use crate::{dm, grouplog, mailbox};

/// Largest frame [`wire_frame`] reads: small, so the fuzzer meets the limit.
const FRAME_MAX: usize = 1024;

/// A stream of length-prefixed frames, each decoded as a versioned `{v, body}` frame
/// of any CBOR value.
///
/// Invariants: every frame read is within the limit and writing it again gives back
/// exactly the bytes it was read from; the stream ends with a typed error (`Closed`
/// after the last whole frame, else `Truncated` or `TooLarge`); a body that decodes
/// re-encodes to bytes that decode to the same encoding.
pub fn wire_frame(bytes: &[u8]) {
    let mut stream = Cursor::new(bytes);
    loop {
        let start = stream.position();
        let frame = match block_on(wire::read_frame(&mut stream, FRAME_MAX)) {
            Ok(frame) => frame,
            Err(WireError::Closed) => {
                assert_eq!(usize::try_from(start).ok(), Some(bytes.len()), "Closed before the end of the input");
                return;
            }
            Err(WireError::Truncated | WireError::TooLarge { .. }) => return,
            Err(other) => panic!("read_frame: unexpected error {other:?}"),
        };
        assert!(frame.len() <= FRAME_MAX, "frame of {} bytes over {FRAME_MAX}", frame.len());
        let mut again = Cursor::new(Vec::new());
        block_on(wire::write_frame(&mut again, &frame, FRAME_MAX)).unwrap_or_else(|e| panic!("write_frame: {e}"));
        let consumed = start_to(bytes, start, stream.position());
        assert_eq!(again.get_ref().as_slice(), consumed, "a frame written again differs from the frame read");
        decode_any(&frame);
    }
}

/// The input bytes between two stream positions.
fn start_to(bytes: &[u8], from: u64, to: u64) -> &[u8] {
    let from = usize::try_from(from).unwrap_or(usize::MAX);
    let to = usize::try_from(to).unwrap_or(usize::MAX);
    bytes.get(from..to).unwrap_or_else(|| panic!("positions {from}..{to} outside the input"))
}

/// Decodes `frame` as a versioned frame of any value and checks that the value's
/// encoding is stable.
fn decode_any(frame: &[u8]) {
    let decoded = wire::decode_versioned::<wire::Frame<ciborium::Value>>(frame, FRAME_MAX, 1, |f| f.v);
    match decoded {
        Ok(value) => {
            let encoded = wire::encode(&value).unwrap_or_else(|e| panic!("encode a decoded frame: {e}"));
            let again: wire::Frame<ciborium::Value> =
                wire::decode(&encoded, usize::MAX).unwrap_or_else(|e| panic!("decode a re-encoded frame: {e}"));
            let twice = wire::encode(&again).unwrap_or_else(|e| panic!("encode twice: {e}"));
            assert_eq!(encoded, twice, "the encoding of a decoded frame is not stable");
        }
        Err(e) => super::assert_decode_error(&e),
    }
}

/// `/kith/dm/1`: mode byte even = a request, odd = a response; then the stream.
pub fn dm(bytes: &[u8]) {
    protocol::<dm::DmRequest, dm::DmResponse>(bytes);
}

/// `/kith/mailbox/1`: mode byte even = a request, odd = a response; then the stream.
pub fn mailbox(bytes: &[u8]) {
    protocol::<mailbox::MailboxRequest, mailbox::MailboxResponse>(bytes);
}

/// `/kith/grouplog/1`: mode byte even = a request, odd = a response; then the stream.
pub fn grouplog(bytes: &[u8]) {
    protocol::<grouplog::GroupLogRequest, grouplog::GroupLogResponse>(bytes);
}

/// Reads one request or response of a protocol from the stream.
///
/// Invariants: a body read passes the protocol's own checks; written again it reads
/// back equal (whatever encoding it came in); the error of a refused stream is
/// `InvalidData` carrying a typed [`WireError`] or the protocol's check message.
fn protocol<Req, Resp>(bytes: &[u8])
where
    Req: Message + PartialEq + Debug,
    Resp: Message + PartialEq + Debug,
{
    super::by_mode(bytes, round_trip::<Req>, round_trip::<Resp>);
}

fn round_trip<M: Message + PartialEq + Debug>(stream: &[u8]) {
    let read = block_on(wire::read_body::<M, _>(&mut Cursor::new(stream), M::MAX_LEN, wire::PROTOCOL_FRAME_VERSION))
        .and_then(|body| {
            body.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(body)
        });
    let body = match read {
        Ok(body) => body,
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "unexpected error kind: {e:?}");
            let inner = e.get_ref().and_then(|inner| inner.downcast_ref::<WireError>());
            if let Some(inner) = inner
                && !matches!(inner, WireError::Closed | WireError::Truncated)
            {
                super::assert_decode_error(inner);
            }
            return;
        }
    };
    let mut written = Cursor::new(Vec::new());
    block_on(wire::write_body(&mut written, &body, usize::MAX, wire::PROTOCOL_FRAME_VERSION))
        .unwrap_or_else(|e| panic!("write a body that was read: {e}"));
    let bytes = written.into_inner();
    let again: M = block_on(wire::read_body(&mut Cursor::new(&bytes), usize::MAX, wire::PROTOCOL_FRAME_VERSION))
        .unwrap_or_else(|e| panic!("read a body written again: {e}"));
    assert_eq!(again, body, "a body written and read again differs");
    again.check().unwrap_or_else(|e| panic!("a body written again fails its check: {e}"));
}
