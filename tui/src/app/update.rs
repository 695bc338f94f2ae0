//! `update`: one action in, state changed, effects out. No I/O happens here.
//!
//! This file dispatches and holds what both sides share (focusing, scrolling, the
//! list); `user.rs` handles keys, mouse and paste, `node.rs` node events and answers.

use kith_p2p::kith_storage::ContactState;
use kith_p2p::views::{ContactView, GroupView, MessageView};
use ratatui::layout::Rect;

use super::{App, Conversation, Fetch, NodeState, PAGE, Party, member_label};
use crate::action::{Action, Effect};
use crate::ui::theme::Theme;
use crate::ui::timeline::{Cursor, Timeline};
use crate::ui::{layout::Areas, list};

/// Apply `action` to `app`; returns what the runtime should do.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    // What is typed before an input action, to tell whether it changed.
    let typed = matches!(action, Action::Key(_) | Action::Paste(_) | Action::PastedFile(_))
        .then(|| (app.focused.clone(), app.input.text().to_owned()));
    // Input means someone is looking, whatever the last focus report said.
    if matches!(action, Action::Key(_) | Action::Mouse(_) | Action::Paste(_) | Action::PastedFile(_))
        && !app.terminal_focused
    {
        app.terminal_focused = true;
        mark_focused_read(app, &mut fx);
    }
    match action {
        Action::Key(key) => super::user::on_key(app, key, &mut fx),
        Action::Mouse(mouse) => super::user::on_mouse(app, mouse, &mut fx),
        Action::Paste(text) => super::user::on_paste(app, &text, &mut fx),
        Action::PastedFile(path) => super::files::on_pasted_file(app, &path, &mut fx),
        Action::Resize { width, height } => {
            app.size = (width, height);
            clamp_list_offset(app);
        }
        Action::FocusGained => {
            app.terminal_focused = true;
            mark_focused_read(app, &mut fx);
        }
        Action::FocusLost => app.terminal_focused = false,
        Action::Clock { unix_ms } => app.now_ms = Some(unix_ms),
        Action::Tick => {
            if let Some(status) = &mut app.status {
                status.ticks_left = status.ticks_left.saturating_sub(1);
                if status.ticks_left == 0 {
                    app.status = None;
                }
            }
            if let NodeState::Disconnected { retry_in_secs: Some(secs), .. } = &mut app.node {
                *secs = secs.saturating_sub(1);
            }
            refresh_status(app, &mut fx);
            super::prefs::sync_drafts(app, &mut fx);
            super::typing::tick(app);
        }
        Action::CallTick => {
            super::call::poll(app, &mut fx);
            super::room::poll(app, &mut fx);
        }
        Action::SearchDue { edit } => super::search::on_due(app, edit, &mut fx),
        Action::Node(event) => super::node::on_event(app, event, &mut fx),
        Action::Done(response) => super::node::on_response(app, response, &mut fx),
        // Said in the search overlay, where it was asked (a query with no words, say).
        Action::Failed { effect: Effect::Search { text, within, .. }, error }
        | Action::Interrupted { effect: Effect::Search { text, within, .. }, error } => {
            let results = super::SearchResults::Failed(error);
            super::search::on_results(app, super::SearchQuery { text, within }, results, &mut fx);
        }
        Action::Failed { effect, error } => super::node::on_failure(app, effect, error),
        Action::Interrupted { effect, error } => super::node::on_interrupted(app, effect, error),
        Action::Disconnected { error, retry_in } => disconnected(app, error, retry_in),
        Action::Reconnected => {
            app.node = NodeState::Connected;
            // Every request of the old connection was answered or failed by now
            // (answers lost with it included): nothing is in flight.
            app.sending.clear();
            app.search_in_flight = None;
            app.set_status("connected to the node again", false);
            super::node::reload(app, &mut fx);
            // A search that failed for want of the node goes again.
            super::search::retry(app, &mut fx);
        }
    }
    if let Some((focused, text)) = typed {
        super::typing::after_input(app, focused.as_deref(), &text, &mut fx);
    }
    // The picture's room depends on more than the screen (the input box grows when
    // a failed send's text comes back, say): after any action, an open viewer asks
    // for an encoding if its room changed (nothing when it did not).
    super::viewer::want_encoding(app, &mut fx);
    fx
}

