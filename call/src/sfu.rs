//! A room's forwarder (an SFU): every participant sends its one Opus stream to it and
//! it forwards each stream to every other participant, without decoding or mixing.
//!
//! A participant offers one send-and-receive audio stream plus some receive-only ones
//! ([`crate::Session::offer_to_room`]); the forwarder answers with a track of its own on
//! each, its *slots*. A speaker gets a slot of its own on every listener the first time
//! it speaks there, and keeps it while both are in the room, so a listener's node mixes
//! one stream per speaker without renegotiating. Packets keep their sequence numbers
//! and timestamps; their SSRC and payload type become the slot's, and header
//! extensions (not negotiated between the speaker and the listener) are dropped.
//! Speakers beyond a listener's slots are not forwarded to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use crate::peer::{self, Handler};
use crate::session::{MediaConfig, MediaError, SessionEvent, webrtc_error};

/// A participant's id, chosen by whoever runs the room (a peer id's hash, a counter).
pub type ParticipantId = u64;

/// Counters of a room, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Packets received from speakers.
    pub received: u64,
    /// Packets sent on to listeners.
    pub forwarded: u64,
    /// Packets not forwarded: the listener had no free slot, or its connection refused.
    pub dropped: u64,
}

struct Slot {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    /// The payload type negotiated for this slot, once known.
    payload_type: Option<u8>,
    /// The speaker it carries, once one spoke.
    speaker: Option<ParticipantId>,
}

struct Participant {
    pc: Arc<dyn PeerConnection>,
    slots: Vec<Slot>,
    stop: watch::Sender<bool>,
    /// Whether its connection is up and its slots' payload types are known (nothing
    /// is forwarded to it before).
    ready: bool,
}

/// Forwarding delays kept for [`Room::take_delays`] (the oldest go first).
const MAX_DELAY_SAMPLES: usize = 100_000;

#[derive(Default)]
struct State {
    participants: HashMap<ParticipantId, Participant>,
    stats: RoomStats,
    /// How long each packet took from its arrival to its last copy handed on, kept
    /// only for a room made by [`Room::measured`] (a benchmark's).
    delays: Option<std::collections::VecDeque<std::time::Duration>>,
}

/// One room: its participants' connections and the forwarding between them.
#[derive(Clone)]
pub struct Room {
    config: MediaConfig,
    state: Arc<Mutex<State>>,
}

/// A participant's connection events, as [`Room::join`] returns them.
pub type Events = mpsc::UnboundedReceiver<SessionEvent>;

impl Room {
    /// An empty room whose connections use `config` (its bind addresses are the
    /// forwarder's host candidates).
    pub fn new(config: MediaConfig) -> Room {
        Room { config, state: Arc::new(Mutex::new(State::default())) }
    }

    /// Like [`Room::new`], also keeping each packet's forwarding delay for
    /// [`Room::take_delays`] (benchmarks; a relay's rooms keep none).
    pub fn measured(config: MediaConfig) -> Room {
        let state = State { delays: Some(Default::default()), ..State::default() };
        Room { config, state: Arc::new(Mutex::new(state)) }
    }

