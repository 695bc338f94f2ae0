//! Scrolling through a long conversation with a bounded window: the screen always
//! shows what a layout of the whole conversation shows at the same place, the window
//! stays bounded, and messages arriving while scrolled up do not move the view.
//!
//! A small in-memory "node" answers the `history` requests `update` asks for, with the
//! store's semantics (pages before an id, oldest first).

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::{ContactState, Direction};
use kith_p2p::node::Event;
use kith_p2p::views::{InboxEntry, MessageView, QuoteView, ReactionView};
use kith_tui::app::{PAGE, Scroll};
use kith_tui::{Action, App, Effect, Response, update};

/// Narrow enough that the conversation list is hidden: the pane is the whole width.
const WIDTH: u16 = 50;
const HEIGHT: u16 = 20;
/// Rows inside the message pane at `HEIGHT` (borders, input box and status bar off).
const PANE: usize = HEIGHT as usize - 6;

/// Message `n` of the long conversation: both directions, some long enough to wrap
/// over several rows, a new day every 40 messages.
fn long_message(n: u64) -> MessageView {
    let at = NOW - 30 * DAY + n * 36 * MINUTE;
    let text = match n % 7 {
        0 => format!("m{n} is a longer message that wraps over a few rows of this narrow pane, on purpose."),
        3 => format!("m{n} Привет 你好 🎉"),
        _ => format!("m{n}"),
    };
    if n.is_multiple_of(3) {
        outgoing(n, ALISA, &text, at, kith_p2p::kith_storage::MessageState::Read)
    } else {
        incoming(n, ALISA, &text, at)
    }
}

/// The node's side: every message of the conversation, oldest first.
struct Node {
    messages: Vec<MessageView>,
}

impl Node {
    fn history(&self, before: Option<&str>, limit: usize) -> Vec<MessageView> {
        let end = match before {
            Some(id) => self.messages.iter().position(|m| m.id == id).expect("before is a known message"),
            None => self.messages.len(),
        };
        self.messages[end.saturating_sub(limit)..end].to_vec()
    }
}

/// Perform every history request in `fx` (and those their answers ask for).
fn settle(app: &mut App, node: &Node, fx: Vec<Effect>) {
    let mut queue: std::collections::VecDeque<Effect> = fx.into();
    let mut rounds = 0;
    while let Some(effect) = queue.pop_front() {
        rounds += 1;
        assert!(rounds < 1000, "requests never settle");
        if let Effect::LoadHistory { contact, before, limit } = effect {
            let messages = node.history(before.as_deref(), limit);
            queue.extend(update(app, Action::Done(Response::History { contact, before, limit, messages })));
        }
    }
}

/// An app showing the conversation with Алиса, of `n` messages, at `width`×`height`.
fn open(node: &Node, width: u16, height: u16) -> App {
    let mut app = App::new(config());
    update(&mut app, Action::Resize { width, height });
    let contacts = vec![contact(ALISA, "Алиса", ContactState::Accepted)];
    let fx = update(&mut app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox: Vec::new() }));
    settle(&mut app, node, fx);
    app
}

/// The rows inside the message pane, trimmed.
fn pane(app: &App, width: u16, height: u16) -> Vec<String> {
    let screen = text_of(&draw(app, width, height));
    let rows = usize::from(height) - 6;
    screen
        .lines()
        .skip(1)
        .take(rows)
        .map(|l| l.trim_start_matches('│').trim_end_matches('│').trim_end().to_owned())
        .collect()
}

/// Every row of the conversation, laid out with everything loaded (a pane tall enough
/// for all of it and a window that never evicts at that height).
fn full_layout(node: &Node) -> Vec<String> {
    let height = 5_000u16;
    let mut app = App::new(config());
    update(&mut app, Action::Resize { width: WIDTH, height });
    let contacts = vec![contact(ALISA, "Алиса", ContactState::Accepted)];
    update(&mut app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox: Vec::new() }));
    let all = node.messages.clone();
    let limit = all.len() + 1;
    update(&mut app, Action::Done(Response::History { contact: ALISA.into(), before: None, limit, messages: all }));
    assert_eq!(app.focused().map(|c| c.messages.len()), Some(node.messages.len()));
    let rows = pane(&app, WIDTH, height);
    let first = rows.iter().position(|r| !r.is_empty()).expect("rows");
    rows[first..].to_vec()
}

