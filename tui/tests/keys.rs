//! The state machine driven like the runtime drives it: keys, mouse, paste, node
//! events and answers in; state and effects out. No node, no terminal, no sleeps.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyModifiers};
use kith_p2p::kith_storage::{ContactState, MessageState};
use kith_p2p::node::Event;
use kith_tui::app::{InviteView, NodeState, Overlay, Scroll};
use kith_tui::{Action, App, Config, Effect, GroupChange, Response, update};

fn send_effects(fx: &[Effect]) -> Vec<(String, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send { contact, text, .. } => Some((contact.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

// ---- typing and editing ----------------------------------------------------------------

#[test]
fn typing_inserts_at_the_cursor() {
    let mut app = scene(config());
    // Typing asks for nothing but telling Алиса we type (once: see `typing.rs`).
    assert_eq!(type_text(&mut app, "Привет мир"), vec![Effect::Typing { contact: ALISA.into() }]);
    assert_eq!(app.input().text(), "Привет мир");
    update(&mut app, key(KeyCode::Home));
    type_text(&mut app, "» ");
    update(&mut app, key(KeyCode::End));
    type_text(&mut app, "!");
    assert_eq!(app.input().text(), "» Привет мир!");
    // Two words back: before "мир" (the first stops before "!").
    update(&mut app, with(KeyCode::Left, KeyModifiers::CONTROL));
    update(&mut app, with(KeyCode::Left, KeyModifiers::CONTROL));
    update(&mut app, key(KeyCode::Backspace));
    assert_eq!(app.input().text(), "» Приветмир!");
    update(&mut app, key(KeyCode::Delete));
    assert_eq!(app.input().text(), "» Приветир!");
    update(&mut app, ctrl('w'));
    assert_eq!(app.input().text(), "» ир!");
    update(&mut app, ctrl('u'));
    assert_eq!(app.input().text(), "ир!");
    // Uppercase arrives with Shift; AltGr as Ctrl+Alt.
    update(&mut app, with(KeyCode::Char('Z'), KeyModifiers::SHIFT));
    update(&mut app, with(KeyCode::Char('@'), KeyModifiers::CONTROL | KeyModifiers::ALT));
    assert_eq!(app.input().text(), "Z@ир!");
}

#[test]
fn cursor_moves_by_grapheme_and_word() {
    let mut app = scene(config());
    type_text(&mut app, "hi 👋🏽 你好 there");
    update(&mut app, with(KeyCode::Left, KeyModifiers::CONTROL));
    assert_eq!(&app.input().text()[app.input().cursor()..], "there");
    update(&mut app, with(KeyCode::Char('b'), KeyModifiers::ALT));
    assert_eq!(&app.input().text()[app.input().cursor()..], "你好 there");
    update(&mut app, key(KeyCode::Left));
    update(&mut app, key(KeyCode::Left));
    assert_eq!(
        &app.input().text()[app.input().cursor()..],
        "👋🏽 你好 there",
        "the emoji with its skin tone is one step"
    );
    update(&mut app, with(KeyCode::Char('f'), KeyModifiers::ALT));
    assert_eq!(&app.input().text()[app.input().cursor()..], " 你好 there");
    update(&mut app, ctrl('a'));
    assert_eq!(app.input().cursor(), 0);
    update(&mut app, ctrl('e'));
    assert_eq!(app.input().cursor(), app.input().text().len());
}

#[test]
fn multi_line_input_and_enter_sends_the_exact_text() {
    let mut app = scene(config());
    type_text(&mut app, "first");
    update(&mut app, with(KeyCode::Enter, KeyModifiers::ALT));
    type_text(&mut app, "  second");
    update(&mut app, with(KeyCode::Enter, KeyModifiers::SHIFT));
    update(&mut app, ctrl('j'));
    type_text(&mut app, "fourth 🌍 ");
    assert_eq!(app.input().line_count(), 4);
    // Up and Down move between lines, keeping the column.
    update(&mut app, key(KeyCode::Up));
    update(&mut app, key(KeyCode::Up));
    update(&mut app, key(KeyCode::Home));
    type_text(&mut app, ">");
    assert_eq!(app.input().text(), "first\n>  second\n\nfourth 🌍 ");
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(send_effects(&fx), vec![(ALISA.to_owned(), "first\n>  second\n\nfourth 🌍 ".to_owned())]);
    assert!(app.input().is_empty());
    // Nothing to send: nothing happens.
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    type_text(&mut app, "   ");
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
}

#[test]
fn history_recalls_previous_inputs() {
    let mut app = scene(config());
    for text in ["one", "two\nlines", "/read"] {
        type_text(&mut app, text.split('\n').next().unwrap_or_default());
        if let Some(rest) = text.split_once('\n').map(|(_, r)| r) {
            update(&mut app, with(KeyCode::Enter, KeyModifiers::ALT));
            type_text(&mut app, rest);
        }
        update(&mut app, key(KeyCode::Enter));
    }
    type_text(&mut app, "draft");
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input().text(), "/read");
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input().text(), "two\nlines");
    // On a recalled multi-line entry, Up first moves up a line...
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input().text(), "two\nlines");
    // ...then goes further back.
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input().text(), "one");
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input().text(), "one", "the oldest entry stays");
    update(&mut app, key(KeyCode::Down));
    assert_eq!(app.input().text(), "two\nlines");
    update(&mut app, key(KeyCode::Down));
    update(&mut app, key(KeyCode::Down));
    assert_eq!(app.input().text(), "draft", "past the newest entry the draft comes back");
    assert_eq!(app.history().entries(), ["one", "two\nlines", "/read"]);
}

