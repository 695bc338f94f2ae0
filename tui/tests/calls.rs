//! Voice calls in the interface: the incoming-call window, the call bar (state,
//! duration, "muted", level meters, the peer marked while speaking) kept current
//! by polling `calls`, `/call`, `/answer`, `/hangup` and `/mute`, and what is said
//! when a call ends (a missed one also in its conversation). Driven through
//! `update` and drawn into ratatui's `TestBackend` like the other snapshot tests.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::call::{CallState, EndReason};
use kith_p2p::node::Event;
use kith_p2p::views::CallRecordView;
use kith_tui::action::CallOp;
use kith_tui::app::{CallInfo, Overlay};
use kith_tui::{Action, App, Effect, Response, update};

const CALL: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

/// The call bar's row, if one is drawn.
fn call_bar(app: &App) -> Option<String> {
    row_with(app, '☎')
}

/// The standard scene with the clock at [`NOW`].
fn scene_now() -> App {
    let mut app = scene(config());
    update(&mut app, Action::Clock { unix_ms: NOW });
    app
}

fn ringing(peer: &str, outgoing: bool) -> Action {
    event(Event::CallRinging { call: CALL.into(), peer: peer.into(), outgoing })
}

fn ended(peer: &str, reason: EndReason, duration_ms: u64) -> Action {
    event(Event::CallEnded { call: CALL.into(), peer: peer.into(), reason, duration_ms })
}

/// The call with Алиса as the node shows it.
fn view(state: CallState, answered_at_ms: Option<u64>, muted: bool, levels: (u8, u8)) -> CallInfo {
    CallInfo {
        id: Some(CALL.into()),
        peer: ALISA.into(),
        outgoing: true,
        state,
        started_at_ms: Some(NOW - 2 * MINUTE),
        answered_at_ms,
        muted,
        input_level: levels.0,
        output_level: levels.1,
        peer_speaking: false,
    }
}

fn polled(active: Vec<CallInfo>, history: Vec<CallRecordView>) -> Action {
    Action::Done(Response::Calls { active, history })
}

/// `/call` to Алиса, answered by the node and by her: active for 83 s as of `NOW`.
fn in_a_call() -> App {
    let mut app = scene_now();
    let fx = command(&mut app, "/call");
    assert_eq!(fx, vec![Effect::Call { contact: ALISA.into() }]);
    let answered = Some(NOW - 83_000);
    update(&mut app, polled(vec![view(CallState::Active, answered, false, (0, 0))], Vec::new()));
    app
}

#[test]
fn an_incoming_call_rings_in_a_window_and_enter_answers_it() {
    let mut app = scene_now();
    let fx = update(&mut app, ringing(ALISA, false));
    assert!(fx.contains(&Effect::Bell), "{fx:?}");
    assert!(fx.contains(&Effect::Notify { from: "Алиса".into(), text: "is calling you".into() }), "{fx:?}");
    assert_eq!(app.overlay(), Some(&Overlay::IncomingCall { call: CALL.into(), peer: ALISA.into() }));
    let shown = screen_text(&app);
    insta::assert_snapshot!("incoming_call", shown);
    assert!(shown.contains("☎  Алиса is calling you"), "{shown}");
    assert!(shown.contains("Enter, a") && shown.contains("Esc, d"), "{shown}");
    // Typing goes nowhere while it rings.
    assert!(update(&mut app, key(KeyCode::Char('x'))).is_empty());
    assert!(app.input().is_empty());

    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(fx, vec![Effect::Answer { call: Some(CALL.into()) }]);
    assert_eq!(app.overlay(), None);
    assert!(call_bar(&app).unwrap().contains("Алиса · connecting…"), "{:?}", call_bar(&app));
    update(&mut app, event(Event::CallAnswered { call: CALL.into(), peer: ALISA.into() }));
    update(&mut app, event(Event::CallConnected { call: CALL.into(), peer: ALISA.into() }));
    assert_eq!(app.call().unwrap().state, CallState::Active);
    assert!(call_bar(&app).unwrap().contains("Алиса · active 00:00"), "{:?}", call_bar(&app));
}

