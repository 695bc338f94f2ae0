//! Snapshot tests of whole screens, drawn into ratatui's `TestBackend` from state
//! built without a node. The `.snap` files under `tests/snapshots/` are the
//! expected screens; review changes with `cargo insta review`.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyModifiers};
use kith_p2p::node::Event;
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::style::Color;

fn screen(app: &App, width: u16, height: u16) -> String {
    text_of(&draw(app, width, height))
}

#[test]
fn main_screen_with_cyrillic_cjk_and_emoji() {
    let app = scene(config());
    insta::assert_snapshot!("main_screen", screen(&app, 100, 30));
}

#[test]
fn main_screen_styles_read_marks_apart_from_delivered() {
    let app = scene(config());
    let terminal = draw(&app, 100, 30);
    let buffer = terminal.backend().buffer();
    // Find the two "✓✓" marks: the read one (yesterday) and the delivered one.
    let mut marks = Vec::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width.saturating_sub(1) {
            let (a, b) = (&buffer[(x, y)], &buffer[(x + 1, y)]);
            if a.symbol() == "✓" && b.symbol() == "✓" {
                marks.push(a.style());
            }
        }
    }
    assert_eq!(marks.len(), 2, "one read and one delivered mark");
    assert_ne!(marks[0].fg, marks[1].fg, "read and delivered differ in colour");
    assert_ne!(marks[0].add_modifier, marks[1].add_modifier, "and in weight, for NO_COLOR");
}

#[test]
fn group_in_the_list() {
    let app = group_scene(config());
    insta::assert_snapshot!("group_in_list", screen(&app, 100, 30));
}

#[test]
fn group_conversation_names_each_author() {
    let app = group_open(config(), book_club_history());
    insta::assert_snapshot!("group_conversation", screen(&app, 100, 30));
}

#[test]
fn help_overlay() {
    let mut app = scene(config());
    update(&mut app, key(KeyCode::F(1)));
    insta::assert_snapshot!("help_overlay", screen(&app, 100, 30));
}

#[test]
fn help_overlay_when_the_interface_runs_the_node() {
    let mut app = scene(Config { runs_node: true, ..config() });
    update(&mut app, key(KeyCode::F(1)));
    insta::assert_snapshot!("help_overlay_runs_node", screen(&app, 100, 30));
}

