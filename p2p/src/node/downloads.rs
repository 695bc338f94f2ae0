//! Fetching the files of received messages: automatically up to a size, on request
//! above it, from the author, the media nodes the message names, or (in a group) any
//! member; resumed after any interruption, retried with backoff until it completes.
//!
//! One task owns the queue. It learns of new files from the node's events, of
//! requests from [`Downloads::want`], and of sources coming back from
//! `PeerConnected`; each download runs in a task of its own, at most
//! [`PARALLEL`] at once. What a download has fetched and verified stays in the blob
//! store, so the next attempt (after a failure, a restart or `kill -9`) asks only for
//! the chunks still missing.
//!
//! The task also removes the files the node no longer keeps ([`super::file_sweep`]):
//! all of them at start (a deletion made while no node ran, or lost to a crash
//! before its removal), the one file of a message deleted for everyone, and all
//! again (at most once a second) when [`Downloads::sweep`] asks (after a hide or
//! a deleted conversation) or the node's events lagged. A file being downloaded
//! is told to stop (it asks for no more chunks; those in flight end) and goes once
//! it has (it is not saved if its message was deleted meanwhile), so no download
//! writes to a blob removed under it, and a deleted large file is not fetched to
//! its end.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kith_storage::{ContactState, Direction, FileRecord, FileRef, FileState, Store};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Command, Event, NodeError, file_sweep};
use crate::blob::transfer::{self, FetchError};
use crate::blob::{self, BlobError, BlobId, BlobKey, BlobStore, CHUNK_SIZE};
use crate::views::FileEntryView;

/// Downloads running at once.
const PARALLEL: usize = 2;

/// How a node treats the files it receives.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Where blobs (sealed files) live.
    pub blob_dir: PathBuf,
    /// Where received files are saved.
    pub download_dir: PathBuf,
    /// Files up to this size (bytes) from contacts and groups are fetched without
    /// being asked for.
    pub auto_download_max: u64,
}

/// Bytes moved by this node's file transfers since it started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Sealed bytes served to peers.
    pub(crate) served: std::sync::atomic::AtomicU64,
    /// Sealed bytes fetched, verified and stored.
    pub(crate) fetched: std::sync::atomic::AtomicU64,
}

/// Someone waiting for a file to be complete.
type Waiter = oneshot::Sender<Result<FileEntryView, NodeError>>;

/// A request to the download task.
pub(crate) struct Want {
    /// The file.
    pub(crate) blob: [u8; 32],
    /// Also save it here once complete.
    pub(crate) save_to: Option<PathBuf>,
    /// Told when it is complete (or cannot be).
    pub(crate) waiter: Option<Waiter>,
}

/// The handle of the download task.
#[derive(Clone)]
pub(crate) struct Downloads {
    wants: mpsc::Sender<Want>,
    sweeps: mpsc::Sender<()>,
}

impl Downloads {
    /// Asks for `want.blob` to be fetched (now, whatever its size).
    pub(crate) async fn want(&self, want: Want) -> Result<(), NodeError> {
        self.wants.send(want).await.map_err(|_| NodeError::Stopped)
    }

    /// Asks the task to remove every file the node no longer keeps; returns at
    /// once. A sweep already asked for and not begun covers this request too.
    pub(crate) fn sweep(&self) {
        // Full: a sweep is pending, and it reads the store after this call.
        let _ = self.sweeps.try_send(());
    }
}

/// What a download needs, shared by the task and each download.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) store: Store,
    pub(crate) blobs: Arc<BlobStore>,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) config: FilesConfig,
    /// The first and the longest wait before a failed download is tried again
    /// (`Timers::download_retry_initial` and `download_retry_max`).
    pub(crate) retry: (Duration, Duration),
    /// Least time between two progress events of one file (`Timers::file_progress_every`).
    pub(crate) progress_every: Duration,
    /// Least time between two sweeps for files of deleted messages
    /// (`Timers::file_sweep_spacing`).
    pub(crate) sweep_spacing: Duration,
    pub(crate) me: PeerId,
    pub(crate) counters: Arc<Counters>,
}

