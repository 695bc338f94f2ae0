//! The node's side: events (messages, state changes, contacts, presence, typing)
//! and the answers to requests, including failures.

use std::collections::HashMap;

use kith_p2p::kith_storage::{ContactState, Direction, FileState};
use kith_p2p::node::{Event, GroupChange};
use kith_p2p::views::{GroupView, MessageView};

use super::update::{
    clamp_list_offset, focus, focus_default, land_on_marker, mark_focused_read, pane, prefetch, remove_conversation,
    sent_or_failed, upsert_contact, upsert_group,
};
use super::{App, Conversation, Fetch, InviteView, NodeState, Overlay, PAGE};
use crate::action::{Effect, Response};

// ---- node events -----------------------------------------------------------------------

pub(super) fn on_event(app: &mut App, event: Event, fx: &mut Vec<Effect>) {
    match event {
        Event::MessageReceived { message } => on_message(app, message, fx),
        Event::MessageChanged { message } => super::changes::on_changed(app, message),
        Event::MessageStateChanged { id, conversation, state } if !app.set_message_state(&id, state) => {
            app.remember_orphan_state(id, state);
            unseen_outgoing(app, &conversation, fx);
        }
        Event::ContactRequest { contact } => {
            let name = contact.label().to_owned();
            upsert_contact(app, contact);
            app.set_status(format!("contact request from {name}: /accept, /reject or /block"), false);
            notify(app, &name, "wants to add you as a contact", fx);
            fx.push(Effect::Refresh);
            focus_default(app, fx);
        }
        Event::ContactChanged { contact } => {
            let before = app.conversation(&contact.peer_id).and_then(|c| c.contact()).map(|c| c.state);
            if before == Some(ContactState::PendingOut) && contact.state == ContactState::Accepted {
                app.set_status(format!("{} accepted your request", contact.label()), false);
            }
            upsert_contact(app, contact);
            focus_default(app, fx);
        }
        Event::KeyChanged { contact } => {
            let name = crate::text::sanitize_line(contact.label());
            let held = if contact.verified { "; messages to them are held until you verify again" } else { "" };
            app.set_status(format!("{name}'s key changed: compare safety numbers (kith verify {name}){held}"), true);
            upsert_contact(app, contact);
        }
        Event::GroupChanged { group } => on_group(app, group, fx),
        Event::GroupInvitation { group } => {
            let name = group.name.clone();
            app.set_status(format!("invitation to #{name}: open it, then /accept or /reject"), false);
            notify(app, &format!("#{name}"), "invites you to join", fx);
            on_group(app, group, fx);
        }
        Event::Presence { peer_id, online, last_seen } => super::presence::on_event(app, peer_id, online, last_seen),
        Event::Typing { group, peer_id, .. } => super::typing::on_event(app, group, peer_id),
        Event::RelayRefused { recipient, message, .. } => {
            let name = app.conversation(&recipient).map_or_else(|| recipient.clone(), |c| c.label().to_owned());
            app.set_status(format!("a relay refused mail for {name}: {message} (will retry)"), true);
        }
        Event::CallRinging { call, peer, outgoing } => super::call::on_ringing(app, call, peer, outgoing, fx),
        Event::CallAnswered { call, peer } => super::call::on_progress(app, call, peer, false, fx),
        Event::CallConnected { call, peer } => super::call::on_progress(app, call, peer, true, fx),
        Event::CallEnded { call, peer, reason, duration_ms } => {
            super::call::on_ended(app, call, peer, reason, duration_ms);
        }
        Event::CallSpeaking { call, peer, speaking } => super::call::on_speaking(app, &call, &peer, speaking),
        Event::RoomJoined { group } => super::room::on_joined(app, group, fx),
        Event::RoomParticipantJoined { group, peer } => super::room::on_participant(app, group, peer, true),
        Event::RoomParticipantLeft { group, peer } => super::room::on_participant(app, group, peer, false),
        Event::RoomSpeaking { group, peer, speaking } => super::room::on_speaking(app, group, peer, speaking),
        Event::RoomLeft { group, reason } => super::room::on_left(app, group, reason),
        Event::FileProgress { id, have, .. } => super::files::on_progress(app, id, have),
        Event::FileChanged { file } => super::files::on_file_changed(app, file, fx),
        Event::FileRemoved { id, .. } => super::files::on_file_removed(app, &id),
        Event::MessageReceipts { id, conversation, receipts } => {
            super::changes::on_receipts(app, &id, &conversation, receipts);
        }
        Event::ProfileChanged { profile } => super::profile::on_changed(app, profile, fx),
        // Missed events: re-read everything, reload the open conversation.
        Event::Lagged { .. } => reload(app, fx),
        _ => {}
    }
}

