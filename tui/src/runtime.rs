//! The event loop: terminal input, node events and request results become
//! [`Action`]s; [`update`] turns them into state and [`Effect`]s; effects go to
//! request workers, the bell or the notification command; the screen is redrawn
//! when something changed.
//!
//! Three control-socket connections keep the UI responsive: one subscribed to
//! events, one for quick requests (reads, `send`, `read`), and one for requests that
//! may wait on the network (`add` looks the peer up in the DHT; `invite` asks the
//! node; group changes go out to the other members). One task owns all three
//! ([`connection`]); the loop itself never awaits the node. When the node goes away
//! (a daemon restart) that task says so, fails what was in flight, and reconnects
//! with backoff ([`RECONNECT_MIN`] doubling to [`RECONNECT_MAX`]), subscribing again;
//! the state machine then reloads what it shows. Every queue is bounded and every
//! task is aborted when the loop ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::EventStream;
use futures::StreamExt;
use kith_p2p::control::{Client, ClientError, Request};
use kith_p2p::views::{ContactView, GroupView, InboxEntry, MessageView, RequestView};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::action::{Action, Effect, Response};
use crate::app::{App, Config, update};
use crate::terminal::{self, Tui};
use crate::{TuiError, TuiOptions, text, ui};

/// Actions waiting for the loop (node events, request results).
const ACTION_QUEUE: usize = 256;
/// Quick requests waiting for their connection.
const REQUEST_QUEUE: usize = 256;
/// Slow requests waiting for their connection.
const SLOW_QUEUE: usize = 16;
/// At most this many actions are applied between two redraws, so a flood of events
/// cannot starve the screen.
const ACTIONS_PER_FRAME: usize = 64;
/// How often [`Action::Tick`] fires (status messages expire in ticks).
const TICK: Duration = Duration::from_secs(1);
/// Notification commands running at once; more are skipped.
const MAX_NOTIFICATIONS: usize = 4;
/// A notification command still running after this is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for `date +%z` when looking up the time zone.
const TZ_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait before reconnecting to a node that went away (a daemon restart is
/// usually back within a second); doubled after every failed attempt.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// The longest wait between two reconnection attempts, so a node that comes back
/// after minutes is found within seconds.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How long an attempt to reconnect (connect and subscribe) may take: a node that
/// accepts but does not answer is tried again like one that is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Why a request fails while there is no connection.
const NOT_CONNECTED: &str = "not connected to the node (reconnecting)";

/// Connect to the node at `socket` and run the interface until the user quits.
pub(crate) async fn run(socket: &Path, options: TuiOptions) -> Result<(), TuiError> {
    // Connect first: without a node, fail before touching the terminal.
    let connected = Connection::open(socket).await?;

    let no_color = options.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let config = Config {
        no_color,
        bell: options.bell,
        notify: options.notify_command.is_some(),
        utc_offset_secs: local_utc_offset().await,
        runs_node: options.runs_node,
    };

    let (action_tx, action_rx) = mpsc::channel(ACTION_QUEUE);
    let (quick_tx, quick_rx) = mpsc::channel(REQUEST_QUEUE);
    let (slow_tx, slow_rx) = mpsc::channel(SLOW_QUEUE);
    // Dropped (aborting every task) when this function returns.
    let mut tasks = JoinSet::new();
    tasks.spawn(connection(socket.to_path_buf(), connected, quick_rx, slow_rx, action_tx.clone()));

    let (mut tui, guard) = terminal::enter().map_err(TuiError::Terminal)?;
    let mut runtime = Runtime {
        app: App::new(config),
        quick: quick_tx,
        slow: slow_tx,
        notify_command: options.notify_command,
        notifications: JoinSet::new(),
        listing: JoinSet::new(),
        actions: action_tx,
        notify_permits: Arc::new(Semaphore::new(MAX_NOTIFICATIONS)),
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
    notify_command: Option<String>,
    notifications: JoinSet<()>,
    /// The path listing in flight for Tab completion (at most one).
    listing: JoinSet<()>,
    /// For answers produced off the loop (path listings).
    actions: mpsc::Sender<Action>,
    notify_permits: Arc<Semaphore>,
    /// Actions produced locally (e.g. a request that could not be queued).
    queue: VecDeque<Action>,
}

impl Runtime {
    async fn run(&mut self, tui: &mut Tui, mut actions: mpsc::Receiver<Action>) -> Result<(), TuiError> {
        let mut input = EventStream::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                tui.draw(|frame| ui::render(frame, &self.app)).map_err(TuiError::Terminal)?;
                dirty = false;
            }
            let action = match self.queue.pop_front() {
                Some(action) => action,
                None => tokio::select! {
                    event = input.next() => match event {
                        Some(Ok(event)) => match Action::from_terminal(event) {
                            Some(action) => action,
                            None => continue,
                        },
                        Some(Err(e)) => return Err(TuiError::Terminal(e)),
                        None => return Ok(()),
                    },
                    Some(action) = actions.recv() => action,
                    _ = tick.tick() => {
                        self.apply(Action::Clock { unix_ms: unix_ms() });
                        Action::Tick
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
            if self.app.should_quit() {
                return Ok(());
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
            Effect::Notify { from, text } => self.notify(&from, &text),
            Effect::Add { .. } | Effect::Invite | Effect::Group(_) => self.request(true, effect),
            other => self.request(false, other),
        }
    }

    fn request(&mut self, slow: bool, effect: Effect) {
        let queue = if slow { &self.slow } else { &self.quick };
        if let Err(e) = queue.try_send(effect) {
            let (effect, error) = match e {
                mpsc::error::TrySendError::Full(effect) => (effect, "too many requests in flight; try again"),
                mpsc::error::TrySendError::Closed(effect) => (effect, "the connection to the node is closed"),
            };
            self.queue.push_back(Action::Failed { effect, error: error.to_owned() });
        }
    }

    /// List the files `word` can complete to on the blocking pool, one listing at a
    /// time (a Tab pressed meanwhile is dropped), and answer with the result.
    fn list_paths(&mut self, word: String) {
        if !self.listing.is_empty() {
            return;
        }
        let actions = self.actions.clone();
        self.listing.spawn(async move {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let typed = word.clone();
            let listed = tokio::task::spawn_blocking(move || crate::complete::list_paths(&typed, home.as_deref()));
            let candidates = listed.await.unwrap_or_default();
            let _ = actions.send(Action::Done(Response::Paths { word, candidates })).await;
        });
    }

    /// Run the notification command with `KITH_FROM` and `KITH_TEXT` set.
    fn notify(&mut self, from: &str, text: &str) {
        let Some(command) = &self.notify_command else { return };
        let Ok(permit) = Arc::clone(&self.notify_permits).try_acquire_owned() else {
            tracing::warn!("notification skipped: {MAX_NOTIFICATIONS} still running");
            return;
        };
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("KITH_FROM", from)
            .env("KITH_TEXT", text)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(mut child) => {
                self.notifications.spawn(async move {
                    if tokio::time::timeout(NOTIFY_TIMEOUT, child.wait()).await.is_err() {
                        tracing::warn!("notification command timed out; killing it");
                        let _ = child.kill().await;
                    }
                    drop(permit);
                });
            }
            Err(e) => tracing::warn!(error = %e, "notification command failed to start"),
        }
    }
}

/// Forward node events (from a subscribed connection) to the loop as actions until
/// either side goes away; a lost connection becomes [`Action::Disconnected`] (with
/// no retry: the interface's own loop reconnects through its connection task).
pub async fn forward_events(mut client: Client, actions: mpsc::Sender<Action>) {
    loop {
        let action = match client.next_event().await {
            Ok(event) => Action::Node(event),
            Err(e) => Action::Disconnected { error: e.to_string(), retry_in: None },
        };
        let last = matches!(action, Action::Disconnected { .. });
        if actions.send(action).await.is_err() || last {
            return;
        }
    }
}

/// The three connections to the node (see the module header).
struct Connection {
    quick: Client,
    slow: Client,
    events: Client,
}

impl Connection {
    /// Connect all three and subscribe the events connection.
    async fn open(socket: &Path) -> Result<Connection, ClientError> {
        let quick = Client::connect(socket).await?;
        let slow = Client::connect(socket).await?;
        let mut events = Client::connect(socket).await?;
        events.subscribe().await?;
        Ok(Connection { quick, slow, events })
    }
}

/// Own the node connections for the life of the interface: serve requests and
/// forward events over `first`; when the node goes away, report
/// [`Action::Disconnected`] with the wait before the next attempt, fail requests
/// meanwhile, and reconnect with backoff, reporting [`Action::Reconnected`] when it
/// is back. Ends when the loop is gone (its queues closed).
async fn connection(
    socket: PathBuf,
    first: Connection,
    mut quick: mpsc::Receiver<Effect>,
    mut slow: mpsc::Receiver<Effect>,
    actions: mpsc::Sender<Action>,
) {
    let mut connected = Some(first);
    let mut delay = RECONNECT_MIN;
    loop {
        if let Some(connection) = connected.take() {
            let Some(error) = session(connection, &mut quick, &mut slow, &actions, delay).await else { return };
            tracing::warn!(%error, "lost the node's control connection; reconnecting");
        }
        // Wait, answering requests at once rather than letting them queue up.
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            let effect = tokio::select! {
                () = &mut wait => break,
                Some(effect) = quick.recv() => effect,
                Some(effect) = slow.recv() => effect,
                else => return,
            };
            if actions.send(Action::Failed { effect, error: NOT_CONNECTED.to_owned() }).await.is_err() {
                return;
            }
        }
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, Connection::open(&socket)).await;
        let opened = opened.unwrap_or_else(|_| Err(ClientError::Io(std::io::ErrorKind::TimedOut.into())));
        let action = match opened {
            Ok(connection) => {
                delay = RECONNECT_MIN;
                connected = Some(connection);
                Action::Reconnected
            }
            Err(e) => {
                delay = (delay * 2).min(RECONNECT_MAX);
                Action::Disconnected { error: e.to_string(), retry_in: Some(delay) }
            }
        };
        if actions.send(action).await.is_err() {
            return;
        }
    }
}

/// Serve requests and forward events over one [`Connection`] until it breaks:
/// reports [`Action::Disconnected`] (next attempt after `retry_in`), fails the
/// requests that were in flight and returns the error. `None` when the loop is gone.
async fn session(
    connection: Connection,
    quick: &mut mpsc::Receiver<Effect>,
    slow: &mut mpsc::Receiver<Effect>,
    actions: &mpsc::Sender<Action>,
    retry_in: Duration,
) -> Option<String> {
    let Connection { quick: quick_client, slow: slow_client, events } = connection;
    let (mut quick_flight, mut slow_flight) = (None, None);
    let lost = tokio::select! {
        lost = forward_until_lost(events, actions) => lost,
        lost = serve(quick_client, quick, actions, &mut quick_flight) => lost,
        lost = serve(slow_client, slow, actions, &mut slow_flight) => lost,
    };
    let error = lost?;
    actions.send(Action::Disconnected { error: error.clone(), retry_in: Some(retry_in) }).await.ok()?;
    for effect in [quick_flight, slow_flight].into_iter().flatten() {
        let error = format!("lost the connection to the node: {error}");
        actions.send(Action::Failed { effect, error }).await.ok()?;
    }
    Some(error)
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

/// Perform requests one at a time on `client`, sending each result back; the request
/// being performed is kept in `in_flight`, so whoever cancels this can fail it.
/// Returns `None` when the loop is gone; it never returns otherwise (a broken
/// connection shows on the events connection, which ends the session).
async fn serve(
    mut client: Client,
    requests: &mut mpsc::Receiver<Effect>,
    actions: &mpsc::Sender<Action>,
    in_flight: &mut Option<Effect>,
) -> Option<String> {
    while let Some(effect) = requests.recv().await {
        let effect = in_flight.insert(effect);
        let action = match perform(&mut client, effect).await {
            Ok(response) => Action::Done(response),
            Err(error) => Action::Failed { effect: effect.clone(), error },
        };
        *in_flight = None;
        actions.send(action).await.ok()?;
    }
    None
}

async fn call<T: DeserializeOwned>(client: &mut Client, request: Request) -> Result<T, String> {
    let value = client.request(&request).await.map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| format!("unexpected answer to `{}`: {e}", request.method()))
}

/// Carry out one node request of `update` on `client` and return its answer as the
/// [`Response`] `update` expects; effects that are not node requests are errors.
pub async fn perform(client: &mut Client, effect: &Effect) -> Result<Response, String> {
    Ok(match effect {
        Effect::Refresh => {
            let contacts: Vec<ContactView> = call(client, Request::Contacts { state: None }).await?;
            let requests: Vec<RequestView> = call(client, Request::Requests {}).await?;
            let inbox: Vec<InboxEntry> = call(client, Request::Inbox {}).await?;
            Response::Snapshot { contacts, requests, inbox }
        }
        Effect::LoadStatus => Response::Status(call(client, Request::Status {}).await?),
        Effect::ShowStatus => Response::StatusReport(call(client, Request::Status {}).await?),
        Effect::LoadGroups => Response::Groups(call(client, Request::Groups {}).await?),
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
        Effect::Send { contact, text } => {
            Response::Sent(call(client, Request::Send { contact: contact.clone(), text: text.clone() }).await?)
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
        Effect::Bell | Effect::Notify { .. } | Effect::Copy { .. } | Effect::ListPaths { .. } | Effect::Quit => {
            return Err("not a node request".to_owned());
        }
    })
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
