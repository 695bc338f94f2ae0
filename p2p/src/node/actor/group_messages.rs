//! Group messages in the actor: sealing and publishing, the relays' group logs, and
//! opening what arrives. (Membership: [`super::groups`].)
//!
//! - **Sending.** A message is sealed once with the author's current key (and the
//!   group secret's outer layer), stored with an outbox entry (acknowledged to the
//!   caller once on disk), published on the group's topic and appended to the group's
//!   log on each of its relays. It is `sent` once a relay holds it (or, for a group
//!   without relays, once it went out on gossip).
//! - **Receiving.** Receivers validate before gossip forwards anything: a message
//!   that does not open under the group secret, or whose signature fails, is
//!   rejected and never stored. An authentic message whose key (or whose author's
//!   `Add`) has not arrived yet is kept in `group_pending` — at most
//!   [`MAX_PENDING`] per group and [`MAX_PENDING_PER_AUTHOR`] per author — and opened
//!   when it does.
//! - **Catch-up.** Members fetch each group log from their cursor at start, when they
//!   join, when they connect to a group relay and every drain interval.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use kith_storage::{
    Direction, Group, GroupId, Inserted, Message, MessageId, MessageState, OutboxEntry, Recipient,
};
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::request_response;
use libp2p::{Multiaddr, PeerId};

use super::Actor;
use super::groups::relays_of;
use crate::group::post::GroupPost;
use crate::group::sender_key::{self, SenderKey};
use crate::group as grp;
use crate::grouplog::{self, GroupLogRequest, GroupLogResponse};
use crate::node::grouplog_client::{Answer, Append};
use crate::node::{Event, NodeError};
use crate::ops::{self, OpError};

/// Authentic messages kept per group while their keys (or authors' `Add`s) are on the
/// way; past it, new ones are dropped (a relay's log still has them).
pub(super) const MAX_PENDING: usize = 10_000;
/// Of those, at most this many by one author: a removed member who still holds the
/// group secret cannot fill the rest.
pub(super) const MAX_PENDING_PER_AUTHOR: usize = 1_000;

/// Where an outgoing message goes.
pub(super) enum Dest {
    Peer(PeerId),
    Group(GroupId),
}

pub(super) fn cursor_key(group: &GroupId, relay: &PeerId) -> String {
    format!("grouplog_cursor/{group}/{relay}")
}

fn not_allowed(why: impl Into<String>) -> NodeError {
    NodeError::Op(OpError::NotAllowed(why.into()))
}

/// What opening one group message found.
enum Opened {
    /// A message to store (boxed: it is much larger than the other variants).
    Message(Box<Message>),
    /// Authentic but not for display (ours, a blocked author, a group we left).
    Dropped,
    /// Authentic, but cannot be read yet; `member` says whether its author is a member.
    Later { author: PeerId, member: bool },
    /// Forged, tampered, malformed, from another group or from a former member.
    Refused,
}

impl Actor {
    /// Pick up outbox entries of group messages (from a previous run) as unsent.
    pub(super) fn load_group_outbox(&mut self, entries: Vec<OutboxEntry>) {
        let mut groups = BTreeSet::new();
        for entry in entries {
            let Recipient::Group(group) = entry.recipient else { continue };
            if self.group_messages.queue(group, entry.id, entry.payload) {
                groups.insert(group);
            }
        }
        for group in groups {
            self.push_group(group);
        }
    }

    // ---- sending ------------------------------------------------------------------

