//! A member's side of a group's voice room: one media session with the room's
//! forwarder on the first of the group's relays that serves rooms, kept until the
//! member leaves, is removed from the group, or the path fails. The member's node
//! watches who is in the room and asks the forwarder to eject anyone who is not a
//! member by the group's signed membership as this node holds it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::AsyncReadExt;
use kith_call::{MediaConfig, Session, SessionControls, SessionEvent, Sink, Source};
use libp2p::{Multiaddr, PeerId};
use libp2p_stream::Control;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::room::{self, Join, RoomFrame, RoomRequest};
use super::{CallError, RoomTicket};
use crate::node::{Command, Event};

/// Longest wait for the media node to take a request.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// Longest wait for a relay to answer a join.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// A voice room we are in, as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomView {
    /// The group's id.
    pub group: String,
    /// The group's name.
    pub name: String,
    /// The media node forwarding the room.
    pub relay: String,
    /// Who is in the room (peer ids), us included.
    pub participants: Vec<String>,
    /// Frames played (the others, mixed) so far.
    pub frames_played: u64,
    /// The mixed level now, 0.0–1.0.
    pub output_level: f32,
    /// Whether our side is muted.
    pub muted: bool,
    /// Who is speaking now (peer ids, sorted; never us).
    #[serde(default)]
    pub speaking: Vec<String>,
}

/// Why we left a room ([`Event::RoomLeft`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// We left.
    Left,
    /// We are no longer a member of the group.
    Removed,
    /// The media node ejected us or closed the room.
    Closed,
    /// The media path failed.
    Failed,
}

/// What a room needs from the node.
#[derive(Clone)]
pub(crate) struct RoomContext {
    pub(crate) control: Control,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) media: MediaConfig,
    pub(crate) me: PeerId,
}

/// A room we are in: its view and the switch that leaves it.
pub(crate) struct RoomHandle {
    view: Arc<Mutex<RoomView>>,
    session: SessionControls,
    leave: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl RoomHandle {
    /// The room now.
    pub(crate) fn view(&self) -> RoomView {
        let mut view = self.view.lock().map(|v| v.clone()).unwrap_or_else(|e| e.into_inner().clone());
        let stats = self.session.stats();
        view.frames_played = stats.frames_played;
        view.output_level = stats.output_level;
        view.muted = self.session.muted();
        view
    }

    /// Mutes or unmutes our side (silence is sent while muted).
    pub(crate) fn set_muted(&self, muted: bool) {
        self.session.set_muted(muted);
    }

    /// Whether the room ended by itself.
    pub(crate) fn ended(&self) -> bool {
        self.done.is_finished()
    }

    /// Leaves the room; returns once its media is closed.
    pub(crate) async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        let _ = self.done.await;
    }
}

/// Joins `ticket`'s room with `source` and `sink`: returns once the forwarder
/// answered (media starts right after).
pub(crate) async fn join(
    ctx: RoomContext,
    ticket: RoomTicket,
    source: Box<dyn Source>,
    sink: Box<dyn Sink>,
) -> Result<RoomHandle, CallError> {
    let slots = kith_call::MAX_ROOM_SLOTS - 1;
    let (mut session, offer) = Session::offer_to_room(&ctx.media, source, sink, slots)
        .await
        .map_err(|e| CallError::Media(e.to_string()))?;
    let mut errors = Vec::new();
    for addr in &ticket.relays {
        let Some(relay) = crate::node::relay_peer(addr) else { continue };
        match ask(&ctx, relay, addr, &ticket, &offer).await {
            Ok((stream, sdp, participants)) => {
                session.accept_answer(&sdp).await.map_err(|e| CallError::Media(e.to_string()))?;
                let events = session.take_events();
                let controls = session.controls();
                let view = Arc::new(Mutex::new(RoomView {
                    group: ticket.group.to_string(),
                    name: ticket.name.clone(),
                    relay: relay.to_string(),
                    participants: participants
                        .iter()
                        .filter_map(|p| PeerId::from_bytes(p).ok())
                        .map(|p| p.to_string())
                        .collect(),
                    frames_played: 0,
                    output_level: 0.0,
                    muted: false,
                    speaking: Vec::new(),
                }));
                let (leave_tx, leave_rx) = oneshot::channel();
                let running = Running { ctx, ticket, view: view.clone(), session };
                let done = tokio::spawn(running.run(stream, participants, events, leave_rx));
                return Ok(RoomHandle { view, session: controls, leave: Some(leave_tx), done });
            }
            Err(e) => errors.push(format!("{relay}: {e}")),
        }
    }
    if errors.is_empty() {
        errors.push("the group has no relay".into());
    }
    Err(CallError::Room(errors.join("; ")))
}