#[test]
fn a_stray_key_does_not_answer_and_a_answers_too() {
    let mut app = scene_now();
    update(&mut app, ringing(BOB, false));
    assert!(update(&mut app, key(KeyCode::Char('z'))).is_empty());
    assert!(matches!(app.overlay(), Some(Overlay::IncomingCall { .. })));
    assert_eq!(update(&mut app, key(KeyCode::Char('a'))), vec![Effect::Answer { call: Some(CALL.into()) }]);
}

#[test]
fn esc_declines_and_the_end_says_so() {
    let mut app = scene_now();
    update(&mut app, ringing(ALISA, false));
    let fx = update(&mut app, key(KeyCode::Esc));
    assert_eq!(fx, vec![Effect::Hangup { call: Some(CALL.into()) }]);
    assert_eq!(app.overlay(), None);
    assert_eq!(status_text(&app), "declining the call from Алиса…");
    update(&mut app, ended(ALISA, EndReason::Declined, 0));
    assert_eq!(status_text(&app), "declined the call from Алиса");
    assert!(app.call().is_none() && call_bar(&app).is_none());
    assert!(!screen_text(&app).contains("missed call"), "declined is not missed");
}

#[test]
fn d_declines_too() {
    let mut app = scene_now();
    update(&mut app, ringing(ALISA, false));
    assert_eq!(update(&mut app, key(KeyCode::Char('d'))), vec![Effect::Hangup { call: Some(CALL.into()) }]);
}

#[test]
fn the_call_bar_shows_state_duration_muted_and_levels() {
    let mut app = scene_now();
    assert!(call_bar(&app).is_none(), "no call, no bar");
    command(&mut app, "/call");
    assert!(call_bar(&app).unwrap().contains("☎ Алиса · calling…"), "{:?}", call_bar(&app));
    assert_eq!(status_text(&app), "calling Алиса…");
    // The node answers once her node rings.
    update(
        &mut app,
        Action::Done(Response::Call { op: CallOp::Call, call: view(CallState::Ringing, None, false, (0, 0)) }),
    );
    assert!(call_bar(&app).unwrap().contains("Алиса · ringing…"), "{:?}", call_bar(&app));
    assert!(call_bar(&app).unwrap().ends_with("/hangup"), "{:?}", call_bar(&app));

    // Polled while it lasts, one request at a time.
    assert_eq!(update(&mut app, Action::CallTick), vec![Effect::LoadCalls]);
    assert!(update(&mut app, Action::CallTick).is_empty(), "one poll at a time");
    let answered = Some(NOW - 83_000);
    update(&mut app, polled(vec![view(CallState::Active, answered, true, (60, 20))], Vec::new()));
    let shown = screen_text(&app);
    insta::assert_snapshot!("call_bar_active_muted", shown);
    let bar = call_bar(&app).unwrap();
    assert!(bar.contains("☎ Алиса · active 01:23 · muted · mic ▮▮▮▯▯ spk ▮▯▯▯▯"), "{bar}");
    assert!(bar.ends_with("/mute · /hangup"), "{bar}");
    // Time passes: the duration follows the clock.
    update(&mut app, Action::Clock { unix_ms: NOW + 60_000 });
    assert!(call_bar(&app).unwrap().contains("active 02:23"), "{:?}", call_bar(&app));
    // The next poll goes out, and unmuted levels show.
    assert_eq!(update(&mut app, Action::CallTick), vec![Effect::LoadCalls]);
    update(&mut app, polled(vec![view(CallState::Active, answered, false, (100, 0))], Vec::new()));
    let bar = call_bar(&app).unwrap();
    assert!(bar.contains("mic ▮▮▮▮▮ spk ▯▯▯▯▯") && !bar.contains("muted"), "{bar}");
    // The messages gave the bar a row: everything still fits.
    assert!(screen_text(&app).lines().last().unwrap().contains("connected"));
}

