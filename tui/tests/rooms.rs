//! Group voice rooms in the interface: `/room` (and `/call` in a group) joining the
//! open group's room, the room bar (group, time in, "muted", level, who is in by
//! the names the group uses, speakers marked `●`) kept current by events and by
//! polling `rooms`, `/mute` and `/hangup` on a room when no call goes on, and what
//! is said when the node ends a room. Driven through `update` and drawn into
//! ratatui's `TestBackend` like the other snapshot tests.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::call::CallState;
use kith_p2p::call::voice_room::{LeftReason, RoomView};
use kith_p2p::node::Event;
use kith_tui::action::{CallOp, RoomOp};
use kith_tui::app::{CallInfo, RoomInfo, RoomState};
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::style::{Color, Modifier};

/// The second group, for several rooms at once.
const CHOIR: &str = "63686f6972636830697263686f697263";

/// The room bar's row, if one is drawn.
fn room_bar(app: &App) -> Option<String> {
    row_with(app, '♫')
}

/// The room of `group` as the node shows it.
fn room_view(group: &str, participants: &[&str], speaking: &[&str], level: f32, muted: bool) -> RoomInfo {
    RoomInfo::from(&RoomView {
        group: group.into(),
        name: "Book club".into(),
        relay: "12D3KooWRelayRelayRelayRelayRelayRelayRelayRelay0009".into(),
        participants: participants.iter().map(|p| (*p).to_owned()).collect(),
        speaking: speaking.iter().map(|p| (*p).to_owned()).collect(),
        frames_played: 4_150,
        output_level: level,
        muted,
    })
}

/// The Book club open, the clock at [`NOW`].
fn book_club_open() -> App {
    book_club_open_with(config())
}

fn book_club_open_with(config: Config) -> App {
    let mut app = group_scene(config);
    update(&mut app, Action::Clock { unix_ms: NOW });
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(GROUP));
    let messages = book_club_history();
    update(&mut app, Action::Done(Response::History { contact: GROUP.to_owned(), before: None, limit: 50, messages }));
    app
}

fn room_event(event: Event) -> Action {
    Action::Node(event)
}

/// `/room` in the Book club, taken in by its relay at [`NOW`] with Алиса and Carol
/// there.
fn in_the_room() -> App {
    in_the_room_with(config())
}

fn in_the_room_with(config: Config) -> App {
    let mut app = book_club_open_with(config);
    assert_eq!(command(&mut app, "/room"), vec![Effect::JoinRoom { group: GROUP.into() }]);
    update(&mut app, room_event(Event::RoomJoined { group: GROUP.into() }));
    for peer in [ALISA, CAROL] {
        update(&mut app, room_event(Event::RoomParticipantJoined { group: GROUP.into(), peer: peer.into() }));
    }
    let joined = room_view(GROUP, &[ME, ALISA, CAROL], &[], 0.0, false);
    update(&mut app, Action::Done(Response::Room { op: RoomOp::Join, room: joined }));
    app
}

