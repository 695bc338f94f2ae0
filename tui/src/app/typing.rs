//! Typing notices, both ways. Kept in memory only, never stored.
//!
//! Out: when an action changes the text typed in the open conversation, the node is
//! told (`typing`), at most once per [`SPACING_MS`] per conversation, and only if
//! the text is a message in the making: not empty, not a `/command`, not the new
//! text of a sent message being edited, and only to an accepted contact or a group
//! we are in. The node itself tells a conversation at most every 3 s; this spacing
//! keeps the interface from asking on every keystroke. The request goes over a
//! connection of its own (see `runtime.rs`), so it never holds up a send.
//!
//! In: a `typing` event marks a contact (or a group member) as typing in a
//! conversation for [`SHOWN_TICKS`] ticks; the sender repeats it while typing. It
//! ends at once when a message from them arrives there, or when they go offline.

use std::collections::HashMap;

use kith_p2p::kith_storage::ContactState;

use super::{App, Conversation, NodeState};
use crate::action::Effect;

/// Least time between two typing notices to one conversation, in wall-clock ms. The
/// node sends at most one per 3 s and drops the rest, so a user typing on is heard
/// every 4 s (every other notice gets through), which [`SHOWN_TICKS`] outlasts.
pub const SPACING_MS: u64 = 2_000;

/// How many ticks (about a second each) someone shows as typing after their last
/// notice: 5–6 s. Longer than the 4 s between notices of someone who keeps typing,
/// so the line does not flicker; short enough to end soon after they stop.
pub const SHOWN_TICKS: u8 = 6;

/// Most typists kept per conversation (a group's members, in practice far fewer):
/// the oldest notice goes first.
const TYPISTS: usize = 32;

/// Who types where, and when we last said we type.
#[derive(Debug, Clone, Default)]
pub(crate) struct Typing {
    /// By conversation key (a contact's peer id or a group id): who types there,
    /// oldest notice first.
    heard: HashMap<String, Vec<Typist>>,
    /// By conversation key: when we last told it (wall-clock ms, 0 when the clock
    /// was not known yet).
    told: HashMap<String, u64>,
}

/// Someone typing, and for how many more ticks they show.
#[derive(Debug, Clone)]
struct Typist {
    peer: String,
    ticks_left: u8,
}

impl Typing {
    /// Who types in the conversation `key`, oldest notice first.
    pub(crate) fn typists(&self, key: &str) -> Vec<&str> {
        self.heard.get(key).map_or_else(Vec::new, |t| t.iter().map(|t| t.peer.as_str()).collect())
    }
}

// ---- in ------------------------------------------------------------------------------

/// `peer_id` types in `group`, or (no group) in its 1:1 conversation with us.
pub(super) fn on_event(app: &mut App, group: Option<String>, peer_id: String) {
    if app.me.as_deref() == Some(peer_id.as_str()) {
        return;
    }
    let key = group.unwrap_or_else(|| peer_id.clone());
    if app.conversation(&key).is_none() {
        return;
    }
    let typists = app.typing.heard.entry(key).or_default();
    match typists.iter_mut().find(|t| t.peer == peer_id) {
        Some(typist) => typist.ticks_left = SHOWN_TICKS,
        None => {
            if typists.len() >= TYPISTS {
                typists.remove(0);
            }
            typists.push(Typist { peer: peer_id, ticks_left: SHOWN_TICKS });
        }
    }
}

/// A message from `author` arrived in conversation `key`: they no longer type there.
pub(super) fn on_message(app: &mut App, key: &str, author: &str) {
    if let Some(typists) = app.typing.heard.get_mut(key) {
        typists.retain(|t| t.peer != author);
        if typists.is_empty() {
            app.typing.heard.remove(key);
        }
    }
}

/// `peer` went offline (or the node said so): it types nowhere.
pub(super) fn stop_everywhere(app: &mut App, peer: &str) {
    app.typing.heard.retain(|_, typists| {
        typists.retain(|t| t.peer != peer);
        !typists.is_empty()
    });
}

/// A tick passed: notices age, and those not repeated in time end.
pub(super) fn tick(app: &mut App) {
    app.typing.heard.retain(|_, typists| {
        for typist in typists.iter_mut() {
            typist.ticks_left = typist.ticks_left.saturating_sub(1);
        }
        typists.retain(|t| t.ticks_left > 0);
        !typists.is_empty()
    });
    if let Some(now) = app.now_ms {
        app.typing.told.retain(|_, at| now < *at || now - *at < SPACING_MS);
    }
}

/// The node is gone: nobody is known to type.
pub(super) fn forget(app: &mut App) {
    app.typing.heard.clear();
}

// ---- out -----------------------------------------------------------------------------

/// An input action ran: if it changed the text typed in the open conversation
/// (`focused` and `text` are as they were before it), tell the conversation we type,
/// unless we did less than [`SPACING_MS`] ago.
pub(super) fn after_input(app: &mut App, focused: Option<&str>, text: &str, fx: &mut Vec<Effect>) {
    let Some(key) = app.focused.clone().filter(|key| focused == Some(key.as_str())) else { return };
    let typed = app.input.text();
    if typed == text || typed.trim().is_empty() || crate::commands::is_command(typed) || super::changes::editing(app) {
        return;
    }
    if app.node != NodeState::Connected || !app.conversation(&key).is_some_and(can_tell) {
        return;
    }
    // Without a clock yet, the first notice goes and the next waits for it.
    let now = app.now_ms.unwrap_or(0);
    // A clock set back counts as time passed: notices must not stop until it catches up.
    if app.typing.told.get(&key).is_some_and(|at| now >= *at && now - *at < SPACING_MS) {
        return;
    }
    app.typing.told.insert(key.clone(), now);
    fx.push(Effect::Typing { contact: key });
}

/// Whether typing in `conv` may be told: to an accepted contact, or a group we are
/// in (not to a stranger whose request waits, nor a group we left or were invited to).
fn can_tell(conv: &Conversation) -> bool {
    match (conv.contact(), conv.group_view()) {
        (Some(contact), _) => contact.state == ContactState::Accepted,
        (None, Some(group)) => group.active && group.invited_by.is_none(),
        (None, None) => false,
    }
}

// ---- shown -----------------------------------------------------------------------------

/// What the message pane says while someone types in `conv`: `Алиса is typing…`;
/// in a group `Bob is typing…`, `Bob, Carol are typing…`, `3 people are typing…`.
pub(crate) fn notice(app: &App, conv: &Conversation) -> Option<String> {
    let typists = app.typing.typists(conv.peer_id());
    let names: Vec<String> = typists.iter().map(|peer| conv.author_label(app, peer)).collect();
    let text = match names.as_slice() {
        [] => return None,
        [one] => format!("{one} is typing…"),
        [one, two] => format!("{one}, {two} are typing…"),
        many => format!("{} people are typing…", many.len()),
    };
    Some(crate::text::sanitize_line(&text))
}
