//! Group membership in the actor: operations, invitations, sync and sender keys over
//! the 1:1 end-to-end channel. (Group messages: [`super::group_messages`]; payloads
//! from others and answers to invitations: [`super::group_inbound`].)
//!
//! - **Operations.** An admin signs an operation on its current heads, applies it and
//!   sends it end to end to every member of the resulting state (the whole history,
//!   parents first and in parts that fit a payload, with hints on how to reach
//!   everyone, to a member it adds; the operation to a member it removes). Each
//!   operation is checked against its causal state (see [`Membership`]), so who
//!   forwards it does not matter, and concurrent changes converge.
//! - **Sync.** An operation whose parents we lack waits (in memory, bounded) and we
//!   ask the peer it came from for what we lack ([`Payload::GroupSync`], at most once
//!   per `Timers::group_sync_spacing` per group and peer); the answer is every operation that is
//!   not an ancestor of our heads. Operations made concurrently with an `Add` never
//!   reach the added member from their authors, so whoever holds both forwards them
//!   (see [`group_rules::concurrent_forwards`]).
//! - **Invitations.** Operations that add us are a group we join only if whoever
//!   added us is an accepted contact. Anyone else's addition is an invitation, kept
//!   (bounded by [`MAX_INVITATIONS`], [`MAX_INVITATIONS_PER_INVITER`]) until the user
//!   accepts or declines it; until then we do not subscribe, share keys, fetch the
//!   group's log or learn about its members. Declining forgets the group and
//!   remembers its id (the newest [`MAX_DECLINED`]), so it does not come back.
//! - **Keys.** Each member has a sender key per group and gives it to every other
//!   member over the 1:1 channel: all members when it joins, a new member when one is
//!   added. When anyone leaves or is removed, every remaining member starts a new
//!   generation and gives it to the remaining members only. Keys are taken only from
//!   current members, and only the newest generations of each are kept.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use kith_storage::{Contact, ContactState, ConversationKind, Group, GroupId, Member, Role};
use libp2p::gossipsub::{self, TopicHash};
use libp2p::{Multiaddr, PeerId};

use super::Actor;
use crate::node::group_rules::{self, Carry, Gossip};
use crate::group::membership::{self, GroupState, MemberCard, Membership, OpId, OpKind, SignedOp};
use crate::group::sender_key::SenderKey;
use crate::group::{self as grp, GroupError};
use crate::node::or_log::OrLog;
use crate::node::{Event, GroupChange, NodeError};
use crate::ops::{self, OpError};
use crate::payload::{self, MAX_PAYLOAD_LEN, Payload, PeerHint};
use crate::views::GroupView;

/// Invitations (groups from non-contacts) kept at once; past it, new ones are dropped.
pub(super) const MAX_INVITATIONS: usize = 32;
/// Invitations kept from one inviter at once: a stranger cannot fill the list.
pub(super) const MAX_INVITATIONS_PER_INVITER: usize = 2;
/// Declined group ids remembered (the newest), so a declined group stays away.
pub(super) const MAX_DECLINED: usize = 256;
/// Operations of a known group kept in memory while their parents are on the way.
pub(super) const MAX_WAITING_OPS: usize = 1024;
/// Bytes of operations of groups we do not know yet (parts of a history whose
/// `Create` has not arrived) kept in memory, oldest dropped first.
pub(super) const MAX_LIMBO_BYTES: usize = 4 * 1024 * 1024;
/// (group, peer) pairs whose last sync is remembered; the oldest are forgotten.
pub(super) const MAX_SYNC_TRACKED: usize = 4096;
/// Bytes of encoded operations per [`Payload::GroupOps`]: a payload's cap less room
/// for its framing and hints.
const OPS_PER_PAYLOAD_BYTES: usize = MAX_PAYLOAD_LEN - 12 * 1024;
/// Hints one history carries (addresses of other members for a new member).
const MAX_HINTS: usize = 32;
/// Settings key of the declined group ids.
pub(super) const DECLINED_KEY: &str = "groups_declined";