    /// Compose and seal a text to a group (nothing stored yet; see `send_batch`).
    pub(super) fn compose_group(
        &mut self,
        group: &Group,
        text: &str,
        file: Option<&kith_storage::FileRef>,
        link: Option<&kith_storage::Link>,
        lamports: &mut HashMap<kith_storage::ConversationId, u64>,
    ) -> Result<(Message, OutboxEntry), NodeError> {
        // Membership is checked by `compose_group_text` (on the stored `active`).
        let joined = self.groups.joined.get(&group.id).ok_or_else(|| not_allowed("unknown group"))?;
        let message = ops::compose_group_text(&self.store, &self.me, group, text, file, link, lamports)?;
        if crate::views::counted(&message) && group.members.len() <= grp::MAX_COUNTED_MEMBERS {
            // Whom it is for now: receipts from anyone else (a member added later, who
            // cannot read it) are not counted. Not flushed: lost with the message in a
            // crash, or later counted over the members as they are then.
            let me = self.me.to_base58();
            let others: Vec<&str> = group.members.iter().map(|m| m.peer_id.as_str()).filter(|p| *p != me).collect();
            if let Err(e) = self.store.group_receipts().expect(message.conversation, message.id, &others) {
                tracing::warn!(error = %e, "recording whom a group message is for failed");
            }
        }
        let post = GroupPost::Text {
            id: message.id,
            lamport: message.lamport,
            sent_at_ms: message.sent_at_ms,
            text: message.text.clone(),
            file: file.map(crate::files::offer_of),
            link: message.link.clone(),
        };
        let plaintext = post.encode().map_err(OpError::from)?;
        let secret = joined.membership.secret();
        let key = joined.key.clone();
        let sealed = sender_key::seal(&self.config.identity, group.id, secret, &key, message.lamport, &plaintext)
            .map_err(|e| NodeError::Op(OpError::Invalid(e.to_string())))?;
        // Our chain moves on and this message's key is forgotten; written now, made
        // durable by the flush that stores the message.
        let next = key.next();
        // Unless the step is written, a restart would seal the next message with this
        // message's key again: then this one does not go.
        self.write_my_key(group.id, &next).map_err(|e| NodeError::Op(OpError::NotStored(e.to_string())))?;
        if let Some(joined) = self.groups.joined.get_mut(&group.id) {
            joined.key = next;
        }
        let entry = OutboxEntry {
            id: message.id,
            recipient: Recipient::Group(group.id),
            payload: sealed,
            attempts: 0,
            next_attempt_ms: message.sent_at_ms,
            created_at_ms: message.sent_at_ms,
        };
        Ok((message, entry))
    }

    /// A stored group message: send it on its way.
    pub(super) fn queue_group_message(&mut self, group: GroupId, entry: OutboxEntry) {
        self.group_messages.queue(group, entry.id, entry.payload);
    }

