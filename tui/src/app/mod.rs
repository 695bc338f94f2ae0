//! The interface's state and the pure state machine that changes it.
//!
//! [`App`] holds everything the screen shows: the conversation list (contacts,
//! groups and pending requests), the focused conversation with a window of its
//! messages paged from the node, unread counts, who is online (`presence.rs`) and
//! who is typing where (`typing.rs`), the editor (with a
//! draft per conversation and the Tab completion in progress), overlays, the status
//! line and the log of what it said, the call in progress (`call.rs`), the voice
//! rooms we are in (`room.rs`), the search overlay (`search.rs`), the profile
//! overlay and the contacts' status lines (`profile.rs`), the open contact's
//! picture for the conversation header (`face.rs`), the selected
//! message with the reply or edit being written and the node's changes to messages
//! (`changes.rs`), and the state of the node connection.
//! [`update`] applies one [`Action`](crate::action::Action)
//! and returns the [`Effect`](crate::action::Effect)s to perform; it never does I/O,
//! so tests drive it directly and the runtime stays a thin loop.

mod call;
mod changes;
mod face;
mod files;
mod keys;
mod line;
mod node;
mod prefs;
mod presence;
mod profile;
mod room;
mod search;
mod typing;
mod update;
mod user;
mod verify;
mod viewer;
mod window;

use std::collections::{HashMap, VecDeque};

use kith_p2p::kith_storage::{ContactState, Direction, MessageState, Mute};
use kith_p2p::node::QueueStatus;
use kith_p2p::views::{ContactView, FileEntryView, GroupView, MessageView};

pub use call::{CallInfo, duration, level};
pub(crate) use call::{HISTORY_ASKED as CALLS_HISTORY, name as call_name};
pub(crate) use changes::one_line;
pub use changes::{Compose, Confirm, Quote};
pub use face::HEADER_AVATAR_CELLS;
pub use files::{Preview, percent};
pub use keys::{BINDINGS, bindings};
pub use presence::Presence;
pub use profile::{AVATAR_CELLS, Avatar, ProfileCard};
pub(crate) use profile::status_of;
pub use room::{RoomInfo, RoomState};
pub(crate) use room::{group_name as room_group_name, participant_name as room_participant_name};
pub use search::{DEBOUNCE as SEARCH_DEBOUNCE, LIMIT as SEARCH_LIMIT, Search, SearchHit, SearchQuery, SearchResults};
pub(crate) use typing::notice as typing_notice;
pub use typing::{SHOWN_TICKS as TYPING_SHOWN_TICKS, SPACING_MS as TYPING_SPACING_MS};
pub use update::update;
pub use verify::VerifyCard;
pub(crate) use verify::verified_at;
pub use viewer::Viewer;
pub use window::{Fetch, Scroll};

use crate::complete::Completion;
use crate::fuzzy::{self, Match};
use crate::graphics::Graphics;
use crate::input::{History, Input};

/// Messages per history page.
pub const PAGE: usize = 50;

/// How many ticks (about a second each) a status message stays.
pub(crate) const STATUS_TICKS: u8 = 8;

/// How many lines the log of notices and errors keeps; older ones are dropped. It is
/// for reading back what the status line said (whole, not cut at the screen edge),
/// not an archive: the file log keeps everything.
pub const LOG_CAPACITY: usize = 500;

/// How many notices (membership changes) a conversation keeps.
const NOTICES: usize = 64;

/// How many message-state changes for not-yet-seen messages are remembered (a
/// `message_state_changed` event can overtake the answer to `send`).
const ORPHAN_STATES: usize = 64;

/// Settings of the state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Render without colours (modifiers such as bold stay).
    pub no_color: bool,
    /// Ring the terminal bell on a new message in an unfocused conversation.
    pub bell: bool,
    /// Ask for a notification (a configured command) on such a message.
    pub notify: bool,
    /// The local time zone as seconds east of UTC, for clock times and dates.
    pub utc_offset_secs: i32,
    /// The interface runs the node itself (no daemon ran when it started), so
    /// quitting stops the node; the help says so.
    pub runs_node: bool,
    /// Our display name, for `@name` mentions of us (see [`crate::mention`]).
    pub display_name: Option<String>,
    /// The conversation to open first if it is listed when nothing is open yet
    /// (see [`crate::TuiOptions::open_on`]); forgotten once opened.
    pub open_on: Option<String>,
}

