//! Acting on messages already sent: replies, edits, deletes and reactions
//! (`/reply`, `/edit`, `/delete`, `/delete-all`, `/react`), the selection they act
//! on, and the node's word on changed messages (`message_changed`, the answers).
//!
//! The message acted on is the conversation's selected one ([`Conversation::selected`]:
//! Ctrl+Up and Ctrl+Down move it, a search hit opened sets it), else the newest one
//! at or above the pane's bottom row that fits (the newest message while the view
//! follows it; for `/edit` and `/delete-all` the newest of ours), as Ctrl+O finds
//! its file. A reply or an edit is written in the input: the conversation keeps a
//! [`Compose`] that the bar above the input shows and Enter completes; Esc ends it.
//! A reply stays with its conversation while the interface runs; an edit ends when
//! the conversation is left, and the text typed before it comes back.

use crossterm::event::{KeyCode, KeyEvent};
use kith_p2p::kith_storage::Direction;
use kith_p2p::payload::MAX_TEXT_LEN;
use kith_p2p::views::{GroupReceiptsView, MessageView, QUOTE_CHARS};

use super::update::{jump_to_newest, pane, prefetch};
use super::{App, Conversation, Overlay};
use crate::action::Effect;
use crate::commands::Command;
use crate::input::Input;
use crate::ui::theme::Theme;
use crate::ui::timeline::{Cursor, Timeline};

/// What the input is written for besides a new message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compose {
    /// A reply: Enter sends the input as an answer to the quoted message.
    Reply(Quote),
    /// An edit of one of our messages: Enter sends the input as its new text (as
    /// typed: a leading `/` is text, not a command).
    Edit {
        /// The message being edited.
        quote: Quote,
        /// Its text when the edit began, to tell an edit that changes nothing.
        original: String,
        /// What the input held when the edit began, given back when it ends.
        stash: Input,
    },
}

impl Compose {
    /// The message replied to or edited.
    pub fn quote(&self) -> &Quote {
        match self {
            Compose::Reply(quote) | Compose::Edit { quote, .. } => quote,
        }
    }
}

/// A message as the bar above the input names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Its id.
    pub id: String,
    /// Its author as the conversation names them (`you` for us).
    pub author: String,
    /// What it says, on one line (peer text, sanitised when drawn): `deleted` once
    /// deleted, `[file]` for a file without a caption.
    pub text: String,
}

impl Quote {
    /// `m` as `conv` names it.
    fn of(app: &App, conv: &Conversation, m: &MessageView) -> Quote {
        let text = if m.deleted {
            "deleted".to_owned()
        } else if m.text.trim().is_empty() && m.file.is_some() {
            "[file]".to_owned()
        } else {
            one_line(&m.text)
        };
        Quote { id: m.id.clone(), author: conv.name_of(app, &m.author), text }
    }
}

/// `text` on one line: every run of white space (new lines too) as one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A question the user answers with `y` or `n` before something that cannot be
/// undone happens (`/delete-all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The question.
    pub question: String,
    /// What `y` does.
    pub effect: Effect,
}

/// Which messages a command may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Any message (hiding one).
    Any,
    /// One not deleted (replying, reacting).
    Live,
    /// One of ours not deleted (editing, deleting for everyone); what is done to it.
    Own(&'static str),
}

impl Want {
    fn fits(self, m: &MessageView) -> bool {
        match self {
            Want::Any => true,
            Want::Live => !m.deleted,
            Want::Own(_) => !m.deleted && m.direction == Direction::Outgoing,
        }
    }
}

/// The message a command acts on: the selected one, else the newest one in view
/// that fits `want`; else why there is none, for the status line.
fn target(app: &App, want: Want) -> Result<MessageView, String> {
    let conv = app.focused().ok_or("no conversation open: open one first (Ctrl+K)")?;
    if let Some(id) = &conv.selected {
        let m = conv.messages.iter().find(|m| m.id == *id);
        let m = m.ok_or("the selected message is not loaded any more: Esc, then select it again (Ctrl+Up)")?;
        return match want {
            _ if want.fits(m) => Ok(m.clone()),
            Want::Own(what) if m.direction == Direction::Incoming => {
                Err(format!("only your own messages can be {what}"))
            }
            _ => Err("that message was deleted".to_owned()),
        };
    }
    let bottom = super::update::bottom_message(app);
    let in_view = bottom.and_then(|b| conv.messages.iter().take(b + 1).rev().find(|m| want.fits(m)));
    in_view.cloned().ok_or_else(|| match want {
        Want::Own(what) => format!("no message of yours in view to be {what}: select one with Ctrl+Up"),
        _ => "no message in view: select one with Ctrl+Up".to_owned(),
    })
}