/// The largest window the app may keep at this pane height (see `window.rs`).
fn window_bound() -> usize {
    let keep = 2 * PAGE.max(PANE);
    PANE + 2 * keep + 3 * PAGE + 16
}

fn depth(app: &App) -> usize {
    app.focused().map_or(0, |c| c.depth())
}

fn loaded(app: &App) -> usize {
    app.focused().map_or(0, |c| c.messages.len())
}

#[test]
fn scrolling_to_the_top_and_back_matches_the_full_layout() {
    let node = Node { messages: (1..=2_000).map(long_message).collect() };
    page_through(&node);
}

/// Message `n` of the long conversation with what issue 17 adds to a message's
/// rows: replies quoting the one before, reactions (on several rows at this width
/// now and then), edits, and deletes.
fn decorated_message(n: u64) -> MessageView {
    let mut m = long_message(n);
    if n.is_multiple_of(5) {
        let quoted = long_message(n - 1);
        let author = Some(quoted.author.clone());
        m.reply_to = Some(QuoteView { id: quoted.id, author, text: Some(quoted.text), deleted: false });
    }
    if n.is_multiple_of(4) {
        let emoji = ["👍", "🎉", "😂", "❤️", "🙏", "🔥", "👀", "🤔"];
        let shown = if n.is_multiple_of(8) { 8 } else { 2 };
        m.reactions = emoji[..shown]
            .iter()
            .map(|e| ReactionView { emoji: (*e).to_owned(), count: 1, by: vec![ALISA.to_owned()] })
            .collect();
    }
    if n.is_multiple_of(6) {
        m.edited = true;
    }
    if n.is_multiple_of(11) {
        m.deleted = true;
        m.text = String::new();
    }
    m
}

#[test]
fn quotes_reactions_edits_and_deletes_scroll_like_the_full_layout() {
    let node = Node { messages: (1..=600).map(decorated_message).collect() };
    let full = full_layout(&node).join("\n");
    // Eight reactions take two rows at this width.
    let decorations = ["↪ Алиса: m4", "(edited)", "Алиса: deleted", "👍 1  🎉 1", "🔥 1  👀 1\n      🤔 1\n"];
    for decoration in decorations {
        assert!(full.contains(decoration), "{decoration}");
    }
    page_through(&node);
}

#[test]
fn ctrl_up_walks_the_selection_up_a_long_history_keeping_it_in_view() {
    let node = Node { messages: (1..=600).map(decorated_message).collect() };
    let mut app = open(&node, WIDTH, HEIGHT);
    for steps in 1..=400 {
        let fx = update(&mut app, with(KeyCode::Up, crossterm::event::KeyModifiers::CONTROL));
        settle(&mut app, &node, fx);
        let conv = app.focused().expect("focused");
        let selected = &node.messages[node.messages.len() - steps];
        assert_eq!(conv.selected.as_deref(), Some(selected.id.as_str()), "after {steps}");
        // Its first row (the author's) is on screen.
        let head = if selected.direction == Direction::Outgoing { " you: " } else { " Алиса: " };
        let time = &pane(&app, WIDTH, HEIGHT);
        let row = time.iter().position(|r| r.contains(head) && r.starts_with(&kith_time(selected)));
        assert!(row.is_some(), "message {} in view after {steps}: {time:#?}", selected.lamport);
        assert!(loaded(&app) <= window_bound(), "{} loaded", loaded(&app));
    }
    // And back down: past the newest it follows the newest again.
    for _ in 0..400 {
        let fx = update(&mut app, with(KeyCode::Down, crossterm::event::KeyModifiers::CONTROL));
        settle(&mut app, &node, fx);
    }
    let conv = app.focused().expect("focused");
    assert_eq!((conv.selected.clone(), conv.scroll.clone()), (None, Scroll::Bottom));
    assert!(!conv.detached());
}

