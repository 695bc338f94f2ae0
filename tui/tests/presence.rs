//! Presence (issue 17): who is online, in the list, the switcher, the pane title and
//! the status bar, from the node's `presence` answer and events; nothing at all with
//! presence off. Driven like `keys.rs`: actions in, state, effects and screens out.

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::ContactState;
use kith_p2p::node::Event;
use kith_tui::app::Presence;
use kith_tui::{Action, App, Effect, Response, update};
use ratatui::style::Color;

/// The standard scene with the clock at NOW (so "today" is known) and 王小明 open.
fn wang_open() -> App {
    let mut app = scene(config());
    update(&mut app, Action::Clock { unix_ms: NOW });
    open_from_switcher(&mut app, "王", WANG);
    let messages = vec![incoming(100, WANG, "你好！明天见面吗？我们可以一起吃饭。", NOW - 3 * MINUTE)];
    update(&mut app, Action::Done(Response::History { contact: WANG.into(), before: None, limit: 50, messages }));
    app
}

/// The pane title's row (the screen's first) on the 100×30 screen.
fn title_row(app: &App) -> String {
    screen_text(app).lines().next().unwrap_or_default().to_owned()
}

/// The list's name line of `name` (the row holding it, left of the message pane).
fn list_row(app: &App, name: &str) -> String {
    let screen = screen_text(app);
    let row = screen.lines().skip(1).find(|l| l.split("││").next().is_some_and(|list| list.contains(name)));
    row.and_then(|l| l.split("││").next()).unwrap_or_default().to_owned()
}

#[test]
fn the_list_marks_who_is_online_and_the_title_says_when_last_seen() {
    let app = wang_open();
    let screen = screen_text(&app);
    // Online contacts are marked `●`, one seen offline `○`, a stranger nothing.
    assert!(list_row(&app, "Алиса").starts_with("│ ● Алиса"), "{screen}");
    assert!(list_row(&app, "Bob").starts_with("│ ● Bob"), "{screen}");
    assert!(list_row(&app, "王小明").starts_with("│▌○ 王小明"), "{screen}");
    assert!(list_row(&app, "12D3KooWMallory").starts_with("│   12D3KooWMallory"), "{screen}");
    // Last seen today: the clock time (UTC in the tests).
    assert!(title_row(&app).contains("○ 王小明 …Wang0003 last seen 09:52 "), "{}", title_row(&app));
    assert!(screen.lines().last().unwrap_or_default().contains("● connected · 2 online"), "{screen}");
    insta::assert_snapshot!("presence_last_seen", screen);
}

#[test]
fn the_title_says_online_and_a_date_for_an_older_last_seen() {
    let mut app = wang_open();
    // Online: green dot, `online`.
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: true, last_seen: Some(NOW) }));
    assert!(title_row(&app).contains("● 王小明 …Wang0003 online "), "{}", title_row(&app));
    assert!(screen_text(&app).lines().last().unwrap_or_default().contains("3 online"));
    // Offline and never seen online since the node started.
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: false, last_seen: None }));
    assert!(title_row(&app).contains("○ 王小明 …Wang0003 offline "), "{}", title_row(&app));
    // Offline since the day before yesterday: the date.
    let seen = Some(NOW - 2 * DAY);
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: false, last_seen: seen }));
    assert!(title_row(&app).contains("○ 王小明 …Wang0003 last seen Sun, 12 Jan 2025 "), "{}", title_row(&app));
    insta::assert_snapshot!("presence_last_seen_date", text_of(&draw(&app, 80, 12)));
}