/// The connection to the node, as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Waiting for the first answer.
    Connecting,
    /// Connected.
    Connected,
    /// The connection was lost.
    Disconnected {
        /// Why (the last attempt's error).
        error: String,
        /// Seconds until the next attempt to reconnect, as of the last tick; `None`
        /// when nothing tries.
        retry_in_secs: Option<u64>,
    },
}

/// Who a conversation is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// A contact (or pending request): a 1:1 conversation keyed by peer id.
    Contact(ContactView),
    /// A group: keyed by the group id, which is also its conversation id.
    Group(GroupView),
}

/// Who we are, for `@name` mentions of us.
pub(crate) fn mention_me(app: &App) -> crate::mention::Me<'_> {
    prefs::me(app)
}

/// A group member's name: the node's label for them, else a contact's alias or
/// name, else a short peer id.
pub(crate) fn member_label(app: &App, group: &GroupView, peer: &str) -> String {
    let member = group.members.iter().find(|m| m.peer_id == peer).and_then(|m| m.label.clone());
    member
        .or_else(|| app.conversation(peer).filter(|c| c.contact().is_some()).map(|c| c.label().to_owned()))
        .unwrap_or_else(|| crate::text::short_peer(peer))
}

/// One entry of the conversation list: a contact (or pending request) or a group,
/// and what is loaded of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The contact or group.
    pub party: Party,
    /// The loaded window of messages, oldest first: a bounded stretch around the
    /// scroll anchor (see `window.rs`).
    pub messages: VecDeque<MessageView>,
    /// Whether the newest page has arrived.
    pub loaded: bool,
    /// The page request in flight, if any.
    pub loading: Option<Fetch>,
    /// Whether older messages may exist on the node.
    pub has_older: bool,
    /// When the message just older than the window was sent, if known (it was
    /// evicted), so the oldest loaded message gets a day separator only if needed.
    pub(crate) before_window: Option<u64>,
    /// Newer messages not in the window, oldest run first (empty: the window ends
    /// with the newest message).
    pub(crate) newer: VecDeque<window::Run>,
    /// Unread incoming messages.
    pub unread: u32,
    /// The first message shown below the "new messages" line.
    pub unread_marker: Option<String>,
    /// Unread count to turn into `unread_marker` when the newest page arrives.
    pub(crate) pending_marker: u32,
    /// The newest message, for the list preview.
    pub last: Option<MessageView>,
    /// For a pending request: how many messages the node holds.
    pub held: usize,
    /// For a pending request: the newest held message.
    pub request_preview: Option<String>,
    /// Whether the preview was asked for already.
    pub(crate) preview_requested: bool,
    /// Where the message pane is scrolled to.
    pub scroll: Scroll,
    /// Things that happened here besides messages (a group's members joining or
    /// leaving), each shown below the message that was newest when it happened.
    /// Seen while the interface runs; the node does not keep them (bounded).
    pub notices: VecDeque<Notice>,
    /// Its mute, as the node keeps it (it may have lapsed since: see
    /// [`Conversation::muted`]).
    pub mute: Option<Mute>,
    /// The selected message: the one a search opened here (Ctrl+F, Enter) or
    /// Ctrl+Up/Ctrl+Down chose, which the message commands act on (`changes.rs`).
    /// Marked in the timeline until the view goes back to the newest message or the
    /// conversation is left.
    pub selected: Option<String>,
    /// A reply or an edit being written in the input (the bar above it says which).
    pub compose: Option<Compose>,
}

/// Something shown in a conversation's timeline that is not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The message it follows, as (Lamport counter, id); `None`: before any message.
    pub after: Option<(u64, String)>,
    /// What happened.
    pub text: String,
}

impl Conversation {
    /// A conversation with a contact, nothing loaded.
    pub fn new(contact: ContactView) -> Conversation {
        Conversation::with(Party::Contact(contact))
    }

    /// A group's conversation, nothing loaded.
    pub fn group(group: GroupView) -> Conversation {
        Conversation::with(Party::Group(group))
    }

    fn with(party: Party) -> Conversation {
        Conversation {
            party,
            messages: VecDeque::new(),
            loaded: false,
            loading: None,
            has_older: true,
            before_window: None,
            newer: VecDeque::new(),
            unread: 0,
            unread_marker: None,
            pending_marker: 0,
            last: None,
            held: 0,
            request_preview: None,
            preview_requested: false,
            scroll: Scroll::Bottom,
            notices: VecDeque::new(),
            mute: None,
            selected: None,
            compose: None,
        }
    }

