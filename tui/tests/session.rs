//! The interface over a session's ups and downs (issue 14): losing the node and
//! getting it back, the log of notices and errors, and the contact commands that
//! complete the CLI's set. Driven like `keys.rs`: actions in, state and effects out.

mod common;

use std::time::Duration;

use common::*;
use crossterm::event::KeyCode;
use kith_p2p::kith_storage::ContactState;
use kith_p2p::node::Event;
use kith_tui::app::{NodeState, Overlay, PAGE};
use kith_tui::{Action, App, Config, Effect, Response, update};

/// The status bar: the screen's last row.
fn status_bar(app: &App) -> String {
    text_of(&draw(app, 100, 30)).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn a_lost_node_is_retried_and_everything_reloaded_when_it_is_back() {
    let mut app = scene(config());
    assert!(app.is_online(ALISA));
    let logged = app.log().len();
    let lost = |error: &str, ms| Action::Disconnected { error: error.into(), retry_in: Some(Duration::from_millis(ms)) };
    update(&mut app, lost("Broken pipe (os error 32)", 250));
    assert_eq!(
        app.node(),
        &NodeState::Disconnected { error: "Broken pipe (os error 32)".into(), retry_in_secs: Some(1) }
    );
    assert!(!app.is_online(ALISA), "without the node nobody is known to be online");
    assert!(status_bar(&app).contains("✗ disconnected · reconnecting in 1 s…"), "{}", status_bar(&app));
    assert!(status_text(&app).contains("lost the connection to the node: Broken pipe"));
    update(&mut app, Action::Tick);
    assert!(status_bar(&app).contains("✗ disconnected · reconnecting…"), "{}", status_bar(&app));

    // Failed attempts: a new reason is said once, the same one again is not.
    let no_node = "no kith node is running (start one with `kith daemon`)";
    update(&mut app, lost(no_node, 2_000));
    update(&mut app, lost(no_node, 4_000));
    assert!(status_bar(&app).contains("reconnecting in 4 s…"), "{}", status_bar(&app));
    assert_eq!(app.log().len(), logged + 2, "{:?}", app.log());
    // Reads failing meanwhile go to the log only; the status line keeps saying why.
    let said = status_text(&app);
    update(&mut app, Action::Failed { effect: Effect::LoadStatus, error: "not connected".into() });
    assert_eq!(status_text(&app), said);
    assert_eq!(app.log().len(), logged + 3);
    // What the user asked for still says it failed.
    update(&mut app, Action::Failed { effect: Effect::Invite, error: "not connected".into() });
    assert!(status_text(&app).starts_with("creating an invite"), "{}", status_text(&app));

    // Back: connected, and the list, the status, the groups and the open
    // conversation are read again.
    let fx = update(&mut app, Action::Reconnected);
    assert_eq!(app.node(), &NodeState::Connected);
    for wanted in [
        Effect::Refresh,
        Effect::LoadStatus,
        Effect::LoadGroups,
        Effect::LoadHistory { contact: ALISA.into(), before: None, limit: PAGE },
    ] {
        assert!(fx.contains(&wanted), "{wanted:?} not in {fx:?}");
    }
    assert!(status_text(&app).contains("connected to the node again"));
    assert!(status_bar(&app).starts_with(" ● connected"), "{}", status_bar(&app));
    assert!(fx.contains(&Effect::LoadPresence), "presence is asked for again: {fx:?}");
    update(&mut app, Action::Done(Response::Status(status(&[ALISA]))));
    assert!(!app.is_online(ALISA), "a connection is not presence");
    update(&mut app, Action::Done(Response::Presence(vec![presence(ALISA, true, Some(NOW))])));
    assert!(app.is_online(ALISA));
}

#[test]
fn nobody_online_is_not_shown_as_zero() {
    let mut app = scene(config());
    assert!(status_bar(&app).contains("● connected · 2 online"), "{}", status_bar(&app));
    for peer in [ALISA, BOB] {
        update(&mut app, event(Event::Presence { peer_id: peer.into(), online: false, last_seen: Some(NOW) }));
    }
    let bar = status_bar(&app);
    assert!(bar.starts_with(" ● connected ") && !bar.contains("online"), "{bar}");
}

#[test]
fn a_long_error_is_kept_whole_in_the_log() {
    let mut app = scene(config());
    let error = format!("relay said: {} the end", "a very long explanation, ".repeat(8));
    update(&mut app, Action::Failed { effect: Effect::Invite, error: error.clone() });
    let bar = status_bar(&app);
    assert!(!bar.contains("the end") && bar.trim_end().ends_with("F2 log"), "cut, pointing at the log: {bar}");
    update(&mut app, key(KeyCode::F(2)));
    assert_eq!(app.overlay(), Some(&Overlay::Log { scroll: 0 }));
    let screen = text_of(&draw(&app, 100, 30));
    assert!(screen.contains("the end"), "the whole error is in the log:\n{screen}");
    insta::assert_snapshot!("log_overlay", screen);
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.overlay(), None);
    // Once the runtime told the time, entries carry it (the scene's zone is UTC).
    update(&mut app, Action::Clock { unix_ms: NOW });
    update(&mut app, Action::Failed { effect: Effect::Invite, error: "later".into() });
    assert_eq!(app.log().back().and_then(|e| e.at), Some(NOW));
    update(&mut app, key(KeyCode::F(2)));
    assert!(text_of(&draw(&app, 100, 30)).contains("10:42 ✗ creating an invite: later"));
    update(&mut app, key(KeyCode::Esc));
    // `/log` opens it too.
    command(&mut app, "/log");
    assert_eq!(app.overlay(), Some(&Overlay::Log { scroll: 0 }));
}

