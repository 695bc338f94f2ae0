//! Group read counts and profiles: `read by 1 of 3` next to our group messages,
//! the profile overlay (`/profile [contact]`) with its picture in half-blocks, a
//! contact's status line in the header, and `/name`, `/status TEXT`, `/avatar`.
//! Driven like `typing.rs`: actions in, state, effects and screens out.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::*;
use crossterm::event::KeyCode;
use kith_p2p::node::Event;
use kith_p2p::views::{AvatarView, GroupReceiptsView, ProfileView};
use kith_tui::app::{Avatar, Overlay};
use kith_tui::{Action, Effect, Response, update};
use ratatui::style::Color;

/// Where our message 304 in the Book club stands: `read` of its 3 other members read
/// it, `delivered` have it.
fn receipts(delivered: usize, read: usize) -> GroupReceiptsView {
    let others = [ALISA, BOB, CAROL].map(str::to_owned);
    GroupReceiptsView {
        members: 3,
        delivered,
        read,
        read_by: others[..read].to_vec(),
        delivered_to: others[read..delivered].to_vec(),
    }
}

/// The row of the 100×30 screen holding `needle`, if any.
fn row(app: &kith_tui::App, needle: &str) -> Option<String> {
    screen_text(app).lines().find(|l| l.contains(needle)).map(str::to_owned)
}

#[test]
fn our_group_messages_show_how_many_members_have_and_read_them() {
    // Paged in with its counts: delivered to two, read by none.
    let mut history = book_club_history();
    history[3].receipts = Some(receipts(2, 0));
    let mut app = group_open(config(), history);
    let ours = row(&app, "Friday works for me").unwrap();
    assert!(ours.contains("Friday works for me ✓✓ delivered to 2 of 3"), "{ours}");
    // One of them read it: the event changes the loaded message.
    let id = format!("{:032x}", 304);
    update(&mut app, event(Event::MessageReceipts { id, conversation: GROUP.into(), receipts: receipts(2, 1) }));
    let ours = row(&app, "Friday works for me").unwrap();
    assert!(ours.contains("✓✓ read by 1 of 3"), "{ours}");
    insta::assert_snapshot!("group_read_counts", screen_text(&app));
    // Incoming messages, and a message nobody has yet, show no counts.
    assert!(row(&app, "Договорились").is_some_and(|r| !r.contains(" of ")));
    let mut none = book_club_history();
    none[3].receipts = Some(receipts(0, 0));
    let app = group_open(config(), none);
    assert!(row(&app, "Friday works for me").is_some_and(|r| !r.contains(" of 3")));
}

/// A `size`×`size` PNG, as standard padded base64: red down to one pixel row above
/// the middle, blue below (so one row of cells is half red, half blue).
fn avatar_png(size: u32) -> String {
    let image = image::RgbImage::from_fn(size, size, |_, y| {
        if y + 1 < size / 2 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) }
    });
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    base64::engine::general_purpose::STANDARD.encode(&png)
}

/// Алиса's profile as the node answers it, with her picture's bytes if `data`.
fn alisa_profile(data: Option<String>) -> ProfileView {
    ProfileView {
        peer_id: ALISA.into(),
        name: Some("Alisa Petrova".into()),
        alias: Some("Алиса".into()),
        status: Some("at the lake until Sunday 🏕".into()),
        avatar: Some(AvatarView { media_type: "image/png".into(), size: 120, data }),
        updated_at: Some(NOW - DAY),
    }
}

