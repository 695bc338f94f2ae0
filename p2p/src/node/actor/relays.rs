//! The actor's side of relays' mailboxes: it sends what the [`MailboxClient`] state
//! machine asks (signing drains and acks), feeds it the answers, and carries out its
//! effects on the outbox queues, the store and the event stream. The protocol logic
//! (attempts, drain steps) and its tests live in `node::mailbox_client`.
//!
//! Messages that arrived through a drain get a `delivered` receipt to their author.

use std::collections::HashMap;
use std::time::Instant;

use kith_storage::{Contact, MessageId, MessageState};
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::{Multiaddr, PeerId};

use super::Actor;
use crate::dm::{DmResult, RejectReason};
use crate::mailbox::{self, MailboxRequest, MailboxResponse};
use crate::node::{Event, direct};
use crate::node::mailbox_client::{Ask, Effect, Request};
use crate::node::outbox::Flight;
use crate::node::request_size::Path;
use crate::ops;
use crate::payload::ReceiptKind;

/// The relay's peer id: the last `/p2p/` of its address.
pub(crate) fn relay_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().filter_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None }).last()
}

/// A contact's pinned relays that we can address, each once (the first address
/// of a relay pinned under several).
fn relays_of(contact: &Contact) -> Vec<(PeerId, Multiaddr)> {
    let mut relays: Vec<(PeerId, Multiaddr)> = Vec::new();
    for addr in &contact.relays {
        if let Some(relay) = relay_peer(addr)
            && !relays.iter().any(|(known, _)| *known == relay)
        {
            relays.push((relay, addr.clone()));
        }
    }
    relays
}

impl Actor {
    /// Whether `contact` pinned any relay we could deposit to.
    pub(super) fn has_relays(contact: &Contact) -> bool {
        contact.relays.iter().any(|addr| relay_peer(addr).is_some())
    }

    /// Send a sealed batch for `recipient` to all of its relays (see
    /// [`Actor::has_relays`]) as one attempt.
    pub(super) fn deposit(&mut self, recipient: PeerId, contact: &Contact, envelopes: Vec<Vec<u8>>, ids: Vec<MessageId>) {
        let relays = relays_of(contact);
        self.request_size.sent(recipient, &envelopes);
        let Some((attempt, effects)) = self.relays.deposit(recipient, &relays, envelopes, &ids) else { return };
        self.queues.mark_in_flight(&recipient, Flight::Relays(attempt), ids);
        tracing::debug!(%recipient, relays = relays.len(), "deposited to relays");
        self.mailbox_effects(effects);
    }

    /// Sends again, to relays that missed them, envelopes another relay holds (see
    /// `node::mailbox_client`), as they fall due.
    /// A recipient removed or blocked since gets nothing more (its redeposits go),
    /// whether or not a queue of its own brings it to [`Actor::dispatch`].
    pub(super) fn redeposit_due(&mut self, now: Instant) {
        let mut effects = self.relays.due(now);
        let mut gone = Vec::new();
        for effect in &effects {
            if let Effect::Send(Request { ask: Ask::Deposit { recipient, .. }, .. }) = effect
                && !gone.contains(recipient)
                // A store that cannot be read says nothing: the redeposit goes.
                && let Ok(contact) = self.store.contacts().get(recipient)
                && matches!(direct::gate(contact.as_ref()), direct::Gate::Removed | direct::Gate::Blocked)
            {
                gone.push(*recipient);
            }
        }
        for recipient in &gone {
            self.relays.forget(recipient);
        }
        effects.retain(|e| !matches!(e, Effect::Send(Request { ask: Ask::Deposit { recipient, .. }, .. }) if gone.contains(recipient)));
        self.mailbox_effects(effects);
    }

    /// Drain every pinned relay that is not already being drained.
    pub(super) fn drain_all(&mut self) {
        let relays: Vec<(PeerId, Multiaddr)> =
            self.config.relays.iter().filter_map(|a| Some((relay_peer(a)?, a.clone()))).collect();
        for (relay, addr) in relays {
            self.start_drain(relay, addr);
        }
    }

    /// Whether `peer` is one of our pinned relays.
    pub(super) fn is_pinned_relay(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.config.relays.iter().find(|a| relay_peer(a).as_ref() == Some(peer)).cloned()
    }

    pub(super) fn start_drain(&mut self, relay: PeerId, addr: Multiaddr) {
        let effects = self.relays.drain(relay, addr);
        self.mailbox_effects(effects);
    }

