//! Voice calls between contacts: signalling over `/kith/call/1` ([`signal`]), the
//! calls task that keeps every call's state ([`manager`]), and what the control API
//! shows of them. The media itself (WebRTC, Opus, jitter buffer) is `kith-call`'s.
//!
//! A call's life: the caller gathers its ICE candidates and sends an offer; the
//! callee's node checks that the caller is an accepted contact (a stranger or a
//! blocked contact is refused and nothing rings), rings and replies; the callee
//! answers; media flows once ICE and DTLS are through; either side hangs up, and both
//! write the call into their history with the reason it ended.

pub mod manager;
pub mod room;
pub mod signal;
pub mod turn;
pub mod voice_room;

use serde::{Deserialize, Serialize};

pub use manager::{AudioChoice, CallTimers};
pub use signal::{CallId, HangupReason};

/// The concrete IP addresses among `addrs` (their first component), sorted, without
/// duplicates: where a node or a media node gathers its ICE host candidates. A relay
/// circuit's address is the relay's, not ours, and is left out.
pub fn media_ips(addrs: &[libp2p::Multiaddr]) -> Vec<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    let mut ips: Vec<std::net::IpAddr> = addrs
        .iter()
        .filter(|a| !a.iter().any(|p| p == Protocol::P2pCircuit))
        .filter_map(|a| match a.iter().next() {
            Some(Protocol::Ip4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(Protocol::Ip6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        })
        .filter(|ip| !ip.is_unspecified())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// What joining a group's voice room takes, from the node's view of the group.
#[derive(Debug, Clone)]
pub struct RoomTicket {
    /// The group.
    pub group: kith_storage::GroupId,
    /// Its name.
    pub name: String,
    /// The room's id at the media node (derived from the group's secret).
    pub room: room::RoomId,
    /// The group's relays, in order: the room is on the first that serves rooms.
    pub relays: Vec<libp2p::Multiaddr>,
    /// Its members now.
    pub members: Vec<libp2p::PeerId>,
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// The offer is on its way.
    Calling,
    /// The callee's node rings.
    Ringing,
    /// Answered; ICE and DTLS are being set up.
    Connecting,
    /// Media flows.
    Active,
    /// Over.
    Ended,
}

/// Why a call ended, from this side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// We hung up (or cancelled our call).
    HungUp,
    /// The peer hung up.
    RemoteHungUp,
    /// The callee declined.
    Declined,
    /// Nobody answered in time.
    NoAnswer,
    /// The peer could not be reached (offline, no address).
    Unreachable,
    /// The peer's node refused the call (we are not its contact, or blocked).
    Refused,
    /// The peer was in another call.
    Busy,
    /// Media could not be set up or was lost.
    Failed,
}

impl EndReason {
    /// The reason's name in the API and the history.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::HungUp => "hung_up",
            EndReason::RemoteHungUp => "remote_hung_up",
            EndReason::Declined => "declined",
            EndReason::NoAnswer => "no_answer",
            EndReason::Unreachable => "unreachable",
            EndReason::Refused => "refused",
            EndReason::Busy => "busy",
            EndReason::Failed => "failed",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call in progress, as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallView {
    /// The call's id (hex).
    pub id: String,
    /// The other side's peer id.
    pub peer: String,
    /// Whether we placed it.
    pub outgoing: bool,
    /// Where it stands.
    pub state: CallState,
    /// When it was placed or rang here (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// When it was answered.
    pub answered_at_ms: Option<u64>,
    /// Whether our side is muted.
    pub muted: bool,
    /// Frames sent so far.
    pub frames_sent: u64,
    /// Frames played (or recorded) so far.
    pub frames_played: u64,
    /// Of those, frames rebuilt or concealed after a loss.
    pub frames_concealed: u64,
    /// Our outgoing level now, 0.0–1.0.
    pub input_level: f32,
    /// The peer's level now, 0.0–1.0.
    pub output_level: f32,
    /// Whether the peer is speaking now (see [`crate::node::Event::CallSpeaking`]).
    #[serde(default)]
    pub peer_speaking: bool,
}

/// Why a call request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Only accepted contacts can be called.
    #[error("{0} is not an accepted contact")]
    NotContact(String),
    /// Already in a call.
    #[error("already in a call: hang up first")]
    InCall,
    /// No call matches.
    #[error("no call matches {0:?}")]
    NoSuchCall(String),
    /// Several calls match: give the call id.
    #[error("several calls match: give the call id")]
    Ambiguous,
    /// An audio file could not be opened or is not 48 kHz 16-bit WAV.
    #[error("audio: {0}")]
    Audio(String),
    /// The media session could not be set up.
    #[error("media: {0}")]
    Media(String),
    /// The call ended before the request was through.
    #[error("the call ended: {0}")]
    Ended(EndReason),
    /// No relay of the group took us into its voice room (each relay's reason).
    #[error("no relay of the group took us into its voice room: {0}")]
    Room(String),
    /// Not in that group's voice room.
    #[error("not in the voice room of {0}")]
    NotInRoom(String),
    /// The history could not be read.
    #[error("storage: {0}")]
    Storage(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_ips_are_our_concrete_addresses_not_a_relays_circuit() {
        let addrs: Vec<libp2p::Multiaddr> = [
            "/ip4/10.9.0.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4002",
            "/ip4/10.9.0.1/udp/4001/quic-v1",
            "/ip4/10.9.0.3/tcp/4001/p2p/12D3KooWAcyfJ5CkB2JSPGbRsaMW2SrnEMxmW8XbRyiPMUXcJ3wq/p2p-circuit",
            "/dns4/example.org/tcp/1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(media_ips(&addrs), vec![std::net::IpAddr::from([10, 9, 0, 1])]);
    }
}
