//! Everything that can change the interface's state, as data.
//!
//! The runtime turns terminal input, node events and the answers to requests into
//! [`Action`]s and feeds them to [`crate::app::update`]; `update` answers with
//! [`Effect`]s, the requests it wants performed. Tests drive the interface by
//! building actions by hand.

use crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind, MouseEvent, MouseEventKind};
use kith_p2p::node::presence::PresenceView;
use kith_p2p::node::{Event, GroupChange, Status};
use kith_p2p::views::{
    CallRecordView, ContactView, ConversationView, FileEntryView, GroupView, InboxEntry, MessageView, ProfileView,
    RequestView, VerifyView,
};

use crate::app::{CallInfo, RoomInfo, SearchHit, SearchQuery};
use crate::picture::{Encoded, Picture};

/// An input to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// A key was pressed.
    Key(KeyEvent),
    /// A mouse button or wheel was used.
    Mouse(MouseEvent),
    /// Text was pasted (bracketed paste); inserted verbatim.
    Paste(String),
    /// A path to a file that exists was pasted (the runtime looked: a bracketed
    /// paste of one line that is an absolute or `~/` path of a regular file). Into
    /// an empty input it becomes `/file <path>`, to be confirmed with Enter; else it
    /// is inserted like any paste.
    PastedFile(String),
    /// The terminal now has this size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// The terminal window gained focus.
    FocusGained,
    /// The terminal window lost focus.
    FocusLost,
    /// Time passed (about a second); expires transient status messages.
    Tick,
    /// A fraction of a second passed while a call or a voice room is in progress:
    /// time to ask the node where they stand (their levels move). The runtime sends
    /// it only then ([`App::wants_call_ticks`](crate::App::wants_call_ticks)).
    CallTick,
    /// The wait the search overlay asked for after an edit of its query ended
    /// ([`Effect::SearchAfter`]): time to search, unless the query changed since.
    SearchDue {
        /// The edit the wait followed.
        edit: u64,
    },
    /// The wall clock now, in Unix milliseconds, for the times in the log (`update`
    /// reads no clock itself); the runtime sends it at start and with every tick.
    Clock {
        /// Milliseconds since the Unix epoch.
        unix_ms: u64,
    },
    /// The node reported an event.
    Node(Event),
    /// A request finished.
    Done(Response),
    /// A request failed: the node refused it, or it never reached the node.
    Failed {
        /// What was asked.
        effect: Effect,
        /// Why it failed, for the status line.
        error: String,
    },
    /// A request was sent but its outcome is unknown: the connection broke before
    /// its answer came, so the node may have carried it out (a message may be
    /// stored and on its way) or not.
    Interrupted {
        /// What was asked.
        effect: Effect,
        /// How the connection broke.
        error: String,
    },
    /// The connection to the node is gone (or an attempt to get it back failed).
    Disconnected {
        /// Why.
        error: String,
        /// When the runtime tries again; `None` if it does not.
        retry_in: Option<std::time::Duration>,
    },
    /// The connection to the node is back after [`Action::Disconnected`], subscribed
    /// to events again: what is shown must be reloaded.
    Reconnected,
}

impl Action {
    /// The action for a terminal event; `None` for events the interface ignores
    /// (key releases, mouse movement).
    pub fn from_terminal(event: TermEvent) -> Option<Action> {
        match event {
            TermEvent::Key(key) if key.kind == KeyEventKind::Release => None,
            TermEvent::Key(key) => Some(Action::Key(key)),
            TermEvent::Mouse(mouse) => match mouse.kind {
                MouseEventKind::Moved | MouseEventKind::Drag(_) | MouseEventKind::Up(_) => None,
                _ => Some(Action::Mouse(mouse)),
            },
            TermEvent::Paste(text) => Some(Action::Paste(text)),
            TermEvent::Resize(width, height) => Some(Action::Resize { width, height }),
            TermEvent::FocusGained => Some(Action::FocusGained),
            TermEvent::FocusLost => Some(Action::FocusLost),
        }
    }
}

