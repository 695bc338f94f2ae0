//! User input: keys (by overlay), mouse and paste, and the slash commands they run.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use kith_p2p::kith_storage::Role;
use ratatui::layout::Position;

use super::update::{clamp_list_offset, focus, jump_to_newest, page_rows, screen, scroll_messages, switch};
use super::{App, Conversation, InviteView, Overlay, Scroll, Switcher};
use kith_p2p::node::GroupChange;

use crate::action::Effect;
use crate::commands::{self, Command, GroupCommand};
use crate::complete::{self, Completion};
use crate::ui::{layout::Areas, list, overlay};

/// Rows the mouse wheel scrolls per notch.
const WHEEL_ROWS: usize = 3;

// ---- keys ----------------------------------------------------------------------------

pub(super) fn on_key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    if key.kind == KeyEventKind::Release {
        return;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    // Any key but Tab ends a completion (Tab and Shift+Tab cycle it).
    let completing = app.completion.take().filter(|_| matches!(key.code, KeyCode::Tab | KeyCode::BackTab));
    app.pending_paths = None;
    match key.code {
        KeyCode::Char('c' | 'q') if ctrl && !alt => {
            quit(app, fx);
            return;
        }
        KeyCode::F(1) => {
            app.overlay = match app.overlay {
                Some(Overlay::Help { .. }) => None,
                _ => Some(Overlay::Help { scroll: 0 }),
            };
            return;
        }
        KeyCode::F(2) => {
            app.overlay = match app.overlay {
                Some(Overlay::Log { .. }) => None,
                _ => Some(Overlay::Log { scroll: 0 }),
            };
            return;
        }
        _ => {}
    }
    if app.overlay.is_none() && matches!(key.code, KeyCode::Tab | KeyCode::BackTab) && !ctrl && !alt {
        complete(app, completing, key.code == KeyCode::BackTab, fx);
        return;
    }
    match app.overlay {
        Some(Overlay::Help { .. }) => help_key(app, key),
        Some(Overlay::Switcher(_)) => switcher_key(app, key, fx),
        Some(Overlay::Invite(_)) => invite_key(app, key, fx),
        Some(Overlay::Log { .. }) => log_key(app, key),
        Some(Overlay::Picture(_)) => super::viewer::key(app, key, fx),
        Some(Overlay::Search(_)) => super::search::key(app, key, fx),
        Some(Overlay::IncomingCall { .. }) => super::call::key(app, key, fx),
        Some(Overlay::Confirm(_)) => super::changes::confirm_key(app, key, fx),
        Some(Overlay::Profile(_) | Overlay::Verify(_)) => super::profile::key(app, key),
        None => main_key(app, key, fx),
    }
}

