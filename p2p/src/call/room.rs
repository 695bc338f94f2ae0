//! `/kith/room/1`: a group's voice room on a media node acting as its forwarder (SFU).
//!
//! One stream per participant, open for as long as it is in the room: the member
//! writes a [`Join`] frame (the room's id and its SDP offer); the media node answers
//! [`RoomFrame::Joined`] (its SDP answer and who is in the room) or
//! [`RoomFrame::Refused`], then writes [`RoomFrame::Participants`] whenever someone
//! comes or goes and [`RoomFrame::Streams`] whenever a speaker takes one of the
//! member's incoming streams. The member may write [`RoomRequest::Eject`] frames; closing the
//! stream leaves the room.
//!
//! The room id is derived from the group's secret (`blake3::derive_key("kith voice
//! room v1", secret)`), so the media node learns neither the group nor its members'
//! roles, only who is connected to which room id. Who may stay is decided by the
//! members: each member's node checks the participants against the group's signed
//! membership and asks the media node to eject anyone who is not a member (a removed
//! member still knows the secret; see docs/SECURITY.md).

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::wire;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/room/1");

/// Frame version.
const VERSION: u32 = 1;

/// Largest frame either way: an SDP with several candidates and a participant list.
pub const MAX_FRAME_LEN: usize = 32 * 1024;

/// Most participants a media node lists (and, by default, admits) per room.
pub const MAX_PARTICIPANTS: usize = 16;

/// A room's id.
pub type RoomId = [u8; 32];

/// Derivation context of room ids.
pub const ROOM_ID_CONTEXT: &str = "kith voice room v1";

/// The first frame a member writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// The room.
    pub room: RoomId,
    /// The member's complete SDP offer.
    #[serde(deserialize_with = "wire::Max::<MAX_FRAME_LEN>::text")]
    pub sdp: String,
}

/// Why a media node refused a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum RoomRefusal {
    /// Its access policy does not admit the member.
    #[error("the media node does not admit us")]
    NotAllowed,
    /// The room has [`MAX_PARTICIPANTS`] (or the node's own limit) already.
    #[error("the room is full")]
    Full,
    /// The node holds as many rooms as it may.
    #[error("the media node is busy")]
    Busy,
    /// The offer could not be answered.
    #[error("the media node could not answer the offer")]
    BadOffer,
}

/// Whose audio one of a member's incoming streams carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOwner {
    /// The stream's SSRC, as the member receives it.
    pub ssrc: u32,
    /// The speaker's peer id, as bytes.
    #[serde(with = "wire::bytes")]
    pub peer: Vec<u8>,
}

/// A frame from the media node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum RoomFrame {
    /// In: the node's SDP answer and who is in the room (peer ids as bytes).
    Joined {
        /// The answer.
        #[serde(deserialize_with = "wire::Max::<MAX_FRAME_LEN>::text")]
        sdp: String,
        /// Everyone in the room, us included.
        #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_PARTICIPANTS>::bytes_seq")]
        participants: Vec<Vec<u8>>,
    },
    /// Not in.
    Refused {
        /// Why.
        reason: RoomRefusal,
    },
    /// Who is in the room now.
    Participants {
        /// Everyone in the room, us included.
        #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_PARTICIPANTS>::bytes_seq")]
        participants: Vec<Vec<u8>>,
    },
    /// Whose audio each of our incoming streams carries now (sent when it changes),
    /// so that the member can tell who is speaking.
    Streams {
        /// The streams with a speaker.
        #[serde(deserialize_with = "wire::Max::<MAX_PARTICIPANTS>::seq")]
        streams: Vec<StreamOwner>,
    },
}

/// A later frame from the member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum RoomRequest {
    /// Take this participant out: not a member of the group, by the asking member's
    /// signed membership.
    Eject {
        /// Its peer id, as bytes.
        #[serde(with = "wire::bytes")]
        peer: Vec<u8>,
    },
}

/// Writes one frame.
pub async fn write<T: Serialize, W: AsyncWrite + Unpin + Send>(io: &mut W, frame: &T) -> std::io::Result<()> {
    wire::write_body(io, frame, MAX_FRAME_LEN, VERSION).await
}

/// Reads one frame.
pub async fn read<T: serde::de::DeserializeOwned, R: AsyncRead + Unpin + Send>(io: &mut R) -> std::io::Result<T> {
    wire::read_body(io, MAX_FRAME_LEN, VERSION).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frames_round_trip_and_lists_are_bounded() {
        let join = Join { room: [3; 32], sdp: "v=0\r\n".into() };
        let mut buf = Cursor::new(Vec::new());
        write(&mut buf, &join).await.unwrap();
        assert_eq!(read::<Join, _>(&mut Cursor::new(buf.into_inner())).await.unwrap(), join);
        for frame in [
            RoomFrame::Joined { sdp: "v=0".into(), participants: vec![vec![1; 38]; 3] },
            RoomFrame::Refused { reason: RoomRefusal::Full },
            RoomFrame::Participants { participants: vec![] },
            RoomFrame::Streams { streams: vec![StreamOwner { ssrc: 7, peer: vec![1; 38] }] },
        ] {
            let mut buf = Cursor::new(Vec::new());
            write(&mut buf, &frame).await.unwrap();
            assert_eq!(read::<RoomFrame, _>(&mut Cursor::new(buf.into_inner())).await.unwrap(), frame);
        }
        let crowd = RoomFrame::Participants { participants: vec![vec![1; 38]; MAX_PARTICIPANTS + 1] };
        let raw = wire::raw_frame(&crowd, VERSION);
        assert!(read::<RoomFrame, _>(&mut Cursor::new(raw)).await.is_err(), "a list over the bound is refused");
    }
}
