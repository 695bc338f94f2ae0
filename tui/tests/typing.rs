//! Typing notices (issue 17), both ways: who types shows on the message pane's
//! bottom border for a few ticks after their last notice and ends when their message
//! arrives; while the user types, the node is told, spaced out and never for a
//! command. Driven like `keys.rs`: actions in, state, effects and screens out.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyModifiers};
use kith_p2p::node::Event;
use kith_tui::app::{TYPING_SHOWN_TICKS, TYPING_SPACING_MS};
use kith_tui::{Action, App, Effect, Response, update};

/// `peer` types to us (no group) or in `group`.
fn typing(peer: &str, group: Option<&str>) -> Action {
    let conversation = group.map_or_else(|| "c0ffee".repeat(5), str::to_owned);
    event(Event::Typing { conversation, group: group.map(str::to_owned), peer_id: peer.to_owned() })
}

/// The row of the 100×30 screen that says someone is typing, if any.
fn typing_row(app: &App) -> Option<String> {
    screen_text(app).lines().find(|l| l.contains("typing…")).map(str::to_owned)
}

/// The typing notices among `fx`.
fn told(fx: &[Effect]) -> Vec<&Effect> {
    fx.iter().filter(|e| matches!(e, Effect::Typing { .. })).collect()
}

#[test]
fn a_contact_typing_shows_above_the_input() {
    let mut app = scene(config());
    assert_eq!(typing_row(&app), None);
    update(&mut app, typing(ALISA, None));
    assert_eq!(app.typists(ALISA), vec![ALISA]);
    let row = typing_row(&app).expect("a typing line");
    assert!(row.contains("└ Алиса is typing… ─"), "on the pane's bottom border: {row}");
    insta::assert_snapshot!("typing_one", screen_text(&app));
    // Scrolled up, the border says both, the notice cut to leave the hint whole.
    update(&mut app, Action::Resize { width: 100, height: 20 });
    update(&mut app, key(KeyCode::PageUp));
    let screen = text_of(&draw(&app, 100, 20));
    let row = screen.lines().find(|l| l.contains("typing…")).expect("a typing line");
    assert!(row.contains("└ Алиса is typing… ─") && row.contains("─ ↓ Esc jumps to the newest ┘"), "{row}");
    update(&mut app, Action::Resize { width: 40, height: 16 });
    let narrow = text_of(&draw(&app, 40, 16));
    let row = narrow.lines().find(|l| l.contains("Esc jumps")).expect("the hint");
    assert!(row.starts_with("└ Алиса i… ─ ↓ Esc") && row.ends_with(" ↓ Esc jumps to the newest ┘"), "{row}");
    update(&mut app, key(KeyCode::Esc));
    update(&mut app, Action::Resize { width: 100, height: 30 });
    // Only in its own conversation: Bob's shows nothing here.
    update(&mut app, typing(BOB, None));
    assert!(!typing_row(&app).is_some_and(|r| r.contains("Bob")));
    assert_eq!(app.typists(BOB), vec![BOB]);
}

#[test]
fn group_members_typing_are_named_then_counted() {
    let mut app = group_open(config(), book_club_history());
    update(&mut app, typing(BOB, Some(GROUP)));
    assert!(typing_row(&app).is_some_and(|r| r.contains(" Bob 🎸 is typing… ")), "{:?}", typing_row(&app));
    update(&mut app, typing(CAROL, Some(GROUP)));
    let row = typing_row(&app).expect("a typing line");
    assert!(row.contains(" Bob 🎸, …Caro0006 are typing… "), "{row}");
    insta::assert_snapshot!("typing_group", screen_text(&app));
    update(&mut app, typing(ALISA, Some(GROUP)));
    assert!(typing_row(&app).is_some_and(|r| r.contains(" 3 people are typing… ")), "{:?}", typing_row(&app));
    // Our own notice (another client of our node) is not news.
    update(&mut app, typing(ME, Some(GROUP)));
    assert_eq!(app.typists(GROUP).len(), 3);
    // A group typing notice does not touch the member's 1:1 conversation.
    assert!(app.typists(ALISA).is_empty());
}