/// The whole help text, scrolled through page by page, with runs of spaces squeezed
/// to one (so "keys what" reads the same whatever the column width).
fn help_text(config: Config) -> String {
    let mut app = scene(config);
    update(&mut app, key(KeyCode::F(1)));
    let mut text = screen(&app, 100, 30);
    for _ in 0..10 {
        update(&mut app, key(KeyCode::PageDown));
        text.push_str(&screen(&app, 100, 30));
    }
    text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

#[test]
fn help_says_what_quitting_does_to_the_node() {
    // A client of a daemon: quitting leaves the node running.
    let daemon = help_text(config());
    assert!(daemon.contains("Ctrl+C, Ctrl+Q quit (the node keeps running)"), "{daemon}");
    assert!(daemon.contains("/quit quit (the node keeps running)"), "{daemon}");
    assert!(!daemon.contains("stop the node"), "{daemon}");
    // The interface runs the node itself: quitting stops it, and the help says so.
    let own = help_text(Config { runs_node: true, ..config() });
    assert!(own.contains("Ctrl+C, Ctrl+Q quit and stop the node (it runs in here)"), "{own}");
    assert!(own.contains("/quit quit and stop the node (it runs in here)"), "{own}");
    assert!(!own.contains("keeps running"), "{own}");
}

#[test]
fn quick_switcher_filters() {
    let mut app = scene(config());
    update(&mut app, ctrl('k'));
    type_text(&mut app, "b");
    insta::assert_snapshot!("quick_switcher", screen(&app, 100, 30));
}

/// A stand-in for the node's QR code: same glyphs, fixed pattern.
fn fake_qr() -> String {
    let mut qr = String::new();
    for row in 0..8 {
        for col in 0..21 {
            qr.push(match (row + col) % 4 {
                0 => '█',
                1 => '▀',
                2 => '▄',
                _ => ' ',
            });
        }
        qr.push('\n');
    }
    qr
}

/// A real invite and its QR code as the node sends them (a 57-module code: an invite
/// with one listen address).
fn real_invite() -> (String, String) {
    let value: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/invite.json")).expect("fixture is JSON");
    let field = |name: &str| value[name].as_str().expect("fixture field").to_owned();
    (field("invite"), field("qr"))
}

#[test]
fn invite_overlay_with_qr() {
    let mut app = scene(config());
    type_text(&mut app, "/invite");
    update(&mut app, key(KeyCode::Enter));
    insta::assert_snapshot!("invite_loading", screen(&app, 100, 30));
    let invite = "kith:1Aq9XbT4mZ7p2Lr8Vw3Ns6Ke5Hc1Yd0Ju7Gf4Pt2Qx9Bz3Mv8Rn5Ws1Lk6Hj0".to_owned();
    update(&mut app, Action::Done(Response::Invite { invite, qr: fake_qr() }));
    insta::assert_snapshot!("invite_overlay", screen(&app, 100, 30));
    // Too small for the QR code: the URI is still there.
    insta::assert_snapshot!("invite_overlay_small", screen(&app, 50, 9));
}

#[test]
fn a_real_invite_fits_a_100_by_30_terminal() {
    let mut app = scene(config());
    type_text(&mut app, "/invite");
    update(&mut app, key(KeyCode::Enter));
    let (invite, qr) = real_invite();
    assert_eq!(qr.lines().count(), 31, "as the node draws it, the code is one row too tall");
    update(&mut app, Action::Done(Response::Invite { invite: invite.clone(), qr }));
    let shown = screen(&app, 100, 30);
    insta::assert_snapshot!("invite_real_100x30", shown);
    // The whole code on 30 rows: 59 modules wide (57 and a quiet module on each
    // side, inked on a dark terminal), the last row the bottom quiet zone.
    let rows: Vec<&str> = shown.lines().collect();
    assert_eq!(rows.len(), 30);
    let code: Vec<String> = rows.iter().map(|r| r.chars().take(59).collect()).collect();
    assert!(code.iter().all(|r| r.chars().count() == 59 && r.chars().all(|c| "█▀▄ ".contains(c))), "{shown}");
    assert!(code[..29].iter().all(|r| r.starts_with('█') && r.ends_with('█')), "quiet columns: {shown}");
    assert_eq!(code[29], "▀".repeat(59));
    assert!(rows[0].contains("Your invite"), "what to do is beside the code: {shown}");

    // Below it (End), the invite as one line from the first column, broken only at
    // the screen's edge: the rows put together are the invite, nothing else.
    update(&mut app, key(KeyCode::End));
    let shown = screen(&app, 100, 30);
    let rows: Vec<&str> = shown.lines().collect();
    let first = rows.iter().position(|r| r.starts_with("kith:")).expect("the invite is shown");
    let joined: String = rows[first..].concat();
    assert_eq!(joined.trim_end(), invite);
    // On a terminal wide enough, it is one row.
    update(&mut app, Action::Resize { width: 300, height: 40 });
    assert!(screen(&app, 300, 40).lines().any(|r| r == invite), "one row on a wide terminal");

    // `c` copies it through the terminal (OSC 52).
    let fx = update(&mut app, key(KeyCode::Char('c')));
    assert_eq!(fx, vec![Effect::Copy { text: invite }]);
    assert!(screen(&app, 300, 40).contains("sent to the terminal's clipboard (OSC 52)"));
}

#[test]
fn narrow_terminal_hides_the_list() {
    let app = scene(config());
    insta::assert_snapshot!("narrow_40x16", screen(&app, 40, 16));
}

#[test]
fn tiny_terminal_degrades() {
    let app = scene(config());
    insta::assert_snapshot!("tiny_16x5", screen(&app, 16, 5));
    insta::assert_snapshot!("tiny_8x2", screen(&app, 8, 2));
}

#[test]
fn empty_state_and_multiline_input() {
    let mut app = App::new(config());
    update(&mut app, Action::Resize { width: 70, height: 14 });
    update(
        &mut app,
        Action::Done(Response::Snapshot { contacts: Vec::new(), requests: Vec::new(), inbox: Vec::new() }),
    );
    type_text(&mut app, "первая строка");
    update(&mut app, with(KeyCode::Enter, KeyModifiers::ALT));
    type_text(&mut app, "second 🌍 line");
    insta::assert_snapshot!("empty_state", screen(&app, 70, 14));
}

#[test]
fn no_color_renders_without_any_colour() {
    let mut app = scene(Config { no_color: true, ..config() });
    let text = screen(&app, 100, 30);
    insta::assert_snapshot!("no_color", text);
    // The same characters as with colours: only styles differ.
    assert_eq!(text, screen(&scene(config()), 100, 30));
    update(&mut app, ctrl('k'));
    for app in [&app, &scene(Config { no_color: true, ..config() })] {
        let terminal = draw(app, 100, 30);
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, Color::Reset, "no foreground colour at {:?}", cell.symbol());
            assert_eq!(cell.bg, Color::Reset, "no background colour at {:?}", cell.symbol());
        }
    }
}