/// `HH:MM` of `m` as the pane shows it (the tests' zone is UTC).
fn kith_time(m: &MessageView) -> String {
    let secs = (m.sent_at / 1000) % 86_400;
    format!("{:02}:{:02}", secs / 3600, (secs / 60) % 60)
}

/// PageUp from the newest message to the top of the conversation kept by `node`,
/// and PageDown back, each page where the whole conversation laid out has it, with
/// the window bounded throughout.
fn page_through(node: &Node) {
    let full = full_layout(node);
    let mut app = open(node, WIDTH, HEIGHT);
    let page = PANE - 1;
    // From the bottom, each PageUp moves exactly one page of the full layout up.
    let mut offset = 0; // rows of the full layout below the pane
    let mut max_loaded = 0;
    let mut up = 0;
    loop {
        let end = full.len() - offset;
        assert_eq!(pane(&app, WIDTH, HEIGHT), full[end - PANE..end], "after {up} PageUps");
        max_loaded = max_loaded.max(loaded(&app));
        if end == PANE {
            break;
        }
        let fx = update(&mut app, key(KeyCode::PageUp));
        settle(&mut app, node, fx);
        offset = (offset + page).min(full.len() - PANE);
        up += 1;
        assert!(up < 10_000);
    }
    assert!(full[0].contains("beginning of your conversation"), "{:?}", &full[..3]);
    assert_eq!(depth(&app), node.messages.len(), "the whole history was paged through");
    assert!(max_loaded <= window_bound(), "window grew to {max_loaded}");
    // And back down to the newest message: the evicted pages come back in.
    let mut down = 0;
    while offset > 0 {
        let fx = update(&mut app, key(KeyCode::PageDown));
        settle(&mut app, node, fx);
        offset = offset.saturating_sub(page);
        down += 1;
        let end = full.len() - offset;
        assert_eq!(pane(&app, WIDTH, HEIGHT), full[end - PANE..end], "after {down} PageDowns");
        max_loaded = max_loaded.max(loaded(&app));
    }
    assert_eq!(app.focused().map(|c| c.scroll.clone()), Some(Scroll::Bottom));
    assert!(app.focused().is_some_and(|c| !c.detached()));
    assert!(max_loaded <= window_bound(), "window grew to {max_loaded}");
}

#[test]
fn the_window_stays_bounded_deep_in_a_long_history() {
    let node = Node { messages: (1..=6_000).map(long_message).collect() };
    let mut app = open(&node, WIDTH, HEIGHT);
    let mut presses = 0;
    while depth(&app) < 5_000 {
        let fx = update(&mut app, key(KeyCode::PageUp));
        settle(&mut app, &node, fx);
        assert!(loaded(&app) <= window_bound(), "{} loaded at depth {}", loaded(&app), depth(&app));
        presses += 1;
        assert!(presses < 20_000);
    }
    // Leaving and coming back drops the deep window and opens at the newest message.
    update(&mut app, Action::Resize { width: 100, height: 30 });
    let newest = node.messages.last().map(|m| m.id.clone());
    let fx = update(&mut app, key(KeyCode::Esc));
    assert_eq!(fx, vec![Effect::LoadHistory { contact: ALISA.into(), before: None, limit: PAGE }]);
    settle(&mut app, &node, fx);
    let conv = app.focused().expect("focused");
    assert_eq!(conv.scroll, Scroll::Bottom);
    assert_eq!(conv.messages.back().map(|m| m.id.clone()), newest);
    assert_eq!(conv.messages.len(), PAGE);
}