/// The node is gone, or another attempt to reach it failed. Said once in the status
/// line and the log per distinct error, so retries every few seconds do not flood
/// the log; the status bar counts down to the next attempt.
fn disconnected(app: &mut App, error: String, retry_in: Option<std::time::Duration>) {
    let (first, same) = match &app.node {
        NodeState::Disconnected { error: previous, .. } => (false, *previous == error),
        _ => (true, false),
    };
    if first {
        let next = if retry_in.is_some() { "reconnecting" } else { "Ctrl+Q quits" };
        app.set_status(format!("lost the connection to the node: {error} ({next})"), true);
    } else if !same {
        app.set_status(format!("reconnecting: {error}"), true);
    }
    // Nothing the node said before holds any more.
    super::presence::forget(app);
    super::typing::forget(app);
    super::call::forget(app);
    super::room::forget(app);
    app.status_loading = false;
    let retry_in_secs = retry_in.map(|d| d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX));
    app.node = NodeState::Disconnected { error, retry_in_secs };
}

/// Ticks between status reloads while something waits for delivery (the queues'
/// retry countdowns and paths change) and while nothing does (new queues appear).
pub(super) const STATUS_TICKS_BUSY: u32 = 2;
pub(super) const STATUS_TICKS_IDLE: u32 = 10;

/// Reloads the node's status now and then, one request at a time, so the queue
/// counts and retry times on screen follow the node.
fn refresh_status(app: &mut App, fx: &mut Vec<Effect>) {
    if app.node != NodeState::Connected || app.status_loading {
        return;
    }
    app.ticks_since_status += 1;
    let every = if app.queues.is_empty() && app.outbox == 0 { STATUS_TICKS_IDLE } else { STATUS_TICKS_BUSY };
    if app.ticks_since_status >= every {
        app.status_loading = true;
        fx.push(Effect::LoadStatus);
    }
}

// ---- conversations ---------------------------------------------------------------------

pub(super) fn screen(app: &App) -> Rect {
    Rect::new(0, 0, app.size.0, app.size.1)
}

/// Rows a page scroll moves: the message pane's height less one row of context.
pub(super) fn page_rows(app: &App) -> usize {
    let areas = Areas::compute(screen(app), app);
    usize::from(areas.messages_inner.height).saturating_sub(1).max(1)
}

pub(super) fn switch(app: &mut App, delta: isize, fx: &mut Vec<Effect>) {
    let count = app.conversations.len();
    if count == 0 {
        return;
    }
    let next = match app.focused_index() {
        Some(i) => (i as isize + delta).rem_euclid(count as isize) as usize,
        None if delta > 0 => 0,
        None => count - 1,
    };
    if let Some(peer) = app.conversations.get(next).map(|c| c.peer_id().to_owned()) {
        focus(app, &peer, fx);
    }
}

/// Focus the conversation with `peer`: load it if needed and mark it read.
pub(super) fn focus(app: &mut App, peer: &str, fx: &mut Vec<Effect>) {
    if app.focused.as_deref() == Some(peer) || app.conversation(peer).is_none() {
        return;
    }
    switch_to(app, peer, fx);
    let mut land = false;
    if let Some(conv) = app.conversation_mut(peer) {
        if !conv.loaded && conv.loading.is_none() {
            conv.loading = Some(Fetch::Newest);
            // Enough to hold every unread message, within reason, so the view can
            // land on the first of them.
            let unread = usize::try_from(conv.unread).unwrap_or(usize::MAX);
            let limit = unread.saturating_add(PAGE / 2).clamp(PAGE, FIRST_PAGE_MAX);
            fx.push(Effect::LoadHistory { contact: peer.to_owned(), before: None, limit });
        }
        if conv.unread > 0 {
            conv.pending_marker = conv.unread;
            land = conv.loaded;
            conv.resolve_marker();
        }
    }
    if land {
        land_on_marker(app);
    }
    mark_focused_read(app, fx);
    ensure_focus_visible(app);
}

