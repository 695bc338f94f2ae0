//! kith's voice media: WebRTC sessions carrying Opus at 48 kHz in 20 ms frames, the
//! jitter buffer and loss concealment in front of playout, and audio files as sources
//! and sinks. No libp2p here: signalling (who calls whom, and carrying the SDP in an
//! authenticated channel) is kith-p2p's.
#![forbid(unsafe_code)]

pub mod audio;
pub mod codec;
#[cfg(feature = "devices")]
pub mod device;
pub mod jitter;
pub mod mixer;
mod peer;
pub mod resample;
pub mod session;
pub mod sfu;
pub mod speech;
pub mod stream;
pub mod tone;
pub mod turn;
pub mod wav;

pub use audio::{Discard, Frame, Silence, Sink, Source};
pub use session::{MediaConfig, MediaError, MediaStats, Session, SessionControls, SessionEvent};

/// Most streams a participant receives from a room's forwarder (speakers at once).
pub const MAX_ROOM_SLOTS: usize = 8;
