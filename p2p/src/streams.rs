//! Opening a libp2p stream to a peer, guarded against a request that is lost.
//!
//! libp2p-stream 0.5 parks a request for a peer it does not see connected in a
//! per-peer queue that only a *new* connection drains, and starts a dial. When that
//! dial is refused because a connection to the peer was being set up at that very
//! moment (`DialPeerConditionFalse`, which libp2p-stream does not handle), nothing
//! ever drains the queue and the request waits forever: an upload or fetch started
//! just as its connection came up stalled until its deadline (seen in the media
//! tests under load). (A dial request lost because others were asked for in the
//! same turn no longer happens: vendor/libp2p-stream keeps room for 64.) Asking
//! again finds the connection, so each attempt gets a
//! short window, doubling, and a stalled one is asked again. Callers bound the whole
//! with their own deadline; an abandoned request, if a later connection ever takes
//! it, opens a stream that is dropped at once.

use std::time::Duration;

use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, OpenStreamError};

/// The first attempt's window; each next one doubles, up to [`LONGEST_WINDOW`].
const FIRST_WINDOW: Duration = Duration::from_millis(1500);
/// The longest window one attempt gets (a dial through a relay's circuit fits).
const LONGEST_WINDOW: Duration = Duration::from_secs(12);

/// Opens a `protocol` stream to `peer` (dialling it if needed), asking again when an
/// attempt stalls. Never returns a timeout of its own: wrap it in the caller's.
pub async fn open(control: &Control, peer: PeerId, protocol: StreamProtocol) -> Result<Stream, OpenStreamError> {
    let mut window = FIRST_WINDOW;
    loop {
        let mut control = control.clone();
        match tokio::time::timeout(window, control.open_stream(peer, protocol.clone())).await {
            Ok(result) => return result,
            Err(_) => {
                tracing::debug!(%peer, %protocol, ?window, "opening a stream stalled; asking again");
                window = (window * 2).min(LONGEST_WINDOW);
            }
        }
    }
}

/// Whether `error`, from reading or writing a stream [`open`] gave, is the peer
/// saying it does not speak the stream's protocol. The node negotiates streams
/// lazily (its swarm config), so that refusal arrives with the first answer rather
/// than from `open`.
pub fn refused_protocol(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<libp2p::core::upgrade::NegotiationError>())
        .is_some_and(|n| matches!(n, libp2p::core::upgrade::NegotiationError::Failed))
}

#[cfg(test)]
mod tests {
    use libp2p::core::upgrade::NegotiationError;

    use super::refused_protocol;

    #[test]
    fn a_refused_protocol_is_told_apart_from_a_broken_stream() {
        // What multistream-select returns from a read when the peer answered `na`.
        assert!(refused_protocol(&NegotiationError::Failed.into()));
        assert!(!refused_protocol(&std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        assert!(!refused_protocol(&std::io::Error::other("something else")));
    }
}
