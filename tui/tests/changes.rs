//! Replies, edits, deletes and reactions in the interface (issue 17): how they are
//! drawn (the quote above a reply, `(edited)`, `deleted`, reactions under a message,
//! with and without colours, peer text sanitised), `message_changed` applied to the
//! loaded window, and the commands (`/reply`, `/edit`, `/delete`, `/delete-all`,
//! `/react`, Ctrl+Up/Down, Ctrl+R) asking for the right requests, answered by a
//! small in-memory node with the control API's semantics.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyModifiers};
use kith_p2p::kith_storage::{ContactState, MessageState};
use kith_p2p::node::Event;
use kith_p2p::views::{ConversationView, MessageView, QuoteView, ReactionView};
use kith_tui::app::{Compose, Overlay, Scroll};
use kith_tui::{Action, App, Config, Effect, Response, update};
use ratatui::style::{Color, Modifier};

fn id(n: u64) -> String {
    format!("{n:032x}")
}

/// `m` as a reply to message `n`, quoted as the node quotes it: by `author` with
/// `text`, or (`author` `None`) a message this node does not hold.
fn replying(mut m: MessageView, n: u64, author: Option<&str>, text: &str, deleted: bool) -> MessageView {
    let text = author.map(|_| if deleted { String::new() } else { text.to_owned() });
    m.reply_to = Some(QuoteView { id: id(n), author: author.map(str::to_owned), text, deleted });
    m
}

fn edited(mut m: MessageView, original: &str) -> MessageView {
    m.edited = true;
    m.versions = vec![
        kith_p2p::views::VersionView { text: original.to_owned(), at: m.sent_at },
        kith_p2p::views::VersionView { text: m.text.clone(), at: m.sent_at + MINUTE },
    ];
    m
}

fn deleted(mut m: MessageView) -> MessageView {
    m.deleted = true;
    m.text = String::new();
    m.file = None;
    m
}

fn reacted(mut m: MessageView, reactions: &[(&str, &[&str])]) -> MessageView {
    m.reactions = reactions
        .iter()
        .map(|(emoji, by)| ReactionView {
            emoji: (*emoji).to_owned(),
            count: by.len(),
            by: by.iter().map(|p| (*p).to_owned()).collect(),
        })
        .collect();
    m
}

/// A conversation with Алиса that has them all: replies both ways (one to a
/// deleted message, one to a message not here), an edit, a delete, reactions (one
/// of them ours), and a peer trying escapes in a quote and an emoji.
fn thread() -> Vec<MessageView> {
    let at = |minutes: u64| NOW - minutes * MINUTE;
    vec![
        reacted(incoming(1, ALISA, "Где встречаемся?", at(30)), &[("👍", &[ALISA, ME]), ("🎉", &[ALISA])]),
        edited(
            replying(
                outgoing(2, ALISA, "У фонтана в 8", at(29), MessageState::Read),
                1,
                Some(ALISA),
                "Где встречаемся?",
                false,
            ),
            "У фонтана в 7",
        ),
        replying(incoming(3, ALISA, "Отлично 👌", at(28)), 2, Some(ME), "У фонтана в 8", false),
        deleted(incoming(4, ALISA, "oops", at(27))),
        replying(incoming(5, ALISA, "ой, не то", at(26)), 4, Some(ALISA), "", true),
        replying(outgoing(6, ALISA, "про старое", at(25), MessageState::Delivered), 999, None, "", false),
        reacted(
            replying(incoming(7, ALISA, "и ещё", at(24)), 3, Some(ALISA), "line one\n\u{1b}[2Jwipe\u{202e}", false),
            &[("\u{1b}[31m!", &[ALISA])],
        ),
    ]
}