/// Make `peer` the focused conversation (it is listed, and not focused yet): the
/// one left keeps its draft and gives up its window beyond the newest page.
fn switch_to(app: &mut App, peer: &str, fx: &mut Vec<Effect>) {
    // An edit ends with leaving (the input it took over becomes the draft again);
    // a reply stays with its conversation.
    super::changes::end_edit(app);
    if let Some(old) = app.focused.clone()
        && let Some(conv) = app.conversation_mut(&old)
    {
        conv.trim();
    }
    // Each conversation keeps its own draft. Text typed with none open stays.
    let draft = app.drafts.remove(peer).unwrap_or_default();
    match app.focused.take() {
        Some(old) => {
            let typed = std::mem::replace(&mut app.input, draft);
            if !typed.is_empty() {
                app.drafts.insert(old, typed);
            }
        }
        None if app.input.is_empty() => app.input = draft,
        None => {
            if !draft.is_empty() {
                app.drafts.insert(peer.to_owned(), draft);
            }
        }
    }
    app.completion = None;
    app.history.stop_browsing();
    app.focused = Some(peer.to_owned());
    super::prefs::sync_drafts(app, fx);
    super::face::want(app, fx);
}

/// Open `message`'s conversation with the view on it (a search hit): selected, at
/// the pane's bottom row, its neighbours paged in around it however deep in the
/// history it is. Neither the newest page nor the "new messages" line is landed on.
pub(super) fn show_message(app: &mut App, message: MessageView, fx: &mut Vec<Effect>) {
    let peer = App::key_of(&message).to_owned();
    if app.conversation(&peer).is_none() {
        app.set_status("that message's conversation is no longer in the list", true);
        return;
    }
    if app.focused.as_deref() != Some(peer.as_str()) {
        switch_to(app, &peer, fx);
    }
    let Some(conv) = app.conversation_mut(&peer) else { return };
    let id = message.id.clone();
    if conv.jump_to(message) {
        fx.push(Effect::LoadHistory { contact: peer.clone(), before: Some(id), limit: PAGE });
    } else if conv.unread > 0 {
        // The window stays: the line goes above the unread messages in it.
        conv.pending_marker = conv.unread;
        conv.resolve_marker();
    }
    mark_focused_read(app, fx);
    ensure_focus_visible(app);
    prefetch(app, fx);
}

/// The longest first page asked for when opening a conversation with many unread
/// messages; with more unread than this, the view lands at the oldest loaded one.
const FIRST_PAGE_MAX: usize = 500;

/// Put the focused conversation's view at its "new messages" line: the first unread
/// message's block (the line right above it) at the top of the pane, or following
/// the newest message when everything from there on fits.
pub(super) fn land_on_marker(app: &mut App) {
    let (width, height) = pane(app);
    let Some(id) = app.focused.clone() else { return };
    let Some(conv) = app.conversation(&id) else { return };
    let Some(marker) = conv.unread_marker.as_deref() else { return };
    let Some(index) = conv.messages.iter().position(|m| m.id == marker) else { return };
    let theme = Theme::new(true);
    let timeline = Timeline::new(app, conv, width, &theme);
    if timeline.cursor().is_none() || height == 0 {
        return;
    }
    // The pane's bottom row on the block's top row, then a pane's height lower.
    let top = Cursor { index, below: timeline.height(index) - 1 };
    let scroll = timeline.anchor(timeline.settle(timeline.down(top, height - 1), height));
    if let Some(conv) = app.conversation_mut(&id) {
        conv.scroll = scroll;
    }
}

/// If the focused conversation has unread messages and the user can see it, mark it read.
pub(super) fn mark_focused_read(app: &mut App, fx: &mut Vec<Effect>) {
    if !app.terminal_focused {
        return;
    }
    let Some(id) = app.focused.clone() else { return };
    if let Some(conv) = app.conversation_mut(&id)
        && conv.unread > 0
    {
        conv.unread = 0;
        fx.push(Effect::MarkRead { contact: id });
    }
}

/// The message pane's size inside its border (columns, rows).
pub(super) fn pane(app: &App) -> (usize, usize) {
    let inner = Areas::compute(screen(app), app).messages_inner;
    (usize::from(inner.width), usize::from(inner.height))
}