#[test]
fn the_call_bar_marks_the_peer_while_they_speak() {
    let mut app = in_a_call();
    let quiet = call_bar(&app).unwrap();
    assert!(quiet.starts_with(" ☎ Алиса · active 01:23"), "{quiet}");
    let speaks = |speaking| event(Event::CallSpeaking { call: CALL.into(), peer: ALISA.into(), speaking });
    update(&mut app, speaks(true));
    assert!(app.call().unwrap().peer_speaking);
    let speaking = call_bar(&app).unwrap();
    assert!(speaking.starts_with(" ☎●Алиса · active 01:23"), "{speaking}");
    assert_eq!(speaking.chars().count(), quiet.chars().count(), "nothing moves");
    // Another call's news is not this one's.
    update(&mut app, event(Event::CallSpeaking { call: "0ther".into(), peer: BOB.into(), speaking: false }));
    assert!(app.call().unwrap().peer_speaking);
    update(&mut app, speaks(false));
    assert_eq!(call_bar(&app).unwrap(), quiet);
    // A poll carries it too.
    let mut polled_view = view(CallState::Active, Some(NOW - 83_000), false, (0, 0));
    polled_view.peer_speaking = true;
    update(&mut app, Action::CallTick);
    update(&mut app, polled(vec![polled_view], Vec::new()));
    assert!(call_bar(&app).unwrap().starts_with(" ☎●Алиса"), "{:?}", call_bar(&app));
}

#[test]
fn the_call_bar_fits_a_narrow_screen_and_is_dropped_on_a_tiny_one() {
    let app = in_a_call();
    let bar = narrow_bar(&app, '☎');
    assert!(bar.starts_with(" ☎ Алиса · active 01:23"), "{bar}");
}

#[test]
fn call_commands() {
    // `/call` in a group joins its voice room (see `rooms.rs`); naming a group
    // from elsewhere points there.
    let mut app = group_scene(config());
    assert!(command(&mut app, "/call book club").is_empty());
    assert_eq!(status_text(&app), "/call calls one contact: open #Book club, then /room joins its voice room");
    assert!(app.status().unwrap().error);
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(GROUP));
    assert_eq!(command(&mut app, "/call"), vec![Effect::JoinRoom { group: GROUP.into() }]);
    assert!(app.call().is_none());
    let mut app = group_scene(config());
    // Nothing to answer, hang up or mute.
    assert!(command(&mut app, "/answer").is_empty());
    assert_eq!(status_text(&app), "no call is ringing");
    assert!(command(&mut app, "/hangup").is_empty());
    assert_eq!(status_text(&app), "no call to hang up");
    assert!(command(&mut app, "/mute").is_empty());
    assert_eq!(status_text(&app), "no call to mute");
    // A contact request cannot be called; a contact named can.
    assert!(command(&mut app, "/call 12D3KooWMalloryMalloryMalloryMalloryMalloryMall0005").is_empty());
    assert!(status_text(&app).contains("accept"), "{}", status_text(&app));
    assert_eq!(command(&mut app, "/call bob 🎸"), vec![Effect::Call { contact: BOB.into() }]);
    assert!(command(&mut app, "/call Алиса").is_empty(), "one call at a time");
    assert_eq!(status_text(&app), "already in a call with Bob 🎸: /hangup first");

    // `/mute` toggles, `/hangup` hangs up.
    let mut app = in_a_call();
    assert_eq!(command(&mut app, "/mute"), vec![Effect::Mute { call: Some(CALL.into()), muted: true }]);
    update(
        &mut app,
        Action::Done(Response::Call { op: CallOp::Mute, call: view(CallState::Active, None, true, (0, 0)) }),
    );
    assert!(app.call().unwrap().muted);
    assert!(app.call().unwrap().answered_at_ms.is_some(), "what was known is kept");
    assert_eq!(status_text(&app), "muted: Алиса hears nothing");
    assert_eq!(command(&mut app, "/mute"), vec![Effect::Mute { call: Some(CALL.into()), muted: false }]);
    assert_eq!(command(&mut app, "/hangup"), vec![Effect::Hangup { call: Some(CALL.into()) }]);
    assert_eq!(status_text(&app), "hanging up…");

    // Tab completes the new commands.
    let mut app = scene_now();
    type_text(&mut app, "/ha");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/hangup ");
}