/// The standard list with Алиса's conversation open on `history`, the clock at NOW.
fn open_with(config: Config, history: Vec<MessageView>) -> App {
    let mut app = App::new(config);
    update(&mut app, Action::Resize { width: 100, height: 30 });
    update(&mut app, Action::Clock { unix_ms: NOW });
    update(&mut app, Action::Done(Response::Status(status(&[ALISA]))));
    update(&mut app, Action::Done(Response::Presence(vec![presence(ALISA, true, Some(NOW))])));
    let contacts =
        vec![contact(ALISA, "Алиса", ContactState::Accepted), contact(BOB, "Bob 🎸", ContactState::Accepted)];
    let inbox = vec![inbox_entry(contact(ALISA, "Алиса", ContactState::Accepted), 0, history.last().cloned())];
    let fx = update(&mut app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox }));
    assert!(fx.contains(&Effect::LoadHistory { contact: ALISA.into(), before: None, limit: 50 }), "{fx:?}");
    let messages = history;
    update(&mut app, Action::Done(Response::History { contact: ALISA.into(), before: None, limit: 50, messages }));
    app
}

fn message_of(app: &App, n: u64) -> Option<&MessageView> {
    app.conversation(ALISA)?.messages.iter().find(|m| m.id == id(n))
}

fn compose(app: &App) -> Option<&Compose> {
    app.focused().and_then(|c| c.compose.as_ref())
}

// ---- drawing ---------------------------------------------------------------------------

#[test]
fn replies_edits_deletes_and_reactions_as_drawn() {
    let app = open_with(config(), thread());
    let screen = screen_text(&app);
    insta::assert_snapshot!("thread", screen);
    assert!(!screen.contains('\u{1b}') && !screen.contains('\u{202e}'), "{screen}");
    // The quote above a reply, whole on one line, dim.
    for quote in ["↪ Алиса: Где встречаемся?", "↪ you: У фонтана в 8", "↪ Алиса: (deleted)", "↪ a message not here"]
    {
        assert!(screen.contains(quote), "{quote}: {screen}");
        assert!(cells(&app, quote, 0).iter().all(|(fg, ..)| *fg == Color::DarkGray), "{quote} is dim");
    }
    // `(edited)` after the text and before the mark, dim.
    assert!(screen.contains("У фонтана в 8 (edited) ✓✓"), "{screen}");
    assert!(cells(&app, "(edited)", 0).iter().all(|(fg, ..)| *fg == Color::DarkGray));
    // `deleted` in place of the text, dim and italic.
    assert!(screen.contains("Алиса: deleted"), "{screen}");
    for (fg, _, modifier) in cells(&app, "deleted", 0) {
        assert_eq!(fg, Color::DarkGray);
        assert!(modifier.contains(Modifier::ITALIC));
    }
    // Reactions under the message: ours set apart, the others' plain.
    assert!(screen.contains("👍 2  🎉 1"), "{screen}");
    let ours = cells(&app, "👍", 0)[0];
    let theirs = cells(&app, "🎉", 0)[0];
    assert!(ours.1 != Color::Reset && ours.2.contains(Modifier::BOLD), "{ours:?}");
    assert_eq!((theirs.1, theirs.2), (Color::Reset, Modifier::empty()));
}

#[test]
fn without_colours_deleted_and_our_reactions_still_stand_out() {
    let app = open_with(Config { no_color: true, ..config() }, thread());
    for (fg, bg, modifier) in cells(&app, "deleted", 0) {
        assert_eq!((fg, bg), (Color::Reset, Color::Reset));
        assert!(modifier.contains(Modifier::DIM | Modifier::ITALIC), "{modifier:?}");
    }
    assert!(cells(&app, "↪ a message not here", 0).iter().all(|(_, _, m)| m.contains(Modifier::DIM)));
    let ours = cells(&app, "👍", 0)[0].2;
    assert!(ours.contains(Modifier::BOLD | Modifier::UNDERLINED), "{ours:?}");
    assert_eq!(cells(&app, "🎉", 0)[0].2, Modifier::empty());
}