/// `/mute-chat [DURATION]`: mute the open conversation, forever or for that long.
fn mute_chat(app: &mut App, duration: Option<&str>, fx: &mut Vec<Effect>) {
    let Some(contact) = app.focused.clone() else {
        return app.set_status("/mute-chat acts on the open conversation: open one first (Ctrl+K)", true);
    };
    let until_ms = match duration {
        None => None,
        Some(text) => match (kith_p2p::ops::parse_duration(text), app.now_ms) {
            (Some(d), Some(now)) => Some(now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            (Some(_), None) => return app.set_status("the clock is not known yet: try again in a second", true),
            (None, _) => return app.set_status(format!("{text:?} is not a duration like 30m, 8h or 2d"), true),
        },
    };
    fx.push(Effect::MuteConversation { contact, until_ms });
}

fn quit(app: &mut App, fx: &mut Vec<Effect>) {
    // The drafts go to the node first; the runtime waits a moment for them.
    super::prefs::sync_drafts(app, fx);
    app.quit = true;
    fx.push(Effect::Quit);
}

fn main_key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    let page = page_rows(app);
    match key.code {
        // ---- conversations and scrolling ----
        KeyCode::Down if alt => switch(app, 1, fx),
        KeyCode::Up if alt => switch(app, -1, fx),
        // ---- the selected message ----
        KeyCode::Up if ctrl => super::changes::select(app, true, fx),
        KeyCode::Down if ctrl => super::changes::select(app, false, fx),
        KeyCode::Char('r') if ctrl && !alt => super::changes::reply(app, None, fx),
        KeyCode::Char('n') if ctrl => switch(app, 1, fx),
        KeyCode::Char('p') if ctrl => switch(app, -1, fx),
        KeyCode::Char('k') if ctrl => app.overlay = Some(Overlay::Switcher(Switcher::default())),
        KeyCode::Char('f') if ctrl && !alt => super::search::open(app, None, fx),
        KeyCode::Char('o') if ctrl && !alt => super::files::open_or_fetch(app, fx),
        KeyCode::Char('g') if ctrl && !alt => super::viewer::open(app, fx),
        KeyCode::PageUp => scroll_messages(app, true, page, fx),
        KeyCode::PageDown => scroll_messages(app, false, page, fx),
        KeyCode::Esc => escape(app, fx),
        // ---- submitting ----
        KeyCode::Enter if alt || shift => edit(app, |i| i.newline()),
        KeyCode::Char('j') if ctrl => edit(app, |i| i.newline()),
        KeyCode::Enter => submit(app, fx),
        KeyCode::Char('?') if app.input.is_empty() && !ctrl && !alt => {
            app.overlay = Some(Overlay::Help { scroll: 0 });
        }
        // ---- cursor ----
        KeyCode::Left if ctrl || alt => app.input.word_left(),
        KeyCode::Right if ctrl || alt => app.input.word_right(),
        KeyCode::Char('b') if alt && !ctrl => app.input.word_left(),
        KeyCode::Char('f') if alt && !ctrl => app.input.word_right(),
        KeyCode::Left => app.input.move_left(),
        KeyCode::Right => app.input.move_right(),
        KeyCode::Home if ctrl => app.input.buffer_start(),
        KeyCode::End if ctrl => app.input.buffer_end(),
        KeyCode::Home => app.input.line_start(),
        KeyCode::End => app.input.line_end(),
        KeyCode::Char('a') if ctrl => app.input.line_start(),
        KeyCode::Char('e') if ctrl => app.input.line_end(),
        KeyCode::Up => {
            if !app.input.move_up()
                && let Some(older) = app.history.older(app.input.text())
            {
                let older = older.to_owned();
                app.input.set_text(older);
            }
        }
        KeyCode::Down => {
            if !app.input.move_down()
                && let Some(newer) = app.history.newer()
            {
                app.input.set_text(newer);
            }
        }
        // ---- deleting ----
        KeyCode::Backspace if ctrl || alt => edit(app, |i| i.delete_word_back()),
        KeyCode::Backspace => edit(app, |i| i.backspace()),
        KeyCode::Char('h') if ctrl => edit(app, |i| i.backspace()),
        KeyCode::Delete if ctrl => edit(app, |i| i.delete_word_forward()),
        KeyCode::Delete => edit(app, |i| i.delete()),
        KeyCode::Char('w') if ctrl => edit(app, |i| i.delete_word_back()),
        KeyCode::Char('d') if alt && !ctrl => edit(app, |i| i.delete_word_forward()),
        KeyCode::Char('u') if ctrl => edit(app, |i| i.delete_to_line_start()),
        // ---- typing (Ctrl+Alt is AltGr on some systems) ----
        KeyCode::Char(c) if ctrl == alt => edit(app, |i| i.insert_char(c)),
        _ => {}
    }
}

/// Esc with no overlay: end the reply or edit being written; else unselect and go
/// back to the newest message; else clear the status line.
fn escape(app: &mut App, fx: &mut Vec<Effect>) {
    if super::changes::cancel(app) {
        return;
    }
    match app.focused() {
        Some(conv) if conv.scroll != Scroll::Bottom || conv.detached() || conv.selected.is_some() => {
            jump_to_newest(app, fx);
        }
        _ => app.status = None,
    }
}