#[test]
fn paste_inserts_verbatim() {
    let mut app = scene(config());
    type_text(&mut app, "<>");
    update(&mut app, key(KeyCode::Left));
    update(&mut app, Action::Paste("line 1\r\n\tline 2 🙂\r\n/not a command".to_owned()));
    assert_eq!(app.input().text(), "<line 1\n\tline 2 🙂\n/not a command>");
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(send_effects(&fx), vec![(ALISA.to_owned(), "<line 1\n\tline 2 🙂\n/not a command>".to_owned())]);
}

// ---- slash commands --------------------------------------------------------------------

#[test]
fn slash_commands_produce_effects() {
    let mut app = scene(config());
    assert_eq!(
        command(&mut app, "/add kith:abc123 Bob Smith"),
        vec![Effect::Add { target: "kith:abc123".into(), alias: Some("Bob Smith".into()) }]
    );
    assert_eq!(command(&mut app, "/add 12D3KooWxyz"), vec![Effect::Add { target: "12D3KooWxyz".into(), alias: None }]);
    assert_eq!(command(&mut app, "/read"), vec![Effect::MarkRead { contact: ALISA.into() }]);
    assert_eq!(command(&mut app, "/block"), vec![Effect::Block { contact: ALISA.into() }]);
    assert_eq!(command(&mut app, "/reject mallory"), vec![Effect::Reject { contact: "mallory".into() }]);
    assert_eq!(command(&mut app, "/accept Mallory Two"), vec![Effect::Accept { contact: "Mallory Two".into() }]);
    assert_eq!(
        command(&mut app, "//slash"),
        vec![Effect::Send { contact: ALISA.into(), text: "/slash".into(), reply_to: None }]
    );
    assert!(command(&mut app, "/help").is_empty());
    assert_eq!(app.overlay(), Some(&Overlay::Help { scroll: 0 }));
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(command(&mut app, "/quit"), vec![Effect::Quit]);
    assert!(app.should_quit());
}

#[test]
fn accept_defaults_to_the_open_request() {
    let mut app = scene(config());
    // Requests come last in the list: Ctrl+P from the first wraps to it.
    update(&mut app, ctrl('p'));
    assert_eq!(app.focused_id(), Some(MALLORY));
    assert_eq!(command(&mut app, "/accept"), vec![Effect::Accept { contact: MALLORY.into() }]);
    update(&mut app, Action::Done(Response::ContactUpdated(contact(MALLORY, "", ContactState::Accepted))));
    assert!(!app.conversation(MALLORY).is_some_and(|c| c.is_request()));
    assert!(status_text(&app).contains("accepted"));
    // Rejecting removes the conversation and opens another one.
    update(&mut app, Action::Done(Response::Removed { peer_id: MALLORY.into() }));
    assert!(app.conversation(MALLORY).is_none());
    assert!(app.focused_id().is_some());
}

#[test]
fn bad_commands_report_in_the_status_line() {
    let mut app = scene(config());
    assert!(command(&mut app, "/frobnicate now").is_empty());
    let status = app.status().cloned();
    assert!(status.as_ref().is_some_and(|s| s.error && s.text.contains("unknown command /frobnicate")), "{status:?}");
    assert!(command(&mut app, "/add").is_empty());
    assert!(status_text(&app).contains("usage: /add"));
    assert!(command(&mut app, "/group").is_empty());
    assert!(status_text(&app).starts_with("usage: /group create <name>"));
    assert!(!app.should_quit());
    // Status messages expire.
    for _ in 0..20 {
        update(&mut app, Action::Tick);
    }
    assert!(app.status().is_none());
}

#[test]
fn commands_that_need_a_conversation_say_so() {
    let mut app = App::new(config());
    update(&mut app, Action::Done(Response::Snapshot { contacts: vec![], requests: vec![], inbox: vec![] }));
    assert!(command(&mut app, "/accept").is_empty());
    assert!(status_text(&app).contains("no conversation open"));
    assert!(command(&mut app, "hello?").is_empty());
    assert_eq!(app.input().text(), "hello?", "the text is kept when there is nobody to send it to");
}