#[test]
fn a_presence_event_updates_the_marker() {
    let mut app = scene(config());
    assert!(list_row(&app, "王小明").starts_with("│ ○ 王小明"));
    assert_eq!(cells(&app, "○ 王", 0)[0].0, Color::DarkGray, "offline is dim");
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: true, last_seen: Some(NOW) }));
    assert_eq!(app.presence(WANG), Some(Presence { online: true, last_seen: Some(NOW) }));
    assert!(list_row(&app, "王小明").starts_with("│ ● 王小明"), "{}", screen_text(&app));
    assert_eq!(cells(&app, "● 王", 0)[0].0, Color::Green, "online is green");
    // The quick switcher marks it the same way.
    update(&mut app, ctrl('k'));
    type_text(&mut app, "王");
    assert!(screen_text(&app).contains("● 王小明"), "{}", screen_text(&app));
    update(&mut app, key(KeyCode::Esc));
    // Gone offline.
    update(&mut app, event(Event::Presence { peer_id: WANG.into(), online: false, last_seen: Some(NOW) }));
    assert!(list_row(&app, "王小明").starts_with("│ ○ 王小明"));
    // A contact the node had said nothing about.
    let eve = "12D3KooWEveEveEveEveEveEveEveEveEveEveEveEveEveEveE0006";
    update(&mut app, event(Event::ContactChanged { contact: contact(eve, "Eve", ContactState::Accepted) }));
    assert!(list_row(&app, "Eve").starts_with("│   Eve"), "{}", screen_text(&app));
    update(&mut app, event(Event::Presence { peer_id: eve.into(), online: true, last_seen: Some(NOW) }));
    assert!(list_row(&app, "Eve").starts_with("│ ● Eve"), "{}", screen_text(&app));
}

#[test]
fn connections_are_not_presence() {
    let mut app = scene(config());
    update(&mut app, event(Event::PeerDisconnected { peer_id: ALISA.into() }));
    update(&mut app, Action::Done(Response::Status(status(&[]))));
    assert!(app.is_online(ALISA), "the node's presence says so, connected or not");
    update(&mut app, event(Event::PeerConnected { peer_id: WANG.into() }));
    assert!(!app.is_online(WANG));
}

#[test]
fn with_presence_off_nothing_is_shown() {
    let mut app = scene(config());
    // Presence off: the node's list is empty (and no event ever comes).
    update(&mut app, Action::Done(Response::Presence(Vec::new())));
    assert_eq!(app.presence(ALISA), None);
    assert_eq!(app.online_count(), 0);
    let screen = screen_text(&app);
    // Everything above the status bar (whose `●` is the node connection's).
    let (above, bar) = screen.trim_end().rsplit_once('\n').expect("rows");
    assert!(!above.contains('●') && !above.contains('○'), "{screen}");
    assert!(bar.starts_with(" ● connected ") && bar.ends_with("F1 help"), "no count of who is online: {bar}");
    for word in ["online", "offline", "last seen"] {
        assert!(!screen.contains(word), "{word}: {screen}");
    }
    assert!(title_row(&app).contains("┌ Алиса …lisa0002 ─"), "{}", title_row(&app));
}

#[test]
fn presence_is_read_at_start_after_reconnecting_and_after_missed_events() {
    let mut app = scene(config());
    assert!(app.start().contains(&Effect::LoadPresence));
    update(&mut app, Action::Disconnected { error: "gone".into(), retry_in: None });
    assert_eq!(app.presence(ALISA), None, "nothing the node said holds without it");
    assert!(!screen_text(&app).contains("online"));
    let fx = update(&mut app, Action::Reconnected);
    assert!(fx.contains(&Effect::LoadPresence), "{fx:?}");
    update(&mut app, Action::Done(Response::Presence(scene_presence())));
    assert!(app.is_online(ALISA));
    let fx = update(&mut app, event(Event::Lagged { missed: 3 }));
    assert!(fx.contains(&Effect::LoadPresence), "{fx:?}");
    // The whole list replaces what was known.
    update(&mut app, Action::Done(Response::Presence(vec![presence(BOB, true, Some(NOW))])));
    assert_eq!(app.presence(ALISA), None);
    assert!(app.is_online(BOB));
}

#[test]
fn a_node_without_presence_is_not_an_error_on_screen() {
    let mut app = scene(config());
    let (said, logged) = (status_text(&app), app.log().len());
    update(&mut app, Action::Failed { effect: Effect::LoadPresence, error: "unknown method `presence`".into() });
    assert_eq!(status_text(&app), said, "the status line says nothing");
    assert_eq!(app.log().len(), logged + 1, "the log keeps why");
}
