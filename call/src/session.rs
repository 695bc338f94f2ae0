//! One WebRTC media session carrying one Opus audio stream each way.
//!
//! Signalling is the caller's business: [`Session::offer`] and [`Session::answer`]
//! return a complete SDP (ICE gathering finished, no trickle), which the caller carries
//! to the peer in an authenticated channel, and [`Session::accept_answer`] takes the
//! peer's answer. The SDP holds the DTLS certificate's fingerprint and webrtc refuses a
//! DTLS peer whose certificate does not match it, so media is authenticated to whoever
//! authenticated the SDP.
//!
//! Once connected, a sender task takes a frame from the [`Source`] every 20 ms,
//! encodes it and sends it; received packets go into a [`JitterBuffer`], and a playout
//! task takes one frame from it every 20 ms, decodes (or rebuilds or conceals) it and
//! hands it to the [`Sink`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::audio::{FRAME, Frame, Sink, Source, level};
use crate::codec::{CodecError, VoiceEncoder};
use crate::jitter::JitterStats;
use crate::mixer::Mixer;
use crate::peer::{self, Handler};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Local addresses to offer as host candidates: one UDP socket on an ephemeral port
    /// each. Concrete addresses only; an unspecified one (0.0.0.0) gathers nothing.
    pub bind: Vec<IpAddr>,
    /// Frames held before playout starts (3 = 60 ms).
    pub jitter_depth: usize,
    /// Longest wait for ICE gathering before an offer or answer is given up.
    pub gather_timeout: Duration,
    /// Silence on the path before the connection counts as disconnected.
    pub ice_disconnected: Duration,
    /// Disconnected this long more and it has failed.
    pub ice_failed: Duration,
    /// TURN servers (media nodes) to gather relayed candidates from, for when no
    /// direct path works; DTLS still runs end to end through them.
    pub relays: Vec<crate::turn::TurnGrant>,
    /// Offer relayed candidates only (the peer never learns our addresses); for
    /// privacy and for tests of the relayed path.
    pub relay_only: bool,
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            bind: vec![IpAddr::from([127, 0, 0, 1])],
            jitter_depth: 3,
            gather_timeout: Duration::from_secs(5),
            ice_disconnected: Duration::from_secs(3),
            ice_failed: Duration::from_secs(7),
            relays: Vec::new(),
            relay_only: false,
        }
    }
}

/// What can go wrong setting a session up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// webrtc refused something (a malformed SDP, no common codec, sockets).
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// ICE gathering did not finish in time.
    #[error("ICE gathering did not finish within {0:?}")]
    GatherTimeout(Duration),
    /// No address to gather candidates on.
    #[error("no local address to offer media on")]
    NoAddress,
    /// The codec could not be set up.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

pub(crate) fn webrtc_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::WebRtc(e.to_string())
}

/// A change in the session's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// ICE and DTLS are up: media flows.
    Connected,
    /// The path went quiet; it may come back.
    Disconnected,
    /// The path is gone (ICE or DTLS failed, or it stayed disconnected).
    Failed,
    /// An incoming stream started or stopped carrying speech (see
    /// [`crate::speech`]); `ssrc` names the stream (a room's forwarder says whose it is).
    Speaking {
        /// The stream.
        ssrc: u32,
        /// Whether it speaks now.
        speaking: bool,
    },
}

/// Counters of one session, for `kith calls`, meters and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaStats {
    /// Frames encoded and sent.
    pub frames_sent: u64,
    /// Opus bytes in those frames (RTP, SRTP, UDP and IP headers not counted).
    pub payload_bytes_sent: u64,
    /// Frames handed to the sink (decoded, rebuilt or concealed).
    pub frames_played: u64,
    /// Of those, frames rebuilt from FEC or concealed.
    pub frames_concealed: u64,
    /// Outgoing level of the last frame, 0.0–1.0 (0 while muted).
    pub input_level: f32,
    /// Incoming level of the last frame played, 0.0–1.0.
    pub output_level: f32,
    /// The jitter buffer's counters.
    pub jitter: JitterStats,
}

#[derive(Default)]
struct Shared {
    muted: AtomicBool,
    frames_sent: AtomicU64,
    payload_bytes_sent: AtomicU64,
    frames_played: AtomicU64,
    frames_concealed: AtomicU64,
    input_level: AtomicU32,
    output_level: AtomicU32,
}

/// Mute and counters of a session, shareable (see [`Session::controls`]).
#[derive(Clone)]
pub struct SessionControls {
    shared: Arc<Shared>,
    mixer: Arc<Mutex<Mixer>>,
}

