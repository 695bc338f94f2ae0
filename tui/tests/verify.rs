//! Key verification: the `/verify <contact>` overlay with the safety number and its
//! QR code, `/verify <contact> mark | unmark`, the header's `✓ verified` and `⚠ key
//! changed` markers and the profile overlay's "Verified" row. Driven like
//! `profiles.rs`: actions in, state, effects and screens out.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::ContactState;
use kith_p2p::node::Event;
use kith_p2p::views::{ContactView, VerifyView};
use kith_tui::app::Overlay;
use kith_tui::{Action, Effect, Response, update};
use ratatui::style::Color;

/// A made-up safety number: 24 groups of five digits.
fn safety_number() -> String {
    (0..24).map(|i| format!("{:05}", (11_111 * (i % 9 + 1) + i) % 100_000)).collect::<Vec<_>>().join(" ")
}

/// A tiny made-up QR code, as the node draws it (half blocks, `\n`-terminated rows).
const QR: &str = "█▀▀▀█ ▄ █\n█ ▀ █ ▀▄▀\n▀▀▀▀▀ ▀ ▀\n";

/// Алиса as the node says she is now.
fn alisa(verified: bool, key_changed: bool) -> ContactView {
    ContactView { verified, key_changed, ..contact(ALISA, "Алиса", ContactState::Accepted) }
}

/// The node's answer about Алиса.
fn answer(mark: Option<bool>, contact: ContactView, verified_at: Option<u64>) -> Action {
    let view = VerifyView { contact, safety_number: safety_number(), qr: QR.into(), verified_at };
    Action::Done(Response::Verified { mark, view })
}

/// The row of the 100×30 screen holding `needle`, if any.
fn row(app: &kith_tui::App, needle: &str) -> Option<String> {
    screen_text(app).lines().find(|l| l.contains(needle)).map(str::to_owned)
}

#[test]
fn the_verify_overlay_shows_the_safety_number_in_rows_of_six_and_the_code() {
    let mut app = scene(config());
    // The name completes as for `/profile`.
    type_text(&mut app, "/verify Ал");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/verify Алиса ");
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(fx, [Effect::Verify { contact: ALISA.into(), mark: None }]);
    assert!(screen_text(&app).contains("reading the safety number…"));
    update(&mut app, answer(None, alisa(false, false), None));
    assert!(matches!(app.overlay(), Some(Overlay::Verify(card)) if card.view.is_some()));
    let screen = screen_text(&app);
    let groups: Vec<String> = safety_number().split(' ').map(str::to_owned).collect();
    for six in groups.chunks(6) {
        assert!(screen.contains(&six.join(" ")), "{}:\n{screen}", six.join(" "));
    }
    for needed in ["Verified  no", "/verify Алиса mark", "█▀▀▀█ ▄ █", "█ ▀ █ ▀▄▀"] {
        assert!(screen.contains(needed), "{needed}:\n{screen}");
    }
    insta::assert_snapshot!("verify_overlay", screen);
    update(&mut app, key(KeyCode::Esc));
    assert!(app.overlay().is_none());
}

#[test]
fn a_failed_read_says_why_in_the_overlay() {
    let mut app = scene(config());
    let fx = command(&mut app, "/verify nobody");
    let effect = Effect::Verify { contact: "nobody".into(), mark: None };
    assert_eq!(fx, std::slice::from_ref(&effect));
    update(&mut app, Action::Failed { effect, error: "no such contact: nobody".into() });
    let screen = screen_text(&app);
    assert!(
        screen.contains("cannot read the safety number: no such") && screen.contains("contact: nobody"),
        "{screen}"
    );
}

