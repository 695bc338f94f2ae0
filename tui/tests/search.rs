//! Full-text search in the interface (issue 17): the overlay as drawn (matches
//! marked, with and without colours, peer text sanitised), searching as you type
//! (one request at a time, stale answers dropped), errors shown, and Enter opening
//! the hit in its conversation, selected, however deep in the history it is.

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::MessageState;
use kith_tui::app::{Overlay, SEARCH_LIMIT, Scroll};
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::style::{Color, Modifier};

/// The search for `text` (in `within`) as the overlay asks it.
fn asked(text: &str, within: Option<&str>) -> Effect {
    Effect::Search { text: text.into(), within: within.map(str::to_owned), limit: SEARCH_LIMIT }
}

fn searches(fx: &[Effect]) -> Vec<&Effect> {
    fx.iter().filter(|e| matches!(e, Effect::Search { .. })).collect()
}

/// The standard scene with the Book club, the clock at [`NOW`].
fn scene_at_now(config: Config) -> App {
    let mut app = group_scene(config);
    update(&mut app, Action::Clock { unix_ms: NOW });
    app
}

/// Four hits for "meet": in the group (by a member who is not a contact), ours to
/// Алиса two days ago, Bob's long message cut by the node, and one from a stranger
/// whose snippet carries escape sequences and marks that make no sense.
fn meet_hits() -> Vec<kith_tui::app::SearchHit> {
    let hostile = incoming(900, MALLORY, "\u{1b}[2Jwipe\u{202e} meet me", NOW - 7 * MINUTE);
    let mut hostile = hit(hostile.clone(), &hostile.text, &["meet"]);
    hostile.marks.splice(0..0, [[0, 999], [6, 2], [1, 1]]);
    vec![
        hit(
            group_message(303, CAROL, "Done! Meeting on Friday?", NOW - 30 * MINUTE),
            "Done! Meeting on Friday?",
            &["Meeting"],
        ),
        hit(
            outgoing(60, ALISA, "Let's meet at the café", NOW - 2 * DAY, MessageState::Read),
            "Let's meet at the café",
            &["meet"],
        ),
        hit(
            incoming(201, BOB, "long", NOW - 3 * MINUTE),
            "…so after all of that we finally agreed that the meeting moves to the big room upstairs, next to the kitchen where the coffee machine is",
            &["meeting"],
        ),
        hostile,
    ]
}

/// The scene with the overlay open on "meet" and the four hits shown.
fn meet_scene(config: Config) -> App {
    let mut app = scene_at_now(config);
    let fx = search_for(&mut app, "meet");
    assert_eq!(searches(&fx), [&asked("meet", None)]);
    update(&mut app, found("meet", None, meet_hits()));
    app
}

#[test]
fn results_show_when_where_who_and_the_matched_words_marked() {
    let app = meet_scene(config());
    let screen = screen_text(&app);
    insta::assert_snapshot!("search_results", screen);
    // The hostile snippet: no escape or override reaches the terminal, and only its
    // one sound mark is drawn.
    assert!(!screen.contains('\u{1b}') && !screen.contains('\u{202e}'), "{screen}");
    // The chosen hit (the first): its match a highlighter's mark on the chosen row.
    for (fg, bg, modifier) in cells(&app, "Meeting", 0) {
        assert_eq!((fg, bg), (Color::Black, Color::Yellow));
        assert!(modifier.contains(Modifier::BOLD));
    }
    let (_, bg, _) = cells(&app, " on Friday?", 0)[0];
    assert_eq!(bg, Color::Indexed(236), "the rest of the chosen row is the selection's");
    // Another hit's match, and the text around it plain.
    let around = cells(&app, "meet at the café", 0);
    for (fg, bg, _) in &around[..4] {
        assert_eq!((*fg, *bg), (Color::Black, Color::Yellow));
    }
    assert_eq!(around[4].1, Color::Reset);
    for (fg, bg, _) in cells(&app, "meeting", 0) {
        assert_eq!((fg, bg), (Color::Black, Color::Yellow));
    }
    for (fg, bg, _) in cells(&app, "meet me", 0).into_iter().take(4) {
        assert_eq!((fg, bg), (Color::Black, Color::Yellow));
    }
    assert_eq!(cells(&app, "wipe", 0)[0].1, Color::Reset, "a mark off the text is not drawn");

    // Without colours the marks still show: bold and underlined, also on the
    // chosen row (which is reversed).
    let plain = meet_scene(Config { no_color: true, ..config() });
    for (fg, bg, modifier) in cells(&plain, "Meeting", 0) {
        assert_eq!((fg, bg), (Color::Reset, Color::Reset));
        assert!(modifier.contains(Modifier::BOLD | Modifier::UNDERLINED | Modifier::REVERSED), "{modifier:?}");
    }
    assert!(!cells(&plain, " on Friday?", 0)[1].2.contains(Modifier::UNDERLINED));
    let around = cells(&plain, "meet at the café", 0);
    for (_, _, modifier) in &around[..4] {
        assert!(modifier.contains(Modifier::BOLD | Modifier::UNDERLINED) && !modifier.contains(Modifier::REVERSED));
    }
    assert_eq!(around[5].2, Modifier::empty());
}

