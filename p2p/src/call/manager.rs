//! The calls task: every call's state, driven by the user's requests, the peer's
//! signals, the media sessions' events and the ring timers. It owns the media
//! sessions; it never blocks the node's actor (it asks the actor only to dial a peer
//! and to write a finished call into the history).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_call::{Discard, MediaConfig, Session, SessionEvent, Silence, Sink, Source};
use kith_storage::{CallRecord, ContactState, Store};
use libp2p::PeerId;
use libp2p_stream::Control;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::signal::{self, CallId, HangupReason, Reply, Signal};
use super::voice_room::{self, RoomHandle, RoomView};
use super::{CallError, CallState, CallView, EndReason};
use crate::node::{Command, Event};
use crate::ops::now_ms;

/// Bound on queued inputs.
const INPUT_QUEUE: usize = 64;

/// How long an ended call's id is remembered (longer than any signal takes).
const ENDED_MEMORY: Duration = Duration::from_secs(60);

/// Longest wait for TURN grants when a call starts and none are held yet.
const GRANT_WAIT: Duration = Duration::from_secs(3);

/// Most ended call ids remembered at once.
const MAX_ENDED_REMEMBERED: usize = 1024;

/// The audio a call plays and records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioChoice {
    /// A 48 kHz 16-bit WAV file to send (silence when absent).
    pub input: Option<PathBuf>,
    /// A WAV file to record what the peer sends into (dropped when absent).
    pub output: Option<PathBuf>,
}

/// The call timers (fields of the node's `Timers`).
#[derive(Debug, Clone)]
pub struct CallTimers {
    /// Longest wait to reach the peer and hear its reply to a signal.
    pub signal_deadline: Duration,
    /// How long a call rings before it ends as not answered.
    pub ring_timeout: Duration,
}

impl Default for CallTimers {
    fn default() -> CallTimers {
        CallTimers { signal_deadline: Duration::from_secs(10), ring_timeout: Duration::from_secs(45) }
    }
}

/// What the calls task needs from the node.
pub(crate) struct Context {
    pub(crate) store: Store,
    pub(crate) control: Control,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) media: MediaConfig,
    /// TURN grants from the pinned media relays, for calls no direct path carries.
    pub(crate) grants: super::turn::Keeper,
    pub(crate) timers: CallTimers,
    pub(crate) me: PeerId,
}

type Answer = oneshot::Sender<Result<CallView, CallError>>;

/// An input to the calls task.
pub(crate) enum Input {
    Place { peer: PeerId, audio: AudioChoice, reply: Answer },
    Answer { call: Option<String>, audio: AudioChoice, reply: Answer },
    Hangup { call: Option<String>, reply: Answer },
    Mute { call: Option<String>, muted: bool, reply: Answer },
    List { reply: oneshot::Sender<Vec<CallView>> },
    Incoming { peer: PeerId, signal: Signal, reply: oneshot::Sender<Reply> },
    Delivered { call: CallId, peer: PeerId, answer: bool, result: Result<Reply, String> },
    Media { call: CallId, event: SessionEvent },
    RingTimeout { call: CallId },
    RoomJoin { group: String, audio: AudioChoice, reply: oneshot::Sender<Result<RoomView, CallError>> },
    /// A join run in its own task is through (or failed).
    RoomJoined {
        group: kith_storage::GroupId,
        result: Result<RoomHandle, CallError>,
        reply: oneshot::Sender<Result<RoomView, CallError>>,
    },
    RoomLeave { group: String, reply: oneshot::Sender<Result<RoomView, CallError>> },
    RoomMute { group: String, muted: bool, reply: oneshot::Sender<Result<RoomView, CallError>> },
    RoomList { reply: oneshot::Sender<Vec<RoomView>> },
    /// The node stops: end every call (telling the peers) and leave every room.
    Shutdown { reply: oneshot::Sender<()> },
}

/// A handle on the calls task.
#[derive(Clone)]
pub(crate) struct Calls {
    inputs: mpsc::Sender<Input>,
}

