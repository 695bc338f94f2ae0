//! Voice rooms of the media role (`/kith/room/1`): the relay forwards each
//! participant's Opus stream to the others (`kith_call::sfu`), never decoding or
//! mixing. A room is named by an id derived from its group's secret; the relay knows
//! only which peers are connected to which id. Admission follows the access policy,
//! at most [`MAX_ROOMS`] rooms, [`room::MAX_PARTICIPANTS`] participants each and
//! [`MAX_ROOMS_PER_PEER`] rooms per peer.
//! Members eject whoever is not a member by their signed membership
//! ([`RoomRequest::Eject`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, StreamExt};
use kith_call::sfu::{ParticipantId, Room};
use kith_call::{MediaConfig, SessionEvent};
use kith_p2p::call::room::{self, Join, RoomFrame, RoomId, RoomRefusal, RoomRequest, StreamOwner};
use libp2p::PeerId;
use libp2p_stream::IncomingStreams;
use tokio::sync::{mpsc, watch};

use super::mailbox_service::Access;

/// Rooms held at once.
pub(crate) const MAX_ROOMS: usize = 64;

/// Rooms one peer may be in at once.
pub(crate) const MAX_ROOMS_PER_PEER: usize = 2;

/// How often a participant is told whose audio its streams carry (when it changed).
const STREAMS_INTERVAL: Duration = Duration::from_millis(250);

/// How long a joining member has to send its offer.
const JOIN_DEADLINE: Duration = Duration::from_secs(5);

struct Entry {
    room: Room,
    /// Participants, each with its session's token and the switch that ejects it.
    members: HashMap<PeerId, (u64, watch::Sender<bool>)>,
    /// Bumped whenever someone comes or goes.
    changed: watch::Sender<u64>,
}

/// The rooms of one relay.
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<RoomId, Entry>>,
    access: Access,
    media: MediaConfig,
}

impl Rooms {
    /// No rooms yet; forwarding connections gather host candidates on `media.bind`.
    pub(crate) fn new(access: Access, media: MediaConfig) -> Arc<Rooms> {
        Arc::new(Rooms { rooms: Mutex::new(HashMap::new()), access, media })
    }

    /// Serves every `/kith/room/1` stream, each participant in a task of its own.
    pub(crate) async fn serve(self: Arc<Self>, mut incoming: IncomingStreams) {
        while let Some((peer, stream)) = incoming.next().await {
            tokio::spawn(self.clone().session(peer, stream));
        }
    }