    /// Whether it is muted at `now_ms` (unknown time: as if now were the epoch, so
    /// a mute with an end holds).
    pub fn muted(&self, now_ms: Option<u64>) -> bool {
        self.mute.is_some_and(|m| m.holds(now_ms.unwrap_or(0)))
    }

    /// Note `text` in the timeline, after the newest message known.
    pub(crate) fn add_notice(&mut self, text: String) {
        let newest = [self.messages.back(), self.last.as_ref()].into_iter().flatten().max_by_key(|m| window::key(m));
        let after = newest.map(|m| (m.lamport, m.id.clone()));
        if self.notices.len() >= NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(Notice { after, text });
    }

    /// The key of the conversation: the contact's peer id, or the group id. It is
    /// what the node's `contact` parameters accept, so effects carry it as is.
    pub fn peer_id(&self) -> &str {
        match &self.party {
            Party::Contact(c) => &c.peer_id,
            Party::Group(g) => &g.id,
        }
    }

    /// The name to show (a group's name, without its `#` marker).
    pub fn label(&self) -> &str {
        match &self.party {
            Party::Contact(c) => c.label(),
            Party::Group(g) => &g.name,
        }
    }

    /// The contact, unless this is a group.
    pub fn contact(&self) -> Option<&ContactView> {
        match &self.party {
            Party::Contact(c) => Some(c),
            Party::Group(_) => None,
        }
    }

    /// The group, if this is one.
    pub fn group_view(&self) -> Option<&GroupView> {
        match &self.party {
            Party::Group(g) => Some(g),
            Party::Contact(_) => None,
        }
    }

    /// Whether this is a contact request or a group invitation waiting for our answer.
    pub fn is_request(&self) -> bool {
        self.contact().is_some_and(|c| c.state == ContactState::PendingIn) || self.is_invitation()
    }

    /// Whether this is a group someone who is not a contact added us to, not yet
    /// accepted or declined.
    pub fn is_invitation(&self) -> bool {
        self.group_view().is_some_and(|g| g.invited_by.is_some())
    }

    /// The name of `author` as this conversation shows it: in a group the member's
    /// label, else the contact's (from `app`), else a short peer id; in a 1:1
    /// conversation the contact's name.
    pub fn author_label(&self, app: &App, author: &str) -> String {
        match &self.party {
            Party::Group(group) => member_label(app, group, author),
            Party::Contact(_) => self.label().to_owned(),
        }
    }

    /// The name of `author` as this conversation shows it, `you` for us (when our
    /// peer id is not known yet, in a 1:1 conversation anyone but the contact is us).
    pub fn name_of(&self, app: &App, author: &str) -> String {
        let ours = match app.me() {
            Some(me) => me == author,
            None => self.contact().is_some_and(|c| c.peer_id != author),
        };
        if ours { "you".to_owned() } else { self.author_label(app, author) }
    }

    /// When something last happened here, for ordering the list.
    fn activity(&self) -> u64 {
        let newest = self.messages.back().map_or(0, |m| m.received_at.max(m.sent_at));
        let last = self.last.as_ref().map_or(0, |m| m.received_at.max(m.sent_at));
        newest.max(last)
    }

    /// Turn a pending unread count into a marker on the right message.
    pub(crate) fn resolve_marker(&mut self) {
        if self.pending_marker == 0 || !self.loaded {
            return;
        }
        let unread = usize::try_from(self.pending_marker).unwrap_or(usize::MAX);
        self.pending_marker = 0;
        self.unread_marker = first_unread(&self.messages, unread).map(|m| m.id.clone());
    }
}

/// Where the "new messages" line goes in `messages` (oldest first) when the newest
/// `unread` incoming messages are unread: above the oldest of them. Only incoming
/// messages count (our own are never unread), so an unread message is never shown
/// above the line among read ones. If fewer incoming messages are loaded, unread ones
/// begin before the window: above its first message.
fn first_unread(messages: &VecDeque<MessageView>, unread: usize) -> Option<&MessageView> {
    if unread == 0 {
        return None;
    }
    let mut incoming = messages.iter().rev().filter(|m| m.direction == Direction::Incoming);
    incoming.nth(unread - 1).or(messages.front())
}

/// A transient message in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// The text.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
    /// Ticks until it disappears.
    pub(crate) ticks_left: u8,
}

/// One line of the log of notices and errors (what the status line showed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The text, whole.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
    /// When, in Unix milliseconds, if the runtime had told the time yet.
    pub at: Option<u64>,
}