#[test]
fn a_narrow_pane_wraps_reactions_and_cuts_quotes_and_any_size_draws() {
    let many: Vec<(&str, &[&str])> =
        ["😀", "😃", "😄", "😁", "😆", "😅", "🤣", "😂", "🙂", "🙃", "😉", "😊", "😇", "🥰"]
            .iter()
            .map(|e| (*e, &[ALISA][..]))
            .collect();
    let mut history = thread();
    history.push(reacted(incoming(8, ALISA, "реакции", NOW - MINUTE), &many));
    let app = open_with(config(), history);
    let narrow = text_of(&draw(&app, 40, 16));
    assert!(narrow.contains("😀 1  😃 1"), "{narrow}");
    assert!(narrow.contains("+2"), "past 12 emoji the rest are counted: {narrow}");
    assert!(!narrow.contains("🥰"), "{narrow}");
    for (w, h) in [(0, 0), (1, 1), (8, 2), (16, 5), (20, 6), (30, 8), (60, 10)] {
        draw(&app, w, h);
    }
}

// ---- message_changed -------------------------------------------------------------------

#[test]
fn a_message_changed_event_updates_the_loaded_message_and_the_quotes_of_it() {
    let mut app = open_with(config(), thread());
    // Алиса edits her first message and reacts to ours.
    let mut first = reacted(incoming(1, ALISA, "Где встречаемся сегодня?", NOW - 30 * MINUTE), &[("👍", &[ALISA, ME])]);
    first = edited(first, "Где встречаемся?");
    let fx = update(&mut app, event(Event::MessageChanged { message: first.clone() }));
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(message_of(&app, 1), Some(&first));
    let quote = message_of(&app, 2).and_then(|m| m.reply_to.clone()).expect("a reply");
    assert_eq!(quote.text.as_deref(), Some("Где встречаемся сегодня?"), "the reply quotes it as it is now");
    let screen = screen_text(&app);
    assert!(screen.contains("Где встречаемся сегодня? (edited)"), "{screen}");
    assert!(screen.contains("↪ Алиса: Где встречаемся сегодня?"), "{screen}");
    assert!(!screen.contains("🎉"), "{screen}");

    // Our message deleted from another client: `deleted`, and its state never goes
    // back (the view is older than the read receipt here).
    let mut ours = deleted(outgoing(2, ALISA, "", NOW - 29 * MINUTE, MessageState::Delivered));
    ours.reply_to = message_of(&app, 2).and_then(|m| m.reply_to.clone());
    update(&mut app, event(Event::MessageChanged { message: ours }));
    let now = message_of(&app, 2).expect("loaded");
    assert!(now.deleted && now.text.is_empty());
    assert_eq!(now.state, MessageState::Read);
    assert!(message_of(&app, 3).and_then(|m| m.reply_to.as_ref()).is_some_and(|q| q.deleted));
    let screen = screen_text(&app);
    assert!(screen.contains("you: deleted") && screen.contains("↪ you: (deleted)"), "{screen}");

    // A message not loaded (or of a conversation not listed) changes nothing.
    let before = app.conversation(ALISA).cloned();
    update(&mut app, event(Event::MessageChanged { message: incoming(500, ALISA, "elsewhere", NOW) }));
    update(&mut app, event(Event::MessageChanged { message: incoming(501, MALLORY, "stranger", NOW) }));
    assert_eq!(app.conversation(ALISA).cloned(), before);
}