#[test]
fn scrolled_up_shows_older_rows() {
    let mut app = scene(config());
    update(&mut app, Action::Resize { width: 100, height: 20 });
    update(&mut app, key(KeyCode::PageUp));
    insta::assert_snapshot!("scrolled_up", screen(&app, 100, 20));
}

/// Every size from 0×0 up, with each overlay and a long multi-line input: no panic,
/// and the cursor (when shown) is on the screen.
#[test]
fn any_size_renders_without_panicking() {
    let mut apps = vec![scene(config()), App::new(config())];
    let mut help = scene(config());
    update(&mut help, key(KeyCode::F(1)));
    let mut switcher = scene(config());
    update(&mut switcher, ctrl('k'));
    type_text(&mut switcher, "a");
    let mut invite = scene(config());
    type_text(&mut invite, "/invite");
    update(&mut invite, key(KeyCode::Enter));
    update(&mut invite, Action::Done(Response::Invite { invite: "kith:abc".repeat(20), qr: fake_qr() }));
    let mut typing = scene(Config { no_color: true, ..config() });
    update(&mut typing, Action::Paste("一二三四五六七八九十 ".repeat(12) + "\n\n\nend 👋🏽"));
    apps.extend([help, switcher, invite, typing]);
    for app in &mut apps {
        for width in 0..=45 {
            for height in 0..=16 {
                update(app, Action::Resize { width, height });
                let mut terminal = draw(app, width, height);
                let position = terminal.get_cursor_position().unwrap_or_default();
                if width > 0 && height > 0 {
                    assert!(position.x < width && position.y < height, "cursor {position:?} off {width}x{height}");
                }
            }
        }
    }
}

/// What waits for an offline contact, as the node's status says: the pane title and
/// the status bar show how many, when the next attempt goes, and that it goes
/// through the contact's relays.
#[test]
fn waiting_messages_show_their_next_attempt() {
    let mut app = scene(config());
    update(&mut app, Action::Clock { unix_ms: NOW });
    update(&mut app, event(Event::Presence { peer_id: ALISA.into(), online: false, last_seen: Some(NOW - 3 * MINUTE) }));
    let mut offline = status(&[BOB]);
    offline.outbox = 2;
    offline.queues = vec![kith_p2p::node::QueueStatus {
        peer_id: ALISA.to_owned(),
        waiting: 2,
        in_flight: false,
        next_try_in_ms: 7_400,
        backoff_ms: 16_000,
        via_relays: true,
    }];
    update(&mut app, Action::Done(Response::Status(offline)));
    let text = screen(&app, 100, 30);
    assert!(text.contains("last seen 10:39 · 2 waiting, retry in 8 s via relays"), "{text}");
    assert!(text.contains("2 queued, retry in 8 s via relays"), "{text}");
    insta::assert_snapshot!("waiting_for_delivery", text);

    // Delivered: the next status has no queue, and both say nothing more.
    update(&mut app, Action::Done(Response::Status(status(&[ALISA, BOB]))));
    let text = screen(&app, 100, 30);
    assert!(!text.contains("waiting") && !text.contains("queued"), "{text}");
}