/// The quick switcher's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switcher {
    /// What was typed.
    pub query: Input,
    /// Index into the current matches.
    pub selected: usize,
}

/// The invite overlay's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteView {
    /// Waiting for the node.
    Loading,
    /// The invite arrived.
    Ready {
        /// The `kith:` URI.
        invite: String,
        /// The QR code as text.
        qr: String,
        /// Rows scrolled (when the terminal is too small).
        scroll: usize,
        /// Whether it was sent to the terminal's clipboard (`c`, OSC 52).
        copied: bool,
    },
}

/// A window drawn over the main screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// Key bindings and commands.
    Help {
        /// Rows scrolled.
        scroll: usize,
    },
    /// Jump to a conversation by name.
    Switcher(Switcher),
    /// Our invite and its QR code.
    Invite(InviteView),
    /// The log of notices and errors, newest at the bottom.
    Log {
        /// Rows scrolled up from the newest.
        scroll: usize,
    },
    /// A picture over the message pane (Ctrl+G).
    Picture(Viewer),
    /// Full-text search over the messages (Ctrl+F, `/search`).
    Search(Search),
    /// Someone calls: Enter or `a` answers, Esc or `d` declines.
    IncomingCall {
        /// The call's id.
        call: String,
        /// The caller's peer id.
        peer: String,
    },
    /// A question before something that cannot be undone (`/delete-all`): `y` does
    /// it, `n` or Esc does not.
    Confirm(Confirm),
    /// A profile, ours or a contact's (`/profile`): Esc closes it.
    Profile(ProfileCard),
    /// A contact's safety number and its QR code (`/verify`): Esc closes it.
    Verify(VerifyCard),
}

/// The whole interface state.
#[derive(Debug, Clone)]
pub struct App {
    config: Config,
    /// Terminal size (columns, rows), for mouse hit tests and page sizes.
    size: (u16, u16),
    /// Our peer id, once the status arrived.
    me: Option<String>,
    node: NodeState,
    /// Display order: conversations by recent activity, then requests.
    conversations: Vec<Conversation>,
    /// The focused conversation's peer id.
    focused: Option<String>,
    input: Input,
    /// What was typed in conversations not in view, by peer id.
    drafts: HashMap<String, Input>,
    /// The drafts as last given to the node, by peer id, so only changes are saved.
    saved_drafts: HashMap<String, String>,
    /// Whether the node's drafts were taken in (once, on the first answer).
    drafts_restored: bool,
    /// `set_draft` requests not answered yet.
    drafts_in_flight: usize,
    /// The Tab completion in progress, if the last key was Tab.
    completion: Option<Completion>,
    /// A path completion waiting for its file list: the word's bytes, the input's
    /// text then, and whether it goes backwards (Shift+Tab).
    pending_paths: Option<(std::ops::Range<usize>, String, bool)>,
    history: History,
    overlay: Option<Overlay>,
    status: Option<StatusMessage>,
    /// Every notice and error shown in the status line, oldest first (bounded).
    log: VecDeque<LogEntry>,
    /// The wall clock as of the last [`Action::Clock`](crate::action::Action::Clock).
    now_ms: Option<u64>,
    /// The contacts' presence, by peer id, as the node last said (see `presence.rs`).
    presence: HashMap<String, Presence>,
    /// Who types where, and when we last told a conversation we type (`typing.rs`).
    typing: typing::Typing,
    /// The contacts' status lines, for the header (`profile.rs`).
    statuses: profile::Statuses,
    /// When contacts were marked verified, as far as known (`verify.rs`).
    verified_at: verify::VerifiedAt,
    /// The contacts' pictures for the 1:1 header (`face.rs`).
    faces: face::Faces,
    outbox: usize,
    /// The node's delivery queues, per recipient (as of the last status).
    queues: Vec<QueueStatus>,
    /// Whether a status request is in flight, and ticks since the last one answered.
    status_loading: bool,
    ticks_since_status: u32,
    /// First row of the conversation list shown.
    list_offset: usize,
    /// Whether the terminal window has focus (unknown terminals: assume yes).
    terminal_focused: bool,
    /// States of messages not loaded yet (bounded).
    orphan_states: VecDeque<(String, MessageState)>,
    /// `send` requests in flight, per contact.
    pub(crate) sending: HashMap<String, usize>,
    /// Where the files of the conversations looked at stand, by file id (bounded,
    /// see `files.rs`), from `files` answers and `file_changed` events.
    files: HashMap<String, FileEntryView>,
    /// Bytes held of files being fetched, by file id (from `file_progress` events).
    progress: HashMap<String, u64>,
    /// Picture previews, by file id (bounded).
    previews: HashMap<String, Preview>,
    /// The user's home directory, to show saved paths as `~/…`.
    home_dir: Option<String>,
    /// How the picture viewer draws (found at start-up; not in [`Config`], whose
    /// fields callers fill by name).
    graphics: Graphics,
    /// The call in progress or ringing, if any (see `call.rs`).
    call: Option<CallInfo>,
    /// Whether a `calls` request is in flight.
    calls_loading: bool,
    /// Polls in a row that found the kept call nowhere.
    call_misses: u8,
    /// The ids of calls that ended lately (bounded), so late news cannot revive them.
    ended_calls: VecDeque<String>,
    /// The voice rooms we are in or joining, in the order joined (see `room.rs`).
    rooms: Vec<RoomInfo>,
    /// Whether a `rooms` request is in flight.
    rooms_loading: bool,
    /// Groups whose room we left lately (bounded), so a late poll cannot revive it.
    left_rooms: VecDeque<String>,
    /// The search asked of the node and not answered yet (one at a time).
    search_in_flight: Option<SearchQuery>,
    quit: bool,
}

