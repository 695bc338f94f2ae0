//! The media role on the network: `/kith/media/1` uploads and `/kith/blob/1`
//! downloads from the media store, over raw libp2p streams.
//!
//! Downloads are [`transfer::serve_counted`] over the store's blobs, for anyone: a
//! blob id is a capability, and the chunks are sealed.
//!
//! An upload is one stream ([`kith_p2p::blob::media`]). Its task reads the request
//! (fixed size, [`REQUEST_TIMEOUT`]), then decides in memory, before pulling
//! anything: the access policy, a blob already held (answered `held` at once, its
//! lifetime renewed), the size and quota limits (room reserved, so concurrent
//! uploads cannot overshoot), a free pull slot (`media.max_uploads`). Then it pulls
//! the blob from the uploader with [`transfer::fetch_outboard`] and
//! [`transfer::fetch`] on the relay's own stream control, so every chunk is checked
//! against the id; the outboard must match the declared size. The store records the
//! blob durably (after the blob is synced) and only then is `held` answered. A pull
//! that fails, times out ([`media::upload_deadline`]) or does not match is deleted.
//!
//! A push (the uploader streams the chunks as it seals them) is admitted the same
//! way without an id (room reserved under a provisional one), answered `ready`, and
//! taken in by [`media::receive_push`], which hashes every chunk as it arrives; the
//! id those hashes make is then settled in the store (held already: renewed; being
//! uploaded: busy), the blob moved into place, synced and recorded, and `pushed`
//! answered with the id. A push cut short is deleted with its temporary file.
//!
//! Bounds: at most [`MAX_STREAMS`] upload streams in service and
//! [`MAX_STREAMS_PER_PEER`] per peer (more are dropped unread), `media.max_uploads`
//! pulls at once (more answered busy). Every task lives in a [`JoinSet`] owned by the
//! service's task, which the relay aborts when it stops: an upload cut short then was
//! never answered `held`, and its files are swept at the next start. Disk work runs
//! on the blocking pool; the store's index lock is never held across it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::io::AsyncWriteExt;
use kith_p2p::blob::media::{self, Answer, PushError, Request, RequestError};
use kith_p2p::blob::transfer::{self, FetchError};
use kith_p2p::blob::{BlobId, BlobStore};
use libp2p::PeerId;
use libp2p_stream::{Control, IncomingStreams};
use tokio::sync::Semaphore;
use tokio::task::{Id, JoinSet};

use super::mailbox_service::Access;
use crate::media::{Admission, MediaError, MediaStore, Refusal, Reservation};
use crate::metrics::{MediaRefusalReason, Metrics};

/// How long an uploader has to send its request (42 bytes).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the answer (at most 17 bytes) may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Upload streams in service at once; more are dropped unread.
const MAX_STREAMS: usize = 64;
/// Upload streams one peer may have in service (a node uploads one blob at a time
/// per media node); more are dropped, so one peer cannot take every slot.
const MAX_STREAMS_PER_PEER: usize = 4;

/// What the media service needs; shared by its tasks.
pub(crate) struct MediaService {
    store: MediaStore,
    access: Access,
    metrics: Metrics,
    pulls: Arc<Semaphore>,
    expire_interval: Duration,
}

impl MediaService {
    /// A service over `store`, pulling at most `max_uploads` blobs at once and
    /// sweeping expired blobs every `expire_interval`.
    pub(crate) fn new(
        store: MediaStore,
        access: Access,
        metrics: Metrics,
        max_uploads: usize,
        expire_interval: Duration,
    ) -> MediaService {
        metrics.set_media_stats(store.stats());
        MediaService {
            store,
            access,
            metrics,
            pulls: Arc::new(Semaphore::new(max_uploads)),
            expire_interval,
        }
    }

    /// Serves downloads from the store's blobs until `incoming` ends (the swarm is
    /// gone), counting the bytes served.
    pub(crate) async fn serve_downloads(&self, incoming: IncomingStreams) {
        let served = self.metrics.media_served_bytes.clone();
        transfer::serve_counted(
            self.store.blobs(),
            incoming,
            Arc::new(move |_, _, bytes| {
                served.inc_by(bytes);
            }),
        )
        .await;
    }