#[test]
fn invite_overlay_loads_then_shows_and_closes() {
    let mut app = scene(config());
    assert_eq!(command(&mut app, "/invite"), vec![Effect::Invite]);
    assert_eq!(app.overlay(), Some(&Overlay::Invite(InviteView::Loading)));
    update(&mut app, Action::Done(Response::Invite { invite: "kith:xyz".into(), qr: "█▀\n".into() }));
    assert!(matches!(app.overlay(), Some(Overlay::Invite(InviteView::Ready { invite, .. })) if invite == "kith:xyz"));
    // Typing does not leak into the input while an overlay is open.
    type_text(&mut app, "abc");
    assert!(app.input().is_empty());
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.overlay(), None);
    // A failed invite closes the overlay and reports.
    command(&mut app, "/invite");
    update(&mut app, Action::Failed { effect: Effect::Invite, error: "the node has stopped".into() });
    assert_eq!(app.overlay(), None);
    assert!(status_text(&app).contains("the node has stopped"));
}

// ---- conversations, switcher, scrolling -----------------------------------------------

#[test]
fn switching_conversations_loads_and_marks_read() {
    let mut app = scene(config());
    let order: Vec<&str> = app.conversations().iter().map(|c| c.peer_id()).collect();
    assert_eq!(order, [ALISA, WANG, BOB, MALLORY], "recent first, requests last");
    let fx = update(&mut app, ctrl('n'));
    assert_eq!(app.focused_id(), Some(WANG));
    assert_eq!(
        fx,
        vec![
            Effect::LoadHistory { contact: WANG.into(), before: None, limit: 50 },
            Effect::MarkRead { contact: WANG.into() },
        ]
    );
    assert_eq!(app.conversation(WANG).map(|c| c.unread), Some(0));
    update(&mut app, with(KeyCode::Down, KeyModifiers::ALT));
    assert_eq!(app.focused_id(), Some(BOB));
    update(&mut app, ctrl('n'));
    assert_eq!(app.focused_id(), Some(MALLORY));
    update(&mut app, ctrl('n'));
    assert_eq!(app.focused_id(), Some(ALISA), "wraps around");
    assert!(update(&mut app, ctrl('p')).iter().all(|e| !matches!(e, Effect::MarkRead { .. })));
    assert_eq!(app.focused_id(), Some(MALLORY));
    update(&mut app, with(KeyCode::Up, KeyModifiers::ALT));
    assert_eq!(app.focused_id(), Some(BOB));
    update(&mut app, ctrl('p'));
    assert_eq!(app.focused_id(), Some(WANG));
    // Already loading: switching back does not ask again.
    update(&mut app, ctrl('p'));
    assert!(update(&mut app, ctrl('n')).is_empty());
}

#[test]
fn quick_switcher_filters_and_selects() {
    let mut app = scene(config());
    update(&mut app, ctrl('k'));
    assert!(matches!(app.overlay(), Some(Overlay::Switcher(_))));
    let labels = |app: &App, query: &str| -> Vec<String> {
        app.switcher_matches(query).iter().map(|(i, _)| app.conversations()[*i].label().to_owned()).collect()
    };
    assert_eq!(labels(&app, "").len(), 4);
    assert_eq!(labels(&app, "bo"), ["Bob 🎸"]);
    assert_eq!(labels(&app, "ЛИС"), ["Алиса"]);
    assert_eq!(labels(&app, "小明"), ["王小明"]);
    assert_eq!(labels(&app, "mallory"), [MALLORY], "no alias: matched by peer id");
    assert!(labels(&app, "zzz").is_empty());
    type_text(&mut app, "o");
    let matches = labels(&app, "o");
    assert!(matches.len() >= 2, "{matches:?}");
    // Down selects the second match; Enter opens it and closes the switcher.
    update(&mut app, key(KeyCode::Down));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.overlay(), None);
    let chosen = app.focused().map(|c| c.label().to_owned());
    assert_eq!(chosen.as_deref(), Some(matches[1].as_str()));
    assert!(!fx.is_empty() || chosen.as_deref() == Some("Алиса"));
    // Esc leaves without switching.
    let before = app.focused_id().map(str::to_owned);
    update(&mut app, ctrl('k'));
    type_text(&mut app, "王");
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.overlay(), None);
    assert_eq!(app.focused_id().map(str::to_owned), before);
    // Typing after a selection resets it to the best match.
    update(&mut app, ctrl('k'));
    update(&mut app, key(KeyCode::Down));
    update(&mut app, key(KeyCode::Down));
    type_text(&mut app, "wang");
    update(&mut app, key(KeyCode::Backspace));
    update(&mut app, key(KeyCode::Backspace));
    update(&mut app, key(KeyCode::Backspace));
    update(&mut app, key(KeyCode::Backspace));
    type_text(&mut app, "王");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(WANG));
}

/// Alisa with a full page of 50 messages, so older ones may exist.
fn long_conversation() -> App {
    let mut app = scene(config());
    let page: Vec<_> =
        (1000..1050).map(|n| incoming(n, ALISA, &format!("message {n}"), NOW - (1050 - n) * MINUTE)).collect();
    update(&mut app, Action::Node(Event::Lagged { missed: 3 }));
    update(
        &mut app,
        Action::Done(Response::History { contact: ALISA.into(), before: None, limit: 50, messages: page }),
    );
    app
}

