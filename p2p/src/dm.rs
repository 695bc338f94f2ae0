//! `/kith/dm/2` and `/kith/dm/1`: direct delivery of sealed envelopes to the
//! recipient's node.
//!
//! Both names carry the same requests and responses, and a node takes up to
//! [`MAX_BATCH`] envelopes a request on either. It sends on `/kith/dm/1` alone (one
//! protocol to propose: the stream's negotiation costs no round trip), and puts more
//! than [`MAX_BATCH_V1`] envelopes in a request only for a peer that lists
//! `/kith/dm/2` ([`PROTOCOL_V2`]) among its protocols, since nodes that speak only
//! `/kith/dm/1` refuse a request of more.
//!
//! A request carries a batch of envelopes (so one durable write and one round trip
//! cover many messages); the response has one [`DmResult`] per envelope, in order. The
//! receiver answers only after everything it reports as [`DmResult::Stored`] is
//! flushed to disk, so the sender may treat `Stored` as delivered. Frames are
//! length-prefixed CBOR; the length is checked against a cap before any allocation.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::wire;

/// The protocol name a node that takes batches of up to [`MAX_BATCH`] also answers
/// to, and lists, so that senders learn through identify that it takes them.
pub const PROTOCOL_V2: StreamProtocol = StreamProtocol::new("/kith/dm/2");

/// The protocol name requests are sent on.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/dm/1");

/// Most envelopes one request may carry (and so results one response may carry); the
/// sender batches up to this many for a peer that lists [`PROTOCOL_V2`].
///
/// Enforced while decoding: 256 envelopes are one durable write on the receiver, and
/// an 8 MiB request of empty byte strings must not become millions of `Vec`s. With one
/// request in flight per recipient, the batch is what one round trip (the receiver's
/// opening, storing and flush) moves: 64 held a stream of messages to ~12,500 a second
/// here (docs/PERFORMANCE.md).
pub const MAX_BATCH: usize = 256;

/// Most envelopes a node that speaks only `/kith/dm/1` takes in one request: the
/// most a sender puts in one for a peer that does not list [`PROTOCOL_V2`].
pub const MAX_BATCH_V1: usize = 64;

/// Cap on an encoded request. A full batch of large envelopes does not fit: the
/// sender also stops a batch at [`MAX_BATCH_BYTES`].
pub const MAX_REQUEST_LEN: usize = 8 * 1024 * 1024;

/// Most envelope bytes (with each one's CBOR header) a sender puts in one request:
/// the request cap, less room for the frame around them.
pub const MAX_BATCH_BYTES: usize = MAX_REQUEST_LEN - 4096;

/// What one envelope adds to a request besides its bytes (a CBOR byte string's
/// header is at most 9 bytes).
pub const ENVELOPE_FRAMING: usize = 9;

/// Cap on an encoded response.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// A batch of sealed envelopes for the receiving node's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmRequest {
    /// Encoded [`crate::envelope`] envelopes (CBOR byte strings on the wire), at most
    /// [`MAX_BATCH`].
    #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_BATCH>::bytes_seq")]
    pub envelopes: Vec<Vec<u8>>,
}

/// The receiver's verdict on each envelope of a request, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmResponse {
    /// One result per envelope, at most [`MAX_BATCH`].
    #[serde(deserialize_with = "wire::Max::<MAX_BATCH>::seq")]
    pub results: Vec<DmResult>,
}

/// What the receiver did with one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DmResult {
    /// Stored durably (or already stored before: a duplicate). The sender stops retrying.
    Stored,
    /// Taken, but without a claim that the user has it; the sender stops retrying.
    Accepted,
    /// Refused for good; retrying the same bytes will not help.
    Rejected(RejectReason),
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The envelope or its payload could not be decoded.
    #[error("malformed envelope")]
    Malformed,
    /// It is not sealed for this node's key, or was tampered with.
    #[error("cannot decrypt (wrong recipient or tampered)")]
    Decrypt,
    /// The sender's key is not bound to the identity it claims.
    #[error("sender identity not authenticated")]
    Forged,
    /// Larger than the receiver accepts.
    #[error("too large")]
    TooLarge,
    /// An encoding version the receiver does not speak.
    #[error("unsupported version")]
    Unsupported,
    /// The receiver could not store it (its disk); the sender should retry later.
    #[error("receiver storage failure")]
    Storage,
    /// The receiver cannot take it yet (e.g. a group key before the group's
    /// membership reached it); the sender keeps it and tries again later.
    #[error("not yet: try again later")]
    Unready,
    /// Its timestamp lies outside the receiver's replay window (written
    /// longer ago than [`kith_storage::REPLAY_WINDOW`], or more than
    /// [`kith_storage::MAX_CLOCK_SKEW`] ahead of the receiver's clock).
    #[error("outside the replay window")]
    Stale,
    /// The sender is not a contact and its contact request holds as much as
    /// the receiver keeps from a stranger, or too many requests are waiting
    /// (see [`crate::requests`]).
    #[error("contact request quota reached")]
    Quota,
}