impl SessionControls {
    /// Mutes or unmutes the outgoing audio (silence is sent while muted).
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether the outgoing audio is muted.
    pub fn muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// The session's counters now.
    pub fn stats(&self) -> MediaStats {
        let s = &self.shared;
        MediaStats {
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            payload_bytes_sent: s.payload_bytes_sent.load(Ordering::Relaxed),
            frames_played: s.frames_played.load(Ordering::Relaxed),
            frames_concealed: s.frames_concealed.load(Ordering::Relaxed),
            input_level: f32::from_bits(s.input_level.load(Ordering::Relaxed)),
            output_level: f32::from_bits(s.output_level.load(Ordering::Relaxed)),
            jitter: self.mixer.lock().map(|m| m.stats()).unwrap_or_default(),
        }
    }
}

/// A media session: create with [`Session::offer`] or [`Session::answer`], end with
/// [`Session::close`] (dropping it stops the tasks but leaves the sink unfinished).
pub struct Session {
    pc: Arc<dyn PeerConnection>,
    events: Option<mpsc::UnboundedReceiver<SessionEvent>>,
    shared: Arc<Shared>,
    mixer: Arc<Mutex<Mixer>>,
    stop: watch::Sender<bool>,
    sender: JoinHandle<()>,
    playout: Option<JoinHandle<Result<(), crate::audio::AudioError>>>,
}

impl Session {
    /// Starts a session as the caller: returns it with the offer to send.
    pub async fn offer(
        config: &MediaConfig,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
    ) -> Result<(Session, String), MediaError> {
        Session::offer_receiving(config, source, sink, 0).await
    }

    /// Starts a session with a room's forwarder (an SFU): like [`Session::offer`], with
    /// `slots` more incoming streams offered, so that the forwarder can send up to
    /// `slots + 1` speakers without renegotiating; they are mixed at playout.
    pub async fn offer_to_room(
        config: &MediaConfig,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
        slots: usize,
    ) -> Result<(Session, String), MediaError> {
        Session::offer_receiving(config, source, sink, slots).await
    }

    async fn offer_receiving(
        config: &MediaConfig,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
        receive_slots: usize,
    ) -> Result<(Session, String), MediaError> {
        let (session, mut gathered) = Session::build(config, source, sink, receive_slots).await?;
        let made = async {
            let offer = session.pc.create_offer(None).await.map_err(webrtc_error)?;
            session.pc.set_local_description(offer).await.map_err(webrtc_error)?;
            session.gathered_sdp(&mut gathered, config.gather_timeout).await
        }
        .await;
        session.or_close(made).await
    }

    /// Starts a session as the callee from the caller's offer: returns it with the
    /// answer to send back.
    pub async fn answer(
        config: &MediaConfig,
        offer: &str,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
    ) -> Result<(Session, String), MediaError> {
        let (session, mut gathered) = Session::build(config, source, sink, 0).await?;
        let made = async {
            let offer = RTCSessionDescription::offer(offer.to_owned()).map_err(webrtc_error)?;
            session.pc.set_remote_description(offer).await.map_err(webrtc_error)?;
            let answer = session.pc.create_answer(None).await.map_err(webrtc_error)?;
            session.pc.set_local_description(answer).await.map_err(webrtc_error)?;
            session.gathered_sdp(&mut gathered, config.gather_timeout).await
        }
        .await;
        session.or_close(made).await
    }

    /// The session with its SDP, or, when making the SDP failed, the error once the
    /// connection is closed (dropping it would leave its sockets and driver behind).
    async fn or_close(self, made: Result<String, MediaError>) -> Result<(Session, String), MediaError> {
        match made {
            Ok(sdp) => Ok((self, sdp)),
            Err(e) => {
                let _ = self.close().await;
                Err(e)
            }
        }
    }

    /// Takes the callee's answer (the caller's side); media starts once ICE and DTLS
    /// are through ([`SessionEvent::Connected`]).
    pub async fn accept_answer(&self, answer: &str) -> Result<(), MediaError> {
        let answer = RTCSessionDescription::answer(answer.to_owned()).map_err(webrtc_error)?;
        self.pc.set_remote_description(answer).await.map_err(webrtc_error)
    }

