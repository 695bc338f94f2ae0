//! The event loop: terminal input, node events and request results become
//! [`Action`]s; [`update`] turns them into state and [`Effect`]s; effects go to
//! request workers, the bell or the notification command; the screen is redrawn
//! when something changed.
//!
//! Five control-socket connections keep the UI responsive: one subscribed to
//! events, one for quick requests (reads, `send`, `read`), one for requests that
//! may wait on the network (`add` looks the peer up in the DHT; `invite` asks the
//! node; group changes go out to the other members), one for searches (which
//! may take a while over a long history, and must not wait behind a call being
//! placed either), and one for typing notices (sent while the user types, so they
//! must never hold up the send that follows). One task owns them all
//! ([`connection`]); the loop itself never awaits the node. When the node goes away
//! (a daemon restart) — its events connection ends, or a request finds its own
//! connection dead — that task says so, reports what was in flight as of unknown
//! outcome, fails what is asked meanwhile, and reconnects with backoff ([`Timers`]:
//! 0.25 s doubling to 5 s; only a session that lasted resets it), subscribing again;
//! the state machine then reloads what it shows. Every queue is bounded and every task is aborted when the loop ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::EventStream;
use futures::StreamExt;
use kith_p2p::call::CallView;
use kith_p2p::call::voice_room::RoomView;
use kith_p2p::control::{Client, ClientError, Request};
use kith_p2p::search::SearchHitView;
use kith_p2p::views::{CallRecordView, ContactView, FileEntryView, GroupView, InboxEntry, MessageView, RequestView};
use ratatui_image::picker::Picker;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::action::{Action, CallOp, Effect, Response, RoomOp};
use crate::app::{App, CallInfo, Config, RoomInfo, SearchHit, SearchQuery, update};
use crate::graphics::{self, Choice};
use crate::picture::Encoded;
use crate::terminal::{self, Tui};
use crate::{TuiError, TuiOptions, text, ui};

/// Actions waiting for the loop (node events, request results).
const ACTION_QUEUE: usize = 256;
/// Quick requests waiting for their connection.
const REQUEST_QUEUE: usize = 256;
/// Slow requests waiting for their connection.
const SLOW_QUEUE: usize = 16;
/// Searches waiting for their connection (the state machine keeps one in flight).
const SEARCH_QUEUE: usize = 4;
/// Typing notices waiting for their connection: the state machine sends at most one
/// per conversation every 2 s, and one more than this is dropped (it fails, quietly).
const TYPING_QUEUE: usize = 4;
/// At most this many actions are applied between two redraws, so a flood of events
/// cannot starve the screen.
const ACTIONS_PER_FRAME: usize = 64;
/// How often [`Action::Tick`] fires (status messages expire in ticks).
const TICK: Duration = Duration::from_secs(1);
/// How often [`Action::CallTick`] fires while a call or a voice room is in
/// progress: the call and room bars' level meters and durations follow the node
/// this closely (one `calls` and one `rooms` request at a time). No timer runs
/// without either.
const CALL_TICK: Duration = Duration::from_millis(400);
/// Notification commands running at once; more are skipped.
const MAX_NOTIFICATIONS: usize = 4;
/// A notification command still running after this is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for `date +%z` when looking up the time zone.
const TZ_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of [`Timers::reconnect_min`].
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Default of [`Timers::reconnect_max`].
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Default of [`Timers::connect_timeout`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long quitting waits for drafts to reach the node: a local socket answers in
/// milliseconds; a node that does not is not waited for.
const QUIT_DRAFTS_WAIT: Duration = Duration::from_secs(2);
/// How long a directory listing for Tab may take before the completion is given up
/// (a hung network mount must not leave Tab dead).
const LIST_TIMEOUT: Duration = Duration::from_secs(3);
/// Listings that may be running on the blocking pool at once, counting those given
/// up on (a hung file system keeps its thread): more Tabs on paths are refused.
const MAX_LISTINGS: usize = 4;
/// Pictures decoded at once for previews (each takes a blocking thread).
const MAX_DECODES: usize = 2;
/// Why a request fails while there is no connection.
const NOT_CONNECTED: &str = "not connected to the node (reconnecting)";

/// The connection task's timers, as fields so tests can shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timers {
    /// The first wait before reconnecting to a node that went away (a daemon restart
    /// is usually back within a second); doubled after every failed attempt and
    /// every session shorter than `reconnect_max`. Default 0.25 s.
    reconnect_min: Duration,
    /// The longest wait between two attempts, so a node that comes back after
    /// minutes is found within seconds; also how long a session must last before
    /// the wait starts again from `reconnect_min` (a node that accepts and closes at
    /// once is not hammered). Default 5 s.
    reconnect_max: Duration,
    /// How long an attempt to reconnect (connect and subscribe) may take: a node
    /// that accepts but does not answer is tried again like one that is not there.
    /// Default 5 s.
    connect_timeout: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers { reconnect_min: RECONNECT_MIN, reconnect_max: RECONNECT_MAX, connect_timeout: CONNECT_TIMEOUT }
    }
}

/// Connect to the node at `socket` and run the interface until the user quits.
pub(crate) async fn run(socket: &Path, options: TuiOptions) -> Result<(), TuiError> {
    // Connect first: without a node, fail before touching the terminal.
    let connected = Connection::open(socket).await?;

    let no_color = options.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let choice = std::env::var(graphics::ENV).ok();
    let choice = Choice::parse(choice.as_deref()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignored; asking the terminal");
        Choice::Auto
    });
    let plan = graphics::plan(choice, &graphics::Terminal::current());
    let config = Config {
        no_color,
        bell: options.bell,
        notify: options.notify_command.is_some(),
        utc_offset_secs: local_utc_offset().await,
        runs_node: options.runs_node,
        display_name: options.display_name,
        open_on: options.open_on,
    };

    let (action_tx, action_rx) = mpsc::channel(ACTION_QUEUE);
    let (quick_tx, quick_rx) = mpsc::channel(REQUEST_QUEUE);
    let (slow_tx, slow_rx) = mpsc::channel(SLOW_QUEUE);
    let (search_tx, search_rx) = mpsc::channel(SEARCH_QUEUE);
    let (typing_tx, typing_rx) = mpsc::channel(TYPING_QUEUE);
    // Dropped (aborting every task) when this function returns.
    let mut tasks = JoinSet::new();
    let queues =
        Queues { quick: quick_rx, slow: slow_rx, search: search_rx, typing: typing_rx, actions: action_tx.clone() };
    tasks.spawn(connection(socket.to_path_buf(), connected, queues, Timers::default()));

    let (mut tui, guard, detected) =
        terminal::enter(|| graphics::detect(plan, graphics::QUERY_TIMEOUT)).map_err(TuiError::Terminal)?;
    let mut runtime = Runtime {
        app: App::new(config).with_home_dir(std::env::var("HOME").ok()).with_graphics(detected.graphics),
        quick: quick_tx,
        slow: slow_tx,
        search: search_tx,
        typing: typing_tx,
        search_wait: JoinSet::new(),
        notify_command: options.notify_command,
        notifications: JoinSet::new(),
        listing: JoinSet::new(),
        listing_permits: Arc::new(Semaphore::new(MAX_LISTINGS)),
        list_timeout: LIST_TIMEOUT,
        lister: crate::complete::list_paths,
        actions: action_tx,
        notify_permits: Arc::new(Semaphore::new(MAX_NOTIFICATIONS)),
        decoding: JoinSet::new(),
        encoding: None,
        decode_permits: Arc::new(Semaphore::new(MAX_DECODES)),
        picker: detected.picker,
        graphics: Vec::new(),
        queue: VecDeque::new(),
    };
    let result = runtime.run(&mut tui, action_rx).await;
    drop(tui);
    drop(guard);
    result
}