/// Asks one relay to take us into the room.
async fn ask(
    ctx: &RoomContext,
    relay: PeerId,
    addr: &Multiaddr,
    ticket: &RoomTicket,
    offer: &str,
) -> Result<(libp2p::Stream, String, Vec<Vec<u8>>), String> {
    let (tx, rx) = oneshot::channel();
    if ctx.commands.send(Command::Reach(relay, vec![addr.clone()], tx)).await.is_ok() {
        let _ = rx.await;
    }
    let exchange = async {
        let mut stream = crate::streams::open(&ctx.control, relay, room::PROTOCOL).await.map_err(|e| e.to_string())?;
        room::write(&mut stream, &Join { room: ticket.room, sdp: offer.to_owned() }).await.map_err(|e| e.to_string())?;
        match room::read::<RoomFrame, _>(&mut stream).await.map_err(|e| e.to_string())? {
            RoomFrame::Joined { sdp, participants } => Ok((stream, sdp, participants)),
            RoomFrame::Refused { reason } => Err(reason.to_string()),
            RoomFrame::Participants { .. } | RoomFrame::Streams { .. } => Err("an answer out of order".to_owned()),
        }
    };
    tokio::time::timeout(JOIN_DEADLINE, exchange).await.map_err(|_| "no answer in time".to_owned())?
}

struct Running {
    ctx: RoomContext,
    ticket: RoomTicket,
    view: Arc<Mutex<RoomView>>,
    session: Session,
}

impl Running {
    async fn run(
        mut self,
        stream: libp2p::Stream,
        first: Vec<Vec<u8>>,
        media: Option<mpsc::UnboundedReceiver<SessionEvent>>,
        mut leave: oneshot::Receiver<()>,
    ) {
        let group = self.ticket.group.to_string();
        self.emit(Event::RoomJoined { group: group.clone() });
        let (mut reader, mut writer) = stream.split();
        let (frames_tx, mut frames) = mpsc::channel::<RoomFrame>(8);
        let reading = tokio::spawn(async move {
            while let Ok(frame) = room::read::<RoomFrame, _>(&mut reader).await {
                if frames_tx.send(frame).await.is_err() {
                    return;
                }
            }
        });
        let mut media = media.unwrap_or_else(|| mpsc::unbounded_channel().1);
        let mut group_events = self.ctx.events.subscribe();
        let mut present: BTreeSet<PeerId> = BTreeSet::new();
        let mut speakers = Speakers::default();
        self.seen(&mut present, &first, &mut writer).await;
        let reason = loop {
            tokio::select! {
                _ = &mut leave => break LeftReason::Left,
                frame = frames.recv() => match frame {
                    Some(RoomFrame::Participants { participants }) => self.seen(&mut present, &participants, &mut writer).await,
                    Some(RoomFrame::Streams { streams }) => {
                        let owners = streams.iter().filter_map(|s| Some((s.ssrc, PeerId::from_bytes(&s.peer).ok()?)));
                        let changes = speakers.owners(owners.collect());
                        self.announce_speaking(changes);
                    }
                    Some(_) => {}
                    None => break LeftReason::Closed,
                },
                event = media.recv() => match event {
                    Some(SessionEvent::Failed) => break LeftReason::Failed,
                    Some(SessionEvent::Speaking { ssrc, speaking }) => {
                        let changes = speakers.voiced(ssrc, speaking);
                        self.announce_speaking(changes);
                    }
                    Some(_) => {}
                    None => break LeftReason::Failed,
                },
                event = group_events.recv() => match event {
                    Ok(Event::GroupChanged { group: view }) if view.id == group => {
                        if !view.active {
                            break LeftReason::Removed;
                        }
                        self.ticket.members = view.members.iter().filter_map(|m| m.peer_id.parse().ok()).collect();
                        let now: Vec<Vec<u8>> = present.iter().map(|p| p.to_bytes()).collect();
                        self.seen(&mut present, &now, &mut writer).await;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break LeftReason::Left,
                },
            }
        };
        reading.abort();
        drop(writer);
        if let Err(e) = self.session.close().await {
            tracing::warn!("finishing a room's recording: {e}");
        }
        let _ = self.ctx.events.send(Event::RoomLeft { group, reason });
    }

    /// Takes in who is in the room: announces who came and went, and asks the
    /// forwarder to eject whoever is not a member.
    async fn seen<W: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        present: &mut BTreeSet<PeerId>,
        participants: &[Vec<u8>],
        writer: &mut W,
    ) {
        let now: BTreeSet<PeerId> = participants.iter().filter_map(|p| PeerId::from_bytes(p).ok()).collect();
        let group = self.ticket.group.to_string();
        let me = self.ctx.me;
        for peer in now.difference(present).filter(|p| **p != me) {
            self.emit(Event::RoomParticipantJoined { group: group.clone(), peer: peer.to_string() });
        }
        for peer in present.difference(&now).filter(|p| **p != me) {
            self.emit(Event::RoomParticipantLeft { group: group.clone(), peer: peer.to_string() });
        }
        for stranger in now.iter().filter(|p| **p != self.ctx.me && !self.ticket.members.contains(p)) {
            if !present.contains(stranger) {
                tracing::info!(peer = %stranger, "not a member of the group: asking the media node to eject it");
            }
            // Bounded: a media node that stops reading must not hold the room (and a
            // leave waiting on it) for good.
            let eject = RoomRequest::Eject { peer: stranger.to_bytes() };
            match tokio::time::timeout(WRITE_DEADLINE, room::write(writer, &eject)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("asking for an ejection: {e}"),
                Err(_) => tracing::debug!("asking for an ejection: the media node does not read"),
            }
        }
        if let Ok(mut view) = self.view.lock() {
            view.participants = now.iter().map(PeerId::to_string).collect();
        }
        *present = now;
    }

