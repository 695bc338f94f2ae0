//! Fixtures shared by the integration tests: contacts, messages, keys, and an `App`
//! built the way the runtime builds it (responses fed through `update`), without a
//! node or a terminal.

#![allow(dead_code, unreachable_pub, missing_docs)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use kith_p2p::kith_storage::{ContactState, Direction, MessageState, Role};
use kith_p2p::node::presence::PresenceView;
use kith_p2p::node::{Event, Status};
use kith_p2p::views::{ContactView, GroupView, InboxEntry, MemberView, MessageView, RequestView};
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};

/// Tue, 14 Jan 2025 10:42:00 UTC.
pub const NOW: u64 = 1_736_851_320_000;
pub const MINUTE: u64 = 60_000;
pub const DAY: u64 = 24 * 60 * MINUTE;

pub const ME: &str = "12D3KooWMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMe0001";
pub const ALISA: &str = "12D3KooWAlisaAlisaAlisaAlisaAlisaAlisaAlisaAlisa0002";
pub const WANG: &str = "12D3KooWWangWangWangWangWangWangWangWangWangWang0003";
pub const BOB: &str = "12D3KooWBobBobBobBobBobBobBobBobBobBobBobBobBobB0004";
pub const MALLORY: &str = "12D3KooWMalloryMalloryMalloryMalloryMalloryMall0005";
/// A group member who is not one of our contacts.
pub const CAROL: &str = "12D3KooWCarolCarolCarolCarolCarolCarolCarolCaro0006";
/// The group "Book club" (its id is also its conversation id).
pub const GROUP: &str = "6b6974682d67726f75702d626f6f6b73";

pub fn contact(peer: &str, alias: &str, state: ContactState) -> ContactView {
    ContactView {
        peer_id: peer.to_owned(),
        alias: (!alias.is_empty()).then(|| alias.to_owned()),
        display_name: None,
        state,
        addrs: Vec::new(),
        relays: Vec::new(),
        verified: false,
        key_changed: false,
    }
}

/// A message `n` (its id and Lamport counter derive from `n`).
pub fn message(n: u64, peer: &str, direction: Direction, text: &str, at: u64, state: MessageState) -> MessageView {
    let author = match direction {
        Direction::Outgoing => ME,
        Direction::Incoming => peer,
    };
    let conversation = format!("{:032x}", peer.len() as u64 * 7919 + peer.bytes().map(u64::from).sum::<u64>());
    view(n, &conversation, Some(peer), author, direction, text, at, state)
}

/// A message view as the control API writes it, read back: the fields views gain
/// later (with their serde defaults) need no change here.
#[allow(clippy::too_many_arguments)]
fn view(
    n: u64,
    conversation: &str,
    peer: Option<&str>,
    author: &str,
    direction: Direction,
    text: &str,
    at: u64,
    state: MessageState,
) -> MessageView {
    let view = serde_json::json!({
        "id": format!("{n:032x}"), "conversation": conversation, "peer": peer, "author": author,
        "direction": direction, "text": text, "sent_at": at, "received_at": at, "lamport": n, "state": state,
    });
    serde_json::from_value(view).expect("a message view")
}

pub fn incoming(n: u64, peer: &str, text: &str, at: u64) -> MessageView {
    message(n, peer, Direction::Incoming, text, at, MessageState::Read)
}

pub fn outgoing(n: u64, peer: &str, text: &str, at: u64, state: MessageState) -> MessageView {
    message(n, peer, Direction::Outgoing, text, at, state)
}

/// "Book club": us (owner), Алиса (admin, a contact), Carol (a stranger to us, so
/// unnamed) and Bob (labelled by the node).
pub fn book_club(active: bool) -> GroupView {
    let member = |peer: &str, role, label: Option<&str>| MemberView {
        peer_id: peer.to_owned(),
        role,
        label: label.map(str::to_owned),
    };
    GroupView {
        id: GROUP.to_owned(),
        name: "Book club".to_owned(),
        members: vec![
            member(ME, Role::Owner, None),
            member(ALISA, Role::Admin, None),
            member(BOB, Role::Member, Some("Bob 🎸")),
            member(CAROL, Role::Member, None),
        ],
        version: 3,
        relays: Vec::new(),
        active,
        invited_by: None,
    }
}

