//! The ratchet seen from the actor: offering contacts our keys, sealing outgoing
//! payloads inside their sessions, and new keys for a contact whose session we lost
//! (see [`crate::ratchet`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use kith_storage::{Contact, ContactState, OutboxEntry, Recipient};
use libp2p::PeerId;

use super::Actor;
use crate::node::session_reset;
use crate::ops;
use crate::payload::Payload;
use crate::ratchet::RatchetError;


/// Most messages sent again to a contact that lost its sessions (the newest).
const MAX_RESENT: usize = 1000;

/// Sealed payloads kept per contact (see [`Actor::ratchet_cached`]): two batches of
/// a `/kith/dm/1` peer. A larger batch seals the rest of itself as it goes, in order.
pub(super) const MAX_CACHED_PER_CONTACT: usize = 2 * crate::dm::MAX_BATCH_V1;

/// Per contact, the last send batch that left something of it to wait for, until
/// that batch has been queued (send batches finish in order).
#[derive(Debug, Default)]
pub(super) struct UntilQueued(HashMap<PeerId, u64>);

impl UntilQueued {
    /// `batch` left something of `peer`'s to wait for.
    pub(super) fn note(&mut self, peer: PeerId, batch: u64) {
        self.0.insert(peer, batch);
    }

    /// Whether `peer` waits for a batch after `finished`, the last one queued.
    pub(super) fn waits(&self, peer: &PeerId, finished: u64) -> bool {
        self.0.get(peer).is_some_and(|batch| *batch > finished)
    }

    /// Batches up to `finished` are queued: forgets what they noted.
    pub(super) fn finished(&mut self, finished: u64) {
        self.0.retain(|_, batch| *batch > finished);
    }
}

impl Actor {
    /// Offers `peer`, an accepted contact, our ratchet keys (with `reset`: it should
    /// drop its sessions with us) through the outbox, so they wait in relays like a
    /// message. The one-time key and the queued offer are written, not flushed; the
    /// offer is noted, so that its batch waits for a flush before it leaves (see
    /// [`Actor::dispatch`]). Returns the queued offer's outbox id.
    pub(super) fn offer_ratchet_keys(&mut self, peer: PeerId, reset: bool) -> Option<kith_storage::MessageId> {
        let offer = self.make_offer(peer, reset)?;
        let payload = Payload::Prekeys {
            identity: offer.identity,
            signature: offer.signature,
            one_time: offer.one_time,
            reset: offer.reset,
            issued_us: offer.issued_us,
        };
        let entry = payload.encode().map_err(ops::OpError::from).and_then(|payload| {
            let now = ops::now_ms();
            let entry = OutboxEntry {
                id: ops::new_message_id(),
                recipient: Recipient::Peer(peer),
                payload,
                attempts: 0,
                next_attempt_ms: now,
                created_at_ms: now,
            };
            self.store.outbox().put(&entry)?;
            Ok(entry)
        });
        match entry {
            Ok(entry) => {
                let id = entry.id;
                self.unflushed_offers.insert(id);
                self.queues.push(peer, entry, Instant::now());
                Some(id)
            }
            Err(e) => {
                tracing::error!(%peer, error = %e, "queueing ratchet keys for a contact failed");
                self.ratchets.rollback();
                None
            }
        }
    }

    /// Records the ratchet messages a batch opened, now that their results are
    /// final: one answered "try again" (a group key before its group, a full disk)
    /// keeps its plaintext for the retry, which brings the same sealed bytes; the
    /// others count as copies from now on. Then writes the ratchet state, which the
    /// batch's flush makes durable with what the messages brought.
    pub(super) fn settle_ratcheted(&mut self, opened: Vec<(usize, [u8; 16], Vec<u8>)>, results: &[crate::dm::DmResult]) {
        use crate::dm::{DmResult, RejectReason};
        for (index, digest, plaintext) in opened {
            match results.get(index) {
                Some(DmResult::Rejected(RejectReason::Unready | RejectReason::Storage)) => self.ratchets.hold(digest, plaintext),
                _ => self.ratchets.record(digest),
            }
        }
        if let Err(e) = self.ratchets.persist(ops::now_ms()) {
            tracing::error!(error = %e, "writing ratchet state failed; opening these messages again if they come again");
            self.ratchets.rollback();
        }
    }

    /// Offers keys to every accepted contact we have not offered any (contacts made
    /// before the ratchet existed, or an offer lost in a crash).
    pub(super) fn offer_ratchet_keys_to_all(&mut self) {
        if !self.offer_to_accepted(true) {
            tracing::error!("ratchet keys for contacts could not be queued; offering them again at the next start");
        }
    }