#[test]
fn room_joins_the_open_groups_voice_room_and_the_bar_follows_it() {
    let mut app = book_club_open();
    assert!(room_bar(&app).is_none(), "no room, no bar");
    let fx = command(&mut app, "/room");
    assert_eq!(fx, vec![Effect::JoinRoom { group: GROUP.into() }]);
    assert_eq!(status_text(&app), "joining the voice room of #Book club…");
    assert_eq!(room_bar(&app).unwrap(), " ♫ #Book club · joining…");
    // Asking again while the node asks the relays changes nothing.
    assert!(command(&mut app, "/room").is_empty());
    assert!(status_text(&app).starts_with("still joining"), "{}", status_text(&app));

    // In: the event, who is there, then the answer.
    update(&mut app, room_event(Event::RoomJoined { group: GROUP.into() }));
    assert_eq!(status_text(&app), "in the voice room of #Book club: /room leave leaves");
    for peer in [ALISA, CAROL] {
        update(&mut app, room_event(Event::RoomParticipantJoined { group: GROUP.into(), peer: peer.into() }));
    }
    let joined = room_view(GROUP, &[ME, ALISA, CAROL], &[], 0.0, false);
    update(&mut app, Action::Done(Response::Room { op: RoomOp::Join, room: joined }));
    let bar = room_bar(&app).unwrap();
    // Us first, then in the order they came; Carol is no contact and unnamed.
    assert!(bar.starts_with(" ♫ #Book club · 00:00 · spk ▯▯▯▯▯ · you, Алиса, …Caro0006"), "{bar}");
    assert!(bar.ends_with("/mute · /room leave"), "{bar}");

    // Alisa speaks; Bob comes in and speaks too; time passes; a poll brings the level.
    update(&mut app, room_event(Event::RoomSpeaking { group: GROUP.into(), peer: ALISA.into(), speaking: true }));
    assert!(room_bar(&app).unwrap().contains("you,●Алиса, …Caro0006"), "{:?}", room_bar(&app));
    update(&mut app, room_event(Event::RoomParticipantJoined { group: GROUP.into(), peer: BOB.into() }));
    update(&mut app, room_event(Event::RoomSpeaking { group: GROUP.into(), peer: BOB.into(), speaking: true }));
    update(&mut app, Action::Clock { unix_ms: NOW + 83_000 });
    assert_eq!(update(&mut app, Action::CallTick), vec![Effect::LoadRooms]);
    assert!(update(&mut app, Action::CallTick).is_empty(), "one poll at a time");
    let polled = room_view(GROUP, &[ME, ALISA, BOB, CAROL], &[ALISA, BOB], 0.6, true);
    update(&mut app, Action::Done(Response::Rooms(vec![polled])));
    let shown = screen_text(&app);
    insta::assert_snapshot!("room_bar_speaking_muted", shown);
    let bar = room_bar(&app).unwrap();
    assert!(bar.contains(" ♫ #Book club · 01:23 · muted · spk ▮▮▮▯▯ · you,●Алиса, …Caro0006,●Bob 🎸"), "{bar}");
    // Alisa is quiet again: her mark goes, nothing moves.
    update(&mut app, room_event(Event::RoomSpeaking { group: GROUP.into(), peer: ALISA.into(), speaking: false }));
    let quiet = room_bar(&app).unwrap();
    assert!(quiet.contains("you, Алиса, …Caro0006,●Bob 🎸"), "{quiet}");
    let column = |row: &str| row.find("Алиса").map(|at| row[..at].chars().count());
    assert_eq!(column(&quiet), column(&bar));
    // Carol leaves.
    update(&mut app, room_event(Event::RoomParticipantLeft { group: GROUP.into(), peer: CAROL.into() }));
    assert!(!room_bar(&app).unwrap().contains("Caro"), "{:?}", room_bar(&app));
    // The messages gave the bar a row: everything still fits.
    assert!(screen_text(&app).lines().last().unwrap().contains("connected"));
}

#[test]
fn a_speaker_is_highlighted_with_and_without_colour() {
    for no_color in [false, true] {
        let mut app = in_the_room_with(Config { no_color, ..config() });
        update(&mut app, room_event(Event::RoomSpeaking { group: GROUP.into(), peer: ALISA.into(), speaking: true }));
        let terminal = draw(&app, 100, 30);
        let buffer = terminal.backend().buffer();
        let row = text_of(&terminal).lines().position(|l| l.contains('♫')).unwrap();
        let y = u16::try_from(row).unwrap();
        let mark = (0..buffer.area.width).find(|x| buffer[(*x, y)].symbol() == "●").unwrap();
        let (marked, name, quiet) = (buffer[(mark, y)].style(), buffer[(mark + 1, y)].style(), buffer[(1, y)].style());
        assert!(marked.add_modifier.contains(Modifier::BOLD), "{marked:?}");
        assert_eq!(name, marked, "the name is highlighted like its mark");
        assert_ne!(marked, quiet, "apart from the rest of the bar");
        if no_color {
            assert!(marked.add_modifier.contains(Modifier::UNDERLINED), "{marked:?}");
            assert!(marked.fg.is_none_or(|c| c == Color::Reset), "{marked:?}");
        } else {
            assert_eq!(marked.fg, Some(Color::LightYellow));
        }
    }
}