/// Starts the download task; it ends when the node's events end.
pub(crate) fn start(context: Context) -> Downloads {
    let (wants, wants_rx) = mpsc::channel(64);
    let (sweeps, sweeps_rx) = mpsc::channel(1);
    let events = context.events.subscribe();
    tokio::spawn(Task::new(context).run(wants_rx, sweeps_rx, events));
    Downloads { wants, sweeps }
}

/// One file the task is working on.
#[derive(Default)]
struct Job {
    /// Where to save it besides the download directory.
    save_to: Vec<PathBuf>,
    /// Who waits for it.
    waiters: Vec<Waiter>,
    /// Failed attempts so far.
    failures: u32,
    /// Not before this instant (after a failure).
    not_before: Option<Instant>,
}

struct Task {
    context: Context,
    jobs: HashMap<[u8; 32], Job>,
    /// Downloads under way, each with the flag that tells it to stop.
    running: HashMap<[u8; 32], Arc<AtomicBool>>,
    /// Files to remove once their running download stops.
    remove_when_stopped: HashSet<[u8; 32]>,
    /// When the next sweep for removed files runs, if one is asked for.
    sweep_due: Option<Instant>,
    last_sweep: Option<Instant>,
    done: mpsc::Sender<([u8; 32], Result<FileRecord, String>)>,
    done_rx: mpsc::Receiver<([u8; 32], Result<FileRecord, String>)>,
}

impl Task {
    fn new(context: Context) -> Task {
        let (done, done_rx) = mpsc::channel(PARALLEL * 2);
        Task {
            context,
            jobs: HashMap::new(),
            running: HashMap::new(),
            remove_when_stopped: HashSet::new(),
            sweep_due: None,
            last_sweep: None,
            done,
            done_rx,
        }
    }