#[test]
fn typing_expires_unless_repeated() {
    let mut app = scene(config());
    update(&mut app, typing(ALISA, None));
    for _ in 1..TYPING_SHOWN_TICKS {
        update(&mut app, Action::Tick);
    }
    assert!(typing_row(&app).is_some(), "still typing a moment after the notice");
    // Repeated: shown again for as long.
    update(&mut app, typing(ALISA, None));
    for _ in 1..TYPING_SHOWN_TICKS {
        update(&mut app, Action::Tick);
    }
    assert!(typing_row(&app).is_some());
    update(&mut app, Action::Tick);
    assert_eq!(typing_row(&app), None, "gone {TYPING_SHOWN_TICKS} ticks after the last notice");
    assert!(app.typists(ALISA).is_empty());
}

#[test]
fn typing_ends_when_that_peers_message_arrives_there() {
    let mut app = group_open(config(), book_club_history());
    update(&mut app, typing(BOB, Some(GROUP)));
    update(&mut app, typing(CAROL, Some(GROUP)));
    update(&mut app, typing(ALISA, None));
    // Алиса writes in the group: her 1:1 notice stays, Bob's and Carol's too.
    update(&mut app, event(Event::MessageReceived { message: group_message(306, ALISA, "привет", NOW) }));
    assert_eq!(app.typists(GROUP), vec![BOB, CAROL]);
    assert_eq!(app.typists(ALISA), vec![ALISA]);
    // Bob's message ends his notice at once; Carol still types.
    update(&mut app, event(Event::MessageReceived { message: group_message(307, BOB, "ok", NOW) }));
    assert_eq!(app.typists(GROUP), vec![CAROL]);
    assert!(typing_row(&app).is_some_and(|r| r.contains(" …Caro0006 is typing… ")), "{:?}", typing_row(&app));
    // Алиса's 1:1 message ends hers.
    update(&mut app, event(Event::MessageReceived { message: incoming(308, ALISA, "ну что?", NOW) }));
    assert!(app.typists(ALISA).is_empty());
    // Going offline ends it everywhere.
    update(&mut app, event(Event::Presence { peer_id: CAROL.into(), online: false, last_seen: Some(NOW) }));
    assert_eq!(typing_row(&app), None);
}

#[test]
fn typing_in_unknown_conversations_and_without_the_node_is_forgotten() {
    let mut app = scene(config());
    let stranger = "12D3KooWStrangerStrangerStrangerStrangerStrang0009";
    update(&mut app, typing(stranger, None));
    assert!(app.typists(stranger).is_empty());
    update(&mut app, typing(ALISA, None));
    update(&mut app, Action::Disconnected { error: "gone".into(), retry_in: None });
    assert!(app.typists(ALISA).is_empty());
}

#[test]
fn typing_tells_the_node_spaced_out() {
    let mut app = scene(config());
    update(&mut app, Action::Clock { unix_ms: NOW });
    let alisa = Effect::Typing { contact: ALISA.into() };
    assert_eq!(told(&type_text(&mut app, "h")), vec![&alisa], "at the first key");
    assert!(told(&type_text(&mut app, "ello")).is_empty(), "not again at once");
    update(&mut app, Action::Clock { unix_ms: NOW + TYPING_SPACING_MS - 1 });
    assert!(told(&type_text(&mut app, " there")).is_empty());
    update(&mut app, Action::Clock { unix_ms: NOW + TYPING_SPACING_MS });
    assert_eq!(told(&type_text(&mut app, "!")), vec![&alisa], "{TYPING_SPACING_MS} ms later, again");
    // Moving the cursor changes nothing typed: no notice, however late.
    update(&mut app, Action::Clock { unix_ms: NOW + 10 * TYPING_SPACING_MS });
    assert!(told(&update(&mut app, key(KeyCode::Left))).is_empty());
    assert!(told(&update(&mut app, key(KeyCode::Home))).is_empty());
    // A paste is typing too.
    assert_eq!(told(&update(&mut app, Action::Paste("» ".into()))), vec![&alisa]);
    // Sending empties the input: that is not typing either.
    update(&mut app, Action::Clock { unix_ms: NOW + 20 * TYPING_SPACING_MS });
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(fx.iter().any(|e| matches!(e, Effect::Send { .. })) && told(&fx).is_empty(), "{fx:?}");
    // Every conversation is spaced on its own: Bob hears at once.
    update(&mut app, ctrl('n'));
    let bob = app.focused_id().expect("a conversation").to_owned();
    assert_eq!(told(&type_text(&mut app, "x")), vec![&Effect::Typing { contact: bob }]);
}

