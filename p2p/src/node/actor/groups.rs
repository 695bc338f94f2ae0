//! Groups in the actor: membership operations and sender keys over the 1:1 channel,
//! group messages on gossipsub and in the relays' group logs.
//!
//! - **Membership.** An admin signs an operation, applies it and sends it end to end
//!   to every member of the resulting state (the whole log, with hints on how to
//!   reach everyone, to a member it adds; the operation to a member it removes).
//!   Members fold the operations deterministically (see [`Membership`]), so
//!   concurrent changes converge. An operation made without knowledge of a
//!   concurrent `Add` never reaches the added member from its author, so whoever
//!   holds both forwards it (see [`Actor::forward_concurrent`]).
//! - **Keys.** Each member has a sender key per group and gives it to every other
//!   member over the 1:1 channel: all members when it joins, a new member when one is
//!   added. When anyone leaves or is removed, every remaining member starts a new
//!   generation and gives it to the remaining members only.
//! - **Messages.** A message is sealed once with the author's current key, stored with
//!   an outbox entry (acknowledged to the caller once on disk), published on the
//!   group's topic and appended to the group's log on each of its relays. It is
//!   `sent` once a relay holds it (or, for a group without relays, once it went out
//!   on gossip). Receivers validate before gossip forwards anything: a non-member's
//!   or forged message is rejected. A message whose key (or whose author's `Add`)
//!   has not arrived yet is kept in `group_pending` and opened when it does.
//! - **Catch-up.** Members fetch each group log from their cursor at start, when they
//!   join, when they connect to a group relay and every drain interval.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use kith_storage::{
    Contact, ContactState, ConversationKind, Direction, Group, GroupId, Inserted, Member, Message, MessageId,
    MessageState, OutboxEntry, Role,
};
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::{Multiaddr, PeerId};

use super::Actor;
use crate::group::membership::{GroupState, MemberCard, Membership, OpKind, SignedOp};
use crate::group::post::GroupPost;
use crate::group::sender_key::{self, SenderKey};
use crate::group::{self as grp, GroupError};
use crate::grouplog::{self, GroupLogRequest, GroupLogResponse};
use crate::dm::{DmResult, RejectReason};
use crate::node::inbound::GroupDelivery;
use crate::node::{Event, GroupChange, NodeError};
use crate::ops::{self, OpError};
use crate::payload::{self, Payload, PeerHint};
use crate::views::{GroupView, MessageView};

/// How long a group message waits before it is published and appended again when no
/// relay holds it yet.
const GROUP_RETRY: Duration = Duration::from_secs(3);
/// Undecryptable messages kept per group while their keys are on the way.
const MAX_PENDING: usize = 10_000;

/// A group we know, in memory.
pub(super) struct Joined {
    membership: Membership,
    /// Our current sender key.
    key: SenderKey,
    topic: gossipsub::IdentTopic,
    created_at_ms: u64,
}

/// An outgoing group message no relay holds yet.
struct Unsent {
    group: GroupId,
    sealed: Vec<u8>,
    published: bool,
}

/// Group state of the actor.
#[derive(Default)]
pub(super) struct GroupsState {
    joined: HashMap<GroupId, Joined>,
    by_topic: HashMap<TopicHash, GroupId>,
    unsent: BTreeMap<MessageId, Unsent>,
    appends: HashMap<OutboundRequestId, (GroupId, PeerId, Vec<MessageId>)>,
    fetches: HashMap<OutboundRequestId, (GroupId, PeerId)>,
    fetching: HashSet<(GroupId, PeerId)>,
    next_retry: Option<Instant>,
}

impl GroupsState {
    /// When the group machinery next wants a tick.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        self.next_retry
    }
}

/// Where an outgoing message goes.
pub(super) enum Dest {
    Peer(PeerId),
    Group(GroupId),
}

fn relays_of(state: &GroupState) -> Vec<(PeerId, Multiaddr)> {
    state
        .relays
        .iter()
        .filter_map(|b| Multiaddr::try_from(b.clone()).ok())
        .filter_map(|a| Some((super::relays::relay_peer(&a)?, a)))
        .collect()
}

fn cursor_key(group: &GroupId, relay: &PeerId) -> String {
    format!("grouplog_cursor/{group}/{relay}")
}

fn generation_key(group: &GroupId) -> String {
    format!("group_generation/{group}")
}

fn not_allowed(why: impl Into<String>) -> NodeError {
    NodeError::Op(OpError::NotAllowed(why.into()))
}

fn op_failed(e: GroupError) -> NodeError {
    NodeError::Op(OpError::Invalid(e.to_string()))
}

impl Actor {
    // ---- start-up -------------------------------------------------------------