#[test]
fn the_log_scrolls_and_stays_bounded() {
    let mut app = scene(config());
    for n in 0..kith_tui::app::LOG_CAPACITY + 10 {
        update(&mut app, Action::Failed { effect: Effect::Invite, error: format!("failure {n}") });
    }
    assert_eq!(app.log().len(), kith_tui::app::LOG_CAPACITY);
    assert!(app.log().back().is_some_and(|e| e.text.ends_with("failure 509") && e.error));
    update(&mut app, key(KeyCode::F(2)));
    assert!(text_of(&draw(&app, 100, 30)).contains("failure 509"));
    update(&mut app, key(KeyCode::PageUp));
    // Without the status bar, which says the latest.
    let screen = text_of(&draw(&app, 100, 30)).lines().take(29).collect::<Vec<_>>().join("\n");
    assert!(!screen.contains("failure 509") && screen.contains("failure 470"), "{screen}");
    update(&mut app, key(KeyCode::End));
    assert!(text_of(&draw(&app, 100, 30)).contains("failure 509"));
    // Home shows the oldest kept; one Down from there shows one newer line.
    update(&mut app, key(KeyCode::Home));
    let top = text_of(&draw(&app, 100, 30));
    assert!(top.contains("failure 10\n") || top.contains("failure 10 "), "{top}");
    update(&mut app, key(KeyCode::Down));
    let screen = text_of(&draw(&app, 100, 30));
    assert!(!screen.contains("failure 10 ") && screen.contains("failure 11 "), "{screen}");
    update(&mut app, key(KeyCode::F(2)));
    assert_eq!(app.overlay(), None, "F2 closes it again");
}