#[test]
fn room_again_leaves_and_it_is_said_once() {
    let mut app = in_the_room();
    update(&mut app, Action::Clock { unix_ms: NOW + 5 * MINUTE + 12_000 });
    assert_eq!(command(&mut app, "/room"), vec![Effect::LeaveRoom { group: GROUP.into() }]);
    assert_eq!(status_text(&app), "leaving the voice room of #Book club…");
    assert!(room_bar(&app).unwrap().contains("leaving…"));
    let left = room_view(GROUP, &[ME, ALISA, CAROL], &[], 0.0, false);
    update(&mut app, Action::Done(Response::Room { op: RoomOp::Leave, room: left }));
    assert_eq!(status_text(&app), "left the voice room of #Book club · 05:12");
    assert!(room_bar(&app).is_none() && app.rooms().is_empty());
    let logged = app.log().len();
    update(&mut app, room_event(Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Left }));
    assert_eq!(app.log().len(), logged, "said once");
    // Nothing left to poll.
    assert!(update(&mut app, Action::CallTick).is_empty());
    assert!(!app.wants_call_ticks());

    // `/room leave` and `/hangup` (with no call) leave too.
    let mut app = in_the_room();
    assert_eq!(command(&mut app, "/room leave"), vec![Effect::LeaveRoom { group: GROUP.into() }]);
    let mut app = in_the_room();
    assert_eq!(command(&mut app, "/hangup"), vec![Effect::LeaveRoom { group: GROUP.into() }]);
}

#[test]
fn a_room_the_node_ends_says_why_in_the_status_line_and_the_conversation() {
    let mut app = in_the_room();
    update(&mut app, Action::Clock { unix_ms: NOW + 65_000 });
    update(&mut app, room_event(Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Failed }));
    let said = "out of the voice room of #Book club: the audio path failed · 01:05";
    assert_eq!(status_text(&app), said);
    assert!(app.status().unwrap().error);
    assert!(room_bar(&app).is_none());
    let shown = screen_text(&app);
    assert!(shown.lines().filter(|l| l.contains(said)).count() >= 1, "{shown}");
    insta::assert_snapshot!("room_failed_notice", shown);

    let mut app = in_the_room();
    update(&mut app, room_event(Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Removed }));
    assert_eq!(status_text(&app), "out of the voice room of #Book club: you are no longer in the group · 00:00");
    assert!(!app.status().unwrap().error);
    let mut app = in_the_room();
    update(&mut app, room_event(Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Closed }));
    assert!(status_text(&app).contains("the media node closed it"), "{}", status_text(&app));
}

#[test]
fn mute_goes_to_the_room_without_a_call_and_to_the_call_with_one() {
    let mut app = in_the_room();
    assert_eq!(command(&mut app, "/mute"), vec![Effect::MuteRoom { group: GROUP.into(), muted: true }]);
    let muted = room_view(GROUP, &[ME, ALISA, CAROL], &[], 0.0, true);
    update(&mut app, Action::Done(Response::Room { op: RoomOp::Mute, room: muted }));
    assert_eq!(status_text(&app), "muted in the voice room of #Book club: nobody hears you");
    assert!(app.room().unwrap().muted);
    assert!(room_bar(&app).unwrap().contains("· muted ·"), "{:?}", room_bar(&app));
    assert_eq!(command(&mut app, "/room mute"), vec![Effect::MuteRoom { group: GROUP.into(), muted: false }]);

    // A call as well: `/mute` is the call's, `/room mute` the room's; both bars show.
    let call = CallInfo {
        id: Some("c0ffee".into()),
        peer: ALISA.into(),
        outgoing: true,
        state: CallState::Active,
        started_at_ms: Some(NOW),
        answered_at_ms: Some(NOW),
        muted: false,
        input_level: 0,
        output_level: 0,
        peer_speaking: false,
    };
    update(&mut app, Action::Done(Response::Call { op: CallOp::Answer, call }));
    assert_eq!(command(&mut app, "/mute"), vec![Effect::Mute { call: Some("c0ffee".into()), muted: true }]);
    assert_eq!(command(&mut app, "/room mute"), vec![Effect::MuteRoom { group: GROUP.into(), muted: false }]);
    let shown = screen_text(&app);
    let rows: Vec<&str> = shown.lines().collect();
    let room_row = rows.iter().position(|l| l.contains('♫')).unwrap();
    assert!(rows[room_row + 1].contains('☎'), "the call bar right below the room bar:\n{shown}");
    assert!(rows[room_row].ends_with("/room mute · /room leave"), "{}", rows[room_row]);
}