impl Calls {
    /// Sends an input and waits for its answer.
    pub(crate) async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.inputs.send(make(tx)).await.map_err(|_| CallError::Stopped)?;
        rx.await.map_err(|_| CallError::Stopped)
    }
}

struct Call {
    id: CallId,
    peer: PeerId,
    outgoing: bool,
    state: CallState,
    started_at_ms: u64,
    answered_at_ms: Option<u64>,
    session: Option<Session>,
    /// An incoming call's offer, until it is answered.
    offer: Option<String>,
    /// Whether the peer is speaking now.
    peer_speaking: bool,
    /// Who waits for the offer or answer to be delivered.
    waiter: Option<Answer>,
}

impl Call {
    fn view(&self) -> CallView {
        let stats = self.session.as_ref().map(Session::stats).unwrap_or_default();
        CallView {
            id: hex::encode(self.id),
            peer: self.peer.to_string(),
            outgoing: self.outgoing,
            state: self.state,
            started_at_ms: self.started_at_ms,
            answered_at_ms: self.answered_at_ms,
            muted: self.session.as_ref().is_some_and(Session::muted),
            frames_sent: stats.frames_sent,
            frames_played: stats.frames_played,
            frames_concealed: stats.frames_concealed,
            input_level: stats.input_level,
            output_level: stats.output_level,
            peer_speaking: self.peer_speaking,
        }
    }
}

/// Starts the calls task and the server of incoming `/kith/call/1` streams.
pub(crate) fn start(context: Context, incoming: libp2p_stream::IncomingStreams) -> Calls {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    tokio::spawn(serve(incoming, tx.clone(), context.store.clone()));
    let task = Task { context, calls: HashMap::new(), rooms: HashMap::new(), busy_noted: HashMap::new(), ended: HashMap::new(), joining: Default::default(), inputs: tx.clone() };
    tokio::spawn(task.run(rx));
    Calls { inputs: tx }
}

/// Incoming signal streams handled at once; more are dropped unread.
const MAX_INCOMING: usize = 32;

/// Reads each incoming stream's signal, hands it to the task and writes its reply.
/// A stranger's or a blocked contact's stream is answered `refused` before its signal
/// is read; at most [`MAX_INCOMING`] streams are handled at once, and a signal that
/// finds the task's queue full is dropped (the sender's deadline tells it).
async fn serve(mut incoming: libp2p_stream::IncomingStreams, inputs: mpsc::Sender<Input>, store: Store) {
    use futures::StreamExt;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INCOMING));
    while let Some((peer, mut stream)) = incoming.next().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many call signals at once: one dropped");
            continue;
        };
        let accepted = matches!(store.contacts().get(&peer), Ok(Some(c)) if c.state == ContactState::Accepted);
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if !accepted {
                let _ = signal::reply(&mut stream, Reply::Refused).await;
                return;
            }
            let signal = match signal::read(&mut stream, Duration::from_secs(5)).await {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::debug!(%peer, "call signal: {e}");
                    return;
                }
            };
            let (tx, rx) = oneshot::channel();
            if inputs.try_send(Input::Incoming { peer, signal, reply: tx }).is_err() {
                return;
            }
            if let Ok(answer) = rx.await
                && let Err(e) = signal::reply(&mut stream, answer).await
            {
                tracing::debug!(%peer, "call signal reply: {e}");
            }
        });
    }
}

struct Task {
    context: Context,
    calls: HashMap<CallId, Call>,
    /// Voice rooms we are in, by group id.
    rooms: HashMap<kith_storage::GroupId, RoomHandle>,
    /// When each peer's last busy call went into the history (one a minute per peer).
    busy_noted: HashMap<PeerId, Instant>,
    /// Calls that ended lately (see [`Task::note_ended`]).
    ended: HashMap<CallId, Instant>,
    /// Groups whose voice room is being joined.
    joining: std::collections::HashSet<kith_storage::GroupId>,
    inputs: mpsc::Sender<Input>,
}