#[test]
fn contact_commands_rename_unblock_remove_and_status() {
    let mut app = scene(config());
    // `/rename` names the open contact.
    let fx = command(&mut app, "/rename Алиса Петровна");
    assert_eq!(fx, vec![Effect::Rename { contact: ALISA.into(), alias: "Алиса Петровна".into() }]);
    update(&mut app, Action::Done(Response::Renamed(contact(ALISA, "Алиса Петровна", ContactState::Accepted))));
    assert_eq!(app.conversation(ALISA).map(|c| c.label().to_owned()), Some("Алиса Петровна".into()));
    assert_eq!(status_text(&app), "renamed to Алиса Петровна");
    // `/unblock` needs a name: blocked contacts are not listed.
    assert!(command(&mut app, "/unblock").is_empty());
    assert!(status_text(&app).starts_with("usage: /unblock"));
    let eve = "12D3KooWEveEveEveEveEveEveEveEveEveEveEveEveEveEveE0006";
    assert_eq!(command(&mut app, "/unblock eve"), vec![Effect::Unblock { contact: "eve".into() }]);
    update(&mut app, Action::Done(Response::Unblocked(contact(eve, "eve", ContactState::Accepted))));
    assert!(app.conversation(eve).is_some());
    assert_eq!(status_text(&app), "unblocked eve");
    // `/remove` removes the open contact (or the named one).
    assert_eq!(command(&mut app, "/remove eve"), vec![Effect::Remove { contact: "eve".into() }]);
    update(&mut app, Action::Done(Response::ContactRemoved { peer_id: eve.into() }));
    assert!(app.conversation(eve).is_none());
    assert_eq!(status_text(&app), "removed eve and your conversation");
    assert_eq!(command(&mut app, "/remove"), vec![Effect::Remove { contact: ALISA.into() }]);
    // `/status` reads the node's status and shows it in the log.
    assert_eq!(command(&mut app, "/status"), vec![Effect::ShowStatus]);
    update(&mut app, Action::Done(Response::StatusReport(status(&[BOB]))));
    assert_eq!(app.overlay(), Some(&Overlay::Log { scroll: 0 }));
    let screen = text_of(&draw(&app, 100, 30));
    assert!(screen.contains(&format!("status: you are {ME}")), "{screen}");
    assert!(screen.contains("connected: Bob 🎸 (3 in the routing table)"), "{screen}");
}

#[test]
fn tab_completes_commands_and_names_and_cycles() {
    let mut app = scene(config());
    type_text(&mut app, "/unb");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/unblock ");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/unblock ", "one candidate: Tab again keeps it");
    update(&mut app, ctrl('u'));
    // Commands: Tab again cycles, Shift+Tab goes back, both wrapping around.
    type_text(&mut app, "/re");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/react ");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/read ");
    update(&mut app, key(KeyCode::BackTab));
    update(&mut app, key(KeyCode::BackTab));
    assert_eq!(app.input().text(), "/reply ", "Shift+Tab before the first wraps to the last");
    update(&mut app, ctrl('u'));
    // Names: contacts in list order, cycled the same way.
    type_text(&mut app, "/block b");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/block Bob 🎸 ");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/block ");
    update(&mut app, key(KeyCode::BackTab));
    assert_eq!(app.input().text(), "/block ", "no word: nothing to complete");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/accept ");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/accept ", "no word: nothing to complete");
    update(&mut app, ctrl('u'));
    // A name that starts a message addresses its person.
    type_text(&mut app, "ал");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "Алиса: ");
    // Tab no longer switches conversations.
    assert_eq!(app.focused_id(), Some(ALISA));
}

#[test]
fn tab_completes_a_groups_members() {
    let mut app = group_scene(config());
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "/group r");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/group remove ");
    // Members complete too: Bob by the node's label, Carol (not a contact) by her short id.
    type_text(&mut app, "b");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/group remove Bob 🎸 ");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/group remove …");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "/group remove …Caro0006 ");
}