    /// Offers keys to every accepted contact (with `only_new`, those we offered none
    /// yet) and dispatches them; each leaves after a flush. Returns false if they
    /// could not be queued (then none was).
    pub(super) fn offer_to_accepted(&mut self, only_new: bool) -> bool {
        let contacts = match self.store.contacts().list() {
            Ok(contacts) => contacts,
            Err(e) => {
                tracing::error!(error = %e, "listing contacts to offer ratchet keys failed");
                return false;
            }
        };
        let mut offered = Vec::new();
        for c in contacts.iter().filter(|c| c.state == ContactState::Accepted) {
            if only_new && !matches!(self.ratchets.offered(&c.peer_id), Ok(false)) {
                continue;
            }
            match self.offer_ratchet_keys(c.peer_id, false) {
                Some(id) => offered.push((c.peer_id, id)),
                None => {
                    self.withdraw_offers(offered);
                    return false;
                }
            }
        }
        // Each offer's batch waits in flight for the flushing thread before it leaves.
        for (peer, _) in offered {
            self.dispatch(peer);
        }
        true
    }

    /// Takes queued offers back out of the outbox after a failure rolled the
    /// account back, and with it their one-time keys: they are made again (at the
    /// next start, or from our next message), not sent naming keys we no longer
    /// hold.
    fn withdraw_offers(&mut self, offered: Vec<(PeerId, kith_storage::MessageId)>) {
        for (peer, id) in offered {
            self.queues.remove(&peer, id);
            if let Err(e) = self.store.outbox().remove(id) {
                tracing::warn!(%peer, error = %e, "withdrawing a ratchet offer failed; it fails at the contact and a reset follows");
            }
        }
    }

    /// Offers new keys with `reset` to contacts whose ratchet messages we could not
    /// open, when [`session_reset::may_offer_reset`] says so. Returns whether any was
    /// queued.
    pub(super) fn offer_resets(&mut self, peers: Vec<PeerId>) -> bool {
        let now = Instant::now();
        let spacing = self.config.timers.ratchet_reset_spacing;
        let mut queued = false;
        for peer in peers {
            let last = self.ratchet_resets.get(&peer);
            if !session_reset::may_offer_reset(last, now, spacing, |id| self.queues.is_queued(id)) {
                continue;
            }
            tracing::info!(%peer, "offering a contact new ratchet keys: its session with us is lost");
            let offered = self.offer_ratchet_keys(peer, true);
            self.ratchet_resets.insert(peer, (now, offered));
            queued |= offered.is_some();
        }
        queued
    }