impl App {
    /// A fresh state: nothing loaded, connecting. Ask for [`App::start`]'s effects.
    pub fn new(config: Config) -> App {
        App {
            config,
            size: (80, 24),
            me: None,
            node: NodeState::Connecting,
            conversations: Vec::new(),
            focused: None,
            input: Input::new(),
            drafts: HashMap::new(),
            saved_drafts: HashMap::new(),
            drafts_restored: false,
            drafts_in_flight: 0,
            completion: None,
            pending_paths: None,
            history: History::new(),
            overlay: None,
            status: None,
            log: VecDeque::new(),
            now_ms: None,
            presence: HashMap::new(),
            typing: typing::Typing::default(),
            statuses: profile::Statuses::default(),
            verified_at: verify::VerifiedAt::new(),
            faces: face::Faces::default(),
            outbox: 0,
            queues: Vec::new(),
            status_loading: true,
            ticks_since_status: 0,
            list_offset: 0,
            terminal_focused: true,
            orphan_states: VecDeque::new(),
            sending: HashMap::new(),
            files: HashMap::new(),
            progress: HashMap::new(),
            previews: HashMap::new(),
            home_dir: None,
            graphics: Graphics::HalfBlocks,
            call: None,
            calls_loading: false,
            call_misses: 0,
            ended_calls: VecDeque::new(),
            rooms: Vec::new(),
            rooms_loading: false,
            left_rooms: VecDeque::new(),
            search_in_flight: None,
            quit: false,
        }
    }

    /// This state with `home` as the user's home directory: saved files under it
    /// are shown as `~/…`.
    pub fn with_home_dir(mut self, home: Option<String>) -> App {
        self.home_dir = home.filter(|h| !h.is_empty());
        self
    }

    /// This state with pictures in the viewer drawn through `graphics`, the
    /// terminal's protocol (half-blocks unless told).
    pub fn with_graphics(mut self, graphics: Graphics) -> App {
        self.graphics = graphics;
        self
    }

    /// How the picture viewer draws: through the terminal's graphics protocol, or
    /// half-blocks (as the previews in the timeline always are).
    pub fn graphics(&self) -> Graphics {
        self.graphics
    }

    /// The user's home directory, if known.
    pub fn home_dir(&self) -> Option<&str> {
        self.home_dir.as_deref()
    }

    /// Where file `id` stands, if the node said.
    pub fn file(&self, id: &str) -> Option<&FileEntryView> {
        self.files.get(id)
    }

    /// Bytes held of file `id` while it is fetched, if the node said.
    pub fn file_progress(&self, id: &str) -> Option<u64> {
        self.progress.get(id).copied()
    }

    /// The preview of picture `id`, if one was asked for.
    pub fn preview(&self, id: &str) -> Option<&Preview> {
        self.previews.get(id)
    }