/// Tab (Shift+Tab: `backwards`): cycle the completion in progress if the input is
/// as it left it, else complete the word before the cursor.
fn complete(app: &mut App, completing: Option<Completion>, backwards: bool, fx: &mut Vec<Effect>) {
    if let Some(mut completion) = completing.filter(|c| c.continues(&app.input)) {
        completion.cycle(&mut app.input, backwards);
        app.completion = Some(completion);
        return;
    }
    app.history.stop_browsing();
    if let Some(range) = complete::path_word(app.input.text(), app.input.cursor()) {
        let word = app.input.text()[range.clone()].to_owned();
        app.pending_paths = Some((range, app.input.text().to_owned(), backwards));
        fx.push(Effect::ListPaths { word });
        return;
    }
    let names = app.completion_names();
    app.completion = Completion::start(&mut app.input, &names, backwards);
}

/// An edit of the message text: stops history browsing.
fn edit<R>(app: &mut App, f: impl FnOnce(&mut crate::input::Input) -> R) {
    f(&mut app.input);
    app.history.stop_browsing();
}

fn submit(app: &mut App, fx: &mut Vec<Effect>) {
    if super::changes::editing(app) {
        return super::changes::submit_edit(app, fx);
    }
    let raw = app.input.text().to_owned();
    if raw.trim().is_empty() {
        return;
    }
    if commands::is_command(&raw) {
        app.history.push(raw.clone());
        app.input.take();
        match commands::parse(&raw) {
            Ok(command) => run_command(app, command, fx),
            Err(e) => app.set_status(e.to_string(), true),
        }
        return;
    }
    let Some(contact) = app.focused.clone() else {
        app.set_status("no conversation open: add a contact with /add or /invite", true);
        return;
    };
    // `//text` sends `/text`.
    let text = if raw.starts_with("//") { &raw[1..] } else { raw.as_str() };
    // Kept to be shortened if the node would refuse it.
    if super::changes::too_long(app, text, " (it stays in the input)") {
        return;
    }
    let text = text.to_owned();
    app.history.push(raw);
    app.input.take();
    let reply_to = super::changes::take_reply(app, &contact);
    send(app, contact, text, reply_to, fx);
}

/// Send `text` to `contact` (as a reply to message `reply_to`), following the
/// newest message again.
pub(super) fn send(app: &mut App, contact: String, text: String, reply_to: Option<String>, fx: &mut Vec<Effect>) {
    jump_to_newest(app, fx);
    *app.sending.entry(contact.clone()).or_default() += 1;
    fx.push(Effect::Send { contact, text, reply_to });
}