/// Run a message command.
pub(super) fn command(app: &mut App, command: Command, fx: &mut Vec<Effect>) {
    match command {
        Command::Reply(text) => reply(app, text, fx),
        Command::Edit(text) => edit(app, text, fx),
        Command::Delete => delete(app, fx),
        Command::DeleteAll => delete_for_everyone(app),
        Command::React(emoji) => react(app, &emoji, fx),
        _ => {}
    }
}

/// `/reply [text]`, Ctrl+R: reply to the message acted on, with `text` at once, or
/// with what is typed next (the bar above the input says to what).
pub(super) fn reply(app: &mut App, text: Option<String>, fx: &mut Vec<Effect>) {
    let (m, contact) = match (target(app, Want::Live), app.focused.clone()) {
        (Ok(m), Some(contact)) => (m, contact),
        (Err(why), _) => return app.set_status(format!("nothing to reply to: {why}"), true),
        (Ok(_), None) => return,
    };
    if let Some(text) = text {
        if !too_long(app, &text, "") {
            super::user::send(app, contact, text, Some(m.id), fx);
        }
        return;
    }
    end_edit(app);
    let Some(conv) = app.focused() else { return };
    let quote = Quote::of(app, conv, &m);
    if let Some(conv) = app.conversation_mut(&contact) {
        conv.compose = Some(Compose::Reply(quote));
    }
}

/// `/edit [text]`: replace the text of our message acted on with `text` at once, or
/// put its text into the input to be edited (Enter sends the edit).
fn edit(app: &mut App, text: Option<String>, fx: &mut Vec<Effect>) {
    let (m, contact) = match (target(app, Want::Own("edited")), app.focused.clone()) {
        (Ok(m), Some(contact)) => (m, contact),
        (Err(why), _) => return app.set_status(format!("nothing to edit: {why}"), true),
        (Ok(_), None) => return,
    };
    if m.file.is_some() && m.text.is_empty() && text.is_none() {
        // Its caption can be given (`/edit caption`), but there is nothing to edit in
        // the input: starting from nothing looks like a mistake.
        return app.set_status("that file has no caption: /edit <caption> gives it one", true);
    }
    if let Some(text) = text {
        return send_edit(app, contact, m.id, text, &m.text, fx);
    }
    end_edit(app);
    let Some(conv) = app.focused() else { return };
    let quote = Quote::of(app, conv, &m);
    let stash = std::mem::take(&mut app.input);
    app.input.set_text(m.text.clone());
    app.history.stop_browsing();
    if let Some(conv) = app.conversation_mut(&contact) {
        conv.compose = Some(Compose::Edit { quote, original: m.text, stash });
    }
}

/// Whether the input holds an edit (Enter sends it, not a message).
pub(super) fn editing(app: &App) -> bool {
    matches!(app.focused().and_then(|c| c.compose.as_ref()), Some(Compose::Edit { .. }))
}

/// What the focused conversation's draft is: the input, or during an edit what the
/// input held before it (the edit is not a draft of a new message).
pub(super) fn draft(app: &App) -> &str {
    match app.focused().and_then(|c| c.compose.as_ref()) {
        Some(Compose::Edit { stash, .. }) => stash.text(),
        _ => app.input.text(),
    }
}

/// Enter during an edit: send the input as the message's new text.
pub(super) fn submit_edit(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(contact) = app.focused.clone() else { return };
    let Some(Compose::Edit { quote, original, .. }) = app.focused().and_then(|c| c.compose.clone()) else { return };
    let text = app.input.text().to_owned();
    if text.trim().is_empty() {
        return app.set_status("an edit cannot leave the message empty: /delete-all deletes it for everyone", true);
    }
    if too_long(app, &text, " (it stays in the input)") {
        return;
    }
    app.history.push(text.clone());
    end_edit(app);
    send_edit(app, contact, quote.id, text, &original, fx);
}

