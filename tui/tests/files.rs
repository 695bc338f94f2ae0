//! Files in the interface (issue 15): file messages in each state, picture previews
//! in half-blocks, the picture viewer (Ctrl+G) with half-blocks and with a graphics
//! protocol, `/file`, a pasted path and Ctrl+O, driven through `update` and drawn
//! into ratatui's `TestBackend` like the other snapshot tests.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::{ContactState, Direction, FileState, MessageState};
use kith_p2p::node::Event;
use kith_p2p::views::{FileEntryView, FileView, MessageView};
use kith_tui::app::Overlay;
use kith_tui::graphics::Graphics;
use kith_tui::picture::{self, Encoded, Picture};
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::{Rect, Size};
use ratatui::style::Color;
use ratatui::widgets::Paragraph;

const HOME: &str = "/home/me";

/// File `n`'s id: 64 hex characters.
fn file_id(n: u64) -> String {
    format!("{n:064x}")
}

/// Message `n` from or to Bob carrying a file.
fn file_message(n: u64, direction: Direction, name: &str, size: u64, media_type: &str, caption: &str) -> MessageView {
    let state = if direction == Direction::Outgoing { MessageState::Delivered } else { MessageState::Read };
    let mut m = message(n, BOB, direction, caption, NOW - (20 - n) * MINUTE, state);
    m.file = Some(FileView { id: file_id(n), name: name.to_owned(), size, media_type: media_type.to_owned() });
    m
}

/// Where message `m`'s file stands.
fn entry(m: &MessageView, state: FileState, path: Option<&str>, error: Option<&str>) -> FileEntryView {
    let file = m.file.clone().unwrap();
    FileEntryView {
        id: file.id,
        name: file.name,
        size: file.size,
        media_type: file.media_type,
        state,
        path: path.map(str::to_owned),
        error: error.map(str::to_owned),
        message: m.id.clone(),
        author: m.author.clone(),
        conversation: m.conversation.clone(),
        direction: m.direction,
        created_at: m.sent_at,
    }
}

/// Bob's conversation open with `messages`, the node's `files` answer fed back.
fn bob_with(messages: Vec<MessageView>, files: Vec<FileEntryView>) -> (App, Vec<Effect>) {
    bob_at_home(HOME, messages, files)
}

/// [`bob_with`] for a user whose home directory is `home`.
fn bob_at_home(home: &str, messages: Vec<MessageView>, files: Vec<FileEntryView>) -> (App, Vec<Effect>) {
    bob_configured(App::new(config()), home, messages, files)
}

/// [`bob_at_home`] starting from `app`.
fn bob_configured(app: App, home: &str, messages: Vec<MessageView>, files: Vec<FileEntryView>) -> (App, Vec<Effect>) {
    let mut app = app.with_home_dir(Some(home.to_owned()));
    update(&mut app, Action::Resize { width: 100, height: 30 });
    update(&mut app, Action::Done(Response::Status(status(&[BOB]))));
    update(&mut app, Action::Done(Response::Presence(vec![presence(BOB, true, Some(NOW))])));
    let contacts = vec![contact(BOB, "Bob", ContactState::Accepted)];
    update(&mut app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox: Vec::new() }));
    assert_eq!(app.focused_id(), Some(BOB));
    let history = Action::Done(Response::History { contact: BOB.to_owned(), before: None, limit: 50, messages });
    let fx = update(&mut app, history);
    assert!(fx.contains(&Effect::LoadFiles { contact: BOB.to_owned() }), "the newest page asks for its files: {fx:?}");
    let fx = update(&mut app, Action::Done(Response::Files { contact: BOB.to_owned(), files }));
    (app, fx)
}

fn screen(app: &App, width: u16, height: u16) -> String {
    text_of(&draw(app, width, height))
}