    /// Serves uploads arriving on `incoming`, pulling with `control`, and runs the
    /// expiry sweep, until `incoming` ends. Aborting it aborts every upload task.
    pub(crate) async fn serve_uploads(
        self: Arc<Self>,
        control: Control,
        mut incoming: IncomingStreams,
    ) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut owners: HashMap<Id, PeerId> = HashMap::new();
        let mut per_peer: HashMap<PeerId, usize> = HashMap::new();
        let mut expiry = tokio::time::interval(self.expire_interval);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep: JoinSet<()> = JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { break };
                    let count = per_peer.entry(peer).or_default();
                    if tasks.len() >= MAX_STREAMS || *count >= MAX_STREAMS_PER_PEER {
                        tracing::debug!(%peer, "too many upload streams; dropping one");
                        if *count == 0 {
                            per_peer.remove(&peer);
                        }
                        continue;
                    }
                    *count += 1;
                    let service = self.clone();
                    let control = control.clone();
                    let handle = tasks.spawn(async move { service.upload(peer, stream, control).await });
                    owners.insert(handle.id(), peer);
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "a media upload task failed");
                            e.id()
                        }
                    };
                    if let Some(peer) = owners.remove(&id)
                        && let Some(count) = per_peer.get_mut(&peer)
                    {
                        *count -= 1;
                        if *count == 0 {
                            per_peer.remove(&peer);
                        }
                    }
                }
                _ = expiry.tick() => {
                    if sweep.is_empty() {
                        let service = self.clone();
                        sweep.spawn_blocking(move || service.expire());
                    }
                }
                Some(_) = sweep.join_next(), if !sweep.is_empty() => {}
            }
        }
    }

    /// Deletes expired blobs (blocks on disk I/O).
    fn expire(&self) {
        match self.store.expire(now_ms()) {
            Ok(expired) => {
                if expired.blobs > 0 {
                    tracing::info!(
                        blobs = expired.blobs,
                        bytes = expired.bytes,
                        "expired media blobs"
                    );
                }
                self.metrics.media_expired.inc_by(expired.blobs);
            }
            Err(e) => tracing::warn!(error = %e, "media expiry sweep failed"),
        }
        self.metrics.set_media_stats(self.store.stats());
    }

    /// Serves one upload stream: reads the request, answers it.
    async fn upload(&self, peer: PeerId, mut stream: libp2p::Stream, control: Control) {
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, Request::read(&mut stream)).await {
            Ok(Ok(Request::Hold { id, sealed_size })) => self.hold(peer, id, sealed_size, control).await,
            Ok(Ok(Request::Push { sealed_size })) => self.take_push(peer, sealed_size, &mut stream).await,
            Ok(Err(RequestError::UnsupportedVersion(version))) => {
                tracing::debug!(%peer, version, "media request of an unknown version");
                Answer::UnsupportedVersion
            }
            Ok(Err(RequestError::UnknownKind(kind))) => {
                tracing::debug!(%peer, kind, "media request of an unknown kind");
                Answer::BadRequest
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "media request not read");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "media request not sent in time");
                return;
            }
        };
        if let Some(reason) = refusal_reason(&answer) {
            self.metrics.media_refused(reason);
        }
        let answering = async {
            stream.write_all(&answer.encode()).await?;
            stream.close().await
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, answering).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "media answer not written"),
            Err(_) => tracing::debug!(%peer, "media answer not taken in time"),
        }
    }

    /// Decides on and carries out one pulled upload; returns the answer.
    async fn hold(&self, peer: PeerId, id: BlobId, sealed_size: u64, control: Control) -> Answer {
        if !self.access.admits(&peer) {
            return Answer::NotAllowed;
        }
        // The pull slot first: a reservation may be a parked upload with files on
        // disk, and dropping one (as a busy answer would) frees its quota but not
        // its files.
        let Ok(_slot) = self.pulls.clone().try_acquire_owned() else {
            return Answer::Busy;
        };
        let reservation = match self.store.admit(peer, id, sealed_size) {
            Ok(Admission::Held) => return self.renew(peer, id).await,
            Ok(Admission::Reserved(reservation)) => reservation,
            Err(refusal) => return refused(refusal),
        };
        self.metrics.media_uploads_active.inc();
        tracing::debug!(%peer, blob = %id, bytes = sealed_size, "pulling an upload");
        let deadline = media::upload_deadline(sealed_size);
        let pulled = tokio::time::timeout(
            deadline,
            pull(&control, peer, id, sealed_size, self.store.blobs()),
        )
        .await
        .unwrap_or(Err(Pull::Interrupted("timed out".into())));
        self.metrics.media_uploads_active.dec();
        let answer = match pulled {
            Ok(()) => return self.record(peer, reservation, |_| Ok(())).await,
            Err(Pull::SizeMismatch) => Answer::BadRequest,
            Err(Pull::Storage(e)) => {
                tracing::warn!(error = %e, "storing an upload failed");
                tracing::debug!(%peer, blob = %id, "the upload that failed to store");
                Answer::Storage
            }
            Err(Pull::Failed(why)) => {
                tracing::debug!(%peer, blob = %id, %why, "pulling an upload failed");
                Answer::FetchFailed
            }
            Err(Pull::Interrupted(why)) => {
                // What was pulled is checked and kept: the uploader's next try
                // resumes with the chunks still missing.
                tracing::debug!(%peer, blob = %id, %why, "an upload was cut short; keeping it to resume");
                self.store.park(reservation, now_ms());
                return Answer::FetchFailed;
            }
        };
        self.discard(reservation).await;
        answer
    }

    /// Takes one pushed upload of `sealed_size` sealed bytes from `stream`: admits
    /// it, answers `ready`, receives and hashes every chunk, and holds the blob under
    /// the id those hashes make. Returns the final answer (`pushed` with that id).
    async fn take_push(&self, peer: PeerId, sealed_size: u64, stream: &mut libp2p::Stream) -> Answer {
        if !self.access.admits(&peer) {
            return Answer::NotAllowed;
        }
        if kith_p2p::blob::plain_size_of(sealed_size).is_none() {
            return Answer::BadRequest;
        }
        let Ok(_slot) = self.pulls.clone().try_acquire_owned() else {
            return Answer::Busy;
        };
        let mut reservation = match self.store.admit_push(peer, sealed_size) {
            Ok(reservation) => reservation,
            Err(refusal) => return refused(refusal),
        };
        // Counted before `ready` goes out: whoever hears it sees the upload active.
        self.metrics.media_uploads_active.inc();
        let ready = async {
            stream.write_all(&Answer::Ready.encode()).await?;
            stream.flush().await
        };
        let received = if matches!(tokio::time::timeout(ANSWER_TIMEOUT, ready).await, Ok(Ok(()))) {
            tracing::debug!(%peer, bytes = sealed_size, "taking a pushed upload");
            let blobs = self.store.blobs();
            Some(
                tokio::time::timeout(
                    media::upload_deadline(sealed_size),
                    media::receive_push(stream, &blobs, sealed_size),
                )
                .await,
            )
        } else {
            None
        };
        self.metrics.media_uploads_active.dec();
        // What arrived of a push cut short is deleted with its temporary file: a
        // push has no id to resume under; the uploader uploads again by pull.
        let (outboard, pushed) = match received {
            None => return Answer::FetchFailed,
            Some(Ok(Ok(received))) => received,
            Some(Ok(Err(PushError::Storage(e)))) => {
                tracing::warn!(%peer, error = %e, "storing a pushed upload failed");
                return Answer::Storage;
            }
            Some(Ok(Err(e @ (PushError::IdMismatch { .. } | PushError::BadSize(_))))) => {
                tracing::debug!(%peer, error = %e, "a pushed upload does not hold together");
                return Answer::BadRequest;
            }
            Some(Ok(Err(e))) => {
                tracing::debug!(%peer, error = %e, "a pushed upload was not taken");
                return Answer::FetchFailed;
            }
            Some(Err(_)) => {
                tracing::debug!(%peer, "a pushed upload was too slow");
                return Answer::FetchFailed;
            }
        };
        let id = outboard.id();
        let answer = match self.store.settle(&mut reservation, id) {
            Ok(false) => {
                self.record(peer, reservation, move |store| {
                    Ok(store.blobs().import(&outboard, pushed)?)
                })
                .await
            }
            Ok(true) => {
                drop((reservation, pushed));
                self.renew(peer, id).await
            }
            Err(refusal) => return refused(refusal),
        };
        match answer {
            Answer::Held { expires_at } => Answer::Pushed { id, expires_at },
            answer => answer,
        }
    }

    /// Records the blob of `reservation` as held, after `prepare` (on the blocking
    /// pool: moving a pushed blob into place) succeeds; answers `held`, or
    /// `storage` with the reservation's files deleted.
    async fn record(
        &self,
        peer: PeerId,
        mut reservation: Reservation,
        prepare: impl FnOnce(&MediaStore) -> Result<(), MediaError> + Send + 'static,
    ) -> Answer {
        let (id, sealed_size) = (reservation.id(), reservation.size());
        let store = self.store.clone();
        let committed = blocking(move || {
            let expires = prepare(&store).and_then(|()| store.commit(&mut reservation, now_ms()));
            (expires, reservation)
        })
        .await;
        match committed {
            Some((Ok(expires_ms), _)) => {
                self.metrics.media_uploads.inc();
                self.metrics.media_uploaded_bytes.inc_by(sealed_size);
                self.metrics.set_media_stats(self.store.stats());
                // Who uploaded which blob stays in the blob's record until it
                // expires; a log line at `info` would keep it for as long as the
                // journal. (The id is also a download capability.)
                tracing::info!(bytes = sealed_size, "media blob held");
                tracing::debug!(%peer, blob = %id, "the held blob's uploader and id");
                Answer::Held {
                    expires_at: expires_ms / 1000,
                }
            }
            Some((Err(e), reservation)) => {
                tracing::warn!(error = %e, "recording a media blob failed");
                tracing::debug!(%peer, blob = %id, "the media blob that failed to record");
                self.discard(reservation).await;
                Answer::Storage
            }
            None => Answer::Storage,
        }
    }

    /// Renews a held blob's lifetime: the answer to an upload of a blob held.
    async fn renew(&self, peer: PeerId, id: BlobId) -> Answer {
        let store = self.store.clone();
        match blocking(move || store.renew(&id, now_ms())).await {
            Some(Ok(Some(expires_ms))) => {
                self.metrics.media_upload_duplicates.inc();
                tracing::debug!(%peer, blob = %id, "media blob already held; renewed");
                Answer::Held {
                    expires_at: expires_ms / 1000,
                }
            }
            // Expired just now: the uploader retries and uploads it afresh.
            Some(Ok(None)) => Answer::Busy,
            Some(Err(e)) => {
                tracing::warn!(blob = %id, error = %e, "renewing a media blob failed");
                Answer::Storage
            }
            None => Answer::Storage,
        }
    }

    /// Deletes what an abandoned upload pulled and frees its room.
    async fn discard(&self, reservation: Reservation) {
        let store = self.store.clone();
        let id = reservation.id();
        if let Some(Err(e)) = blocking(move || store.discard(reservation)).await {
            tracing::warn!(blob = %id, error = %e, "deleting an abandoned upload failed");
        }
    }
}

