//! `/kith/media/1`: asking a media node to hold a blob (upload), client side and wire
//! format. The media node pulls the blob from the uploader over `/kith/blob/1`, so
//! every chunk it stores is verified exactly as a recipient verifies it.
//!
//! (Work in progress: the protocol is being built; `upload` refuses for now.)

use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;

use super::BlobId;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/media/1");

/// Why a media node did not take a blob.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// Talking to the media node failed (unreachable, went away, timed out).
    #[error("talking to the media node failed: {0}")]
    Network(String),
}

/// Asks the media node `media` to hold blob `id` (held complete in this node's blob
/// store, which serves it): returns once the media node has it durably.
pub async fn upload(control: &Control, media: PeerId, id: BlobId) -> Result<(), UploadError> {
    let _ = (control, media, id);
    Err(UploadError::Network("media uploads are not built yet".into()))
}