#[test]
fn file_messages_show_name_size_and_state() {
    let shared = file_message(1, Direction::Outgoing, "report.pdf", 1_572_864, "application/pdf", "the report");
    let offered = file_message(2, Direction::Incoming, "holiday.mkv", 3_435_973_837, "video/x-matroska", "");
    let downloading = file_message(3, Direction::Incoming, "song.flac", 40 * 1024 * 1024, "audio/flac", "");
    let retrying = file_message(4, Direction::Incoming, "big.iso", 700 * 1024 * 1024, "application/octet-stream", "");
    let complete = file_message(5, Direction::Incoming, "notes.txt", 512, "text/plain", "read this\nsecond line");
    let failed = file_message(6, Direction::Incoming, "evil.bin", 2048, "application/octet-stream", "");
    // A name with a path and a control character in it is shown reduced and clean.
    let unknown = file_message(7, Direction::Outgoing, "../../etc/pass\u{1b}wd", 10, "text/plain", "");
    let files = vec![
        entry(&shared, FileState::Shared, Some("/home/me/docs/report.pdf"), None),
        entry(&offered, FileState::Offered, None, None),
        entry(&downloading, FileState::Downloading, None, None),
        entry(&retrying, FileState::Downloading, None, Some("no source answered")),
        entry(&complete, FileState::Complete, Some("/home/me/Downloads/kith/notes.txt"), None),
        entry(&failed, FileState::Failed, None, Some("the blob does not open with its key")),
    ];
    let messages = vec![shared, offered, downloading.clone(), retrying, complete, failed, unknown];
    let (mut app, _) = bob_with(messages, files);
    let progress = Event::FileProgress {
        id: file_id(3),
        name: "song.flac".into(),
        have: 17 * 1024 * 1024,
        size: 40 * 1024 * 1024,
    };
    update(&mut app, event(progress));
    insta::assert_snapshot!("file_messages", screen(&app, 100, 30));
    // The list's preview of a file message names the file.
    assert!(screen(&app, 100, 30).contains("you: [file] pass"), "{}", screen(&app, 100, 30));

    // Completed: the event replaces the progress with where it was saved.
    let done = entry(&downloading, FileState::Complete, Some("/home/me/Downloads/kith/song.flac"), None);
    update(&mut app, event(Event::FileChanged { file: done }));
    let shown = screen(&app, 100, 30);
    assert!(shown.contains("[file] song.flac · 40 MiB · saved ~/Downloads/kith/song.flac"), "{shown}");
}

/// An 8×6 PNG in four quadrants: red, green (top), blue, white (bottom).
fn quadrants_png(dir: &std::path::Path) -> std::path::PathBuf {
    let picture = image::RgbImage::from_fn(8, 6, |x, y| match (x < 4, y < 3) {
        (true, true) => image::Rgb([255, 0, 0]),
        (false, true) => image::Rgb([0, 255, 0]),
        (true, false) => image::Rgb([0, 0, 255]),
        (false, false) => image::Rgb([255, 255, 255]),
    });
    let path = dir.join("quadrants.png");
    picture.save(&path).unwrap();
    path
}