#[test]
fn page_up_scrolls_and_loads_older_pages_at_the_top() {
    let mut app = long_conversation();
    let conv = app.conversation(ALISA).cloned();
    assert!(conv.as_ref().is_some_and(|c| c.has_older && c.loaded && c.loading.is_none()), "{conv:?}");
    let mut requested = Vec::new();
    for _ in 0..10 {
        requested.extend(update(&mut app, key(KeyCode::PageUp)));
    }
    let scroll = app.conversation(ALISA).map(|c| c.scroll.clone()).expect("alisa");
    assert_ne!(scroll, Scroll::Bottom);
    // Exactly one page request, for messages before the oldest loaded one.
    assert_eq!(
        requested,
        vec![Effect::LoadHistory { contact: ALISA.into(), before: Some(format!("{:032x}", 1000)), limit: 50 }]
    );
    // The older page arrives; it is short, so it is the beginning.
    let older: Vec<_> = (990..1000).map(|n| incoming(n, ALISA, &format!("old {n}"), NOW - DAY)).collect();
    update(
        &mut app,
        Action::Done(Response::History {
            contact: ALISA.into(),
            before: Some(format!("{:032x}", 1000)),
            limit: 50,
            messages: older,
        }),
    );
    let conv = app.conversation(ALISA).cloned().expect("alisa");
    assert_eq!(conv.messages.len(), 60);
    assert_eq!(conv.messages.front().map(|m| m.text.as_str()), Some("old 990"));
    assert!(!conv.has_older);
    assert_eq!(conv.scroll, scroll, "the view stays where it was");
    for _ in 0..10 {
        assert!(update(&mut app, key(KeyCode::PageUp)).is_empty(), "nothing older to load");
    }
    // PageDown and Esc come back to the newest message.
    let top = app.conversation(ALISA).map(|c| c.scroll.clone());
    update(&mut app, key(KeyCode::PageDown));
    assert!(app.conversation(ALISA).is_some_and(|c| Some(&c.scroll) != top.as_ref() && c.scroll != Scroll::Bottom));
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.conversation(ALISA).map(|c| c.scroll.clone()), Some(Scroll::Bottom));
    // Leaving the conversation trims it back to one page.
    update(&mut app, ctrl('n'));
    let conv = app.conversation(ALISA).cloned().expect("alisa");
    assert_eq!(conv.messages.len(), 50);
    assert!(conv.has_older);
}

#[test]
fn failed_page_load_can_be_retried() {
    let mut app = long_conversation();
    let fx: Vec<Effect> = (0..10).flat_map(|_| update(&mut app, key(KeyCode::PageUp))).collect();
    let [effect] = fx.as_slice() else { panic!("{fx:?}") };
    update(&mut app, Action::Failed { effect: effect.clone(), error: "boom".into() });
    assert!(status_text(&app).contains("boom"));
    assert_eq!(update(&mut app, key(KeyCode::PageUp)), vec![effect.clone()]);
}

#[test]
fn mouse_scrolls_the_pane_under_the_pointer_and_clicks_select() {
    let mut app = long_conversation();
    // 100x30: the list is columns 0..25, messages to its right.
    let bottom = text_of(&draw(&app, 100, 30));
    update(&mut app, wheel(true, 60, 10));
    assert!(app.conversation(ALISA).is_some_and(|c| matches!(c.scroll, Scroll::At { .. })));
    // Three rows: the rows at the bottom before are three rows higher now.
    let scrolled = text_of(&draw(&app, 100, 30));
    let pane = |screen: &str, row: usize| screen.lines().nth(row).map(|l| l.split('│').nth(3).unwrap_or("").to_owned());
    assert_eq!(pane(&bottom, 21), pane(&scrolled, 24));
    assert_ne!(pane(&bottom, 24), pane(&scrolled, 24));
    update(&mut app, wheel(false, 60, 10));
    assert_eq!(app.conversation(ALISA).map(|c| c.scroll.clone()), Some(Scroll::Bottom));
    // Wheel over the list scrolls the list (it fits here, so it stays put).
    update(&mut app, wheel(false, 5, 5));
    assert_eq!(app.list_offset(), 0);
    assert_eq!(app.conversation(ALISA).map(|c| c.scroll.clone()), Some(Scroll::Bottom));
    // Rows 1-2 are Алиса, 3-4 王小明, 5-6 Bob; click Bob's preview line.
    let fx = update(&mut app, click(5, 6));
    assert_eq!(app.focused_id(), Some(BOB));
    assert_eq!(fx, vec![Effect::LoadHistory { contact: BOB.into(), before: None, limit: 50 }]);
    // A click on the border or the messages does nothing.
    assert!(update(&mut app, click(0, 3)).is_empty());
    assert!(update(&mut app, click(60, 3)).is_empty());
    assert_eq!(app.focused_id(), Some(BOB));
}

