//! What every kith peer connection has in common, for calls and a room's forwarder
//! alike: the codecs and settings it is built with, the events it reports, kith's one
//! Opus track, and waiting for a complete (non-trickle) SDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::{RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy};
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, SettingEngineBuilder,
};

use crate::session::{MediaConfig, MediaError, SessionEvent, webrtc_error};

/// Reports a connection's events into channels.
pub(crate) struct Handler {
    pub(crate) events: mpsc::UnboundedSender<SessionEvent>,
    pub(crate) gathered: watch::Sender<bool>,
    pub(crate) connected: watch::Sender<bool>,
    pub(crate) tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let event = match state {
            RTCPeerConnectionState::Connected => {
                let _ = self.connected.send(true);
                SessionEvent::Connected
            }
            RTCPeerConnectionState::Disconnected => SessionEvent::Disconnected,
            RTCPeerConnectionState::Failed => SessionEvent::Failed,
            _ => return,
        };
        let _ = self.events.send(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// How long a call waits for a direct path before it takes a relayed one.
const RELAY_ACCEPTANCE_WAIT: Duration = Duration::from_millis(1000);

/// A peer connection with host candidates on `config.bind` (one UDP socket each, on
/// an ephemeral port), no mDNS, and `config`'s ICE timeouts.
pub(crate) async fn connection(config: &MediaConfig, handler: Handler) -> Result<Arc<dyn PeerConnection>, MediaError> {
    let bind: Vec<SocketAddr> =
        config.bind.iter().filter(|ip| !ip.is_unspecified()).map(|ip| SocketAddr::new(*ip, 0)).collect();
    if bind.is_empty() {
        return Err(MediaError::NoAddress);
    }
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(webrtc_error)?;
    // A relayed pair is taken only after this long without a direct one (webrtc's
    // default is 2 s, which each side waits in turn): direct paths on a LAN answer in
    // well under a second; with relayed candidates only there is nothing to wait for.
    let relay_wait = if config.relay_only { Duration::ZERO } else { RELAY_ACCEPTANCE_WAIT };
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_ice_timeouts(Some(config.ice_disconnected), Some(config.ice_failed), Some(Duration::from_secs(1)))
        .with_relay_acceptance_min_wait(Some(relay_wait))
        .build();
    // Each media relay serves twice: as a STUN server, which tells us the address a
    // NAT maps our socket to (a server-reflexive candidate, for a direct path through
    // two NATs), and as a TURN server, for when no direct path works.
    let ice_servers = config
        .relays
        .iter()
        .flat_map(|grant| {
            [
                RTCIceServer { urls: vec![format!("stun:{}", grant.addr)], ..Default::default() },
                RTCIceServer {
                    urls: vec![format!("turn:{}?transport=udp", grant.addr)],
                    username: grant.username.clone(),
                    credential: grant.password.clone(),
                },
            ]
        })
        .collect();
    let policy = if config.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
    let configuration =
        RTCConfigurationBuilder::new().with_ice_servers(ice_servers).with_ice_transport_policy(policy).build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(bind)
        .build()
        .await
        .map_err(webrtc_error)?;
    Ok(Arc::new(pc))
}

/// kith's audio track: Opus at 48 kHz (mono, though SDP always says
/// "opus/48000/2", RFC 7587) with in-band FEC, sent as `ssrc`.
pub(crate) fn opus_track(ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "kith-call".to_owned(),
        format!("kith-voice-{ssrc:08x}"),
        "voice".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: crate::audio::SAMPLE_RATE,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )
}

/// The local SDP once ICE gathering is complete, or after `timeout` with the
/// candidates gathered by then (a media relay that does not answer costs its
/// relayed candidate, not the call); an error only if there are none.
pub(crate) async fn gathered_sdp(
    pc: &dyn PeerConnection,
    gathered: &mut watch::Receiver<bool>,
    timeout: Duration,
) -> Result<String, MediaError> {
    let complete = matches!(tokio::time::timeout(timeout, gathered.wait_for(|done| *done)).await, Ok(Ok(_)));
    let local = pc.local_description().await.ok_or_else(|| webrtc_error("no local description"))?;
    if !complete && !local.sdp.contains("a=candidate:") {
        return Err(MediaError::GatherTimeout(timeout));
    }
    Ok(local.sdp)
}