/// The answer to a request, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The conversation list: contacts, pending requests, unread counts.
    Snapshot {
        /// All contacts.
        contacts: Vec<ContactView>,
        /// Pending incoming requests.
        requests: Vec<RequestView>,
        /// Conversations with unread messages.
        inbox: Vec<InboxEntry>,
    },
    /// The node's status (our id, connected peers, outbox).
    Status(Status),
    /// Every group we know, including those we left.
    Groups(Vec<GroupView>),
    /// The contacts' presence ([`Effect::LoadPresence`]): those heard from since the
    /// node started, online first; empty when the user turned presence off.
    Presence(Vec<PresenceView>),
    /// The node told a conversation's connected peers that we are typing
    /// ([`Effect::Typing`]).
    Typing {
        /// The contact's peer id, or the group id.
        contact: String,
    },
    /// A group request succeeded: the group now.
    GroupUpdated {
        /// What was asked.
        op: GroupChange,
        /// The group after the change.
        group: GroupView,
    },
    /// A page of a conversation's history, oldest first.
    History {
        /// The contact's peer id.
        contact: String,
        /// The `before` the page was asked with (`None`: the newest page).
        before: Option<String>,
        /// The page size asked for; a shorter page means the start was reached.
        limit: usize,
        /// The messages.
        messages: Vec<MessageView>,
    },
    /// A conversation's newest message, for the list preview.
    Preview {
        /// The contact's peer id.
        contact: String,
        /// The newest message, if any.
        message: Option<MessageView>,
    },
    /// A message was queued for sending.
    Sent(MessageView),
    /// A message was edited, deleted for everyone or reacted to from here
    /// ([`Effect::Edit`], [`Effect::Delete`], [`Effect::React`]): the message as it
    /// shows now.
    Changed(MessageView),
    /// A message was deleted for us only ([`Effect::Delete`] not for everyone): the
    /// node no longer shows it.
    Hidden {
        /// Its id.
        id: String,
    },
    /// A conversation was marked read.
    Marked {
        /// The contact's peer id.
        contact: String,
    },
    /// Our invite.
    Invite {
        /// The `kith:` URI.
        invite: String,
        /// The URI as a terminal-printable QR code.
        qr: String,
    },
    /// `/add` succeeded.
    Added(ContactView),
    /// `/accept` or `/block` succeeded: the contact now.
    ContactUpdated(ContactView),
    /// `/reject` succeeded: the contact is gone.
    Removed {
        /// Its peer id.
        peer_id: String,
    },
    /// `/remove` succeeded: the contact and its conversation are gone.
    ContactRemoved {
        /// Its peer id.
        peer_id: String,
    },
    /// `/unblock` succeeded: the contact now.
    Unblocked(ContactView),
    /// `/rename` succeeded: the contact now.
    Renamed(ContactView),
    /// Every conversation's mute and draft ([`Effect::LoadConversations`]).
    Conversations(Vec<ConversationView>),
    /// `/mute-chat` or `/unmute-chat` succeeded: the conversation now.
    MuteChanged(ConversationView),
    /// A draft was saved ([`Effect::SaveDraft`]).
    DraftSaved {
        /// The contact's peer id, or the group id.
        contact: String,
        /// The text saved.
        text: String,
    },
    /// The node's status, asked for by `/status` (to be shown, not only used).
    StatusReport(Status),
    /// A conversation's files and where each stands ([`Effect::LoadFiles`]).
    Files {
        /// The contact's peer id, or the group id.
        contact: String,
        /// Its files.
        files: Vec<FileEntryView>,
    },
    /// A file asked for with [`Effect::GetFile`]: where it stands now.
    File(FileEntryView),
    /// A file was handed to the system's opener ([`Effect::OpenFile`]).
    Opened {
        /// The file.
        path: String,
    },
    /// A picture decoded for its preview ([`Effect::DecodePicture`]).
    Picture {
        /// The file's id.
        id: String,
        /// The picture, shrunk for previews.
        picture: Picture,
    },
    /// A picture encoded for the terminal's graphics protocol
    /// ([`Effect::EncodePicture`]).
    Encoded {
        /// The file's id.
        id: String,
        /// The room it was encoded for, in cells (columns, rows); the picture itself
        /// may be smaller ([`Encoded::size`]).
        room: (u16, u16),
        /// The encoding.
        picture: Encoded,
    },
    /// A call request succeeded ([`Effect::Call`], [`Effect::Answer`],
    /// [`Effect::Hangup`], [`Effect::Mute`]): the call now.
    Call {
        /// What was asked.
        op: CallOp,
        /// The call after it (ended, after a hang-up).
        call: CallInfo,
    },
    /// The calls in progress and the newest ended ones ([`Effect::LoadCalls`]).
    Calls {
        /// The calls in progress, oldest first.
        active: Vec<CallInfo>,
        /// Ended calls, newest last.
        history: Vec<CallRecordView>,
    },
    /// A voice-room request succeeded ([`Effect::JoinRoom`], [`Effect::LeaveRoom`],
    /// [`Effect::MuteRoom`]): the room now (as it was, after leaving).
    Room {
        /// What was asked.
        op: RoomOp,
        /// The room after it.
        room: RoomInfo,
    },
    /// The voice rooms we are in ([`Effect::LoadRooms`]).
    Rooms(Vec<RoomInfo>),
    /// The messages a search found ([`Effect::Search`]), best first.
    Search {
        /// What was asked.
        query: SearchQuery,
        /// The hits.
        hits: Vec<SearchHit>,
    },
    /// A profile ([`Effect::LoadProfile`]).
    Profile {
        /// The contact asked for as the effect had it (`None`: ours).
        contact: Option<String>,
        /// Whether the picture's bytes were asked for (and so are in it, if any).
        avatar: bool,
        /// The profile.
        profile: ProfileView,
    },
    /// Our profile after [`Effect::SetProfile`].
    ProfileSet(ProfileView),
    /// A contact's safety number, after [`Effect::Verify`] (marked or unmarked as
    /// it asked).
    Verified {
        /// What the effect asked: mark (`true`), unmark (`false`), or only read.
        mark: Option<bool>,
        /// The answer.
        view: VerifyView,
    },
    /// An avatar decoded for the profile overlay or the conversation header
    /// ([`Effect::DecodeAvatar`]).
    Avatar {
        /// Whose it is.
        peer_id: String,
        /// The room it was encoded for, as asked (which of the two it is for).
        room: (u16, u16),
        /// The picture, for half-blocks.
        picture: Picture,
        /// The picture encoded for the terminal's graphics protocol, when it has one.
        encoded: Option<Encoded>,
    },
    /// The files a path being completed can become ([`Effect::ListPaths`]).
    Paths {
        /// The path as typed.
        word: String,
        /// Its completions, in cycling order.
        candidates: Vec<String>,
    },
}