/// Message `n` of the group, by `author` (`ME` for ours).
pub fn group_message(n: u64, author: &str, text: &str, at: u64) -> MessageView {
    let direction = if author == ME { Direction::Outgoing } else { Direction::Incoming };
    let state = if direction == Direction::Outgoing { MessageState::Delivered } else { MessageState::Read };
    view(n, GROUP, None, author, direction, text, at, state)
}

/// The Book club's conversation: three authors besides us.
pub fn book_club_history() -> Vec<MessageView> {
    vec![
        group_message(301, ALISA, "Кто дочитал «Мастера и Маргариту»?", NOW - 40 * MINUTE),
        group_message(302, BOB, "almost, 50 pages left", NOW - 35 * MINUTE),
        group_message(303, CAROL, "Done! Meeting on Friday?", NOW - 30 * MINUTE),
        group_message(304, ME, "Friday works for me", NOW - 25 * MINUTE),
        group_message(305, ALISA, "Договорились 👍", NOW - 4 * MINUTE),
    ]
}

/// The inbox's line for the 1:1 conversation with `contact`, not muted.
pub fn inbox_entry(contact: ContactView, unread: u32, last: Option<MessageView>) -> InboxEntry {
    let conversation = format!("{:032x}", contact.peer_id.len());
    InboxEntry { conversation, contact: Some(contact), unread, last, muted: false, muted_until: None }
}

/// The standard scene plus the Book club, listed with its newest message as preview.
pub fn group_scene(config: Config) -> App {
    let mut app = scene(config);
    let fx = update(&mut app, Action::Done(Response::Groups(vec![book_club(true)])));
    assert!(fx.contains(&Effect::LoadPreview { contact: GROUP.to_owned() }), "{fx:?}");
    let last = book_club_history().pop();
    update(&mut app, Action::Done(Response::Preview { contact: GROUP.to_owned(), message: last }));
    app
}

/// The group scene with the Book club opened from the quick switcher, `messages`
/// its newest page.
pub fn group_open(config: Config, messages: Vec<MessageView>) -> App {
    let mut app = group_scene(config);
    open_from_switcher(&mut app, "book", GROUP);
    update(&mut app, Action::Done(Response::History { contact: GROUP.to_owned(), before: None, limit: 50, messages }));
    app
}

/// Open the conversation `query` finds in the quick switcher (Ctrl+K, Enter),
/// checking that it is `id` (a contact's peer id or a group id).
pub fn open_from_switcher(app: &mut App, query: &str, id: &str) {
    update(app, ctrl('k'));
    type_text(app, query);
    update(app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(id));
}

pub fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub fn with(code: KeyCode, modifiers: KeyModifiers) -> Action {
    Action::Key(KeyEvent::new(code, modifiers))
}