/// Why a pull did not bring the whole blob.
#[derive(Debug)]
enum Pull {
    /// The blob's outboard does not match the size the uploader declared.
    SizeMismatch,
    /// The uploader served something else than the blob.
    Failed(String),
    /// The uploader went away, or did not serve all of it: what came is kept to
    /// resume.
    Interrupted(String),
    /// Storing it here failed.
    Storage(String),
}

/// Pulls blob `id` from `peer` into `blobs`: its outboard first, checked against the
/// declared `size`, then every chunk, each checked against its hash. Complete and
/// synced when it returns `Ok`.
async fn pull(
    control: &Control,
    peer: PeerId,
    id: BlobId,
    size: u64,
    blobs: Arc<BlobStore>,
) -> Result<(), Pull> {
    // Nothing is kept yet, so nothing to resume: any failure here is final.
    let outboard = transfer::fetch_outboard(control.clone(), peer, id)
        .await
        .map_err(|e| match e {
            FetchError::Store(e) => Pull::Storage(e.to_string()),
            e => Pull::Failed(e.to_string()),
        })?;
    if outboard.sealed_size() != size {
        return Err(Pull::SizeMismatch);
    }
    let store = blobs.clone();
    blocking(move || store.add(&outboard))
        .await
        .ok_or_else(|| Pull::Storage("the blocking pool failed".into()))?
        .map_err(|e| Pull::Storage(e.to_string()))?;
    transfer::fetch(control, peer, id, &blobs, |_, _| {})
        .await
        .map_err(pull_error)
}