#[test]
fn the_profile_overlay_shows_a_contact_with_their_picture_in_half_blocks() {
    let mut app = scene(config());
    // The name completes as other commands' do.
    type_text(&mut app, "/profile Ал");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/profile Алиса ");
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(fx, [Effect::LoadProfile { contact: Some(ALISA.into()), avatar: true }]);
    assert!(screen_text(&app).contains("reading the profile…"));
    let data = avatar_png(16);
    let answer =
        Response::Profile { contact: Some(ALISA.into()), avatar: true, profile: alisa_profile(Some(data.clone())) };
    let fx = update(&mut app, Action::Done(answer));
    let room = kith_tui::app::AVATAR_CELLS;
    assert_eq!(fx, [Effect::DecodeAvatar { peer_id: ALISA.into(), data: data.clone(), room }]);
    assert!(screen_text(&app).contains("decoding…"));
    // What the runtime does off the loop.
    let picture = kith_tui::picture::decode_bytes(&kith_tui::picture::avatar_bytes(&data).unwrap()).unwrap();
    update(&mut app, Action::Done(Response::Avatar { peer_id: ALISA.into(), room, picture, encoded: None }));
    assert!(matches!(app.overlay(), Some(Overlay::Profile(card)) if matches!(card.avatar, Avatar::Ready { .. })));
    let screen = screen_text(&app);
    for needed in ["Алиса", "Alisa Petrova", "at the lake until Sunday", &ALISA[..30], "online", "▀▀▀▀"] {
        assert!(screen.contains(needed), "{needed}:\n{screen}");
    }
    insta::assert_snapshot!("profile_overlay", screen);
    // 16×16 pixels as 16×8 cells, each the upper pixel over the lower one: red at
    // the top, the row where the colours meet red over blue, blue at the bottom.
    let (red, blue) = (Color::Rgb(255, 0, 0), Color::Rgb(0, 0, 255));
    for (row, colours) in [(0, (red, red)), (3, (red, blue)), (7, (blue, blue))] {
        let blocks = cells(&app, "▀▀▀▀", row);
        assert!(blocks.iter().all(|(fg, bg, _)| (*fg, *bg) == colours), "row {row}: {blocks:?}");
    }
    // Esc closes; the status line she set shows in the header now.
    update(&mut app, key(KeyCode::Esc));
    assert!(app.overlay().is_none());
    assert!(row(&app, "…lisa0002").is_some_and(|r| r.contains("· at the lake until Sunday")));
}

#[test]
fn our_own_profile_and_a_failure_say_so() {
    let mut app = scene(config());
    let fx = command(&mut app, "/profile");
    assert_eq!(fx, [Effect::LoadProfile { contact: None, avatar: true }]);
    let mine = ProfileView {
        peer_id: ME.into(),
        name: Some("Me".into()),
        alias: None,
        status: None,
        avatar: None,
        updated_at: Some(NOW),
    };
    let fx = update(&mut app, Action::Done(Response::Profile { contact: None, avatar: true, profile: mine }));
    assert!(fx.is_empty(), "no picture to decode: {fx:?}");
    let screen = screen_text(&app);
    assert!(
        screen.contains("Your profile") && screen.contains("(no picture)") && screen.contains(&ME[..30]),
        "{screen}"
    );
    update(&mut app, key(KeyCode::Esc));
    let fx = command(&mut app, "/profile nobody");
    let effect = Effect::LoadProfile { contact: Some("nobody".into()), avatar: true };
    assert_eq!(fx, std::slice::from_ref(&effect));
    update(&mut app, Action::Failed { effect, error: "no such contact: nobody".into() });
    assert!(screen_text(&app).contains("cannot read the profile: no such contact: nobody"));
}

#[test]
fn the_header_shows_a_contacts_status_line() {
    let mut app = scene(config());
    assert!(row(&app, "…lisa0002").is_some_and(|r| !r.contains("· ")), "no status yet");
    update(&mut app, event(Event::ProfileChanged { profile: alisa_profile(None) }));
    let header = row(&app, "…lisa0002").unwrap();
    assert!(header.contains("Алиса …lisa0002 online · at the lake until Sunday 🏕"), "{header}");
    insta::assert_snapshot!("header_status", screen_text(&app));
    // Cleared: gone again. A background answer (without picture) counts as well.
    let mut cleared = alisa_profile(None);
    cleared.status = None;
    update(&mut app, Action::Done(Response::Profile { contact: Some(ALISA.into()), avatar: false, profile: cleared }));
    assert!(row(&app, "…lisa0002").is_some_and(|r| !r.contains("at the lake")));
}