/// A group we know, in memory: one we are in, left, or are invited to.
pub(super) struct Joined {
    pub(super) membership: Membership,
    /// Our current sender key.
    pub(super) key: SenderKey,
    pub(super) topic: gossipsub::IdentTopic,
    pub(super) created_at_ms: u64,
    /// Who added us, while this is an invitation we have not answered.
    pub(super) invited_by: Option<PeerId>,
}

impl Joined {
    /// Whether we take part: a member who is not merely invited.
    pub(super) fn active(&self, me: &PeerId) -> bool {
        self.invited_by.is_none() && self.membership.state().members.contains_key(me)
    }
}

/// Membership state of the actor.
#[derive(Default)]
pub(super) struct GroupsState {
    pub(super) joined: HashMap<GroupId, Joined>,
    pub(super) by_topic: HashMap<TopicHash, GroupId>,
    /// Operations of known groups whose parents have not arrived.
    pub(super) waiting: HashMap<GroupId, Vec<SignedOp>>,
    /// Groups we do not know yet (see [`super::limbo`]).
    pub(super) limbo: super::limbo::Limbo,
    /// When each (group, peer) last synced.
    pub(super) synced: HashMap<(GroupId, PeerId), Instant>,
    /// Whether payloads were queued that the caller must flush and hand out.
    pub(super) queued: bool,
    /// The newest point of each (group, author, generation) chain derived while
    /// opening, so opening the next message steps from there instead of from the
    /// stored (earliest) point: a long chain costs its length once, not per message.
    pub(super) chains: std::cell::RefCell<HashMap<(GroupId, PeerId, u32), SenderKey>>,
}

/// Chain points kept in [`GroupsState::chains`] before the cache starts over.
pub(super) const MAX_CACHED_CHAINS: usize = 4096;

pub(super) fn not_allowed(why: impl Into<String>) -> NodeError {
    NodeError::Op(OpError::NotAllowed(why.into()))
}

fn op_failed(e: GroupError) -> NodeError {
    match e {
        GroupError::NoRight(why) => not_allowed(why),
        e => NodeError::Op(OpError::Invalid(e.to_string())),
    }
}

pub(super) fn unknown_group(group: GroupId) -> NodeError {
    NodeError::Op(OpError::UnknownGroup(group.to_string()))
}

/// The relays of a group, with their peer ids.
pub(super) fn relays_of(state: &GroupState) -> Vec<(PeerId, Multiaddr)> {
    state
        .relays
        .iter()
        .filter_map(|b| Multiaddr::try_from(b.clone()).ok())
        .filter_map(|a| Some((super::relays::relay_peer(&a)?, a)))
        .collect()
}

fn generation_key(group: &GroupId) -> String {
    format!("group_generation/{group}")
}

pub(super) fn decode_ops(group: GroupId, encoded: &[Vec<u8>]) -> Vec<SignedOp> {
    encoded
        .iter()
        .filter_map(|b| SignedOp::decode(b).ok())
        .filter(|op| match op.op.group {
            Some(g) => g == group,
            None => membership::group_id_of(op).is_ok_and(|g| g == group),
        })
        .collect()
}

impl Actor {
    // ---- start-up -------------------------------------------------------------