#[test]
fn esc_closes_every_overlay() {
    let mut app = scene(config());
    for open in [key(KeyCode::F(1)), ctrl('k')] {
        update(&mut app, open);
        assert!(app.overlay().is_some());
        update(&mut app, key(KeyCode::Esc));
        assert_eq!(app.overlay(), None);
    }
    // `?` opens the help only on an empty input; otherwise it is typed.
    update(&mut app, key(KeyCode::Char('?')));
    assert!(matches!(app.overlay(), Some(Overlay::Help { .. })));
    update(&mut app, key(KeyCode::Down));
    assert_eq!(app.overlay(), Some(&Overlay::Help { scroll: 1 }));
    update(&mut app, key(KeyCode::F(1)));
    assert_eq!(app.overlay(), None);
    type_text(&mut app, "why?");
    assert_eq!(app.input().text(), "why?");
    assert_eq!(app.overlay(), None);
}

#[test]
fn quit_keys() {
    for quit in [ctrl('c'), ctrl('q')] {
        let mut app = scene(config());
        update(&mut app, ctrl('k'));
        assert_eq!(update(&mut app, quit), vec![Effect::Quit], "quits even from an overlay");
        assert!(app.should_quit());
    }
}

// ---- node events, unread and notifications ---------------------------------------------

#[test]
fn message_in_another_conversation_rings_and_notifies() {
    let mut app = scene(config());
    let before = app.conversation(BOB).map_or(0, |c| c.unread);
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(300, BOB, "🎸 gig tonight?", NOW) }));
    assert_eq!(fx, vec![Effect::Bell, Effect::Notify { from: "Bob 🎸".into(), text: "🎸 gig tonight?".into() }]);
    let bob = app.conversation(BOB).cloned().expect("bob");
    assert_eq!(bob.unread, before + 1);
    assert_eq!(bob.last.map(|m| m.text), Some("🎸 gig tonight?".into()));
    assert_eq!(app.conversations()[0].peer_id(), BOB, "the newest conversation moves to the top");
    assert_eq!(app.focused_id(), Some(ALISA), "focus stays");
    // Opening it marks it read and shows the "new messages" line above the message.
    let fx = update(&mut app, ctrl('p'));
    assert_eq!(app.focused_id(), Some(BOB));
    assert!(fx.contains(&Effect::MarkRead { contact: BOB.into() }));
}

#[test]
fn message_in_the_focused_conversation_is_marked_read_quietly() {
    let mut app = scene(config());
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(301, ALISA, "ты тут?", NOW) }));
    assert_eq!(fx, vec![Effect::MarkRead { contact: ALISA.into() }]);
    let conv = app.conversation(ALISA).cloned().expect("alisa");
    assert_eq!(conv.unread, 0);
    assert_eq!(conv.messages.back().map(|m| m.text.as_str()), Some("ты тут?"));
    // The same message again (a retry) is not shown twice.
    update(&mut app, event(Event::MessageReceived { message: incoming(301, ALISA, "ты тут?", NOW) }));
    assert_eq!(app.conversation(ALISA).map(|c| c.messages.len()), Some(conv.messages.len()));
}

#[test]
fn unfocused_terminal_counts_as_not_looking() {
    let mut app = scene(config());
    update(&mut app, Action::FocusLost);
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(302, ALISA, "alo?", NOW) }));
    assert!(fx.contains(&Effect::Bell));
    assert_eq!(app.conversation(ALISA).map(|c| c.unread), Some(1));
    assert_eq!(update(&mut app, Action::FocusGained), vec![Effect::MarkRead { contact: ALISA.into() }]);
    // A key press also proves someone is looking (some terminals report focus badly).
    update(&mut app, Action::FocusLost);
    update(&mut app, event(Event::MessageReceived { message: incoming(303, ALISA, "и?", NOW) }));
    assert_eq!(
        update(&mut app, key(KeyCode::Char('x'))),
        vec![Effect::MarkRead { contact: ALISA.into() }, Effect::Typing { contact: ALISA.into() }]
    );
}

#[test]
fn bell_and_notify_follow_the_options() {
    let mut app = scene(Config { bell: false, notify: false, ..config() });
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(303, BOB, "quiet", NOW) }));
    assert!(fx.is_empty(), "{fx:?}");
    let mut app = scene(Config { bell: false, notify: true, ..config() });
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(304, BOB, "hi", NOW) }));
    assert_eq!(fx, vec![Effect::Notify { from: "Bob 🎸".into(), text: "hi".into() }]);
}

#[test]
fn our_own_messages_never_notify() {
    let mut app = scene(config());
    let fx = update(
        &mut app,
        event(Event::MessageReceived { message: outgoing(305, BOB, "from another device", NOW, MessageState::Sent) }),
    );
    assert!(fx.is_empty());
    assert_eq!(app.conversation(BOB).map(|c| c.unread), Some(0));
}