    /// The picture the viewer (or the profile overlay) draws through the
    /// terminal's graphics protocol, if one is open and encoded. The runtime clears
    /// the screen when this (or [`App::graphics_on_screen`]) changes: a sixel or
    /// iTerm2 picture stays on the terminal until its cells are written.
    pub fn graphic(&self) -> Option<&crate::picture::Encoded> {
        match &self.overlay {
            Some(Overlay::Picture(viewer)) if self.graphics.is_protocol() => viewer.encoded.as_ref(),
            Some(Overlay::Profile(ProfileCard { avatar: Avatar::Ready { encoded, .. }, .. }))
                if self.graphics.is_protocol() =>
            {
                encoded.as_ref()
            }
            _ => None,
        }
    }

    /// The open 1:1 contact's picture the conversation header draws through the
    /// terminal's graphics protocol, once fetched and encoded (never with
    /// half-blocks).
    pub fn header_avatar(&self) -> Option<&crate::picture::Encoded> {
        face::shown(self)
    }

    /// Every picture on screen drawn through the terminal's graphics protocol: the
    /// viewer's or the profile overlay's ([`App::graphic`]) and the header's
    /// ([`App::header_avatar`]). The runtime clears the screen when this changes.
    pub fn graphics_on_screen(&self) -> Vec<crate::picture::Encoded> {
        self.graphic().into_iter().chain(self.header_avatar()).cloned().collect()
    }

    /// The requests that load the initial state (with the calls, as one may be
    /// ringing, and the voice rooms the node is in).
    pub fn start(&self) -> Vec<crate::action::Effect> {
        use crate::action::Effect;
        vec![
            Effect::Refresh,
            Effect::LoadStatus,
            Effect::LoadGroups,
            Effect::LoadConversations,
            Effect::LoadCalls,
            Effect::LoadRooms,
            Effect::LoadPresence,
        ]
    }

    /// The call in progress or ringing, if any.
    pub fn call(&self) -> Option<&CallInfo> {
        self.call.as_ref()
    }

    /// The voice rooms we are in or joining, in the order joined.
    pub fn rooms(&self) -> &[RoomInfo] {
        &self.rooms
    }

    /// The voice room the room bar shows: the open group's, else the one joined last.
    pub fn room(&self) -> Option<&RoomInfo> {
        room::shown(self)
    }

    /// Whether a call or a voice room is going on, so the runtime should send
    /// [`Action::CallTick`](crate::action::Action::CallTick)s.
    pub fn wants_call_ticks(&self) -> bool {
        self.call.is_some() || !self.rooms.is_empty()
    }

    /// The wall clock as of the last [`Action::Clock`](crate::action::Action::Clock).
    pub fn now_ms(&self) -> Option<u64> {
        self.now_ms
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The terminal size the state machine assumes (columns, rows).
    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Our peer id, once known.
    pub fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// The node connection state.
    pub fn node(&self) -> &NodeState {
        &self.node
    }

    /// The conversation list in display order.
    pub fn conversations(&self) -> &[Conversation] {
        &self.conversations
    }

    /// A conversation by peer id.
    pub fn conversation(&self, peer_id: &str) -> Option<&Conversation> {
        self.conversations.iter().find(|c| c.peer_id() == peer_id)
    }

    /// The focused conversation's peer id.
    pub fn focused_id(&self) -> Option<&str> {
        self.focused.as_deref()
    }

    /// The focused conversation.
    pub fn focused(&self) -> Option<&Conversation> {
        self.focused.as_deref().and_then(|id| self.conversation(id))
    }

    /// Index of the focused conversation in [`App::conversations`].
    pub fn focused_index(&self) -> Option<usize> {
        let id = self.focused.as_deref()?;
        self.conversations.iter().position(|c| c.peer_id() == id)
    }

    /// The editor.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// What was typed and not sent in the conversation with `peer_id` while another
    /// one is in view (the focused one's is [`App::input`]).
    pub fn draft(&self, peer_id: &str) -> Option<&Input> {
        self.drafts.get(peer_id)
    }

    /// The names Tab completes to: the open group's members, then every contact, in
    /// list order (ours left out).
    pub fn completion_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(conv) = self.focused()
            && let Some(group) = conv.group_view()
        {
            let others = group.members.iter().filter(|m| self.me.as_deref() != Some(m.peer_id.as_str()));
            names.extend(others.map(|m| conv.author_label(self, &m.peer_id)));
        }
        names.extend(self.conversations.iter().filter(|c| c.contact().is_some()).map(|c| c.label().to_owned()));
        names
    }

    /// The input history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The open overlay.
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    /// The status bar message.
    pub fn status(&self) -> Option<&StatusMessage> {
        self.status.as_ref()
    }

    /// The log of notices and errors, oldest first.
    pub fn log(&self) -> &VecDeque<LogEntry> {
        &self.log
    }