#[test]
fn name_status_and_avatar_commands_change_our_profile() {
    let mut app = scene(config());
    let set = |name: Option<&str>, status: Option<&str>, avatar: Option<&str>, clear_avatar| Effect::SetProfile {
        name: name.map(str::to_owned),
        status: status.map(str::to_owned),
        avatar: avatar.map(str::to_owned),
        clear_avatar,
    };
    assert_eq!(command(&mut app, "/status at the lake"), [set(None, Some("at the lake"), None, false)]);
    assert_eq!(command(&mut app, "/status -"), [set(None, Some(""), None, false)]);
    assert_eq!(command(&mut app, "/name Me Myself"), [set(Some("Me Myself"), None, None, false)]);
    assert_eq!(command(&mut app, "/avatar ~/me.png"), [set(None, None, Some("~/me.png"), false)]);
    assert_eq!(command(&mut app, "/avatar -"), [set(None, None, None, true)]);
    assert_eq!(command(&mut app, "/status"), [Effect::ShowStatus], "alone: the node's status, as before");
    update(&mut app, key(KeyCode::Esc));
    let mine = ProfileView {
        peer_id: ME.into(),
        name: Some("Me Myself".into()),
        alias: None,
        status: Some("at the lake".into()),
        avatar: None,
        updated_at: Some(NOW),
    };
    update(&mut app, Action::Done(Response::ProfileSet(mine)));
    assert_eq!(status_text(&app), "profile updated: name Me Myself, status \"at the lake\", no picture");
    let effect = set(None, None, Some("/tmp/huge.png"), false);
    update(&mut app, Action::Failed { effect, error: "the avatar is not a picture".into() });
    assert_eq!(status_text(&app), "updating your profile: the avatar is not a picture");
    assert!(app.status().is_some_and(|s| s.error));
}

/// A stand-in for a picture encoded for the terminal's graphics protocol: a
/// `TestBackend` cannot show kitty, sixel or iTerm2 output, so it is ratatui-image's
/// half-blocks (which need no terminal), `columns`×`rows` cells of `colour`.
fn encoded(columns: u16, rows: u16, colour: [u8; 3]) -> kith_tui::picture::Encoded {
    let image = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(40, 40, image::Rgb(colour)));
    let size = ratatui::layout::Size::new(columns, rows);
    let blocks = ratatui_image::protocol::halfblocks::Halfblocks::new(image, size).unwrap();
    kith_tui::picture::Encoded::new(ratatui_image::protocol::Protocol::Halfblocks(blocks))
}

/// The cells of the 100×30 screen drawn in `colour`, as (column, row).
fn coloured(app: &kith_tui::App, colour: Color) -> Vec<(u16, u16)> {
    let terminal = draw(app, 100, 30);
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    let cells = (0..area.height).flat_map(|y| (0..area.width).map(move |x| (x, y)));
    cells.filter(|&(x, y)| buffer[(x, y)].fg == colour || buffer[(x, y)].bg == colour).collect()
}