    /// Announces who started or stopped speaking, and keeps the view's list.
    fn announce_speaking(&self, changes: Vec<(PeerId, bool)>) {
        if changes.is_empty() {
            return;
        }
        let group = self.ticket.group.to_string();
        if let Ok(mut view) = self.view.lock() {
            for (peer, speaking) in &changes {
                let peer = peer.to_string();
                view.speaking.retain(|p| *p != peer);
                if *speaking {
                    view.speaking.push(peer);
                }
            }
            view.speaking.sort();
        }
        for (peer, speaking) in changes {
            self.emit(Event::RoomSpeaking { group: group.clone(), peer: peer.to_string(), speaking });
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.ctx.events.send(event);
    }
}

/// Who is speaking in a room: our incoming streams that carry speech, by SSRC, and
/// whose audio each stream carries (the forwarder says so in
/// [`RoomFrame::Streams`]); either may come first.
#[derive(Debug, Default)]
struct Speakers {
    owners: HashMap<u32, PeerId>,
    voiced: HashSet<u32>,
    speaking: BTreeSet<PeerId>,
}

impl Speakers {
    /// Streams changed hands: who started or stopped speaking because of it.
    fn owners(&mut self, owners: HashMap<u32, PeerId>) -> Vec<(PeerId, bool)> {
        self.owners = owners;
        self.changes()
    }

    /// A stream started or stopped carrying speech.
    fn voiced(&mut self, ssrc: u32, speaking: bool) -> Vec<(PeerId, bool)> {
        if speaking {
            self.voiced.insert(ssrc);
        } else {
            self.voiced.remove(&ssrc);
        }
        self.changes()
    }

    fn changes(&mut self) -> Vec<(PeerId, bool)> {
        let now: BTreeSet<PeerId> = self.voiced.iter().filter_map(|ssrc| self.owners.get(ssrc).copied()).collect();
        let started = now.difference(&self.speaking).map(|p| (*p, true));
        let stopped = self.speaking.difference(&now).map(|p| (*p, false));
        let changes = started.chain(stopped).collect();
        self.speaking = now;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_speaker_is_named_once_its_stream_and_its_voice_are_both_known() {
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut speakers = Speakers::default();
        assert!(speakers.voiced(7, true).is_empty(), "whose stream 7 is, is not known yet");
        assert_eq!(speakers.owners(HashMap::from([(7, alice), (8, bob)])), vec![(alice, true)]);
        assert_eq!(speakers.voiced(8, true), vec![(bob, true)]);
        assert_eq!(speakers.voiced(7, false), vec![(alice, false)]);
        // Bob's stream goes to someone else (he left, Carol took it): he stops.
        let carol = PeerId::random();
        assert_eq!(speakers.owners(HashMap::from([(8, carol)])), vec![(carol, true), (bob, false)]);
    }
}
