//! Pushing a file to media nodes while it is sealed ([`Push`]): the one pass that
//! seals the file into the blob store also streams every sealed chunk to each media
//! node that admitted the push, instead of sealing first and having each media node
//! pull the blob afterwards (two passes in a row). A push that fails on the way is
//! left for the pull upload, which resumes and retries; the file is sealed whole
//! either way.

use futures::future::join_all;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::sending::Progress;
use crate::blob::media::{Held, Push, UploadError};
use crate::blob::{BlobId, TAG_SIZE};

/// Sealed chunks queued between the sealing thread and the pushes: enough to keep
/// both busy, a chunk of memory each.
pub(crate) const QUEUE: usize = 4;

/// Sends every chunk `chunks` yields to each of `pushes`, to all of them at once; a
/// push that fails is dropped from then on (the media node deletes what it had).
/// Drains `chunks` to its end whatever happens, so the sealing never waits on a
/// push that is gone. `progress` hears the plaintext bytes pushed. Returns the
/// pushes that took every chunk, and the media nodes whose push failed.
pub(crate) async fn drive(
    mut pushes: Vec<Push>,
    mut chunks: mpsc::Receiver<Vec<u8>>,
    progress: &mut Progress,
) -> (Vec<Push>, Vec<PeerId>) {
    let mut failed = Vec::new();
    let mut pushed = 0u64;
    progress.report(0);
    while let Some(chunk) = chunks.recv().await {
        if pushes.is_empty() {
            continue;
        }
        let sent = join_all(pushes.iter_mut().map(|push| push.send(&chunk))).await;
        let mut results = sent.into_iter();
        let mut kept = Vec::with_capacity(pushes.len());
        for push in pushes {
            match results.next() {
                Some(Err(e)) => {
                    tracing::debug!(media = %push.media(), error = %e, "a push to a media node failed; it will pull");
                    failed.push(push.media());
                }
                _ => kept.push(push),
            }
        }
        pushes = kept;
        pushed += chunk.len().saturating_sub(TAG_SIZE) as u64;
        progress.report(pushed);
    }
    (pushes, failed)
}

/// Waits for each of `pushes` (every chunk sent) to be held as blob `id`.
pub(crate) async fn finish(pushes: Vec<Push>, id: BlobId) -> Vec<(PeerId, Result<Held, UploadError>)> {
    join_all(pushes.into_iter().map(|push| async move { (push.media(), push.finish(id).await) })).await
}