    /// Load every stored group: its operations, our key, its topic.
    pub(super) fn load_groups(&mut self) {
        let groups = match self.store.groups().list() {
            Ok(groups) => groups,
            Err(e) => {
                tracing::error!(error = %e, "reading groups failed");
                return;
            }
        };
        for group in groups {
            let ops = self.store.groups().ops(group.id).unwrap_or_default();
            let decoded: Vec<SignedOp> = ops.iter().filter_map(|b| SignedOp::decode(b).ok()).collect();
            let Some(create) = decoded.iter().find(|o| matches!(o.op.kind, OpKind::Create { .. })).cloned() else {
                tracing::warn!(group = %group.id, "stored group has no Create operation; skipped");
                continue;
            };
            let Ok(mut membership) = Membership::new(create) else { continue };
            for op in decoded {
                let _ = membership.insert(op);
            }
            let key = self.my_key(group.id);
            self.install(group.id, membership, key, group.created_at_ms);
        }
    }

    /// Our current sender key for `group`, made (generation 1) if we have none.
    fn my_key(&self, group: GroupId) -> SenderKey {
        let me = self.me.to_string();
        let generation: u32 = self.store.settings().get(&generation_key(&group)).ok().flatten().unwrap_or(1);
        if let Ok(Some(key)) = self.store.groups().key(group, &me, generation) {
            return SenderKey { generation, key };
        }
        let key = SenderKey::generate(generation);
        self.keep_my_key(group, &key);
        key
    }

    fn keep_my_key(&self, group: GroupId, key: &SenderKey) {
        let stored = self
            .store
            .groups()
            .put_key(group, &self.me.to_string(), key.generation, &key.key)
            .and_then(|()| self.store.settings().set(&generation_key(&group), &key.generation));
        if let Err(e) = stored {
            tracing::error!(error = %e, "storing our sender key failed");
        }
    }