/// Ask for the edit of message `id` in `contact`'s conversation, unless it changes
/// nothing.
fn send_edit(app: &mut App, contact: String, id: String, text: String, original: &str, fx: &mut Vec<Effect>) {
    if text == original {
        return app.set_status("nothing changed: the message stays as it was", false);
    }
    if too_long(app, &text, "") {
        return;
    }
    if let Some(conv) = app.conversation_mut(&contact) {
        conv.selected = None;
    }
    fx.push(Effect::Edit { contact, id, text });
}

/// Whether `text` is longer than a message holds (said in the status line, with
/// `note` after it).
pub(super) fn too_long(app: &mut App, text: &str, note: &str) -> bool {
    if text.len() <= MAX_TEXT_LEN {
        return false;
    }
    // The node would refuse it (and a request line over the control socket's limit
    // costs the connection).
    let (kib, max) = (text.len().div_ceil(1024), MAX_TEXT_LEN / 1024);
    app.set_status(format!("too long to send: {kib} KiB, a message holds at most {max} KiB{note}"), true);
    true
}

/// `/delete`: hide the message acted on here (the others keep it).
fn delete(app: &mut App, fx: &mut Vec<Effect>) {
    match target(app, Want::Any) {
        Ok(m) => {
            if let Some(conv) = app.focused.clone().and_then(|c| app.conversation_mut(&c)) {
                conv.selected = None;
            }
            fx.push(Effect::Delete { id: m.id, for_everyone: false });
        }
        Err(why) => app.set_status(format!("nothing to delete: {why}"), true),
    }
}

/// `/delete-all`: ask whether to delete our message acted on for everyone.
fn delete_for_everyone(app: &mut App) {
    match target(app, Want::Own("deleted for everyone")) {
        Ok(m) => {
            let said = if m.text.trim().is_empty() { "[file]".to_owned() } else { one_line(&m.text) };
            let question = format!("Delete your message “{said}” for everyone?");
            app.overlay =
                Some(Overlay::Confirm(Confirm { question, effect: Effect::Delete { id: m.id, for_everyone: true } }));
        }
        Err(why) => app.set_status(format!("nothing to delete: {why}"), true),
    }
}

/// A key while a question is asked: `y` does it, `n` or Esc does not.
pub(super) fn confirm_key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    let Some(Overlay::Confirm(confirm)) = &app.overlay else { return };
    match key.code {
        KeyCode::Char('y' | 'Y') => {
            fx.push(confirm.effect.clone());
            app.overlay = None;
            if let Some(conv) = app.focused.clone().and_then(|c| app.conversation_mut(&c)) {
                conv.selected = None;
            }
        }
        KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => {
            app.overlay = None;
            app.set_status("nothing deleted", false);
        }
        _ => {}
    }
}

/// `/react EMOJI`: react to the message acted on, or take the reaction back.
fn react(app: &mut App, emoji: &str, fx: &mut Vec<Effect>) {
    match target(app, Want::Live) {
        Ok(m) => fx.push(Effect::React { id: m.id, emoji: emoji.to_owned() }),
        Err(why) => app.set_status(format!("nothing to react to: {why}"), true),
    }
}

/// Esc: end the reply or edit being written, if any (an edit gives the input back
/// as it was before it). Returns whether there was one.
pub(super) fn cancel(app: &mut App) -> bool {
    let Some(id) = app.focused.clone() else { return false };
    let Some(compose) = app.conversation_mut(&id).and_then(|c| c.compose.take()) else { return false };
    if let Compose::Edit { stash, .. } = compose {
        app.input = stash;
        app.history.stop_browsing();
        app.set_status("edit cancelled", false);
    }
    true
}

/// End an edit of the focused conversation (leaving it, or starting another):
/// the input goes back to what it held before. A reply stays.
pub(super) fn end_edit(app: &mut App) {
    if editing(app) {
        cancel(app);
    }
}