#[test]
fn sent_messages_appear_and_follow_their_state() {
    let mut app = scene(config());
    let fx = command(&mut app, "hello");
    assert_eq!(send_effects(&fx), vec![(ALISA.to_owned(), "hello".to_owned())]);
    // The state event can overtake the answer to `send`.
    update(
        &mut app,
        event(Event::MessageStateChanged {
            id: format!("{:032x}", 400),
            conversation: "c".into(),
            state: MessageState::Sent,
        }),
    );
    update(&mut app, Action::Done(Response::Sent(outgoing(400, ALISA, "hello", NOW, MessageState::Pending))));
    let state = |app: &App| app.conversation(ALISA).and_then(|c| c.messages.back().map(|m| (m.text.clone(), m.state)));
    assert_eq!(state(&app), Some(("hello".into(), MessageState::Sent)));
    for next in [MessageState::Delivered, MessageState::Read, MessageState::Sent] {
        update(
            &mut app,
            event(Event::MessageStateChanged { id: format!("{:032x}", 400), conversation: "c".into(), state: next }),
        );
    }
    assert_eq!(state(&app), Some(("hello".into(), MessageState::Read)), "states never go backwards");
}

#[test]
fn messages_sent_by_another_client_are_picked_up() {
    let mut app = scene(config());
    let alisa_conversation = app.conversation(ALISA).and_then(|c| c.messages.front()).map(|m| m.conversation.clone());
    let conversation = alisa_conversation.expect("loaded");
    // `kith send` from a script: the TUI only sees the state change of an unknown id.
    let fx = update(
        &mut app,
        event(Event::MessageStateChanged { id: format!("{:032x}", 700), conversation, state: MessageState::Sent }),
    );
    assert_eq!(fx, vec![Effect::LoadHistory { contact: ALISA.into(), before: None, limit: 50 }]);
    // While a send from here is in flight, the event is just early: no reload.
    update(
        &mut app,
        Action::Done(Response::History { contact: ALISA.into(), before: None, limit: 50, messages: alisa_history() }),
    );
    command(&mut app, "mine");
    let conversation = app.conversation(ALISA).and_then(|c| c.messages.front()).map(|m| m.conversation.clone());
    let fx = update(
        &mut app,
        event(Event::MessageStateChanged {
            id: format!("{:032x}", 701),
            conversation: conversation.unwrap_or_default(),
            state: MessageState::Sent,
        }),
    );
    assert!(fx.is_empty(), "{fx:?}");
}

#[test]
fn a_failed_send_gives_the_text_back() {
    let mut app = scene(config());
    let fx = command(&mut app, "important");
    let effect = fx.into_iter().next().expect("send");
    update(&mut app, Action::Failed { effect, error: "message too long".into() });
    assert_eq!(app.input().text(), "important");
    assert!(status_text(&app).starts_with("not sent"));
}

#[test]
fn contact_events_update_the_list() {
    let mut app = scene(config());
    let eve = "12D3KooWEveEveEveEveEveEveEveEveEveEveEveEveEveEveE0006";
    let fx = update(&mut app, event(Event::ContactRequest { contact: contact(eve, "", ContactState::PendingIn) }));
    assert!(fx.contains(&Effect::Refresh) && fx.contains(&Effect::Bell), "{fx:?}");
    assert!(app.conversation(eve).is_some_and(|c| c.is_request()));
    assert!(status_text(&app).contains("contact request"));
    // Blocking removes it from the list.
    update(&mut app, event(Event::ContactChanged { contact: contact(eve, "", ContactState::Blocked) }));
    assert!(app.conversation(eve).is_none());
    // Online markers follow presence, not connections.
    assert!(!app.is_online(WANG));
    update(&mut app, event(Event::PeerConnected { peer_id: WANG.into() }));
    assert!(!app.is_online(WANG));
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: true, last_seen: Some(NOW) }));
    assert!(app.is_online(WANG));
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: false, last_seen: Some(NOW) }));
    assert!(!app.is_online(WANG));
    // A message from someone unknown re-reads the list.
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(500, eve, "?", NOW) }));
    assert_eq!(fx, vec![Effect::Refresh]);
}

#[test]
fn losing_the_node_is_reported() {
    let mut app = scene(config());
    assert_eq!(app.node(), &NodeState::Connected);
    update(&mut app, Action::Disconnected { error: "the node closed the connection".into(), retry_in: None });
    assert!(matches!(app.node(), NodeState::Disconnected { .. }));
    assert!(app.status().is_some_and(|s| s.error));
}

#[test]
fn startup_asks_for_the_list_and_status() {
    let app = App::new(config());
    assert_eq!(
        app.start(),
        vec![
            Effect::Refresh,
            Effect::LoadStatus,
            Effect::LoadGroups,
            Effect::LoadConversations,
            Effect::LoadCalls,
            Effect::LoadRooms,
            Effect::LoadPresence
        ]
    );
    assert_eq!(app.node(), &NodeState::Connecting);
}