#[test]
fn a_change_while_scrolled_up_keeps_the_view_on_its_message() {
    let history: Vec<MessageView> =
        (1..=60).map(|n| incoming(n, ALISA, &format!("m{n}"), NOW - (70 - n) * MINUTE)).collect();
    let mut app = open_with(config(), history);
    update(&mut app, key(KeyCode::PageUp));
    let scroll = app.focused().map(|c| c.scroll.clone());
    let Some(Scroll::At { lamport, .. }) = scroll.clone() else { panic!("scrolled up: {scroll:?}") };
    // The pane's two bottom rows (the pane is rows 1 to 24 of the screen).
    let bottom = |app: &App| screen_text(app).lines().skip(23).take(2).collect::<Vec<_>>().join("\n");
    let before = bottom(&app);
    assert!(before.contains(&format!("Алиса: m{lamport}")), "{before}");
    // A quote, an edit to a long text and a reaction grow the message two above the
    // pane's bottom row by many rows: the rows above move up, the bottom ones stay.
    let n = lamport - 2;
    let mut grown =
        reacted(incoming(n, ALISA, "much longer now ".repeat(12).trim(), NOW - (70 - n) * MINUTE), &[("👍", &[ME])]);
    grown = replying(edited(grown, &format!("m{n}")), 1, Some(ALISA), "m1", false);
    update(&mut app, event(Event::MessageChanged { message: grown }));
    assert_eq!(app.focused().map(|c| c.scroll.clone()), scroll);
    assert_eq!(bottom(&app), before, "the pane's bottom rows stay");
    assert!(screen_text(&app).contains("👍 1"), "{}", screen_text(&app));
}

// ---- the in-memory node ------------------------------------------------------------------

/// Answers the change requests as the node does: an edit replaces the text and
/// marks the message edited, a reaction toggles ours, a delete for everyone empties
/// it, one for us hides it. Only the author may edit or delete for everyone.
struct Node {
    messages: Vec<MessageView>,
}

impl Node {
    fn answer(&mut self, effect: &Effect) -> Action {
        let refuse = |error: &str| Action::Failed { effect: effect.clone(), error: error.to_owned() };
        let (id, own) = match effect {
            Effect::Edit { id, .. } | Effect::Delete { id, for_everyone: true } => (id, true),
            Effect::Delete { id, .. } | Effect::React { id, .. } => (id, false),
            other => panic!("not a change: {other:?}"),
        };
        let Some(at) = self.messages.iter().position(|m| m.id == *id) else { return refuse("no such message") };
        let m = &mut self.messages[at];
        if own && m.author != ME {
            return refuse("only its author can edit a message");
        }
        match effect {
            Effect::Edit { text, .. } => {
                let original = std::mem::replace(&mut m.text, text.clone());
                *m = edited(m.clone(), &original);
            }
            Effect::Delete { for_everyone: true, .. } => *m = deleted(m.clone()),
            Effect::Delete { id, .. } => {
                self.messages.remove(at);
                return Action::Done(Response::Hidden { id: id.clone() });
            }
            Effect::React { emoji, .. } => {
                let mut reactions: Vec<(String, Vec<String>)> =
                    m.reactions.iter().map(|r| (r.emoji.clone(), r.by.clone())).collect();
                match reactions.iter_mut().find(|(e, _)| e == emoji) {
                    Some((_, by)) if by.iter().any(|p| p == ME) => by.retain(|p| p != ME),
                    Some((_, by)) => by.push(ME.to_owned()),
                    None => reactions.push((emoji.clone(), vec![ME.to_owned()])),
                }
                reactions.retain(|(_, by)| !by.is_empty());
                m.reactions =
                    reactions.into_iter().map(|(emoji, by)| ReactionView { emoji, count: by.len(), by }).collect();
            }
            _ => {}
        }
        Action::Done(Response::Changed(self.messages[at].clone()))
    }

    /// Perform the change requests among `fx` and feed their answers back.
    fn settle(&mut self, app: &mut App, fx: Vec<Effect>) {
        for effect in fx {
            if matches!(effect, Effect::Edit { .. } | Effect::Delete { .. } | Effect::React { .. }) {
                let answer = self.answer(&effect);
                let more = update(app, answer);
                self.settle(app, more);
            }
        }
    }
}

fn changes(fx: &[Effect]) -> Vec<&Effect> {
    fx.iter()
        .filter(|e| {
            matches!(e, Effect::Send { .. } | Effect::Edit { .. } | Effect::Delete { .. } | Effect::React { .. })
        })
        .collect()
}