#[test]
fn a_message_arriving_while_scrolled_up_keeps_the_view_still() {
    let mut node = Node { messages: (1..=2_000).map(long_message).collect() };
    let mut app = open(&node, WIDTH, HEIGHT);
    // A little way up: the window still ends with the newest message.
    for _ in 0..3 {
        let fx = update(&mut app, key(KeyCode::PageUp));
        settle(&mut app, &node, fx);
    }
    let before = pane(&app, WIDTH, HEIGHT);
    let arrive = |app: &mut App, node: &mut Node, n: u64| {
        let message = long_message(n);
        node.messages.push(message.clone());
        let fx = update(app, event(Event::MessageReceived { message }));
        // Seen (the conversation is open): marked read, nothing loaded.
        assert!(fx.iter().all(|e| matches!(e, Effect::MarkRead { .. })), "{fx:?}");
    };
    for n in 2_001..=2_010 {
        arrive(&mut app, &mut node, n);
        assert_eq!(pane(&app, WIDTH, HEIGHT), before);
    }
    // Far up (the newest messages evicted): arrivals are counted, not loaded.
    for _ in 0..150 {
        let fx = update(&mut app, key(KeyCode::PageUp));
        settle(&mut app, &node, fx);
    }
    assert!(app.focused().is_some_and(|c| c.detached()));
    let before = pane(&app, WIDTH, HEIGHT);
    let (loaded_before, depth_before) = (loaded(&app), depth(&app));
    for n in 2_011..=2_200 {
        arrive(&mut app, &mut node, n);
    }
    assert_eq!(pane(&app, WIDTH, HEIGHT), before);
    assert!(loaded(&app) <= loaded_before, "nothing newer is loaded");
    assert_eq!(depth(&app), depth_before + 190, "but every arrival is counted");
    // Scrolling back down shows every one of them, in order, as the full layout does.
    let full = full_layout(&node);
    let mut presses = 0;
    while app.focused().is_some_and(|c| c.scroll != Scroll::Bottom) {
        let fx = update(&mut app, key(KeyCode::PageDown));
        settle(&mut app, &node, fx);
        presses += 1;
        assert!(presses < 2_000);
    }
    assert_eq!(pane(&app, WIDTH, HEIGHT), full[full.len() - PANE..]);
    assert!(app.focused().is_some_and(|c| !c.detached() && c.messages.len() <= window_bound()));
}

#[test]
fn opening_a_conversation_with_unread_messages_lands_at_the_first_one() {
    let node = Node { messages: (1..=2_000).map(long_message).collect() };
    // The 40 newest incoming messages are unread; ours are among them.
    let unread = 40;
    let first_unread = node.messages.iter().rev().filter(|m| m.direction == Direction::Incoming).nth(unread - 1);
    let first_unread = first_unread.expect("enough incoming messages").clone();
    let mut app = App::new(config());
    update(&mut app, Action::Resize { width: WIDTH, height: HEIGHT });
    let inbox = vec![InboxEntry {
        conversation: "a".repeat(32),
        contact: Some(contact(ALISA, "Алиса", ContactState::Accepted)),
        unread: u32::try_from(unread).unwrap_or(u32::MAX),
        last: node.messages.last().cloned(),
        muted: false,
        muted_until: None,
    }];
    let contacts = vec![contact(ALISA, "Алиса", ContactState::Accepted)];
    let fx = update(&mut app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox }));
    // The first page holds every unread message.
    let asked = fx.iter().find_map(|e| match e {
        Effect::LoadHistory { before: None, limit, .. } => Some(*limit),
        _ => None,
    });
    assert!(asked.is_some_and(|limit| limit >= unread), "{fx:?}");
    settle(&mut app, &node, fx);

    let rows = pane(&app, WIDTH, HEIGHT);
    let line = rows.iter().position(|r| r.contains("new messages")).expect("the new-messages line is on screen");
    assert!(line <= 1, "the line is at the top of the pane (under a day separator at most): {rows:#?}");
    let text = first_unread.text.split_whitespace().next().unwrap_or_default().to_owned();
    assert!(rows[line + 1].contains(&format!(" Алиса: {text}")), "the first unread message right below: {rows:#?}");
    assert!(matches!(app.focused().map(|c| &c.scroll), Some(Scroll::At { .. })), "not at the newest message");
    // Every unread message is below the line, none above it.
    let conv = app.focused().expect("focused");
    let at = conv.messages.iter().position(|m| Some(&m.id) == conv.unread_marker.as_ref()).expect("marker loaded");
    let below = conv.messages.iter().skip(at).filter(|m| m.direction == Direction::Incoming).count();
    assert_eq!(below, unread);
    // Scrolling down from there reaches the newest message.
    let mut presses = 0;
    while app.focused().is_some_and(|c| c.scroll != Scroll::Bottom) {
        let fx = update(&mut app, key(KeyCode::PageDown));
        settle(&mut app, &node, fx);
        presses += 1;
        assert!(presses < 100);
    }
    let full = full_layout(&node);
    assert_eq!(pane(&app, WIDTH, HEIGHT), full[full.len() - PANE..]);
}