impl Task {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        while let Some(input) = inputs.recv().await {
            if let Input::Shutdown { reply } = input {
                for id in self.calls.keys().copied().collect::<Vec<_>>() {
                    self.end(id, EndReason::HungUp, Some(HangupReason::HungUp));
                }
                for (_, room) in self.rooms.drain() {
                    room.leave().await;
                }
                let _ = reply.send(());
                return;
            }
            self.input(input).await;
        }
    }

    async fn input(&mut self, input: Input) {
        match input {
            Input::Place { peer, audio, reply } => {
                if let Err(e) = self.place(peer, audio, reply).await {
                    tracing::debug!("placing a call: {e}");
                }
            }
            Input::Answer { call, audio, reply } => {
                let result = self.answer(call.as_deref(), audio).await;
                if let Err(e) = result {
                    let _ = reply.send(Err(e));
                } else if let Ok(id) = result
                    && let Some(call) = self.calls.get_mut(&id)
                {
                    call.waiter = Some(reply);
                }
            }
            Input::Hangup { call, reply } => {
                let result = self.find(call.as_deref(), |_| true).map(|id| {
                    let call = &self.calls[&id];
                    let mut view = call.view();
                    let (ours, theirs) = match (call.outgoing, call.state) {
                        (false, CallState::Ringing) => (EndReason::Declined, HangupReason::Declined),
                        _ => (EndReason::HungUp, HangupReason::HungUp),
                    };
                    view.state = CallState::Ended;
                    self.end(id, ours, Some(theirs));
                    view
                });
                let _ = reply.send(result);
            }
            Input::Mute { call, muted, reply } => {
                let result = self.find(call.as_deref(), |c| c.session.is_some()).map(|id| {
                    let call = &self.calls[&id];
                    if let Some(session) = &call.session {
                        session.set_muted(muted);
                    }
                    call.view()
                });
                let _ = reply.send(result);
            }
            Input::List { reply } => {
                let mut views: Vec<CallView> = self.calls.values().map(Call::view).collect();
                views.sort_by_key(|v| v.started_at_ms);
                let _ = reply.send(views);
            }
            Input::Incoming { peer, signal, reply } => {
                let answer = self.incoming(peer, signal).await;
                let _ = reply.send(answer);
            }
            Input::Delivered { call, peer, answer, result } => self.delivered(call, peer, answer, result),
            Input::Media { call, event } => self.media(call, event),
            Input::RoomJoin { group, audio, reply } => {
                if let Err(e) = self.join_room(&group, audio, reply).await {
                    tracing::debug!("joining a voice room: {e}");
                }
            }
            Input::RoomJoined { group, result, reply } => {
                self.joining.remove(&group);
                let answer = result.map(|room| {
                    let view = room.view();
                    if let Some(earlier) = self.rooms.insert(group, room) {
                        // Not expected (joins of one group are one at a time); the
                        // newer room wins and the earlier one is left.
                        tokio::spawn(earlier.leave());
                    }
                    view
                });
                let _ = reply.send(answer);
            }
            Input::RoomLeave { group, reply } => {
                let result = self.leave_room(&group).await;
                let _ = reply.send(result);
            }
            Input::RoomMute { group, muted, reply } => {
                let result = self.room_of(&group).map(|room| {
                    room.set_muted(muted);
                    room.view()
                });
                let _ = reply.send(result);
            }
            Input::RoomList { reply } => {
                self.rooms.retain(|_, room| !room.ended());
                let _ = reply.send(self.rooms.values().map(RoomHandle::view).collect());
            }
            // Handled by `run`.
            Input::Shutdown { reply } => {
                let _ = reply.send(());
            }
            Input::RingTimeout { call } => {
                if let Some(c) = self.calls.get(&call)
                    && matches!(c.state, CallState::Calling | CallState::Ringing)
                {
                    self.end(call, EndReason::NoAnswer, Some(HangupReason::NoAnswer));
                }
            }
        }
    }

    /// Joins a group's voice room: the exchange with the group's relays runs in a task
    /// of its own (up to 10 s per relay that does not answer), which reports back with
    /// [`Input::RoomJoined`]; `reply` hears once the forwarder took us in.
    async fn join_room(
        &mut self,
        group: &str,
        audio: AudioChoice,
        reply: oneshot::Sender<Result<RoomView, CallError>>,
    ) -> Result<(), CallError> {
        let (tx, rx) = oneshot::channel();
        self.context.commands.send(Command::RoomTicket(group.to_owned(), tx)).await.map_err(|_| CallError::Stopped)?;
        let ticket = match rx.await.map_err(|_| CallError::Stopped)? {
            Ok(ticket) => ticket,
            Err(e) => {
                let _ = reply.send(Err(CallError::Room(e.to_string())));
                return Ok(());
            }
        };
        self.rooms.retain(|_, room| !room.ended());
        if let Some(room) = self.rooms.get(&ticket.group) {
            let _ = reply.send(Ok(room.view()));
            return Ok(());
        }
        if self.joining.contains(&ticket.group) {
            let _ = reply.send(Err(CallError::Room("already joining this group's voice room".into())));
            return Ok(());
        }
        let (source, sink) = match open_audio(&audio) {
            Ok(io) => io,
            Err(e) => {
                let _ = reply.send(Err(e));
                return Ok(());
            }
        };
        let ctx = voice_room::RoomContext {
            control: self.context.control.clone(),
            commands: self.context.commands.clone(),
            events: self.context.events.clone(),
            media: self.context.media.clone(),
            me: self.context.me,
        };
        let group = ticket.group;
        self.joining.insert(group);
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = voice_room::join(ctx, ticket, source, sink).await;
            if let Err(tokio::sync::mpsc::error::SendError(Input::RoomJoined { result: Ok(room), .. })) =
                inputs.send(Input::RoomJoined { group, result, reply }).await
            {
                // The calls task is gone (the node stopped): leave at once.
                room.leave().await;
            }
        });
        Ok(())
    }

    /// The media settings of a new call: the node's, with the TURN grants of its
    /// media relays (waiting up to [`GRANT_WAIT`] when none are held yet).
    async fn media_config(&self) -> MediaConfig {
        MediaConfig { relays: self.context.grants.current(GRANT_WAIT).await, ..self.context.media.clone() }
    }

    /// The group's id, as the user names it, if we are in its room.
    fn room_id(&self, group: &str) -> Result<kith_storage::GroupId, CallError> {
        let id = crate::ops::resolve_group(&self.context.store, group).map_err(|e| CallError::NotInRoom(e.to_string()))?.id;
        match self.rooms.get(&id) {
            Some(room) if !room.ended() => Ok(id),
            _ => Err(CallError::NotInRoom(group.to_owned())),
        }
    }

    fn room_of(&self, group: &str) -> Result<&RoomHandle, CallError> {
        let id = self.room_id(group)?;
        self.rooms.get(&id).ok_or_else(|| CallError::NotInRoom(group.to_owned()))
    }

    async fn leave_room(&mut self, group: &str) -> Result<RoomView, CallError> {
        let id = self.room_id(group)?;
        let room = self.rooms.remove(&id).ok_or_else(|| CallError::NotInRoom(group.to_owned()))?;
        let view = room.view();
        room.leave().await;
        Ok(view)
    }

    /// The call a user means: `prefix` (hex, any unique prefix) among those `fits`
    /// accepts, or the only one when `prefix` is absent.
    fn find(&self, prefix: Option<&str>, fits: impl Fn(&Call) -> bool) -> Result<CallId, CallError> {
        let wanted = prefix.map(str::to_ascii_lowercase);
        let matches: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| fits(c))
            .filter(|c| wanted.as_deref().is_none_or(|w| hex::encode(c.id).starts_with(w)))
            .map(|c| c.id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(CallError::NoSuchCall(prefix.unwrap_or("").to_owned())),
            _ => Err(CallError::Ambiguous),
        }
    }

    async fn place(&mut self, peer: PeerId, audio: AudioChoice, reply: Answer) -> Result<(), CallError> {
        let checked = self.check_callable(peer);
        let (source, sink) = match checked.and_then(|()| open_audio(&audio)) {
            Ok(io) => io,
            Err(e) => {
                let _ = reply.send(Err(e));
                return Ok(());
            }
        };
        let (mut session, sdp) = match Session::offer(&self.media_config().await, source, sink).await {
            Ok(made) => made,
            Err(e) => {
                let _ = reply.send(Err(CallError::Media(e.to_string())));
                return Ok(());
            }
        };
        let id: CallId = rand::random();
        self.watch_media(id, &mut session);
        self.calls.insert(
            id,
            Call {
                id,
                peer,
                outgoing: true,
                state: CallState::Calling,
                started_at_ms: now_ms(),
                answered_at_ms: None,
                session: Some(session),
                offer: None,
                peer_speaking: false,
                waiter: Some(reply),
            },
        );
        self.deliver(id, peer, Signal::Offer { call: id, sdp }, false);
        // The caller gives up a little after the callee would have.
        self.ring_timer(id, self.context.timers.ring_timeout + self.context.timers.signal_deadline);
        Ok(())
    }

    fn check_callable(&self, peer: PeerId) -> Result<(), CallError> {
        if peer == self.context.me {
            return Err(CallError::NotContact(peer.to_string()));
        }
        // One call at a time, ringing ones included: a second session would open the
        // microphone twice.
        if !self.calls.is_empty() {
            return Err(CallError::InCall);
        }
        match self.context.store.contacts().get(&peer) {
            Ok(Some(c)) if c.state == ContactState::Accepted => Ok(()),
            Ok(_) => Err(CallError::NotContact(peer.to_string())),
            Err(e) => Err(CallError::Storage(e.to_string())),
        }
    }

    async fn answer(&mut self, prefix: Option<&str>, audio: AudioChoice) -> Result<CallId, CallError> {
        let id = self.find(prefix, |c| !c.outgoing && c.state == CallState::Ringing)?;
        if self.calls.values().any(|c| c.id != id && c.session.is_some()) {
            return Err(CallError::InCall);
        }
        let (source, sink) = open_audio(&audio)?;
        let media = self.media_config().await;
        let call = self.calls.get_mut(&id).ok_or(CallError::NoSuchCall(hex::encode(id)))?;
        let offer = call.offer.take().unwrap_or_default();
        let (mut session, sdp) = match Session::answer(&media, &offer, source, sink).await {
            Ok(made) => made,
            Err(e) => {
                self.end(id, EndReason::Failed, Some(HangupReason::Failed));
                return Err(CallError::Media(e.to_string()));
            }
        };
        let peer = call.peer;
        call.state = CallState::Connecting;
        self.watch_media(id, &mut session);
        if let Some(call) = self.calls.get_mut(&id) {
            call.session = Some(session);
        }
        self.deliver(id, peer, Signal::Answer { call: id, sdp }, true);
        Ok(id)
    }

    async fn incoming(&mut self, peer: PeerId, signal: Signal) -> Reply {
        let id = signal.call();
        match signal {
            Signal::Offer { sdp, .. } => {
                match self.context.store.contacts().get(&peer) {
                    Ok(Some(c)) if c.state == ContactState::Accepted => {}
                    // A stranger's or a blocked contact's call never rings.
                    _ => return Reply::Refused,
                }
                if let Some(existing) = self.calls.get(&id) {
                    return if existing.peer == peer { Reply::Ringing } else { Reply::Refused };
                }
                if self.ended.contains_key(&id) {
                    // Its hang-up came first.
                    return Reply::Refused;
                }
                if !self.calls.is_empty() {
                    // At most one busy call a minute per peer reaches the history: a
                    // contact calling in a loop cannot push out the rest of it.
                    let now = Instant::now();
                    self.busy_noted.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
                    if let std::collections::hash_map::Entry::Vacant(slot) = self.busy_noted.entry(peer) {
                        slot.insert(now);
                        self.record_missed(id, peer);
                    }
                    return Reply::Busy;
                }
                self.calls.insert(
                    id,
                    Call {
                        id,
                        peer,
                        outgoing: false,
                        state: CallState::Ringing,
                        started_at_ms: now_ms(),
                        answered_at_ms: None,
                        session: None,
                        offer: Some(sdp),
                        peer_speaking: false,
                        waiter: None,
                    },
                );
                self.emit(Event::CallRinging { call: hex::encode(id), peer: peer.to_string(), outgoing: false });
                self.ring_timer(id, self.context.timers.ring_timeout);
                Reply::Ringing
            }
            Signal::Answer { sdp, .. } => {
                let Some(call) = self.calls.get_mut(&id) else { return Reply::Refused };
                if call.peer != peer || !call.outgoing || call.answered_at_ms.is_some() {
                    return Reply::Refused;
                }
                let Some(session) = &call.session else { return Reply::Refused };
                if let Err(e) = session.accept_answer(&sdp).await {
                    tracing::debug!(%peer, "a call's answer: {e}");
                    self.end(id, EndReason::Failed, Some(HangupReason::Failed));
                    return Reply::Ok;
                }
                call.state = CallState::Connecting;
                call.answered_at_ms = Some(now_ms());
                self.emit(Event::CallAnswered { call: hex::encode(id), peer: peer.to_string() });
                Reply::Ok
            }
            Signal::Hangup { reason, .. } => {
                match self.calls.get(&id) {
                    Some(call) if call.peer == peer => {}
                    Some(_) => return Reply::Refused,
                    None => {
                        // Perhaps ahead of its offer: that offer must not ring.
                        self.note_ended(id);
                        return Reply::Refused;
                    }
                }
                let ours = match reason {
                    HangupReason::HungUp => EndReason::RemoteHungUp,
                    HangupReason::Declined => EndReason::Declined,
                    HangupReason::NoAnswer => EndReason::NoAnswer,
                    HangupReason::Failed => EndReason::Failed,
                };
                self.end(id, ours, None);
                Reply::Ok
            }
        }
    }

    fn delivered(&mut self, id: CallId, peer: PeerId, answer: bool, result: Result<Reply, String>) {
        let Some(call) = self.calls.get_mut(&id) else {
            // Ended while its offer or answer was on the way, which the peer took: it
            // would ring (or wait) for nothing.
            if matches!(result, Ok(Reply::Ringing | Reply::Ok)) {
                self.tell_ended(id, peer, HangupReason::HungUp);
            }
            return;
        };
        match (answer, result) {
            (false, Ok(Reply::Ringing)) => {
                if call.state == CallState::Calling {
                    call.state = CallState::Ringing;
                }
                let view = call.view();
                if let Some(waiter) = call.waiter.take() {
                    let _ = waiter.send(Ok(view));
                }
                let peer = call.peer.to_string();
                self.emit(Event::CallRinging { call: hex::encode(id), peer, outgoing: true });
            }
            (true, Ok(Reply::Ok)) => {
                call.answered_at_ms.get_or_insert_with(now_ms);
                let view = call.view();
                if let Some(waiter) = call.waiter.take() {
                    let _ = waiter.send(Ok(view));
                }
                let peer = call.peer.to_string();
                self.emit(Event::CallAnswered { call: hex::encode(id), peer });
            }
            (false, Ok(Reply::Busy)) => self.end(id, EndReason::Busy, None),
            (false, Ok(_)) => self.end(id, EndReason::Refused, None),
            // The caller gave up while we picked up.
            (true, Ok(_)) => self.end(id, EndReason::RemoteHungUp, None),
            // The signal may have arrived with only its reply lost: the peer is told
            // the call is over, in case.
            (false, Err(e)) => {
                tracing::debug!("a call's offer was not delivered: {e}");
                self.end(id, EndReason::Unreachable, Some(HangupReason::HungUp));
            }
            (true, Err(e)) => {
                tracing::debug!("a call's answer was not delivered: {e}");
                self.end(id, EndReason::Failed, Some(HangupReason::Failed));
            }
        }
    }

    fn media(&mut self, id: CallId, event: SessionEvent) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        match event {
            SessionEvent::Connected => {
                call.state = CallState::Active;
                let peer = call.peer.to_string();
                self.emit(Event::CallConnected { call: hex::encode(id), peer });
            }
            SessionEvent::Disconnected => tracing::debug!(call = %hex::encode(id), "call media went quiet"),
            SessionEvent::Failed => self.end(id, EndReason::Failed, Some(HangupReason::Failed)),
            SessionEvent::Speaking { speaking, .. } => {
                call.peer_speaking = speaking;
                let peer = call.peer.to_string();
                self.emit(Event::CallSpeaking { call: hex::encode(id), peer, speaking });
            }
        }
    }

    /// Ends a call: tells the peer (when `tell` is set), closes its media (the output
    /// file is finished), writes it into the history, then announces it.
    fn end(&mut self, id: CallId, reason: EndReason, tell: Option<HangupReason>) {
        let Some(mut call) = self.calls.remove(&id) else { return };
        if let Some(waiter) = call.waiter.take() {
            let _ = waiter.send(Err(CallError::Ended(reason)));
        }
        self.note_ended(id);
        if let Some(reason) = tell {
            self.tell_ended(id, call.peer, reason);
        }
        let record = CallRecord {
            id,
            peer: call.peer,
            outgoing: call.outgoing,
            started_at_ms: call.started_at_ms,
            answered_at_ms: call.answered_at_ms,
            ended_at_ms: now_ms(),
            reason: reason.as_str().to_owned(),
        };
        let (commands, events) = (self.context.commands.clone(), self.context.events.clone());
        let session = call.session.take();
        tokio::spawn(async move {
            if let Some(session) = session
                && let Err(e) = session.close().await
            {
                tracing::warn!("finishing a call's recording: {e}");
            }
            let duration_ms = record.duration_ms();
            let (call, peer) = (hex::encode(record.id), record.peer.to_string());
            write_record(&commands, record).await;
            let _ = events.send(Event::CallEnded { call, peer, reason, duration_ms });
        });
    }

    /// A call that came while we were in another: it goes into the history as missed
    /// and is announced as ended `busy`, without ever ringing.
    /// Tells `peer` that call `id` is over (in its own task, best effort).
    fn tell_ended(&self, id: CallId, peer: PeerId, reason: HangupReason) {
        let (control, deadline) = (self.context.control.clone(), self.context.timers.signal_deadline);
        tokio::spawn(async move {
            if let Err(e) = signal::send(control, peer, &Signal::Hangup { call: id, reason }, deadline).await {
                tracing::debug!(%peer, "telling a peer the call ended: {e}");
            }
        });
    }

    /// Remembers for a while that call `id` is over, so that its offer arriving late
    /// (overtaken by its hang-up) does not ring.
    fn note_ended(&mut self, id: CallId) {
        let now = Instant::now();
        self.ended.retain(|_, at| now.duration_since(*at) < ENDED_MEMORY);
        if self.ended.len() < MAX_ENDED_REMEMBERED {
            self.ended.insert(id, now);
        }
    }

    fn record_missed(&self, id: CallId, peer: PeerId) {
        let now = now_ms();
        let record = CallRecord {
            id,
            peer,
            outgoing: false,
            started_at_ms: now,
            answered_at_ms: None,
            ended_at_ms: now,
            reason: EndReason::Busy.as_str().to_owned(),
        };
        let (commands, events) = (self.context.commands.clone(), self.context.events.clone());
        tokio::spawn(async move {
            let (call, peer) = (hex::encode(record.id), record.peer.to_string());
            write_record(&commands, record).await;
            let _ = events.send(Event::CallEnded { call, peer, reason: EndReason::Busy, duration_ms: 0 });
        });
    }

    /// Sends an offer or answer in its own task; the outcome comes back as
    /// [`Input::Delivered`].
    fn deliver(&self, id: CallId, peer: PeerId, signal: Signal, answer: bool) {
        let (control, commands, inputs) =
            (self.context.control.clone(), self.context.commands.clone(), self.inputs.clone());
        let deadline = self.context.timers.signal_deadline;
        tokio::spawn(async move {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Reach(peer, Vec::new(), tx)).await.is_ok() {
                let _ = rx.await;
            }
            let result = signal::send(control, peer, &signal, deadline).await.map_err(|e| e.to_string());
            let _ = inputs.send(Input::Delivered { call: id, peer, answer, result }).await;
        });
    }

    fn watch_media(&self, id: CallId, session: &mut Session) {
        let Some(mut events) = session.take_events() else { return };
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if inputs.send(Input::Media { call: id, event }).await.is_err() {
                    return;
                }
            }
        });
    }

    fn ring_timer(&self, id: CallId, after: Duration) {
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inputs.send(Input::RingTimeout { call: id }).await;
        });
    }

    fn emit(&self, event: Event) {
        let _ = self.context.events.send(event);
    }
}