    /// A contact's presence, if the node said (never with presence off).
    pub fn presence(&self, peer_id: &str) -> Option<Presence> {
        self.presence.get(peer_id).copied()
    }

    /// Whether a contact is online, by its presence (not by open connections).
    pub fn is_online(&self, peer_id: &str) -> bool {
        self.presence.get(peer_id).is_some_and(|p| p.online)
    }

    /// How many listed contacts are online.
    pub fn online_count(&self) -> usize {
        self.conversations.iter().filter(|c| c.contact().is_some() && self.is_online(c.peer_id())).count()
    }

    /// Who is typing in the conversation `key` (a contact's peer id or a group id),
    /// by peer id, oldest notice first.
    pub fn typists(&self, key: &str) -> Vec<&str> {
        self.typing.typists(key)
    }

    /// Messages waiting in the node's outbox (as of the last status).
    pub fn outbox(&self) -> usize {
        self.outbox
    }

    /// The node's delivery queues, most waiting first (as of the last status).
    pub fn queues(&self) -> &[QueueStatus] {
        &self.queues
    }

    /// The delivery queue to `peer_id`, if anything waits for it.
    pub fn queue(&self, peer_id: &str) -> Option<&QueueStatus> {
        self.queues.iter().find(|q| q.peer_id == peer_id)
    }

    /// First row of the conversation list shown.
    pub fn list_offset(&self) -> usize {
        self.list_offset
    }

    /// Whether drafts are on their way to the node (quitting waits a moment for them).
    pub fn saving_drafts(&self) -> bool {
        self.drafts_in_flight > 0
    }

    /// Whether the user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Quick-switcher matches for `query`: (index into conversations, match), best first.
    pub fn switcher_matches(&self, query: &str) -> Vec<(usize, Match)> {
        let mut matches: Vec<(usize, Match)> = self
            .conversations
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let by_label = fuzzy::fuzzy_match(query, c.label());
                by_label
                    .or_else(|| {
                        // A pasted peer id matches too, without highlighting.
                        fuzzy::fuzzy_match(query, c.peer_id())
                            .map(|m| Match { score: m.score - 20, positions: Vec::new() })
                    })
                    .map(|m| (i, m))
            })
            .collect();
        // Stable: equal scores keep list order.
        matches.sort_by_key(|m| std::cmp::Reverse(m.1.score));
        matches
    }

    // ---- mutation helpers used by `update` ------------------------------------------

    pub(crate) fn conversation_mut(&mut self, peer_id: &str) -> Option<&mut Conversation> {
        self.conversations.iter_mut().find(|c| c.peer_id() == peer_id)
    }

    /// The conversation a message belongs to, as a list key: its 1:1 peer, else
    /// its group (a group message has no peer; its conversation is the group id).
    pub(crate) fn key_of(message: &MessageView) -> &str {
        message.peer.as_deref().unwrap_or(&message.conversation)
    }

    /// Show `text` in the status line for a while, and keep it in the log.
    pub(crate) fn set_status(&mut self, text: impl Into<String>, error: bool) {
        let text = text.into();
        self.note(text.clone(), error);
        self.status = Some(StatusMessage { text, error, ticks_left: STATUS_TICKS });
    }

    /// Keep `text` in the log only (something not worth interrupting for).
    pub(crate) fn note(&mut self, text: impl Into<String>, error: bool) {
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry { text: text.into(), error, at: self.now_ms });
    }

    /// Re-sort the list (activity, then name; requests last).
    pub(crate) fn sort(&mut self) {
        self.conversations.sort_by(|a, b| {
            a.is_request()
                .cmp(&b.is_request())
                .then(b.activity().cmp(&a.activity()))
                .then_with(|| a.label().to_lowercase().cmp(&b.label().to_lowercase()))
                .then_with(|| a.peer_id().cmp(b.peer_id()))
        });
    }

    /// Apply a remembered state change to a message that just arrived.
    pub(crate) fn apply_orphan_states(&mut self) {
        if self.orphan_states.is_empty() {
            return;
        }
        let mut remaining = VecDeque::new();
        while let Some((id, state)) = self.orphan_states.pop_front() {
            if !self.set_message_state(&id, state) {
                remaining.push_back((id, state));
            }
        }
        self.orphan_states = remaining;
    }

    /// Move message `id` to `state` wherever it is shown; `false` if not found.
    pub(crate) fn set_message_state(&mut self, id: &str, state: MessageState) -> bool {
        let mut found = false;
        for conv in &mut self.conversations {
            let loaded = conv.messages.iter_mut().filter(|m| m.id == id);
            for m in loaded.chain(conv.last.iter_mut().filter(|m| m.id == id)) {
                found = true;
                if m.state.can_become(state) {
                    m.state = state;
                }
            }
        }
        found
    }

    pub(crate) fn remember_orphan_state(&mut self, id: String, state: MessageState) {
        if self.orphan_states.len() >= ORPHAN_STATES {
            self.orphan_states.pop_front();
        }
        self.orphan_states.push_back((id, state));
    }
}

