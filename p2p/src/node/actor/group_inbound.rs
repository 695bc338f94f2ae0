//! Group payloads from others in the actor: operations (of groups we know, and of new
//! groups: joined when a contact put us in, invitations otherwise), sync requests,
//! sender keys, and the user's answers to invitations. What follows new operations
//! (persisting, keys, forwarding) is [`super::groups`]'s.

use std::collections::BTreeSet;
use std::time::Instant;

use kith_storage::{ContactState, GroupId};
use libp2p::PeerId;

use super::Actor;
use super::limbo::Arrival;
use super::groups::{
    DECLINED_KEY, MAX_DECLINED, MAX_INVITATIONS, MAX_INVITATIONS_PER_INVITER, MAX_SYNC_TRACKED,
    MAX_WAITING_OPS, decode_ops, not_allowed, unknown_group,
};
use crate::dm::{DmResult, RejectReason};
use crate::group::membership::{self, GroupState, OpId, SignedOp};
use crate::node::inbound::GroupDelivery;
use crate::node::{Event, NodeError};
use crate::ops::{self, OpError};
use crate::group::sender_key::SenderKey;
use crate::payload::{Payload, PeerHint};
use crate::views::GroupView;

impl Actor {
    // ---- invitations --------------------------------------------------------------

    /// Join a group we were invited to: from now on it is like one a contact put us in.
    pub(super) fn accept_invitation(&mut self, group: GroupId) -> Result<GroupView, NodeError> {
        let joined = self.groups.joined.get_mut(&group).ok_or_else(|| unknown_group(group))?;
        let Some(inviter) = joined.invited_by.take() else {
            return Err(not_allowed("there is no invitation to this group to accept"));
        };
        if !joined.membership.state().members.contains_key(&self.me) {
            return Err(not_allowed("you were removed from this group before accepting"));
        }
        let before = GroupState::default();
        self.after_ops(group, before, &[], None);
        // What the inviter learned since, with hints on how to reach everyone.
        self.ask_sync(group, inviter, true);
        self.flush_queued();
        self.group_view(group)
    }

    /// Forget an invitation and remember not to take it again. Nothing is sent.
    pub(super) fn decline_invitation(&mut self, group: GroupId) -> Result<GroupView, NodeError> {
        let joined = self.groups.joined.get(&group).ok_or_else(|| unknown_group(group))?;
        if joined.invited_by.is_none() {
            return Err(not_allowed("there is no invitation to this group to decline (leave it instead)"));
        }
        let mut view = self.group_view(group)?;
        view.active = false;
        let topic = joined.topic.hash();
        self.groups.by_topic.remove(&topic);
        self.groups.joined.remove(&group);
        self.groups.waiting.remove(&group);
        let mut declined: Vec<GroupId> = self.store.settings().get(DECLINED_KEY).ok().flatten().unwrap_or_default();
        declined.retain(|g| *g != group);
        declined.push(group);
        let excess = declined.len().saturating_sub(MAX_DECLINED);
        declined.drain(..excess);
        let stored = self
            .store
            .groups()
            .remove(group)
            .and_then(|_| self.store.settings().set(DECLINED_KEY, &declined));
        stored.map_err(OpError::from)?;
        self.emit(Event::GroupChanged { group: view.clone() });
        Ok(view)
    }

    fn declined(&self, group: &GroupId) -> bool {
        let declined: Vec<GroupId> = self.store.settings().get(DECLINED_KEY).ok().flatten().unwrap_or_default();
        declined.contains(group)
    }

    /// Whether a new invitation from `inviter` fits the bounds.
    fn invitation_fits(&self, inviter: &PeerId) -> bool {
        let invited: Vec<&PeerId> = self.groups.joined.values().filter_map(|j| j.invited_by.as_ref()).collect();
        invited.len() < MAX_INVITATIONS && invited.iter().filter(|p| **p == inviter).count() < MAX_INVITATIONS_PER_INVITER
    }

    // ---- payloads from others -------------------------------------------------------