/// A deterministic storm of keys, pastes, clicks, events and resizes: `update` and
/// `render` never panic.
#[test]
fn random_input_never_panics() {
    let keys = [
        key(KeyCode::Char('x')),
        key(KeyCode::Char('/')),
        key(KeyCode::Char('?')),
        key(KeyCode::Char('你')),
        key(KeyCode::Enter),
        with(KeyCode::Enter, KeyModifiers::ALT),
        key(KeyCode::Backspace),
        key(KeyCode::Delete),
        key(KeyCode::Left),
        key(KeyCode::Right),
        key(KeyCode::Up),
        key(KeyCode::Down),
        key(KeyCode::Home),
        key(KeyCode::End),
        key(KeyCode::PageUp),
        key(KeyCode::PageDown),
        key(KeyCode::Tab),
        key(KeyCode::BackTab),
        key(KeyCode::Esc),
        key(KeyCode::F(1)),
        ctrl('k'),
        ctrl('w'),
        ctrl('u'),
        with(KeyCode::Left, KeyModifiers::CONTROL),
        with(KeyCode::Char('d'), KeyModifiers::ALT),
        Action::Paste("a\nб\n🎉".into()),
        click(3, 3),
        wheel(true, 50, 5),
        wheel(false, 5, 5),
        Action::Tick,
        event(Event::MessageReceived { message: incoming(600, BOB, "ping", NOW) }),
        event(Event::Lagged { missed: 1 }),
        event(Event::Typing { conversation: "c".into(), group: None, peer_id: ALISA.into() }),
        event(Event::Typing { conversation: "c".into(), group: None, peer_id: BOB.into() }),
        event(Event::Presence { peer_id: ALISA.into(), online: false, last_seen: Some(NOW) }),
        event(Event::Presence { peer_id: BOB.into(), online: true, last_seen: Some(NOW) }),
    ];
    let mut app = scene(config());
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for step in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let action = keys[(seed % keys.len() as u64) as usize].clone();
        if matches!(action, Action::Key(k) if k.code == KeyCode::Enter) && app.input().text().starts_with("/q") {
            continue;
        }
        update(&mut app, action);
        if step % 50 == 0 {
            let (w, h) = ((seed >> 8) % 120, (seed >> 16) % 40);
            update(&mut app, Action::Resize { width: w as u16, height: h as u16 });
            draw(&app, w as u16, h as u16);
        }
    }
}

// ---- groups ------------------------------------------------------------------------------

#[test]
fn group_create_asks_the_node_and_opens_the_new_group() {
    let mut app = scene(config());
    let fx = command(&mut app, "/group create Book club");
    assert_eq!(fx, vec![Effect::Group(GroupChange::Create { name: "Book club".into() })]);
    assert!(status_text(&app).contains("creating #Book club"));
    assert!(command(&mut app, "/group create").is_empty());
    assert!(status_text(&app).contains("usage: /group create <name>"));
    // The node answers with the group: it is listed and opened.
    let op = GroupChange::Create { name: "Book club".into() };
    let fx = update(&mut app, Action::Done(Response::GroupUpdated { op, group: book_club(true) }));
    assert_eq!(app.focused_id(), Some(GROUP));
    assert!(fx.contains(&Effect::LoadHistory { contact: GROUP.into(), before: None, limit: 50 }), "{fx:?}");
    assert!(status_text(&app).contains("created #Book club"));
    // A failure is reported like the other commands' failures.
    let effect = Effect::Group(GroupChange::Create { name: "x".into() });
    update(&mut app, Action::Failed { effect, error: "no relays configured".into() });
    let status = app.status().cloned();
    assert!(status.is_some_and(|s| s.error && s.text == "creating the group: no relays configured"));
}

#[test]
fn group_commands_act_on_the_open_group() {
    let mut app = group_scene(config());
    // Алиса is open: not a group.
    assert!(command(&mut app, "/group add Bob").is_empty());
    assert!(status_text(&app).contains("not a group"));
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(GROUP));
    let group = GROUP.to_owned();
    assert_eq!(
        command(&mut app, "/group add Bob"),
        vec![Effect::Group(GroupChange::Add { group: group.clone(), contact: "Bob".into() })]
    );
    assert_eq!(
        command(&mut app, "/group remove Алиса"),
        vec![Effect::Group(GroupChange::Remove { group: group.clone(), member: "Алиса".into() })]
    );
    assert_eq!(command(&mut app, "/group leave"), vec![Effect::Group(GroupChange::Leave { group: group.clone() })]);
    assert!(command(&mut app, "/group members").is_empty());
    assert_eq!(status_text(&app), "#Book club: 4 members: you (owner), Алиса (admin), Bob 🎸, …Caro0006");
    // Typing sends to the group.
    let fx = command(&mut app, "hello all");
    assert_eq!(send_effects(&fx), vec![(group.clone(), "hello all".to_owned())]);
    let sent = group_message(400, ME, "hello all", NOW);
    update(&mut app, Action::Done(Response::Sent(sent)));
    assert_eq!(app.conversation(GROUP).and_then(|c| c.last.as_ref()).map(|m| m.text.as_str()), Some("hello all"));
    // Leaving: the node says we are out; the group stays, marked.
    let op = GroupChange::Leave { group };
    update(&mut app, Action::Done(Response::GroupUpdated { op, group: book_club(false) }));
    assert_eq!(status_text(&app), "left #Book club");
    assert!(app.conversation(GROUP).and_then(|c| c.group_view()).is_some_and(|g| !g.active));
}