    async fn run(
        mut self,
        mut wants: mpsc::Receiver<Want>,
        mut sweeps: mpsc::Receiver<()>,
        mut events: broadcast::Receiver<Event>,
    ) {
        // Files deleted while no node ran go before anything resumes.
        self.sweep_all();
        // Downloads a previous run left unfinished (also after kill -9).
        self.resume_unfinished();
        loop {
            if self.sweep_due.is_some_and(|due| due <= Instant::now()) {
                self.sweep_all();
            }
            self.start_ready();
            let wake = self.next_wakeup();
            tokio::select! {
                want = wants.recv() => match want {
                    Some(want) => self.want(want),
                    None => break,
                },
                event = events.recv() => match event {
                    Ok(event) => self.event(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Deletions may be among what was missed.
                        self.ask_sweep();
                        self.resume_unfinished();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some((blob, result)) = self.done_rx.recv() => self.finished(blob, result),
                Some(()) = sweeps.recv() => self.ask_sweep(),
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// Picks up downloads a previous run (or a missed event) left: those under way,
    /// and small files that would have downloaded by themselves had the node not
    /// stopped (or this task not fallen behind) first.
    fn resume_unfinished(&mut self) {
        match self.context.store.files().list() {
            Ok(records) => {
                for r in records {
                    if !r.claims.is_empty() {
                        self.pass_to_better(&r.blob);
                    }
                    if r.state == FileState::Downloading || self.wanted_by_itself(&r.blob) {
                        self.jobs.entry(r.blob).or_default();
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the files table failed"),
        }
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::MessageReceived { message } => {
                let Some(file) = &message.file else { return };
                let Ok(blob) = parse_blob(&file.id) else { return };
                self.pass_to_better(&blob);
                if self.wanted_by_itself(&blob) {
                    self.jobs.entry(blob).or_default();
                }
            }
            // Deleted for everyone (by us or by its author): its file, if it had one,
            // goes. (The view no longer names the file: the stored message does.)
            Event::MessageChanged { message } if message.deleted => {
                let Ok(id) = message.id.parse::<kith_storage::MessageId>() else { return };
                match self.context.store.messages().get_from(&message.author, id) {
                    Ok(Some(stored)) => {
                        if let Some(file) = stored.file {
                            self.sweep_one(file.blob);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "reading a deleted message for its file failed"),
                }
            }
            // A source came back: what waits for one may go now.
            Event::PeerConnected { .. } => {
                for job in self.jobs.values_mut() {
                    job.not_before = None;
                }
            }
            _ => {}
        }
    }

    /// Whether a newly received file is fetched without being asked for: it is small
    /// enough and comes from an accepted contact or in a group (a file a stranger
    /// named first and a contact named too is the contact's by then:
    /// [`Task::pass_to_better`]).
    fn wanted_by_itself(&self, blob: &[u8; 32]) -> bool {
        let files = self.context.store.files();
        let Ok(Some(record)) = files.get(blob) else { return false };
        if record.state != FileState::Offered || record.size > self.context.config.auto_download_max {
            return false;
        }
        if !matches!(file_sweep::gone(&self.context.store, &record), Ok(None)) {
            // Deleted before we had it (the deletion came first), or unreadable.
            return false;
        }
        let vouched = self.context.store.files().vouched(&record.author, record.conversation).unwrap_or(false);
        let blocked = matches!(
            self.context.store.contacts().get(&record.author),
            Ok(Some(c)) if c.state == ContactState::Blocked
        );
        vouched && !blocked
    }

    fn want(&mut self, want: Want) {
        // Asked for: fetched as the message vouched for says, if one named it too.
        self.pass_to_better(&want.blob);
        let record = match self.context.store.files().get(&want.blob) {
            Ok(Some(record)) => record,
            Ok(None) => {
                if let Some(w) = want.waiter {
                    let _ = w.send(Err(NodeError::Op(crate::ops::OpError::Invalid("no such file".into()))));
                }
                return;
            }
            Err(e) => {
                if let Some(w) = want.waiter {
                    let _ = w.send(Err(NodeError::Op(e.into())));
                }
                return;
            }
        };
        if matches!(record.state, FileState::Complete | FileState::Shared | FileState::Uploaded) {
            // Held already: only a copy is wanted.
            let context = self.context.clone();
            tokio::spawn(async move {
                let result = copy_out(&context, &record, want.save_to.as_deref()).await;
                if let Some(w) = want.waiter {
                    let _ = w.send(result);
                }
            });
            return;
        }
        let job = self.jobs.entry(want.blob).or_default();
        job.save_to.extend(want.save_to);
        // Clients that stopped waiting (they closed) leave no answer to keep.
        job.waiters.retain(|w| !w.is_closed());
        job.waiters.extend(want.waiter);
        job.not_before = None;
    }

    fn start_ready(&mut self) {
        let now = Instant::now();
        let ready: Vec<[u8; 32]> = self
            .jobs
            .iter()
            .filter(|(blob, job)| !self.running.contains_key(*blob) && job.not_before.is_none_or(|t| t <= now))
            .map(|(blob, _)| *blob)
            .take(PARALLEL.saturating_sub(self.running.len()))
            .collect();
        for blob in ready {
            let stop = Arc::new(AtomicBool::new(false));
            self.running.insert(blob, stop.clone());
            let context = self.context.clone();
            let done = self.done.clone();
            tokio::spawn(async move {
                let result = download(&context, blob, &stop).await;
                let _ = done.send((blob, result)).await;
            });
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let jobs = self.jobs.iter().filter(|(blob, _)| !self.running.contains_key(*blob)).filter_map(|(_, job)| job.not_before);
        jobs.chain(self.sweep_due).min()
    }

    /// Has every file the node no longer keeps removed: now, or the sweep spacing
    /// (`Timers::file_sweep_spacing`) after the last sweep (a sweep reads every file record and its message, and
    /// a peer's flood of messages can make the node's events lag).
    fn ask_sweep(&mut self) {
        let earliest = self.last_sweep.map_or_else(Instant::now, |at| at + self.context.sweep_spacing);
        self.sweep_due.get_or_insert(earliest);
    }

    /// Removes every file the node no longer keeps.
    fn sweep_all(&mut self) {
        self.sweep_due = None;
        self.last_sweep = Some(Instant::now());
        match file_sweep::all_gone(&self.context.store) {
            Ok(gone) => {
                for (record, why) in gone {
                    self.remove(&record, why);
                }
            }
            Err(e) => tracing::error!(error = %e, "finding the files of deleted messages failed"),
        }
    }

    /// Removes file `blob` if the node no longer keeps it.
    fn sweep_one(&mut self, blob: [u8; 32]) {
        match file_sweep::blob_gone(&self.context.store, &blob) {
            Ok(Some((record, why))) => self.remove(&record, why),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "checking a deleted message's file failed"),
        }
    }

    /// Removes `record`'s blob, then the record (so a crash between the two leaves
    /// a record the next start's sweep finds again), or passes the record to
    /// another message that names the blob ([`file_sweep::successor`]); a running
    /// download first stops.
    fn remove(&mut self, record: &FileRecord, why: file_sweep::Gone) {
        let next = match file_sweep::successor(&self.context.store, record) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "reading the other messages that name a file failed");
                return;
            }
        };
        if next.is_none()
            && let Some(job) = self.jobs.remove(&record.blob)
        {
            for w in job.waiters {
                let gone = format!("{} (its message was deleted)", hex::encode(record.blob));
                let _ = w.send(Err(NodeError::Op(crate::ops::OpError::UnknownFile(gone))));
            }
        }
        if let Some(stop) = self.running.get(&record.blob) {
            // It asks for no more chunks; once those in flight are stored it ends,
            // and `finished` looks again then.
            stop.store(true, Ordering::Release);
            self.remove_when_stopped.insert(record.blob);
            return;
        }
        if let Some(next) = next {
            self.pass_on(record, next.record, next.same_file);
            return;
        }
        let blob = hex::encode(record.blob);
        if let Err(e) = self.context.blobs.remove(&BlobId(record.blob)) {
            tracing::error!(%blob, error = %e, "removing a deleted message's file failed");
            return;
        }
        match self.context.store.files().remove_if(record) {
            Ok(true) => {
                tracing::debug!(%blob, ?why, "removed the file of a deleted message");
                let _ = self.context.events.send(Event::FileRemoved { id: blob, message: record.message.to_string() });
            }
            // Changed since it was read (a message naming the blob came): the
            // next sweep looks again, and passes it on.
            Ok(false) => self.ask_sweep(),
            Err(e) => tracing::error!(%blob, error = %e, "removing a deleted message's file record failed"),
        }
    }

    /// Gives file `record` to `next`, another message naming its blob. If `next`
    /// gives the same key and size (`same_file`) and the blob store still holds the
    /// blob, the file keeps its state, path and age; else what the store holds goes
    /// and the file is fetched afresh with `next`'s key. Returns whether it passed
    /// (not if the record changed meanwhile: a later sweep looks again).
    fn pass_on(&mut self, record: &FileRecord, mut next: FileRecord, same_file: bool) -> bool {
        let blob = hex::encode(record.blob);
        let id = BlobId(record.blob);
        let held = matches!(self.context.blobs.outboard(&id), Ok(Some(_)));
        if same_file && held && record.state != FileState::Failed {
            next.state = record.state;
            next.path.clone_from(&record.path);
            next.error.clone_from(&record.error);
            next.created_at_ms = record.created_at_ms;
        } else if let Err(e) = self.context.blobs.remove(&id) {
            tracing::error!(%blob, error = %e, "removing a file to fetch it again failed");
            return false;
        }
        match self.context.store.files().replace(record, &next) {
            Ok(true) => {
                tracing::debug!(%blob, from = %record.message, to = %next.message, "a file passed to another message naming it");
                let _ = self.context.events.send(Event::FileChanged { file: FileEntryView::from(&next) });
                if self.wanted_by_itself(&record.blob) {
                    self.jobs.entry(record.blob).or_default();
                }
                if let Some(job) = self.jobs.get_mut(&record.blob) {
                    job.failures = 0;
                    job.not_before = None;
                }
                true
            }
            Ok(false) => {
                self.ask_sweep();
                false
            }
            Err(e) => {
                tracing::error!(%blob, error = %e, "passing a file's record to another message failed");
                false
            }
        }
    }

    /// Passes file `blob` to a better message naming it, if there is one: when its
    /// record failed for good (its message's key or size was wrong: another's may be
    /// right), or when it is not complete and its message is vouched for by no one
    /// (a stranger's, outside groups) while a later one is (an accepted contact's,
    /// or in a group). Then that message's size, key and sources count, not the
    /// stranger's, who may only have learned the blob's id. Never while it downloads.
    fn pass_to_better(&mut self, blob: &[u8; 32]) -> bool {
        if self.running.contains_key(blob) {
            return false;
        }
        let store = &self.context.store;
        let Ok(Some(record)) = store.files().get(blob) else { return false };
        if record.claims.is_empty() {
            return false;
        }
        let failed = record.state == FileState::Failed;
        // Unreadable counts as vouched for: a contact's file is not passed away on a
        // read error.
        let unvouched = record.state != FileState::Complete
            && !store.files().vouched(&record.author, record.conversation).unwrap_or(true);
        if !failed && !unvouched {
            return false;
        }
        match file_sweep::successor(store, &record) {
            Ok(Some(next)) if failed || next.vouched => {
                let mut passed = next.record;
                if !failed && passed.claims.len() < kith_storage::MAX_FILE_CLAIMS {
                    // Only preferred, not wrong: the stranger's message keeps its
                    // claim (last), in case the vouched-for one turns out wrong.
                    passed.claims.push(kith_storage::FileClaim { author: record.author, message: record.message });
                }
                self.pass_on(&record, passed, next.same_file)
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "reading the other messages that name a file failed");
                false
            }
        }
    }

    fn finished(&mut self, blob: [u8; 32], result: Result<FileRecord, String>) {
        self.running.remove(&blob);
        if self.remove_when_stopped.remove(&blob) || result.as_ref().is_err_and(|e| e == DELETED) {
            self.sweep_one(blob);
            return;
        }
        match result {
            Ok(record) => {
                let Some(job) = self.jobs.remove(&blob) else { return };
                let context = self.context.clone();
                tokio::spawn(async move {
                    let mut last = Ok(FileEntryView::from(&record));
                    for path in &job.save_to {
                        last = copy_out(&context, &record, Some(path)).await;
                    }
                    for w in job.waiters {
                        let _ = w.send(clone_result(&last));
                    }
                });
            }
            Err(error) => {
                // A wrong key or size left the record failed: another message naming
                // the blob may give the right one.
                if self.pass_to_better(&blob) {
                    return;
                }
                let Some(job) = self.jobs.get_mut(&blob) else { return };
                job.failures += 1;
                let (first, max) = self.context.retry;
                let backoff = first.saturating_mul(1 << job.failures.min(6)).min(max);
                job.not_before = Some(Instant::now() + backoff);
                tracing::debug!(blob = %hex::encode(blob), %error, ?backoff, "file download failed; will retry");
                if error.starts_with(FAILED_FOR_GOOD) {
                    // The blob does not open with its key: it is not what was sent.
                    if let Some(job) = self.jobs.remove(&blob) {
                        for w in job.waiters {
                            let _ = w.send(Err(NodeError::Op(crate::ops::OpError::Invalid(error.clone()))));
                        }
                    }
                }
            }
        }
    }
}

/// Prefix of a download error that no retry can fix.
const FAILED_FOR_GOOD: &str = "the file does not open";

/// Why a download or a wait for one ended: the file's message was deleted.
const DELETED: &str = "the file's message was deleted";

/// `Ok` while the node keeps `record`'s file; [`DELETED`] once it does not. A store
/// that cannot say is an ordinary failure, tried again after the backoff (as
/// `DELETED`, the task would find nothing to remove and start the job again at
/// once).
fn still_kept(context: &Context, record: &FileRecord) -> Result<(), String> {
    match file_sweep::gone(&context.store, record) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(DELETED.to_owned()),
        Err(e) => Err(format!("reading the file's message failed: {e}")),
    }
}

/// A copy of one result for each waiter (errors are not `Clone`): local I/O stays a
/// storage failure, the rest keeps its text.
fn clone_result(r: &Result<FileEntryView, NodeError>) -> Result<FileEntryView, NodeError> {
    match r {
        Ok(v) => Ok(v.clone()),
        Err(e @ (NodeError::Blob(_) | NodeError::Op(crate::ops::OpError::NotStored(_)))) => {
            Err(NodeError::Op(crate::ops::OpError::NotStored(e.to_string())))
        }
        Err(e) => Err(NodeError::Op(crate::ops::OpError::Invalid(e.to_string()))),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The 32 bytes of a file id in hex.
pub(crate) fn parse_blob(id: &str) -> Result<[u8; 32], hex::FromHexError> {
    let mut out = [0; 32];
    hex::decode_to_slice(id, &mut out)?;
    Ok(out)
}

/// One attempt at a file: fetch what is missing from its sources in turn, then save
/// it. Returns the record as it stands after, or why the attempt failed (the record
/// then says so too). `stop` set ends it early (its message was deleted).
async fn download(context: &Context, blob: [u8; 32], stop: &AtomicBool) -> Result<FileRecord, String> {
    let files = context.store.files();
    let record = files.get(&blob).map_err(|e| e.to_string())?.ok_or("the file's record is gone")?;
    let kept = match file_sweep::record_message(&context.store, &record) {
        Ok(Err(file_sweep::Gone::NoMessage)) => return Err("the file's message is gone".into()),
        Ok(kept) => kept,
        Err(e) => return Err(e.to_string()),
    };
    if record.direction == kith_storage::Direction::Outgoing {
        // Ours (our message's record replaced someone else's while this waited).
        return Ok(record);
    }
    let file = kept.map_err(|_| DELETED.to_owned())?.file.ok_or("the message carries no file")?;
    if record.state != FileState::Downloading {
        update(context, &blob, FileState::Downloading, None, None).await;
    }
    let result = fetch_from_sources(context, &record, &file, stop).await;
    let result = match result {
        // Deleted while it came: not saved (the task removes it once this ends).
        Ok(()) => match still_kept(context, &record) {
            Ok(()) => save_received(context, &record, &file).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(path) => {
            let record = update(context, &blob, FileState::Complete, Some(path), None).await;
            record.ok_or_else(|| "the file's record is gone".to_owned())
        }
        Err(error) => {
            let state = if error.starts_with(FAILED_FOR_GOOD) { FileState::Failed } else { FileState::Downloading };
            update(context, &blob, state, None, Some(error.clone())).await;
            Err(error)
        }
    }
}

/// Writes the record's new state durably (off the async workers) and tells the
/// node's clients.
async fn update(
    context: &Context,
    blob: &[u8; 32],
    state: FileState,
    path: Option<String>,
    error: Option<String>,
) -> Option<FileRecord> {
    let store = context.store.clone();
    let blob = *blob;
    let written = tokio::task::spawn_blocking(move || {
        let record = store.files().set_state(&blob, state, path, error)?;
        store.flush()?;
        Ok::<_, kith_storage::StoreError>(record)
    })
    .await;
    match written {
        Ok(Ok(Some(record))) => {
            let _ = context.events.send(Event::FileChanged { file: FileEntryView::from(&record) });
            Some(record)
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "recording a file's state failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a file's state panicked");
            None
        }
    }
}

/// Where a file can be fetched from, best first: its author and the media nodes
/// its message names, those of the other messages still kept that named its blob
/// ([`FileRecord::claims`]: the first to name it may be someone who only learned
/// its id), the [vouched-for](kith_storage::Files::vouched) ones before the others, then (in a group)
/// the other members, who may have fetched it. Any source will do: every chunk is
/// checked against the blob's id.
fn sources(context: &Context, record: &FileRecord, file: &FileRef) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let store = &context.store;
    let named = |author: PeerId, file: &FileRef| {
        std::iter::once((author, Vec::new())).chain(file.sources.iter().map(|s| (s.peer_id, s.addrs.clone()))).collect::<Vec<_>>()
    };
    let mut out = named(record.author, file);
    let mut others = Vec::new();
    for claim in &record.claims {
        if let Ok(Some(message)) = file_sweep::claim_kept(store, claim)
            && let Some(file) = &message.file
        {
            let vouched = store.files().vouched(&claim.author, message.conversation).unwrap_or(false);
            others.push((!vouched, named(claim.author, file)));
        }
    }
    // Stable: in the order they came within each kind.
    others.sort_by_key(|(unvouched, _)| *unvouched);
    out.extend(others.into_iter().flat_map(|(_, named)| named));
    if let Ok(Some(conversation)) = context.store.conversations().get(record.conversation)
        && let kith_storage::ConversationKind::Group { group_id } = conversation.kind
        && let Ok(Some(group)) = context.store.groups().get(group_id)
    {
        for member in &group.members {
            if let Ok(peer) = member.peer_id.parse::<PeerId>() {
                out.push((peer, Vec::new()));
            }
        }
    }
    let mut seen = HashSet::new();
    out.retain(|(peer, _)| *peer != context.me && seen.insert(*peer));
    out
}

async fn fetch_from_sources(context: &Context, record: &FileRecord, file: &FileRef, stop: &AtomicBool) -> Result<(), String> {
    let id = BlobId(file.blob);
    if context.blobs.is_complete(&id).map_err(|e| e.to_string())? {
        return Ok(());
    }
    let mut errors = Vec::new();
    for (peer, addrs) in sources(context, record, file) {
        if stop.load(Ordering::Acquire) {
            return Err(DELETED.into());
        }
        let (tx, rx) = oneshot::channel();
        if context.commands.send(Command::Reach(peer, addrs, tx)).await.is_err() {
            return Err("the node has stopped".into());
        }
        let _ = rx.await;
        let events = context.events.clone();
        let (size, name, hex_id) = (file.size, file.name.clone(), hex::encode(file.blob));
        let mut last = None::<Instant>;
        let mut held_before = None::<u64>;
        let counters = context.counters.clone();
        let every = context.progress_every;
        let progress = move |held: u64, total: u64| {
            // The first call reports what was held already; later ones what arrived.
            if let Some(before) = held_before {
                let sealed = (held - before) * (CHUNK_SIZE + blob::TAG_SIZE) as u64;
                counters.fetched.fetch_add(sealed, std::sync::atomic::Ordering::Relaxed);
            }
            held_before = Some(held);
            let now = Instant::now();
            if held < total && last.is_some_and(|t| now.duration_since(t) < every) {
                return;
            }
            last = Some(now);
            let have = (held * CHUNK_SIZE as u64).min(size);
            let _ = events.send(Event::FileProgress { id: hex_id.clone(), name: name.clone(), have, size });
        };
        // The id fixes the blob's length, so any source's outboard says the same; one
        // that disagrees with the message means its sender lied about the size (and
        // would have us fetch more than the automatic limit allows).
        match held_outboard(context, peer, id, file.size, &BlobKey(file.key)).await {
            Ok(()) => {}
            Err(Source::Skip(e)) => {
                errors.push(format!("{peer}: {e}"));
                continue;
            }
            Err(Source::Fatal(e)) => return Err(e),
        }
        match transfer::fetch_until(&context.control, peer, id, &context.blobs, progress, stop).await {
            Ok(()) => return Ok(()),
            Err(FetchError::Stopped) => return Err(DELETED.into()),
            // Its chunks match the blob but do not open: the message's key is wrong.
            Err(FetchError::Store(e @ BlobError::WrongKey { .. })) => return Err(format!("{FAILED_FOR_GOOD} with its key: {e}")),
            Err(e @ FetchError::Store(_)) => return Err(e.to_string()),
            Err(e) => errors.push(format!("{peer}: {e}")),
        }
    }
    if errors.is_empty() {
        return Err("no source to fetch it from".into());
    }
    Err(errors.join("; "))
}

/// Why a source's outboard was not taken.
enum Source {
    /// This source failed; try the next.
    Skip(FetchError),
    /// No source can help: the message lied about the size, or storing failed.
    Fatal(String),
}

/// Makes sure the blob's outboard is held, fetching it from `peer` if not, and that
/// its length is the `size` the message gave, before any chunk is asked for. A blob
/// new here is kept opened with `key`: written once, as the file it will be saved as.
async fn held_outboard(context: &Context, peer: PeerId, id: BlobId, size: u64, key: &BlobKey) -> Result<(), Source> {
    let outboard = match context.blobs.outboard(&id).map_err(|e| Source::Fatal(e.to_string()))? {
        Some(outboard) => outboard,
        None => transfer::fetch_outboard(context.control.clone(), peer, id).await.map_err(Source::Skip)?,
    };
    if outboard.len() != size {
        return Err(Source::Fatal(format!(
            "{FAILED_FOR_GOOD}: the blob holds {} bytes, its message said {size}",
            outboard.len()
        )));
    }
    // Creating a blob writes and syncs several files: off the runtime's thread, which
    // the node's event loop shares.
    let (blobs, key) = (context.blobs.clone(), key.clone());
    tokio::task::spawn_blocking(move || blobs.add_opened(&outboard, &key))
        .await
        .map_err(|e| Source::Fatal(e.to_string()))?
        .map_err(|e| Source::Fatal(e.to_string()))
}

/// Saves a complete received file into the download directory; returns its path.
async fn save_received(context: &Context, record: &FileRecord, file: &FileRef) -> Result<String, String> {
    if let Some(path) = &record.path
        && Path::new(path).exists()
    {
        return Ok(path.clone());
    }
    let dir = context.config.download_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let out = crate::files::free_path(&dir, &file.name);
    // Linked only right after the download, whose every chunk was just checked; a
    // file saved again later (its first copy deleted) is checked as it is copied.
    let saving = if record.path.is_none() { Saving::LinkIfOpened } else { Saving::Copy };
    save(context.blobs.clone(), BlobId(file.blob), BlobKey(file.key), out.clone(), saving).await.map_err(|e| match e {
        BlobError::Io(e) => format!("saving {}: {e}", out.display()),
        e => format!("{FAILED_FOR_GOOD} with its key: {e}"),
    })?;
    Ok(out.display().to_string())
}

/// Copies a held file to `path` (a received file from the blob store; ours likewise).
async fn copy_out(context: &Context, record: &FileRecord, path: Option<&Path>) -> Result<FileEntryView, NodeError> {
    let Some(path) = path else { return Ok(FileEntryView::from(record)) };
    let message = context
        .store
        .messages()
        .get_from(&record.author.to_base58(), record.message)
        .map_err(|e| NodeError::Op(e.into()))?
        .and_then(|m| m.file)
        .ok_or_else(|| NodeError::Op(crate::ops::OpError::Invalid("the file's message is gone".into())))?;
    save(context.blobs.clone(), BlobId(message.blob), BlobKey(message.key), path.to_path_buf(), Saving::Copy).await?;
    let mut view = FileEntryView::from(record);
    if record.direction == Direction::Incoming {
        view.path = Some(path.display().to_string());
    }
    Ok(view)
}

/// How [`save`] makes the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Saving {
    /// A hard link to the blob when it is kept opened and on the same file system
    /// (no second copy of the bytes); a checked copy otherwise.
    LinkIfOpened,
    /// A copy, every chunk checked and opened as it is written.
    Copy,
}

/// Writes the complete blob `id`, opened with `key`, as a new file at `out` (a copy
/// is written next to it under a temporary name and renamed when whole and checked,
/// so `out` never holds half a file; a link appears whole). Runs off the async
/// workers.
pub(crate) async fn save(store: Arc<BlobStore>, id: BlobId, key: BlobKey, out: PathBuf, saving: Saving) -> Result<(), BlobError> {
    tokio::task::spawn_blocking(move || -> Result<(), BlobError> {
        if saving == Saving::LinkIfOpened
            && let Some(opened) = store.opened_path(&id)?
        {
            match std::fs::hard_link(&opened, &out) {
                Ok(()) => return Ok(()),
                // Another file system, or one without links: copy instead.
                Err(e) => tracing::debug!(error = %e, "linking a received file failed; copying it"),
            }
        }
        let dir = match out.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new().prefix(".kith-").tempfile_in(dir)?;
        let mut writer = std::io::BufWriter::new(temp.as_file_mut());
        store.open_into(&id, &key, &mut writer)?;
        writer.into_inner().map_err(|e| BlobError::Io(e.into_error()))?.sync_all()?;
        temp.persist(&out).map_err(|e| BlobError::Io(e.error))?;
        Ok(())
    })
    .await
    .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
}