fn ctrl_key(code: KeyCode) -> Action {
    with(code, KeyModifiers::CONTROL)
}

// ---- the commands ----------------------------------------------------------------------

#[test]
fn reply_to_the_selected_message_shows_a_bar_and_sends_with_reply_to() {
    let mut app = open_with(config(), thread());
    // Ctrl+Up selects the message on the pane's bottom row (the newest), then older.
    update(&mut app, ctrl_key(KeyCode::Up));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), Some(id(7)));
    for _ in 0..4 {
        update(&mut app, ctrl_key(KeyCode::Up));
    }
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), Some(id(3)));
    let (_, bg, _) = cells(&app, "Отлично", 0)[0];
    assert_eq!(bg, Color::Indexed(236), "drawn selected");
    assert!(command(&mut app, "/reply").is_empty());
    assert!(matches!(compose(&app), Some(Compose::Reply(q)) if q.id == id(3)));
    let screen = screen_text(&app);
    assert!(screen.contains("↪ replying to Алиса: Отлично 👌") && screen.contains("Reply to Алиса"), "{screen}");
    insta::assert_snapshot!("reply_bar", screen);
    // The bar goes before the messages get too few rows; any size draws.
    let tiny = text_of(&draw(&app, 30, 5));
    assert!(!tiny.contains("replying to"), "{tiny}");
    for (w, h) in [(0, 0), (1, 1), (8, 2), (16, 5), (20, 6), (40, 16)] {
        draw(&app, w, h);
    }
    // Esc ends the reply; what was typed stays.
    type_text(&mut app, "draft");
    update(&mut app, key(KeyCode::Esc));
    assert_eq!((compose(&app), app.input().text()), (None, "draft"));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), Some(id(3)), "one Esc at a time");
    // Ctrl+R: a reply to the selected message again; Enter sends it with reply_to.
    update(&mut app, ctrl('r'));
    type_text(&mut app, " ok");
    let fx = update(&mut app, key(KeyCode::Enter));
    let send = Effect::Send { contact: ALISA.into(), text: "draft ok".into(), reply_to: Some(id(3)) };
    assert_eq!(changes(&fx), [&send]);
    assert_eq!(compose(&app), None);
    let conv = app.focused().expect("focused");
    assert_eq!((conv.selected.clone(), conv.scroll.clone()), (None, Scroll::Bottom), "back to the newest");
    // The node's answer arrives as any sent message, quote and all.
    let sent =
        replying(outgoing(8, ALISA, "draft ok", NOW, MessageState::Pending), 3, Some(ALISA), "Отлично 👌", false);
    update(&mut app, Action::Done(Response::Sent(sent)));
    assert!(screen_text(&app).contains("↪ Алиса: Отлично 👌"), "{}", screen_text(&app));
}

#[test]
fn with_nothing_selected_commands_act_on_the_newest_message_in_view_and_say_why_not() {
    let mut app = open_with(config(), thread());
    // /reply with text sends at once, to the newest message.
    let fx = command(&mut app, "/reply да\nконечно");
    let send = Effect::Send { contact: ALISA.into(), text: "да\nконечно".into(), reply_to: Some(id(7)) };
    assert_eq!(changes(&fx), [&send]);
    // /react: the newest too; the reaction toggles with the node's answer.
    let mut node = Node { messages: thread() };
    let fx = command(&mut app, "/react 🎉");
    assert_eq!(changes(&fx), [&Effect::React { id: id(7), emoji: "🎉".into() }]);
    node.settle(&mut app, fx);
    assert!(screen_text(&app).contains("🎉 1"), "{}", screen_text(&app));
    assert!(cells(&app, "🎉", 1)[0].2.contains(Modifier::BOLD), "ours (the first is Алиса's on message 1)");
    let fx = command(&mut app, "/react 🎉");
    node.settle(&mut app, fx);
    assert!(message_of(&app, 7).is_some_and(|m| m.reactions.iter().all(|r| r.emoji != "🎉")), "taken back");
    // /edit and /delete-all: our newest message in view (not Алиса's newer ones).
    let fx = command(&mut app, "/edit");
    assert!(changes(&fx).is_empty());
    assert!(matches!(compose(&app), Some(Compose::Edit { quote, .. }) if quote.id == id(6)));
    update(&mut app, key(KeyCode::Esc));
    // A deleted message is skipped: nothing is newer than message 4 but message 3.
    let mut app = open_with(config(), thread()[..4].to_vec());
    let fx = command(&mut app, "/react 👍");
    assert_eq!(changes(&fx), [&Effect::React { id: id(3), emoji: "👍".into() }]);
    // No conversation open: said in the status line.
    let mut empty = App::new(config());
    assert!(command(&mut empty, "/edit").is_empty());
    assert!(status_text(&empty).contains("nothing to edit: no conversation open"), "{}", status_text(&empty));
}