    /// The connection's changes, once (later calls get `None`).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<SessionEvent>> {
        self.events.take()
    }

    /// Mutes or unmutes the outgoing audio (silence is sent while muted, so the
    /// peer's playout keeps its timing).
    pub fn set_muted(&self, muted: bool) {
        self.controls().set_muted(muted);
    }

    /// Whether the outgoing audio is muted.
    pub fn muted(&self) -> bool {
        self.controls().muted()
    }

    /// The session's counters now.
    pub fn stats(&self) -> MediaStats {
        self.controls().stats()
    }

    /// A handle on the session's mute switch and counters, for whoever does not own
    /// the session.
    pub fn controls(&self) -> SessionControls {
        SessionControls { shared: self.shared.clone(), mixer: self.mixer.clone() }
    }

    /// Ends the session: stops sending and playing, finishes the sink (a file's header
    /// is written) and closes the connection. Returns the final counters.
    pub async fn close(mut self) -> Result<MediaStats, crate::audio::AudioError> {
        let _ = self.stop.send(true);
        self.sender.abort();
        let finished = match self.playout.take() {
            Some(playout) => playout.await.unwrap_or(Ok(())),
            None => Ok(()),
        };
        if let Err(e) = self.pc.close().await {
            tracing::debug!("closing a media session: {e}");
        }
        let stats = self.stats();
        finished.map(|()| stats)
    }

    async fn build(
        config: &MediaConfig,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
        receive_slots: usize,
    ) -> Result<(Session, watch::Receiver<bool>), MediaError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let (connected_tx, connected_rx) = watch::channel(false);
        let (tracks_tx, tracks_rx) = mpsc::unbounded_channel();
        let speaking = events_tx.clone();
        let handler = Handler { events: events_tx, gathered: gathered_tx, connected: connected_tx, tracks: tracks_tx };
        let pc = peer::connection(config, handler).await?;
        let tracks = async {
            for _ in 0..receive_slots {
                let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
                pc.add_transceiver_from_kind(RtpCodecKind::Audio, Some(init)).await.map_err(webrtc_error)?;
            }
            let ssrc = rand::random::<u32>();
            let track =
                Arc::new(TrackLocalStaticSample::new(Instant::now(), peer::opus_track(ssrc)).map_err(webrtc_error)?);
            let rtp_sender = pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.map_err(webrtc_error)?;
            Ok::<_, MediaError>((ssrc, track, rtp_sender, VoiceEncoder::new(5)?))
        }
        .await;
        let (ssrc, track, rtp_sender, encoder) = match tracks {
            Ok(made) => made,
            Err(e) => {
                // Not dropped: a dropped connection leaves its sockets and driver behind.
                let _ = pc.close().await;
                return Err(e);
            }
        };

        let shared = Arc::new(Shared::default());
        let mixer = Arc::new(Mutex::new(Mixer::new(config.jitter_depth)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let sender = tokio::spawn(send_loop(SendLoop {
            track,
            sender: rtp_sender,
            ssrc,
            source,
            encoder,
            shared: shared.clone(),
            connected: connected_rx,
        }));
        tokio::spawn(receive_tracks(tracks_rx, mixer.clone(), stop_rx.clone(), receive_slots + 1));
        let playout = tokio::spawn(playout_loop(mixer.clone(), sink, shared.clone(), speaking, stop_rx));
        let session = Session {
            pc,
            events: Some(events_rx),
            shared,
            mixer,
            stop: stop_tx,
            sender,
            playout: Some(playout),
        };
        Ok((session, gathered_rx))
    }

    async fn gathered_sdp(&self, gathered: &mut watch::Receiver<bool>, timeout: Duration) -> Result<String, MediaError> {
        peer::gathered_sdp(&*self.pc, gathered, timeout).await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.sender.abort();
        if let Some(playout) = self.playout.take() {
            playout.abort();
        }
    }
}

struct SendLoop {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn webrtc::rtp_transceiver::RtpSender>,
    ssrc: u32,
    source: Box<dyn Source>,
    encoder: VoiceEncoder,
    shared: Arc<Shared>,
    connected: watch::Receiver<bool>,
}