/// Index in the focused conversation's window of the message on the pane's bottom
/// row (the newest one while the view follows it), if any is loaded: the message "in
/// view" that Ctrl+O and the message commands fall back on.
pub(super) fn bottom_message(app: &App) -> Option<usize> {
    let (width, height) = pane(app);
    let conv = app.focused()?;
    let theme = Theme::new(true);
    let timeline = Timeline::new(app, conv, width, &theme);
    timeline.cursor().map(|c| timeline.settle(c, height).index)
}

/// Scroll the focused conversation `rows` up or down: the anchor moves over the
/// blocks around it (about a screen of layout, however deep the view is), then
/// pages are asked for if the view came near an end of the loaded window.
pub(super) fn scroll_messages(app: &mut App, up: bool, rows: usize, fx: &mut Vec<Effect>) {
    let (width, height) = pane(app);
    let Some(id) = app.focused.clone() else { return };
    let Some(conv) = app.conversation(&id) else { return };
    // Styles do not change how many rows anything takes.
    let theme = Theme::new(true);
    let timeline = Timeline::new(app, conv, width, &theme);
    let Some(cursor) = timeline.cursor() else { return };
    let moved = if up { timeline.up(cursor, rows) } else { timeline.down(cursor, rows) };
    let scroll = timeline.anchor(timeline.settle(moved, height));
    if let Some(conv) = app.conversation_mut(&id) {
        conv.scroll = scroll;
    }
    prefetch(app, fx);
}

/// Ask for a page when the focused view is less than a screen away from an end of
/// the loaded window that is not an end of the conversation: older messages above,
/// evicted or newly arrived ones below. Pages come one at a time; each answer calls
/// this again, so a tall screen fills up over a few pages.
pub(super) fn prefetch(app: &mut App, fx: &mut Vec<Effect>) {
    let (width, height) = pane(app);
    let Some(id) = app.focused.clone() else { return };
    let Some(conv) = app.conversation(&id) else { return };
    if !conv.loaded || conv.loading.is_some() {
        return;
    }
    let theme = Theme::new(true);
    let timeline = Timeline::new(app, conv, width, &theme);
    let Some(cursor) = timeline.cursor().map(|c| timeline.settle(c, height)) else { return };
    let fetch = if conv.has_older && timeline.rows_above(cursor, height, height) < height {
        conv.messages.front().map(|m| Fetch::Older { before: m.id.clone() })
    } else if conv.detached() && timeline.rows_below(cursor, height) < height {
        conv.newer_request().map(|(before, _)| Fetch::Newer { before })
    } else {
        None
    };
    let Some(fetch) = fetch else { return };
    let (before, limit) = match &fetch {
        Fetch::Older { before } => (Some(before.clone()), PAGE),
        _ => conv.newer_request().unwrap_or((None, PAGE)),
    };
    if let Some(conv) = app.conversation_mut(&id) {
        conv.loading = Some(fetch);
    }
    fx.push(Effect::LoadHistory { contact: id, before, limit });
}

/// Back to the newest message of the focused conversation, loading it if the window
/// is far from it.
pub(super) fn jump_to_newest(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(id) = app.focused.clone() else { return };
    let Some(conv) = app.conversation_mut(&id) else { return };
    if conv.jump_to_newest() {
        conv.loading = Some(Fetch::Newest);
        fx.push(Effect::LoadHistory { contact: id, before: None, limit: PAGE });
    }
}

pub(super) fn ensure_focus_visible(app: &mut App) {
    let Some(index) = app.focused_index() else { return };
    let areas = Areas::compute(screen(app), app);
    let height = usize::from(areas.list_inner.height);
    let rows = list::rows(app);
    let Some(first) = rows.iter().position(|r| r.index() == Some(index)) else { return };
    let last = rows.iter().rposition(|r| r.index() == Some(index)).unwrap_or(first);
    if height == 0 {
        return;
    }
    if first < app.list_offset {
        // Show a section header right above, if there is one.
        app.list_offset =
            if first > 0 && matches!(rows.get(first - 1), Some(list::Row::Header(_))) { first - 1 } else { first };
    } else if last >= app.list_offset + height {
        app.list_offset = (last + 1).saturating_sub(height);
    }
}