/// Re-read everything the interface shows (after missed events or a reconnection):
/// the list, the status, the groups, and the open conversation's newest page.
pub(super) fn reload(app: &mut App, fx: &mut Vec<Effect>) {
    // Status lines may have changed unseen: ask for them again.
    app.statuses.asked.clear();
    for conv in &mut app.conversations {
        conv.loaded = false;
        conv.loading = None;
        conv.preview_requested = false;
    }
    if let Some(id) = app.focused.clone()
        && let Some(conv) = app.conversation_mut(&id)
    {
        conv.loading = Some(Fetch::Newest);
        fx.push(Effect::LoadHistory { contact: id, before: None, limit: PAGE });
    }
    fx.push(Effect::Refresh);
    fx.push(Effect::LoadConversations);
    app.status_loading = true;
    fx.push(Effect::LoadStatus);
    fx.push(Effect::LoadGroups);
    fx.push(Effect::LoadPresence);
    super::call::sync(app, fx);
    super::room::sync(app, fx);
}

/// A message of ours we have not seen changed state: unless a `send` from here is
/// in flight (its answer can be overtaken by the event), another client (a script,
/// the CLI) wrote it. Re-read the conversation, or its preview if not open.
fn unseen_outgoing(app: &mut App, conversation: &str, fx: &mut Vec<Effect>) {
    let belongs = |c: &Conversation| c.messages.iter().chain(c.last.iter()).any(|m| m.conversation == conversation);
    let Some(peer) = app.conversations.iter().find(|c| belongs(c)).map(|c| c.peer_id().to_owned()) else { return };
    if app.sending.get(&peer).is_some_and(|n| *n > 0) {
        return;
    }
    let focused = app.focused.as_deref() == Some(peer.as_str());
    let Some(conv) = app.conversation_mut(&peer) else { return };
    if conv.detached() {
        // Scrolled far up: the message shows when the newest run is paged back in.
        conv.maybe_unseen();
    } else if focused {
        if conv.loaded && conv.loading.is_none() {
            conv.loading = Some(Fetch::Newest);
            fx.push(Effect::LoadHistory { contact: peer, before: None, limit: PAGE });
        }
    } else {
        conv.loaded = false;
        fx.push(Effect::LoadPreview { contact: peer });
    }
}

/// A group was created, joined or changed: list it, and say so when we are out.
fn on_group(app: &mut App, group: GroupView, fx: &mut Vec<Effect>) {
    let was_active = app.conversation(&group.id).and_then(|c| c.group_view()).map(|g| g.active);
    if was_active == Some(true) && !group.active {
        app.set_status(format!("you are no longer in #{}", group.name), false);
    }
    let id = group.id.clone();
    upsert_group(app, group);
    request_preview(app, &id, fx);
    focus_default(app, fx);
}

/// Ask once for the newest message of a conversation the list has no preview for.
fn request_preview(app: &mut App, id: &str, fx: &mut Vec<Effect>) {
    if let Some(conv) = app.conversation_mut(id)
        && conv.last.is_none()
        && !conv.preview_requested
        && !conv.is_request()
    {
        conv.preview_requested = true;
        fx.push(Effect::LoadPreview { contact: id.to_owned() });
    }
}