pub fn click(column: u16, row: u16) -> Action {
    Action::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

pub fn wheel(up: bool, column: u16, row: u16) -> Action {
    let kind = if up { MouseEventKind::ScrollUp } else { MouseEventKind::ScrollDown };
    Action::Mouse(MouseEvent { kind, column, row, modifiers: KeyModifiers::NONE })
}

/// Type `text` key by key; returns all effects.
pub fn type_text(app: &mut App, text: &str) -> Vec<Effect> {
    text.chars().flat_map(|c| update(app, key(KeyCode::Char(c)))).collect()
}

/// Type `line` and press Enter; returns Enter's effects.
pub fn command(app: &mut App, line: &str) -> Vec<Effect> {
    type_text(app, line);
    update(app, key(KeyCode::Enter))
}

/// What the status line says now (empty when nothing).
pub fn status_text(app: &App) -> String {
    app.status().map(|s| s.text.clone()).unwrap_or_default()
}

pub fn config() -> Config {
    Config { no_color: false, bell: true, notify: true, utc_offset_secs: 0, runs_node: false, display_name: None, open_on: None }
}

pub fn status(online: &[&str]) -> Status {
    Status {
        peer_id: ME.to_owned(),
        listen_addrs: Vec::new(),
        connected_peers: online.iter().map(|p| (*p).to_owned()).collect(),
        routing_table_size: 3,
        relays: Vec::new(),
        outbox: 0,
        queues: Vec::new(),
        files_served_bytes: 0,
        files_fetched_bytes: 0,
        reachability: "unknown".into(),
        storage_failed: false,
    }
}

/// A contact's presence as the node's `presence` answer has it.
pub fn presence(peer: &str, online: bool, last_seen: Option<u64>) -> PresenceView {
    PresenceView { peer_id: peer.to_owned(), online, last_seen }
}

/// The node's `presence` answer in the standard scene: Алиса and Bob online, 王小明
/// last seen 50 minutes ago (at 09:52), Mallory (a stranger) unknown.
pub fn scene_presence() -> Vec<PresenceView> {
    vec![
        presence(ALISA, true, Some(NOW)),
        presence(BOB, true, Some(NOW)),
        presence(WANG, false, Some(NOW - 50 * MINUTE)),
    ]
}

/// The conversation with Алиса: yesterday and today, Cyrillic, CJK, emoji, every
/// delivery state, a multi-line message and one long enough to wrap.
pub fn alisa_history() -> Vec<MessageView> {
    let yesterday = NOW - DAY;
    vec![
        incoming(1, ALISA, "Привет! Как дела?", yesterday),
        outgoing(2, ALISA, "Всё хорошо, спасибо 🙂", yesterday + MINUTE, MessageState::Read),
        incoming(3, ALISA, "Смотри: 你好世界 — это «hello world» по-китайски 🌏", NOW - 30 * MINUTE),
        outgoing(4, ALISA, "Круто! 🎉🎉🎉\nВторая строка\nтретья", NOW - 20 * MINUTE, MessageState::Delivered),
        outgoing(5, ALISA, "Отправлено, но ещё не доставлено", NOW - 10 * MINUTE, MessageState::Sent),
        incoming(
            6,
            ALISA,
            "Длинное сообщение, которое точно не поместится в одну строку и должно аккуратно перенестись по словам.",
            NOW - 5 * MINUTE,
        ),
        incoming(7, ALISA, "日本語のテキストも大丈夫ですか？全角文字は二列を占めます。", NOW - 2 * MINUTE),
        outgoing(8, ALISA, "Ещё в очереди", NOW - MINUTE, MessageState::Pending),
    ]
}

/// The standard scene: four conversations and a request; Алиса focused and
/// loaded, with her two newest messages unread when she was opened; presence on
/// ([`scene_presence`]).
pub fn scene(config: Config) -> App {
    scene_in(App::new(config))
}

/// [`scene`] played on `app` (a fresh state, set up as a test needs).
pub fn scene_in(mut app: App) -> App {
    update(&mut app, Action::Resize { width: 100, height: 30 });
    let contacts = vec![
        contact(ALISA, "Алиса", ContactState::Accepted),
        contact(WANG, "王小明", ContactState::Accepted),
        contact(BOB, "Bob 🎸", ContactState::Accepted),
        contact(MALLORY, "", ContactState::PendingIn),
    ];
    let history = alisa_history();
    let inbox = vec![
        inbox_entry(contact(ALISA, "Алиса", ContactState::Accepted), 2, history.last().cloned()),
        inbox_entry(
            contact(WANG, "王小明", ContactState::Accepted),
            3,
            Some(incoming(100, WANG, "你好！明天见面吗？我们可以一起吃饭。", NOW - 3 * MINUTE)),
        ),
    ];
    let requests = vec![RequestView {
        contact: contact(MALLORY, "", ContactState::PendingIn),
        held_messages: 1,
        preview: Some("hi, remember me?".to_owned()),
    }];
    update(&mut app, Action::Done(Response::Status(status(&[ALISA, BOB]))));
    update(&mut app, Action::Done(Response::Presence(scene_presence())));
    let fx = update(&mut app, Action::Done(Response::Snapshot { contacts, requests, inbox }));
    assert_eq!(app.focused_id(), Some(ALISA), "the most recent conversation opens first");
    assert!(fx.contains(&Effect::LoadHistory { contact: ALISA.to_owned(), before: None, limit: 50 }), "{fx:?}");
    assert!(fx.contains(&Effect::MarkRead { contact: ALISA.to_owned() }), "{fx:?}");
    update(
        &mut app,
        Action::Done(Response::Preview {
            contact: BOB.to_owned(),
            message: Some(outgoing(200, BOB, "see you at 8", NOW - DAY, MessageState::Read)),
        }),
    );
    // Only 8 messages: the page is short, so this is the whole conversation.
    update(
        &mut app,
        Action::Done(Response::History { contact: ALISA.to_owned(), before: None, limit: 50, messages: history }),
    );
    app
}

pub fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal.draw(|frame| kith_tui::render(frame, app)).expect("draw");
    terminal
}