    /// Publish what is unpublished and append what no relay holds yet.
    pub(super) fn push_group(&mut self, group: GroupId) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let topic = joined.topic.clone();
        let relays = relays_of(joined.membership.state());
        let log = grouplog::log_id(joined.membership.secret());
        let mut gone_out = Vec::new();
        for (id, sealed) in self.group_messages.unpublished(group) {
            match self.swarm.behaviour_mut().gossipsub.publish(topic.clone(), sealed) {
                Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                    self.group_messages.published(id);
                    gone_out.push(id);
                }
                Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                Err(e) => tracing::debug!(%group, error = %e, "publishing a group message failed"),
            }
        }
        if relays.is_empty() {
            // Nobody keeps a log: having gone out on gossip is as far as it gets.
            self.group_held(&gone_out);
        }
        for append in self.group_messages.appends(group, log, relays, Instant::now()) {
            let Append { relay, addr, request, ids } = append;
            let id = self.swarm.behaviour_mut().grouplog.send_request_with_addresses(&relay, request, vec![addr]);
            self.group_messages.append_sent(id, group, relay, ids);
        }
    }

    /// The retry timer fired: try every group with unsent messages again.
    pub(super) fn group_tick(&mut self, now: Instant) {
        for group in self.group_messages.tick(now) {
            self.push_group(group);
        }
    }

    /// These messages are held (by a relay, or gone out where no relay keeps a log):
    /// they are `sent` and leave the outbox.
    fn group_held(&mut self, ids: &[MessageId]) {
        let ids = self.group_messages.still_unsent(ids);
        if ids.is_empty() {
            return;
        }
        let updates: Vec<(MessageId, MessageState)> = ids.iter().map(|id| (*id, MessageState::Sent)).collect();
        let moved = match self.store.set_message_states(&updates, true) {
            Ok(moved) => moved,
            Err(e) => {
                tracing::error!(error = %e, "recording group message states failed; will retry");
                return;
            }
        };
        let groups: HashMap<MessageId, GroupId> = self.group_messages.held(&ids, Instant::now()).into_iter().collect();
        let mut events = Vec::new();
        for ((id, _), new) in updates.iter().zip(moved) {
            if let (Some(group), Some(state)) = (groups.get(id), new)
                && !self.store.messages().is_change(*id)
            {
                let conversation = grp::conversation(group).to_string();
                events.push(Event::MessageStateChanged { id: id.to_string(), conversation, state });
            }
        }
        // Announced once durable; a crash before that sends them again, and the
        // relay answers the repeat as held: no flush of its own (see `flusher`).
        if !events.is_empty() {
            self.flusher.after_some_flush(super::AfterFlush::Events(events));
        }
    }

    /// An event of the group log protocol.
    pub(super) fn grouplog_event(&mut self, event: request_response::Event<GroupLogRequest, GroupLogResponse>) {
        let now = Instant::now();
        match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => match self.group_messages.answered(request_id, response, now) {
                Answer::Held(ids) => self.group_held(&ids),
                Answer::Refused { group, relay, refusal } => {
                    tracing::warn!(%group, %relay, reason = refusal.as_str(), "relay refused a group append");
                    self.emit(Event::RelayRefused {
                        relay: relay.to_string(),
                        recipient: group.to_string(),
                        code: refusal.as_str().to_owned(),
                        message: refusal.to_string(),
                    });
                }
                Answer::Page { group, relay, items, more } => self.fetched_page(group, relay, items, more),
                Answer::Nothing => {}
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                tracing::debug!(%error, "group log request failed");
                self.group_messages.failed(request_id, now);
            }
            _ => {}
        }
    }

    // ---- receiving ------------------------------------------------------------------

    /// A gossipsub event.
    pub(super) fn gossip_event(&mut self, event: gossipsub::Event) {
        if let gossipsub::Event::Message { propagation_source, message_id, message } = event {
            let verdict = match self.groups.by_topic.get(&message.topic).copied() {
                Some(group) => self.group_message(group, &message.data),
                None => MessageAcceptance::Ignore,
            };
            let _ = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &propagation_source,
                verdict,
            );
        }
    }

    /// Check, open and store one group message from gossip. The verdict says whether
    /// gossip may forward it: a member's authentic message is accepted even when we
    /// cannot read it yet (it is kept for later).
    fn group_message(&mut self, group: GroupId, bytes: &[u8]) -> MessageAcceptance {
        // Unstored for a disk failure: still forwarded, others may store it.
        self.sort_group_messages(group, std::iter::once(bytes)).unwrap_or(MessageAcceptance::Accept)
    }

    /// Open group messages: store the readable ones (one group commit), keep the
    /// authentic ones that cannot be read yet in `group_pending`. Returns gossip's
    /// verdict on the last one, or None if storing failed (nothing was stored; the
    /// caller keeps its cursor).
    fn sort_group_messages<'a>(
        &mut self,
        group: GroupId,
        all: impl Iterator<Item = &'a [u8]>,
    ) -> Option<MessageAcceptance> {
        let mut readable = Vec::new();
        let mut last = None;
        for bytes in all {
            let verdict = match self.open_group_message(group, bytes) {
                Opened::Message(message) => {
                    readable.push(*message);
                    MessageAcceptance::Accept
                }
                Opened::Dropped => MessageAcceptance::Accept,
                Opened::Later { author, member } => {
                    self.keep_pending(group, &author, bytes);
                    if member { MessageAcceptance::Accept } else { MessageAcceptance::Reject }
                }
                Opened::Refused => MessageAcceptance::Reject,
            };
            last = Some(verdict);
        }
        if !self.store_group_messages(&readable) {
            return None;
        }
        last
    }

    /// Store opened group messages in one transaction and announce the new ones once
    /// the flushing thread has made them durable. Returns whether they were stored.
    /// (Nothing waits on them but the announcement: no one is told we hold them, and a
    /// message lost in a crash comes back from the group's relay logs, whose cursor
    /// moves only after a flush.)
    fn store_group_messages(&mut self, messages: &[Message]) -> bool {
        // A conversation the user deleted comes back for new messages (the deleted
        // ones stay deleted: storage refuses them by their tombstones).
        let conversations: BTreeSet<kith_storage::ConversationId> = messages.iter().map(|m| m.conversation).collect();
        for conversation in conversations {
            let kind = kith_storage::ConversationKind::Group { group_id: GroupId(conversation.0) };
            if let Err(e) = self.store.conversations().ensure(conversation, kind, ops::now_ms()) {
                tracing::error!(error = %e, "recreating a group conversation failed");
                return false;
            }
        }
        let inserted = match self.store.stage_incoming(messages) {
            Ok(inserted) => inserted,
            Err(e) => {
                tracing::error!(error = %e, "storing group messages failed");
                return false;
            }
        };
        // Their authors hear that we hold them ("delivered to 3 of 5"), gathered for
        // a moment (`send_group_receipts`); changes (edits, reactions) are not
        // counted, and groups past `MAX_COUNTED_MEMBERS` count nothing.
        let now = Instant::now();
        for (m, _) in messages.iter().zip(&inserted).filter(|(_, inserted)| **inserted == Inserted::New) {
            let small = self
                .groups
                .joined
                .get(&GroupId(m.conversation.0))
                .is_some_and(|j| j.membership.state().members.len() <= grp::MAX_COUNTED_MEMBERS);
            if small && m.link.as_ref().and_then(kith_storage::Link::changed).is_none()
                && let Ok(author) = m.author.parse::<PeerId>()
            {
                self.group_receipts.add(now, author, m.id);
            }
        }
        let events: Vec<Event> = messages
            .iter()
            .zip(inserted)
            .filter(|(_, inserted)| *inserted == Inserted::New)
            .filter_map(|(message, _)| match ops::stored_event(&self.store, message, None) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a stored group message back for its event failed");
                    None
                }
            })
            .collect();
        if !events.is_empty() {
            self.flusher.after_flush(super::AfterFlush::Events(events));
        }
        true
    }

    /// Queues the gathered delivery receipts of group messages, one per author, if
    /// they are due at `now` (all of them when `None`: the node stops).
    pub(super) fn send_group_receipts(&mut self, now: Option<Instant>) {
        let due = self.group_receipts.take_due(now);
        if due.is_empty() {
            return;
        }
        if self.queue_receipts_by_author(due) {
            self.groups.queued = true;
            self.flush_queued();
        }
    }

    /// Check and open one group message; nothing is written.
    fn open_group_message(&self, group: GroupId, bytes: &[u8]) -> Opened {
        let Some(joined) = self.groups.joined.get(&group) else { return Opened::Refused };
        if !joined.active(&self.me) {
            return Opened::Dropped;
        }
        let state = joined.membership.state();
        let authentic = match sender_key::authenticate(bytes, group, joined.membership.secret()) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%group, error = %e, "refused a group message");
                return Opened::Refused;
            }
        };
        let author = authentic.author;
        if !state.members.contains_key(&author) {
            if state.departed.contains(&author) {
                return Opened::Refused;
            }
            // Perhaps added by an operation still on its way: kept, not forwarded.
            return Opened::Later { author, member: false };
        }
        let key = self.store.groups().chain_key(group, &author.to_string(), authentic.generation).ok().flatten();
        let Some((index, key)) = key else { return Opened::Later { author, member: true } };
        let stored = SenderKey { generation: authentic.generation, index, key };
        let opened = match self.chain_point(group, author, stored, authentic.index()).and_then(|key| authentic.open(&key)) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(%group, error = %e, "refused a group message");
                return Opened::Refused;
            }
        };
        let Ok(GroupPost::Text { id, lamport, sent_at_ms, text, file, link }) = GroupPost::decode(&opened.plaintext) else {
            return Opened::Refused;
        };
        if opened.author == self.me {
            return Opened::Dropped;
        }
        if self.store.contacts().is_blocked(&opened.author).unwrap_or(false) {
            return Opened::Dropped;
        }
        Opened::Message(Box::new(Message {
            id,
            conversation: grp::conversation(&group),
            author: opened.author.to_base58(),
            lamport,
            sent_at_ms,
            received_at_ms: ops::now_ms(),
            text,
            state: MessageState::Delivered,
            direction: Direction::Incoming,
            file: file.map(|f| Box::new(crate::files::file_of(f))),
            link,
        }))
    }

    /// The key of `author`'s chain at `index` (a version 3 message's), derived from
    /// the newest point derived before if it lies between `stored` and `index`, and
    /// kept as the newest point; `stored` itself for a version 2 message.
    fn chain_point(&self, group: GroupId, author: PeerId, stored: SenderKey, index: Option<u64>) -> Result<SenderKey, grp::GroupError> {
        let Some(index) = index else { return Ok(stored) };
        let slot = (group, author, stored.generation);
        let mut chains = self.groups.chains.borrow_mut();
        let from = chains.get(&slot).filter(|k| k.index >= stored.index && k.index <= index).cloned().unwrap_or(stored);
        let key = from.at(index)?;
        if chains.len() >= super::groups::MAX_CACHED_CHAINS {
            chains.clear();
        }
        chains.insert(slot, key.clone());
        Ok(key)
    }

    /// Keep an authentic message that cannot be read yet, within the bounds.
    fn keep_pending(&mut self, group: GroupId, author: &PeerId, bytes: &[u8]) {
        let groups = self.store.groups();
        let author = author.to_string();
        if groups.pending_count(group) >= MAX_PENDING || groups.pending_count_by(group, &author) >= MAX_PENDING_PER_AUTHOR {
            tracing::warn!(%group, %author, "too many unreadable group messages; dropping one");
            return;
        }
        let digest = *blake3::hash(bytes).as_bytes();
        if let Err(e) = groups.put_pending(group, &author, &digest, bytes) {
            tracing::error!(error = %e, "keeping a pending group message failed");
        }
    }

    /// Try the group's pending messages again (a key or a member arrived).
    pub(super) fn open_pending(&mut self, group: GroupId) {
        let pending = self.store.groups().pending(group).unwrap_or_default();
        let mut readable = Vec::new();
        let mut settled = Vec::new();
        for (key, bytes) in pending {
            match self.open_group_message(group, &bytes) {
                Opened::Later { .. } => continue,
                Opened::Message(message) => readable.push(*message),
                Opened::Dropped | Opened::Refused => {}
            }
            settled.push(key);
        }
        if settled.is_empty() || !self.store_group_messages(&readable) {
            return;
        }
        // Not flushed: a removal lost in a crash opens the message again, and storage
        // answers it as a duplicate.
        for key in settled {
            if let Err(e) = self.store.groups().remove_pending(group, &key) {
                tracing::error!(error = %e, "forgetting a pending group message failed");
            }
        }
    }

    /// Fetch what the group's relays logged since our cursor.
    pub(super) fn fetch_group_log(&mut self, group: GroupId) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        if !joined.active(&self.me) {
            return;
        }
        let log = grouplog::log_id(joined.membership.secret());
        for (relay, addr) in relays_of(joined.membership.state()) {
            if !self.group_messages.start_fetch(group, relay) {
                continue;
            }
            let after: u64 = self.store.settings().get(&cursor_key(&group, &relay)).ok().flatten().unwrap_or(0);
            self.request_page(group, log, relay, Some(addr), after);
        }
    }

    fn request_page(&mut self, group: GroupId, log: [u8; 32], relay: PeerId, addr: Option<Multiaddr>, after: u64) {
        let request = GroupLogRequest::Fetch { log, after, limit: grouplog::MAX_FETCH_ITEMS as u32 };
        let behaviour = &mut self.swarm.behaviour_mut().grouplog;
        let id = match addr {
            Some(addr) => behaviour.send_request_with_addresses(&relay, request, vec![addr]),
            None => behaviour.send_request(&relay, request),
        };
        self.group_messages.fetch_sent(id, group, relay, after);
    }

    /// Every active group's log.
    pub(super) fn fetch_all_group_logs(&mut self) {
        let groups: Vec<GroupId> = self.groups.joined.keys().copied().collect();
        for group in groups {
            self.fetch_group_log(group);
        }
    }

    /// We connected to `peer`: if it keeps logs of our groups, catch up.
    pub(super) fn group_relay_connected(&mut self, peer: &PeerId) {
        let groups: Vec<GroupId> = self
            .groups
            .joined
            .iter()
            .filter(|(_, j)| relays_of(j.membership.state()).iter().any(|(r, _)| r == peer))
            .map(|(g, _)| *g)
            .collect();
        for group in groups {
            self.fetch_group_log(group);
            self.push_group(group);
        }
    }

    fn fetched_page(&mut self, group: GroupId, relay: PeerId, items: Vec<grouplog::LogItem>, more: bool) {
        let Some(last) = items.last().map(|i| i.seq) else {
            self.group_messages.page_done(group, relay);
            return;
        };
        if self.sort_group_messages(group, items.iter().map(|i| i.bytes.as_slice())).is_none() {
            // Not stored: the cursor stays, the next fetch brings the page again.
            self.group_messages.page_done(group, relay);
            return;
        }
        // The cursor moves once the page's messages are durable, so it never runs
        // ahead of them; if it is lost, the page comes again and is de-duplicated.
        self.flusher.after_flush(super::AfterFlush::GroupLogCursor { group, relay, seq: last });
        tracing::debug!(%group, %relay, items = items.len(), more, "fetched group log page");
        let log = self.groups.joined.get(&group).map(|j| grouplog::log_id(j.membership.secret()));
        match log {
            Some(log) if more => self.request_page(group, log, relay, None, last),
            _ => {
                self.group_messages.page_done(group, relay);
            }
        }
    }
}