#[test]
fn each_conversation_keeps_its_own_draft() {
    let mut app = scene(config());
    type_text(&mut app, "half a thought for Алиса");
    update(&mut app, ctrl('n'));
    assert_eq!(app.focused_id(), Some(WANG));
    assert!(app.input().is_empty(), "王小明's input is empty");
    assert_eq!(app.draft(ALISA).map(|d| d.text().to_owned()), Some("half a thought for Алиса".into()));
    type_text(&mut app, "你好");
    update(&mut app, ctrl('p'));
    assert_eq!(app.input().text(), "half a thought for Алиса");
    update(&mut app, with(KeyCode::Down, crossterm::event::KeyModifiers::ALT));
    assert_eq!(app.input().text(), "你好");
    // A message that fails to send while another conversation is open goes back to
    // its own conversation's draft.
    update(&mut app, ctrl('u'));
    let fx = command(&mut app, "to 王小明");
    let effect = fx.into_iter().next().expect("send");
    update(&mut app, ctrl('p'));
    update(&mut app, Action::Failed { effect, error: "too long".into() });
    assert_eq!(app.input().text(), "half a thought for Алиса");
    assert_eq!(app.draft(WANG).map(|d| d.text().to_owned()), Some("to 王小明".into()));
}

/// The group scene with the Book club open and its history loaded.
fn book_club_open() -> App {
    let mut app = group_scene(config());
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    update(&mut app, key(KeyCode::Enter));
    let messages = book_club_history();
    update(&mut app, Action::Done(Response::History { contact: GROUP.into(), before: None, limit: 50, messages }));
    assert_eq!(app.focused_id(), Some(GROUP));
    app
}

#[test]
fn membership_changes_show_in_the_timeline() {
    let mut app = book_club_open();
    let dave = "12D3KooWDaveDaveDaveDaveDaveDaveDaveDaveDaveDaveDave0007";
    let mut group = book_club(true);
    group.members.retain(|m| m.peer_id != CAROL);
    group.members.push(kith_p2p::views::MemberView {
        peer_id: dave.into(),
        role: kith_p2p::kith_storage::Role::Member,
        label: Some("Dave".into()),
    });
    group.version += 1;
    update(&mut app, event(kith_p2p::node::Event::GroupChanged { group: group.clone() }));
    // Our own change comes back as an answer too: said once.
    let op = kith_tui::GroupChange::Add { group: GROUP.into(), contact: dave.into() };
    update(&mut app, Action::Done(Response::GroupUpdated { op, group }));
    let screen = text_of(&draw(&app, 100, 30));
    let rows: Vec<&str> = screen.lines().collect();
    let newest = rows.iter().position(|r| r.contains("Алиса: Договорились 👍")).expect("newest message shown");
    assert!(rows[newest + 1].contains("Dave joined #Book club"), "{screen}");
    assert!(rows[newest + 2].contains("…Caro0006 is no longer in #Book club"), "{screen}");
    assert_eq!(screen.matches("Dave joined").count(), 1, "{screen}");
    // A message after them goes below.
    let message = group_message(306, dave, "hi all", NOW);
    update(&mut app, event(kith_p2p::node::Event::MessageReceived { message }));
    let screen = text_of(&draw(&app, 100, 30));
    let joined = screen.find("Dave joined").expect("notice");
    assert!(screen.rfind("Dave: hi all").is_some_and(|at| at > joined), "{screen}");
}

#[test]
fn groups_are_marked_alike_and_counted_in_the_singular() {
    let mut app = group_scene(config());
    update(&mut app, ctrl('k'));
    type_text(&mut app, "book");
    let screen = text_of(&draw(&app, 100, 30));
    assert!(screen.contains("▌# Book club"), "the switcher marks the group as the list does:\n{screen}");
    update(&mut app, key(KeyCode::Enter));
    let mut group = book_club(true);
    group.members.truncate(1);
    update(&mut app, Action::Done(Response::Groups(vec![group])));
    let screen = text_of(&draw(&app, 100, 30));
    assert!(screen.contains("#Book club 1 member ") && !screen.contains("1 members"), "{screen}");
}

