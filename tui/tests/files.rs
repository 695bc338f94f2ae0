//! Files in the interface (issue 15): file messages in each state, picture previews
//! in half-blocks, `/file`, a pasted path and Ctrl+O, driven through `update` and
//! drawn into ratatui's `TestBackend` like the other snapshot tests.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::{ContactState, Direction, FileState, MessageState};
use kith_p2p::node::Event;
use kith_p2p::views::{FileEntryView, FileView, MessageView};
use kith_tui::picture::{self, Picture};
use kith_tui::{Action, App, Effect, Response, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
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
    let mut app = App::new(config()).with_home_dir(Some(home.to_owned()));
    update(&mut app, Action::Resize { width: 100, height: 30 });
    update(&mut app, Action::Done(Response::Status(status(&[BOB]))));
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