#[test]
fn with_a_graphics_protocol_the_header_shows_the_contacts_picture() {
    use kith_tui::app::HEADER_AVATAR_CELLS as ROOM;
    use kith_tui::graphics::Graphics;
    // Opening Алиса's conversation asks for her profile with its picture.
    let mut app = scene_in(kith_tui::App::new(config()).with_graphics(Graphics::Kitty));
    let header = row(&app, "…lisa0002").unwrap();
    assert_eq!(screen_text(&app), screen_text(&scene(config())), "nothing reserved before it came");
    assert!(app.header_avatar().is_none() && app.graphics_on_screen().is_empty());
    let data = avatar_png(16);
    let answer =
        Response::Profile { contact: Some(ALISA.into()), avatar: true, profile: alisa_profile(Some(data.clone())) };
    let fx = update(&mut app, Action::Done(answer));
    assert_eq!(fx, [Effect::DecodeAvatar { peer_id: ALISA.into(), data: data.clone(), room: ROOM }]);
    // Decoded for the header's room: drawn right after the title's leading blank,
    // the rest of the title three columns further right.
    let picture = kith_tui::picture::decode_bytes(&kith_tui::picture::avatar_bytes(&data).unwrap()).unwrap();
    let face = encoded(ROOM.0, ROOM.1, [255, 0, 255]);
    let done = Response::Avatar { peer_id: ALISA.into(), room: ROOM, picture, encoded: Some(face.clone()) };
    assert!(update(&mut app, Action::Done(done)).is_empty());
    assert_eq!(app.header_avatar(), Some(&face));
    let on_screen = app.graphics_on_screen();
    assert_eq!(on_screen, std::slice::from_ref(&face), "counted: the runtime clears the screen when it goes");
    // The list is 25 columns wide; the pane's border corner, then a blank.
    assert_eq!(coloured(&app, Color::Rgb(255, 0, 255)), [(27, 0), (28, 0)]);
    let shifted = row(&app, "…lisa0002").unwrap();
    let at = |row: &str| row.find("Алиса").unwrap();
    assert_eq!(at(&shifted), at(&header) + 3, "{header}\n{shifted}");
    assert!(shifted.contains("┌    ● Алиса …lisa0002 online · at the lake"), "{shifted}");

    // Another conversation: no picture there (Ван has none), and none asked for
    // when her profile said so.
    let wang = ProfileView { peer_id: WANG.into(), avatar: None, ..alisa_profile(None) };
    update(&mut app, Action::Done(Response::Profile { contact: Some(WANG.into()), avatar: false, profile: wang }));
    update(&mut app, ctrl('k'));
    type_text(&mut app, "王");
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.focused_id(), Some(WANG));
    assert!(!fx.iter().any(|f| matches!(f, Effect::LoadProfile { .. })), "{fx:?}");
    assert!(app.graphics_on_screen().is_empty(), "gone: the runtime clears the screen");
    assert!(coloured(&app, Color::Rgb(255, 0, 255)).is_empty());

    // Her profile changed: asked again; the old picture stays until the new one.
    open_from_switcher(&mut app, "Ал", ALISA);
    assert_eq!(app.header_avatar(), Some(&face), "kept, not asked again");
    let fx = update(&mut app, event(Event::ProfileChanged { profile: alisa_profile(None) }));
    assert_eq!(fx, [Effect::LoadProfile { contact: Some(ALISA.into()), avatar: true }]);
    assert_eq!(app.header_avatar(), Some(&face));
    // A failed decode keeps the old one and says so in the log only.
    let answer =
        Response::Profile { contact: Some(ALISA.into()), avatar: true, profile: alisa_profile(Some(data.clone())) };
    update(&mut app, Action::Done(answer));
    let failed = Effect::DecodeAvatar { peer_id: ALISA.into(), data, room: ROOM };
    update(&mut app, Action::Failed { effect: failed, error: "not a picture".into() });
    assert_eq!(app.header_avatar(), Some(&face));
    assert!(app.status().is_none_or(|s| !s.text.contains("not a picture")));
}

#[test]
fn with_half_blocks_the_header_asks_for_and_shows_no_picture() {
    use kith_tui::app::HEADER_AVATAR_CELLS as ROOM;
    let mut app = scene(config());
    let fx = update(&mut app, event(Event::ProfileChanged { profile: alisa_profile(None) }));
    assert!(fx.is_empty(), "{fx:?}");
    let before = screen_text(&app);
    let data = avatar_png(16);
    let picture = kith_tui::picture::decode_bytes(&kith_tui::picture::avatar_bytes(&data).unwrap()).unwrap();
    let face = Some(encoded(2, 1, [255, 0, 255]));
    let done = Response::Avatar { peer_id: ALISA.into(), room: ROOM, picture, encoded: face };
    update(&mut app, Action::Done(done));
    assert!(app.header_avatar().is_none() && app.graphics_on_screen().is_empty());
    assert!(coloured(&app, Color::Rgb(255, 0, 255)).is_empty());
    assert_eq!(screen_text(&app), before);
}