/// The loop's state besides the [`App`].
struct Runtime {
    app: App,
    quick: mpsc::Sender<Effect>,
    slow: mpsc::Sender<Effect>,
    search: mpsc::Sender<Effect>,
    typing: mpsc::Sender<Effect>,
    /// The search overlay's debounce ([`Effect::SearchAfter`]): at most one wait, a
    /// newer one replaces it.
    search_wait: JoinSet<()>,
    notify_command: Option<String>,
    notifications: JoinSet<()>,
    /// The path listing in flight for Tab completion (at most one: a newer Tab
    /// replaces it).
    listing: JoinSet<()>,
    /// Listings running on the blocking pool, including those given up on.
    listing_permits: Arc<Semaphore>,
    /// How long a listing may take ([`LIST_TIMEOUT`]).
    list_timeout: Duration,
    /// What lists a directory ([`crate::complete::list_paths`]; tests hang it).
    lister: fn(&str, Option<&Path>) -> Vec<String>,
    /// For answers produced off the loop (path listings).
    actions: mpsc::Sender<Action>,
    notify_permits: Arc<Semaphore>,
    /// Pictures being decoded for previews or encoded for the viewer (each waits
    /// for a permit first).
    decoding: JoinSet<()>,
    /// The viewer's encoding in progress: a newer one (the pane resized) cancels it,
    /// so a burst of resizes leaves one decode, not one per event.
    encoding: Option<tokio::task::AbortHandle>,
    /// Decodes and encodes running at once ([`MAX_DECODES`]).
    decode_permits: Arc<Semaphore>,
    /// The encoder for the terminal's graphics protocol; `None`: half-blocks only.
    picker: Option<Picker>,
    /// The protocol-drawn pictures on screen as of the last frame
    /// ([`App::graphics_on_screen`]).
    graphics: Vec<Encoded>,
    /// Actions produced locally (e.g. a request that could not be queued).
    queue: VecDeque<Action>,
}

impl Runtime {
    async fn run(&mut self, tui: &mut Tui, mut actions: mpsc::Receiver<Action>) -> Result<(), TuiError> {
        let mut input = EventStream::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut call_tick = tokio::time::interval(CALL_TICK);
        call_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.apply(Action::Clock { unix_ms: unix_ms() });
        let size = tui.size().map_err(TuiError::Terminal)?;
        self.apply(Action::Resize { width: size.width, height: size.height });
        for effect in self.app.start() {
            self.execute(effect);
        }
        let mut dirty = true;
        loop {
            if !terminal::is_active() {
                return Err(TuiError::Terminal(std::io::Error::other("a task panicked; the terminal was restored")));
            }
            if dirty {
                // A sixel or iTerm2 picture stays on the terminal, under whatever
                // cells are not rewritten, until the screen is cleared.
                let graphics = self.app.graphics_on_screen();
                if !self.graphics.is_empty() && graphics != self.graphics {
                    tui.clear().map_err(TuiError::Terminal)?;
                }
                self.graphics = graphics;
                tui.draw(|frame| ui::render(frame, &self.app)).map_err(TuiError::Terminal)?;
                dirty = false;
            }
            let action = match self.queue.pop_front() {
                Some(action) => action,
                None => tokio::select! {
                    event = input.next() => match event {
                        Some(Ok(event)) => {
                            let action = match Action::from_terminal(event) {
                                Some(Action::Paste(text)) => match pasted_file(&text) {
                                    Some(path) => Action::PastedFile(path),
                                    None => Action::Paste(text),
                                },
                                Some(action) => action,
                                None => continue,
                            };
                            // Input is timed to the millisecond (typing notices are
                            // spaced by it), not only to the last tick.
                            self.apply(Action::Clock { unix_ms: unix_ms() });
                            action
                        }
                        Some(Err(e)) => return Err(TuiError::Terminal(e)),
                        None => return Ok(()),
                    },
                    Some(action) = actions.recv() => action,
                    _ = tick.tick() => {
                        self.apply(Action::Clock { unix_ms: unix_ms() });
                        Action::Tick
                    }
                    // Only while a call or a room is in progress (the branch is off otherwise).
                    _ = call_tick.tick(), if self.app.wants_call_ticks() => {
                        self.apply(Action::Clock { unix_ms: unix_ms() });
                        Action::CallTick
                    }
                },
            };
            dirty |= self.apply(action);
            // Apply whatever else is ready before drawing again.
            for _ in 1..ACTIONS_PER_FRAME {
                let Ok(action) = actions.try_recv() else { break };
                dirty |= self.apply(action);
            }
            while self.notifications.try_join_next().is_some() {}
            while self.listing.try_join_next().is_some() {}
            while self.search_wait.try_join_next().is_some() {}
            while self.decoding.try_join_next().is_some() {}
            if self.app.should_quit() {
                self.finish_drafts(&mut actions).await;
                return Ok(());
            }
        }
    }

