//! Muted conversations, `@name` mentions and drafts kept on the node: the state
//! machine's effects, and the mention highlight as drawn.

mod common;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::node::Event;
use kith_p2p::views::ConversationView;
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::style::{Color, Modifier};

fn view(key: &str, group: bool, mute: Option<Option<u64>>, draft: Option<&str>) -> ConversationView {
    ConversationView {
        conversation: if group { key.to_owned() } else { "c".repeat(32) },
        peer: (!group).then(|| key.to_owned()),
        group: group.then(|| key.to_owned()),
        unread: 0,
        muted: mute.is_some(),
        muted_until: mute.flatten(),
        draft: draft.map(str::to_owned),
    }
}

fn rings(fx: &[Effect]) -> bool {
    fx.iter().any(|e| matches!(e, Effect::Bell | Effect::Notify { .. }))
}

fn at(app: &mut App, unix_ms: u64) {
    update(app, Action::Clock { unix_ms });
}

#[test]
fn a_muted_conversation_rings_no_bell_until_the_mute_lapses_or_is_lifted() {
    let mut app = scene(config());
    at(&mut app, NOW);
    update(
        &mut app,
        Action::Done(Response::Conversations(vec![view(BOB, false, Some(Some(NOW + 10 * MINUTE)), None)])),
    );
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(400, BOB, "shh", NOW) }));
    assert!(!rings(&fx), "{fx:?}");
    assert_eq!(app.conversation(BOB).map(|c| c.unread), Some(1), "still counted unread");
    assert!(screen_text(&app).contains("muted"), "the list says so:\n{}", screen_text(&app));
    // It lapses by itself.
    at(&mut app, NOW + 10 * MINUTE);
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(401, BOB, "now?", NOW) }));
    assert!(rings(&fx), "{fx:?}");
    // Forever, then lifted.
    update(&mut app, Action::Done(Response::MuteChanged(view(BOB, false, Some(None), None))));
    assert!(status_text(&app).contains("muted until /unmute-chat"), "{}", status_text(&app));
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(402, BOB, "hello?", NOW) }));
    assert!(!rings(&fx), "{fx:?}");
    update(&mut app, Action::Done(Response::MuteChanged(view(BOB, false, None, None))));
    let fx = update(&mut app, event(Event::MessageReceived { message: incoming(403, BOB, "hello!", NOW) }));
    assert!(rings(&fx), "{fx:?}");
}

#[test]
fn mute_chat_commands_ask_the_node() {
    let mut app = scene(config());
    at(&mut app, NOW);
    let fx = command(&mut app, "/mute-chat 2h");
    let until_ms = Some(NOW + 120 * MINUTE);
    assert!(fx.contains(&Effect::MuteConversation { contact: ALISA.to_owned(), until_ms }), "{fx:?}");
    let fx = command(&mut app, "/mute-chat");
    assert!(fx.contains(&Effect::MuteConversation { contact: ALISA.to_owned(), until_ms: None }), "{fx:?}");
    let fx = command(&mut app, "/unmute-chat");
    assert!(fx.contains(&Effect::UnmuteConversation { contact: ALISA.to_owned() }), "{fx:?}");
    let fx = command(&mut app, "/mute-chat soon");
    assert!(!fx.iter().any(|e| matches!(e, Effect::MuteConversation { .. })), "{fx:?}");
    assert!(status_text(&app).contains("not a duration"), "{}", status_text(&app));
}

#[test]
fn a_mention_of_us_in_a_muted_group_still_notifies() {
    let mut app = group_scene(Config { display_name: Some("Nina".into()), ..config() });
    at(&mut app, NOW);
    update(&mut app, Action::Done(Response::Conversations(vec![view(GROUP, true, Some(None), None)])));
    let quiet = update(&mut app, event(Event::MessageReceived { message: group_message(500, ALISA, "anyone?", NOW) }));
    assert!(!rings(&quiet), "{quiet:?}");
    let email = update(
        &mut app,
        event(Event::MessageReceived { message: group_message(501, ALISA, "mail nina@nina.org", NOW) }),
    );
    assert!(!rings(&email), "not a mention: {email:?}");
    let named = update(
        &mut app,
        event(Event::MessageReceived { message: group_message(502, ALISA, "@nina, are you in?", NOW) }),
    );
    assert!(named.contains(&Effect::Bell), "{named:?}");
    let by_id = format!("@{} ping", &ME[..14]);
    let fx = update(&mut app, event(Event::MessageReceived { message: group_message(503, BOB, &by_id, NOW) }));
    assert!(fx.contains(&Effect::Bell), "{fx:?}");
}

/// The conversation list's columns at a width of 100.
const LIST_WIDTH: usize = 25;

fn mention_scene(no_color: bool) -> App {
    let mut messages = book_club_history();
    messages.push(group_message(306, CAROL, "@Nina can you bring @bob 🎸 too?", NOW - MINUTE));
    group_open(Config { display_name: Some("Nina".into()), no_color, ..config() }, messages)
}