#[test]
fn group_messages_and_changes_arrive_as_events() {
    let mut app = scene(config());
    // A message in a group the list does not know yet: re-read the groups.
    let fx = update(&mut app, event(Event::MessageReceived { message: group_message(1, CAROL, "hi", NOW) }));
    assert_eq!(fx, vec![Effect::LoadGroups]);
    let fx = update(&mut app, event(Event::GroupChanged { group: book_club(true) }));
    assert!(app.conversation(GROUP).is_some());
    assert!(fx.contains(&Effect::LoadPreview { contact: GROUP.into() }), "{fx:?}");
    let fx = update(&mut app, event(Event::MessageReceived { message: group_message(2, CAROL, "hi", NOW + 1) }));
    let conv = app.conversation(GROUP).expect("listed");
    assert_eq!(conv.unread, 1);
    assert_eq!(app.conversations()[0].peer_id(), GROUP, "the newest activity comes first");
    assert!(fx.contains(&Effect::Notify { from: "…Caro0006 in #Book club".into(), text: "hi".into() }), "{fx:?}");
    // Removed by an admin.
    update(&mut app, event(Event::GroupChanged { group: book_club(false) }));
    assert_eq!(status_text(&app), "you are no longer in #Book club");
}

#[test]
fn a_group_invitation_waits_for_accept_or_reject() {
    let mut app = scene(config());
    let mut invited = book_club(false);
    invited.invited_by = Some(CAROL.to_owned());
    let fx = update(&mut app, event(Event::GroupInvitation { group: invited.clone() }));
    assert!(status_text(&app).contains("invitation to #Book club"), "{}", status_text(&app));
    let conv = app.conversation(GROUP).expect("listed");
    assert!(conv.is_invitation() && conv.is_request(), "listed with the requests");
    assert!(!fx.iter().any(|f| matches!(f, Effect::LoadPreview { .. })), "nothing to preview yet: {fx:?}");
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(GROUP));
    let group = GROUP.to_owned();
    assert_eq!(command(&mut app, "/accept"), vec![Effect::Group(GroupChange::Accept { group: group.clone() })]);
    assert_eq!(command(&mut app, "/reject"), vec![Effect::Group(GroupChange::Decline { group })]);
}

#[test]
fn a_declined_invitation_leaves_the_list() {
    let mut app = scene(config());
    let mut invited = book_club(false);
    invited.invited_by = Some(CAROL.to_owned());
    update(&mut app, event(Event::GroupInvitation { group: invited.clone() }));
    let op = GroupChange::Decline { group: GROUP.to_owned() };
    update(&mut app, Action::Done(Response::GroupUpdated { op, group: invited }));
    assert!(app.conversation(GROUP).is_none());
    assert_eq!(status_text(&app), "declined the invitation to #Book club");
}

/// The node's status is reloaded on the tick, one request at a time: every 10 s when
/// nothing waits, every 2 s while something does, and soon after a send.
#[test]
fn the_status_is_reloaded_while_messages_wait() {
    let loads = |fx: &[Effect]| fx.iter().filter(|e| **e == Effect::LoadStatus).count();
    let ticks = |app: &mut App, n: usize| (0..n).map(|_| loads(&update(app, Action::Tick))).sum::<usize>();
    let mut app = scene(config());
    assert_eq!(ticks(&mut app, 9), 0, "idle: not before 10 s");
    assert_eq!(ticks(&mut app, 1), 1);
    assert_eq!(ticks(&mut app, 30), 0, "never a second request while one is in flight");

    let mut waiting = status(&[BOB]);
    waiting.outbox = 1;
    update(&mut app, Action::Done(Response::Status(waiting)));
    assert_eq!(ticks(&mut app, 2), 1, "busy: every 2 s");
    update(&mut app, Action::Done(Response::Status(status(&[ALISA, BOB]))));

    // A send that is not through yet: the queue shows at the next tick.
    update(&mut app, Action::Done(Response::Sent(outgoing(300, ALISA, "there?", NOW, MessageState::Pending))));
    assert_eq!(ticks(&mut app, 1), 1);
    // A failed reload does not stop the next ones.
    update(&mut app, Action::Failed { effect: Effect::LoadStatus, error: "timed out".into() });
    assert_eq!(ticks(&mut app, 10), 1);
}