#[test]
fn any_size_draws_the_overlay_without_panicking() {
    let app = meet_scene(config());
    for (w, h) in [(0, 0), (1, 1), (8, 2), (16, 5), (20, 6), (40, 16), (60, 10)] {
        draw(&app, w, h);
    }
    let narrow = text_of(&draw(&app, 40, 16));
    assert!(narrow.contains("Search") && narrow.contains("Meeting"), "{narrow}");
}

#[test]
fn up_down_and_pages_move_the_choice_and_enter_opens_it_in_its_conversation() {
    let mut app = meet_scene(config());
    update(&mut app, key(KeyCode::Down));
    update(&mut app, key(KeyCode::Down));
    update(&mut app, key(KeyCode::Up));
    assert!(matches!(app.overlay(), Some(Overlay::Search(s)) if s.selected == 1));
    update(&mut app, key(KeyCode::PageDown));
    assert!(matches!(app.overlay(), Some(Overlay::Search(s)) if s.selected == 3), "the last hit at most");
    update(&mut app, key(KeyCode::PageUp));
    assert!(matches!(app.overlay(), Some(Overlay::Search(s)) if s.selected == 0));

    // The group's conversation is not loaded: the view is built around the hit.
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.overlay(), None);
    assert_eq!(app.focused_id(), Some(GROUP));
    let hit_id = format!("{:032x}", 303);
    let older = Effect::LoadHistory { contact: GROUP.into(), before: Some(hit_id.clone()), limit: 50 };
    assert!(fx.contains(&older), "{fx:?}");
    assert!(!fx.iter().any(|e| matches!(e, Effect::LoadHistory { before: None, .. })), "not the newest page: {fx:?}");
    let conv = app.focused().expect("focused");
    assert_eq!(conv.selected.as_deref(), Some(hit_id.as_str()));
    assert!(matches!(&conv.scroll, Scroll::At { id, below: 0, .. } if *id == hit_id));

    // The older page comes, then the messages after the hit, from the newest end.
    let history = book_club_history();
    let messages = history[..2].to_vec();
    let fx = update(
        &mut app,
        Action::Done(Response::History { contact: GROUP.into(), before: Some(hit_id.clone()), limit: 50, messages }),
    );
    let newer = fx.iter().find_map(|e| match e {
        Effect::LoadHistory { contact, before: None, limit } if contact == GROUP => Some(*limit),
        _ => None,
    });
    let limit = newer.unwrap_or_else(|| panic!("the messages after the hit are asked for: {fx:?}"));
    update(&mut app, Action::Done(Response::History { contact: GROUP.into(), before: None, limit, messages: history }));
    let conv = app.focused().expect("focused");
    assert_eq!(conv.messages.len(), 5);
    assert!(!conv.detached(), "everything after the hit is loaded");

    // On screen (the whole conversation fits the pane), the hit marked as chosen.
    // (How a hit deep in a long history lands at the pane's bottom row: scroll.rs.)
    let screen = screen_text(&app);
    assert!(screen.contains("Кто дочитал") && screen.contains("Договорились"), "{screen}");
    let (_, bg, modifier) = cells(&app, "Done! Meeting", 0)[0];
    assert_eq!(bg, Color::Indexed(236), "the hit is drawn selected");
    assert!(modifier.contains(Modifier::BOLD));
    assert_eq!(cells(&app, "almost, 50 pages", 0)[0].1, Color::Reset, "its neighbours are not");

    // Esc goes back to the newest message, and the mark goes.
    update(&mut app, key(KeyCode::Esc));
    let conv = app.focused().expect("focused");
    assert_eq!((conv.scroll.clone(), conv.selected.clone()), (Scroll::Bottom, None));
    assert!(screen_text(&app).contains("Договорились"));
}

