//! The event loop: terminal input, node events and request results become
//! [`Action`]s; [`update`] turns them into state and [`Effect`]s; effects go to
//! request workers, the bell or the notification command; the screen is redrawn
//! when something changed.
//!
//! Three control-socket connections keep the UI responsive: one subscribed to
//! events, one for quick requests (reads, `send`, `read`), and one for requests that
//! may wait on the network (`add` looks the peer up in the DHT; `invite` asks the
//! node; group changes go out to the other members). Each connection is owned by one task; the loop itself never awaits the
//! node. Every queue is bounded and every task is aborted when the loop ends.

use std::collections::VecDeque;
use std::path::Path;
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

/// Connect to the node at `socket` and run the interface until the user quits.
pub(crate) async fn run(socket: &Path, options: TuiOptions) -> Result<(), TuiError> {
    // Connect first: without a node, fail before touching the terminal.
    let quick = Client::connect(socket).await?;
    let slow = Client::connect(socket).await?;
    let mut events = Client::connect(socket).await?;
    events.subscribe().await?;

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
    tasks.spawn(forward_events(events, action_tx.clone()));
    tasks.spawn(worker(quick, quick_rx, action_tx.clone()));
    tasks.spawn(worker(slow, slow_rx, action_tx));

    let (mut tui, guard) = terminal::enter().map_err(TuiError::Terminal)?;
    let mut runtime = Runtime {
        app: App::new(config),
        quick: quick_tx,
        slow: slow_tx,
        notify_command: options.notify_command,
        notifications: JoinSet::new(),
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
    notify_permits: Arc<Semaphore>,
    /// Actions produced locally (e.g. a request that could not be queued).
    queue: VecDeque<Action>,
}

impl Runtime {
    async fn run(&mut self, tui: &mut Tui, mut actions: mpsc::Receiver<Action>) -> Result<(), TuiError> {
        let mut input = EventStream::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                    _ = tick.tick() => Action::Tick,
                },
            };
            dirty |= self.apply(action);
            // Apply whatever else is ready before drawing again.
            for _ in 1..ACTIONS_PER_FRAME {
                let Ok(action) = actions.try_recv() else { break };
                dirty |= self.apply(action);
            }
            while self.notifications.try_join_next().is_some() {}
            if self.app.should_quit() {
                return Ok(());
            }
        }
    }

    /// Apply one action and run its effects; returns whether the screen changed.
    fn apply(&mut self, action: Action) -> bool {
        let tick = action == Action::Tick;
        let had_status = self.app.status().is_some();
        for effect in update(&mut self.app, action) {
            self.execute(effect);
        }
        !tick || self.app.status().is_some() != had_status
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Quit => {}
            Effect::Bell => terminal::bell(),
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
/// either side goes away; a lost connection becomes [`Action::Disconnected`].
pub async fn forward_events(mut client: Client, actions: mpsc::Sender<Action>) {
    loop {
        let action = match client.next_event().await {
            Ok(event) => Action::Node(event),
            Err(e) => Action::Disconnected { error: e.to_string() },
        };
        let last = matches!(action, Action::Disconnected { .. });
        if actions.send(action).await.is_err() || last {
            return;
        }
    }
}

/// Perform requests one at a time on `client`, sending each result back.
async fn worker(mut client: Client, mut requests: mpsc::Receiver<Effect>, actions: mpsc::Sender<Action>) {
    while let Some(effect) = requests.recv().await {
        let action = match perform(&mut client, &effect).await {
            Ok(response) => Action::Done(response),
            Err(error) => Action::Failed { effect, error },
        };
        if actions.send(action).await.is_err() {
            return;
        }
    }
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
        Effect::Bell | Effect::Notify { .. } | Effect::Quit => {
            return Err("not a node request".to_owned());
        }
    })
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
