//! Direct delivery: dispatching a contact's queue as sealed batches (directly or to
//! its relays), settling the answers into delivery states, and taking peers'
//! deliveries into the store, answered once durable (docs/PROTOCOL.md, *Delivery*).

use std::time::Instant;

use kith_storage::{Contact, MessageId, MessageState, StoreError};
use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId};

use super::{Accepted, Actor, AfterFlush, SealedBatch, presence_event};
use crate::dm::{self, DmRequest, DmResponse, DmResult};
use crate::node::Event;
use crate::node::direct;
use crate::node::flusher::FlushFailed;
use crate::node::inbound::Inbound;
use crate::node::or_log::OrLog;
use crate::node::outbox::Flight;
use crate::node::request_size::Path;
use crate::ops;
use crate::requests::Tally;

impl Actor {
    /// Take queued items that can no longer go out of the outbox, and mark those that
    /// are messages failed (unless they went with their conversation).
    pub(super) fn drop_undeliverable(&mut self, ids: Vec<kith_storage::MessageId>) {
        for id in ids {
            self.store.outbox().remove(id).or_log("removing an outbox entry that can no longer go out");
            match self.store.set_message_state(id, MessageState::Failed, false) {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "an undeliverable message could not be marked failed"),
            }
        }
    }

    pub(super) fn dispatch(&mut self, peer: PeerId) {
        let now = Instant::now();
        let contact = match self.store.contacts().get(&peer) {
            Ok(contact) => contact,
            Err(e) => {
                tracing::error!(error = %e, "reading contact failed");
                return;
            }
        };
        let gate = direct::gate(contact.as_ref());
        match gate {
            direct::Gate::Open => {}
            direct::Gate::GroupOnly => {
                let dropped = self.queues.drop_where(&peer, |e| !direct::goes_to_a_member(&e.payload));
                self.drop_undeliverable(dropped);
            }
            direct::Gate::Removed => {
                self.drop_seals(&peer);
                self.relays.forget(&peer);
                let dropped = self.queues.forget(&peer);
                self.drop_undeliverable(dropped);
                return;
            }
            direct::Gate::Blocked => {
                self.queues.forget(&peer);
                self.relays.forget(&peer);
                return;
            }
            direct::Gate::Held => {
                // Its items stay queued; the queue looks again soon.
                self.queues.hold(&peer, now);
                return;
            }
            direct::Gate::NeedsKey => {
                self.lookup(peer);
                self.queues.defer(&peer, now);
                return;
            }
        }
        let Some((contact, e2e)) = contact.and_then(|c| c.e2e_public.map(|key| (c, key))) else { return };
        self.offer_if_new(&contact);
        let batch = self.queues.next_batch(&peer, self.batch_cap(&peer), now);
        if batch.is_empty() {
            return;
        }
        let mut envelopes = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        let mut sealed_now = Vec::new();
        let mut bytes = 0;
        let max_bytes = self.request_size.max_bytes(&peer);
        for entry in &batch {
            // The request must stay under the receiver's cap: stop before an entry
            // that might not fit (judged before sealing it, so no key is spent on it).
            let most = entry.payload.len() + crate::payload::RATCHET_OVERHEAD + crate::envelope::MAX_SEAL_OVERHEAD;
            if !envelopes.is_empty() && bytes + most + dm::ENVELOPE_FRAMING > max_bytes {
                break;
            }
            let plaintext = match self.ratchet_cached(&contact, entry, &mut sealed_now) {
                Ok(plaintext) => plaintext,
                Err(e) => {
                    // Nothing of this batch leaves: what it sealed is undone, and it
                    // goes again after the backoff.
                    tracing::error!(%peer, error = %e, "sealing in the ratchet failed; trying again later");
                    self.ratchet_undo(&sealed_now);
                    self.queues.defer(&peer, now);
                    return;
                }
            };
            match self.sealer.seal(&e2e, &plaintext) {
                Ok(envelope) => {
                    bytes += envelope.len() + dm::ENVELOPE_FRAMING;
                    envelopes.push(envelope);
                    ids.push(entry.id);
                }
                Err(e) => {
                    tracing::error!(error = %e, "sealing failed; dropping the item");
                    self.store
                        .set_message_state(entry.id, MessageState::Failed, true)
                        .or_log("marking an unsealable message as undeliverable");
                    self.store.outbox().remove(entry.id).or_log("removing an unsealable outbox entry");
                    self.queues.remove(&peer, entry.id);
                }
            }
        }
        if ids.is_empty() {
            return;
        }
        let offers_unflushed = ids.iter().any(|id| self.unflushed_offers.contains(id));
        if self.ratchets.is_dirty() || offers_unflushed {
            // What this batch sealed (or an offer's one-time key) must be durable
            // before it leaves: written now, and the batch waits in flight for the
            // flushing thread while the event loop goes on.
            if let Err(e) = self.ratchets.persist(ops::now_ms()) {
                tracing::error!(%peer, error = %e, "writing ratchet state failed; trying again later");
                self.ratchet_undo(&sealed_now);
                self.queues.defer(&peer, now);
                return;
            }
            self.sealing_flights += 1;
            let flight = Flight::Flushing(self.sealing_flights);
            self.queues.mark_in_flight(&peer, flight, ids);
            self.flusher.after_flush(AfterFlush::Sealed(SealedBatch { peer, flight, envelopes, sealed_now, gate }));
            return;
        }
        self.route(peer, &contact, envelopes, ids);
    }

    /// A batch sealed at dispatch is durable with its ratchet state (or the flush
    /// failed: then its seals are undone and it goes again after the backoff).
    pub(super) fn send_sealed(&mut self, sealed: SealedBatch, flushed: &Result<(), FlushFailed>) {
        let SealedBatch { peer, flight, envelopes, sealed_now, gate: sealed_with } = sealed;
        if let Err(e) = flushed {
            // Also if the queue is gone: its cached seals must not leave later.
            tracing::error!(%peer, error = %e, "flushing ratchet state failed; trying again later");
            self.ratchet_undo(&sealed_now);
            self.queues.fail(&peer, flight, Instant::now());
            return;
        }
        // Gone from the queue meanwhile (the contact was removed or blocked).
        let Some(ids) = self.queues.in_flight(&peer, flight) else { return };
        // Durable now. (An offer that leaves the queue some other way stays noted: a
        // few ids per contact and run at most, as offers go.)
        for id in &ids {
            self.unflushed_offers.remove(id);
        }
        let contact = match self.store.contacts().get(&peer) {
            Ok(contact) => contact,
            Err(e) => {
                tracing::error!(%peer, error = %e, "reading contact failed; trying again later");
                self.queues.fail(&peer, flight, Instant::now());
                return;
            }
        };
        let gate = direct::gate(contact.as_ref());
        match contact {
            Some(contact) if gate == sealed_with => self.route(peer, &contact, envelopes, ids),
            // The contact changed since the batch was made (blocked, removed, now
            // only a group member...): it stays queued, and dispatch does what the
            // contact's state asks.
            _ => {
                self.queues.fail(&peer, flight, Instant::now());
                self.dispatch(peer);
            }
        }
    }

    /// The most envelopes one batch for `peer` may carry on the path its queue
    /// takes now ([`RequestSize::max_envelopes`]). Bytes are capped apart, in
    /// [`Actor::dispatch`].
    pub(super) fn batch_cap(&self, peer: &PeerId) -> usize {
        let path = if self.queues.via_relays(peer) { Path::Relays } else { Path::Direct };
        self.request_size.max_envelopes(peer, path)
    }

    /// Sends a sealed batch directly or to the contact's relays. A batch made for a
    /// path that takes more than the one it goes on now (the peer left while its
    /// seals were flushed) sends its front: the rest stays queued, in order, and goes
    /// in the next batch with the seals it has.
    pub(super) fn route(&mut self, peer: PeerId, contact: &Contact, mut envelopes: Vec<Vec<u8>>, mut ids: Vec<MessageId>) {
        let route = direct::route(self.queues.via_relays(&peer), self.connected.contains(&peer), Self::has_relays(contact));
        let cap = match route {
            direct::Route::Relays => self.request_size.max_envelopes(&peer, Path::Relays),
            direct::Route::Direct => self.batch_cap(&peer),
        };
        envelopes.truncate(cap);
        ids.truncate(cap);
        match route {
            direct::Route::Relays => self.deposit(peer, contact, envelopes, ids),
            direct::Route::Direct => self.send_direct(peer, contact, envelopes, ids),
        }
    }

    pub(super) fn send_direct(&mut self, peer: PeerId, contact: &Contact, envelopes: Vec<Vec<u8>>, ids: Vec<MessageId>) {
        let addrs = contact.addrs.clone();
        self.request_size.sent(peer, &envelopes);
        let request_id = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request_with_addresses(&peer, DmRequest { envelopes }, addrs);
        self.queues.mark_in_flight(&peer, Flight::Direct(request_id), ids);
    }

    pub(super) fn on_response(&mut self, peer: PeerId, request_id: OutboundRequestId, response: DmResponse) {
        let Some(ids) = self.queues.in_flight(&peer, Flight::Direct(request_id)) else { return };
        self.request_size.answered(&peer, Path::Direct);
        let answer = direct::answered(&ids, &response.results);
        if answer.miscounted {
            tracing::warn!(%peer, "delivery answer has {} results for {} items", response.results.len(), ids.len());
        }
        for (_, reason) in &answer.refused {
            tracing::warn!(%peer, %reason, "peer refused an item");
        }
        self.settle(peer, Flight::Direct(request_id), &answer.moves);
    }

    /// Record how a delivery attempt ended: `updates` move their messages in one
    /// transaction (ids that are not messages, like receipts, just leave the outbox)
    /// and leave the queue, which moves on; the moves are announced once flushed. If
    /// the store fails, nothing leaves the queue and the batch goes again (receivers
    /// de-duplicate); a crash before the flush does the same.
    pub(super) fn settle(&mut self, peer: PeerId, flight: Flight, updates: &[(MessageId, MessageState)]) {
        let (done, moved) = match self.store.set_message_states(updates, true) {
            Ok(moved) => (updates.iter().map(|(id, _)| *id).collect(), moved),
            Err(e) => {
                tracing::error!(error = %e, "recording delivery states failed; will resend");
                (Vec::new(), Vec::new())
            }
        };
        self.queues.complete(&peer, flight, &done, Instant::now());
        let conversation = ops::direct_conversation(&self.me, &peer).to_string();
        let events: Vec<Event> = updates
            .iter()
            .zip(moved)
            .filter_map(|((id, _), new)| {
                let state = new?;
                // A change's delivery is no message state a client shows.
                (!self.store.messages().is_change(*id))
                    .then(|| Event::MessageStateChanged { id: id.to_string(), conversation: conversation.clone(), state })
            })
            .collect();
        if !events.is_empty() {
            // Announced once durable, but a lost delivery state only means a resend
            // the peer answers again: no flush of its own (see `flusher`).
            self.flusher.after_some_flush(AfterFlush::Events(events));
        }
        // The next batch waits for the sends queued meanwhile: staged first, their
        // flush starts before this batch is sealed (their callers wait on it), and
        // they ride in this batch instead of the one after. Dispatched after the
        // next command batch at the latest (`run`).
        if !self.dispatch_after_sends.contains(&peer) {
            self.dispatch_after_sends.push(peer);
        }
    }

    pub(super) fn on_failure(&mut self, peer: PeerId, request_id: OutboundRequestId, error: &request_response::OutboundFailure) {
        let now = Instant::now();
        let Some(delay) = self.queues.fail(&peer, Flight::Direct(request_id), now) else { return };
        self.request_size.failed(peer, Path::Direct, error);
        let dial_failed = matches!(error, request_response::OutboundFailure::DialFailure);
        if dial_failed {
            self.lookup(peer);
        }
        let contact = self.store.contacts().get(&peer).ok().flatten();
        // libp2p fails a request whose dial waited for another dial to the same peer
        // when that one fails, e.g. a DHT query's, made only with the addresses the
        // DHT knows (behind NAT: unreachable private ones, never the relay circuit).
        let untried = dial_failed && {
            let tried = self.failed_dials.remove(&peer).unwrap_or_default();
            contact.as_ref().is_some_and(|c| {
                c.addrs.iter().filter_map(|a| a.clone().with_p2p(peer).ok()).any(|a| !tried.contains(&a))
            })
        };
        let has_relays = contact.as_ref().is_some_and(Self::has_relays);
        let redials = self.redials.get(&peer).copied().unwrap_or(0);
        match direct::after_failure(dial_failed, untried, redials, has_relays) {
            direct::AfterFailure::Redial => {
                *self.redials.entry(peer).or_default() += 1;
                tracing::debug!(%peer, "a dial without the contact's addresses failed; dialing again with them");
                self.queues.wake(&peer, now);
                self.dispatch(peer);
            }
            direct::AfterFailure::Relays => {
                // No direct path: the recipient's relays hold the mail until it is back.
                tracing::debug!(%peer, %error, "direct delivery failed; depositing to relays");
                self.queues.prefer_relays(&peer, now);
                self.dispatch(peer);
            }
            direct::AfterFailure::Backoff => {
                tracing::debug!(%peer, %error, ?delay, "delivery attempt failed; will retry");
            }
        }
    }

    /// A peer's delivery: stored now, answered once durable.
    pub(super) fn on_request(&mut self, request: DmRequest, channel: request_response::ResponseChannel<DmResponse>) {
        let (results, accepted) = self.accept(&request.envelopes, false);
        self.flusher.after_flush(AfterFlush::Answer { channel, results, accepted });
    }

    /// Take envelopes from a peer or from one of our mailboxes: store them with their
    /// contact changes and queued answers, **not flushed**: the caller flushes, then
    /// answers and hands the rest to [`Actor::after_accept`]. With `from_relay` (drained
    /// from a mailbox), each new message also gets a `delivered` receipt to its author,
    /// who cannot learn it from our answer. One result per envelope, in order.
    pub(super) fn accept(&mut self, envelopes: &[Vec<u8>], from_relay: bool) -> (Vec<DmResult>, Accepted) {
        let mut inbound = Inbound {
            store: &self.store,
            me: self.me,
            my_name: self.config.display_name.as_deref(),
            opener: &mut self.opener,
            ratchets: &mut self.ratchets,
            legacy_grace: self.config.timers.ratchet_legacy_grace,
            tally: Tally::default(),
            from_relay,
        };
        let (mut results, mut outcome) = inbound.apply(envelopes);
        let now = Instant::now();
        for (peer, online, ttl) in std::mem::take(&mut outcome.presence) {
            let now_ms = ops::now_ms();
            let change = self.presence.heard(peer, online, ttl, now, now_ms);
            if let Some(change) = change {
                // Kept, so that "last seen" survives our restart; written only when
                // the contact comes or goes, not for every renewal a peer may send.
                if let Some(at) = change.last_seen {
                    self.remember_last_seen(&peer, at);
                }
                outcome.events.push(presence_event(change));
            }
            if online {
                // Heard from a contact we have not told lately: tell it back.
                self.announce(peer);
            }
        }
        if self.config.presence {
            // One typing event per peer and conversation per `typing_shown_spacing`
            // reaches clients, however fast a peer sends them.
            let spacing = self.config.timers.typing_shown_spacing;
            for event in std::mem::take(&mut outcome.typing) {
                if let Event::Typing { conversation, peer_id, .. } = &event {
                    let key = (conversation.clone(), peer_id.clone());
                    if self.typing_heard.get(&key).is_some_and(|at| now.duration_since(*at) < spacing) {
                        continue;
                    }
                    self.typing_heard.retain(|_, at| now.duration_since(*at) < spacing);
                    self.typing_heard.insert(key, now);
                }
                outcome.events.push(event);
            }
        }
        for peer in outcome.touched.clone() {
            // A contact just accepted (or changed) while connected hears we are online.
            if self.connected.contains(&peer) {
                self.announce(peer);
            }
        }
        for (sender, ids) in std::mem::take(&mut outcome.receipted) {
            self.relays.delivered(&sender, &ids);
        }
        let deliveries = std::mem::take(&mut outcome.group);
        self.receive_group(deliveries, &mut results);
        self.settle_ratcheted(std::mem::take(&mut outcome.ratcheted), &results);
        let resets = self.offer_resets(std::mem::take(&mut outcome.rekey));
        let resent = self.resend_undelivered(std::mem::take(&mut outcome.resend));
        // Someone who became a contact gets its deposit ticket with this batch.
        self.give_tickets_due(false);
        let queued = outcome.queued || resets || resent || (from_relay && self.queue_delivery_receipts(&outcome.stored));
        (results, Accepted { events: outcome.events, queued, touched: outcome.touched, rekeyed: outcome.rekeyed })
    }

    /// Stored envelopes are durable: publish their events and move the affected
    /// queues.
    /// Acts on what durable deliveries brought; returns whether they queued outbox
    /// entries (the caller reloads the outbox once for all of them).
    #[must_use]
    pub(super) fn after_accept(&mut self, accepted: Accepted) -> bool {
        let Accepted { events, queued, touched, rekeyed } = accepted;
        for event in events {
            self.emit(event);
        }
        for peer in &rekeyed {
            // New ratchet keys (after a reset): what was sealed for it before, in the
            // sessions it dropped, is sealed again.
            self.drop_seals(peer);
        }
        let now = Instant::now();
        for peer in &touched {
            self.queues.wake(peer, now);
        }
        for peer in touched {
            self.dispatch(peer);
        }
        queued
    }
}