/// The reply to message `id` in `contact`'s conversation that is being sent: it
/// leaves the bar.
pub(super) fn take_reply(app: &mut App, contact: &str) -> Option<String> {
    let conv = app.conversation_mut(contact)?;
    match conv.compose.take() {
        Some(Compose::Reply(quote)) => Some(quote.id),
        other => {
            conv.compose = other;
            None
        }
    }
}

/// A reply to `id` was not sent: its text went back into the input, so the bar
/// comes back too (unless another reply or an edit began meanwhile).
pub(super) fn reply_failed(app: &mut App, contact: &str, id: &str) {
    let Some(conv) = app.conversation(contact) else { return };
    if conv.compose.is_some() {
        return;
    }
    let quote = match conv.messages.iter().find(|m| m.id == id) {
        Some(m) => Quote::of(app, conv, m),
        None => Quote { id: id.to_owned(), author: "a message".to_owned(), text: String::new() },
    };
    if let Some(conv) = app.conversation_mut(contact) {
        conv.compose = Some(Compose::Reply(quote));
    }
}

/// A change asked for from here failed: said in the status line; an edit's text
/// comes back to be sent again (into the input as an edit if its conversation is
/// open and nothing else is written there, else into the input history).
pub(super) fn on_failure(app: &mut App, effect: Effect, error: &str) {
    match effect {
        Effect::Edit { contact, id, text } => {
            let here = app.focused.as_deref() == Some(contact.as_str())
                && app.focused().is_some_and(|c| c.compose.is_none())
                && app.input.is_empty();
            if here && let Some(conv) = app.focused() {
                let quote = match conv.messages.iter().find(|m| m.id == id) {
                    Some(m) => Quote::of(app, conv, m),
                    None => Quote { id: id.clone(), author: "you".to_owned(), text: one_line(&text) },
                };
                app.input.set_text(text);
                if let Some(conv) = app.conversation_mut(&contact) {
                    conv.compose = Some(Compose::Edit { quote, original: String::new(), stash: Input::new() });
                }
                app.set_status(format!("not edited: {error}"), true);
            } else {
                app.history.push(text);
                app.set_status(format!("not edited: {error} (Up in the input brings the text back)"), true);
            }
        }
        Effect::Delete { .. } => app.set_status(format!("not deleted: {error}"), true),
        Effect::React { .. } => app.set_status(format!("no reaction: {error}"), true),
        _ => {}
    }
}

/// A message changed (`message_changed`, or the answer to a change asked for here):
/// wherever it is loaded it shows as it is now (its delivery state never goes
/// back), and so do the quotes of it in replies loaded, and the bar above the input
/// if it names it. Not loaded: nothing to do (it loads as it is).
pub(super) fn on_changed(app: &mut App, changed: MessageView) {
    let key = App::key_of(&changed).to_owned();
    let Some(conv) = app.conversation_mut(&key) else { return };
    for m in conv.messages.iter_mut().chain(conv.last.iter_mut()) {
        if m.id == changed.id && m.conversation == changed.conversation {
            let state = if m.state.can_become(changed.state) { changed.state } else { m.state };
            *m = MessageView { state, ..changed.clone() };
        } else if let Some(quote) = m.reply_to.as_mut().filter(|q| q.id == changed.id) {
            quote.author = Some(changed.author.clone());
            quote.text = Some(changed.text.chars().take(QUOTE_CHARS).collect());
            quote.deleted = changed.deleted;
        }
    }
    let Some(conv) = app.conversation(&key) else { return };
    let Some(compose) = conv.compose.as_ref().filter(|c| c.quote().id == changed.id) else { return };
    let quote = Quote::of(app, conv, &changed);
    let edit_gone = changed.deleted && matches!(compose, Compose::Edit { .. });
    if edit_gone && app.focused.as_deref() == Some(key.as_str()) {
        cancel(app);
        return app.set_status("the message you were editing was deleted", true);
    }
    if let Some(Compose::Reply(q) | Compose::Edit { quote: q, .. }) =
        app.conversation_mut(&key).and_then(|c| c.compose.as_mut())
    {
        *q = quote;
    }
}