fn on_message(app: &mut App, message: MessageView, fx: &mut Vec<Effect>) {
    let peer = App::key_of(&message).to_owned();
    if app.conversation(&peer).is_none() {
        // Someone (or a group) the list does not know yet: re-read it.
        fx.push(if message.peer.is_some() { Effect::Refresh } else { Effect::LoadGroups });
        return;
    }
    let focused = app.focused.as_deref() == Some(peer.as_str());
    let seen = focused && app.terminal_focused;
    let incoming = message.direction == Direction::Incoming;
    if incoming {
        // What they were typing is here.
        super::typing::on_message(app, &peer, &message.author);
    }
    // In a group, say who wrote where: "Алиса in #team".
    let name = app.conversation(&peer).map_or_else(String::new, |c| match c.group_view() {
        Some(g) => format!("{} in #{}", c.author_label(app, &message.author), g.name),
        None => c.label().to_owned(),
    });
    let text = crate::text::summary(&message);
    let (_, height) = pane(app);
    if let Some(conv) = app.conversation_mut(&peer) {
        // While the first page is on its way, keep the message: the page may predate it.
        conv.arrive(message.clone());
        conv.evict(height);
        conv.last = Some(message.clone());
        if incoming && !seen {
            conv.unread += 1;
            if focused && conv.unread_marker.is_none() {
                conv.unread_marker = Some(message.id.clone());
            }
        }
    }
    app.apply_orphan_states();
    app.sort();
    if !incoming {
        return;
    }
    if seen {
        fx.push(Effect::MarkRead { contact: peer });
    } else if super::prefs::should_notify(app, &peer, &message) {
        notify(app, &name, &text, fx);
    }
}

pub(super) fn notify(app: &App, from: &str, text: &str, fx: &mut Vec<Effect>) {
    if app.config.bell {
        fx.push(Effect::Bell);
    }
    if app.config.notify {
        fx.push(Effect::Notify { from: from.to_owned(), text: text.to_owned() });
    }
}

// ---- responses -------------------------------------------------------------------------