#[test]
fn tab_completes_paths_from_a_listing_made_off_the_loop() {
    let mut app = scene(config());
    type_text(&mut app, "it is in ~/no");
    let fx = update(&mut app, key(KeyCode::Tab));
    assert_eq!(fx, vec![Effect::ListPaths { word: "~/no".into() }], "update never reads the disk itself");
    let candidates = vec!["~/notes/".to_owned(), "~/notes.txt ".to_owned()];
    update(&mut app, Action::Done(Response::Paths { word: "~/no".into(), candidates: candidates.clone() }));
    assert_eq!(app.input().text(), "it is in ~/notes/");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input().text(), "it is in ~/notes.txt ", "Tab again cycles, without listing again");
    // An answer that comes after more typing is dropped.
    update(&mut app, ctrl('u'));
    type_text(&mut app, "cat ./x");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "y");
    update(&mut app, Action::Done(Response::Paths { word: "./x".into(), candidates: vec!["./xz ".into()] }));
    assert_eq!(app.input().text(), "cat ./xy");
    // A listing given up on (a hung file system) ends its completion and says so;
    // a failure for an older word leaves the newer completion waiting.
    update(&mut app, key(KeyCode::Tab));
    let gave_up = |word: &str| Action::Failed {
        effect: Effect::ListPaths { word: word.into() },
        error: "the directory did not list within 3 s".into(),
    };
    update(&mut app, gave_up("./x"));
    update(&mut app, Action::Done(Response::Paths { word: "./xy".into(), candidates: vec!["./xyz ".into()] }));
    assert_eq!(app.input().text(), "cat ./xyz ");
    update(&mut app, key(KeyCode::Backspace));
    update(&mut app, key(KeyCode::Char('/')));
    assert_eq!(update(&mut app, key(KeyCode::Tab)), vec![Effect::ListPaths { word: "./xyz/".into() }]);
    update(&mut app, gave_up("./xyz/"));
    assert!(status_text(&app).contains("did not list within 3 s"), "{}", status_text(&app));
    update(&mut app, Action::Done(Response::Paths { word: "./xyz/".into(), candidates: vec!["./xyz/a ".into()] }));
    assert_eq!(app.input().text(), "cat ./xyz/", "the completion ended");
}

/// What `/…` or a message typed in `app` asks for, with Enter.
fn send(app: &mut App, text: &str) -> Effect {
    let fx = command(app, text);
    fx.into_iter().find(|e| matches!(e, Effect::Send { .. })).expect("a send")
}

#[test]
fn a_failed_message_is_added_to_what_was_typed_since() {
    let mut app = scene(config());
    let first = send(&mut app, "first");
    let second = send(&mut app, "second");
    // The failures come late: more was typed meanwhile.
    type_text(&mut app, "typing on");
    update(&mut app, Action::Failed { effect: first, error: "refused".into() });
    update(&mut app, Action::Failed { effect: second, error: "refused".into() });
    assert_eq!(app.input().text(), "typing on\nfirst\nsecond", "nothing typed or failed is lost");
    // The cursor stays where the user was typing.
    assert_eq!(app.input().cursor(), "typing on".len());
    // The same for a conversation not in view: its draft keeps them all.
    update(&mut app, ctrl('n'));
    for text in ["third", "fourth"] {
        let effect = Effect::Send { contact: ALISA.into(), text: text.into(), reply_to: None };
        update(&mut app, Action::Failed { effect, error: "refused".into() });
    }
    let draft = app.draft(ALISA).map(|d| d.text().to_owned());
    assert_eq!(draft.as_deref(), Some("typing on\nfirst\nsecond\nthird\nfourth"));
    assert!(app.input().is_empty(), "王小明's input is not touched");
}

#[test]
fn a_message_in_flight_when_the_connection_broke_is_not_given_back() {
    let mut app = scene(config());
    let effect = send(&mut app, "maybe sent");
    update(&mut app, Action::Disconnected { error: "Broken pipe".into(), retry_in: Some(Duration::from_millis(250)) });
    update(&mut app, Action::Interrupted { effect, error: "lost the connection to the node: Broken pipe".into() });
    assert!(app.input().is_empty(), "giving it back could send it twice: {:?}", app.input().text());
    assert!(status_text(&app).contains("may have been sent"), "{}", status_text(&app));
    // The input history has it.
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input().text(), "maybe sent");
    // The reload after reconnecting shows whether the node has it.
    let fx = update(&mut app, Action::Reconnected);
    assert!(fx.contains(&Effect::LoadHistory { contact: ALISA.into(), before: None, limit: PAGE }), "{fx:?}");
}

