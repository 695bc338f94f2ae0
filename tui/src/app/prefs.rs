//! Per-conversation preferences kept by the node: mutes (and the mention rule that
//! gets through them) and drafts.
//!
//! Drafts live on the node (`set_draft`), not in a file next to the interface: the
//! interface may run against a daemon over the control socket, and the node already
//! owns the home's data. The editor's drafts are compared with what was last saved
//! on every tick, on switching conversations and on quitting, and only changes go
//! out; the node's drafts are taken in once, from the first `conversations` answer.

use kith_p2p::kith_storage::{Direction, MAX_DRAFT_LEN};
use kith_p2p::views::{ConversationView, MessageView};

use super::{App, NodeState};
use crate::action::Effect;
use crate::input::Input;
use crate::mention::{self, Me};

/// Who we are, for mentions.
pub(crate) fn me(app: &App) -> Me<'_> {
    Me { name: app.config.display_name.as_deref(), peer_id: app.me.as_deref() }
}

/// Whether a message that arrived in a conversation out of view rings the bell and
/// runs the notification command: unless the conversation is muted, and even then
/// for a group message that mentions us.
pub(super) fn should_notify(app: &App, key: &str, message: &MessageView) -> bool {
    let Some(conv) = app.conversation(key) else { return true };
    if !conv.muted(app.now_ms) {
        return true;
    }
    conv.group_view().is_some()
        && message.direction == Direction::Incoming
        && mention::mentions_me(&message.text, me(app))
}

/// The `conversations` answer: every conversation's mute, and (the first time) the
/// drafts left from before.
pub(super) fn on_conversations(app: &mut App, list: Vec<ConversationView>) {
    for view in &list {
        if let Some(conv) = app.conversation_mut(view.key()) {
            conv.mute = view.mute();
        }
    }
    if app.drafts_restored {
        return;
    }
    app.drafts_restored = true;
    for view in list {
        let key = view.key().to_owned();
        let Some(text) = view.draft.filter(|t| !t.is_empty()) else { continue };
        app.saved_drafts.insert(key.clone(), text.clone());
        if app.focused.as_deref() == Some(key.as_str()) {
            // Typed before the answer came: the typing wins.
            if app.input.is_empty() {
                app.input.set_text(text);
            }
        } else {
            app.drafts.entry(key).or_insert_with(|| input(&text));
        }
    }
}

fn input(text: &str) -> Input {
    let mut input = Input::new();
    input.set_text(text);
    input
}

/// `/mute-chat` or `/unmute-chat` went through.
pub(super) fn on_mute_changed(app: &mut App, view: ConversationView) {
    let key = view.key().to_owned();
    let mute = view.mute();
    let Some(conv) = app.conversation_mut(&key) else { return };
    conv.mute = mute;
    let name = crate::text::sanitize_line(conv.label());
    let offset = app.config.utc_offset_secs;
    let text = match mute.map(|m| m.until_ms()) {
        None => format!("{name}: notifications on"),
        Some(None) => format!("{name}: muted until /unmute-chat"),
        Some(Some(until)) => format!("{name}: muted until {}", crate::text::clock(until, offset)),
    };
    app.set_status(text, false);
}

/// A draft reached the node (it was counted as saved when sent).
pub(super) fn on_draft_saved(app: &mut App) {
    app.drafts_in_flight = app.drafts_in_flight.saturating_sub(1);
}

/// What [`App::saved_drafts`] holds for a draft whose save failed: no text equals
/// it (the editor never holds a NUL), so the next sync sends the draft again, even
/// an empty one.
const UNSAVED: &str = "\u{0}";

/// A draft did not reach the node: the next sync tries again, unless it changed
/// meanwhile (then that is sent anyway).
pub(super) fn on_draft_failed(app: &mut App, contact: &str, text: &str) {
    app.drafts_in_flight = app.drafts_in_flight.saturating_sub(1);
    if app.saved_drafts.get(contact).map_or("", String::as_str) == text {
        app.saved_drafts.insert(contact.to_owned(), UNSAVED.to_owned());
    }
}

/// Send the node every draft that changed since it was last saved. Not before the
/// node's drafts were taken in (that would overwrite them), nor while disconnected.
pub(crate) fn sync_drafts(app: &mut App, fx: &mut Vec<Effect>) {
    if !app.drafts_restored || app.node != NodeState::Connected {
        return;
    }
    let mut now: Vec<(String, String)> = app.drafts.iter().map(|(k, v)| (k.clone(), v.text().to_owned())).collect();
    if let Some(focused) = &app.focused {
        now.push((focused.clone(), super::changes::draft(app).to_owned()));
    }
    let gone: Vec<String> = app.saved_drafts.keys().filter(|k| !now.iter().any(|(n, _)| n == *k)).cloned().collect();
    now.extend(gone.into_iter().map(|k| (k, String::new())));
    for (key, text) in now {
        // Over the node's limit: keep its head (at a character boundary) rather than
        // nothing. Cut before comparing, so that a long draft, once saved, is not sent
        // again on every tick.
        let mut end = text.len().min(MAX_DRAFT_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let text = &text[..end];
        let saved = app.saved_drafts.get(&key).map_or("", String::as_str);
        if saved == text || app.conversation(&key).is_none() {
            continue;
        }
        let text = text.to_owned();
        if text.is_empty() {
            app.saved_drafts.remove(&key);
        } else {
            app.saved_drafts.insert(key.clone(), text.clone());
        }
        app.drafts_in_flight += 1;
        fx.push(Effect::SaveDraft { contact: key, text });
    }
}