    /// On quitting: wait (at most [`QUIT_DRAFTS_WAIT`]) for the drafts sent to the
    /// node to be answered, so what was typed is there after a restart.
    async fn finish_drafts(&mut self, actions: &mut mpsc::Receiver<Action>) {
        let deadline = tokio::time::Instant::now() + QUIT_DRAFTS_WAIT;
        while self.app.saving_drafts() {
            match tokio::time::timeout_at(deadline, actions.recv()).await {
                Ok(Some(action)) => {
                    self.apply(action);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Apply one action and run its effects; returns whether the screen changed.
    fn apply(&mut self, action: Action) -> bool {
        let tick = matches!(action, Action::Tick | Action::Clock { .. });
        let had_status = self.app.status().is_some();
        // A tick changes the screen only by expiring the status or counting down to
        // the next reconnection attempt.
        let node = self.app.node().clone();
        for effect in update(&mut self.app, action) {
            self.execute(effect);
        }
        !tick || self.app.status().is_some() != had_status || *self.app.node() != node
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Quit => {}
            Effect::Bell => terminal::bell(),
            Effect::Copy { text } => terminal::copy(&text),
            Effect::ListPaths { word } => self.list_paths(word),
            Effect::OpenFile { path } => self.open_file(path),
            Effect::DecodePicture { id, path } => self.decode_picture(id, path),
            Effect::EncodePicture { id, path, room } => self.encode_picture(id, path, room),
            Effect::DecodeAvatar { peer_id, data, room } => self.decode_avatar(peer_id, data, room),
            Effect::Notify { from, text } => self.notify(&from, &text),
            Effect::SearchAfter { after, edit } => self.search_after(after, edit),
            Effect::Search { .. } => self.request(Lane::Search, effect),
            Effect::Typing { .. } => self.request(Lane::Typing, effect),
            // `call` waits for the callee's node to ring, `answer` for the caller to
            // have the answer, `room_join` for a relay of the group; `hangup` and
            // `mute` stay quick, to cancel a call on its way.
            Effect::Add { .. }
            | Effect::Invite
            | Effect::Group(_)
            | Effect::Call { .. }
            | Effect::Answer { .. }
            | Effect::JoinRoom { .. } => self.request(Lane::Slow, effect),
            other => self.request(Lane::Quick, other),
        }
    }

    fn request(&mut self, lane: Lane, effect: Effect) {
        let queue = match lane {
            Lane::Quick => &self.quick,
            Lane::Slow => &self.slow,
            Lane::Search => &self.search,
            Lane::Typing => &self.typing,
        };
        if let Err(e) = queue.try_send(effect) {
            let (effect, error) = match e {
                mpsc::error::TrySendError::Full(effect) => (effect, "too many requests in flight; try again"),
                mpsc::error::TrySendError::Closed(effect) => (effect, "the connection to the node is closed"),
            };
            self.queue.push_back(Action::Failed { effect, error: error.to_owned() });
        }
    }

    /// Answer [`Action::SearchDue`] for `edit` after `after`, replacing the wait
    /// still running (so a search goes that long after the last edit).
    fn search_after(&mut self, after: Duration, edit: u64) {
        self.search_wait.abort_all();
        let actions = self.actions.clone();
        self.search_wait.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = actions.send(Action::SearchDue { edit }).await;
        });
    }

    /// List the files `word` can complete to on the blocking pool and answer with
    /// the result, or with a failure (which ends the pending completion) when it
    /// takes longer than [`LIST_TIMEOUT`] or too many listings hang already. A newer
    /// Tab replaces the listing waited for; a hung one keeps its thread (and permit)
    /// until the file system answers.
    fn list_paths(&mut self, word: String) {
        self.listing.abort_all();
        let Ok(permit) = Arc::clone(&self.listing_permits).try_acquire_owned() else {
            let error = "the file system is not answering (earlier listings still hang)".to_owned();
            self.queue.push_back(Action::Failed { effect: Effect::ListPaths { word }, error });
            return;
        };
        let (actions, timeout, lister) = (self.actions.clone(), self.list_timeout, self.lister);
        self.listing.spawn(async move {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let typed = word.clone();
            let listed = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                lister(&typed, home.as_deref())
            });
            let action = match tokio::time::timeout(timeout, listed).await {
                Ok(listed) => Action::Done(Response::Paths { word, candidates: listed.unwrap_or_default() }),
                Err(_) => Action::Failed {
                    effect: Effect::ListPaths { word },
                    error: format!("the directory did not list within {} s", timeout.as_secs_f32()),
                },
            };
            let _ = actions.send(action).await;
        });
    }

    /// Hand `path` to the system's opener (`xdg-open`, else `open`) and answer
    /// [`Response::Opened`]; without one, fail with where the file is. The opener
    /// runs detached from the terminal (no input, output discarded), waited for
    /// among the notifications (bounded by the same permits and timeout).
    fn open_file(&mut self, path: String) {
        let effect = Effect::OpenFile { path: path.clone() };
        let Some(opener) = opener() else {
            let error = "nothing here opens files: no xdg-open or open".to_owned();
            self.queue.push_back(Action::Failed { effect, error });
            return;
        };
        let Ok(permit) = Arc::clone(&self.notify_permits).try_acquire_owned() else {
            let error = "too many openers still running".to_owned();
            self.queue.push_back(Action::Failed { effect, error });
            return;
        };
        let mut command = tokio::process::Command::new(&opener);
        match self.spawn_quiet(command.arg(&path), permit) {
            Ok(()) => self.queue.push_back(Action::Done(Response::Opened { path })),
            Err(e) => self.queue.push_back(Action::Failed { effect, error: format!("{}: {e}", opener.display()) }),
        }
    }

    /// Start `command` detached from the terminal (no input, output discarded) and
    /// wait for it among the notifications, holding `permit` meanwhile; one still
    /// running after [`NOTIFY_TIMEOUT`] is killed.
    fn spawn_quiet(
        &mut self,
        command: &mut tokio::process::Command,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> std::io::Result<()> {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true).spawn()?;
        self.notifications.spawn(async move {
            if tokio::time::timeout(NOTIFY_TIMEOUT, child.wait()).await.is_err() {
                tracing::warn!("a notification or opener command timed out; killing it");
                let _ = child.kill().await;
            }
            drop(permit);
        });
        Ok(())
    }

    /// Decode a picture for its preview off the loop ([`Runtime::off_loop`]) and
    /// answer with [`Response::Picture`] or a failure.
    fn decode_picture(&mut self, id: String, path: String) {
        let effect = Effect::DecodePicture { id: id.clone(), path: path.clone() };
        self.off_loop(effect, move || {
            let picture = crate::picture::decode(Path::new(&path))?;
            Ok(Response::Picture { id, picture })
        });
    }

    /// Encode a picture for the terminal's graphics protocol to fit `room` off the
    /// loop ([`Runtime::off_loop`]) and answer with [`Response::Encoded`] or a
    /// failure (also when there is no protocol to encode for).
    fn encode_picture(&mut self, id: String, path: String, room: (u16, u16)) {
        let effect = Effect::EncodePicture { id: id.clone(), path: path.clone(), room };
        let Some(picker) = self.picker.clone() else {
            let error = "the terminal shows no graphics".to_owned();
            self.queue.push_back(Action::Failed { effect, error });
            return;
        };
        let encoding = self.off_loop(effect, move || {
            let picture = crate::picture::encode(Path::new(&path), &picker, room.0, room.1)?;
            Ok(Response::Encoded { id, room, picture })
        });
        if let Some(superseded) = self.encoding.replace(encoding) {
            superseded.abort();
        }
    }

    /// Decode an avatar off the loop ([`Runtime::off_loop`]), and encode it for the
    /// terminal's graphics protocol to fit `room` when there is one; answer with
    /// [`Response::Avatar`] or a failure.
    fn decode_avatar(&mut self, peer_id: String, data: String, room: (u16, u16)) {
        let effect = Effect::DecodeAvatar { peer_id: peer_id.clone(), data: data.clone(), room };
        let picker = self.picker.clone();
        self.off_loop(effect, move || {
            let bytes = crate::picture::avatar_bytes(&data)?;
            let (picture, encoded) = crate::picture::decode_avatar(&bytes, picker.as_ref(), room.0, room.1)?;
            Ok(Response::Avatar { peer_id, room, picture, encoded })
        });
    }

    /// Run `work` (reading and decoding a picture) on the blocking pool, at most
    /// [`MAX_DECODES`] at once (the others wait their turn), and answer with its
    /// response, or with `effect` failed. Aborting the returned handle drops a job
    /// still waiting for its turn, and the answer of one already running.
    fn off_loop<F>(&mut self, effect: Effect, work: F) -> tokio::task::AbortHandle
    where
        F: FnOnce() -> Result<Response, crate::picture::DecodeError> + Send + 'static,
    {
        let (actions, permits) = (self.actions.clone(), Arc::clone(&self.decode_permits));
        self.decoding.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else { return };
            let done = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                work()
            });
            let action = match done.await {
                Ok(Ok(response)) => Action::Done(response),
                Ok(Err(e)) => Action::Failed { effect, error: e.to_string() },
                Err(e) => Action::Failed { effect, error: e.to_string() },
            };
            let _ = actions.send(action).await;
        })
    }

    /// Run the notification command with `KITH_FROM` and `KITH_TEXT` set.
    fn notify(&mut self, from: &str, text: &str) {
        let Some(command) = &self.notify_command else { return };
        let Ok(permit) = Arc::clone(&self.notify_permits).try_acquire_owned() else {
            tracing::warn!("notification skipped: {MAX_NOTIFICATIONS} still running");
            return;
        };
        let mut sh = tokio::process::Command::new("sh");
        sh.arg("-c").arg(command).env("KITH_FROM", from).env("KITH_TEXT", text);
        if let Err(e) = self.spawn_quiet(&mut sh, permit) {
            tracing::warn!(error = %e, "notification command failed to start");
        }
    }
}

/// Forward node events (from a subscribed connection) to the loop as actions until
/// either side goes away; a lost connection becomes [`Action::Disconnected`] (with
/// no retry: the interface's own loop reconnects through its connection task).
pub async fn forward_events(client: Client, actions: mpsc::Sender<Action>) {
    if let Some(error) = forward_until_lost(client, &actions).await {
        let _ = actions.send(Action::Disconnected { error, retry_in: None }).await;
    }
}

/// Which connection a request goes over (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Quick,
    Slow,
    Search,
    Typing,
}

/// The connections to the node (see the module header).
struct Connection {
    quick: Client,
    slow: Client,
    search: Client,
    typing: Client,
    events: Client,
}

impl Connection {
    /// Connect them all and subscribe the events connection.
    async fn open(socket: &Path) -> Result<Connection, ClientError> {
        let quick = Client::connect(socket).await?;
        let slow = Client::connect(socket).await?;
        let search = Client::connect(socket).await?;
        let typing = Client::connect(socket).await?;
        let mut events = Client::connect(socket).await?;
        events.subscribe().await?;
        Ok(Connection { quick, slow, search, typing, events })
    }
}

/// The connection task's ends of the loop's queues.
struct Queues {
    /// Quick requests from the loop.
    quick: mpsc::Receiver<Effect>,
    /// Requests that may wait on the network.
    slow: mpsc::Receiver<Effect>,
    /// Searches.
    search: mpsc::Receiver<Effect>,
    /// Typing notices.
    typing: mpsc::Receiver<Effect>,
    /// Results and events to the loop.
    actions: mpsc::Sender<Action>,
}