pub(super) fn on_response(app: &mut App, response: Response, fx: &mut Vec<Effect>) {
    if app.node == NodeState::Connecting {
        app.node = NodeState::Connected;
    }
    match response {
        Response::Snapshot { contacts, requests, inbox } => {
            // A 1:1 entry is keyed by its contact, a group's by its conversation (= group) id.
            let unread: HashMap<String, (u32, Option<MessageView>)> = inbox
                .into_iter()
                .map(|e| (e.contact.map_or(e.conversation, |c| c.peer_id), (e.unread, e.last)))
                .collect();
            let requests: HashMap<String, (usize, Option<String>)> =
                requests.into_iter().map(|r| (r.contact.peer_id, (r.held_messages, r.preview))).collect();
            let known: Vec<String> = contacts.iter().map(|c| c.peer_id.clone()).collect();
            for contact in contacts {
                let peer = contact.peer_id.clone();
                upsert_contact(app, contact);
                let Some(conv) = app.conversation_mut(&peer) else { continue };
                let (count, last) = unread.get(&peer).cloned().unwrap_or((0, None));
                conv.unread = count;
                if last.is_some() {
                    conv.last = last;
                }
                if let Some((held, preview)) = requests.get(&peer) {
                    conv.held = *held;
                    conv.request_preview = preview.clone();
                }
                if conv.last.is_none() && !conv.preview_requested && !conv.is_request() {
                    conv.preview_requested = true;
                    fx.push(Effect::LoadPreview { contact: peer });
                }
            }
            for conv in app.conversations.iter_mut().filter(|c| c.group_view().is_some()) {
                if let Some((count, last)) = unread.get(conv.peer_id()).cloned() {
                    conv.unread = count;
                    if last.is_some() {
                        conv.last = last;
                    }
                }
            }
            // Groups come with `groups`, not `contacts`.
            let gone: Vec<String> = app
                .conversations
                .iter()
                .filter(|c| c.contact().is_some())
                .map(|c| c.peer_id().to_owned())
                .filter(|p| !known.contains(p))
                .collect();
            for peer in gone {
                remove_conversation(app, &peer);
            }
            app.sort();
            focus_default(app, fx);
            mark_focused_read(app, fx);
            clamp_list_offset(app);
            super::profile::prefetch(app, fx);
        }
        Response::Groups(groups) => {
            let known: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
            for group in groups {
                let id = group.id.clone();
                upsert_group(app, group);
                request_preview(app, &id, fx);
            }
            let gone: Vec<String> = app
                .conversations
                .iter()
                .filter(|c| c.group_view().is_some())
                .map(|c| c.peer_id().to_owned())
                .filter(|id| !known.contains(id))
                .collect();
            for id in gone {
                remove_conversation(app, &id);
            }
            app.sort();
            focus_default(app, fx);
            clamp_list_offset(app);
        }
        Response::GroupUpdated { op: GroupChange::Decline { .. }, group } => {
            remove_conversation(app, &group.id);
            app.set_status(format!("declined the invitation to #{}", group.name), false);
            focus_default(app, fx);
            clamp_list_offset(app);
        }
        Response::GroupUpdated { op, group } => {
            let (id, name) = (group.id.clone(), group.name.clone());
            upsert_group(app, group);
            let text = match &op {
                GroupChange::Accept { .. } => format!("joined #{name}"),
                GroupChange::Create { .. } => format!("created #{name}: /group add <contact> adds members"),
                GroupChange::Add { contact, .. } => format!("added {contact} to #{name}"),
                GroupChange::Remove { member, .. } => format!("removed {member} from #{name}"),
                GroupChange::Leave { .. } => format!("left #{name}"),
                _ => format!("changed #{name}"),
            };
            app.set_status(text, false);
            if matches!(op, GroupChange::Create { .. }) && app.input.is_empty() {
                focus(app, &id, fx);
            } else {
                request_preview(app, &id, fx);
            }
        }
        Response::Presence(list) => super::presence::on_list(app, &list),
        Response::Typing { .. } => {}
        Response::Status(status) => {
            app.me = Some(status.peer_id);
            app.outbox = status.outbox;
            app.queues = status.queues;
            app.status_loading = false;
            app.ticks_since_status = 0;
        }
        Response::History { contact, before, limit, messages } => {
            let (_, height) = pane(app);
            let focused = app.focused.as_deref() == Some(contact.as_str());
            let Some(conv) = app.conversation_mut(&contact) else { return };
            let full = messages.len() >= limit;
            // Which request this answers; anything else is stale (the window moved on).
            let asked_newer = matches!(&conv.loading, Some(Fetch::Newer { before: b }) if *b == before);
            let front = conv.messages.front().map(|m| m.id.clone());
            let mut land = false;
            if asked_newer {
                conv.loading = None;
                if conv.load_newer(messages, limit) {
                    // It did not reach back to the window: ask again, longer.
                    if let Some((before, limit)) = conv.newer_request() {
                        conv.loading = Some(Fetch::Newer { before: before.clone() });
                        fx.push(Effect::LoadHistory { contact: contact.clone(), before, limit });
                    }
                }
            } else if before.is_none() && conv.loading == Some(Fetch::Newest) {
                // (A newest page asked for before the window moved on — a search
                // jumped deep into the history meanwhile — is stale like the others.)
                conv.loading = None;
                conv.load_newest(messages, full);
                // Where its files stand (and so which pictures to preview).
                fx.push(Effect::LoadFiles { contact: contact.clone() });
                land = focused && conv.pending_marker > 0;
                conv.resolve_marker();
            } else if before.is_some() && before == front {
                conv.loading = None;
                conv.load_older(messages, full);
            } else {
                return;
            }
            // Opening a conversation with unread messages lands at the first of them
            // (before evicting, which keeps what is around the view).
            if land {
                land_on_marker(app);
            }
            let Some(conv) = app.conversation_mut(&contact) else { return };
            conv.evict(height);
            if let Some(newest) = conv.messages.back()
                && conv.last.as_ref().is_none_or(|l| l.lamport <= newest.lamport)
            {
                conv.last = Some(newest.clone());
            }
            app.apply_orphan_states();
            app.sort();
            if focused {
                prefetch(app, fx);
                super::files::want_previews(app, fx);
            }
        }
        Response::Preview { contact, message } => {
            if let (Some(conv), Some(message)) = (app.conversation_mut(&contact), message)
                && conv.last.as_ref().is_none_or(|last| last.lamport <= message.lamport)
            {
                conv.last = Some(message);
            }
            app.sort();
        }
        Response::Sent(message) => {
            let peer = App::key_of(&message).to_owned();
            sent_or_failed(app, &peer);
            // A message that is not through yet sits in a queue: show it at the next tick.
            app.ticks_since_status = app.ticks_since_status.max(super::update::STATUS_TICKS_IDLE);
            let (_, height) = pane(app);
            if let Some(conv) = app.conversation_mut(&peer) {
                conv.arrive(message.clone());
                conv.evict(height);
                conv.last = Some(message);
            }
            app.apply_orphan_states();
            app.sort();
        }
        Response::Changed(message) => {
            if message.deleted {
                app.set_status("deleted for everyone", false);
            }
            super::changes::on_changed(app, message);
        }
        Response::Hidden { id } => super::changes::on_hidden(app, &id, fx),
        Response::Marked { .. } => {}
        Response::Files { files, .. } => super::files::on_files(app, files, fx),
        Response::Call { op, call } => super::call::on_response(app, op, call),
        Response::Calls { active, history } => super::call::on_calls(app, active, history),
        Response::Room { op, room } => super::room::on_response(app, op, room),
        Response::Rooms(rooms) => super::room::on_rooms(app, rooms),
        Response::Search { query, hits } => {
            super::search::on_results(app, query, super::SearchResults::Hits(hits), fx);
        }
        Response::File(entry) => {
            let name = crate::text::sanitize_line(&kith_p2p::files::safe_file_name(&entry.name));
            match entry.state {
                FileState::Downloading => app.set_status(format!("downloading {name}…"), false),
                FileState::Complete => app.set_status(format!("{name} is here: Ctrl+O opens it"), false),
                _ => {}
            }
            super::files::on_file_changed(app, entry, fx);
        }
        Response::Opened { path } => {
            app.set_status(format!("opened {}", crate::text::tilde(&path, app.home_dir())), false);
        }
        Response::Picture { id, picture } => super::files::on_picture(app, id, Some(picture)),
        Response::Encoded { id, room, picture } => super::viewer::on_encoded(app, &id, room, picture),
        Response::Invite { invite, qr } => {
            if let Some(Overlay::Invite(view)) = &mut app.overlay {
                *view = InviteView::Ready { invite, qr, scroll: 0, copied: false };
            }
        }
        Response::Added(contact) => {
            let peer = contact.peer_id.clone();
            let text = match contact.state {
                ContactState::PendingOut => format!("contact request sent to {}", contact.label()),
                _ => format!("added {}", contact.label()),
            };
            upsert_contact(app, contact);
            app.set_status(text, false);
            // Answers come late: do not split a message being typed.
            if app.input.is_empty() {
                focus(app, &peer, fx);
            } else {
                focus_default(app, fx);
            }
        }
        Response::ContactUpdated(contact) => {
            let text = match contact.state {
                ContactState::Blocked => format!("blocked {}", contact.label()),
                ContactState::Accepted => format!("accepted {}", contact.label()),
                _ => format!("updated {}", contact.label()),
            };
            upsert_contact(app, contact);
            app.set_status(text, false);
            focus_default(app, fx);
        }
        Response::ContactRemoved { peer_id } => {
            let name = app.conversation(&peer_id).map_or_else(|| peer_id.clone(), |c| c.label().to_owned());
            remove_conversation(app, &peer_id);
            app.set_status(format!("removed {name} and your conversation"), false);
            focus_default(app, fx);
        }
        Response::Unblocked(contact) => {
            app.set_status(format!("unblocked {}", contact.label()), false);
            upsert_contact(app, contact);
            focus_default(app, fx);
        }
        Response::Conversations(list) => super::prefs::on_conversations(app, list),
        Response::MuteChanged(view) => super::prefs::on_mute_changed(app, view),
        Response::DraftSaved { .. } => super::prefs::on_draft_saved(app),
        Response::Renamed(contact) => {
            app.set_status(format!("renamed to {}", contact.label()), false);
            upsert_contact(app, contact);
        }
        Response::Profile { contact, avatar, profile } => super::profile::on_profile(app, contact, avatar, profile, fx),
        Response::ProfileSet(profile) => super::profile::on_set(app, profile, fx),
        Response::Verified { mark, view } => super::verify::on_verified(app, mark, view),
        Response::Avatar { peer_id, room, picture, encoded } => {
            super::profile::on_avatar(app, &peer_id, room, picture, encoded);
        }
        Response::Paths { word, candidates } => {
            // Only if the input is still as it was when Tab was pressed.
            let Some((range, text, backwards)) = app.pending_paths.take() else { return };
            if app.input.text() != text || text.get(range.clone()) != Some(word.as_str()) {
                return;
            }
            app.completion = crate::complete::Completion::with(&mut app.input, range, candidates, backwards);
        }
        Response::StatusReport(status) => {
            for line in status_report(app, &status) {
                app.note(line, false);
            }
            app.overlay = Some(Overlay::Log { scroll: 0 });
            on_response(app, Response::Status(status), fx);
        }
        Response::Removed { peer_id } => {
            let name = app.conversation(&peer_id).map_or_else(|| peer_id.clone(), |c| c.label().to_owned());
            remove_conversation(app, &peer_id);
            app.set_status(format!("rejected {name}"), false);
            focus_default(app, fx);
        }
    }
}