#[test]
fn edit_loads_our_text_and_enter_sends_the_edit() {
    let mut app = open_with(config(), thread());
    let mut node = Node { messages: thread() };
    // Ctrl+Up twice from the bottom: message 6, ours.
    update(&mut app, ctrl_key(KeyCode::Up));
    update(&mut app, ctrl_key(KeyCode::Up));
    command(&mut app, "/edit");
    assert_eq!(app.input().text(), "про старое");
    let screen = screen_text(&app);
    assert!(screen.contains("✎ editing: про старое") && screen.contains("Edit your message"), "{screen}");
    // Unchanged: nothing to send. A leading `/` is text during an edit.
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(changes(&fx).is_empty() && status_text(&app).contains("nothing changed"), "{fx:?}");
    command(&mut app, "/edit");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/me про новое");
    let fx = update(&mut app, key(KeyCode::Enter));
    let edit = Effect::Edit { contact: ALISA.into(), id: id(6), text: "/me про новое".into() };
    assert_eq!(changes(&fx), [&edit]);
    assert_eq!((compose(&app), app.input().text()), (None, ""));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), None);
    node.settle(&mut app, fx);
    assert!(screen_text(&app).contains("/me про новое (edited)"), "{}", screen_text(&app));
    // `/edit text` edits at once.
    let fx = command(&mut app, "/edit про самое новое");
    assert_eq!(changes(&fx), [&Effect::Edit { contact: ALISA.into(), id: id(6), text: "про самое новое".into() }]);
    // An empty edit is refused here: deleting is /delete-all.
    command(&mut app, "/edit");
    update(&mut app, ctrl('u'));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(changes(&fx).is_empty() && status_text(&app).contains("/delete-all"), "{}", status_text(&app));
    // Esc gives the input back as it was before the edit.
    update(&mut app, key(KeyCode::Esc));
    assert_eq!((compose(&app), app.input().text()), (None, ""));
}

#[test]
fn edit_and_delete_for_everyone_are_for_our_own_messages_only() {
    let mut app = open_with(config(), thread());
    update(&mut app, ctrl_key(KeyCode::Up));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), Some(id(7)), "Алиса's");
    for line in ["/edit", "/delete-all"] {
        assert!(command(&mut app, line).is_empty(), "{line}");
        assert!(status_text(&app).contains("only your own messages can be"), "{}", status_text(&app));
        assert_eq!(app.overlay(), None);
        assert_eq!(app.input().text(), "");
    }
    // The node refuses too (another client, a race): said in the status line, and
    // the text comes back as an edit to send again.
    let refused = Effect::Edit { contact: ALISA.into(), id: id(7), text: "mine now".into() };
    update(&mut app, Action::Failed { effect: refused, error: "only its author can edit a message".into() });
    assert_eq!(status_text(&app), "not edited: only its author can edit a message");
    assert_eq!(app.input().text(), "mine now");
    assert!(matches!(compose(&app), Some(Compose::Edit { quote, .. }) if quote.id == id(7)));
    update(&mut app, key(KeyCode::Esc));
    update(
        &mut app,
        Action::Failed {
            effect: Effect::React { id: id(4), emoji: "👍".into() },
            error: "that message was deleted".into(),
        },
    );
    assert_eq!(status_text(&app), "no reaction: that message was deleted");
}