/// A group member received or read one of our messages there: its counts change
/// wherever it is loaded (one not loaded comes with its counts when paged in).
pub(super) fn on_receipts(app: &mut App, id: &str, conversation: &str, receipts: GroupReceiptsView) {
    let Some(conv) = app.conversation_mut(conversation) else { return };
    for m in conv.messages.iter_mut().chain(conv.last.iter_mut()) {
        if m.id == id && m.conversation == conversation {
            m.receipts = Some(receipts.clone());
        }
    }
}

/// A message was deleted for us only: it leaves every loaded window (the "new
/// messages" line moves to the message after it), the list's preview is taken
/// again if it was the newest, and a reply or edit of it ends.
pub(super) fn on_hidden(app: &mut App, id: &str, fx: &mut Vec<Effect>) {
    let mut ended = false;
    for conv in &mut app.conversations {
        if let Some(at) = conv.messages.iter().position(|m| m.id == id) {
            conv.messages.remove(at);
            if conv.unread_marker.as_deref() == Some(id) {
                conv.unread_marker = conv.messages.get(at).map(|m| m.id.clone());
            }
        }
        if conv.selected.as_deref() == Some(id) {
            conv.selected = None;
        }
        if conv.last.as_ref().is_some_and(|m| m.id == id) {
            if conv.loaded && !conv.detached() {
                conv.last = conv.messages.back().cloned();
            } else {
                conv.last = None;
                fx.push(Effect::LoadPreview { contact: conv.peer_id().to_owned() });
            }
        }
        if conv.compose.as_ref().is_some_and(|c| c.quote().id == id) {
            // Only the focused conversation can hold an edit: `cancel` ends it below.
            match conv.compose {
                Some(Compose::Edit { .. }) => ended = true,
                _ => conv.compose = None,
            }
        }
    }
    if ended {
        cancel(app);
    }
    app.set_status("deleted for you (the others still have it)", false);
}

/// Ctrl+Up (`older`) and Ctrl+Down: move the selection to the message above or
/// below the selected one; with none selected, Ctrl+Up selects the message on the
/// pane's bottom row. The view scrolls as little as shows the whole message (its
/// top, if taller than the pane). Down past the newest message unselects and
/// follows the newest again.
pub(super) fn select(app: &mut App, older: bool, fx: &mut Vec<Effect>) {
    let (width, height) = pane(app);
    let Some(key) = app.focused.clone() else { return };
    let Some(conv) = app.conversation(&key) else { return };
    let theme = Theme::new(true);
    let timeline = Timeline::new(app, conv, width, &theme);
    let Some(bottom) = timeline.cursor().map(|c| timeline.settle(c, height)) else { return };
    if height == 0 {
        return;
    }
    let current = conv.selected.as_ref().and_then(|id| conv.messages.iter().position(|m| m.id == *id));
    let index = match (current, older) {
        (Some(i), true) => i.checked_sub(1),
        (Some(i), false) if i + 1 < conv.messages.len() => Some(i + 1),
        // Past the newest of the conversation: back to following it.
        (Some(_), false) if !conv.detached() => return jump_to_newest(app, fx),
        (Some(_), false) => None,
        (None, true) => Some(bottom.index),
        (None, false) => None,
    };
    // At an end of the loaded window, the selection waits for the next page.
    let Some(index) = index else { return prefetch(app, fx) };
    let cursor = if index > bottom.index || (index == bottom.index && bottom.below > 0) {
        Cursor { index, below: 0 }
    } else {
        // Rows from the pane's bottom row up to the message's top row.
        let rows = (index..bottom.index).map(|i| timeline.height(i)).sum::<usize>() + timeline.height(bottom.index)
            - bottom.below;
        if rows > height {
            timeline.down(Cursor { index, below: timeline.height(index) - 1 }, height - 1)
        } else {
            bottom
        }
    };
    let scroll = timeline.anchor(timeline.settle(cursor, height));
    let id = conv.messages[index].id.clone();
    if let Some(conv) = app.conversation_mut(&key) {
        conv.selected = Some(id);
        conv.scroll = scroll;
    }
    prefetch(app, fx);
}