/// `/status` as log lines: who we are, where we listen, who is connected, and what
/// waits for delivery.
fn status_report(app: &App, status: &kith_p2p::node::Status) -> Vec<String> {
    let name = |peer: &str| app.conversation(peer).map_or_else(|| crate::text::short_peer(peer), |c| c.label().to_owned());
    let list = |items: &[String]| if items.is_empty() { "none".to_owned() } else { items.join(", ") };
    let peers: Vec<String> = status.connected_peers.iter().map(|p| name(p)).collect();
    let mut lines = vec![
        format!("status: you are {}", status.peer_id),
        format!("listening on: {}", list(&status.listen_addrs)),
        format!("reachability: {}", status.reachability),
        format!("relays: {}", list(&status.relays)),
        format!("connected: {} ({} in the routing table)", list(&peers), status.routing_table_size),
        format!("queued: {}", status.outbox),
    ];
    if status.storage_failed {
        lines.push("storage: FAILED: a write to disk failed; nothing new is stored or sent until kith restarts".to_owned());
    }
    for queue in &status.queues {
        lines.push(format!(
            "  for {}: {} waiting, {}",
            name(&queue.peer_id),
            queue.waiting,
            crate::ui::status::attempt(queue)
        ));
    }
    lines
}

/// Give the text of a message that was not sent back rather than lose it: into the
/// input if its conversation is open, else into that conversation's draft, after
/// whatever is there already (failures arrive late, often after more was typed, and
/// several sends to one conversation can fail).
fn give_back(app: &mut App, contact: &str, text: &str) {
    if app.focused.as_deref() == Some(contact) {
        // During an edit the input is the edit: the text goes to what comes back after it.
        let editing = app.conversation_mut(contact).and_then(|c| c.compose.as_mut());
        if let Some(super::Compose::Edit { stash, .. }) = editing {
            stash.append(text);
        } else {
            app.input.append(text);
        }
    } else if app.conversation(contact).is_some() {
        app.drafts.entry(contact.to_owned()).or_default().append(text);
    } else {
        // The conversation is gone: Up in the input brings the text back.
        app.history.push(text.to_owned());
    }
}