#[test]
fn delete_hides_here_and_delete_all_asks_first() {
    let mut app = open_with(config(), thread());
    let mut node = Node { messages: thread() };
    // /delete: the newest message, for us only; it leaves the window and the preview.
    let fx = command(&mut app, "/delete");
    assert_eq!(changes(&fx), [&Effect::Delete { id: id(7), for_everyone: false }]);
    node.settle(&mut app, fx);
    assert!(message_of(&app, 7).is_none());
    assert_eq!(app.conversation(ALISA).and_then(|c| c.last.as_ref()).map(|m| m.id.clone()), Some(id(6)));
    assert!(status_text(&app).contains("deleted for you"), "{}", status_text(&app));
    assert!(!screen_text(&app).contains("и ещё"));

    // /delete-all: our newest message, after a question; `n` keeps it.
    assert!(command(&mut app, "/delete-all").is_empty());
    let Some(Overlay::Confirm(confirm)) = app.overlay() else { panic!("a question: {:?}", app.overlay()) };
    assert_eq!(confirm.effect, Effect::Delete { id: id(6), for_everyone: true });
    insta::assert_snapshot!("delete_all_question", screen_text(&app));
    for typed in [KeyCode::Enter, KeyCode::Char('x')] {
        assert!(update(&mut app, key(typed)).is_empty(), "only y deletes");
    }
    assert!(update(&mut app, key(KeyCode::Char('n'))).is_empty());
    assert_eq!(app.overlay(), None);
    command(&mut app, "/delete-all");
    let fx = update(&mut app, key(KeyCode::Char('y')));
    assert_eq!(changes(&fx), [&Effect::Delete { id: id(6), for_everyone: true }]);
    assert_eq!(app.overlay(), None);
    node.settle(&mut app, fx);
    assert!(message_of(&app, 6).is_some_and(|m| m.deleted));
    assert_eq!(status_text(&app), "deleted for everyone");
    assert!(screen_text(&app).contains("you: deleted"), "{}", screen_text(&app));
    // The deleted message is no longer one to edit: /edit finds ours before it.
    command(&mut app, "/edit");
    assert!(matches!(compose(&app), Some(Compose::Edit { quote, .. }) if quote.id == id(2)));
}

#[test]
fn a_failed_reply_comes_back_with_its_bar() {
    let mut app = open_with(config(), thread());
    command(&mut app, "/reply");
    type_text(&mut app, "где?");
    let fx = update(&mut app, key(KeyCode::Enter));
    let [send] = changes(&fx)[..] else { panic!("{fx:?}") };
    update(&mut app, Action::Failed { effect: send.clone(), error: "not connected to the node".into() });
    assert_eq!(app.input().text(), "где?");
    assert!(matches!(compose(&app), Some(Compose::Reply(q)) if q.id == id(7)));
}