#[test]
fn a_hit_in_the_loaded_window_only_moves_the_view() {
    let mut app = scene_at_now(config());
    search_for(&mut app, "hello");
    let message = alisa_history()[2].clone();
    update(&mut app, found("hello", None, vec![hit(message.clone(), &message.text, &["hello"])]));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(!fx.iter().any(|e| matches!(e, Effect::LoadHistory { .. })), "{fx:?}");
    assert_eq!(app.focused_id(), Some(ALISA));
    let conv = app.focused().expect("focused");
    assert!(matches!(&conv.scroll, Scroll::At { id, below: 0, .. } if *id == message.id));
    assert_eq!(conv.messages.len(), alisa_history().len(), "the window stays");
    let (_, bg, _) = cells(&app, "Смотри:", 0)[0];
    assert_eq!(bg, Color::Indexed(236), "the hit is drawn selected");
}

#[test]
fn esc_closes_without_moving_and_an_answer_after_that_is_dropped() {
    let mut app = scene_at_now(config());
    let before = app.focused().map(|c| c.scroll.clone());
    let fx = search_for(&mut app, "meet");
    assert_eq!(searches(&fx), [&asked("meet", None)]);
    let fx = update(&mut app, key(KeyCode::Esc));
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(app.overlay(), None);
    assert_eq!(app.focused_id(), Some(ALISA));
    assert_eq!(app.focused().map(|c| c.scroll.clone()), before);
    // The answer comes after the overlay closed: nothing shows, nothing moves.
    let fx = update(&mut app, found("meet", None, meet_hits()));
    assert!(fx.is_empty() && app.overlay().is_none(), "{fx:?}");
    // And the next search is not held back by it.
    let fx = search_for(&mut app, "café");
    assert_eq!(searches(&fx), [&asked("café", None)]);
    // Ctrl+F closes it too.
    update(&mut app, ctrl('f'));
    assert_eq!(app.overlay(), None);
}

#[test]
fn the_nodes_error_shows_in_the_overlay() {
    let mut app = scene_at_now(config());
    let fx = search_for(&mut app, "?!");
    let effect = asked("?!", None);
    assert_eq!(searches(&fx), [&effect]);
    let error = "the query has no words to look for".to_owned();
    update(&mut app, Action::Failed { effect: effect.clone(), error: error.clone() });
    let screen = screen_text(&app);
    assert!(screen.contains(&error), "{screen}");
    assert_eq!(cells(&app, "the query has no words", 0)[0].0, Color::LightRed);
    assert!(!status_text(&app).contains(&error), "said in the overlay, not the status line");
    // Enter asks again (a failure may have been the node away), and so does
    // getting the node back.
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(searches(&fx), [&effect]);
    assert!(screen_text(&app).contains("searching…"));
    update(&mut app, Action::Failed { effect: effect.clone(), error: "not connected to the node".into() });
    assert!(screen_text(&app).contains("not connected to the node"));
    let fx = update(&mut app, Action::Reconnected);
    assert_eq!(searches(&fx), [&effect]);
    update(&mut app, Action::Failed { effect, error: error.clone() });
    // A search that finds nothing says so.
    let fx = update(&mut app, key(KeyCode::Backspace));
    let fx = update(&mut app, Action::SearchDue { edit: last_edit(&fx) });
    assert_eq!(searches(&fx), [&asked("?", None)]);
    update(&mut app, found("?", None, Vec::new()));
    assert!(screen_text(&app).contains("no messages match"), "{}", screen_text(&app));
}

#[test]
fn typing_searches_once_it_pauses_one_request_at_a_time_and_stale_answers_are_dropped() {
    let mut app = scene_at_now(config());
    update(&mut app, ctrl('f'));
    // Every key starts the wait again: only the wait after the last one searches.
    let fx = type_text(&mut app, "caf");
    let waits: Vec<&Effect> = fx.iter().filter(|e| matches!(e, Effect::SearchAfter { .. })).collect();
    assert_eq!(waits.len(), 3);
    assert!(searches(&fx).is_empty(), "nothing searched while typing: {fx:?}");
    let last = last_edit(&fx);
    assert!(update(&mut app, Action::SearchDue { edit: last - 1 }).is_empty(), "an older wait does nothing");
    let fx = update(&mut app, Action::SearchDue { edit: last });
    assert_eq!(searches(&fx), [&asked("caf", None)]);
    assert!(screen_text(&app).contains("searching…"));

    // More typed while "caf" is in flight: that search waits for its answer.
    let fx = type_text(&mut app, "e");
    let fx = update(&mut app, Action::SearchDue { edit: last_edit(&fx) });
    assert!(searches(&fx).is_empty(), "never two in flight: {fx:?}");
    // The answer for "caf" is stale: dropped, and "cafe" goes at once.
    let old = vec![hit(incoming(700, BOB, "cafeteria", NOW), "cafeteria", &["cafeteria"])];
    let fx = update(&mut app, found("caf", None, old));
    assert_eq!(searches(&fx), [&asked("cafe", None)]);
    assert!(!screen_text(&app).contains("cafeteria"), "{}", screen_text(&app));
    let new = vec![hit(incoming(701, BOB, "café?", NOW), "café?", &["café"])];
    update(&mut app, found("cafe", None, new));
    let screen = screen_text(&app);
    assert!(screen.contains("café?") && screen.contains("1 message"), "{screen}");

    // Enter on results that are not for the query as typed searches at once.
    let typed = type_text(&mut app, " au lait");
    assert!(searches(&typed).is_empty());
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(searches(&fx), [&asked("cafe au lait", None)]);
    assert_eq!(app.focused_id(), Some(ALISA), "nothing opened");
    assert!(matches!(app.overlay(), Some(Overlay::Search(_))));
    // The wait after typing ends later: asked already, nothing more.
    assert!(searches(&update(&mut app, Action::SearchDue { edit: last_edit(&typed) })).is_empty());
}