/// Own the node connections for the life of the interface: serve requests and
/// forward events over `first`; when the node goes away, report
/// [`Action::Disconnected`] with the wait before the next attempt and
/// [`Action::Interrupted`] for what was in flight, fail requests meanwhile, and
/// reconnect with backoff, reporting [`Action::Reconnected`] when it is back. Ends
/// when the loop is gone (its queues closed).
async fn connection(socket: PathBuf, first: Connection, mut queues: Queues, timers: Timers) {
    let mut connected = Some(first);
    let mut delay = timers.reconnect_min;
    loop {
        if let Some(connection) = connected.take() {
            let began = Instant::now();
            let Some(lost) = session(connection, &mut queues).await else { return };
            tracing::warn!(error = %lost.error, "lost the node's control connection; reconnecting");
            // Only a session that lasted starts the backoff again: a node that
            // accepts and closes at once is tried ever more slowly.
            if began.elapsed() >= timers.reconnect_max {
                delay = timers.reconnect_min;
            }
            let lost_error = lost.error.clone();
            let disconnected = Action::Disconnected { error: lost.error, retry_in: Some(delay) };
            if queues.actions.send(disconnected).await.is_err() {
                return;
            }
            for effect in lost.in_flight {
                let error = format!("lost the connection to the node: {lost_error}");
                if queues.actions.send(Action::Interrupted { effect, error }).await.is_err() {
                    return;
                }
            }
        }
        // Wait, answering requests at once rather than letting them queue up.
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            let effect = tokio::select! {
                () = &mut wait => break,
                Some(effect) = queues.quick.recv() => effect,
                Some(effect) = queues.slow.recv() => effect,
                Some(effect) = queues.search.recv() => effect,
                Some(effect) = queues.typing.recv() => effect,
                else => return,
            };
            if queues.actions.send(Action::Failed { effect, error: NOT_CONNECTED.to_owned() }).await.is_err() {
                return;
            }
        }
        let opened = tokio::time::timeout(timers.connect_timeout, Connection::open(&socket)).await;
        let opened = opened.unwrap_or_else(|_| Err(ClientError::Io(std::io::ErrorKind::TimedOut.into())));
        // The next wait is longer whether this attempt fails or the session it opens
        // turns out short.
        delay = (delay * 2).min(timers.reconnect_max);
        let action = match opened {
            Ok(connection) => {
                connected = Some(connection);
                Action::Reconnected
            }
            Err(e) => Action::Disconnected { error: e.to_string(), retry_in: Some(delay) },
        };
        if queues.actions.send(action).await.is_err() {
            return;
        }
    }
}

/// How a session ended: why, and the requests that were sent but not answered.
struct Lost {
    error: String,
    in_flight: Vec<Effect>,
}

/// Serve requests and forward events over one [`Connection`] until one of its
/// connections breaks; returns why and what was in flight (`None` when the loop is
/// gone).
async fn session(connection: Connection, queues: &mut Queues) -> Option<Lost> {
    let Connection { quick: quick_client, slow: slow_client, search: search_client, typing: typing_client, events } =
        connection;
    let Queues { quick, slow, search, typing, actions } = queues;
    let (mut quick_flight, mut slow_flight, mut search_flight, mut typing_flight) = (None, None, None, None);
    let error = tokio::select! {
        lost = forward_until_lost(events, actions) => lost,
        lost = serve(quick_client, quick, actions, &mut quick_flight) => lost,
        lost = serve(slow_client, slow, actions, &mut slow_flight) => lost,
        lost = serve(search_client, search, actions, &mut search_flight) => lost,
        lost = serve(typing_client, typing, actions, &mut typing_flight) => lost,
    }?;
    let in_flight = [quick_flight, slow_flight, search_flight, typing_flight].into_iter().flatten().collect();
    Some(Lost { error, in_flight })
}