/// Writes a finished call into the history through the node's writer, and waits
/// until it is durable (so `kith calls` shows it once the end is announced).
async fn write_record(commands: &mpsc::Sender<Command>, record: CallRecord) {
    let (tx, rx) = oneshot::channel();
    let op: crate::node::LocalOp = Box::new(move |store, _| {
        store.calls().record(&record).map_err(crate::ops::OpError::from)?;
        Ok(serde_json::Value::Null)
    });
    if commands.send(Command::Local { op, reply: tx }).await.is_err() {
        return;
    }
    if let Ok(Err(e)) = rx.await {
        tracing::warn!("recording a call in the history: {e}");
    }
}

/// A call's source and sink.
type AudioIo = (Box<dyn Source>, Box<dyn Sink>);

/// A call's audio: the files chosen, else the default microphone and speaker (built
/// with the `audio-devices` feature, and when the machine has them), else silence
/// out and nothing kept of what comes in.
fn open_audio(audio: &AudioChoice) -> Result<AudioIo, CallError> {
    use kith_call::stream::{StreamSink, StreamSource};
    let source: Box<dyn Source> = match &audio.input {
        // A named pipe (`kith call --input -`): a stream read as the call goes.
        Some(path) if is_pipe(path) => Box::new(StreamSource::spawn(path)),
        Some(path) => Box::new(kith_call::wav::WavSource::open(path).map_err(|e| CallError::Audio(e.to_string()))?),
        None => default_source(),
    };
    let sink: Box<dyn Sink> = match &audio.output {
        Some(path) if is_pipe(path) => Box::new(StreamSink::spawn(path)),
        Some(path) => Box::new(kith_call::wav::WavSink::create(path).map_err(|e| CallError::Audio(e.to_string()))?),
        None => default_sink(),
    };
    Ok((source, sink))
}

/// Whether `path` is a named pipe (FIFO).
fn is_pipe(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(feature = "audio-devices")]
fn default_source() -> Box<dyn Source> {
    match kith_call::device::microphone() {
        Ok(mic) => Box::new(mic),
        Err(e) => {
            tracing::warn!("no microphone, sending silence: {e}");
            Box::new(Silence)
        }
    }
}

#[cfg(not(feature = "audio-devices"))]
fn default_source() -> Box<dyn Source> {
    Box::new(Silence)
}

#[cfg(feature = "audio-devices")]
fn default_sink() -> Box<dyn Sink> {
    match kith_call::device::speaker() {
        Ok(speaker) => Box::new(speaker),
        Err(e) => {
            tracing::warn!("no speaker, dropping what the call brings: {e}");
            Box::new(Discard)
        }
    }
}

#[cfg(not(feature = "audio-devices"))]
fn default_sink() -> Box<dyn Sink> {
    Box::new(Discard)
}