pub(super) fn clamp_list_offset(app: &mut App) {
    let areas = Areas::compute(screen(app), app);
    let rows = list::rows(app).len();
    app.list_offset = app.list_offset.min(rows.saturating_sub(usize::from(areas.list_inner.height)));
}

/// Insert or update a contact; blocked contacts leave the list.
pub(super) fn upsert_contact(app: &mut App, contact: ContactView) {
    if contact.state == ContactState::Blocked {
        remove_conversation(app, &contact.peer_id);
        return;
    }
    match app.conversation_mut(&contact.peer_id) {
        Some(conv) => conv.party = Party::Contact(contact),
        None => app.conversations.push(Conversation::new(contact)),
    }
    app.sort();
}

/// Insert or update a group. Groups we left stay listed (marked "left") so their
/// history remains readable.
pub(super) fn upsert_group(app: &mut App, group: GroupView) {
    // Answers and events race: an older view must not undo a newer one.
    let known = app.conversation(&group.id).and_then(|c| c.group_view()).map(|g| g.version);
    if known.is_some_and(|v| group.version < v) {
        return;
    }
    let changes = membership_changes(app, &group);
    match app.conversation_mut(&group.id) {
        Some(conv) => {
            conv.party = Party::Group(group);
            for text in changes {
                conv.add_notice(text);
            }
        }
        None => app.conversations.push(Conversation::group(group)),
    }
    app.sort();
}

/// Who joined or left a group we are in, as timeline notices, from the group as we
/// knew it and as it is now (the node's events carry whole groups, not changes).
fn membership_changes(app: &App, group: &GroupView) -> Vec<String> {
    let Some(conv) = app.conversation(&group.id) else { return Vec::new() };
    let Some(old) = conv.group_view().filter(|old| old.active && group.active) else { return Vec::new() };
    let me = app.me();
    let has = |g: &GroupView, peer: &str| g.members.iter().any(|m| m.peer_id == peer);
    let mut changes = Vec::new();
    for member in group.members.iter().filter(|m| !has(old, &m.peer_id) && me != Some(m.peer_id.as_str())) {
        changes.push(format!("{} joined #{}", member_label(app, group, &member.peer_id), group.name));
    }
    for member in old.members.iter().filter(|m| !has(group, &m.peer_id) && me != Some(m.peer_id.as_str())) {
        changes.push(format!("{} is no longer in #{}", member_label(app, old, &member.peer_id), group.name));
    }
    changes
}

/// Take a conversation off the list with what was typed for it: its draft is
/// dropped, and if it was open, the input (its text) is emptied, so nothing typed
/// for it moves to the conversation focused next; the text stays in the input
/// history (Up brings it back).
pub(super) fn remove_conversation(app: &mut App, peer: &str) {
    app.conversations.retain(|c| c.peer_id() != peer);
    if let Some(draft) = app.drafts.remove(peer) {
        app.history.push(draft.text().to_owned());
    }
    if app.focused.as_deref() == Some(peer) {
        app.focused = None;
        let typed = app.input.take();
        app.history.push(typed);
        app.completion = None;
        app.pending_paths = None;
    }
    clamp_list_offset(app);
}

/// If none is focused, focus the conversation the caller asked to open on when it
/// is listed (once: it is then forgotten), else the first one.
pub(super) fn focus_default(app: &mut App, fx: &mut Vec<Effect>) {
    if app.focused.is_some() {
        return;
    }
    let listed = app.config.open_on.as_deref().is_some_and(|id| app.conversation(id).is_some());
    let asked = if listed { app.config.open_on.take() } else { None };
    if let Some(peer) = asked.or_else(|| app.conversations.first().map(|c| c.peer_id().to_owned())) {
        focus(app, &peer, fx);
    }
}

/// A `send` to `peer` is no longer in flight.
pub(super) fn sent_or_failed(app: &mut App, peer: &str) {
    if let Some(n) = app.sending.get_mut(peer) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            app.sending.remove(peer);
        }
    }
}