/// Which call request a [`Response::Call`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOp {
    /// [`Effect::Call`].
    Call,
    /// [`Effect::Answer`].
    Answer,
    /// [`Effect::Hangup`].
    Hangup,
    /// [`Effect::Mute`].
    Mute,
}

/// Which voice-room request a [`Response::Room`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomOp {
    /// [`Effect::JoinRoom`].
    Join,
    /// [`Effect::LeaveRoom`].
    Leave,
    /// [`Effect::MuteRoom`].
    Mute,
}

/// Work the state machine asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Re-read contacts, requests and unread counts (`contacts`, `requests`, `inbox`).
    Refresh,
    /// Re-read the node status (`status`).
    LoadStatus,
    /// Re-read the groups (`groups`).
    LoadGroups,
    /// Re-read the contacts' presence (`presence`).
    LoadPresence,
    /// Tell the peers of a conversation that we are typing in it (`typing`). It has
    /// a connection of its own, so it never holds up a send; failures are quiet.
    Typing {
        /// The contact's peer id, or the group id.
        contact: String,
    },
    /// Create or change a group (`group_create`, `group_add`, ...).
    Group(GroupChange),
    /// Load a page of history (`history`).
    LoadHistory {
        /// The contact's peer id.
        contact: String,
        /// Load messages older than this id; `None` for the newest page.
        before: Option<String>,
        /// Page size.
        limit: usize,
    },
    /// Load a conversation's newest message for the list preview.
    LoadPreview {
        /// The contact's peer id.
        contact: String,
    },
    /// Send a message (`send`).
    Send {
        /// The contact's peer id.
        contact: String,
        /// The exact text typed.
        text: String,
        /// The message (id) this one answers, in the same conversation.
        reply_to: Option<String>,
    },
    /// Replace the text of one of our messages (`edit`), answered with
    /// [`Response::Changed`].
    Edit {
        /// The conversation (a contact's peer id or a group id), to give the text
        /// back to if the edit fails.
        contact: String,
        /// The message's id.
        id: String,
        /// The new text.
        text: String,
    },
    /// Delete a message (`delete`): for us only (answered with
    /// [`Response::Hidden`]), or, one of ours, for everyone ([`Response::Changed`]).
    Delete {
        /// The message's id.
        id: String,
        /// For everyone who got it, not only here.
        for_everyone: bool,
    },
    /// React to a message with an emoji, or take that reaction back (`react`),
    /// answered with [`Response::Changed`].
    React {
        /// The message's id.
        id: String,
        /// The emoji.
        emoji: String,
    },
    /// Send a file (`send_file`), answered with [`Response::Sent`].
    SendFile {
        /// The contact's peer id, or the group id.
        contact: String,
        /// The path as typed; the runtime makes it absolute against the
        /// interface's working directory (and `~/` against the home directory).
        path: String,
        /// Text sent with it.
        caption: Option<String>,
    },
    /// Read a conversation's files (`files`).
    LoadFiles {
        /// The contact's peer id, or the group id.
        contact: String,
    },
    /// Start fetching a received file (`get_file`, not waiting for it).
    GetFile {
        /// The file's id.
        id: String,
    },
    /// Open a file with the system's opener (`xdg-open`, else `open`), detached;
    /// fails (telling where the file is) when there is none.
    OpenFile {
        /// The file.
        path: String,
    },
    /// Decode a picture for its preview, off the loop; failures are quiet.
    DecodePicture {
        /// The file's id.
        id: String,
        /// Where it is.
        path: String,
    },
    /// Encode a picture for the terminal's graphics protocol to fit `room`, off the
    /// loop, answered with [`Response::Encoded`] (for the picture viewer).
    EncodePicture {
        /// The file's id.
        id: String,
        /// Where it is.
        path: String,
        /// The room for it, in cells (columns, rows).
        room: (u16, u16),
    },
    /// Read a profile (`profile`), answered with [`Response::Profile`].
    LoadProfile {
        /// The contact (peer id or name); `None`: ours.
        contact: Option<String>,
        /// Include the picture's bytes (for the profile overlay; the header needs
        /// only the status line).
        avatar: bool,
    },
    /// Read a contact's safety number (`verify`), marking the contact verified or
    /// not on the way if `mark` says so; answered with [`Response::Verified`].
    Verify {
        /// The contact (peer id or name).
        contact: String,
        /// Mark (`true`) or unmark (`false`) it verified; `None`: only read.
        mark: Option<bool>,
    },
    /// Change our profile (`set_profile`), answered with [`Response::ProfileSet`].
    /// What is `None` stays; an empty name or status clears it.
    SetProfile {
        /// A new name.
        name: Option<String>,
        /// A new status line.
        status: Option<String>,
        /// A picture file to make the avatar from, as typed; the runtime makes it
        /// absolute as for [`Effect::SendFile`].
        avatar: Option<String>,
        /// Drop the avatar.
        clear_avatar: bool,
    },
    /// Decode an avatar (base64, as the node sends it) for the profile overlay (or
    /// the conversation header) off
    /// the loop, and encode it to fit `room` when the terminal has a graphics
    /// protocol; answered with [`Response::Avatar`].
    DecodeAvatar {
        /// Whose it is.
        peer_id: String,
        /// The picture, base64.
        data: String,
        /// The room for it, in cells (columns, rows).
        room: (u16, u16),
    },
    /// Mark a conversation read (`read`).
    MarkRead {
        /// The contact's peer id.
        contact: String,
    },
    /// Fetch our invite (`invite`).
    Invite,
    /// Add a contact (`add`).
    Add {
        /// Invite URI or peer id.
        target: String,
        /// Optional alias.
        alias: Option<String>,
    },
    /// Accept a contact request (`accept`).
    Accept {
        /// Peer id or name of the contact.
        contact: String,
    },
    /// Reject a contact request (`reject`).
    Reject {
        /// Peer id or name of the contact.
        contact: String,
    },
    /// Block a contact (`block`).
    Block {
        /// Peer id or name of the contact.
        contact: String,
    },
    /// Unblock a contact (`unblock`).
    Unblock {
        /// Peer id or name of the contact.
        contact: String,
    },
    /// Remove a contact and its conversation (`remove`).
    Remove {
        /// Peer id or name of the contact.
        contact: String,
    },
    /// Set a contact's alias (`rename`).
    Rename {
        /// Peer id of the contact.
        contact: String,
        /// The new name.
        alias: String,
    },
    /// Read the node's status to show it (`status`, for `/status`).
    ShowStatus,
    /// Read every conversation's mute and draft (`conversations`).
    LoadConversations,
    /// Mute a conversation (`mute_conversation`).
    MuteConversation {
        /// The contact's peer id, or the group id.
        contact: String,
        /// When the mute lapses (ms since the Unix epoch); forever if `None`.
        until_ms: Option<u64>,
    },
    /// Unmute a conversation (`unmute_conversation`).
    UnmuteConversation {
        /// The contact's peer id, or the group id.
        contact: String,
    },
    /// Keep what was typed and not sent in a conversation on the node (`set_draft`;
    /// empty: none), so it is back after a restart.
    SaveDraft {
        /// The contact's peer id, or the group id.
        contact: String,
        /// The draft.
        text: String,
    },
    /// List the files a typed path can complete to (Tab on a path), answered with
    /// [`Response::Paths`]. Local, but off the loop: a slow disk must not stall it.
    ListPaths {
        /// The path as typed (`~/` for the home directory).
        word: String,
    },
    /// Search the messages (`search`), answered with [`Response::Search`]. It has a
    /// connection of its own: a long search never holds up sending or paging.
    Search {
        /// The words.
        text: String,
        /// Only this conversation (a contact's peer id or a group id).
        within: Option<String>,
        /// At most this many hits.
        limit: usize,
    },
    /// Answer with [`Action::SearchDue`] for `edit` once `after` has passed; a newer
    /// one replaces a wait still running (the search overlay's debounce).
    SearchAfter {
        /// How long to wait.
        after: std::time::Duration,
        /// The edit of the query it follows.
        edit: u64,
    },
    /// Put `text` on the system clipboard (OSC 52: the terminal does it, so it
    /// works over SSH too).
    Copy {
        /// What to copy.
        text: String,
    },
    /// Call a contact (`call`, with no sound files: the node sends silence), answered
    /// once the callee's node rings.
    Call {
        /// The contact's peer id or name.
        contact: String,
    },
    /// Answer a ringing call (`answer`), answered once the caller has the answer.
    Answer {
        /// The call's id; the only ringing call if absent.
        call: Option<String>,
    },
    /// Hang up a call, or decline it while it rings (`hangup`).
    Hangup {
        /// The call's id; the only call if absent.
        call: Option<String>,
    },
    /// Mute or unmute our side of a call (`mute`).
    Mute {
        /// The call's id; the only call with media if absent.
        call: Option<String>,
        /// Mute (true) or unmute (false).
        muted: bool,
    },
    /// Read the calls in progress and the newest ended ones (`calls`).
    LoadCalls,
    /// Join a group's voice room (`room_join`, with no sound files: the node sends
    /// silence), answered once a relay of the group took us in (seconds).
    JoinRoom {
        /// The group's id.
        group: String,
    },
    /// Leave a group's voice room (`room_leave`).
    LeaveRoom {
        /// The group's id.
        group: String,
    },
    /// Mute or unmute our side in a group's voice room (`room_mute`).
    MuteRoom {
        /// The group's id.
        group: String,
        /// Mute (true) or unmute (false).
        muted: bool,
    },
    /// Read the voice rooms we are in (`rooms`).
    LoadRooms,
    /// Ring the terminal bell.
    Bell,
    /// Run the configured notification command.
    Notify {
        /// Who wrote (the contact's name).
        from: String,
        /// What they wrote.
        text: String,
    },
    /// Leave the interface.
    Quit,
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEventState, KeyModifiers, MouseButton};

    use super::*;

    #[test]
    fn terminal_events_become_actions() {
        let press = KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(Action::from_terminal(TermEvent::Key(press)), Some(Action::Key(press)));
        let release = KeyEvent::new_with_kind_and_state(
            KeyCode::Char('a'),
            KeyModifiers::NONE,
            KeyEventKind::Release,
            KeyEventState::NONE,
        );
        assert_eq!(Action::from_terminal(TermEvent::Key(release)), None);
        let mouse = |kind| MouseEvent { kind, column: 1, row: 2, modifiers: KeyModifiers::NONE };
        assert_eq!(Action::from_terminal(TermEvent::Mouse(mouse(MouseEventKind::Moved))), None);
        assert_eq!(Action::from_terminal(TermEvent::Mouse(mouse(MouseEventKind::Drag(MouseButton::Left)))), None);
        let scroll = mouse(MouseEventKind::ScrollUp);
        assert_eq!(Action::from_terminal(TermEvent::Mouse(scroll)), Some(Action::Mouse(scroll)));
        assert_eq!(Action::from_terminal(TermEvent::Paste("x\ny".into())), Some(Action::Paste("x\ny".into())));
        assert_eq!(Action::from_terminal(TermEvent::Resize(3, 4)), Some(Action::Resize { width: 3, height: 4 }));
        assert_eq!(Action::from_terminal(TermEvent::FocusLost), Some(Action::FocusLost));
    }
}
