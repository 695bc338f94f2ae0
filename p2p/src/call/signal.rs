//! `/kith/call/1`: call signalling between two connected peers.
//!
//! One stream per signal: the caller of [`send`] writes one [`Signal`] frame and
//! reads one [`Reply`] frame. The stream runs over the libp2p connection, which Noise
//! authenticates to the peer's identity key (a peer id *is* that key), so an offer or
//! answer, and the DTLS fingerprint inside its SDP, provably comes from that contact;
//! webrtc then accepts only the DTLS certificate the SDP names.

use std::time::Duration;

use futures::AsyncWriteExt;
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use serde::{Deserialize, Serialize};

use crate::wire;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/call/1");

/// Frame version of [`PROTOCOL`].
const VERSION: u32 = 1;

/// Largest signal frame: an SDP with a handful of candidates is 2–4 KiB.
pub const MAX_SIGNAL_LEN: usize = 32 * 1024;

/// Largest reply frame.
const MAX_REPLY_LEN: usize = 256;

/// A call's id: random, chosen by the caller.
pub type CallId = [u8; 16];

/// Why a call ended, as the other side is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    /// Ended by its user after it was answered, or cancelled by the caller.
    HungUp,
    /// The callee declined while it rang.
    Declined,
    /// The callee's node stopped ringing after its timeout.
    NoAnswer,
    /// Media could not be set up or was lost.
    Failed,
}

/// One signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Signal {
    /// The caller's offer: ring, please.
    Offer {
        /// The new call.
        call: CallId,
        /// The caller's complete SDP offer (candidates gathered, DTLS fingerprint).
        #[serde(deserialize_with = "wire::Max::<MAX_SIGNAL_LEN>::text")]
        sdp: String,
    },
    /// The callee's answer: it picked up.
    Answer {
        /// The call.
        call: CallId,
        /// The callee's complete SDP answer.
        #[serde(deserialize_with = "wire::Max::<MAX_SIGNAL_LEN>::text")]
        sdp: String,
    },
    /// Either side ends the call.
    Hangup {
        /// The call.
        call: CallId,
        /// Why.
        reason: HangupReason,
    },
}

impl Signal {
    /// The call it is about.
    pub fn call(&self) -> CallId {
        match self {
            Signal::Offer { call, .. } | Signal::Answer { call, .. } | Signal::Hangup { call, .. } => *call,
        }
    }
}

/// The answer to a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// An offer rings.
    Ringing,
    /// An answer or hang-up was taken.
    Ok,
    /// The callee is in another call.
    Busy,
    /// Refused: not a contact, blocked, or a signal about no call we know. Strangers
    /// get this and nothing else (their call never rings).
    Refused,
}

/// Why a signal could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// No stream could be opened to the peer (offline, unreachable).
    #[error("cannot reach the peer: {0}")]
    Unreachable(String),
    /// The stream broke, or the peer answered nonsense.
    #[error("signalling failed: {0}")]
    Io(#[from] std::io::Error),
    /// No reply within the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Sends `signal` to `peer` and returns its reply, all within `deadline`.
pub async fn send(control: Control, peer: PeerId, signal: &Signal, deadline: Duration) -> Result<Reply, SignalError> {
    let exchange = async {
        let mut stream =
            crate::streams::open(&control, peer, PROTOCOL).await.map_err(|e| SignalError::Unreachable(e.to_string()))?;
        // A peer that does not take calls says so with its first answer (streams
        // are negotiated lazily): it is unreachable for a call, not a broken stream.
        let refused = |e: std::io::Error| {
            if crate::streams::refused_protocol(&e) {
                SignalError::Unreachable(format!("{peer} does not take calls"))
            } else {
                SignalError::Io(e)
            }
        };
        wire::write_body(&mut stream, signal, MAX_SIGNAL_LEN, VERSION).await.map_err(refused)?;
        let reply: Reply = wire::read_body(&mut stream, MAX_REPLY_LEN, VERSION).await.map_err(refused)?;
        let _ = stream.close().await;
        Ok(reply)
    };
    tokio::time::timeout(deadline, exchange).await.map_err(|_| SignalError::Timeout(deadline))?
}

/// Reads the one signal of an incoming stream (within `deadline`: a peer that opens
/// streams and sends nothing holds no task for long).
pub async fn read(stream: &mut libp2p::Stream, deadline: Duration) -> Result<Signal, SignalError> {
    tokio::time::timeout(deadline, wire::read_body(stream, MAX_SIGNAL_LEN, VERSION))
        .await
        .map_err(|_| SignalError::Timeout(deadline))?
        .map_err(SignalError::Io)
}

/// Writes the reply to a signal read with [`read`].
pub async fn reply(stream: &mut libp2p::Stream, reply: Reply) -> Result<(), SignalError> {
    wire::write_body(stream, reply, MAX_REPLY_LEN, VERSION).await?;
    let _ = stream.close().await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn signals_round_trip_and_oversized_sdp_is_refused() {
        let offer = Signal::Offer { call: [7; 16], sdp: "v=0\r\n".repeat(10) };
        let mut buf = Cursor::new(Vec::new());
        wire::write_body(&mut buf, &offer, MAX_SIGNAL_LEN, VERSION).await.unwrap();
        let got: Signal = wire::read_body(&mut Cursor::new(buf.into_inner()), MAX_SIGNAL_LEN, VERSION).await.unwrap();
        assert_eq!(got, offer);
        assert_eq!(got.call(), [7; 16]);

        let huge = Signal::Answer { call: [1; 16], sdp: "a".repeat(MAX_SIGNAL_LEN + 1) };
        let mut buf = Cursor::new(Vec::new());
        assert!(wire::write_body(&mut buf, &huge, MAX_SIGNAL_LEN, VERSION).await.is_err(), "never sent");
        let raw = wire::raw_frame(&huge, VERSION);
        let err = wire::read_body::<Signal, _>(&mut Cursor::new(raw), MAX_SIGNAL_LEN * 2, VERSION).await;
        assert!(err.is_err(), "an SDP over the limit is refused while decoding");

        let junk = vec![0xffu8; 64];
        assert!(wire::read_body::<Signal, _>(&mut Cursor::new(junk), MAX_SIGNAL_LEN, VERSION).await.is_err());
    }
}