fn run_command(app: &mut App, command: Command, fx: &mut Vec<Effect>) {
    match command {
        Command::Add { target, alias } => {
            app.set_status("adding the contact…", false);
            fx.push(Effect::Add { target, alias });
        }
        Command::Invite => {
            app.overlay = Some(Overlay::Invite(InviteView::Loading));
            fx.push(Effect::Invite);
        }
        Command::Accept(None) if app.focused().is_some_and(Conversation::is_invitation) => answer_invitation(app, true, fx),
        Command::Reject(None) if app.focused().is_some_and(Conversation::is_invitation) => answer_invitation(app, false, fx),
        Command::Accept(who) => with_contact(app, who, "/accept", fx, |contact| Effect::Accept { contact }),
        Command::Reject(who) => with_contact(app, who, "/reject", fx, |contact| Effect::Reject { contact }),
        Command::Block(who) => with_contact(app, who, "/block", fx, |contact| Effect::Block { contact }),
        Command::Unblock(who) => fx.push(Effect::Unblock { contact: who }),
        Command::Remove(who) => with_contact(app, who, "/remove", fx, |contact| Effect::Remove { contact }),
        Command::Rename(alias) => match app.focused().and_then(Conversation::contact) {
            Some(contact) => fx.push(Effect::Rename { contact: contact.peer_id.clone(), alias }),
            None => app.set_status("/rename names the open contact: open one first (Ctrl+K)", true),
        },
        Command::MuteChat(duration) => mute_chat(app, duration.as_deref(), fx),
        Command::UnmuteChat => match app.focused.clone() {
            Some(contact) => fx.push(Effect::UnmuteConversation { contact }),
            None => app.set_status("/unmute-chat acts on the open conversation: open one first (Ctrl+K)", true),
        },
        Command::Status => fx.push(Effect::ShowStatus),
        Command::Log => app.overlay = Some(Overlay::Log { scroll: 0 }),
        Command::Read => match app.focused.clone() {
            Some(contact) => {
                if let Some(conv) = app.conversation_mut(&contact) {
                    conv.unread = 0;
                }
                fx.push(Effect::MarkRead { contact });
            }
            None => app.set_status("no conversation open", true),
        },
        Command::Help => app.overlay = Some(Overlay::Help { scroll: 0 }),
        Command::Search(words) => super::search::open(app, words, fx),
        Command::Quit => quit(app, fx),
        Command::Group(group) => group_command(app, group, fx),
        Command::File { path, caption } => super::files::send_file(app, path, caption, fx),
        Command::Profile(who) => super::profile::open(app, who, fx),
        Command::Verify { contact, mark } => super::verify::command(app, contact, mark, fx),
        Command::SetProfile(change) => super::profile::command(app, change, fx),
        call @ (Command::Call(_) | Command::Answer | Command::Hangup | Command::Mute) => {
            super::call::command(app, call, fx)
        }
        Command::Room(room) => super::room::command(app, room, fx),
        change @ (Command::Reply(_) | Command::Edit(_) | Command::Delete | Command::DeleteAll | Command::React(_)) => {
            super::changes::command(app, change, fx)
        }
    }
}

/// Run a `/group` command: `create` anywhere, the others on the open group.
fn group_command(app: &mut App, command: GroupCommand, fx: &mut Vec<Effect>) {
    if let GroupCommand::Create(name) = command {
        app.set_status(format!("creating #{name}…"), false);
        fx.push(Effect::Group(GroupChange::Create { name }));
        return;
    }
    let Some(conv) = app.focused() else {
        app.set_status("no group open: open one first (Tab, Ctrl+K)", true);
        return;
    };
    let Some(group) = conv.group_view() else {
        app.set_status(format!("{} is not a group: open one first (Tab, Ctrl+K)", conv.label()), true);
        return;
    };
    let id = group.id.clone();
    match command {
        GroupCommand::Create(_) => {}
        GroupCommand::Add(contact) => fx.push(Effect::Group(GroupChange::Add { group: id, contact })),
        GroupCommand::Remove(member) => fx.push(Effect::Group(GroupChange::Remove { group: id, member })),
        GroupCommand::Leave => fx.push(Effect::Group(GroupChange::Leave { group: id })),
        GroupCommand::Members => {
            // The status line holds one line; a long list is cut at the screen edge.
            let members: Vec<String> = group
                .members
                .iter()
                .map(|m| {
                    let name = if app.me() == Some(m.peer_id.as_str()) {
                        "you".to_owned()
                    } else {
                        conv.author_label(app, &m.peer_id)
                    };
                    match m.role {
                        Role::Member => name,
                        role => format!("{name} ({})", role_name(role)),
                    }
                })
                .collect();
            let text = if group.active {
                format!("#{}: {}: {}", group.name, crate::text::members(members.len()), members.join(", "))
            } else {
                format!("#{}: you left this group", group.name)
            };
            app.set_status(text, false);
        }
    }
}

/// A role as `/group members` shows it.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

/// Run a contact command on `who`, or on the focused conversation.
/// `/accept` or `/reject` on an open group invitation.
fn answer_invitation(app: &mut App, accept: bool, fx: &mut Vec<Effect>) {
    let Some(group) = app.focused().and_then(Conversation::group_view).map(|g| g.id.clone()) else { return };
    app.set_status(if accept { "joining the group…" } else { "declining the invitation…" }, false);
    fx.push(Effect::Group(if accept { GroupChange::Accept { group } } else { GroupChange::Decline { group } }));
}