/// A request was sent but its outcome is unknown: the connection broke before the
/// answer came. A message may be stored and on its way, so its text is not given
/// back (that could send it twice); the reload after reconnecting shows it if the
/// node has it, and the input history has the text. Anything else is told like a
/// failure.
pub(super) fn on_interrupted(app: &mut App, effect: Effect, error: String) {
    let (Effect::Send { contact, .. } | Effect::SendFile { contact, .. }) = &effect else {
        return on_failure(app, effect, error);
    };
    sent_or_failed(app, contact);
    let name = app.conversation(contact).map_or_else(|| contact.clone(), |c| c.label().to_owned());
    app.set_status(
        format!(
            "the connection broke while sending to {name}: the message may have been sent \
             (it shows once the node is back; Up brings the text back): {error}"
        ),
        true,
    );
}

pub(super) fn on_failure(app: &mut App, effect: Effect, error: String) {
    if super::call::on_failure(app, &effect, &error)
        || super::room::on_failure(app, &effect, &error)
        || super::profile::on_failure(app, &effect, &error)
        || super::verify::on_failure(app, &effect, &error)
    {
        return;
    }
    // Without a node, reads fail by the dozen and the status line already says why:
    // only what the user asked for is worth saying there.
    let background = matches!(
        effect,
        Effect::Refresh
            | Effect::LoadStatus
            | Effect::LoadGroups
            | Effect::LoadPresence
            | Effect::LoadHistory { .. }
            | Effect::MarkRead { .. }
            | Effect::LoadFiles { .. }
    );
    let offline = matches!(app.node, NodeState::Disconnected { .. });
    let what = match effect {
        Effect::LoadHistory { contact, .. } => {
            if let Some(conv) = app.conversation_mut(&contact) {
                conv.loading = None;
            }
            "loading messages"
        }
        // A preview is a nicety and a typing notice best effort: a failure says nothing.
        Effect::LoadPreview { .. } | Effect::Typing { .. } => return,
        Effect::Invite => {
            if matches!(app.overlay, Some(Overlay::Invite(_))) {
                app.overlay = None;
            }
            "creating an invite"
        }
        Effect::Send { text, contact, reply_to } => {
            sent_or_failed(app, &contact);
            give_back(app, &contact, &text);
            if let Some(id) = reply_to {
                super::changes::reply_failed(app, &contact, &id);
            }
            "not sent"
        }
        change @ (Effect::Edit { .. } | Effect::Delete { .. } | Effect::React { .. }) => {
            return super::changes::on_failure(app, change, &error);
        }
        Effect::SendFile { contact, path, caption } => {
            sent_or_failed(app, &contact);
            give_back(app, &contact, &super::files::file_command(&path, caption.as_deref()));
            "file not sent"
        }
        Effect::LoadFiles { .. } => "loading the files",
        Effect::GetFile { .. } => "fetching the file",
        Effect::OpenFile { path } => {
            // Not a failure of the file: it is there, only nothing here opens it.
            let path = crate::text::tilde(&path, app.home_dir());
            app.set_status(format!("saved at {path} ({error})"), false);
            return;
        }
        Effect::DecodePicture { id, .. } => {
            super::files::on_picture(app, id, None);
            return;
        }
        Effect::EncodePicture { id, room, .. } => {
            super::viewer::on_failed(app, &id, room, error);
            return;
        }
        Effect::Refresh => "loading contacts",
        Effect::LoadStatus => {
            app.status_loading = false;
            app.ticks_since_status = 0;
            "loading the node status"
        }
        Effect::LoadGroups => "loading groups",
        Effect::LoadPresence => {
            // A node without presence (older than it) refuses the request: nothing
            // is shown, as with presence off; the log keeps why.
            app.note(format!("loading presence: {error}"), true);
            return;
        }
        Effect::Group(op) => match op {
            GroupChange::Create { .. } => "creating the group",
            GroupChange::Add { .. } => "adding to the group",
            GroupChange::Remove { .. } => "removing from the group",
            GroupChange::Leave { .. } => "leaving the group",
            GroupChange::Accept { .. } => "joining the group",
            GroupChange::Decline { .. } => "declining the invitation",
            _ => "changing the group",
        },
        Effect::MarkRead { .. } => "marking as read",
        Effect::Add { .. } => "adding the contact",
        Effect::Accept { .. } => "accepting",
        Effect::Reject { .. } => "rejecting",
        Effect::Block { .. } => "blocking",
        Effect::Unblock { .. } => "unblocking",
        Effect::Remove { .. } => "removing the contact",
        Effect::Rename { .. } => "renaming",
        Effect::ShowStatus => "reading the node status",
        Effect::LoadConversations => "loading mutes and drafts",
        Effect::MuteConversation { .. } | Effect::UnmuteConversation { .. } => "muting",
        Effect::SaveDraft { contact, text } => {
            super::prefs::on_draft_failed(app, &contact, &text);
            "saving the draft"
        }
        Effect::ListPaths { word } => {
            // Only the completion it was for (a newer Tab may wait already).
            let pending = app.pending_paths.as_ref().and_then(|(range, text, _)| text.get(range.clone()));
            if pending == Some(word.as_str()) {
                app.pending_paths = None;
            }
            "completing the path"
        }
        _ => "request",
    };
    if background && offline {
        app.note(format!("{what}: {error}"), true);
    } else {
        app.set_status(format!("{what}: {error}"), true);
    }
}