/// Each cell of `terminal` as `symbol fg/bg` (hex), row by row: what a half-block
/// preview looks like, colours included.
fn cells_of(terminal: &Terminal<TestBackend>) -> String {
    let hex = |c: Option<Color>| match c {
        Some(Color::Rgb(r, g, b)) => format!("{r:02x}{g:02x}{b:02x}"),
        Some(Color::Reset) | None => "------".to_owned(),
        Some(other) => format!("{other:?}"),
    };
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let row: Vec<String> = (0..buffer.area.width)
            .map(|x| {
                let cell = &buffer[(x, y)];
                format!("{} {}/{}", cell.symbol(), hex(cell.style().fg), hex(cell.style().bg))
            })
            .collect();
        out.push_str(&row.join(" | "));
        out.push('\n');
    }
    out
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-tui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_picture_draws_in_half_blocks() {
    let dir = temp_dir("half-blocks");
    let decoded = picture::decode(&quadrants_png(&dir)).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (8, 6));
    // Room for all of it: 8 columns × 3 rows, each cell two pixels stacked.
    let mut terminal = Terminal::new(TestBackend::new(8, 3)).unwrap();
    terminal.draw(|f| f.render_widget(Paragraph::new(picture::half_blocks(&decoded, 8, 3)), f.area())).unwrap();
    insta::assert_snapshot!("picture_half_blocks", cells_of(&terminal));
    // Half the room: 4×2 cells (4 columns, 3 pixel rows rounded up), the colours kept.
    let small = picture::half_blocks(&decoded, 4, 2);
    assert_eq!(small.len(), 2);
    assert_eq!(small[0].spans.len(), 4);
    assert_eq!(small[0].spans[0].style.fg, Some(Color::Rgb(255, 0, 0)));
    assert_eq!(small[1].spans[3].style.bg, Some(Color::Rgb(255, 255, 255)));
    // Not a picture: an error, not a panic.
    std::fs::write(dir.join("fake.png"), b"not a png at all").unwrap();
    assert!(picture::decode(&dir.join("fake.png")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_received_picture_shows_inline_once_decoded() {
    let dir = temp_dir("inline");
    let path = quadrants_png(&dir);
    let shown_path = path.display().to_string();
    let photo = file_message(1, Direction::Incoming, "quadrants.png", 90, "image/png", "look at this");
    let files = vec![entry(&photo, FileState::Complete, Some(&shown_path), None)];
    // The temporary directory as home, so the snapshot shows `~/quadrants.png`.
    let (mut app, fx) = bob_at_home(&dir.display().to_string(), vec![photo], files);
    // Here and a picture: decoded off the loop, once.
    let decode = Effect::DecodePicture { id: file_id(1), path: shown_path.clone() };
    assert_eq!(fx.iter().filter(|e| **e == decode).count(), 1, "{fx:?}");
    let again = update(&mut app, Action::Done(Response::Files { contact: BOB.to_owned(), files: Vec::new() }));
    assert!(!again.contains(&decode), "asked for once: {again:?}");
    let decoded: Picture = picture::decode(&path).unwrap();
    update(&mut app, Action::Done(Response::Picture { id: file_id(1), picture: decoded }));
    let terminal = draw(&app, 60, 14);
    insta::assert_snapshot!("picture_inline", text_of(&terminal));
    // The preview's cells carry the picture's colours.
    let buffer = terminal.backend().buffer();
    let blocks: Vec<_> = buffer.content().iter().filter(|c| c.symbol() == "▀").collect();
    assert_eq!(blocks.len(), 8 * 3, "8×6 pixels fit whole: 8 columns, 3 rows");
    assert!(blocks.iter().any(|c| c.style().fg == Some(Color::Rgb(255, 0, 0))));
    assert!(blocks.iter().any(|c| c.style().bg == Some(Color::Rgb(255, 255, 255))));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_o_fetches_an_offered_file_and_opens_a_saved_one() {
    let offered = file_message(1, Direction::Incoming, "movie.mkv", 30 << 20, "video/x-matroska", "");
    let saved = file_message(2, Direction::Incoming, "notes.txt", 10, "text/plain", "");
    let files = vec![
        entry(&offered, FileState::Offered, None, None),
        entry(&saved, FileState::Complete, Some("/home/me/Downloads/kith/notes.txt"), None),
    ];
    let (mut app, _) = bob_with(vec![offered.clone(), saved], files);
    // The newest file message in view is the saved one: it opens.
    let fx = update(&mut app, ctrl('o'));
    let open = Effect::OpenFile { path: "/home/me/Downloads/kith/notes.txt".into() };
    assert_eq!(fx, vec![open.clone()]);
    // Nothing here opens files: the status line says where it is instead.
    update(&mut app, Action::Failed { effect: open, error: "no xdg-open or open".into() });
    let status = app.status().unwrap();
    assert!(status.text.contains("saved at ~/Downloads/kith/notes.txt") && !status.error, "{status:?}");

    // With only the offered one, Ctrl+O fetches it (not waiting), and the answer shows.
    let (mut app, _) = bob_with(vec![offered.clone()], vec![entry(&offered, FileState::Offered, None, None)]);
    assert!(screen(&app, 100, 30).contains("offered — Ctrl+O downloads"));
    let fx = update(&mut app, ctrl('o'));
    assert_eq!(fx, vec![Effect::GetFile { id: file_id(1) }]);
    let downloading = entry(&offered, FileState::Downloading, None, None);
    update(&mut app, Action::Done(Response::File(downloading)));
    assert!(screen(&app, 100, 30).contains("[file] movie.mkv · 30 MiB · downloading…"), "{}", screen(&app, 100, 30));
    update(
        &mut app,
        event(Event::FileProgress { id: file_id(1), name: "movie.mkv".into(), have: 15 << 20, size: 30 << 20 }),
    );
    assert!(screen(&app, 100, 30).contains("downloading 50%"));
    // Ctrl+O meanwhile only says how far it is.
    assert!(update(&mut app, ctrl('o')).is_empty());
    assert!(app.status().unwrap().text.contains("downloading movie.mkv: 50%"));
}

#[test]
fn slash_file_sends_and_a_pasted_path_becomes_the_command() {
    let (mut app, _) = bob_with(vec![incoming(1, BOB, "send me the photo", NOW - MINUTE)], Vec::new());
    // Tab after `/file ` completes a path, relative ones too.
    type_text(&mut app, "/file ph");
    let fx = update(&mut app, key(KeyCode::Tab));
    assert_eq!(fx, vec![Effect::ListPaths { word: "ph".into() }]);
    update(&mut app, Action::Done(Response::Paths { word: "ph".into(), candidates: vec!["photo.png ".into()] }));
    assert_eq!(app.input().text(), "/file photo.png ");
    type_text(&mut app, "from the trip");
    let fx = update(&mut app, key(KeyCode::Enter));
    let send =
        Effect::SendFile { contact: BOB.into(), path: "photo.png".into(), caption: Some("from the trip".into()) };
    assert!(fx.contains(&send), "{fx:?}");
    assert!(app.input().text().is_empty());
    // Refused: the command comes back to the input to be fixed.
    update(&mut app, Action::Failed { effect: send, error: "no such file".into() });
    assert_eq!(app.input().text(), "/file photo.png from the trip");
    update(&mut app, ctrl('u'));

    // A pasted path to a file, into the empty input: `/file <path>`, Enter sends it.
    update(&mut app, Action::PastedFile("/home/me/My Photos/cat.png".into()));
    assert_eq!(app.input().text(), "/file \"/home/me/My Photos/cat.png\" ");
    let fx = update(&mut app, key(KeyCode::Enter));
    let send = Effect::SendFile { contact: BOB.into(), path: "/home/me/My Photos/cat.png".into(), caption: None };
    assert!(fx.contains(&send), "{fx:?}");
    // Into text being typed, it is text.
    type_text(&mut app, "see ");
    update(&mut app, Action::PastedFile("/tmp/cat.png".into()));
    assert_eq!(app.input().text(), "see /tmp/cat.png");
}

/// A 300×180 PNG, larger than any preview: a left half of `left`, a right half of
/// `right`.
fn halves_png(dir: &std::path::Path, left: [u8; 3], right: [u8; 3]) -> std::path::PathBuf {
    let picture = image::RgbImage::from_fn(300, 180, |x, _| image::Rgb(if x < 150 { left } else { right }));
    let path = dir.join("halves.png");
    picture.save(&path).unwrap();
    path
}

/// The smallest rectangle holding every cell of `terminal` whose foreground or
/// background is `colour`.
fn cells_coloured(terminal: &Terminal<TestBackend>, colour: Color) -> Option<Rect> {
    let buffer = terminal.backend().buffer();
    let mut found: Option<Rect> = None;
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            let style = buffer[(x, y)].style();
            if style.fg == Some(colour) || style.bg == Some(colour) {
                found = Some(found.map_or(Rect::new(x, y, 1, 1), |r| r.union(Rect::new(x, y, 1, 1))));
            }
        }
    }
    found
}

/// A picture message from Bob, saved here at `path` (file 1), its conversation open.
fn bob_sent_a_picture(app: App, dir: &std::path::Path, path: &std::path::Path) -> (App, Vec<Effect>) {
    let photo = file_message(1, Direction::Incoming, "halves.png", 4096, "image/png", "");
    let files = vec![entry(&photo, FileState::Complete, Some(&path.display().to_string()), None)];
    bob_configured(app, &dir.display().to_string(), vec![photo], files)
}

/// The message pane of a 100×30 screen (a 25-column list beside it, a 3-row input
/// and the status bar below): 73×24 cells inside its border, from (26, 1).
const PANE: Rect = Rect { x: 26, y: 1, width: 73, height: 24 };

/// Without a graphics protocol, Ctrl+G shows the half-block preview over the message
/// pane, as large as the pane and the kept preview allow, centred; nothing is
/// encoded. Esc closes it.
#[test]
fn ctrl_g_shows_the_picture_in_half_blocks_sized_to_the_pane() {
    let dir = temp_dir("viewer-blocks");
    let (red, blue) = ([255, 0, 0], [0, 0, 255]);
    let path = halves_png(&dir, red, blue);
    let (mut app, fx) = bob_sent_a_picture(App::new(config()), &dir, &path);
    let decoded = picture::decode(&path).unwrap();
    assert!(fx.iter().any(|e| matches!(e, Effect::DecodePicture { .. })), "{fx:?}");
    update(&mut app, Action::Done(Response::Picture { id: file_id(1), picture: decoded.clone() }));

    let fx = update(&mut app, ctrl('g'));
    assert!(fx.is_empty(), "half-blocks need no encoding: {fx:?}");
    assert!(matches!(app.overlay(), Some(Overlay::Picture(v)) if v.id == file_id(1)));
    assert!(app.graphic().is_none(), "nothing is drawn outside the cells");
    let terminal = draw(&app, 100, 30);
    assert!(text_of(&terminal).contains("halves.png · Esc closes"), "{}", text_of(&terminal));
    // Both halves, together exactly the size the pane allows, centred in the pane.
    let (width, height) = picture::cells(&decoded, PANE.width, PANE.height);
    let left = cells_coloured(&terminal, Color::Rgb(255, 0, 0)).unwrap();
    let right = cells_coloured(&terminal, Color::Rgb(0, 0, 255)).unwrap();
    let shown = left.union(right);
    assert_eq!((shown.width, shown.height), (width, height));
    // 300×180 pixels, kept at 107×64: as wide as the pane (73 columns, 22 rows).
    assert_eq!((shown.width, shown.height), (PANE.width, 22), "as large as the pane allows");
    assert_eq!(shown.x, PANE.x + (PANE.width - width) / 2);
    assert_eq!(shown.y, PANE.y + (PANE.height - height) / 2);

    update(&mut app, key(KeyCode::Esc));
    assert!(app.overlay().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a graphics protocol, Ctrl+G asks for the picture encoded for exactly the
/// pane's room, off the loop, and draws the encoding, centred, in a rectangle of its
/// size. A `TestBackend` cannot show kitty, sixel or iTerm2 output (escape sequences
/// the terminal turns into pixels), so this checks the state and the area: the room
/// asked for, the placeholder while it is encoded, where the encoding lands (the
/// test's encoding is ratatui-image's half-blocks, which need no terminal), and a
/// new encoding when the pane's size changes.
#[test]
fn ctrl_g_with_a_graphics_protocol_reserves_the_pane_for_the_encoding() {
    let dir = temp_dir("viewer-kitty");
    let path = halves_png(&dir, [255, 0, 0], [0, 0, 255]);
    let (mut app, _) = bob_sent_a_picture(App::new(config()).with_graphics(Graphics::Kitty), &dir, &path);
    let fx = update(&mut app, ctrl('g'));
    let room = (PANE.width, PANE.height);
    let shown_path = path.display().to_string();
    assert_eq!(fx, vec![Effect::EncodePicture { id: file_id(1), path: shown_path.clone(), room }]);
    // While it is encoded, the pane says so and shows no preview.
    let terminal = draw(&app, 100, 30);
    assert!(text_of(&terminal).contains("preparing the picture…"), "{}", text_of(&terminal));
    assert!(app.graphic().is_none());

    // The encoding: 40×20 cells of magenta.
    let magenta = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(400, 400, image::Rgb([255, 0, 255])));
    let protocol = ratatui_image::protocol::Protocol::Halfblocks(
        ratatui_image::protocol::halfblocks::Halfblocks::new(magenta, Size::new(40, 20)).unwrap(),
    );
    let encoded = Encoded::new(protocol);
    // An answer for another room (an older request) is not shown.
    let stale = Response::Encoded { id: file_id(1), room: (10, 5), picture: encoded.clone() };
    update(&mut app, Action::Done(stale));
    assert!(app.graphic().is_none());
    update(&mut app, Action::Done(Response::Encoded { id: file_id(1), room, picture: encoded.clone() }));
    assert_eq!(app.graphic(), Some(&encoded));
    let terminal = draw(&app, 100, 30);
    let area = cells_coloured(&terminal, Color::Rgb(255, 0, 255)).unwrap();
    assert_eq!(area, Rect::new(PANE.x + (73 - 40) / 2, PANE.y + (24 - 20) / 2, 40, 20), "centred in the pane");
    assert!(!text_of(&terminal).contains("preparing"));

    // A smaller terminal: encoded again for the new room, asked once.
    let fx = update(&mut app, Action::Resize { width: 80, height: 24 });
    let Some(Effect::EncodePicture { room: smaller, .. }) = fx.first() else { panic!("{fx:?}") };
    assert!(smaller.0 < room.0 && smaller.1 < room.1, "{smaller:?}");
    assert!(update(&mut app, Action::Resize { width: 80, height: 24 }).is_empty(), "asked for once");
    // The old encoding no longer fits: the pane waits for the new one.
    assert!(text_of(&draw(&app, 80, 24)).contains("preparing the picture…"));
    // A failure of the encoding asked for before the resize is not this one's.
    let stale = Effect::EncodePicture { id: file_id(1), path: shown_path.clone(), room };
    update(&mut app, Action::Failed { effect: stale, error: "gone".into() });
    assert!(text_of(&draw(&app, 80, 24)).contains("preparing the picture…"), "still waiting for the new size");
    // A failed encoding says why.
    let failed = Effect::EncodePicture { id: file_id(1), path: shown_path, room: *smaller };
    update(&mut app, Action::Failed { effect: failed, error: "not a picture this can show".into() });
    assert!(text_of(&draw(&app, 80, 24)).contains("cannot show it: not a picture this can show"));

    update(&mut app, key(KeyCode::Esc));
    assert!(app.graphic().is_none(), "closed: the runtime clears the screen");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_g_says_why_there_is_nothing_to_show() {
    // No picture in view.
    let (mut app, _) = bob_with(vec![incoming(1, BOB, "hello", NOW - MINUTE)], Vec::new());
    assert!(update(&mut app, ctrl('g')).is_empty());
    assert!(app.overlay().is_none());
    assert!(app.status().unwrap().text.contains("no picture in view"));

    // A picture not downloaded yet.
    let offered = file_message(1, Direction::Incoming, "cat.png", 4096, "image/png", "");
    let files = vec![entry(&offered, FileState::Offered, None, None)];
    let (mut app, _) = bob_with(vec![offered], files);
    assert!(update(&mut app, ctrl('g')).is_empty());
    assert!(app.overlay().is_none());
    assert!(app.status().unwrap().text.contains("cat.png is not here: Ctrl+O downloads it"));

    // Half-blocks without colour draw nothing.
    let dir = temp_dir("viewer-no-color");
    let path = halves_png(&dir, [255, 0, 0], [0, 0, 255]);
    let (mut app, _) = bob_sent_a_picture(App::new(Config { no_color: true, ..config() }), &dir, &path);
    assert!(update(&mut app, ctrl('g')).is_empty());
    assert!(app.overlay().is_none());
    assert!(app.status().unwrap().text.contains("NO_COLOR"));
    let _ = std::fs::remove_dir_all(&dir);
}