    /// Load every stored group: its operations, our key, its topic. A group whose
    /// history does not verify (made by a version before causal histories) is kept as
    /// read-only history: inactive, without operations.
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
            let membership = Membership::from_ops(decoded).ok().filter(|(m, _)| m.group() == group.id);
            let Some((membership, _)) = membership else {
                self.retire_legacy_group(group);
                continue;
            };
            let invited_by = group.invited_by.as_deref().and_then(|p| p.parse().ok());
            let key = self.my_key(group.id);
            self.install(membership, key, group.created_at_ms, invited_by);
        }
    }

    fn retire_legacy_group(&mut self, mut group: Group) {
        tracing::warn!(group = %group.id, "group history from an older version does not verify; kept read-only");
        group.active = false;
        group.invited_by = None;
        let stored = self.store.groups().clear_ops(group.id).and_then(|()| self.store.groups().put(&group));
        if let Err(e) = stored {
            tracing::error!(error = %e, "retiring an old group failed");
        }
    }

    /// Our current sender key for `group`, made (generation 1) if we have none.
    pub(super) fn my_key(&self, group: GroupId) -> SenderKey {
        let me = self.me.to_string();
        let generation: u32 = self.store.settings().get(&generation_key(&group)).ok().flatten().unwrap_or(1);
        if let Ok(Some((index, key))) = self.store.groups().chain_key(group, &me, generation) {
            return SenderKey { generation, index, key };
        }
        let key = SenderKey::generate(generation);
        self.keep_my_key(group, &key);
        key
    }

    pub(super) fn keep_my_key(&self, group: GroupId, key: &SenderKey) {
        if let Err(e) = self.write_my_key(group, key) {
            tracing::error!(error = %e, "storing our sender key failed");
        }
    }

    /// Writes our sender key (not flushed); the caller decides what a failure means.
    pub(super) fn write_my_key(&self, group: GroupId, key: &SenderKey) -> Result<(), kith_storage::StoreError> {
        self.store
            .groups()
            .put_chain_key(group, &self.me.to_string(), key.generation, key.index, &key.key)
            .and_then(|()| self.store.settings().set(&generation_key(&group), &key.generation))
    }

    pub(super) fn install(&mut self, membership: Membership, key: SenderKey, created_at_ms: u64, invited_by: Option<PeerId>) {
        let group = membership.group();
        let topic = grp::topic(membership.secret());
        self.groups.by_topic.insert(topic.hash(), group);
        let joined = Joined { membership, key, topic, created_at_ms, invited_by };
        if joined.active(&self.me)
            && let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&joined.topic)
        {
            tracing::warn!(%group, error = %e, "cannot subscribe to the group topic");
        }
        self.groups.joined.insert(group, joined);
    }

    // ---- user changes -----------------------------------------------------------

    /// Apply a change asked for by the user; answers with the group as it is now.
    /// What joining `query`'s voice room takes: its room id (from the group's secret),
    /// its relays and its members now. Only for a group we are in.
    pub(super) fn room_ticket(&self, query: &str) -> Result<crate::call::RoomTicket, NodeError> {
        let group = ops::resolve_group(&self.store, query)?;
        let joined = self.groups.joined.get(&group.id).filter(|j| j.active(&self.me));
        let Some(joined) = joined else {
            return Err(not_allowed(format!("not a member of {}", group.name)));
        };
        Ok(crate::call::RoomTicket {
            group: group.id,
            name: group.name.clone(),
            room: joined.membership.secret().derive(crate::call::room::ROOM_ID_CONTEXT),
            relays: group.relays.iter().filter_map(|r| r.parse().ok()).collect(),
            members: joined.membership.state().members.keys().copied().collect(),
        })
    }

    pub(super) fn group_change(&mut self, change: GroupChange) -> Result<GroupView, NodeError> {
        let (group, kind) = match change {
            GroupChange::Create { name } => return self.create_group(&name),
            GroupChange::Accept { group } => return self.accept_invitation(ops::resolve_group(&self.store, &group)?.id),
            GroupChange::Decline { group } => return self.decline_invitation(ops::resolve_group(&self.store, &group)?.id),
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
        let relays = self.config.relays.iter().take(membership::MAX_GROUP_RELAYS).map(|a| a.to_vec()).collect();
        let (group, create) = SignedOp::create(&self.config.identity, name, relays, ops::now_ms()).map_err(op_failed)?;
        let membership = Membership::new(create.clone()).map_err(|_| {
            NodeError::Op(OpError::Invalid(format!("a group name is 1 to {} characters", membership::MAX_NAME_CHARS)))
        })?;
        let key = self.my_key(group);
        self.install(membership, key, ops::now_ms(), None);
        self.after_ops(group, GroupState::default(), &[create], None);
        self.group_view(group)
    }

    /// Sign `kind` on our heads, check it applies, keep and send it.
    fn author_op(&mut self, group: GroupId, kind: OpKind) -> Result<GroupView, NodeError> {
        let joined = self.groups.joined.get(&group).ok_or_else(|| unknown_group(group))?;
        if joined.invited_by.is_some() {
            return Err(not_allowed("this group is an invitation: accept it first"));
        }
        if !joined.membership.state().members.contains_key(&self.me) {
            return Err(not_allowed("you are not a member of this group"));
        }
        let op = joined.membership.sign(&self.config.identity, ops::now_ms(), kind).map_err(op_failed)?;
        // Tried on a copy: an operation that would not apply (no rights, already a
        // member, the owner...) is refused instead of being sent around.
        let mut trial = joined.membership.clone();
        let before = joined.membership.state().clone();
        trial.insert(op.clone()).map_err(op_failed)?;
        if let Some(j) = self.groups.joined.get_mut(&group) {
            j.membership = trial;
        }
        // Queued before `after_ops` flushes and hands the outbox to the queues, and
        // ahead of the keys it shares, so a new member gets the history first.
        self.send_authored(group, &before, &op);
        self.after_ops(group, before, std::slice::from_ref(&op), None);
        self.group_view(group)
    }

    /// Queue an operation we authored for whom [`group_rules::authored_recipients`]
    /// says (the caller flushes).
    fn send_authored(&mut self, group: GroupId, before: &GroupState, op: &SignedOp) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let recipients = group_rules::authored_recipients(&self.me, before, joined.membership.state(), &op.op.kind);
        let encoded = match op.encode() {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::error!(%group, error = %e, "encoding our own group operation failed");
                return;
            }
        };
        for (peer, carry) in recipients {
            match carry {
                Carry::History => self.send_history(group, &peer, &[]),
                Carry::Op => {
                    self.send_one(&peer, &Payload::GroupOps { group, ops: vec![encoded.clone()], hints: Vec::new() })
                }
            }
        }
    }

    /// Queue for `peer` every operation that is not an ancestor of `their_heads`,
    /// parents first, in payloads that fit; the first carries hints on how to reach
    /// the other members.
    pub(super) fn send_history(&mut self, group: GroupId, peer: &PeerId, their_heads: &[OpId]) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let encoded = joined.membership.missing_from(their_heads).into_iter().filter_map(|op| op.encode().ok());
        let parts = group_rules::split_history(encoded, OPS_PER_PAYLOAD_BYTES);
        if parts.is_empty() {
            return;
        }
        let mut hints = self.hints(joined.membership.state(), peer);
        for ops in parts {
            self.send_one(peer, &Payload::GroupOps { group, ops, hints: std::mem::take(&mut hints) });
        }
    }

    fn resolve_member(&self, group: &Group, query: &str) -> Result<PeerId, NodeError> {
        let query = query.trim();
        let by_contact = ops::resolve_contact(&self.store, query).ok().map(|c| c.peer_id.to_base58());
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
        let stored = stored.ok_or_else(|| unknown_group(group))?;
        Ok(GroupView::new(&self.store, &stored))
    }

    /// Everything that follows new operations (or an accepted invitation): persist
    /// them and the state, and — for a group we take part in — make sure every member
    /// can be reached, subscribe or unsubscribe, hand out keys (rotating ours when
    /// someone left), forward what others may have missed, retry pending messages
    /// and tell clients. `from` is the peer they came from (None: ours).
    pub(super) fn after_ops(&mut self, group: GroupId, before: GroupState, fresh: &[SignedOp], from: Option<PeerId>) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let state = joined.membership.state().clone();
        let created_at_ms = joined.created_at_ms;
        let topic = joined.topic.clone();
        let invited_by = joined.invited_by;
        for op in fresh {
            let stored = op.encode().and_then(|bytes| {
                let id = op.id()?;
                let height = joined.membership.height(&id).unwrap_or(0);
                Ok((bytes, id, height))
            });
            if let Ok((bytes, id, height)) = stored
                && let Err(e) = self.store.groups().put_op(group, height.into(), &id.0, &bytes)
            {
                tracing::error!(error = %e, "storing a group operation failed");
            }
        }
        let is_member = state.members.contains_key(&self.me);
        let record = Group {
            id: group,
            name: state.name.clone(),
            members: state.members.iter().map(|(p, m)| Member { peer_id: p.to_string(), role: m.role }).collect(),
            version: state.version,
            created_at_ms,
            relays: relays_of(&state).iter().map(|(_, a)| a.to_string()).collect(),
            active: is_member && invited_by.is_none(),
            invited_by: invited_by.map(|p| p.to_string()),
        };
        if let Err(e) = self.store.groups().put(&record) {
            tracing::error!(error = %e, "storing a group failed");
        }
        if invited_by.is_some() {
            if let Ok(view) = self.group_view(group) {
                let mut events = Vec::new();
                if !before.members.contains_key(&self.me) {
                    events.push(Event::GroupInvitation { group: view.clone() });
                }
                events.push(Event::GroupChanged { group: view });
                self.flusher.after_flush(super::AfterFlush::Events(events));
            }
            return;
        }
        let conversation = grp::conversation(&group);
        let kind = ConversationKind::Group { group_id: group };
        if let Err(e) = self.store.conversations().ensure(conversation, kind, created_at_ms) {
            tracing::error!(error = %e, "storing a group conversation failed");
        }
        self.know_members(&state);

        let reaction = group_rules::after_change(&self.me, &before, &state, from);
        match reaction.gossip {
            Some(Gossip::Subscribe) => {
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    tracing::warn!(%group, error = %e, "subscribing to a group's gossip failed");
                }
            }
            Some(Gossip::Unsubscribe) => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            }
            None => {}
        }
        if reaction.rotate_key {
            let next = self.groups.joined.get(&group).map_or(2, |j| j.key.generation.saturating_add(1));
            let key = SenderKey::generate(next);
            self.keep_my_key(group, &key);
            if let Some(j) = self.groups.joined.get_mut(&group) {
                j.key = key;
            }
        }
        self.share_key(group, &reaction.share_key_with);
        self.dial_members(&reaction.dial);
        if reaction.fetch_log {
            self.fetch_group_log(group);
        }
        if let Some(from) = from
            && reaction.forward_concurrent
            && let Some(joined) = self.groups.joined.get(&group)
        {
            for (peer, ops) in group_rules::concurrent_forwards(&self.me, &from, &joined.membership, fresh) {
                tracing::debug!(%group, %peer, ops = ops.len(), "forwarding concurrent group operations");
                self.send_one(&peer, &Payload::GroupOps { group, ops, hints: Vec::new() });
            }
        }
        // What this queued goes out, and clients hear of the change, once durable.
        self.flush_queued();
        self.open_pending(group);
        if let Ok(view) = self.group_view(group) {
            self.flusher.after_flush(super::AfterFlush::Events(vec![Event::GroupChanged { group: view }]));
        }
    }

    /// Make every member reachable over the 1:1 channel: members who are not contacts
    /// get a `Member` record with the key their card vouches for.
    fn know_members(&self, state: &GroupState) {
        for (peer, member) in &state.members {
            if *peer == self.me {
                continue;
            }
            let mut contact = match self.store.contacts().get(peer) {
                Ok(Some(c)) if c.e2e_public.is_some() => continue,
                Ok(Some(c)) => c,
                Ok(None) => ops::new_contact(peer, ContactState::Member),
                Err(e) => {
                    tracing::error!(error = %e, "reading a contact failed");
                    continue;
                }
            };
            ops::take_key(&mut contact, member.card.e2e_public, &member.card.binding(), ops::now_ms());
            if let Err(e) = self.store.contacts().put(&contact) {
                tracing::error!(error = %e, "storing a member's key failed");
            }
        }
    }

    /// Addresses and relays of members (and ours), for `recipient`: at most
    /// [`MAX_HINTS`].
    fn hints(&self, state: &GroupState, recipient: &PeerId) -> Vec<PeerHint> {
        let mut hints = vec![PeerHint {
            peer_id: self.me.to_bytes(),
            addrs: self.shareable_addrs().iter().map(|a| a.to_vec()).collect(),
            relays: self.config.relays.iter().map(|a| a.to_vec()).collect(),
        }];
        for peer in state.members.keys().filter(|p| *p != recipient && **p != self.me) {
            if hints.len() >= MAX_HINTS {
                break;
            }
            if let Ok(Some(c)) = self.store.contacts().get(peer) {
                let (addrs, relays) = (payload::addr_bytes(&c.addrs), payload::addr_bytes(&c.relays));
                hints.push(PeerHint { peer_id: peer.to_bytes(), addrs, relays });
            }
        }
        hints
    }

    /// Remember where members of `group` can be reached (only members, only peers we
    /// have no addresses of: a contact's own word about itself wins).
    pub(super) fn learn_hints(&mut self, group: GroupId, hints: &[PeerHint]) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        let members = &joined.membership.state().members;
        for hint in hints.iter().take(MAX_HINTS) {
            let Ok(peer) = PeerId::from_bytes(&hint.peer_id) else { continue };
            if peer == self.me || !members.contains_key(&peer) {
                continue;
            }
            let mut contact = match self.store.contacts().get(&peer) {
                Ok(Some(c)) => c,
                Ok(None) => ops::new_contact(&peer, ContactState::Member),
                Err(_) => continue,
            };
            if contact.addrs.is_empty() {
                contact.addrs = payload::addrs_of(&hint.addrs).into_iter().take(payload::MAX_HINT_ADDRS).collect();
            }
            if contact.relays.is_empty() {
                contact.relays = payload::addrs_of(&hint.relays).into_iter().take(payload::MAX_HINT_ADDRS).collect();
            }
            self.store.contacts().put(&contact).or_log("saving a member's address hints");
        }
    }

    /// Give our current key to `peers`.
    fn share_key(&mut self, group: GroupId, peers: &[PeerId]) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        // Our key as it is now: a member added now cannot open what we sent before.
        let payload = Payload::GroupKey { group, generation: joined.key.generation, index: joined.key.index, key: joined.key.key };
        for peer in peers {
            self.send_one(peer, &payload);
        }
    }

    /// Queue a payload for one peer over the 1:1 channel (durable once flushed; see
    /// [`Actor::flush_queued`]).
    pub(super) fn send_one(&mut self, peer: &PeerId, payload: &Payload) {
        match ops::enqueue(&self.store, peer, payload) {
            Ok(_) => self.groups.queued = true,
            Err(e) => tracing::error!(error = %e, "queueing a group payload failed"),
        }
    }

    /// Connect to members, so gossip has a mesh to travel.
    fn dial_members(&mut self, peers: &[PeerId]) {
        for peer in peers {
            if self.connected.contains(peer) {
                continue;
            }
            let addrs: Vec<Multiaddr> = match self.store.contacts().get(peer) {
                Ok(Some(c)) => c.addrs,
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
            .filter(|j| j.active(&self.me))
            .flat_map(|j| j.membership.state().members.keys().copied().collect::<Vec<_>>())
            .filter(|p| *p != self.me)
            .collect();
        self.dial_members(&peers.into_iter().collect::<Vec<_>>());
    }
}

/// A contact's member card, if we hold its verified binding.
fn card_of(contact: &Contact) -> Option<MemberCard> {
    let peer = contact.peer_id;
    let binding = crate::identity::Binding::from_bytes(contact.binding.as_deref()?)?;
    let public = crate::identity::PublicIdentity { peer_id: peer, e2e_public: contact.e2e_public?, binding };
    public.verify().ok()?;
    Some(MemberCard::of(&public))
}