/// The screen as text, one line per row, wide characters once (without the cells
/// they cover), trailing spaces trimmed.
pub fn text_of(terminal: &Terminal<TestBackend>) -> String {
    use unicode_width::UnicodeWidthStr;
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        let mut skip = 0;
        for x in 0..buffer.area.width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let symbol = buffer[(x, y)].symbol();
            line.push_str(symbol);
            skip = symbol.width().saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The 100×30 screen as text ([`text_of`]).
pub fn screen_text(app: &App) -> String {
    text_of(&draw(app, 100, 30))
}

/// The row of the 100×30 screen that holds `marker` (a bar's symbol), if any.
pub fn row_with(app: &App, marker: char) -> Option<String> {
    screen_text(app).lines().find(|l| l.contains(marker)).map(str::to_owned)
}

/// The row holding `marker` (a bar's symbol) on a narrow 40×16 screen, after
/// checking that a tiny 16×5 one drops the bar and that no size down to 0×0 panics.
pub fn narrow_bar(app: &App, marker: char) -> String {
    let tiny = text_of(&draw(app, 16, 5));
    assert!(!tiny.contains(marker), "{tiny}");
    for (w, h) in [(0, 0), (1, 1), (8, 2), (20, 6), (30, 8)] {
        draw(app, w, h);
    }
    let narrow = text_of(&draw(app, 40, 16));
    narrow.lines().find(|l| l.contains(marker)).map(str::to_owned).unwrap_or_else(|| panic!("no bar:\n{narrow}"))
}

/// A node event as an action.
pub fn event(event: Event) -> Action {
    Action::Node(event)
}

/// Open the search overlay (Ctrl+F), type `words` and let the wait after typing
/// pass: returns the effects of its end (the search asked of the node).
pub fn search_for(app: &mut App, words: &str) -> Vec<Effect> {
    update(app, ctrl('f'));
    let fx = type_text(app, words);
    update(app, Action::SearchDue { edit: last_edit(&fx) })
}

/// The edit the last [`Effect::SearchAfter`] in `fx` waits after.
pub fn last_edit(fx: &[Effect]) -> u64 {
    let edit = fx.iter().rev().find_map(|e| match e {
        Effect::SearchAfter { edit, .. } => Some(*edit),
        _ => None,
    });
    edit.expect("a wait after an edit of the query")
}

/// A search hit: `message`, its snippet `snippet`, and a mark on the first place
/// each of `marked` appears in it.
pub fn hit(message: MessageView, snippet: &str, marked: &[&str]) -> kith_tui::app::SearchHit {
    let marks = marked
        .iter()
        .map(|word| {
            let at = snippet.find(word).unwrap_or_else(|| panic!("{word:?} not in {snippet:?}"));
            [at, at + word.len()]
        })
        .collect();
    kith_tui::app::SearchHit { message, snippet: snippet.to_owned(), marks }
}

/// The node's answer to a search for `text` (in `within`): `hits`.
pub fn found(text: &str, within: Option<&str>, hits: Vec<kith_tui::app::SearchHit>) -> Action {
    let query = kith_tui::app::SearchQuery { text: text.to_owned(), within: within.map(str::to_owned) };
    Action::Done(Response::Search { query, hits })
}

/// The styles (foreground, background, modifiers) of the cells showing the `nth`
/// (from 0) occurrence of `needle` on the 100×30 screen.
pub fn cells(app: &App, needle: &str, nth: usize) -> Vec<(Color, Color, Modifier)> {
    let terminal = draw(app, 100, 30);
    let buffer = terminal.backend().buffer();
    let width = usize::from(buffer.area.width);
    let mut seen = 0;
    for row in buffer.content().chunks(width) {
        let symbols: Vec<&str> = row.iter().map(|c| c.symbol()).collect();
        for start in 0..row.len() {
            if symbols[start..].concat().starts_with(needle) {
                if seen == nth {
                    let n = needle.chars().count();
                    return row[start..start + n].iter().map(|c| (c.fg, c.bg, c.modifier)).collect();
                }
                seen += 1;
                break;
            }
        }
    }
    panic!("{needle:?} #{nth} not on screen:\n{}", text_of(&terminal));
}