#[test]
fn an_ended_call_says_how_and_how_long() {
    let mut app = in_a_call();
    update(&mut app, ended(ALISA, EndReason::RemoteHungUp, 65_000));
    assert_eq!(status_text(&app), "call with Алиса ended: Алиса hung up · 01:05");
    assert!(app.call().is_none());
    let shown = screen_text(&app);
    assert!(!shown.contains('☎'), "{shown}");
    insta::assert_snapshot!("call_ended_notice", shown.lines().last().unwrap());
    // No more polling.
    assert!(update(&mut app, Action::CallTick).is_empty());

    // Our call, which nobody reached.
    let mut app = scene_now();
    command(&mut app, "/call");
    // The request fails first: the event tells why.
    update(
        &mut app,
        Action::Failed { effect: Effect::Call { contact: ALISA.into() }, error: "the call ended: unreachable".into() },
    );
    assert!(app.call().is_none());
    assert_eq!(status_text(&app), "calling Алиса…", "nothing said twice");
    update(&mut app, ended(ALISA, EndReason::Unreachable, 0));
    assert!(status_text(&app).starts_with("could not reach Алиса"), "{}", status_text(&app));
    assert!(app.status().unwrap().error);
    // Another failure is said at once.
    command(&mut app, "/call");
    update(
        &mut app,
        Action::Failed {
            effect: Effect::Call { contact: ALISA.into() },
            error: "already in a call: hang up first".into(),
        },
    );
    assert_eq!(status_text(&app), "calling Алиса: already in a call: hang up first");
    assert!(app.call().is_none());
}

#[test]
fn a_missed_call_shows_in_its_conversation() {
    let mut app = scene_now();
    update(&mut app, ringing(ALISA, false));
    update(&mut app, Action::Clock { unix_ms: NOW + 30_000 });
    update(&mut app, ended(ALISA, EndReason::NoAnswer, 0));
    assert_eq!(app.overlay(), None, "the window goes with the call");
    assert_eq!(status_text(&app), "missed call from Алиса");
    let shown = screen_text(&app);
    insta::assert_snapshot!("missed_call", shown);
    assert!(shown.contains("missed call from Алиса at 10:42"), "{shown}");

    // The caller gave up: missed too.
    let mut app = scene_now();
    update(&mut app, ringing(ALISA, false));
    update(&mut app, ended(ALISA, EndReason::RemoteHungUp, 0));
    assert!(screen_text(&app).contains("missed call from Алиса at 10:42"));
}

#[test]
fn a_poll_finds_a_call_whose_end_was_missed_and_the_late_event_is_not_said_twice() {
    let mut app = in_a_call();
    let record = CallRecordView {
        id: CALL.into(),
        peer: ALISA.into(),
        outgoing: true,
        started_at: NOW - 2 * MINUTE,
        answered_at: Some(NOW - 83_000),
        ended_at: NOW,
        duration_ms: 83_000,
        missed: false,
        reason: "remote_hung_up".into(),
    };
    update(&mut app, Action::CallTick);
    update(&mut app, polled(Vec::new(), vec![record]));
    assert!(app.call().is_none());
    assert_eq!(status_text(&app), "call with Алиса ended: Алиса hung up · 01:23");
    let logged = app.log().len();
    update(&mut app, ended(ALISA, EndReason::RemoteHungUp, 83_000));
    assert_eq!(app.log().len(), logged, "said once");
    // A poll answer that overtook the end does not bring the call back.
    update(&mut app, polled(vec![view(CallState::Active, None, false, (0, 0))], Vec::new()));
    assert!(app.call().is_none());
}

#[test]
fn a_call_ringing_when_the_interface_starts_opens_its_window() {
    let mut app = scene_now();
    let mut ring = view(CallState::Ringing, None, false, (0, 0));
    ring.outgoing = false;
    update(&mut app, polled(vec![ring], Vec::new()));
    assert_eq!(app.overlay(), Some(&Overlay::IncomingCall { call: CALL.into(), peer: ALISA.into() }));
    assert!(call_bar(&app).is_some());
    // Losing the node forgets it; reconnecting reads the calls again.
    update(&mut app, Action::Disconnected { error: "gone".into(), retry_in: None });
    assert!(app.call().is_none() && app.overlay().is_none());
    let fx = update(&mut app, Action::Reconnected);
    assert!(fx.contains(&Effect::LoadCalls), "{fx:?}");
}