fn pull_error(e: FetchError) -> Pull {
    match e {
        FetchError::Store(e) => Pull::Storage(e.to_string()),
        e @ FetchError::BadAnswer(_) => Pull::Failed(e.to_string()),
        e => Pull::Interrupted(e.to_string()),
    }
}

/// Runs `f` on the blocking pool; `None` if it panicked or the runtime is going away.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// The answer to a refusal decided before anything is taken.
fn refused(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::TooLarge { max } => Answer::TooLarge { max },
        Refusal::QuotaExceeded { limit, used } => Answer::QuotaExceeded { limit, used },
        Refusal::StoreFull => Answer::StoreFull,
        Refusal::Busy => Answer::Busy,
    }
}

/// The metrics label of a refusal (`None` for `held`).
fn refusal_reason(answer: &Answer) -> Option<MediaRefusalReason> {
    Some(match answer {
        Answer::Held { .. } | Answer::Pushed { .. } | Answer::Ready => return None,
        Answer::NotAllowed => MediaRefusalReason::NotMember,
        Answer::TooLarge { .. } => MediaRefusalReason::TooLarge,
        Answer::QuotaExceeded { .. } => MediaRefusalReason::QuotaBytes,
        Answer::StoreFull => MediaRefusalReason::StoreFull,
        Answer::FetchFailed => MediaRefusalReason::FetchFailed,
        Answer::Busy => MediaRefusalReason::Busy,
        Answer::BadRequest | Answer::UnsupportedVersion => MediaRefusalReason::BadRequest,
        Answer::Storage => MediaRefusalReason::Storage,
        _ => MediaRefusalReason::BadRequest,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