#[test]
fn leaving_ends_an_edit_and_keeps_a_reply_and_drafts_are_never_the_edit() {
    let mut app = open_with(config(), thread());
    // The node's drafts were taken in: drafts are saved from now on.
    let alisa = ConversationView {
        conversation: "a".repeat(32),
        peer: Some(ALISA.into()),
        group: None,
        unread: 0,
        muted: false,
        muted_until: None,
        draft: None,
    };
    update(&mut app, Action::Done(Response::Conversations(vec![alisa])));
    command(&mut app, "/edit");
    update(&mut app, key(KeyCode::End));
    type_text(&mut app, "!!!");
    let saved = |fx: &[Effect]| fx.iter().any(|e| matches!(e, Effect::SaveDraft { text, .. } if text.contains("!!!")));
    assert!(!saved(&update(&mut app, Action::Tick)), "an edit is not a draft");
    // Leaving ends the edit: the input is as before it, nothing kept of the edit.
    let fx = update(&mut app, ctrl('n'));
    assert!(!saved(&fx), "{fx:?}");
    assert_eq!(app.focused_id(), Some(BOB));
    assert_eq!(app.draft(ALISA), None);
    assert_eq!(app.conversation(ALISA).and_then(|c| c.compose.clone()), None);
    // A reply stays with its conversation, and the bar comes back with it.
    update(&mut app, ctrl('p'));
    update(&mut app, ctrl('r'));
    type_text(&mut app, "ответ");
    update(&mut app, ctrl('n'));
    assert!(!screen_text(&app).contains("replying to"));
    update(&mut app, ctrl('p'));
    assert_eq!(app.input().text(), "ответ");
    assert!(screen_text(&app).contains("↪ replying to Алиса: и ещё"), "{}", screen_text(&app));
}

#[test]
fn ctrl_down_past_the_newest_unselects_and_esc_unselects() {
    let mut app = open_with(config(), thread());
    update(&mut app, ctrl_key(KeyCode::Up));
    update(&mut app, ctrl_key(KeyCode::Up));
    update(&mut app, ctrl_key(KeyCode::Down));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), Some(id(7)));
    update(&mut app, ctrl_key(KeyCode::Down));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), None);
    assert!(update(&mut app, ctrl_key(KeyCode::Down)).is_empty(), "nothing selected: nothing to move");
    update(&mut app, ctrl_key(KeyCode::Up));
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.focused().and_then(|c| c.selected.clone()), None);
}

#[test]
fn help_and_completion_know_the_message_commands() {
    let mut app = open_with(config(), thread());
    update(&mut app, key(KeyCode::F(1)));
    let mut help = screen_text(&app);
    for _ in 0..6 {
        update(&mut app, key(KeyCode::PageDown));
        help.push_str(&screen_text(&app));
    }
    for needle in
        ["Ctrl+Up, Ctrl+Down", "Ctrl+R", "/reply [text]", "/edit [text]", "/delete ", "/delete-all", "/react <emoji>"]
    {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    update(&mut app, key(KeyCode::Esc));
    type_text(&mut app, "/delete-");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/delete-all ");
    // `/delete` is no longer `/remove`: it never takes a contact.
    update(&mut app, ctrl('u'));
    assert!(command(&mut app, "/delete Алиса").is_empty());
    assert!(status_text(&app).starts_with("usage: /delete"), "{}", status_text(&app));
    assert!(app.conversation(ALISA).is_some());
}

#[test]
fn messages_of_ours_and_theirs_quote_with_names_in_a_group() {
    let mut messages = book_club_history();
    let carol = group_message(306, CAROL, "see you", NOW - 3 * MINUTE);
    messages.push(replying(carol, 302, Some(BOB), "almost, 50 pages left", false));
    let bob = group_message(307, BOB, "👍", NOW - 2 * MINUTE);
    messages.push(replying(bob, 304, Some(ME), "Friday works for me", false));
    let mut app = group_open(config(), messages);
    let screen = screen_text(&app);
    assert!(screen.contains("↪ Bob 🎸: almost, 50 pages left"), "{screen}");
    assert!(screen.contains("↪ you: Friday works for me"), "{screen}");
    // Replying names the author as the group does.
    update(&mut app, ctrl_key(KeyCode::Up));
    update(&mut app, ctrl_key(KeyCode::Up));
    update(&mut app, ctrl('r'));
    assert!(screen_text(&app).contains("replying to …Caro0006: see you"), "{}", screen_text(&app));
    let fx = command(&mut app, "hi");
    assert!(fx.contains(&Effect::Send { contact: GROUP.into(), text: "hi".into(), reply_to: Some(id(306)) }));
}