#[test]
fn slash_search_opens_with_the_words_searched_and_tab_narrows_to_the_open_conversation() {
    let mut app = scene_at_now(config());
    let fx = command(&mut app, "/search встреча   в пятницу");
    assert_eq!(searches(&fx), [&asked("встреча в пятницу", None)]);
    assert!(matches!(app.overlay(), Some(Overlay::Search(s)) if s.query.text() == "встреча в пятницу"));
    update(&mut app, found("встреча в пятницу", None, Vec::new()));
    assert!(screen_text(&app).contains("Search all conversations"));
    let fx = update(&mut app, key(KeyCode::Tab));
    assert_eq!(searches(&fx), [&asked("встреча в пятницу", Some(ALISA))]);
    assert!(screen_text(&app).contains("Search in Алиса"), "{}", screen_text(&app));
    // Paste goes into the query, on one line.
    let fx = update(&mut app, Action::Paste("\nи\tсреда".into()));
    assert!(matches!(app.overlay(), Some(Overlay::Search(s)) if s.query.text() == "встреча в пятницу и среда"));
    assert!(fx.iter().any(|e| matches!(e, Effect::SearchAfter { .. })), "{fx:?}");
    // A huge paste is cut (a request line over the socket's limit would cost the
    // connection), at a character.
    update(&mut app, Action::Paste("ж".repeat(100_000)));
    let Some(Overlay::Search(search)) = app.overlay() else { panic!("open") };
    assert!(search.query.text().len() <= 1024 && search.query.text().ends_with('ж'));
}

#[test]
fn help_and_completion_know_search() {
    let mut app = scene_at_now(config());
    update(&mut app, kith_tui::Action::Resize { width: 100, height: 60 });
    update(&mut app, key(KeyCode::F(1)));
    let help = text_of(&draw(&app, 100, 60));
    assert!(help.contains("Ctrl+F") && help.contains("/search [words]"), "{help}");
    update(&mut app, key(KeyCode::Esc));
    type_text(&mut app, "/sea");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/search ");
}

#[test]
fn a_newest_page_asked_before_a_jump_does_not_undo_it() {
    let mut app = scene_at_now(config());
    // Bob's conversation opens: its newest page is on the way.
    update(&mut app, ctrl('k'));
    type_text(&mut app, "Bob");
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(fx.contains(&Effect::LoadHistory { contact: BOB.into(), before: None, limit: 50 }), "{fx:?}");
    // Meanwhile a search opens an older message of his.
    search_for(&mut app, "film");
    let old = outgoing(150, BOB, "the film was great", NOW - 3 * DAY, MessageState::Read);
    update(&mut app, found("film", None, vec![hit(old.clone(), &old.text, &["film"])]));
    let fx = update(&mut app, key(KeyCode::Enter));
    let older = Effect::LoadHistory { contact: BOB.into(), before: Some(old.id.clone()), limit: 50 };
    assert!(fx.contains(&older), "{fx:?}");
    // The newest page arrives late: stale, it leaves the view on the hit.
    let messages: Vec<_> = (190..=200).map(|n| outgoing(n, BOB, "later", NOW - DAY, MessageState::Read)).collect();
    update(&mut app, Action::Done(Response::History { contact: BOB.into(), before: None, limit: 50, messages }));
    let conv = app.focused().expect("focused");
    assert!(matches!(&conv.scroll, Scroll::At { id, .. } if *id == old.id), "{:?}", conv.scroll);
    let ids: Vec<&str> = conv.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [old.id.as_str()], "the window is still the hit alone");
    assert!(screen_text(&app).contains("the film was great"));
}