#[test]
fn a_message_too_long_for_the_node_stays_in_the_input() {
    let mut app = scene(config());
    let long = "я".repeat(kith_p2p::payload::MAX_TEXT_LEN / 2 + 1);
    update(&mut app, Action::Paste(long.clone()));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(fx.is_empty(), "{:?}", fx.len());
    assert_eq!(app.input().text(), long);
    assert!(status_text(&app).starts_with("too long to send: 65 KiB"), "{}", status_text(&app));
    // At the limit it goes.
    update(&mut app, ctrl('u'));
    update(&mut app, Action::Paste("a".repeat(kith_p2p::payload::MAX_TEXT_LEN)));
    assert!(matches!(update(&mut app, key(KeyCode::Enter)).as_slice(), [Effect::Send { .. }]));
}

#[test]
fn what_was_typed_for_a_removed_conversation_does_not_move_to_the_next() {
    // Every way a conversation leaves the list.
    let without_alisa = |app: &mut App| {
        let contacts =
            vec![contact(WANG, "王小明", ContactState::Accepted), contact(BOB, "Bob 🎸", ContactState::Accepted)];
        update(app, Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox: Vec::new() }));
    };
    let blocked = |app: &mut App| {
        let contact = contact(ALISA, "Алиса", ContactState::Blocked);
        update(app, event(kith_p2p::node::Event::ContactChanged { contact }));
    };
    let rejected = |app: &mut App| {
        update(app, Action::Done(Response::Removed { peer_id: ALISA.into() }));
    };
    let removed = |app: &mut App| {
        update(app, Action::Done(Response::ContactRemoved { peer_id: ALISA.into() }));
    };
    type Remove = fn(&mut App);
    let ways: [(&str, Remove); 4] =
        [("snapshot", without_alisa), ("blocked", blocked), ("rejected", rejected), ("removed", removed)];
    for (how, remove) in ways {
        let mut app = scene(config());
        type_text(&mut app, "for Алиса only");
        remove(&mut app);
        assert!(app.conversation(ALISA).is_none(), "{how}");
        assert_ne!(app.focused_id(), Some(ALISA), "{how}");
        assert!(app.input().is_empty(), "{how}: {:?} moved to {:?}", app.input().text(), app.focused_id());
        // Kept in the input history.
        update(&mut app, key(KeyCode::Up));
        assert_eq!(app.input().text(), "for Алиса only", "{how}");
    }
    // A draft of a conversation not in view goes too (and does not come back if
    // the contact is added again).
    let mut app = scene(config());
    type_text(&mut app, "later");
    update(&mut app, ctrl('n'));
    assert!(app.draft(ALISA).is_some());
    removed(&mut app);
    assert!(app.draft(ALISA).is_none());
    assert_eq!(app.focused_id(), Some(WANG));
}

#[test]
fn a_declined_group_takes_what_was_typed_for_it_along() {
    let mut app = book_club_open();
    type_text(&mut app, "for the club");
    let op = kith_tui::GroupChange::Decline { group: GROUP.into() };
    update(&mut app, Action::Done(Response::GroupUpdated { op, group: book_club(false) }));
    assert!(app.conversation(GROUP).is_none());
    assert!(app.input().is_empty(), "{:?} moved to {:?}", app.input().text(), app.focused_id());
    // A groups reload without it clears it the same way.
    let mut app = book_club_open();
    type_text(&mut app, "for the club");
    update(&mut app, Action::Done(Response::Groups(Vec::new())));
    assert!(app.input().is_empty(), "{:?} moved to {:?}", app.input().text(), app.focused_id());
}