#[test]
fn commands_deletions_and_edits_are_not_typing() {
    let mut app = scene(config());
    let mut now = NOW;
    let mut later = |app: &mut App| {
        now += TYPING_SPACING_MS;
        update(app, Action::Clock { unix_ms: now });
    };
    later(&mut app);
    assert!(told(&type_text(&mut app, "/search кот")).is_empty(), "a command is not a message");
    later(&mut app);
    assert!(told(&update(&mut app, key(KeyCode::Backspace))).is_empty());
    update(&mut app, ctrl('u'));
    later(&mut app);
    // `//` starts a message that begins with `/`: that is typing.
    assert_eq!(told(&type_text(&mut app, "//")), vec![&Effect::Typing { contact: ALISA.into() }]);
    update(&mut app, ctrl('u'));
    later(&mut app);
    // Blank space only.
    assert!(told(&type_text(&mut app, "  ")).is_empty());
    update(&mut app, ctrl('u'));
    // Emptying the input.
    later(&mut app);
    type_text(&mut app, "x");
    later(&mut app);
    assert!(told(&update(&mut app, key(KeyCode::Backspace))).is_empty());
    // The new text of a message being edited is not a new message.
    later(&mut app);
    update(&mut app, with(KeyCode::Up, KeyModifiers::CONTROL));
    let fx = command(&mut app, "/edit");
    assert!(told(&fx).is_empty(), "{fx:?}");
    later(&mut app);
    assert!(told(&type_text(&mut app, " (edited)")).is_empty());
}

#[test]
fn only_accepted_contacts_and_live_groups_hear_it() {
    let mut app = scene(config());
    update(&mut app, Action::Clock { unix_ms: NOW });
    // A stranger's request: nothing is told.
    open_from_switcher(&mut app, "Mallory", MALLORY);
    assert!(told(&type_text(&mut app, "who?")).is_empty());
    // A group we left: nothing either.
    update(&mut app, Action::Done(Response::Groups(vec![book_club(false)])));
    open_from_switcher(&mut app, "book", GROUP);
    assert!(told(&type_text(&mut app, "hi")).is_empty());
    // Back in it: the group hears.
    update(&mut app, event(Event::GroupChanged { group: book_club(true) }));
    assert_eq!(told(&type_text(&mut app, "!")), vec![&Effect::Typing { contact: GROUP.into() }]);
    // Without the node, nothing goes.
    update(&mut app, Action::Clock { unix_ms: NOW + TYPING_SPACING_MS });
    update(&mut app, Action::Disconnected { error: "gone".into(), retry_in: None });
    assert!(told(&type_text(&mut app, "?")).is_empty());
}

#[test]
fn a_failed_typing_notice_is_quiet() {
    let mut app = scene(config());
    let (said, logged) = (status_text(&app), app.log().len());
    let effect = Effect::Typing { contact: ALISA.into() };
    update(&mut app, Action::Failed { effect: effect.clone(), error: "too many requests in flight".into() });
    update(&mut app, Action::Interrupted { effect, error: "broken pipe".into() });
    assert_eq!((status_text(&app), app.log().len()), (said, logged));
    // The node's answer changes nothing either.
    let before = screen_text(&app);
    update(&mut app, Action::Done(Response::Typing { contact: ALISA.into() }));
    assert_eq!(screen_text(&app), before);
}