/// Message `n` of a 1:1 conversation with `peer`, incoming or ours, for unit tests:
/// read from JSON as the control API writes it, so the fields views gain later take
/// their defaults here.
#[cfg(test)]
pub(crate) fn test_message(n: u64, direction: Direction) -> MessageView {
    let author = if direction == Direction::Incoming { "peer" } else { "me" };
    let view = serde_json::json!({
        "id": format!("{n}"), "conversation": "c", "peer": "peer", "author": author, "direction": direction,
        "text": format!("message {n}"), "sent_at": n, "received_at": n, "lamport": n, "state": MessageState::Delivered,
    });
    serde_json::from_value(view).expect("a message view")
}

/// An accepted contact with peer id `peer` and no names, for unit tests.
#[cfg(test)]
pub(crate) fn test_contact(peer: &str) -> ContactView {
    ContactView {
        peer_id: peer.into(),
        alias: None,
        display_name: None,
        state: ContactState::Accepted,
        addrs: Vec::new(),
        relays: Vec::new(),
        verified: false,
        key_changed: false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Message `n` of a 1:1 conversation, incoming or ours.
    fn message(n: u64, direction: Direction) -> MessageView {
        test_message(n, direction)
    }

    fn window(directions: &[Direction]) -> VecDeque<MessageView> {
        directions.iter().zip(1..).map(|(d, n)| message(n, *d)).collect()
    }

    use Direction::{Incoming as In, Outgoing as Out};

    #[test]
    fn the_new_messages_line_counts_only_incoming_messages() {
        // Two unread incoming messages with one of ours after them: the line goes
        // above message 3 (the older unread one), not above message 4.
        let messages = window(&[In, Out, In, In, Out]);
        assert_eq!(first_unread(&messages, 2).map(|m| m.id.as_str()), Some("3"));
        // Our messages interleaved with the unread ones are skipped over, never counted.
        let messages = window(&[In, In, Out, In, Out, Out]);
        assert_eq!(first_unread(&messages, 2).map(|m| m.id.as_str()), Some("2"));
        assert_eq!(first_unread(&messages, 1).map(|m| m.id.as_str()), Some("4"));
        assert_eq!(first_unread(&messages, 0), None);
    }

    #[test]
    fn unread_older_than_the_window_puts_the_line_at_its_top() {
        let messages = window(&[Out, In, Out, In]);
        assert_eq!(first_unread(&messages, 2).map(|m| m.id.as_str()), Some("2"));
        assert_eq!(first_unread(&messages, 5).map(|m| m.id.as_str()), Some("1"));
        assert_eq!(first_unread(&VecDeque::new(), 3), None);
    }

    #[test]
    fn reconnecting_forgets_sends_whose_answers_were_lost() {
        // A send's answer can be lost with the connection (delivered to nobody):
        // after reconnecting nothing is in flight, or unseen messages of ours would
        // never be re-read (`unseen_outgoing` waits while a send is in flight).
        let mut app = App::new(Config::default());
        app.sending.insert("peer".into(), 2);
        update(&mut app, crate::action::Action::Reconnected);
        assert!(app.sending.is_empty());
    }

    #[test]
    fn resolve_marker_puts_every_unread_message_below_the_line() {
        let mut conv = Conversation::new(test_contact("peer"));
        conv.messages = window(&[In, In, Out, In, Out]);
        conv.loaded = true;
        conv.pending_marker = 2;
        conv.resolve_marker();
        assert_eq!(conv.unread_marker.as_deref(), Some("2"));
        assert_eq!(conv.pending_marker, 0);
        let marker = conv.messages.iter().position(|m| Some(&m.id) == conv.unread_marker.as_ref()).unwrap();
        let unread_below = conv.messages.iter().skip(marker).filter(|m| m.direction == In).count();
        assert_eq!(unread_below, 2, "both unread messages are below the line");
    }
}