#[test]
fn a_few_unread_messages_that_fit_open_at_the_newest() {
    let node = Node { messages: (1..=200).map(long_message).collect() };
    let mut app = App::new(config());
    update(&mut app, Action::Resize { width: WIDTH, height: HEIGHT });
    let inbox = vec![InboxEntry {
        conversation: "a".repeat(32),
        contact: Some(contact(ALISA, "Алиса", ContactState::Accepted)),
        unread: 2,
        last: node.messages.last().cloned(),
        muted: false,
        muted_until: None,
    }];
    let contacts = vec![contact(ALISA, "Алиса", ContactState::Accepted)];
    let fx = update(&mut app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox }));
    settle(&mut app, &node, fx);
    assert_eq!(app.focused().map(|c| c.scroll.clone()), Some(Scroll::Bottom));
    let rows = pane(&app, WIDTH, HEIGHT);
    assert!(rows.iter().any(|r| r.contains("new messages")), "{rows:#?}");
}

#[test]
fn a_search_hit_deep_in_the_history_opens_at_it_and_scrolls_on_both_ways_like_the_full_layout() {
    let node = Node { messages: (1..=2_000).map(long_message).collect() };
    let full = full_layout(&node);
    let mut app = open(&node, WIDTH, HEIGHT);
    let target = node.messages[499].clone();
    search_for(&mut app, "m500");
    update(&mut app, found("m500", None, vec![hit(target.clone(), &target.text, &["m500"])]));
    let fx = update(&mut app, key(KeyCode::Enter));
    settle(&mut app, &node, fx);
    // The hit's row is the pane's bottom row, as in the whole conversation laid out.
    let row = full.iter().position(|r| r.contains(" Алиса: m500 ")).expect("m500 in the full layout");
    let mut end = row + 1;
    assert_eq!(pane(&app, WIDTH, HEIGHT), full[end - PANE..end]);
    let conv = app.focused().expect("focused");
    assert_eq!(conv.selected.as_deref(), Some(target.id.as_str()));
    assert!(conv.messages.len() <= window_bound(), "{} loaded", conv.messages.len());
    // Far up (the messages after the hit, still unpaged-in at first, are evicted
    // and paged back in on the way down)…
    let page = PANE - 1;
    for up in 0..40 {
        let fx = update(&mut app, key(KeyCode::PageUp));
        settle(&mut app, &node, fx);
        end -= page.min(end - PANE);
        assert_eq!(pane(&app, WIDTH, HEIGHT), full[end - PANE..end], "after {up} PageUps");
        assert!(loaded(&app) <= window_bound(), "{} loaded", loaded(&app));
    }
    // …then down to the newest message, every page where the full layout has it.
    let mut down = 0;
    while end < full.len() {
        let fx = update(&mut app, key(KeyCode::PageDown));
        settle(&mut app, &node, fx);
        end = (end + page).min(full.len());
        assert_eq!(pane(&app, WIDTH, HEIGHT), full[end - PANE..end], "after {down} PageDowns");
        assert!(loaded(&app) <= window_bound(), "{} loaded", loaded(&app));
        down += 1;
        assert!(down < 2_000);
    }
    let conv = app.focused().expect("focused");
    assert_eq!(conv.scroll, Scroll::Bottom);
    assert!(!conv.detached());
}