    /// Apply the group payloads of a batch and set their results: operations first,
    /// then sync requests, then keys, so a key finds the group its batch also brought
    /// (a sender's outbox keeps no order between items queued in the same millisecond).
    pub(super) fn receive_group(&mut self, mut deliveries: Vec<GroupDelivery>, results: &mut [DmResult]) {
        deliveries.sort_by_key(|d| match d.payload {
            Payload::GroupOps { .. } => 0,
            Payload::GroupSync { .. } => 1,
            _ => 2,
        });
        let mut keyed = BTreeSet::new();
        for GroupDelivery { index, sender, payload } in deliveries {
            let result = match payload {
                Payload::GroupOps { group, ops, hints } => {
                    self.receive_group_ops(sender, group, &ops, &hints);
                    DmResult::Stored
                }
                Payload::GroupSync { group, heads } => {
                    self.answer_sync(sender, group, &heads);
                    DmResult::Stored
                }
                Payload::GroupKey { group, generation, index, key } => {
                    let key = SenderKey { generation, index, key };
                    let result = self.receive_group_key(sender, group, &key);
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
        // Keys and answers are made durable by the caller's flush (before the sender
        // hears back, or before a relay's mail is acked).
        self.flush_queued();
        for group in keyed {
            self.open_pending(group);
        }
    }

    /// Hand out what group handling queued, once the flushing thread has made it
    /// durable.
    pub(super) fn flush_queued(&mut self) {
        if std::mem::take(&mut self.groups.queued) {
            self.flusher.after_flush(super::AfterFlush::ReloadOutbox);
        }
    }

    /// Keep a member's sender key (not flushed). A key from someone we do not know as
    /// a member yet (its group's operations, or the `Add` of its sender, still on the
    /// way) is `Unready`: the sender retries later. A departed member's, or one for a
    /// group we declined, is dropped.
    ///
    /// Of one generation the key earliest in the chain is kept: it opens everything a
    /// later one does, and messages that were sent before the later one was.
    fn receive_group_key(&mut self, sender: PeerId, group: GroupId, key: &SenderKey) -> DmResult {
        let Some(joined) = self.groups.joined.get(&group) else {
            return if self.declined(&group) {
                DmResult::Accepted
            } else {
                DmResult::Rejected(RejectReason::Unready)
            };
        };
        let state = joined.membership.state();
        if !state.members.contains_key(&sender) {
            return if state.departed.contains(&sender) {
                DmResult::Accepted
            } else {
                DmResult::Rejected(RejectReason::Unready)
            };
        }
        let author = sender.to_string();
        let held = self.store.groups().chain_key(group, &author, key.generation);
        if let Ok(Some((index, held_key))) = held
            && index <= key.index
        {
            let same_chain = SenderKey { generation: key.generation, index, key: held_key }.at(key.index).is_ok_and(|k| k.key == key.key);
            if same_chain {
                return DmResult::Stored;
            }
            // Another chain under the same generation: the author started again (its
            // group state was lost). Its new key replaces the old one.
            tracing::info!(%group, author = %sender, "a member's sender key starts a new chain");
        }
        self.groups.chains.borrow_mut().remove(&(group, sender, key.generation));
        match self.store.groups().put_chain_key(group, &author, key.generation, key.index, &key.key) {
            Ok(()) => DmResult::Stored,
            Err(e) => {
                tracing::error!(error = %e, "storing a sender key failed");
                DmResult::Rejected(RejectReason::Storage)
            }
        }
    }

    /// Apply operations that came over the 1:1 channel from `sender`.
    fn receive_group_ops(&mut self, sender: PeerId, group: GroupId, encoded: &[Vec<u8>], hints: &[PeerHint]) {
        let ops = decode_ops(group, encoded);
        if self.groups.joined.contains_key(&group) {
            self.merge_ops(sender, group, ops, hints);
        } else if !self.declined(&group) {
            self.receive_new_group(sender, group, ops, hints);
        }
    }

    /// Operations of a group we know. Taken only from its members (and former
    /// members): the operations prove themselves, but a stranger has no business
    /// making us check them.
    fn merge_ops(&mut self, sender: PeerId, group: GroupId, ops: Vec<SignedOp>, hints: &[PeerHint]) {
        let waiting = self.groups.waiting.remove(&group).unwrap_or_default();
        let Some(joined) = self.groups.joined.get_mut(&group) else { return };
        let state = joined.membership.state();
        if !state.members.contains_key(&sender) && !state.departed.contains(&sender) {
            tracing::debug!(%group, %sender, "group operations from a non-member; ignored");
            self.groups.waiting.insert(group, waiting);
            return;
        }
        let before = state.clone();
        let merged = joined.membership.insert_many(waiting.into_iter().chain(ops).collect());
        if let Some(me) = joined.membership.state().members.get(&self.me)
            && !before.members.contains_key(&self.me)
            && joined.invited_by.is_none()
        {
            // Added back after we left: only a contact may do that without asking.
            let adder = me.added_by;
            let by_contact = matches!(
                self.store.contacts().get(&adder),
                Ok(Some(c)) if c.state == ContactState::Accepted
            );
            if !by_contact {
                joined.invited_by = Some(adder);
            }
        }
        let active = joined.active(&self.me);
        for refused in &merged.refused {
            tracing::debug!(%group, %sender, error = %refused, "group operation refused");
        }
        if !merged.waiting.is_empty() {
            let mut waiting = merged.waiting;
            waiting.truncate(MAX_WAITING_OPS);
            self.groups.waiting.insert(group, waiting);
            self.ask_sync(group, sender, false);
        }
        if active {
            self.learn_hints(group, hints);
        }
        if !merged.fresh.is_empty() {
            self.after_ops(group, before, &merged.fresh, Some(sender));
        }
    }

    /// Operations of a group we do not know: a group a contact put us in, an
    /// invitation, or parts of one still arriving.
    fn receive_new_group(&mut self, sender: PeerId, group: GroupId, ops: Vec<SignedOp>, hints: &[PeerHint]) {
        let arrival = self.groups.limbo.arrive(group, ops, &self.me, &sender);
        // Only a contact is asked for missing parts: a stranger could otherwise make us
        // queue a request for every group id it makes up.
        let from_contact = matches!(
            self.store.contacts().get(&sender),
            Ok(Some(c)) if c.state == ContactState::Accepted
        );
        let (membership, waiting) = match arrival {
            Arrival::HasUs { membership, waiting } => (*membership, waiting),
            Arrival::Held { incomplete, adder } => {
                // Not (yet) a group with us in it: the parts with the `Create`, or the
                // one that adds us, may follow; a contact is asked for what is missing.
                if from_contact && incomplete {
                    self.ask_sync(group, sender, false);
                    self.flush_queued();
                }
                // It has us but came from outside it: ask the member who added us, if
                // that is a contact.
                if let Some(adder) = adder
                    && matches!(self.store.contacts().get(&adder), Ok(Some(c)) if c.state == ContactState::Accepted)
                {
                    self.ask_sync(group, adder, false);
                    self.flush_queued();
                }
                return;
            }
        };
        let state = membership.state();
        // Limbo lets a group out only with us and the sender in it.
        let Some(me) = state.members.get(&self.me) else { return };
        let adder = me.added_by;
        let by_contact = matches!(
            self.store.contacts().get(&adder),
            Ok(Some(c)) if c.state == ContactState::Accepted
        );
        if !by_contact && !self.invitation_fits(&adder) {
            tracing::info!(%group, inviter = %adder, "too many open invitations; this one is dropped");
            return;
        }
        if !waiting.is_empty() {
            self.groups.waiting.insert(group, waiting);
            self.ask_sync(group, sender, false);
        }
        let created_at_ms = membership.ops().map(|o| o.op.at_ms).min().unwrap_or_else(ops::now_ms);
        let invited_by = (!by_contact).then_some(adder);
        let key = self.my_key(group);
        let mut fresh: Vec<SignedOp> = membership.ops().cloned().collect();
        fresh.truncate(membership::MAX_OPS);
        self.install(membership, key, created_at_ms, invited_by);
        if by_contact {
            self.learn_hints(group, hints);
        }
        self.after_ops(group, GroupState::default(), &fresh, Some(sender));
    }

    /// Ask `peer` for the operations of `group` we lack (rate-limited unless `now`).
    fn ask_sync(&mut self, group: GroupId, peer: PeerId, now: bool) {
        if peer == self.me || (!now && !self.sync_due(group, peer)) {
            return;
        }
        let heads = self.groups.joined.get(&group).map(|j| j.membership.heads()).unwrap_or_default();
        self.send_one(&peer, &Payload::GroupSync { group, heads });
    }

    /// Whether a sync of `group` with `peer` may happen now; if so, it is recorded.
    fn sync_due(&mut self, group: GroupId, peer: PeerId) -> bool {
        let now = Instant::now();
        let spacing = self.config.timers.group_sync_spacing;
        let synced = &mut self.groups.synced;
        if synced.get(&(group, peer)).is_some_and(|t| now.duration_since(*t) < spacing) {
            return false;
        }
        if synced.len() >= MAX_SYNC_TRACKED {
            synced.retain(|_, t| now.duration_since(*t) < spacing);
            if synced.len() >= MAX_SYNC_TRACKED
                && let Some(oldest) = synced.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                synced.remove(&oldest);
            }
        }
        synced.insert((group, peer), now);
        true
    }

    /// A member asks what it lacks: send it, if we take part and it is a member.
    fn answer_sync(&mut self, sender: PeerId, group: GroupId, heads: &[OpId]) {
        let Some(joined) = self.groups.joined.get(&group) else { return };
        if !joined.active(&self.me) || !joined.membership.state().members.contains_key(&sender) {
            return;
        }
        if !self.sync_due(group, sender) {
            tracing::debug!(%group, %sender, "sync asked again too soon; ignored");
            return;
        }
        let heads: Vec<OpId> = heads.iter().take(membership::MAX_PARENTS).copied().collect();
        self.send_history(group, &sender, &heads);
    }
}