/// The request-response codec for [`PROTOCOL`] (see [`wire::Codec`]).
pub type Codec = wire::Codec<DmRequest, DmResponse>;

impl wire::Message for DmRequest {
    const MAX_LEN: usize = MAX_REQUEST_LEN;

    fn check(&self) -> Result<(), &'static str> {
        if self.envelopes.len() > MAX_BATCH {
            return Err("batch too large");
        }
        Ok(())
    }

    /// Not checked when sending: the actor never builds a larger batch, and the
    /// robustness tests build oversized ones on purpose to see the receiver refuse them.
    fn check_outgoing(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl wire::Message for DmResponse {
    const MAX_LEN: usize = MAX_RESPONSE_LEN;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    use super::*;

    #[tokio::test]
    async fn request_round_trip_and_caps() {
        let mut codec = Codec::default();
        let req = DmRequest { envelopes: vec![vec![1, 2, 3], vec![]] };
        let mut buf = Cursor::new(Vec::new());
        codec.write_request(&PROTOCOL, &mut buf, req.clone()).await.unwrap();
        let bytes = buf.into_inner();
        let got = codec.read_request(&PROTOCOL, &mut Cursor::new(bytes.clone())).await.unwrap();
        assert_eq!(got, req);

        // Truncated, oversized-length and garbage frames are errors, not panics.
        let cut = &bytes[..bytes.len() - 1];
        assert!(codec.read_request(&PROTOCOL, &mut Cursor::new(cut.to_vec())).await.is_err());
        let huge = (u32::MAX).to_be_bytes().to_vec();
        assert!(codec.read_request(&PROTOCOL, &mut Cursor::new(huge)).await.is_err());
        let mut garbage = 8u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"\xffnonsens");
        assert!(codec.read_request(&PROTOCOL, &mut Cursor::new(garbage)).await.is_err());

        let too_many = DmRequest { envelopes: vec![vec![0]; MAX_BATCH + 1] };
        let mut buf = Cursor::new(Vec::new());
        codec.write_request(&PROTOCOL, &mut buf, too_many).await.unwrap();
        let err = codec.read_request(&PROTOCOL, &mut Cursor::new(buf.into_inner())).await;
        assert!(err.is_err());
    }

    #[tokio::test]
    async fn batch_limit_at_and_past_while_decoding() {
        let mut codec = Codec::default();
        let at = DmRequest { envelopes: vec![vec![]; MAX_BATCH] };
        let got = codec.read_request(&PROTOCOL, &mut Cursor::new(wire::raw_frame(&at, 1))).await.unwrap();
        assert_eq!(got, at);
        let past = DmRequest { envelopes: vec![vec![]; MAX_BATCH + 1] };
        let err = codec.read_request(&PROTOCOL, &mut Cursor::new(wire::raw_frame(&past, 1))).await.unwrap_err();
        assert!(matches!(wire::wire_error(&err), Some(wire::WireError::TooMany { max: MAX_BATCH })), "{err:?}");

        let at = DmResponse { results: vec![DmResult::Stored; MAX_BATCH] };
        let got = codec.read_response(&PROTOCOL, &mut Cursor::new(wire::raw_frame(&at, 1))).await.unwrap();
        assert_eq!(got, at);
        let past = DmResponse { results: vec![DmResult::Accepted; MAX_BATCH + 1] };
        let err = codec.read_response(&PROTOCOL, &mut Cursor::new(wire::raw_frame(&past, 1))).await.unwrap_err();
        assert!(matches!(wire::wire_error(&err), Some(wire::WireError::TooMany { max: MAX_BATCH })), "{err:?}");
    }
}