    fn install(&mut self, group: GroupId, membership: Membership, key: SenderKey, created_at_ms: u64) {
        let topic = grp::topic(&group);
        self.groups.by_topic.insert(topic.hash(), group);
        let member = membership.state().members.contains_key(&self.me);
        if member && let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
            tracing::warn!(%group, error = %e, "cannot subscribe to the group topic");
        }
        self.groups.joined.insert(group, Joined { membership, key, topic, created_at_ms });
    }

    /// Pick up outbox entries of group messages (from a previous run) as unsent.
    pub(super) fn load_group_outbox(&mut self, entries: Vec<OutboxEntry>) {
        let mut groups = BTreeSet::new();
        for entry in entries {
            let Some(group) = ops::recipient_group(&entry.recipient) else { continue };
            if self.groups.unsent.contains_key(&entry.id) {
                continue;
            }
            groups.insert(group);
            self.groups.unsent.insert(entry.id, Unsent { group, sealed: entry.payload, published: false });
        }
        for group in groups {
            self.push_group(group);
        }
    }

    // ---- user changes -----------------------------------------------------------

    /// Apply a change asked for by the user; answers with the group as it is now.
    pub(super) fn group_change(&mut self, change: GroupChange) -> Result<GroupView, NodeError> {
        let (group, kind) = match change {
            GroupChange::Create { name } => return self.create_group(&name),
            GroupChange::Add { group, contact } => {
                let group = ops::resolve_group(&self.store, &group)?;
                let contact = ops::resolve_contact(&self.store, &contact)?;
                if contact.state != ContactState::Accepted {
                    return Err(not_allowed(format!("{} is not an accepted contact", contact.peer_id)));
                }
                let card = card_of(&contact).ok_or_else(|| {
                    not_allowed(format!("no verified key of {} yet: exchange a message first", contact.peer_id))
                })?;
                (group.id, OpKind::Add { member: card, role: Role::Member })
            }
            GroupChange::Remove { group, member } => {
                let group = ops::resolve_group(&self.store, &group)?;
                let peer = self.resolve_member(&group, &member)?;
                (group.id, OpKind::Remove { peer: peer.to_bytes() })
            }
            GroupChange::SetRole { group, member, role } => {
                let group = ops::resolve_group(&self.store, &group)?;
                let peer = self.resolve_member(&group, &member)?;
                (group.id, OpKind::SetRole { peer: peer.to_bytes(), role })
            }
            GroupChange::Rename { group, name } => {
                let group = ops::resolve_group(&self.store, &group)?;
                (group.id, OpKind::Rename { name })
            }
            GroupChange::Leave { group } => (ops::resolve_group(&self.store, &group)?.id, OpKind::Leave),
        };
        self.author_op(group, kind)
    }

    fn create_group(&mut self, name: &str) -> Result<GroupView, NodeError> {
        let group = GroupId(rand::random());
        let relays = self.config.relays.iter().map(|a| a.to_vec()).collect();
        let owner = MemberCard::of(&self.config.identity.public());
        let kind = OpKind::Create { name: name.trim().to_owned(), owner, relays };
        let create = SignedOp::sign(&self.config.identity, group, 1, ops::now_ms(), kind).map_err(op_failed)?;
        let membership = Membership::new(create.clone()).map_err(op_failed)?;
        if !membership.state().members.contains_key(&self.me) {
            return Err(NodeError::Op(OpError::Invalid(format!(
                "a group name is 1 to {} characters",
                crate::group::membership::MAX_NAME_CHARS
            ))));
        }
        let key = self.my_key(group);
        self.install(group, membership, key, ops::now_ms());
        self.after_ops(group, GroupState::default(), &[create], None);
        self.group_view(group)
    }

    /// Sign `kind` at the next epoch, check it changes something, apply and send it.
    fn author_op(&mut self, group: GroupId, kind: OpKind) -> Result<GroupView, NodeError> {
        let joined = self.groups.joined.get(&group).ok_or_else(|| NodeError::Op(OpError::UnknownGroup(group.to_string())))?;
        if !joined.membership.state().members.contains_key(&self.me) {
            return Err(not_allowed("you are not a member of this group"));
        }
        let epoch = joined.membership.next_epoch();
        let op = SignedOp::sign(&self.config.identity, group, epoch, ops::now_ms(), kind).map_err(op_failed)?;
        // Try it on a copy: an operation that would not apply (no rights, already a
        // member, the owner...) is refused instead of being sent around.
        let mut trial = joined.membership.clone();
        let before = joined.membership.state().clone();
        trial.insert(op.clone()).map_err(op_failed)?;
        if trial.state().epoch < epoch {
            return Err(not_allowed(refusal_reason(&before, &self.me, &op.op.kind)));
        }
        if let Some(j) = self.groups.joined.get_mut(&group) {
            j.membership = trial;
        }
        // Queued before `after_ops` flushes and hands the outbox to the queues, and
        // ahead of the keys it shares, so a new member gets the log first.
        self.send_authored(group, &before, &op);
        self.after_ops(group, before, std::slice::from_ref(&op), None);
        self.group_view(group)
    }

    /// Queue an operation we authored: the whole log to a member it adds, the
    /// operation to everyone else in the new state and to a member it removes (the
    /// caller flushes).
    fn send_authored(&mut self, group: GroupId, before: &GroupState, op: &SignedOp) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let state = joined.membership.state().clone();
        let log: Vec<Vec<u8>> = joined.membership.ops().filter_map(|o| o.encode().ok()).collect();
        let Ok(encoded) = op.encode() else { return };
        let mut recipients: Vec<PeerId> = state.members.keys().copied().collect();
        if let OpKind::Remove { peer } = &op.op.kind
            && let Ok(removed) = PeerId::from_bytes(peer)
        {
            recipients.push(removed);
        }
        for peer in recipients {
            if peer == self.me {
                continue;
            }
            let newcomer = !before.members.contains_key(&peer) && state.members.contains_key(&peer);
            let payload = if newcomer {
                Payload::GroupOps { group, ops: log.clone(), hints: self.hints(&state, &peer) }
            } else {
                Payload::GroupOps { group, ops: vec![encoded.clone()], hints: Vec::new() }
            };
            self.send_one(&peer, &payload);
        }
    }

    fn resolve_member(&self, group: &Group, query: &str) -> Result<PeerId, NodeError> {
        let query = query.trim();
        let by_contact = ops::resolve_contact(&self.store, query).ok().map(|c| c.peer_id);
        let matches: Vec<&Member> = group
            .members
            .iter()
            .filter(|m| by_contact.as_deref() == Some(m.peer_id.as_str()) || m.peer_id.starts_with(query))
            .collect();
        match matches.as_slice() {
            [one] => one.peer_id.parse().map_err(|_| NodeError::BadTarget(format!("bad peer id {}", one.peer_id))),
            [] => Err(NodeError::Op(OpError::UnknownContact(format!("{query} (not a member of {})", group.name)))),
            many => Err(NodeError::Op(OpError::AmbiguousContact {
                query: query.to_owned(),
                candidates: many.iter().map(|m| m.peer_id.clone()).collect(),
            })),
        }
    }

    /// The group as stored, for answers.
    pub(super) fn group_view(&self, group: GroupId) -> Result<GroupView, NodeError> {
        let stored = self.store.groups().get(group).map_err(OpError::from)?;
        let stored = stored.ok_or_else(|| NodeError::Op(OpError::UnknownGroup(group.to_string())))?;
        Ok(GroupView::new(&self.store, &stored))
    }

    // ---- operations from others -------------------------------------------------

    /// Apply the group payloads of a batch and set their results: operations first,
    /// then keys, so a key finds the group its batch also brought (a sender's outbox
    /// keeps no order between items queued in the same millisecond).
    pub(super) fn receive_group(&mut self, mut deliveries: Vec<GroupDelivery>, results: &mut [DmResult]) {
        deliveries.sort_by_key(|d| matches!(d.payload, Payload::GroupKey { .. }));
        let mut keyed = BTreeSet::new();
        for GroupDelivery { index, sender, payload } in deliveries {
            let result = match payload {
                Payload::GroupOps { group, ops, hints } => {
                    self.receive_group_ops(sender, group, &ops, &hints);
                    DmResult::Stored
                }
                Payload::GroupKey { group, generation, key } => {
                    let result = self.receive_group_key(sender, group, generation, &key);
                    if result == DmResult::Stored {
                        keyed.insert(group);
                    }
                    result
                }
                _ => continue,
            };
            if let Some(slot) = results.get_mut(index) {
                *slot = result;
            }
        }
        if !keyed.is_empty() {
            self.flush();
        }
        for group in keyed {
            self.open_pending(group);
        }
    }

    /// Keep a member's sender key (not flushed). A key from someone we do not know as
    /// a member yet (its group's operations, or the `Add` of its sender, still on the
    /// way) is `Unready`: the sender retries later. A departed member's is dropped.
    fn receive_group_key(&mut self, sender: PeerId, group: GroupId, generation: u32, key: &[u8; 32]) -> DmResult {
        let Some(joined) = self.groups.joined.get(&group) else {
            return DmResult::Rejected(RejectReason::Unready);
        };
        let state = joined.membership.state();
        if !state.members.contains_key(&sender) {
            return if state.departed.contains(&sender) {
                DmResult::Accepted
            } else {
                DmResult::Rejected(RejectReason::Unready)
            };
        }
        match self.store.groups().put_key(group, &sender.to_string(), generation, key) {
            Ok(()) => DmResult::Stored,
            Err(e) => {
                tracing::error!(error = %e, "storing a sender key failed");
                DmResult::Rejected(RejectReason::Storage)
            }
        }
    }

    /// Apply operations that came over the 1:1 channel from `sender`.
    fn receive_group_ops(&mut self, sender: PeerId, group: GroupId, encoded: &[Vec<u8>], hints: &[PeerHint]) {
        let ops: Vec<SignedOp> = encoded
            .iter()
            .filter_map(|b| SignedOp::decode(b).ok())
            .filter(|op| op.op.group == group)
            .collect();
        self.learn_hints(hints);
        if !self.groups.joined.contains_key(&group) {
            let Some(create) = ops.iter().find(|o| matches!(o.op.kind, OpKind::Create { .. })).cloned() else {
                tracing::debug!(%group, %sender, "operations of an unknown group without its Create; ignored");
                return;
            };
            let Ok(mut membership) = Membership::new(create) else { return };
            for op in &ops {
                let _ = membership.insert(op.clone());
            }
            let state = membership.state();
            // Only a group we are in, told by someone in it.
            if !state.members.contains_key(&self.me) || !state.members.contains_key(&sender) {
                tracing::debug!(%group, %sender, "group operations that do not add us; ignored");
                return;
            }
            let created_at_ms = ops.iter().map(|o| o.op.at_ms).min().unwrap_or_else(ops::now_ms);
            let key = self.my_key(group);
            self.install(group, membership, key, created_at_ms);
            self.after_ops(group, GroupState::default(), &ops, Some(sender));
            return;
        }
        let Some(joined) = self.groups.joined.get_mut(&group) else { return };
        let before = joined.membership.state().clone();
        let mut fresh = Vec::new();
        for op in ops {
            if let Ok(true) = joined.membership.insert(op.clone()) {
                fresh.push(op);
            }
        }
        if !fresh.is_empty() {
            self.after_ops(group, before, &fresh, Some(sender));
        }
    }

    /// Everything that follows new operations: persist them and the state, make sure
    /// every member can be reached, subscribe or unsubscribe, hand out keys (rotating
    /// ours when someone left), forward what others may have missed, retry pending
    /// messages and tell clients. `from` is the peer they came from (None: ours).
    fn after_ops(&mut self, group: GroupId, before: GroupState, fresh: &[SignedOp], from: Option<PeerId>) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let state = joined.membership.state().clone();
        let created_at_ms = joined.created_at_ms;
        let topic = joined.topic.clone();
        for op in fresh {
            if let Ok(bytes) = op.encode()
                && let Err(e) = self.store.groups().put_op(group, op.op.epoch, &op.id(), &bytes)
            {
                tracing::error!(error = %e, "storing a group operation failed");
            }
        }
        let record = Group {
            id: group,
            name: state.name.clone(),
            members: state.members.iter().map(|(p, m)| Member { peer_id: p.to_string(), role: m.role }).collect(),
            epoch: state.epoch,
            created_at_ms,
            relays: relays_of(&state).iter().map(|(_, a)| a.to_string()).collect(),
            active: state.members.contains_key(&self.me),
        };
        let conversation = grp::conversation(&group);
        let stored = self
            .store
            .groups()
            .put(&record)
            .and_then(|()| {
                self.store
                    .conversations()
                    .get_or_create(conversation, ConversationKind::Group { group_id: group }, created_at_ms)
                    .map(drop)
            });
        if let Err(e) = stored {
            tracing::error!(error = %e, "storing a group failed");
        }
        self.know_members(&state);

        let was_member = before.members.contains_key(&self.me);
        let is_member = state.members.contains_key(&self.me);
        let others: Vec<PeerId> = state.members.keys().filter(|p| **p != self.me).copied().collect();
        if is_member && !was_member {
            let _ = self.swarm.behaviour_mut().gossipsub.subscribe(&topic);
            self.share_key(group, &others);
            self.dial_members(&others);
            self.fetch_group_log(group);
        } else if is_member {
            let departed = state.departed.difference(&before.departed).any(|p| *p != self.me);
            if departed {
                // Whoever left must not read what we send from now on.
                let next = self.groups.joined.get(&group).map_or(2, |j| j.key.generation + 1);
                let key = SenderKey::generate(next);
                self.keep_my_key(group, &key);
                if let Some(j) = self.groups.joined.get_mut(&group) {
                    j.key = key;
                }
                self.share_key(group, &others);
            } else {
                let added: Vec<PeerId> =
                    others.iter().filter(|p| !before.members.contains_key(p)).copied().collect();
                self.share_key(group, &added);
                self.dial_members(&added);
            }
        } else if was_member {
            let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
        }
        if let Some(from) = from {
            self.forward_concurrent(group, fresh, from);
        }
        self.flush();
        self.reload_outbox();
        self.open_pending(group);
        if let Ok(view) = self.group_view(group) {
            self.emit(Event::GroupChanged { group: view });
        }
    }

    /// An operation made without knowledge of a concurrent `Add` (same or later
    /// epoch, another author) never reached the added member from its author, and an
    /// `Add` we just learned was sent with a log that lacked the concurrent
    /// operations we hold. Forward both ways; duplicates are harmless.
    fn forward_concurrent(&mut self, group: GroupId, fresh: &[SignedOp], from: PeerId) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let state = joined.membership.state();
        let all: Vec<SignedOp> = joined.membership.ops().cloned().collect();
        let added_by = |op: &SignedOp| match &op.op.kind {
            OpKind::Add { member, .. } => PeerId::from_bytes(&member.peer_id).ok(),
            _ => None,
        };
        let me = self.me;
        let mut by_peer: HashMap<PeerId, Vec<Vec<u8>>> = HashMap::new();
        let mut send = |peer: PeerId, op: &SignedOp| {
            if peer == me || !state.members.contains_key(&peer) {
                return;
            }
            if let Ok(bytes) = op.encode() {
                let list = by_peer.entry(peer).or_default();
                if !list.contains(&bytes) {
                    list.push(bytes);
                }
            }
        };
        for op in fresh {
            // Operations by others made at the same epoch or later: concurrent with `op`
            // or unaware of it.
            for other in all.iter().filter(|o| o.op.author != op.op.author && o.op.epoch >= op.op.epoch) {
                // `op` to the member `other` added; `other` to the member `op` added.
                if let Some(m) = added_by(other)
                    && m != from
                {
                    send(m, op);
                }
                if let Some(m) = added_by(op) {
                    send(m, other);
                }
            }
        }
        for (peer, ops) in by_peer {
            tracing::debug!(%group, %peer, ops = ops.len(), "forwarding concurrent group operations");
            self.send_one(&peer, &Payload::GroupOps { group, ops, hints: Vec::new() });
        }
    }

    /// Make every member reachable over the 1:1 channel: members who are not contacts
    /// get a `Member` record with the key their card vouches for.
    fn know_members(&self, state: &GroupState) {
        for (peer, member) in &state.members {
            if *peer == self.me {
                continue;
            }
            let id = peer.to_string();
            let mut contact = match self.store.contacts().get(&id) {
                Ok(Some(c)) if c.e2e_public.is_some() => continue,
                Ok(Some(c)) => c,
                Ok(None) => ops::new_contact(peer, ContactState::Member),
                Err(e) => {
                    tracing::error!(error = %e, "reading a contact failed");
                    continue;
                }
            };
            contact.e2e_public = Some(member.card.e2e_public);
            contact.binding = Some(member.card.binding.to_vec());
            let _ = self.store.contacts().put(&contact);
        }
    }

    /// Addresses and relays of every member (and ours), for `recipient`.
    fn hints(&self, state: &GroupState, recipient: &PeerId) -> Vec<PeerHint> {
        let mut hints = vec![PeerHint {
            peer_id: self.me.to_bytes(),
            addrs: self.shareable_addrs().iter().map(|a| a.to_vec()).collect(),
            relays: self.config.relays.iter().map(|a| a.to_vec()).collect(),
        }];
        for peer in state.members.keys().filter(|p| *p != recipient && **p != self.me) {
            if let Ok(Some(c)) = self.store.contacts().get(&peer.to_string()) {
                let (addrs, relays) = (payload::addr_bytes(&c.addrs), payload::addr_bytes(&c.relays));
                hints.push(PeerHint { peer_id: peer.to_bytes(), addrs, relays });
            }
        }
        hints
    }

    /// Remember where members can be reached (only for peers we have no addresses of:
    /// a contact's own word about itself wins).
    fn learn_hints(&mut self, hints: &[PeerHint]) {
        for hint in hints {
            let Ok(peer) = PeerId::from_bytes(&hint.peer_id) else { continue };
            if peer == self.me {
                continue;
            }
            let id = peer.to_string();
            let mut contact = match self.store.contacts().get(&id) {
                Ok(Some(c)) => c,
                Ok(None) => ops::new_contact(&peer, ContactState::Member),
                Err(_) => continue,
            };
            if contact.addrs.is_empty() {
                contact.addrs = payload::addr_strings(&hint.addrs);
            }
            if contact.relays.is_empty() {
                contact.relays = payload::addr_strings(&hint.relays);
            }
            let _ = self.store.contacts().put(&contact);
        }
    }

    /// Give our current key to `peers`.
    fn share_key(&mut self, group: GroupId, peers: &[PeerId]) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let payload = Payload::GroupKey { group, generation: joined.key.generation, key: joined.key.key };
        for peer in peers {
            self.send_one(peer, &payload);
        }
    }

    /// Queue a payload for one peer over the 1:1 channel (durable; the caller flushes
    /// and reloads the outbox).
    fn send_one(&self, peer: &PeerId, payload: &Payload) {
        if let Err(e) = ops::enqueue(&self.store, &peer.to_string(), payload) {
            tracing::error!(error = %e, "queueing a group payload failed");
        }
    }

    /// Connect to members, so gossip has a mesh to travel.
    fn dial_members(&mut self, peers: &[PeerId]) {
        for peer in peers {
            if self.connected.contains(peer) {
                continue;
            }
            let addrs: Vec<Multiaddr> = match self.store.contacts().get(&peer.to_string()) {
                Ok(Some(c)) => c.addrs.iter().filter_map(|a| a.parse().ok()).collect(),
                _ => Vec::new(),
            };
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(*peer).addresses(addrs).build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "cannot dial a group member");
            }
        }
    }

    /// Members of our active groups, for keeping connections up.
    pub(super) fn dial_group_members(&mut self) {
        let peers: BTreeSet<PeerId> = self
            .groups
            .joined
            .values()
            .filter(|j| j.membership.state().members.contains_key(&self.me))
            .flat_map(|j| j.membership.state().members.keys().copied().collect::<Vec<_>>())
            .filter(|p| *p != self.me)
            .collect();
        self.dial_members(&peers.into_iter().collect::<Vec<_>>());
    }

    // ---- sending ------------------------------------------------------------------

    /// Compose and seal a text to a group (nothing stored yet; see `send_batch`).
    pub(super) fn compose_group(
        &mut self,
        group: &Group,
        text: &str,
        lamports: &mut HashMap<kith_storage::ConversationId, u64>,
    ) -> Result<(Message, OutboxEntry), NodeError> {
        // Membership is checked by `compose_group_text` (on the stored `active`).
        let joined = self.groups.joined.get(&group.id).ok_or_else(|| not_allowed("unknown group"))?;
        let message = ops::compose_group_text(&self.store, &self.me, group, text, lamports)?;
        let post = GroupPost::Text {
            id: message.id,
            lamport: message.lamport,
            sent_at_ms: message.sent_at_ms,
            text: message.text.clone(),
        };
        let plaintext = post.encode().map_err(OpError::from)?;
        let sealed = sender_key::seal(&self.config.identity, group.id, &joined.key, message.lamport, &plaintext)
            .map_err(op_failed)?;
        let entry = OutboxEntry {
            id: message.id,
            recipient: ops::group_recipient(&group.id),
            payload: sealed,
            attempts: 0,
            next_attempt_ms: message.sent_at_ms,
            created_at_ms: message.sent_at_ms,
        };
        Ok((message, entry))
    }

    /// A stored group message: send it on its way.
    pub(super) fn queue_group_message(&mut self, group: GroupId, entry: OutboxEntry) {
        self.groups.unsent.insert(entry.id, Unsent { group, sealed: entry.payload, published: false });
    }

    /// Publish what is unpublished and append what no relay holds yet.
    pub(super) fn push_group(&mut self, group: GroupId) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let topic = joined.topic.clone();
        let relays = relays_of(joined.membership.state());
        let mut gone_out = Vec::new();
        for (id, unsent) in self.groups.unsent.iter_mut().filter(|(_, u)| u.group == group) {
            if unsent.published {
                continue;
            }
            match self.swarm.behaviour_mut().gossipsub.publish(topic.clone(), unsent.sealed.clone()) {
                Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                    unsent.published = true;
                    gone_out.push(*id);
                }
                Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                Err(e) => tracing::debug!(%group, error = %e, "publishing a group message failed"),
            }
        }
        if relays.is_empty() {
            // Nobody keeps a log: having gone out on gossip is as far as it gets.
            self.group_held(&gone_out);
        }
        let log = grouplog::log_id(&group);
        for (relay, addr) in relays {
            if self.groups.appends.values().any(|(g, r, _)| *g == group && *r == relay) {
                continue;
            }
            let batch: Vec<(MessageId, Vec<u8>)> = self
                .groups
                .unsent
                .iter()
                .filter(|(_, u)| u.group == group)
                .take(grouplog::MAX_APPEND_BATCH)
                .map(|(id, u)| (*id, u.sealed.clone()))
                .collect();
            if batch.is_empty() {
                break;
            }
            let (ids, items): (Vec<MessageId>, Vec<Vec<u8>>) = batch.into_iter().unzip();
            let request = GroupLogRequest::Append { log, items };
            let id = self.swarm.behaviour_mut().grouplog.send_request_with_addresses(&relay, request, vec![addr]);
            self.groups.appends.insert(id, (group, relay, ids));
        }
        self.schedule_retry();
    }

    fn schedule_retry(&mut self) {
        if self.groups.unsent.is_empty() {
            self.groups.next_retry = None;
        } else if self.groups.next_retry.is_none() {
            self.groups.next_retry = Some(Instant::now() + GROUP_RETRY);
        }
    }

    /// The retry timer fired: try every group with unsent messages again.
    pub(super) fn group_tick(&mut self, now: Instant) {
        if self.groups.next_retry.is_some_and(|t| t <= now) {
            self.groups.next_retry = None;
            let groups: BTreeSet<GroupId> = self.groups.unsent.values().map(|u| u.group).collect();
            for group in groups {
                self.push_group(group);
            }
        }
    }

    /// These messages are held (by a relay, or gone out where no relay keeps a log):
    /// they are `sent` and leave the outbox.
    fn group_held(&mut self, ids: &[MessageId]) {
        let ids: Vec<MessageId> = ids.iter().filter(|id| self.groups.unsent.contains_key(id)).copied().collect();
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
        self.flush();
        for ((id, _), new) in updates.iter().zip(moved) {
            let Some(unsent) = self.groups.unsent.remove(id) else { continue };
            if let Some(state) = new {
                let conversation = grp::conversation(&unsent.group).to_string();
                self.emit(Event::MessageStateChanged { id: id.to_string(), conversation, state });
            }
        }
        self.schedule_retry();
    }

    /// An event of the group log protocol.
    pub(super) fn grouplog_event(&mut self, event: request_response::Event<GroupLogRequest, GroupLogResponse>) {
        match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => {
                if let Some((group, relay, ids)) = self.groups.appends.remove(&request_id) {
                    match response {
                        GroupLogResponse::Appended { .. } => self.group_held(&ids),
                        GroupLogResponse::Refused(refusal) => {
                            tracing::warn!(%group, %relay, reason = refusal.as_str(), "relay refused a group append");
                            self.emit(Event::RelayRefused {
                                relay: relay.to_string(),
                                recipient: group.to_string(),
                                code: refusal.as_str().to_owned(),
                                message: refusal.to_string(),
                            });
                        }
                        other => tracing::debug!(?other, "unexpected answer to an append"),
                    }
                    self.schedule_retry();
                } else if let Some((group, relay)) = self.groups.fetches.remove(&request_id) {
                    match response {
                        GroupLogResponse::Page { items, more } => self.fetched_page(group, relay, items, more),
                        other => {
                            tracing::debug!(%group, %relay, ?other, "group log fetch refused");
                            self.groups.fetching.remove(&(group, relay));
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((group, relay, _)) = self.groups.appends.remove(&request_id) {
                    tracing::debug!(%group, %relay, %error, "group append failed; will retry");
                    self.schedule_retry();
                } else if let Some(key) = self.groups.fetches.remove(&request_id) {
                    tracing::debug!(group = %key.0, relay = %key.1, %error, "group log fetch failed");
                    self.groups.fetching.remove(&key);
                }
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

    /// Open group messages: store the readable ones (one group commit), keep the ones
    /// that cannot be read yet in `group_pending`. Returns gossip's verdict on the last
    /// one, or None if storing failed (nothing was stored; the caller keeps its cursor).
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
                Opened::Later { member } => {
                    self.keep_pending(group, bytes);
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

    /// Store opened group messages in one group commit and announce the new ones.
    /// Returns whether they are on disk.
    fn store_group_messages(&mut self, messages: &[Message]) -> bool {
        let inserted = match self.store.insert_incoming_batch(messages) {
            Ok(inserted) => inserted,
            Err(e) => {
                tracing::error!(error = %e, "storing group messages failed");
                return false;
            }
        };
        for (message, inserted) in messages.iter().zip(inserted) {
            if inserted == Inserted::New {
                self.emit(Event::MessageReceived { message: MessageView::new(message, None) });
            }
        }
        true
    }

    /// Check and open one group message; nothing is written.
    fn open_group_message(&self, group: GroupId, bytes: &[u8]) -> Opened {
        let Some(joined) = self.groups.joined.get(&group) else { return Opened::Refused };
        let state = joined.membership.state();
        if !state.members.contains_key(&self.me) {
            return Opened::Dropped;
        }
        let store = &self.store;
        let opened = sender_key::open(
            bytes,
            group,
            |p| state.members.contains_key(p),
            |p, generation| {
                let key = store.groups().key(group, &p.to_string(), generation).ok().flatten()?;
                Some(SenderKey { generation, key })
            },
        );
        let opened = match opened {
            Ok(o) => o,
            Err(GroupError::UnknownKey { .. }) => return Opened::Later { member: true },
            // Perhaps added by an operation still on its way: kept, not forwarded.
            Err(GroupError::NotMember(_)) => return Opened::Later { member: false },
            Err(e) => {
                tracing::debug!(%group, error = %e, "refused a group message");
                return Opened::Refused;
            }
        };
        let Ok(GroupPost::Text { id, lamport, sent_at_ms, text }) = GroupPost::decode(&opened.plaintext) else {
            return Opened::Refused;
        };
        if opened.author == self.me {
            return Opened::Dropped;
        }
        let author = opened.author.to_string();
        if matches!(self.store.contacts().get(&author), Ok(Some(c)) if c.state == ContactState::Blocked) {
            return Opened::Dropped;
        }
        Opened::Message(Box::new(Message {
            id,
            conversation: grp::conversation(&group),
            author,
            lamport,
            sent_at_ms,
            received_at_ms: ops::now_ms(),
            text,
            state: MessageState::Delivered,
            direction: Direction::Incoming,
        }))
    }

    fn keep_pending(&mut self, group: GroupId, bytes: &[u8]) {
        if self.store.groups().pending_count(group) >= MAX_PENDING {
            tracing::warn!(%group, "too many unreadable group messages; dropping one");
            return;
        }
        let digest = *blake3::hash(bytes).as_bytes();
        if let Err(e) = self.store.groups().put_pending(group, &digest, bytes) {
            tracing::error!(error = %e, "keeping a pending group message failed");
        }
    }

    /// Try the group's pending messages again (a key or a member arrived).
    fn open_pending(&mut self, group: GroupId) {
        let pending = self.store.groups().pending(group).unwrap_or_default();
        let mut readable = Vec::new();
        let mut settled = Vec::new();
        for (digest, bytes) in pending {
            match self.open_group_message(group, &bytes) {
                Opened::Later { .. } => continue,
                Opened::Message(message) => readable.push(*message),
                Opened::Dropped | Opened::Refused => {}
            }
            settled.push(digest);
        }
        if settled.is_empty() || !self.store_group_messages(&readable) {
            return;
        }
        for digest in settled {
            let _ = self.store.groups().remove_pending(group, &digest);
        }
        self.flush();
    }

    /// Fetch what the group's relays logged since our cursor.
    pub(super) fn fetch_group_log(&mut self, group: GroupId) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        if !joined.membership.state().members.contains_key(&self.me) {
            return;
        }
        for (relay, addr) in relays_of(joined.membership.state()) {
            if !self.groups.fetching.insert((group, relay)) {
                continue;
            }
            let after: u64 = self.store.settings().get(&cursor_key(&group, &relay)).ok().flatten().unwrap_or(0);
            self.request_page(group, relay, Some(addr), after);
        }
    }

    fn request_page(&mut self, group: GroupId, relay: PeerId, addr: Option<Multiaddr>, after: u64) {
        let request = GroupLogRequest::Fetch {
            log: grouplog::log_id(&group),
            after,
            limit: grouplog::MAX_FETCH_ITEMS as u32,
        };
        let behaviour = &mut self.swarm.behaviour_mut().grouplog;
        let id = match addr {
            Some(addr) => behaviour.send_request_with_addresses(&relay, request, vec![addr]),
            None => behaviour.send_request(&relay, request),
        };
        self.groups.fetches.insert(id, (group, relay));
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
            self.groups.fetching.remove(&(group, relay));
            return;
        };
        if self.sort_group_messages(group, items.iter().map(|i| i.bytes.as_slice())).is_none() {
            // Not stored: the cursor stays, the next fetch brings the page again.
            self.groups.fetching.remove(&(group, relay));
            return;
        }
        if let Err(e) = self.store.settings().set(&cursor_key(&group, &relay), &last) {
            tracing::error!(error = %e, "storing a group log cursor failed");
        }
        self.flush();
        tracing::debug!(%group, %relay, items = items.len(), more, "fetched group log page");
        if more {
            self.request_page(group, relay, None, last);
        } else {
            self.groups.fetching.remove(&(group, relay));
        }
    }
}

/// What opening one group message found.
enum Opened {
    /// A message to store (boxed: it is much larger than the other variants).
    Message(Box<Message>),
    /// Authentic but not for display (ours, a blocked author, a group we left).
    Dropped,
    /// Cannot be read yet; `member` says whether its author is a member.
    Later { member: bool },
    /// Forged, tampered, malformed or from another group.
    Refused,
}

/// A contact's member card, if we hold its verified binding.
fn card_of(contact: &Contact) -> Option<MemberCard> {
    let peer: PeerId = contact.peer_id.parse().ok()?;
    let binding: [u8; 64] = contact.binding.as_deref()?.try_into().ok()?;
    let card = MemberCard { peer_id: peer.to_bytes(), e2e_public: contact.e2e_public?, binding };
    card.verify().ok()?;
    Some(card)
}


/// Why an operation we were about to sign would not apply.
fn refusal_reason(state: &GroupState, me: &PeerId, kind: &OpKind) -> String {
    let admin = state.is_admin(me);
    match kind {
        OpKind::Leave => "you are not a member".into(),
        _ if !admin => "only the group's owner and admins can do that".into(),
        OpKind::Add { .. } => "already a member (or the group is full)".into(),
        OpKind::Remove { .. } => "not a member, or the owner (who cannot be removed)".into(),
        OpKind::SetRole { .. } => "not a member, or the owner".into(),
        OpKind::Rename { .. } => format!("a group name is 1 to {} characters", crate::group::membership::MAX_NAME_CHARS),
        OpKind::Create { .. } => "the group exists".into(),
    }
}