/// Forward events as actions until the connection fails (its error) or the loop is
/// gone (`None`).
async fn forward_until_lost(mut client: Client, actions: &mpsc::Sender<Action>) -> Option<String> {
    loop {
        match client.next_event().await {
            Ok(event) => actions.send(Action::Node(event)).await.ok()?,
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// Perform requests one at a time on `client`, sending each result back, until the
/// connection breaks (its error) or the loop is gone (`None`). The request being
/// performed stays in `in_flight` until its result is delivered, so whoever cancels
/// this — or this itself, when the connection breaks under a request — reports it
/// as of unknown outcome.
async fn serve(
    mut client: Client,
    requests: &mut mpsc::Receiver<Effect>,
    actions: &mpsc::Sender<Action>,
    in_flight: &mut Option<Effect>,
) -> Option<String> {
    while let Some(effect) = requests.recv().await {
        let effect = in_flight.insert(effect);
        let action = match request(&mut client, effect).await {
            Ok(response) => Action::Done(response),
            Err(e) if e.connection_lost() => return Some(e.to_string()),
            Err(e) if e.outcome_unknown() => Action::Interrupted { effect: effect.clone(), error: e.to_string() },
            Err(e) => Action::Failed { effect: effect.clone(), error: e.to_string() },
        };
        actions.send(action).await.ok()?;
        *in_flight = None;
    }
    None
}

/// Why a node request of [`request`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The control connection failed ([`ClientError::Closed`], [`ClientError::Io`]:
    /// whether the node carried the request out is unknown) or the node answered
    /// with an error ([`ClientError::Api`]: it did not).
    #[error(transparent)]
    Node(#[from] ClientError),
    /// The node answered, but not with what the request expects.
    #[error("unexpected answer to `{method}`: {source}")]
    Unexpected {
        /// The control method.
        method: String,
        /// Why the answer did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// The effect is not a node request (the bell, a notification, ...).
    #[error("not a node request")]
    NotARequest,
    /// A path typed for `/file` cannot be made absolute.
    #[error("{0}")]
    Path(String),
}

impl RequestError {
    /// Whether the connection the request went over is dead: no later request on it
    /// can succeed, so the session must end.
    pub fn connection_lost(&self) -> bool {
        match self {
            RequestError::Node(ClientError::Closed | ClientError::Io(_)) => true,
            // Refused as it connected (the node had too many clients then): this
            // connection is closed, and a new one may be taken.
            RequestError::Node(ClientError::Api(e)) => e.code == kith_p2p::control::ErrorCode::TooManyClients,
            _ => false,
        }
    }

    /// Whether the node may have carried the request out although no answer says
    /// so: the connection broke after it was sent, or the answer was unreadable.
    pub fn outcome_unknown(&self) -> bool {
        self.connection_lost() || matches!(self, RequestError::Unexpected { .. })
    }
}

async fn call<T: DeserializeOwned>(client: &mut Client, request: Request) -> Result<T, RequestError> {
    let value = client.request(&request).await?;
    serde_json::from_value(value)
        .map_err(|source| RequestError::Unexpected { method: request.method().to_string(), source })
}

/// Carry out one node request of `update` on `client` and return its answer as the
/// [`Response`] `update` expects; effects that are not node requests are
/// [`RequestError::NotARequest`]. Not cancel-safe: a request cancelled after it was
/// written leaves its answer on the connection.
pub async fn request(client: &mut Client, effect: &Effect) -> Result<Response, RequestError> {
    Ok(match effect {
        Effect::Refresh => {
            let contacts: Vec<ContactView> = call(client, Request::Contacts { state: None }).await?;
            let requests: Vec<RequestView> = call(client, Request::Requests {}).await?;
            let inbox: Vec<InboxEntry> = call(client, Request::Inbox {}).await?;
            Response::Snapshot { contacts, requests, inbox }
        }
        Effect::LoadStatus => Response::Status(call(client, Request::Status {}).await?),
        Effect::LoadConversations => Response::Conversations(call(client, Request::Conversations {}).await?),
        Effect::MuteConversation { contact, until_ms } => {
            let request = Request::MuteConversation { contact: contact.clone(), until_ms: *until_ms };
            Response::MuteChanged(call(client, request).await?)
        }
        Effect::UnmuteConversation { contact } => {
            Response::MuteChanged(call(client, Request::UnmuteConversation { contact: contact.clone() }).await?)
        }
        Effect::SaveDraft { contact, text } => {
            let _: Value = call(client, Request::SetDraft { contact: contact.clone(), text: text.clone() }).await?;
            Response::DraftSaved { contact: contact.clone(), text: text.clone() }
        }
        Effect::ShowStatus => Response::StatusReport(call(client, Request::Status {}).await?),
        Effect::LoadGroups => Response::Groups(call(client, Request::Groups {}).await?),
        Effect::LoadPresence => Response::Presence(call(client, Request::Presence {}).await?),
        Effect::Typing { contact } => {
            // Answered `{"told": n}`: how many were told is of no use here.
            let _: Value = call(client, Request::Typing { contact: contact.clone() }).await?;
            Response::Typing { contact: contact.clone() }
        }
        Effect::Search { text, within, limit } => {
            let request =
                Request::Search { query: text.clone(), within: within.clone(), from: None, limit: Some(*limit) };
            let hits: Vec<SearchHitView> = call(client, request).await?;
            let query = SearchQuery { text: text.clone(), within: within.clone() };
            Response::Search { query, hits: hits.into_iter().take(*limit).map(SearchHit::from).collect() }
        }
        Effect::Group(op) => {
            let group: GroupView = call(client, Request::ChangeGroup(op.clone())).await?;
            Response::GroupUpdated { op: op.clone(), group }
        }
        Effect::LoadHistory { contact, before, limit } => {
            let request = Request::History { contact: contact.clone(), limit: Some(*limit), before: before.clone() };
            let messages: Vec<MessageView> = call(client, request).await?;
            Response::History { contact: contact.clone(), before: before.clone(), limit: *limit, messages }
        }
        Effect::LoadPreview { contact } => {
            let request = Request::History { contact: contact.clone(), limit: Some(1), before: None };
            let messages: Vec<MessageView> = call(client, request).await?;
            Response::Preview { contact: contact.clone(), message: messages.into_iter().next_back() }
        }
        Effect::Send { contact, text, reply_to } => {
            let request = Request::Send { contact: contact.clone(), text: text.clone(), reply_to: reply_to.clone() };
            Response::Sent(call(client, request).await?)
        }
        Effect::Edit { id, text, .. } => {
            Response::Changed(call(client, Request::Edit { id: id.clone(), text: text.clone() }).await?)
        }
        Effect::Delete { id, for_everyone: true } => {
            Response::Changed(call(client, Request::Delete { id: id.clone(), for_everyone: true }).await?)
        }
        Effect::Delete { id, for_everyone: false } => {
            // Answered `{"hidden": id}`.
            let value: Value = call(client, Request::Delete { id: id.clone(), for_everyone: false }).await?;
            let hidden = value.get("hidden").and_then(Value::as_str).unwrap_or(id);
            Response::Hidden { id: hidden.to_owned() }
        }
        Effect::React { id, emoji } => {
            Response::Changed(call(client, Request::React { id: id.clone(), emoji: emoji.clone() }).await?)
        }
        Effect::MarkRead { contact } => {
            let _: Value = call(client, Request::Read { contact: contact.clone() }).await?;
            Response::Marked { contact: contact.clone() }
        }
        Effect::Invite => {
            let value: Value = call(client, Request::Invite {}).await?;
            let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            Response::Invite { invite: field("invite"), qr: field("qr") }
        }
        Effect::Add { target, alias } => {
            Response::Added(call(client, Request::Add { target: target.clone(), alias: alias.clone() }).await?)
        }
        Effect::Accept { contact } => {
            Response::ContactUpdated(call(client, Request::Accept { contact: contact.clone() }).await?)
        }
        Effect::Block { contact } => {
            Response::ContactUpdated(call(client, Request::Block { contact: contact.clone() }).await?)
        }
        Effect::Reject { contact } => {
            let value: Value = call(client, Request::Reject { contact: contact.clone() }).await?;
            let peer_id = value.get("removed").and_then(Value::as_str).unwrap_or(contact).to_owned();
            Response::Removed { peer_id }
        }
        Effect::Unblock { contact } => {
            Response::Unblocked(call(client, Request::Unblock { contact: contact.clone() }).await?)
        }
        Effect::Rename { contact, alias } => Response::Renamed(
            call(client, Request::Rename { contact: contact.clone(), alias: alias.clone() }).await?,
        ),
        Effect::Remove { contact } => {
            let value: Value = call(client, Request::Remove { contact: contact.clone() }).await?;
            let peer_id = value.get("removed").and_then(Value::as_str).unwrap_or(contact).to_owned();
            Response::ContactRemoved { peer_id }
        }
        Effect::SendFile { contact, path, caption } => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let Some(absolute) = crate::commands::absolute_path(path, &cwd, home.as_deref()) else {
                return Err(RequestError::Path(format!("{path}: no home directory to find ~ in")));
            };
            let path = absolute.to_string_lossy().into_owned();
            Response::Sent(call(client, Request::SendFile { contact: contact.clone(), path, caption: caption.clone() }).await?)
        }
        Effect::LoadProfile { contact, avatar } => {
            let profile = call(client, Request::Profile { contact: contact.clone(), avatar: *avatar }).await?;
            Response::Profile { contact: contact.clone(), avatar: *avatar, profile }
        }
        Effect::Verify { contact, mark } => {
            let view = call(client, Request::Verify { contact: contact.clone(), mark: *mark }).await?;
            Response::Verified { mark: *mark, view }
        }
        Effect::SetProfile { name, status, avatar, clear_avatar } => {
            // The node reads the picture itself: it needs a path it can open.
            let avatar = match avatar {
                Some(path) => {
                    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
                    let home = std::env::var_os("HOME").map(PathBuf::from);
                    let Some(absolute) = crate::commands::absolute_path(path, &cwd, home.as_deref()) else {
                        return Err(RequestError::Path(format!("{path}: no home directory to find ~ in")));
                    };
                    Some(absolute.to_string_lossy().into_owned())
                }
                None => None,
            };
            let request =
                Request::SetProfile { name: name.clone(), status: status.clone(), avatar, clear_avatar: *clear_avatar };
            Response::ProfileSet(call(client, request).await?)
        }
        Effect::LoadFiles { contact } => {
            let files: Vec<FileEntryView> = call(client, Request::Files { contact: Some(contact.clone()) }).await?;
            Response::Files { contact: contact.clone(), files }
        }
        Effect::GetFile { id } => {
            Response::File(call(client, Request::GetFile { id: id.clone(), out: None, wait: false }).await?)
        }
        // No files: the node's microphone and speaker (with `audio-devices`), else silence.
        Effect::Call { contact } => {
            let request = Request::Call { contact: contact.clone(), input: None, output: None };
            let view: CallView = call(client, request).await?;
            Response::Call { op: CallOp::Call, call: CallInfo::from(&view) }
        }
        Effect::Answer { call: id } => {
            let view: CallView = call(client, Request::Answer { call: id.clone(), input: None, output: None }).await?;
            Response::Call { op: CallOp::Answer, call: CallInfo::from(&view) }
        }
        Effect::Hangup { call: id } => {
            let view: CallView = call(client, Request::Hangup { call: id.clone() }).await?;
            Response::Call { op: CallOp::Hangup, call: CallInfo::from(&view) }
        }
        Effect::Mute { call: id, muted } => {
            let view: CallView = call(client, Request::Mute { call: id.clone(), muted: *muted }).await?;
            Response::Call { op: CallOp::Mute, call: CallInfo::from(&view) }
        }
        Effect::LoadCalls => {
            #[derive(serde::Deserialize)]
            struct Calls {
                active: Vec<CallView>,
                history: Vec<CallRecordView>,
            }
            let calls: Calls = call(client, Request::Calls { limit: Some(crate::app::CALLS_HISTORY) }).await?;
            Response::Calls { active: calls.active.iter().map(CallInfo::from).collect(), history: calls.history }
        }
        // No files here either, as for calls.
        Effect::JoinRoom { group } => {
            let request = Request::RoomJoin { group: group.clone(), input: None, output: None };
            let view: RoomView = call(client, request).await?;
            Response::Room { op: RoomOp::Join, room: RoomInfo::from(&view) }
        }
        Effect::LeaveRoom { group } => {
            let view: RoomView = call(client, Request::RoomLeave { group: group.clone() }).await?;
            Response::Room { op: RoomOp::Leave, room: RoomInfo::from(&view) }
        }
        Effect::MuteRoom { group, muted } => {
            let view: RoomView = call(client, Request::RoomMute { group: group.clone(), muted: *muted }).await?;
            Response::Room { op: RoomOp::Mute, room: RoomInfo::from(&view) }
        }
        Effect::LoadRooms => {
            let rooms: Vec<RoomView> = call(client, Request::Rooms {}).await?;
            Response::Rooms(rooms.iter().map(RoomInfo::from).collect())
        }
        Effect::Bell
        | Effect::Notify { .. }
        | Effect::Copy { .. }
        | Effect::ListPaths { .. }
        | Effect::OpenFile { .. }
        | Effect::DecodePicture { .. }
        | Effect::EncodePicture { .. }
        | Effect::DecodeAvatar { .. }
        | Effect::SearchAfter { .. }
        | Effect::Quit => {
            return Err(RequestError::NotARequest);
        }
    })
}

/// The system's program that opens a file with its default application: the first
/// of `xdg-open` (freedesktop) and `open` (macOS) found on `PATH`.
fn opener() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["xdg-open", "open"]
        .iter()
        .find_map(|name| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

/// A bracketed paste that names an existing regular file: one line, an absolute
/// or `~/` path (or a `file://` URL of one, as file managers copy them), at most
/// 4 KiB. Looks at the file system (one `stat`), for pastes that look like paths only.
fn pasted_file(text: &str) -> Option<String> {
    let line = text.trim_matches(|c: char| c == '\n' || c == '\r' || c == ' ');
    if line.len() > 4096 || line.contains('\n') {
        return None;
    }
    let line = line.strip_prefix("file://").unwrap_or(line);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = if line.starts_with('/') {
        PathBuf::from(line)
    } else if line.starts_with("~/") {
        crate::commands::absolute_path(line, Path::new("/"), home.as_deref())?
    } else {
        return None;
    };
    path.is_file().then(|| path.to_string_lossy().into_owned())
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The local time zone's offset from UTC in seconds, from `date +%z` (the standard
/// library has no time zones, and reading the zone database is not worth a crate).
/// UTC when that fails.
pub async fn local_utc_offset() -> i32 {
    let output = tokio::process::Command::new("date")
        .arg("+%z")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(TZ_TIMEOUT, output).await {
        Ok(Ok(out)) if out.status.success() => {
            text::parse_utc_offset(&String::from_utf8_lossy(&out.stdout)).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Why `ClientError` is in [`TuiError`]: a missing node is the caller's business.
impl From<ClientError> for TuiError {
    fn from(e: ClientError) -> TuiError {
        TuiError::Node(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The connection task against a real `UnixListener` in a temp dir speaking the
    //! control protocol's line format, with millisecond timers.

    use std::sync::atomic::{AtomicU32, Ordering};

    use serde_json::json;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{UnixListener, UnixStream};

    use super::*;

    /// How long a test waits for anything before failing.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// What the fake node does with a request, by method.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reply {
        /// Answers `{}`.
        Ok,
        /// Answers with an error (`unknown_contact`).
        Refuse,
        /// Never answers.
        Never,
        /// Closes that connection without answering (as the node does after a
        /// request line over its limit).
        Close,
        /// Answers, then closes that connection.
        OkThenClose,
        /// Answers one search hit (`search`'s answer): a message of Алиса's with a
        /// mark on its first word.
        Hit,
        /// Answers a message change as the node does: `{"hidden": id}` for a delete
        /// for us, else the message (`id`, else a new one) with the change applied.
        Changed,
    }

    /// A node on a Unix socket in its own temp dir, answering by `policy`. `stop`
    /// (or drop) closes every connection and removes the socket.
    struct FakeNode {
        dir: PathBuf,
        socket: PathBuf,
        policy: fn(&str) -> Reply,
        server: Option<tokio::task::JoinHandle<()>>,
        /// The requests asked (`{"method", "params", "id"}`), in order.
        requests: mpsc::Receiver<Value>,
        requests_tx: mpsc::Sender<Value>,
    }

    impl FakeNode {
        fn start(policy: fn(&str) -> Reply) -> FakeNode {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("kith-tui-runtime-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let (requests_tx, requests) = mpsc::channel(256);
            let mut node = FakeNode { socket: dir.join("kith.sock"), dir, policy, server: None, requests, requests_tx };
            node.resume();
            node
        }

        /// Listen (again) on the socket.
        fn resume(&mut self) {
            let listener = UnixListener::bind(&self.socket).unwrap();
            let (policy, requests) = (self.policy, self.requests_tx.clone());
            self.server = Some(tokio::spawn(async move {
                // Dropped with this task: every connection closes.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(answer(stream, policy, requests.clone()));
                }
            }));
        }

        /// Close every connection and stop listening.
        async fn stop(&mut self) {
            if let Some(server) = self.server.take() {
                server.abort();
                let _ = server.await;
            }
            let _ = std::fs::remove_file(&self.socket);
        }

        /// Wait until the node was asked `method`.
        async fn asked(&mut self, method: &str) {
            while self.request().await["method"] != method {}
        }

        /// The next request the node was asked.
        async fn request(&mut self) -> Value {
            let asked = tokio::time::timeout(DEADLINE, self.requests.recv()).await.expect("a request in time");
            asked.expect("the node is listening")
        }
    }

    impl Drop for FakeNode {
        fn drop(&mut self) {
            if let Some(server) = self.server.take() {
                server.abort();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn answer(stream: UnixStream, policy: fn(&str) -> Reply, requests: mpsc::Sender<Value>) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let request: Value = serde_json::from_str(&line).unwrap();
            let method = request["method"].as_str().unwrap_or_default().to_owned();
            let _ = requests.try_send(request.clone());
            let id = request["id"].clone();
            let ok = format!("{}\n", json!({ "id": id, "result": {} }));
            let refused = json!({ "id": id, "error": { "code": "unknown_contact", "message": "no such contact" } });
            match policy(&method) {
                Reply::Ok => write.write_all(ok.as_bytes()).await.unwrap(),
                Reply::Refuse => write.write_all(format!("{refused}\n").as_bytes()).await.unwrap(),
                Reply::Never => std::future::pending().await,
                Reply::Hit => {
                    let hit = json!({ "id": id, "result": [{
                        "message": {
                            "id": "01".repeat(16), "conversation": "c".repeat(32), "peer": "alisa",
                            "author": "alisa", "direction": "incoming", "text": "café at noon",
                            "sent_at": 1, "received_at": 1, "lamport": 1, "state": "read"
                        },
                        "score": 1.5, "snippet": "café at noon", "marks": [[0, 5]]
                    }] });
                    write.write_all(format!("{hit}\n").as_bytes()).await.unwrap();
                }
                Reply::Changed => {
                    let answer = json!({ "id": id, "result": changed(&method, &request["params"]) });
                    write.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
                }
                Reply::Close => return,
                Reply::OkThenClose => {
                    write.write_all(ok.as_bytes()).await.unwrap();
                    return;
                }
            }
        }
    }

    /// The node's answer to a change `method` with `params` ([`Reply::Changed`]).
    fn changed(method: &str, params: &Value) -> Value {
        let for_everyone = params["for_everyone"].as_bool().unwrap_or(false);
        if method == "delete" && !for_everyone {
            return json!({ "hidden": params["id"] });
        }
        let id = params["id"].as_str().map_or_else(|| "02".repeat(16), str::to_owned);
        let mut view = json!({
            "id": id, "conversation": "c".repeat(32), "peer": "alisa", "author": "me", "direction": "outgoing",
            "text": params["text"].as_str().unwrap_or_default(), "sent_at": 1, "received_at": 1, "lamport": 1,
            "state": "sent", "edited": method == "edit", "deleted": method == "delete",
        });
        if method == "react" {
            view["reactions"] = json!([{ "emoji": params["emoji"], "count": 1, "by": ["me"] }]);
        }
        if let Some(quoted) = params["reply_to"].as_str() {
            view["reply_to"] = json!({ "id": quoted, "author": "alisa", "text": "where?" });
        }
        view
    }

    fn always_ok(_: &str) -> Reply {
        Reply::Ok
    }

    const fn timers(min_ms: u64, max_ms: u64) -> Timers {
        Timers {
            reconnect_min: Duration::from_millis(min_ms),
            reconnect_max: Duration::from_millis(max_ms),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The connection task on `node`'s socket: its request queues and its actions.
    struct Task {
        quick: mpsc::Sender<Effect>,
        slow: mpsc::Sender<Effect>,
        search: mpsc::Sender<Effect>,
        typing: mpsc::Sender<Effect>,
        actions: mpsc::Receiver<Action>,
        _task: tokio::task::JoinHandle<()>,
    }

    impl Task {
        async fn start(node: &FakeNode, timers: Timers) -> Task {
            let first = Connection::open(&node.socket).await.unwrap();
            let (quick, quick_rx) = mpsc::channel(REQUEST_QUEUE);
            let (slow, slow_rx) = mpsc::channel(SLOW_QUEUE);
            let (search, search_rx) = mpsc::channel(SEARCH_QUEUE);
            let (typing, typing_rx) = mpsc::channel(TYPING_QUEUE);
            let (actions_tx, actions) = mpsc::channel(ACTION_QUEUE);
            let queues =
                Queues { quick: quick_rx, slow: slow_rx, search: search_rx, typing: typing_rx, actions: actions_tx };
            let task = tokio::spawn(connection(node.socket.clone(), first, queues, timers));
            Task { quick, slow, search, typing, actions, _task: task }
        }

        async fn next(&mut self) -> Action {
            tokio::time::timeout(DEADLINE, self.actions.recv()).await.expect("an action in time").expect("task alive")
        }

        /// The waits announced by the next `n` [`Action::Disconnected`], in ms
        /// (other actions are skipped).
        async fn waits(&mut self, n: usize) -> Vec<u128> {
            let mut waits = Vec::new();
            while waits.len() < n {
                if let Action::Disconnected { retry_in, .. } = self.next().await {
                    waits.push(retry_in.expect("retried").as_millis());
                }
            }
            waits
        }
    }

    fn mark_read() -> Effect {
        Effect::MarkRead { contact: "alice".into() }
    }

    #[tokio::test]
    async fn the_wait_doubles_to_its_max_while_the_node_is_away_and_requests_fail_at_once() {
        let mut node = FakeNode::start(always_ok);
        let mut task = Task::start(&node, timers(10, 160)).await;
        node.stop().await;
        match task.next().await {
            Action::Disconnected { error, retry_in } => {
                assert_eq!(error, "the node closed the connection");
                assert_eq!(retry_in, Some(Duration::from_millis(10)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(task.waits(5).await, [20, 40, 80, 160, 160]);
        // Meanwhile requests fail at once, never reaching a node.
        task.quick.send(mark_read()).await.unwrap();
        task.slow.send(Effect::Invite).await.unwrap();
        let mut failed = Vec::new();
        while failed.len() < 2 {
            if let Action::Failed { effect, error } = task.next().await {
                assert_eq!(error, NOT_CONNECTED);
                failed.push(effect);
            }
        }
        assert!(failed.contains(&mark_read()) && failed.contains(&Effect::Invite), "{failed:?}");
        // Back: reconnected, and requests are answered again.
        node.resume();
        while task.next().await != Action::Reconnected {}
        task.quick.send(mark_read()).await.unwrap();
        assert_eq!(task.next().await, Action::Done(Response::Marked { contact: "alice".into() }));
    }

    #[tokio::test]
    async fn a_node_that_accepts_and_closes_is_retried_ever_more_slowly() {
        fn flapping(method: &str) -> Reply {
            if method == "subscribe" { Reply::OkThenClose } else { Reply::Ok }
        }
        let node = FakeNode::start(flapping);
        let mut task = Task::start(&node, timers(10, 2_000)).await;
        let mut seen = Vec::new();
        while seen.len() < 9 {
            seen.push(match task.next().await {
                Action::Disconnected { retry_in, .. } => format!("lost, retry in {}", retry_in.unwrap().as_millis()),
                Action::Reconnected => "back".to_owned(),
                other => panic!("{other:?}"),
            });
        }
        let lost = |ms| format!("lost, retry in {ms}");
        let expected = [lost(10), "back".into(), lost(20), "back".into(), lost(40), "back".into(), lost(80)];
        assert_eq!(seen[..7], expected, "each short session counts as a failed attempt");
    }

    #[tokio::test]
    async fn a_session_that_lasted_starts_the_wait_again() {
        let mut node = FakeNode::start(always_ok);
        let timers = timers(10, 100);
        let mut task = Task::start(&node, timers).await;
        node.stop().await;
        assert_eq!(task.waits(3).await, [10, 20, 40]);
        node.resume();
        while task.next().await != Action::Reconnected {}
        // The session must last the longest wait; that time passing is what is tested.
        tokio::time::sleep(timers.reconnect_max).await;
        node.stop().await;
        assert_eq!(task.waits(1).await, [10]);
    }

    #[tokio::test]
    async fn a_request_on_a_dead_connection_ends_the_session() {
        // The node closes a connection after one request (as after a request line
        // over its limit); the events connection stays up.
        fn closes_on_read(method: &str) -> Reply {
            match method {
                "read" => Reply::Close,
                "contacts" => Reply::Refuse,
                _ => Reply::Ok,
            }
        }
        let node = FakeNode::start(closes_on_read);
        let mut task = Task::start(&node, timers(10, 1_000)).await;
        // An error answer is a failure; the connection is fine.
        task.quick.send(Effect::Refresh).await.unwrap();
        match task.next().await {
            Action::Failed { effect: Effect::Refresh, error } => assert!(error.contains("no such contact"), "{error}"),
            other => panic!("{other:?}"),
        }
        task.quick.send(mark_read()).await.unwrap();
        assert!(matches!(task.next().await, Action::Disconnected { .. }));
        match task.next().await {
            Action::Interrupted { effect, error } => {
                assert_eq!(effect, mark_read());
                assert!(error.starts_with("lost the connection to the node"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(task.next().await, Action::Reconnected);
    }

    #[tokio::test]
    async fn what_was_in_flight_when_the_node_went_away_is_of_unknown_outcome() {
        fn never_sends(method: &str) -> Reply {
            if method == "send" { Reply::Never } else { Reply::Ok }
        }
        let mut node = FakeNode::start(never_sends);
        let mut task = Task::start(&node, timers(10, 1_000)).await;
        let send = Effect::Send { contact: "alice".into(), text: "hello".into(), reply_to: None };
        task.quick.send(send.clone()).await.unwrap();
        node.asked("send").await;
        // Queued behind the send: never sent, so it fails like any request made
        // while the node is away.
        task.quick.send(mark_read()).await.unwrap();
        node.stop().await;
        assert!(matches!(task.next().await, Action::Disconnected { .. }));
        assert!(matches!(task.next().await, Action::Interrupted { effect, .. } if effect == send));
        loop {
            match task.next().await {
                Action::Failed { effect, error } if effect == mark_read() => break assert_eq!(error, NOT_CONNECTED),
                Action::Disconnected { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_search_has_its_own_connection_and_waits_behind_nothing() {
        fn sends_hang(method: &str) -> Reply {
            match method {
                "send" | "add" => Reply::Never,
                "search" => Reply::Hit,
                _ => Reply::Ok,
            }
        }
        let node = FakeNode::start(sends_hang);
        let mut task = Task::start(&node, timers(10, 1_000)).await;
        // A send and an `add` that never end hold the quick and slow connections.
        task.quick.send(Effect::Send { contact: "alisa".into(), text: "hi".into(), reply_to: None }).await.unwrap();
        task.slow.send(Effect::Add { target: "kith:x".into(), alias: None }).await.unwrap();
        let search = Effect::Search { text: "cafe".into(), within: Some("alisa".into()), limit: 50 };
        task.search.send(search).await.unwrap();
        match task.next().await {
            Action::Done(Response::Search { query, hits }) => {
                assert_eq!(query, SearchQuery { text: "cafe".into(), within: Some("alisa".into()) });
                assert_eq!(hits.len(), 1);
                assert_eq!((hits[0].snippet.as_str(), hits[0].marks.as_slice()), ("café at noon", &[[0, 5]][..]));
                assert_eq!(hits[0].message.text, "café at noon");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn typing_notices_have_their_own_connection_and_wait_behind_nothing() {
        fn sends_hang(method: &str) -> Reply {
            match method {
                "send" | "add" | "search" => Reply::Never,
                _ => Reply::Ok,
            }
        }
        let mut node = FakeNode::start(sends_hang);
        let mut task = Task::start(&node, timers(10, 1_000)).await;
        // A send, an `add` and a search that never end hold the other connections.
        task.quick.send(Effect::Send { contact: "alisa".into(), text: "hi".into(), reply_to: None }).await.unwrap();
        task.slow.send(Effect::Add { target: "kith:x".into(), alias: None }).await.unwrap();
        task.search.send(Effect::Search { text: "cafe".into(), within: None, limit: 50 }).await.unwrap();
        task.typing.send(Effect::Typing { contact: "alisa".into() }).await.unwrap();
        // The fake node answers `{}`: the notice went.
        assert_eq!(task.next().await, Action::Done(Response::Typing { contact: "alisa".into() }));
        loop {
            let request = node.request().await;
            if request["method"] == "typing" {
                assert_eq!(request["params"], json!({ "contact": "alisa" }));
                break;
            }
        }
    }

    #[tokio::test]
    async fn verify_goes_out_as_the_control_api_has_it() {
        // Refused, so no answer needs making up; the request is what counts.
        let mut node = FakeNode::start(|method| if method == "verify" { Reply::Refuse } else { Reply::Ok });
        let mut task = Task::start(&node, timers(10, 1_000)).await;
        for mark in [Some(true), Some(false), None] {
            let effect = Effect::Verify { contact: "alisa".into(), mark };
            task.quick.send(effect.clone()).await.unwrap();
            let mut asked = node.request().await;
            while asked["method"] == "subscribe" {
                asked = node.request().await;
            }
            let (method, params) = Request::Verify { contact: "alisa".into(), mark }.to_parts();
            assert_eq!((&asked["method"], &asked["params"]), (&json!(method), &params), "{effect:?}");
            assert!(matches!(task.next().await, Action::Failed { effect: failed, .. } if failed == effect));
        }
    }

    #[tokio::test]
    async fn replies_edits_deletes_and_reactions_go_out_as_the_control_api_has_them() {
        let mut node = FakeNode::start(|_| Reply::Changed);
        let mut task = Task::start(&node, timers(10, 1_000)).await;
        let id = || "ab".repeat(16);
        let cases = [
            (
                Effect::Send { contact: "alisa".into(), text: "at 8".into(), reply_to: Some(id()) },
                Request::Send { contact: "alisa".into(), text: "at 8".into(), reply_to: Some(id()) },
            ),
            (
                Effect::Send { contact: "alisa".into(), text: "hi".into(), reply_to: None },
                Request::Send { contact: "alisa".into(), text: "hi".into(), reply_to: None },
            ),
            (
                Effect::Edit { contact: "alisa".into(), id: id(), text: "at 9".into() },
                Request::Edit { id: id(), text: "at 9".into() },
            ),
            (Effect::Delete { id: id(), for_everyone: false }, Request::Delete { id: id(), for_everyone: false }),
            (Effect::Delete { id: id(), for_everyone: true }, Request::Delete { id: id(), for_everyone: true }),
            (Effect::React { id: id(), emoji: "👍".into() }, Request::React { id: id(), emoji: "👍".into() }),
        ];
        for (effect, expected) in cases {
            task.quick.send(effect.clone()).await.unwrap();
            // (Skipping the connections' own: `subscribe`.)
            let mut asked = node.request().await;
            while asked["method"] == "subscribe" {
                asked = node.request().await;
            }
            let (method, params) = expected.to_parts();
            assert_eq!((&asked["method"], &asked["params"]), (&json!(method), &params), "{effect:?}");
            let answer = match task.next().await {
                Action::Done(response) => response,
                other => panic!("{effect:?}: {other:?}"),
            };
            match (&effect, answer) {
                (Effect::Send { reply_to: Some(quoted), .. }, Response::Sent(view)) => {
                    assert_eq!(view.reply_to.map(|q| q.id), Some(quoted.clone()));
                }
                (Effect::Send { reply_to: None, .. }, Response::Sent(view)) => assert_eq!(view.reply_to, None),
                (Effect::Edit { .. }, Response::Changed(view)) => assert!(view.edited && view.text == "at 9"),
                (Effect::Delete { for_everyone: false, .. }, Response::Hidden { id: hidden }) => {
                    assert_eq!(hidden, id())
                }
                (Effect::Delete { for_everyone: true, .. }, Response::Changed(view)) => assert!(view.deleted),
                (Effect::React { .. }, Response::Changed(view)) => assert_eq!(view.reactions[0].emoji, "👍"),
                (effect, answer) => panic!("{effect:?} answered {answer:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_newer_search_wait_replaces_the_one_running() {
        let (mut runtime, mut rx) = offline_runtime();
        runtime.execute(Effect::SearchAfter { after: Duration::from_millis(20), edit: 1 });
        runtime.execute(Effect::SearchAfter { after: Duration::from_millis(20), edit: 2 });
        // Had the first wait kept running it would have ended first.
        let action = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
        assert_eq!(action, Action::SearchDue { edit: 2 });
    }

    fn hung_lister(_: &str, _: Option<&Path>) -> Vec<String> {
        // A file system that does not answer (for longer than the test's timeout).
        std::thread::sleep(Duration::from_millis(300));
        vec!["./late ".to_owned()]
    }

    #[test]
    fn a_pasted_path_counts_only_when_it_names_a_file() {
        let dir = std::env::temp_dir().join(format!("kith-paste-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cat 1.png");
        std::fs::write(&file, b"x").unwrap();
        let shown = file.display().to_string();
        assert_eq!(pasted_file(&shown), Some(shown.clone()));
        assert_eq!(pasted_file(&format!("{shown}\n")), Some(shown.clone()), "a trailing newline is not part of it");
        assert_eq!(pasted_file(&format!("file://{shown}")), Some(shown.clone()));
        assert_eq!(pasted_file(&dir.display().to_string()), None, "a directory is not a file");
        assert_eq!(pasted_file(&format!("{shown}\nmore")), None, "several lines are text");
        assert_eq!(pasted_file("cat 1.png"), None, "a relative path is text");
        assert_eq!(pasted_file(&format!("{}/missing.png", dir.display())), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A runtime with no node (its request queues closed) and no graphics protocol,
    /// and the receiving end of what it answers.
    fn offline_runtime() -> (Runtime, mpsc::Receiver<Action>) {
        let (actions, rx) = mpsc::channel(ACTION_QUEUE);
        let runtime = Runtime {
            app: App::new(Config::default()),
            quick: mpsc::channel(1).0,
            slow: mpsc::channel(1).0,
            search: mpsc::channel(1).0,
            typing: mpsc::channel(1).0,
            search_wait: JoinSet::new(),
            notify_command: None,
            notifications: JoinSet::new(),
            listing: JoinSet::new(),
            listing_permits: Arc::new(Semaphore::new(MAX_LISTINGS)),
            list_timeout: LIST_TIMEOUT,
            lister: crate::complete::list_paths,
            actions,
            notify_permits: Arc::new(Semaphore::new(MAX_NOTIFICATIONS)),
            decoding: JoinSet::new(),
            encoding: None,
            decode_permits: Arc::new(Semaphore::new(MAX_DECODES)),
            picker: None,
            graphics: Vec::new(),
            queue: VecDeque::new(),
        };
        (runtime, rx)
    }

    #[tokio::test]
    async fn a_corrupt_picture_or_no_graphics_fails_the_effect_without_blocking_the_loop() {
        let (mut runtime, mut rx) = offline_runtime();
        let dir = std::env::temp_dir().join(format!("kith-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("photo.png");
        std::fs::write(&file, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let path = file.display().to_string();
        // Decoded off the loop: `execute` returns at once, the failure comes back later.
        let decode = Effect::DecodePicture { id: "f".into(), path: path.clone() };
        runtime.execute(decode.clone());
        let answer = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert!(matches!(answer, Action::Failed { effect, .. } if effect == decode));
        while runtime.decoding.join_next().await.is_some() {}
        // No graphics protocol: an encoding fails at once, nothing is spawned.
        let encode = Effect::EncodePicture { id: "f".into(), path, room: (10, 5) };
        runtime.execute(encode.clone());
        assert!(matches!(runtime.queue.pop_front(), Some(Action::Failed { effect, .. }) if effect == encode));
        assert!(runtime.decoding.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_path_listing_that_hangs_is_given_up_and_bounded() {
        let (mut runtime, mut rx) = offline_runtime();
        runtime.list_timeout = Duration::from_millis(20);
        runtime.lister = hung_lister;
        runtime.list_paths("./x".into());
        let action = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
        assert!(
            matches!(&action, Action::Failed { effect: Effect::ListPaths { word }, .. } if word == "./x"),
            "{action:?}"
        );
        // The hung thread keeps its permit: after MAX_LISTINGS of them, Tab is
        // refused at once instead of piling up threads.
        for _ in 1..MAX_LISTINGS {
            runtime.list_paths("./y".into());
        }
        assert!(runtime.queue.is_empty());
        runtime.list_paths("./z".into());
        assert!(
            matches!(runtime.queue.pop_front(), Some(Action::Failed { effect: Effect::ListPaths { word }, .. }) if word == "./z")
        );
    }
}
