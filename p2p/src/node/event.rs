//! Events a node reports to its clients (TUI, `kith follow`, tests).

use kith_storage::MessageState;
use serde::{Deserialize, Serialize};

use crate::views::{ContactView, FileEntryView, GroupReceiptsView, GroupView, MessageView, ProfileView};

/// Something that happened on the node. Serialized as `{"type": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The node listens on a new address.
    Listening {
        /// The address.
        addr: String,
    },
    /// A message from a contact was stored.
    MessageReceived {
        /// The message.
        message: MessageView,
    },
    /// A message was edited, deleted for everyone or reacted to (by anyone, us
    /// included): `message` is how it is shown now.
    MessageChanged {
        /// The changed message, its changes applied.
        message: MessageView,
    },
    /// A contact or group member is typing in a conversation (only with presence on;
    /// it stops showing a few seconds after the last of these).
    Typing {
        /// The conversation: the 1:1 conversation's id, or the group's.
        conversation: String,
        /// The group, when it types in one.
        group: Option<String>,
        /// Who types.
        peer_id: String,
    },
    /// A contact came online or went offline (only with presence on).
    Presence {
        /// The contact's peer id.
        peer_id: String,
        /// Online now.
        online: bool,
        /// When it was last seen online (ms since the Unix epoch).
        last_seen: Option<u64>,
    },
    /// One of our messages moved to a new delivery state.
    MessageStateChanged {
        /// The message id.
        id: String,
        /// The conversation it belongs to.
        conversation: String,
        /// The new state.
        state: MessageState,
    },
    /// A member of a group received or read one of our messages there.
    MessageReceipts {
        /// The message id.
        id: String,
        /// The group's conversation.
        conversation: String,
        /// Where the message stands with the group's members now.
        receipts: GroupReceiptsView,
    },
    /// A contact's profile changed (or arrived for the first time), or ours did.
    ProfileChanged {
        /// The profile as it is now (without the picture's bytes).
        profile: ProfileView,
    },
    /// A contact's end-to-end key changed to one we had not seen: a warning for the
    /// conversation. With the contact verified, messages to it are held until it is
    /// verified again (`kith verify CONTACT --mark`).
    KeyChanged {
        /// The contact as it is now (`key_changed`, and `verified` if it was).
        contact: ContactView,
    },
    /// A stranger asked to become a contact (or wrote without being one).
    ContactRequest {
        /// Who asks.
        contact: ContactView,
    },
    /// A contact was added, accepted, or changed state.
    ContactChanged {
        /// The contact now.
        contact: ContactView,
    },
    /// A connection to a peer came up.
    PeerConnected {
        /// The peer.
        peer_id: String,
    },
    /// A connection to a peer opened (every connection, not just a peer's first):
    /// whether it runs through a relay circuit tells a hole-punched (direct) path from
    /// a relayed one.
    ConnectionOpened {
        /// The peer.
        peer_id: String,
        /// The remote address of the connection (for an inbound relayed connection,
        /// just `/p2p/<peer id>`).
        addr: String,
        /// Whether the connection goes through a relay (`/p2p-circuit`).
        relayed: bool,
    },
    /// The last connection to a peer went down.
    PeerDisconnected {
        /// The peer.
        peer_id: String,
    },
    /// A relay refused to hold mail for a recipient; the messages stay pending and
    /// are retried (through another relay, or directly when the peer is back).
    RelayRefused {
        /// The relay's peer id.
        relay: String,
        /// The recipient whose mailbox it is.
        recipient: String,
        /// Stable reason code (`quota_count`, `rate_limited`, `not_member`, ...).
        code: String,
        /// Human-readable reason.
        message: String,
    },
    /// A group was created, joined, changed, or we left it (or were removed).
    GroupChanged {
        /// The group now.
        group: GroupView,
    },
    /// Someone who is not an accepted contact added us to a group: an invitation to
    /// accept (`group_accept`) or decline (`group_decline`). Until then we are not in it.
    GroupInvitation {
        /// The group, with `invited_by` set.
        group: GroupView,
    },
    /// A file is being fetched: `have` of `size` bytes are here and verified.
    /// Reported at most a few times a second per file.
    FileProgress {
        /// The file's id (64 hex characters).
        id: String,
        /// The file name.
        name: String,
        /// Bytes held and verified so far.
        have: u64,
        /// The file's size in bytes.
        size: u64,
    },
    /// A file we send is being sealed, or taken by a media node: `have` of `size`
    /// bytes done in this phase. Reported at most a few times a second.
    FileSending {
        /// The file's path on the node's machine, as given to `send_file`.
        path: String,
        /// What is being done.
        phase: SendingPhase,
        /// Bytes done so far in this phase.
        have: u64,
        /// The file's size in bytes.
        size: u64,
    },
    /// A file was fetched, verified and saved (or an attempt failed and will be
    /// retried: then `file.error` says why and `file.state` is `downloading`).
    FileChanged {
        /// The file now.
        file: FileEntryView,
    },
    /// The node no longer keeps a file: its message was deleted for everyone,
    /// hidden (one we received), or removed with its conversation (a copy saved
    /// in the files folder stays).
    FileRemoved {
        /// The file's id (hex).
        id: String,
        /// The message that carried it.
        message: String,
    },
    /// A call rings: at the callee (`outgoing` false: answer or hang up), or at the
    /// caller once the callee's node rings (`outgoing` true).
    CallRinging {
        /// The call's id (hex).
        call: String,
        /// The other side.
        peer: String,
        /// Whether we placed it.
        outgoing: bool,
    },
    /// The callee picked up.
    CallAnswered {
        /// The call's id.
        call: String,
        /// The other side.
        peer: String,
    },
    /// The call's media is through (ICE and DTLS up): audio flows.
    CallConnected {
        /// The call's id.
        call: String,
        /// The other side.
        peer: String,
    },
    /// A call ended; it is in the history (`calls`).
    CallEnded {
        /// The call's id.
        call: String,
        /// The other side.
        peer: String,
        /// Why.
        reason: crate::call::EndReason,
        /// How long it was answered, in ms (0 if never).
        duration_ms: u64,
    },
    /// The other side of a call started or stopped speaking (voice activity in
    /// what we receive, with a 400 ms hangover).
    CallSpeaking {
        /// The call's id.
        call: String,
        /// The other side.
        peer: String,
        /// Whether they speak now.
        speaking: bool,
    },
    /// We are in a group's voice room: media flows to and from its forwarder.
    RoomJoined {
        /// The group's id.
        group: String,
    },
    /// Someone came into a voice room we are in.
    RoomParticipantJoined {
        /// The group's id.
        group: String,
        /// Who.
        peer: String,
    },
    /// Someone left a voice room we are in (or was ejected).
    RoomParticipantLeft {
        /// The group's id.
        group: String,
        /// Who.
        peer: String,
    },
    /// Someone in a voice room we are in started or stopped speaking.
    RoomSpeaking {
        /// The group's id.
        group: String,
        /// Who.
        peer: String,
        /// Whether they speak now.
        speaking: bool,
    },
    /// We are out of a group's voice room.
    RoomLeft {
        /// The group's id.
        group: String,
        /// Why.
        reason: crate::call::voice_room::LeftReason,
    },
    /// The subscriber fell behind and missed `missed` events: re-read state.
    Lagged {
        /// How many events were dropped for this subscriber.
        missed: u64,
    },
}

/// What sending a file is doing ([`Event::FileSending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendingPhase {
    /// Reading, encrypting and storing it in the blob store.
    Sealing,
    /// A media node pulling it (once per media node).
    Uploading,
}