    /// What is sealed in the envelope for `contact`: `payload` inside the ratchet if
    /// it is a kind that travels there and the contact has a session or keys;
    /// otherwise `payload` itself. A contact that has none from us is offered keys
    /// first (queued behind this batch).
    pub(super) fn ratchet_wrap<'p>(&mut self, contact: &Contact, payload: &'p [u8]) -> Result<Cow<'p, [u8]>, RatchetError> {
        if contact.state != ContactState::Accepted || !self.ratchets.ready(&contact.peer_id)? {
            return Ok(Cow::Borrowed(payload));
        }
        let goes_inside = Payload::decode(payload).is_ok_and(|p| p.is_ratcheted_kind());
        if !goes_inside {
            return Ok(Cow::Borrowed(payload));
        }
        let Some((kind, body)) = self.ratchets.seal(&contact.peer_id, payload)? else {
            return Ok(Cow::Borrowed(payload));
        };
        let wrapped = Payload::Ratcheted { kind, body }.encode().map_err(|e| RatchetError::Malformed(e.to_string()))?;
        Ok(Cow::Owned(wrapped))
    }

    /// Seals the 1:1 messages of a send batch in the ratchet now, before the flush
    /// that stores them, which then makes the ratchet state durable too: their first
    /// attempt waits for no flush of its own (a batch sealed when it goes does).
    ///
    /// A contact's chain must follow its queue's order: a seal made and then lost
    /// would be made again at a later key than the messages queued behind it, and
    /// the contact, which keeps only a few skipped keys, would refuse those for
    /// good. So a contact's messages are presealed only while every message of it
    /// before them, queued or staged, is sealed and cached ([`Actor::may_preseal`]),
    /// and only while its cache has room; from the first one that is not, the rest
    /// of the batch is sealed when it goes, in order, and so is the contact's next
    /// batch until this one is queued. Returns false if the ratchet state could not
    /// be written (then nothing is presealed, and the batch's marks are undone).
    pub(super) fn preseal(&mut self, composed: &[(super::Composed, super::SendReply)]) -> bool {
        let batch = self.send_batches;
        let mut sealed = Vec::new();
        // Per contact, once per batch: the queue does not change while the batch
        // is sealed (its entries are queued after), nor does the contact, and a
        // batch is mostly one contact's, so checking per message cost O(queue) each.
        let mut sealable: HashMap<PeerId, Option<Contact>> = HashMap::new();
        for (result, _) in composed {
            let Ok((_, entry, super::group_messages::Dest::Peer(peer))) = result else { continue };
            let contact = sealable.entry(*peer).or_insert_with(|| {
                if !self.may_preseal(peer) {
                    return None;
                }
                self.store.contacts().get(peer).ok().flatten()
            });
            let cached = match contact.as_ref() {
                Some(c) if self.seal_cache_room(peer) => {
                    if let Err(e) = self.ratchet_cached(c, entry, &mut sealed) {
                        tracing::debug!(%peer, error = %e, "sealing a new message in the ratchet failed; sealing it when it goes");
                    }
                    self.ratcheted.contains(peer, &entry.id)
                }
                _ => false,
            };
            if cached {
                self.presealed_staged.note(*peer, batch);
            } else {
                *contact = None;
                self.unsealed_staged.note(*peer, batch);
            }
        }
        if let Err(e) = self.ratchets.persist(ops::now_ms()) {
            tracing::error!(error = %e, "writing ratchet state failed");
            self.ratchet_undo(&sealed);
            for peer in sealable.into_keys() {
                self.unsealed_staged.note(peer, batch);
            }
            return false;
        }
        true
    }

    /// Whether `peer`'s next staged messages may be presealed: every message of it
    /// staged by an earlier batch that was not presealed is queued by now, and
    /// every queued one is sealed and cached.
    fn may_preseal(&self, peer: &PeerId) -> bool {
        !self.unsealed_staged.waits(peer, self.finished_send_batches)
            && self.queues.all_queued(peer, self.ratcheted.held_for(peer))
    }

    /// Whether `peer`'s cache of sealed payloads can take one more, after letting go
    /// of those whose entries are neither queued nor staged (delivered, dropped).
    /// A staged entry's seal is kept: it goes after its flush. A sweep can free
    /// room only after some entry left the queues or the staged sends, which both
    /// count their departures.
    fn seal_cache_room(&mut self, peer: &PeerId) -> bool {
        let departures = self.queues.departures().wrapping_add(self.staged_departures);
        let (queues, staged) = (&self.queues, &self.unflushed_sends);
        self.ratcheted.room(peer, departures, |id| queues.is_queued(id) || staged.contains(id))
    }

    /// Forgets what was sealed for `peer` (its keys changed): its queued and staged
    /// messages are sealed again when they go, so its next batch is not presealed
    /// before those staged now are queued.
    pub(super) fn drop_seals(&mut self, peer: &PeerId) {
        if self.ratcheted.forget(peer) {
            self.unsealed_staged.note(*peer, self.send_batches);
        }
    }

    /// `entry`'s payload as sealed for `contact`: the one sealed for it before if
    /// any, else sealed now ([`Actor::ratchet_wrap`]) and kept (noted in
    /// `sealed_now`, so a failure can undo it) for the entry's next attempts.
    /// Cached for at most [`MAX_CACHED_PER_CONTACT`] entries per contact (the
    /// front of its queue is what goes, and what is staged behind it).
    pub(super) fn ratchet_cached<'p>(
        &mut self,
        contact: &Contact,
        entry: &'p OutboxEntry,
        sealed_now: &mut Vec<(PeerId, kith_storage::MessageId)>,
    ) -> Result<Cow<'p, [u8]>, RatchetError> {
        let peer = contact.peer_id;
        if let Some(cached) = self.ratcheted.get(&peer, &entry.id) {
            return Ok(Cow::Owned(cached.clone()));
        }
        let plaintext = self.ratchet_wrap(contact, &entry.payload)?;
        if let Cow::Owned(sealed) = &plaintext {
            if self.seal_cache_room(&peer) {
                self.ratcheted.insert(peer, entry.id, sealed.clone());
            }
            sealed_now.push((peer, entry.id));
        }
        Ok(plaintext)
    }

    /// Undoes what an attempt sealed and could not make durable: the ratchet goes
    /// back to its written state and those payloads are sealed again next time.
    pub(super) fn ratchet_undo(&mut self, sealed_now: &[(PeerId, kith_storage::MessageId)]) {
        self.ratchets.rollback();
        for (peer, id) in sealed_now {
            self.ratcheted.remove(peer, id);
        }
    }

    /// Replaces the key that seals the ratchet state on disk when a roll is due (see
    /// [`crate::ratchet::Ratchets::roll`]), so session states replaced since the last
    /// roll no longer open with anything left on disk. On the event loop: five syncs,
    /// at most once per `ratchet_state_roll` and only after state was written.
    pub(super) fn roll_ratchet_state(&mut self, now: Instant) {
        if !self.ratchets.roll_due(now) {
            return;
        }
        if let Err(e) = self.ratchets.roll(now, ops::now_ms()) {
            tracing::error!(error = %e, "replacing the ratchet state key failed; trying again at the next interval");
        }
    }

    /// Queues again, for each of `peers` (contacts that lost their sessions with us),
    /// what [`session_reset::to_resend`] picks among the conversation's newest
    /// [`MAX_RESENT`] messages, when [`session_reset::may_resend`] says so. Written,
    /// not flushed (the batch's flush covers them). Returns whether any was queued.
    pub(super) fn resend_undelivered(&mut self, peers: Vec<PeerId>) -> bool {
        let spacing = self.config.timers.ratchet_reset_spacing;
        let mut queued = false;
        let now = ops::now_ms();
        let window = u64::try_from(kith_storage::REPLAY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let at = Instant::now();
        for peer in peers {
            if !session_reset::may_resend(self.resent.get(&peer), at, spacing) {
                continue;
            }
            self.resent.insert(peer, at);
            let conversation = ops::direct_conversation(&self.me, &peer);
            let page = match self.store.messages().page(conversation, None, MAX_RESENT) {
                Ok(page) => page,
                Err(kith_storage::StoreError::NotFound { .. }) => continue,
                Err(e) => {
                    tracing::error!(%peer, error = %e, "reading what we sent a contact failed; nothing resent");
                    continue;
                }
            };
            let mut count = 0usize;
            let in_outbox = |id: &kith_storage::MessageId| matches!(self.store.outbox().get(*id), Ok(Some(_)));
            for m in session_reset::to_resend(&page, now, window, in_outbox) {
                let payload = Payload::Text {
                    id: m.id,
                    lamport: m.lamport,
                    sent_at_ms: m.sent_at_ms,
                    text: m.text.clone(),
                    file: m.file.as_deref().map(crate::files::offer_of),
                    link: m.link.clone(),
                };
                let entry = ops::enqueue(&self.store, &peer, &payload);
                match entry {
                    Ok(_) => count += 1,
                    Err(e) => tracing::error!(%peer, error = %e, "queueing a message again failed"),
                }
            }
            if count > 0 {
                tracing::info!(%peer, messages = count, "a contact lost its sessions with us: sending what it may not have again");
                queued = true;
            }
        }
        queued
    }

    /// A signed offer of our keys for `peer`, its one-time key written (not flushed)
    /// before anything names it, so no flush can make the offer durable without it.
    /// `None` (logged, nothing changed) if either fails.
    fn make_offer(&mut self, peer: PeerId, reset: bool) -> Option<crate::ratchet::Offer> {
        let offer = match self.ratchets.offer(&self.config.identity, &peer, reset) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::error!(%peer, error = %e, "making ratchet keys for a contact failed");
                return None;
            }
        };
        if let Err(e) = self.ratchets.persist(ops::now_ms()) {
            tracing::error!(%peer, error = %e, "writing ratchet keys for a contact failed");
            self.ratchets.rollback();
            return None;
        }
        Some(offer)
    }

    /// Our ratchet keys for a contact request to `peer`, if we have offered it none
    /// yet (see [`Payload::ContactRequest`]); written, not flushed.
    pub(super) fn request_keys(&mut self, peer: PeerId) -> Option<crate::payload::RequestKeys> {
        if !matches!(self.ratchets.offered(&peer), Ok(false)) {
            return None;
        }
        let offer = self.make_offer(peer, false)?;
        Some(crate::payload::RequestKeys {
            identity: offer.identity,
            signature: offer.signature,
            one_time: offer.one_time,
            issued_us: offer.issued_us,
        })
    }

    /// Offers a newly accepted contact our keys if it has none yet (any path into
    /// accepted ends in a dispatch to it). Returns whether an offer was queued.
    pub(super) fn offer_if_new(&mut self, contact: &Contact) -> bool {
        if contact.state != ContactState::Accepted {
            return false;
        }
        match self.ratchets.offered(&contact.peer_id) {
            Ok(false) => self.offer_ratchet_keys(contact.peer_id, false).is_some(),
            Ok(true) => false,
            Err(e) => {
                tracing::error!(peer = %contact.peer_id, error = %e, "reading ratchet state failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_waits_until_the_batch_it_noted_last_is_queued() {
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut marks = UntilQueued::default();
        marks.note(alice, 3);
        marks.note(alice, 5);
        assert!(marks.waits(&alice, 4), "batch 5 is not queued yet");
        assert!(!marks.waits(&bob, 0), "nothing noted for bob");
        marks.finished(4);
        assert!(marks.waits(&alice, 4));
        marks.finished(5);
        assert!(!marks.waits(&alice, 0), "forgotten once its batch is queued");
    }
}