    /// An event of the mailbox protocol.
    pub(super) fn mailbox_event(&mut self, event: request_response::Event<MailboxRequest, MailboxResponse>) {
        let effects = match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => self.relays.answered(request_id, response, Instant::now()),
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(relay = %peer, %error, "mailbox request failed");
                if let Some(recipient) = self.relays.deposit_recipient(&request_id) {
                    self.request_size.failed(recipient, Path::Relays, &error);
                }
                self.relays.failed(request_id, Instant::now())
            }
            _ => Vec::new(),
        };
        self.mailbox_effects(effects);
    }

    /// Carries out what the mailbox client asked.
    fn mailbox_effects(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(request) => self.send_mailbox_request(request),
                Effect::Held { recipient, attempt, held } => {
                    let Some(ids) = self.queues.in_flight(&recipient, Flight::Relays(attempt)) else { continue };
                    self.request_size.answered(&recipient, Path::Relays);
                    let held: Vec<(MessageId, MessageState)> = ids
                        .iter()
                        .zip(held)
                        .filter(|(_, held)| *held)
                        .map(|(id, _)| (*id, MessageState::Sent))
                        .collect();
                    if !held.is_empty() {
                        self.settle(recipient, Flight::Relays(attempt), &held);
                    }
                }
                Effect::Unheld { recipient, attempt } => {
                    if let Some(delay) = self.queues.fail(&recipient, Flight::Relays(attempt), Instant::now()) {
                        tracing::debug!(%recipient, ?delay, "no relay holds the batch; will retry");
                    }
                }
                Effect::Refused { relay, recipient, refusal } => {
                    tracing::warn!(%relay, %recipient, %refusal, "relay refused mail");
                    self.emit(Event::RelayRefused {
                        relay: relay.to_string(),
                        recipient: recipient.to_string(),
                        code: refusal.as_str().to_owned(),
                        message: refusal.to_string(),
                    });
                }
                Effect::Store { relay, items } => self.store_drained(relay, items),
            }
        }
    }

    fn send_mailbox_request(&mut self, request: Request) {
        let Request { relay, addr, ask, step } = request;
        let message = match ask {
            Ask::Deposit { recipient, envelopes } => {
                MailboxRequest::deposit_with(&recipient, envelopes, self.held_ticket(&recipient))
            }
            Ask::Challenge => MailboxRequest::Challenge,
            Ask::Drain { nonce, after } => {
                MailboxRequest::drain(&self.config.identity, &relay, nonce, after, mailbox::MAX_DRAIN_ITEMS as u32)
            }
            Ask::Ack { nonce, seqs } => MailboxRequest::ack(&self.config.identity, &relay, nonce, seqs),
        };
        let behaviour = &mut self.swarm.behaviour_mut().mailbox;
        let id = match addr {
            Some(addr) => behaviour.send_request_with_addresses(&relay, message, vec![addr]),
            None => behaviour.send_request(&relay, message),
        };
        self.relays.sent(id, relay, step);
    }

    /// The deposit ticket `owner` gave us, unless it has run out: its mailboxes then
    /// take our deposits beyond the share open to anyone.
    fn held_ticket(&self, owner: &PeerId) -> Option<mailbox::DepositTicket> {
        let held = match self.store.deposit_tickets().held(owner) {
            Ok(held) => held?,
            Err(e) => {
                // The deposit goes all the same, in the share open to anyone.
                tracing::warn!(%owner, error = %e, "reading a deposit ticket failed");
                return None;
            }
        };
        (held.not_after_ms >= ops::now_ms()).then(|| held.into())
    }

    /// Queue a `delivered` receipt to the author of each of `stored` (not flushed).
    /// Returns whether anything was queued.
    pub(super) fn queue_delivery_receipts(&self, stored: &[(String, MessageId)]) -> bool {
        let mut by_author: HashMap<&str, Vec<MessageId>> = HashMap::new();
        for (author, id) in stored {
            by_author.entry(author).or_default().push(*id);
        }
        let by_author = by_author.into_iter().filter_map(|(author, ids)| Some((author.parse::<PeerId>().ok()?, ids)));
        self.queue_receipts_by_author(by_author)
    }

    /// Queue a `delivered` receipt to each author for the ids given with it (not
    /// flushed). Returns whether anything was queued.
    pub(super) fn queue_receipts_by_author(&self, by_author: impl IntoIterator<Item = (PeerId, Vec<MessageId>)>) -> bool {
        let mut queued = false;
        for (author, ids) in by_author {
            match ops::enqueue_receipts(&self.store, &author, ReceiptKind::Delivered, &ids) {
                Ok(()) => queued = true,
                Err(e) => tracing::warn!(error = %e, "cannot queue a delivery receipt"),
            }
        }
        queued
    }

    /// A page of our mail: store it like a direct delivery and receipt it; the relay
    /// is asked to delete it once the flushing thread has made it durable
    /// ([`Actor::drained_stored`]).
    fn store_drained(&mut self, relay: PeerId, items: Vec<mailbox::MailItem>) {
        let (seqs, envelopes): (Vec<u64>, Vec<Vec<u8>>) = items.into_iter().map(|i| (i.seq, i.envelope)).unzip();
        let (results, accepted) = self.accept(&envelopes, true);
        tracing::debug!(%relay, items = seqs.len(), "drained a page");
        self.flusher.after_flush(super::AfterFlush::Drained { relay, seqs, results, accepted });
    }

    /// A drained page is as durable as it will get: everything but what our disk
    /// failed to store may go from the relay.
    pub(super) fn drained_stored(&mut self, relay: PeerId, seqs: &[u64], results: &[DmResult]) {
        let stored = seqs
            .iter()
            .zip(results)
            .filter(|(_, r)| !matches!(r, DmResult::Rejected(RejectReason::Storage | RejectReason::Unready)))
            .map(|(seq, _)| *seq)
            .collect();
        let disk_failed = results.iter().any(|r| matches!(r, DmResult::Rejected(RejectReason::Storage)));
        let effects = self.relays.page_stored(relay, stored, disk_failed);
        self.mailbox_effects(effects);
    }
}