    /// Takes a participant in from its offer; returns the answer to send back and the
    /// participant's connection events. A participant that joins again replaces its
    /// earlier connection.
    pub async fn join(&self, id: ParticipantId, offer: &str) -> Result<(String, Events), MediaError> {
        self.leave(id).await;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let (connected_tx, mut connected) = watch::channel(false);
        let (tracks_tx, mut tracks_rx) = mpsc::unbounded_channel::<Arc<dyn TrackRemote>>();
        let handler = Handler { events: events_tx, gathered: gathered_tx, connected: connected_tx, tracks: tracks_tx };
        let pc = peer::connection(&self.config, handler).await?;
        let offer = RTCSessionDescription::offer(offer.to_owned()).map_err(webrtc_error)?;
        pc.set_remote_description(offer).await.map_err(webrtc_error)?;
        // One slot on each audio stream the participant offered to receive.
        let offered = pc.get_transceivers().await.len().min(crate::MAX_ROOM_SLOTS);
        let mut slots = Vec::with_capacity(offered);
        for _ in 0..offered {
            let ssrc = rand::random::<u32>();
            let track = Arc::new(TrackLocalStaticRTP::new(peer::opus_track(ssrc)));
            let sender = pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.map_err(webrtc_error)?;
            slots.push(Slot { track, sender, ssrc, payload_type: None, speaker: None });
        }
        let answer = pc.create_answer(None).await.map_err(webrtc_error)?;
        pc.set_local_description(answer).await.map_err(webrtc_error)?;
        let sdp = peer::gathered_sdp(&*pc, &mut gathered_rx, self.config.gather_timeout).await?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        if let Ok(mut state) = self.state.lock() {
            state.participants.insert(id, Participant { pc, slots, stop: stop_tx, ready: false });
        }
        // Once its connection is up, the payload type each slot negotiated is read
        // once, and the participant starts receiving.
        let room = self.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                up = connected.wait_for(|c| *c) => if up.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            room.resolve_payload_types(id).await;
        });
        // What the participant says goes to everyone else.
        let room = self.clone();
        tokio::spawn(async move {
            loop {
                let track = tokio::select! {
                    track = tracks_rx.recv() => match track { Some(track) => track, None => return },
                    _ = stop_rx.wait_for(|s| *s) => return,
                };
                let (room, stop) = (room.clone(), stop_rx.clone());
                tokio::spawn(async move { room.forward_from(id, track, stop).await });
            }
        });
        Ok((sdp, events_rx))
    }

    /// Takes a participant out (its connection is closed; its slots on the others are
    /// freed). Nothing happens for one not in the room.
    pub async fn leave(&self, id: ParticipantId) {
        let gone = match self.state.lock() {
            Ok(mut state) => {
                for p in state.participants.values_mut() {
                    for slot in &mut p.slots {
                        if slot.speaker == Some(id) {
                            slot.speaker = None;
                        }
                    }
                }
                state.participants.remove(&id)
            }
            Err(_) => None,
        };
        if let Some(p) = gone {
            let _ = p.stop.send(true);
            if let Err(e) = p.pc.close().await {
                tracing::debug!("closing a room participant's connection: {e}");
            }
        }
    }

    /// Who is in the room.
    pub fn participants(&self) -> Vec<ParticipantId> {
        let mut ids: Vec<_> = self.state.lock().map(|s| s.participants.keys().copied().collect()).unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Whose audio each of `listener`'s streams carries now: the stream's SSRC (as the
    /// listener receives it) and the speaker. A speaker keeps its stream while both
    /// are in the room.
    pub fn slots(&self, listener: ParticipantId) -> Vec<(u32, ParticipantId)> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        state
            .participants
            .get(&listener)
            .map(|p| p.slots.iter().filter_map(|s| s.speaker.map(|speaker| (s.ssrc, speaker))).collect())
            .unwrap_or_default()
    }

    /// The room's counters.
    pub fn stats(&self) -> RoomStats {
        self.state.lock().map(|s| s.stats).unwrap_or_default()
    }

    /// The forwarding delays measured since the last call (a room made by
    /// [`Room::measured`]; none otherwise): for each packet, from its arrival
    /// (decrypted) to the moment its last copy was handed to its listener's
    /// connection (to be encrypted and sent). At most the newest 100,000.
    pub fn take_delays(&self) -> Vec<std::time::Duration> {
        self.state.lock().ok().and_then(|mut s| s.delays.as_mut().map(|d| d.drain(..).collect())).unwrap_or_default()
    }

    /// Forwards every packet of `speaker`'s track until it ends or the speaker leaves.
    async fn forward_from(&self, speaker: ParticipantId, track: Arc<dyn TrackRemote>, mut stop: watch::Receiver<bool>) {
        loop {
            let event = tokio::select! {
                event = track.poll() => event,
                _ = stop.wait_for(|s| *s) => return,
            };
            let packet = match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => packet,
                Some(TrackRemoteEvent::OnEnded) | None => return,
                Some(_) => continue,
            };
            let received = Instant::now();
            let (mut forwarded, mut dropped) = (0, 0);
            for (track, mut out) in self.routes(speaker, &packet) {
                out.header.extension = false;
                out.header.extensions.clear();
                match track.write_rtp(out).await {
                    Ok(()) => forwarded += 1,
                    Err(_) => dropped += 1,
                }
            }
            let delay = received.elapsed();
            // One lock per packet for its counters, not one per copy.
            if let Ok(mut state) = self.state.lock() {
                state.stats.forwarded += forwarded;
                state.stats.dropped += dropped;
                if let Some(delays) = &mut state.delays {
                    if delays.len() >= MAX_DELAY_SAMPLES {
                        delays.pop_front();
                    }
                    delays.push_back(delay);
                }
            }
        }
    }

    /// Reads the payload type each of participant `id`'s slots negotiated, then marks
    /// it ready to receive.
    async fn resolve_payload_types(&self, id: ParticipantId) {
        let senders: Vec<Arc<dyn RtpSender>> = match self.state.lock() {
            Ok(state) => match state.participants.get(&id) {
                Some(p) => p.slots.iter().map(|s| s.sender.clone()).collect(),
                None => return,
            },
            Err(_) => return,
        };
        let mut types = Vec::with_capacity(senders.len());
        for sender in senders {
            let pt = match sender.get_parameters().await {
                Ok(params) => params.rtp_parameters.codecs.first().map(|c| c.payload_type),
                Err(_) => None,
            };
            types.push(pt);
        }
        if let Ok(mut state) = self.state.lock()
            && let Some(p) = state.participants.get_mut(&id)
        {
            for (slot, pt) in p.slots.iter_mut().zip(types) {
                slot.payload_type = pt;
            }
            p.ready = true;
        }
    }

    /// The slot tracks `speaker`'s packet goes to, each with the packet as that slot
    /// sends it (its SSRC and payload type).
    fn routes(&self, speaker: ParticipantId, packet: &rtc::rtp::Packet) -> Vec<(Arc<TrackLocalStaticRTP>, rtc::rtp::Packet)> {
        let Ok(mut state) = self.state.lock() else { return Vec::new() };
        state.stats.received += 1;
        let mut routes = Vec::new();
        let mut dropped = 0;
        for (id, p) in state.participants.iter_mut() {
            if *id == speaker || !p.ready {
                continue;
            }
            let slot = match p.slots.iter().position(|s| s.speaker == Some(speaker)) {
                Some(i) => Some(i),
                None => p.slots.iter().position(|s| s.speaker.is_none() && s.payload_type.is_some()),
            };
            let Some(slot) = slot.and_then(|i| p.slots.get_mut(i)) else {
                dropped += 1;
                continue;
            };
            let Some(pt) = slot.payload_type else {
                dropped += 1;
                continue;
            };
            slot.speaker = Some(speaker);
            let mut out = packet.clone();
            out.header.ssrc = slot.ssrc;
            out.header.payload_type = pt;
            routes.push((slot.track.clone(), out));
        }
        state.stats.dropped += dropped;
        routes
    }
}