/// Every 20 ms once connected: a frame from the source, encoded and sent.
async fn send_loop(mut s: SendLoop) {
    if s.connected.wait_for(|up| *up).await.is_err() {
        return;
    }
    let payload_type = match s.sender.get_parameters().await {
        Ok(params) => match params.rtp_parameters.codecs.first() {
            Some(codec) => codec.payload_type,
            None => {
                tracing::warn!("call: no codec negotiated for sending");
                return;
            }
        },
        Err(e) => {
            tracing::warn!("call: no send parameters: {e}");
            return;
        }
    };
    // After a stall the missed frames go out at once (tokio's default, `Burst`): the
    // source is a clock, and a sender that fell behind it would add its stall to the
    // call's latency for good.
    let mut tick = tokio::time::interval(FRAME);
    loop {
        tick.tick().await;
        let mut frame: Frame = s.source.next_frame();
        if s.shared.muted.load(Ordering::Relaxed) {
            frame = [0; crate::audio::FRAME_SAMPLES];
        }
        s.shared.input_level.store(level(&frame).to_bits(), Ordering::Relaxed);
        let packet = match s.encoder.encode(&frame) {
            Ok(packet) => Bytes::copy_from_slice(packet),
            Err(e) => {
                tracing::warn!("call: encoding a frame: {e}");
                continue;
            }
        };
        let size = packet.len() as u64;
        let sample = Sample { data: packet, duration: FRAME, ..Sample::new(Instant::now()) };
        if let Err(e) = s.track.write_sample(s.ssrc, payload_type, &sample, &[]).await {
            tracing::debug!("call: sending a frame: {e}");
            continue;
        }
        s.shared.frames_sent.fetch_add(1, Ordering::Relaxed);
        s.shared.payload_bytes_sent.fetch_add(size, Ordering::Relaxed);
    }
}

/// Reads every track the peer sends (up to `max_streams`) into a stream of its own in
/// the mixer.
async fn receive_tracks(
    mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    mixer: Arc<Mutex<Mixer>>,
    mut stop: watch::Receiver<bool>,
    max_streams: usize,
) {
    loop {
        let track = tokio::select! {
            track = tracks.recv() => match track { Some(track) => track, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        // No more streams than we offered to receive: a peer cannot make us decode
        // and mix a stream for every line of its SDP.
        let added = mixer
            .lock()
            .map_err(|_| ())
            .and_then(|mut m| if m.streams() < max_streams { m.add_stream().map_err(|_| ()) } else { Err(()) });
        let Ok(stream) = added else { continue };
        let (mixer, mut stop) = (mixer.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = track.poll() => event,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match event {
                    Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                        if let Ok(mut mixer) = mixer.lock() {
                            mixer.push(stream, packet.header.ssrc, packet.header.sequence_number, packet.payload);
                        }
                    }
                    Some(TrackRemoteEvent::OnEnded) | None => return,
                    Some(_) => {}
                }
            }
        });
    }
}

/// Every 20 ms: one mixed frame of the incoming streams into the sink, until stopped;
/// then the sink is finished.
async fn playout_loop(
    mixer: Arc<Mutex<Mixer>>,
    mut sink: Box<dyn Sink>,
    shared: Arc<Shared>,
    speaking: mpsc::UnboundedSender<SessionEvent>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), crate::audio::AudioError> {
    // Playout keeps to the clock like a sound card: after a stall it plays the frames
    // it owes at once (`Burst`), so the jitter buffers do not keep the stall as latency.
    let mut tick = tokio::time::interval(FRAME);
    let (mut failed, mut started) = (None, false);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let (mixed, changes) = match mixer.lock() {
            Ok(mut mixer) => (mixer.tick(), mixer.take_speaking()),
            Err(_) => break,
        };
        for (ssrc, now) in changes {
            let _ = speaking.send(SessionEvent::Speaking { ssrc, speaking: now });
        }
        let Some(mixed) = mixed else {
            // Once playout has started, a recording keeps the call's timing: the
            // moments with nothing to play are silence, not cut out.
            if started && failed.is_none() {
                if let Err(e) = sink.write(&[0; crate::audio::FRAME_SAMPLES]) {
                    tracing::warn!("call: writing received audio: {e}");
                    failed = Some(e);
                }
                shared.output_level.store(0f32.to_bits(), Ordering::Relaxed);
            }
            continue;
        };
        started = true;
        shared.frames_concealed.fetch_add(mixed.concealed, Ordering::Relaxed);
        shared.output_level.store(level(&mixed.frame).to_bits(), Ordering::Relaxed);
        shared.frames_played.fetch_add(1, Ordering::Relaxed);
        if failed.is_none()
            && let Err(e) = sink.write(&mixed.frame)
        {
            // Keep playing (the call goes on); report once at the end.
            tracing::warn!("call: writing received audio: {e}");
            failed = Some(e);
        }
    }
    let finished = sink.finish();
    match failed {
        Some(e) => Err(e),
        None => finished,
    }
}