    async fn session(self: Arc<Self>, peer: PeerId, stream: libp2p::Stream) {
        let (mut reader, mut writer) = stream.split();
        let refuse = |reason| RoomFrame::Refused { reason };
        // Before its offer is read: a peer the policy does not admit costs nothing more.
        if !self.access.admits(&peer) {
            let _ = room::write(&mut writer, &refuse(RoomRefusal::NotAllowed)).await;
            return;
        }
        let join: Join = match tokio::time::timeout(JOIN_DEADLINE, room::read(&mut reader)).await {
            Ok(Ok(join)) => join,
            _ => return,
        };
        let id = participant_id(&peer);
        let admitted = self.admit(join.room, peer);
        let (token, forwarder, mut changed, mut ejected) = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                let _ = room::write(&mut writer, &refuse(reason)).await;
                return;
            }
        };
        let (answer, mut events) = match forwarder.join(id, &join.sdp).await {
            Ok(joined) => joined,
            Err(e) => {
                tracing::debug!(%peer, "a room offer: {e}");
                self.remove(join.room, peer, token, id, &forwarder).await;
                let _ = room::write(&mut writer, &refuse(RoomRefusal::BadOffer)).await;
                return;
            }
        };
        let joined = RoomFrame::Joined { sdp: answer, participants: self.list(&join.room) };
        if room::write(&mut writer, &joined).await.is_ok() {
            // Requests are read in a task of their own: a read cut off by another
            // branch of the loop would lose a frame half-read.
            let (requests_tx, mut requests) = mpsc::channel::<RoomRequest>(8);
            let reading = tokio::spawn(async move {
                while let Ok(request) = room::read::<RoomRequest, _>(&mut reader).await {
                    if requests_tx.send(request).await.is_err() {
                        return;
                    }
                }
            });
            changed.borrow_and_update();
            let mut streams_tick = tokio::time::interval(STREAMS_INTERVAL);
            let mut streams_sent: Vec<StreamOwner> = Vec::new();
            loop {
                tokio::select! {
                    _ = streams_tick.tick() => {
                        let now = self.streams_of(&join.room, &forwarder, id);
                        if now != streams_sent {
                            if room::write(&mut writer, &RoomFrame::Streams { streams: now.clone() }).await.is_err() {
                                break;
                            }
                            streams_sent = now;
                        }
                    }
                    request = requests.recv() => match request {
                        Some(RoomRequest::Eject { peer: target }) => {
                            if let Ok(target) = PeerId::from_bytes(&target)
                                && target != peer
                            {
                                self.eject(&join.room, &target);
                            }
                        }
                        // The member closed the stream: it left.
                        None => break,
                    },
                    Ok(()) = changed.changed() => {
                        let update = RoomFrame::Participants { participants: self.list(&join.room) };
                        if room::write(&mut writer, &update).await.is_err() {
                            break;
                        }
                    }
                    () = async { let _ = ejected.wait_for(|e| *e).await; } => break,
                    event = events.recv() => match event {
                        Some(SessionEvent::Failed) | None => break,
                        Some(_) => {}
                    },
                }
            }
            reading.abort();
        }
        self.remove(join.room, peer, token, id, &forwarder).await;
    }

    /// Takes `peer` into room `id` (created if new), or says why not.
    fn admit(&self, id: RoomId, peer: PeerId) -> Result<Admitted, RoomRefusal> {
        let mut rooms = self.rooms.lock().map_err(|_| RoomRefusal::Busy)?;
        if !rooms.contains_key(&id) && rooms.len() >= MAX_ROOMS {
            return Err(RoomRefusal::Busy);
        }
        // One peer cannot hold many rooms (each one a connection and sockets here).
        let elsewhere = rooms.iter().filter(|(room, e)| **room != id && e.members.contains_key(&peer)).count();
        if elsewhere >= MAX_ROOMS_PER_PEER {
            return Err(RoomRefusal::Busy);
        }
        let entry = rooms.entry(id).or_insert_with(|| Entry {
            room: Room::new(self.media.clone()),
            members: HashMap::new(),
            changed: watch::channel(0).0,
        });
        if !entry.members.contains_key(&peer) && entry.members.len() >= room::MAX_PARTICIPANTS {
            return Err(RoomRefusal::Full);
        }
        // Joining again replaces the earlier connection: that one is ejected.
        let (eject, ejected) = watch::channel(false);
        let token = rand::random::<u64>();
        if let Some((_, earlier)) = entry.members.insert(peer, (token, eject)) {
            let _ = earlier.send(true);
        }
        entry.changed.send_modify(|v| *v += 1);
        Ok((token, entry.room.clone(), entry.changed.subscribe(), ejected))
    }

    fn eject(&self, id: &RoomId, target: &PeerId) {
        if let Ok(rooms) = self.rooms.lock()
            && let Some(entry) = rooms.get(id)
            && let Some((_, eject)) = entry.members.get(target)
        {
            tracing::info!(peer = %target, "ejected from a voice room at a member's request");
            let _ = eject.send(true);
        }
    }

    /// Ends a session: if it is still `peer`'s current one (`token`), the peer leaves
    /// the forwarder and the room, and an empty room goes.
    async fn remove(&self, id: RoomId, peer: PeerId, token: u64, participant: ParticipantId, forwarder: &Room) {
        let current = {
            let Ok(mut rooms) = self.rooms.lock() else { return };
            let Some(entry) = rooms.get_mut(&id) else { return };
            let current = entry.members.get(&peer).is_some_and(|(t, _)| *t == token);
            if current {
                entry.members.remove(&peer);
                entry.changed.send_modify(|v| *v += 1);
                if entry.members.is_empty() {
                    rooms.remove(&id);
                }
            }
            current
        };
        // A newer session of the same peer replaced this one in the forwarder already.
        if current {
            forwarder.leave(participant).await;
        }
    }

    /// Whose audio each of `listener`'s streams carries, by peer id, sorted.
    fn streams_of(&self, id: &RoomId, forwarder: &Room, listener: ParticipantId) -> Vec<StreamOwner> {
        let slots = forwarder.slots(listener);
        let Ok(rooms) = self.rooms.lock() else { return Vec::new() };
        let Some(entry) = rooms.get(id) else { return Vec::new() };
        let mut streams: Vec<StreamOwner> = slots
            .into_iter()
            .filter_map(|(ssrc, speaker)| {
                let peer = entry.members.keys().find(|p| participant_id(p) == speaker)?;
                Some(StreamOwner { ssrc, peer: peer.to_bytes() })
            })
            .collect();
        streams.sort_by_key(|s| s.ssrc);
        streams
    }

    /// Rooms held and participants in them, for metrics.
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.rooms
            .lock()
            .map(|rooms| (rooms.len(), rooms.values().map(|e| e.members.len()).sum()))
            .unwrap_or_default()
    }

    fn list(&self, id: &RoomId) -> Vec<Vec<u8>> {
        self.rooms
            .lock()
            .ok()
            .and_then(|rooms| rooms.get(id).map(|e| e.members.keys().map(|p| p.to_bytes()).collect()))
            .unwrap_or_default()
    }
}

/// An admitted session: its token, the room's forwarder, the room's change counter
/// and the session's eject switch.
type Admitted = (u64, Room, watch::Receiver<u64>, watch::Receiver<bool>);

/// A peer's participant id in a forwarder: the first 8 bytes of a hash of its id.
fn participant_id(peer: &PeerId) -> ParticipantId {
    let hash = blake3::hash(&peer.to_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}
