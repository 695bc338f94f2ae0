//! Opening a libp2p stream to a peer, guarded against a request that is lost.
//!
//! libp2p-stream 0.5 parks a request for a peer it does not see connected in a
//! per-peer queue that only a *new* connection drains, and starts a dial. When that
//! dial is refused because a connection to the peer was being set up at that very
//! moment (`DialPeerConditionFalse`, which libp2p-stream does not handle), nothing
//! ever drains the queue and the request waits forever: an upload or fetch started
//! just as its connection came up stalled until its deadline (seen in the media
//! tests under load). Asking again finds the connection, so each attempt gets a
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