#[test]
fn room_and_call_are_refused_where_they_do_not_fit() {
    // A 1:1 conversation has no voice room.
    let mut app = group_scene(config());
    assert!(command(&mut app, "/room").is_empty());
    assert!(status_text(&app).contains("Алиса is not a group"), "{}", status_text(&app));
    assert!(app.status().unwrap().error);
    // Nothing to leave or mute.
    assert!(command(&mut app, "/room leave").is_empty());
    assert_eq!(status_text(&app), "not in a voice room");
    assert!(command(&mut app, "/room mute").is_empty());
    assert_eq!(status_text(&app), "not in a voice room");
    assert!(command(&mut app, "/room sing").is_empty());
    assert_eq!(status_text(&app), "usage: /room [join | leave | mute]");

    // `/call` in a group joins its room; in it already, `/room join` says so.
    let mut app = book_club_open();
    assert_eq!(command(&mut app, "/call"), vec![Effect::JoinRoom { group: GROUP.into() }]);
    let joined = room_view(GROUP, &[ME], &[], 0.0, false);
    update(&mut app, Action::Done(Response::Room { op: RoomOp::Join, room: joined }));
    assert!(command(&mut app, "/room join").is_empty());
    assert_eq!(status_text(&app), "already in the voice room of #Book club: /room leave leaves");

    // A group we left has no room for us.
    let mut app = group_scene(config());
    update(&mut app, Action::Done(Response::Groups(vec![book_club(false)])));
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    assert!(command(&mut app, "/room").is_empty());
    assert!(status_text(&app).contains("no longer in #Book club"), "{}", status_text(&app));

    // A failed join says why and leaves no bar.
    let mut app = book_club_open();
    let fx = command(&mut app, "/room");
    let error = "no relay of the group took us into its voice room: relay: rooms are off".to_owned();
    update(&mut app, Action::Failed { effect: fx[0].clone(), error });
    assert!(status_text(&app).starts_with("joining the voice room of #Book club: no relay"), "{}", status_text(&app));
    assert!(room_bar(&app).is_none());
}

#[test]
fn several_rooms_show_the_open_groups_with_a_count() {
    let mut app = in_the_room();
    // Joined elsewhere (`kith room join`): kept, and read.
    let fx = update(&mut app, room_event(Event::RoomJoined { group: CHOIR.into() }));
    assert!(fx.contains(&Effect::LoadRooms), "{fx:?}");
    assert_eq!(app.rooms().len(), 2);
    let bar = room_bar(&app).unwrap();
    assert!(bar.starts_with(" ♫ #Book club (+1 room) · "), "{bar}");
    // Another conversation open: the room joined last.
    update(&mut app, ctrl('k'));
    type_text(&mut app, "алиса");
    update(&mut app, key(KeyCode::Enter));
    let mut choir = room_view(CHOIR, &[ME, WANG], &[WANG], 0.3, false);
    choir.name = "Choir".into();
    update(&mut app, Action::Done(Response::Rooms(vec![room_view(GROUP, &[ME, ALISA], &[], 0.0, false), choir])));
    let bar = room_bar(&app).unwrap();
    assert!(bar.starts_with(" ♫ #Choir (+1 room) · 00:00 · spk ▮▮▯▯▯ · you,●王小明"), "{bar}");
    assert_eq!(app.room().unwrap().state, RoomState::Joined);
}

#[test]
fn the_room_bar_fits_any_screen_and_the_node_going_away_forgets_it() {
    let mut app = in_the_room();
    let bar = narrow_bar(&app, '♫');
    assert!(bar.starts_with(" ♫ #Book club · 00:00 · spk"), "{bar}");
    update(&mut app, Action::Disconnected { error: "gone".into(), retry_in: None });
    assert!(app.rooms().is_empty() && room_bar(&app).is_none());
    let fx = update(&mut app, Action::Reconnected);
    assert!(fx.contains(&Effect::LoadRooms), "{fx:?}");
    // A room the node was in all along comes back with the answer.
    update(&mut app, Action::Done(Response::Rooms(vec![room_view(GROUP, &[ME, ALISA], &[], 0.0, false)])));
    let bar = room_bar(&app).unwrap();
    assert!(bar.starts_with(" ♫ #Book club · spk ▯▯▯▯▯ · you, Алиса"), "since when is unknown: {bar}");
}

#[test]
fn tab_completes_room_and_its_subcommands_and_the_help_lists_them() {
    let mut app = book_club_open();
    type_text(&mut app, "/roo");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/room ");
    type_text(&mut app, "le");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/room leave ");
    let help = kith_tui::commands::help(false);
    assert!(help.iter().any(|(c, _)| *c == "/room"), "{help:?}");
}