/// The cells of the first row showing `needle` in the message pane (right of the
/// list, which previews the same text unstyled).
fn cells_of(app: &App, needle: &str) -> Vec<(Color, Color, Modifier)> {
    let terminal = draw(app, 100, 30);
    let buffer = terminal.backend().buffer();
    let width = usize::from(buffer.area.width);
    let rows: Vec<&[ratatui::buffer::Cell]> = buffer.content().chunks(width).collect();
    for row in rows {
        let text: Vec<&str> = row.iter().map(|c| c.symbol()).collect();
        let first = needle.chars().next().map(String::from).unwrap_or_default();
        for start in LIST_WIDTH..row.len() {
            if text[start] == first && text[start..].concat().starts_with(needle) {
                let n = needle.chars().count();
                return row[start..start + n].iter().map(|c| (c.fg, c.bg, c.modifier)).collect();
            }
        }
    }
    panic!("{needle:?} not on screen:\n{}", text_of(&terminal));
}

#[test]
fn mentions_are_highlighted_ours_most() {
    let app = mention_scene(false);
    insta::assert_snapshot!("mention_in_group", text_of(&draw(&app, 100, 30)));
    for (fg, bg, modifier) in cells_of(&app, "@Nina") {
        assert_eq!((fg, bg), (Color::Black, Color::Yellow));
        assert!(modifier.contains(Modifier::BOLD | Modifier::UNDERLINED));
    }
    let (fg, _, modifier) = cells_of(&app, "@bob")[0];
    assert_eq!(fg, Color::Cyan, "another member's mention, lightly");
    assert!(modifier.contains(Modifier::BOLD) && !modifier.contains(Modifier::UNDERLINED));
    // Without colours, ours is still told apart: bold and underlined.
    let plain = mention_scene(true);
    for (fg, bg, modifier) in cells_of(&plain, "@Nina") {
        assert_eq!((fg, bg), (Color::Reset, Color::Reset));
        assert!(modifier.contains(Modifier::BOLD | Modifier::UNDERLINED));
    }
}

/// The standard scene with no drafts on the node, `text` typed to Алиса and a tick
/// gone by: the app and the save it must have asked for.
fn typed(text: &str) -> (App, Effect) {
    let mut app = scene(config());
    update(&mut app, Action::Done(Response::Conversations(Vec::new())));
    type_text(&mut app, text);
    let fx = update(&mut app, Action::Tick);
    let saved = Effect::SaveDraft { contact: ALISA.to_owned(), text: text.into() };
    assert!(fx.contains(&saved), "{fx:?}");
    (app, saved)
}

#[test]
fn drafts_go_to_the_node_and_come_back_after_a_restart() {
    // First run: type in two conversations, then quit.
    let (mut app, _) = typed("half a thought for Алиса");
    assert!(app.saving_drafts());
    update(
        &mut app,
        Action::Done(Response::DraftSaved { contact: ALISA.to_owned(), text: "half a thought for Алиса".into() }),
    );
    assert!(!app.saving_drafts());
    assert!(!update(&mut app, Action::Tick).iter().any(|e| matches!(e, Effect::SaveDraft { .. })), "only changes go");
    update(&mut app, ctrl('k'));
    type_text(&mut app, "Bob");
    update(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "для Боба");
    let fx = command_quit(&mut app);
    assert!(fx.contains(&Effect::SaveDraft { contact: BOB.to_owned(), text: "для Боба".into() }), "{fx:?}");
    assert!(fx.contains(&Effect::Quit));

    // Second run: the node hands them back.
    let mut app = scene(config());
    let drafts =
        vec![view(ALISA, false, None, Some("half a thought for Алиса")), view(BOB, false, None, Some("для Боба"))];
    let fx = update(&mut app, Action::Done(Response::Conversations(drafts)));
    assert!(fx.is_empty(), "restoring saves nothing: {fx:?}");
    assert_eq!(app.focused_id(), Some(ALISA));
    assert_eq!(app.input().text(), "half a thought for Алиса");
    assert_eq!(app.draft(BOB).map(|d| d.text()), Some("для Боба"));
    // Sending clears the draft on the node too.
    update(&mut app, key(KeyCode::Enter));
    let fx = update(&mut app, Action::Tick);
    assert!(fx.contains(&Effect::SaveDraft { contact: ALISA.to_owned(), text: String::new() }), "{fx:?}");
}

#[test]
fn a_failed_draft_save_is_tried_again() {
    let (mut app, effect) = typed("keep me");
    update(&mut app, Action::Failed { effect: effect.clone(), error: "node busy".into() });
    assert!(update(&mut app, Action::Tick).contains(&effect));
}

fn command_quit(app: &mut App) -> Vec<Effect> {
    update(app, ctrl('q'))
}

#[test]
fn a_draft_over_the_nodes_limit_is_saved_cut_once_not_on_every_tick() {
    let mut app = scene(config());
    update(&mut app, Action::Done(Response::Conversations(Vec::new())));
    let long = "ж".repeat(kith_p2p::kith_storage::MAX_DRAFT_LEN / 2 + 10);
    update(&mut app, Action::Paste(long.clone()));
    let saves = |fx: &[Effect]| -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::SaveDraft { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let first = saves(&update(&mut app, Action::Tick));
    assert_eq!(first.len(), 1, "saved once");
    assert!(first[0].len() <= kith_p2p::kith_storage::MAX_DRAFT_LEN && long.starts_with(&first[0]), "cut at a character");
    assert!(saves(&update(&mut app, Action::Tick)).is_empty(), "and not again while it is unchanged");
}