fn with_contact(
    app: &mut App,
    who: Option<String>,
    name: &str,
    fx: &mut Vec<Effect>,
    effect: impl FnOnce(String) -> Effect,
) {
    match who.or_else(|| app.focused.clone()) {
        Some(contact) => fx.push(effect(contact)),
        None => app.set_status(format!("no conversation open: {name} <contact>"), true),
    }
}

fn help_key(app: &mut App, key: KeyEvent) {
    let max = overlay::help_line_count(app.size, app.config.runs_node).saturating_sub(1);
    let page = page_rows(app);
    let Some(Overlay::Help { scroll }) = &mut app.overlay else { return };
    match key.code {
        KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | '?') => app.overlay = None,
        KeyCode::Up => *scroll = scroll.saturating_sub(1),
        KeyCode::Down => *scroll = (*scroll + 1).min(max),
        KeyCode::PageUp => *scroll = scroll.saturating_sub(page),
        KeyCode::PageDown => *scroll = (*scroll + page).min(max),
        KeyCode::Home => *scroll = 0,
        KeyCode::End => *scroll = max,
        _ => {}
    }
}

fn log_key(app: &mut App, key: KeyEvent) {
    let max = overlay::log_scroll_max(app);
    let page = page_rows(app);
    let Some(Overlay::Log { scroll }) = &mut app.overlay else { return };
    // `scroll` counts rows up from the newest line.
    match key.code {
        KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => app.overlay = None,
        KeyCode::Up => *scroll = (*scroll + 1).min(max),
        KeyCode::Down => *scroll = scroll.saturating_sub(1),
        KeyCode::PageUp => *scroll = (*scroll + page).min(max),
        KeyCode::PageDown => *scroll = scroll.saturating_sub(page),
        KeyCode::Home => *scroll = max,
        KeyCode::End => *scroll = 0,
        _ => {}
    }
}

fn invite_key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    let page = page_rows(app);
    let max = match &app.overlay {
        Some(Overlay::Invite(view)) => overlay::invite_scroll_max(view, app.size),
        _ => 0,
    };
    let Some(Overlay::Invite(view)) = &mut app.overlay else { return };
    if let (KeyCode::Char('c'), InviteView::Ready { invite, copied, .. }) = (key.code, &mut *view) {
        fx.push(Effect::Copy { text: invite.clone() });
        *copied = true;
        app.note("sent your invite to the terminal's clipboard (OSC 52: it lands only if the terminal allows it)", false);
        return;
    }
    let scroll = match view {
        InviteView::Ready { scroll, .. } => Some(scroll),
        InviteView::Loading => None,
    };
    match (key.code, scroll) {
        (KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q'), _) => app.overlay = None,
        (KeyCode::Up, Some(s)) => *s = s.saturating_sub(1),
        (KeyCode::Down, Some(s)) => *s = s.saturating_add(1).min(max),
        (KeyCode::PageUp, Some(s)) => *s = s.saturating_sub(page),
        (KeyCode::PageDown, Some(s)) => *s = s.saturating_add(page).min(max),
        (KeyCode::Home, Some(s)) => *s = 0,
        (KeyCode::End, Some(s)) => *s = max,
        _ => {}
    }
}

fn switcher_key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let Some(Overlay::Switcher(switcher)) = &app.overlay else { return };
    let matches = app.switcher_matches(switcher.query.text());
    let chosen =
        matches.get(switcher.selected).and_then(|(i, _)| app.conversations.get(*i)).map(|c| c.peer_id().to_owned());
    let last = matches.len().saturating_sub(1);
    match key.code {
        KeyCode::Esc => {
            app.overlay = None;
            return;
        }
        KeyCode::Char('k') if ctrl => {
            app.overlay = None;
            return;
        }
        KeyCode::Enter => {
            app.overlay = None;
            if let Some(peer) = chosen {
                focus(app, &peer, fx);
            }
            return;
        }
        _ => {}
    }
    let Some(Overlay::Switcher(switcher)) = &mut app.overlay else { return };
    let edited = match key.code {
        KeyCode::Up | KeyCode::BackTab => {
            switcher.selected = switcher.selected.saturating_sub(1);
            false
        }
        KeyCode::Char('p') if ctrl => {
            switcher.selected = switcher.selected.saturating_sub(1);
            false
        }
        KeyCode::Down | KeyCode::Tab => {
            switcher.selected = (switcher.selected + 1).min(last);
            false
        }
        KeyCode::Char('n') if ctrl => {
            switcher.selected = (switcher.selected + 1).min(last);
            false
        }
        _ => super::line::edit(&mut switcher.query, key).unwrap_or(false),
    };
    if edited {
        switcher.selected = 0;
    }
}

