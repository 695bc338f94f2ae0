//! `/kith/dm/1`: direct delivery of sealed envelopes to the recipient's node.
//!
//! A request carries a batch of envelopes (so one durable write and one round trip
//! cover many messages); the response has one [`DmResult`] per envelope, in order. The
//! receiver answers only after everything it reports as [`DmResult::Stored`] is
//! flushed to disk, so the sender may treat `Stored` as delivered. Frames are
//! length-prefixed CBOR; the length is checked against a cap before any allocation.

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::wire;

/// The protocol name negotiated on the stream.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/dm/1");

/// Most envelopes one request may carry; the sender batches up to this many.
pub const MAX_BATCH: usize = 64;

/// Cap on an encoded request (a full batch of large envelopes fits).
pub const MAX_REQUEST_LEN: usize = 8 * 1024 * 1024;

/// Cap on an encoded response.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// A batch of sealed envelopes for the receiving node's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmRequest {
    /// Encoded [`crate::envelope`] envelopes (CBOR byte strings on the wire).
    #[serde(with = "wire::bytes_seq")]
    pub envelopes: Vec<Vec<u8>>,
}

/// The receiver's verdict on each envelope of a request, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmResponse {
    /// One result per envelope.
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
}

const FRAME_VERSION: u32 = 1;

/// The request-response codec for [`PROTOCOL`].
#[derive(Debug, Clone, Default)]
pub struct Codec;

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = DmRequest;
    type Response = DmResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DmRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let request: DmRequest = wire::read_body(io, MAX_REQUEST_LEN, FRAME_VERSION).await?;
        if request.envelopes.len() > MAX_BATCH {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "batch too large"));
        }
        Ok(request)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DmResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        wire::read_body(io, MAX_RESPONSE_LEN, FRAME_VERSION).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: DmRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        wire::write_body(io, req, MAX_REQUEST_LEN, FRAME_VERSION).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: DmResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        wire::write_body(io, res, MAX_RESPONSE_LEN, FRAME_VERSION).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    use super::*;

    #[tokio::test]
    async fn request_round_trip_and_caps() {
        let mut codec = Codec;
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
}