#[test]
fn verify_mark_asks_the_node_updates_the_contact_and_says_so() {
    let mut app = scene(config());
    let fx = command(&mut app, "/verify Алиса mark");
    assert_eq!(fx, [Effect::Verify { contact: ALISA.into(), mark: Some(true) }]);
    assert!(app.overlay().is_none(), "marking opens nothing");
    update(&mut app, answer(Some(true), alisa(true, false), Some(NOW - DAY)));
    assert_eq!(status_text(&app), "Алиса is marked verified");
    let listed = app.conversation(ALISA).and_then(|c| c.contact()).unwrap();
    assert!(listed.verified && !listed.key_changed);
    // Unmarking, and a failure.
    let fx = command(&mut app, "/verify Алиса unmark");
    let effect = Effect::Verify { contact: ALISA.into(), mark: Some(false) };
    assert_eq!(fx, std::slice::from_ref(&effect));
    update(&mut app, Action::Failed { effect, error: "not connected".into() });
    assert!(status_text(&app).contains("not connected") && app.status().is_some_and(|s| s.error));
    update(&mut app, answer(Some(false), alisa(false, false), None));
    assert_eq!(status_text(&app), "Алиса is no longer marked verified");
    assert!(app.conversation(ALISA).and_then(|c| c.contact()).is_some_and(|c| !c.verified));
}

#[test]
fn the_header_marks_a_verified_contact_and_warns_of_a_changed_key() {
    let mut app = scene(config());
    let plain = row(&app, "…lisa0002").unwrap();
    assert!(!plain.contains("verified") && !plain.contains("key changed"), "{plain}");
    update(&mut app, answer(Some(true), alisa(true, false), Some(NOW - DAY)));
    let header = row(&app, "…lisa0002").unwrap();
    assert!(header.contains("Алиса …lisa0002 ✓ verified online"), "{header}");
    insta::assert_snapshot!("header_verified", screen_text(&app));
    assert!(cells(&app, "✓ verified", 0).iter().all(|(fg, _, _)| *fg == Color::Green));
    // Her key changes: the warning replaces the mark, and says messages wait.
    update(&mut app, event(Event::KeyChanged { contact: alisa(true, true) }));
    let header = row(&app, "…lisa0002").unwrap();
    assert!(header.contains("⚠ key changed, messages held") && !header.contains("✓"), "{header}");
    insta::assert_snapshot!("header_key_changed", screen_text(&app));
    assert!(cells(&app, "⚠ key changed", 0).iter().all(|(fg, _, _)| *fg == Color::Yellow));
    // Not verified: only that the key changed.
    update(&mut app, event(Event::KeyChanged { contact: alisa(false, true) }));
    let header = row(&app, "…lisa0002").unwrap();
    assert!(header.contains("⚠ key changed ") && !header.contains("held"), "{header}");
}

#[test]
fn the_profile_overlay_says_whether_a_contact_is_verified() {
    let mut app = scene(config());
    // Verified, date unknown: the profile asks for it.
    update(&mut app, event(Event::KeyChanged { contact: alisa(true, true) }));
    let fx = command(&mut app, "/profile Алиса");
    assert_eq!(
        fx,
        [
            Effect::LoadProfile { contact: Some(ALISA.into()), avatar: true },
            Effect::Verify { contact: ALISA.into(), mark: None },
        ]
    );
    update(&mut app, answer(None, alisa(true, true), Some(NOW - DAY)));
    let profile = kith_p2p::views::ProfileView {
        peer_id: ALISA.into(),
        name: Some("Alisa Petrova".into()),
        alias: Some("Алиса".into()),
        status: None,
        avatar: None,
        updated_at: Some(NOW - DAY),
    };
    update(&mut app, Action::Done(Response::Profile { contact: Some(ALISA.into()), avatar: true, profile }));
    let screen = screen_text(&app);
    assert!(matches!(app.overlay(), Some(Overlay::Profile(_))), "the answer does not replace the profile");
    for needed in ["Verified  yes, since Mon, 13 Jan 2025", "⚠ key changed — compare safety numbers", "held"] {
        assert!(screen.contains(needed), "{needed}:\n{screen}");
    }
}