#[test]
fn an_answer_does_not_switch_away_from_a_message_being_typed() {
    let mut app = scene(config());
    let eve = "12D3KooWEveEveEveEveEveEveEveEveEveEveEveEveEveEveE0006";
    command(&mut app, "/add kith:xyz Eve");
    type_text(&mut app, "half a message to Алиса");
    update(&mut app, Action::Done(Response::Added(contact(eve, "Eve", ContactState::PendingOut))));
    assert_eq!(app.focused_id(), Some(ALISA));
    assert_eq!(app.input().text(), "half a message to Алиса");
    assert!(app.conversation(eve).is_some());
    // The same for a group just created.
    let op = kith_tui::GroupChange::Create { name: "Book club".into() };
    update(&mut app, Action::Done(Response::GroupUpdated { op: op.clone(), group: book_club(true) }));
    assert_eq!(app.focused_id(), Some(ALISA));
    assert_eq!(app.input().text(), "half a message to Алиса");
    // With nothing typed, the answer opens what was added or created.
    update(&mut app, ctrl('u'));
    update(&mut app, Action::Done(Response::GroupUpdated { op, group: book_club(true) }));
    assert_eq!(app.focused_id(), Some(GROUP));
}

#[test]
fn an_older_view_of_a_group_is_ignored() {
    let mut app = book_club_open();
    let mut newer = book_club(true);
    newer.members.retain(|m| m.peer_id != CAROL);
    newer.version += 1;
    update(&mut app, event(kith_p2p::node::Event::GroupChanged { group: newer }));
    // The answer to an earlier request arrives after the event.
    let op = kith_tui::GroupChange::Add { group: GROUP.into(), contact: CAROL.into() };
    update(&mut app, Action::Done(Response::GroupUpdated { op, group: book_club(true) }));
    let members: Vec<&str> = app
        .conversation(GROUP)
        .and_then(|c| c.group_view())
        .map(|g| g.members.iter().map(|m| m.peer_id.as_str()).collect())
        .unwrap_or_default();
    assert!(!members.contains(&CAROL), "{members:?}");
    let screen = text_of(&draw(&app, 100, 30));
    assert_eq!(screen.matches("is no longer in").count(), 1, "{screen}");
    assert!(!screen.contains("joined"), "{screen}");
}

#[test]
fn the_interface_opens_on_the_conversation_asked_for_when_it_is_listed() {
    let snapshot = || {
        let accepted = |peer, name| contact(peer, name, ContactState::Accepted);
        let contacts = vec![accepted(ALISA, "Алиса"), accepted(BOB, "Bob 🎸"), accepted(WANG, "王小明")];
        let inbox = vec![
            inbox_entry(accepted(ALISA, "Алиса"), 1, Some(incoming(1, ALISA, "newest", NOW - MINUTE))),
            inbox_entry(accepted(WANG, "王小明"), 1, Some(incoming(2, WANG, "older", NOW - 2 * MINUTE))),
        ];
        Action::Done(Response::Snapshot { contacts, requests: Vec::new(), inbox })
    };

    // Bob is the least recent, but the caller asked for him (the demo asks for its echo bot).
    let mut app = App::new(Config { open_on: Some(BOB.to_owned()), ..config() });
    let fx = update(&mut app, snapshot());
    assert_eq!(app.focused_id(), Some(BOB));
    assert!(fx.contains(&Effect::LoadHistory { contact: BOB.to_owned(), before: None, limit: 50 }), "{fx:?}");
    // Only the first time: when the open conversation goes later, the most recent
    // of the others opens, not Bob again.
    open_from_switcher(&mut app, "Алиса", ALISA);
    update(&mut app, Action::Done(Response::ContactRemoved { peer_id: ALISA.into() }));
    assert_eq!(app.focused_id(), Some(WANG));

    // Without a wish, or with one for a conversation that is not listed, the most recent opens.
    for open_on in [None, Some(MALLORY.to_owned())] {
        let mut app = App::new(Config { open_on, ..config() });
        update(&mut app, snapshot());
        assert_eq!(app.focused_id(), Some(ALISA));
    }
}