// ---- mouse and paste -------------------------------------------------------------------

pub(super) fn on_mouse(app: &mut App, mouse: MouseEvent, fx: &mut Vec<Effect>) {
    let areas = Areas::compute(screen(app), app);
    let at = Position { x: mouse.column, y: mouse.row };
    let up = match mouse.kind {
        MouseEventKind::ScrollUp => true,
        MouseEventKind::ScrollDown => false,
        MouseEventKind::Down(MouseButton::Left) => {
            if app.overlay.is_none() && areas.list_inner.contains(at) {
                let row = app.list_offset + usize::from(at.y - areas.list_inner.y);
                let rows = list::rows(app);
                if let Some(i) = rows.get(row).and_then(list::Row::index)
                    && let Some(peer) = app.conversations.get(i).map(|c| c.peer_id().to_owned())
                {
                    focus(app, &peer, fx);
                }
            }
            return;
        }
        _ => return,
    };
    match &mut app.overlay {
        Some(Overlay::Help { scroll }) => {
            let max = overlay::help_line_count(app.size, app.config.runs_node).saturating_sub(1);
            *scroll = if up { scroll.saturating_sub(WHEEL_ROWS) } else { (*scroll + WHEEL_ROWS).min(max) };
        }
        Some(Overlay::Invite(view @ InviteView::Ready { .. })) => {
            let max = overlay::invite_scroll_max(view, app.size);
            if let InviteView::Ready { scroll, .. } = view {
                *scroll = if up { scroll.saturating_sub(WHEEL_ROWS) } else { scroll.saturating_add(WHEEL_ROWS).min(max) };
            }
        }
        Some(Overlay::Switcher(_)) => {
            let code = if up { KeyCode::Up } else { KeyCode::Down };
            switcher_key(app, KeyEvent::new(code, KeyModifiers::NONE), fx);
        }
        Some(Overlay::Search(_)) => super::search::wheel(app, up),
        // The picture is fitted to the pane: nothing to scroll.
        Some(
            Overlay::Invite(InviteView::Loading)
            | Overlay::Picture(_)
            | Overlay::IncomingCall { .. }
            | Overlay::Confirm(_)
            | Overlay::Profile(_)
            | Overlay::Verify(_),
        ) => {}
        Some(Overlay::Log { .. }) => {
            let max = overlay::log_scroll_max(app);
            let Some(Overlay::Log { scroll }) = &mut app.overlay else { return };
            *scroll = if up { (*scroll + WHEEL_ROWS).min(max) } else { scroll.saturating_sub(WHEEL_ROWS) };
        }
        None if areas.list.contains(at) => {
            app.list_offset =
                if up { app.list_offset.saturating_sub(WHEEL_ROWS) } else { app.list_offset + WHEEL_ROWS };
            clamp_list_offset(app);
        }
        None if areas.messages.contains(at) => scroll_messages(app, up, WHEEL_ROWS, fx),
        None => {}
    }
}

pub(super) fn on_paste(app: &mut App, text: &str, fx: &mut Vec<Effect>) {
    match &mut app.overlay {
        None => edit(app, |i| i.insert_str(text)),
        Some(Overlay::Switcher(switcher)) => {
            let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            switcher.query.insert_str(&line);
            switcher.selected = 0;
        }
        Some(Overlay::Search(_)) => super::search::paste(app, text, fx),
        Some(_) => {}
    }
}
