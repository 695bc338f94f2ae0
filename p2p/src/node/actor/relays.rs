//! The node's side of relays: depositing sealed mail in a recipient's mailboxes when
//! no direct path works, and draining our own mailboxes at our pinned relays.
//!
//! Deposits: one attempt sends the batch to every relay the recipient pinned; the
//! first relay that holds it durably makes the messages `sent` (the receiver's
//! de-duplication makes the other copies harmless). If no relay holds it, the batch
//! stays queued and is retried with backoff. Refusals are reported as
//! [`Event::RelayRefused`].
//!
//! Drains, per pinned relay, on connecting to it and periodically: challenge → signed
//! drain of a page → apply the envelopes exactly as direct deliveries (stored and
//! flushed first) → challenge → signed ack of what is stored → next page while there is
//! more. Messages that arrived this way get a `delivered` receipt to their author.

use std::collections::HashMap;
use std::time::Instant;

use kith_storage::{Contact, MessageId, MessageState};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::{Multiaddr, PeerId};

use super::Actor;
use crate::dm::{DmResult, RejectReason};
use crate::mailbox::{self, MailboxRequest, MailboxResponse, Refusal};
use crate::node::Event;
use crate::node::outbox::Flight;
use crate::ops;
use crate::payload::{Payload, ReceiptKind};

/// Relay bookkeeping owned by the actor.
#[derive(Default)]
pub(super) struct RelayState {
    next_attempt: u64,
    /// Deposit attempts in flight, by attempt number.
    attempts: HashMap<u64, Attempt>,
    /// Mailbox requests in flight.
    requests: HashMap<OutboundRequestId, Pending>,
    /// Drain sessions, by pinned relay.
    drains: HashMap<PeerId, Drain>,
}

struct Attempt {
    recipient: PeerId,
    outstanding: usize,
    settled: bool,
}

enum Pending {
    Deposit { attempt: u64, relay: PeerId },
    DrainChallenge { relay: PeerId },
    Page { relay: PeerId },
    AckChallenge { relay: PeerId, seqs: Vec<u64> },
    Ack { relay: PeerId },
}

impl Pending {
    /// The relay the request went to.
    fn relay(&self) -> PeerId {
        match self {
            Pending::Deposit { relay, .. }
            | Pending::DrainChallenge { relay }
            | Pending::Page { relay }
            | Pending::AckChallenge { relay, .. }
            | Pending::Ack { relay } => *relay,
        }
    }
}

#[derive(Default)]
struct Drain {
    busy: bool,
    cursor: Option<u64>,
    more: bool,
}

/// The relay's peer id: the last `/p2p/` of its address.
pub(crate) fn relay_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().filter_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None }).last()
}

/// A contact's pinned relays that we can address.
fn relays_of(contact: &Contact) -> Vec<(PeerId, Multiaddr)> {
    contact
        .relays
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .filter_map(|a| Some((relay_peer(&a)?, a)))
        .collect()
}

impl Actor {
    /// Whether `contact` pinned any relay we could deposit to.
    pub(super) fn has_relays(contact: &Contact) -> bool {
        !relays_of(contact).is_empty()
    }

    /// Send a sealed batch for `recipient` to all of its relays (see
    /// [`Actor::has_relays`]) as one attempt.
    pub(super) fn deposit(&mut self, recipient: PeerId, contact: &Contact, envelopes: Vec<Vec<u8>>, ids: Vec<MessageId>) {
        let relays = relays_of(contact);
        if relays.is_empty() {
            return;
        }
        let attempt = self.relays.next_attempt;
        self.relays.next_attempt += 1;
        for (relay, addr) in &relays {
            let request = MailboxRequest::deposit(&recipient, envelopes.clone());
            let id = self.swarm.behaviour_mut().mailbox.send_request_with_addresses(relay, request, vec![addr.clone()]);
            self.relays.requests.insert(id, Pending::Deposit { attempt, relay: *relay });
        }
        self.relays.attempts.insert(attempt, Attempt { recipient, outstanding: relays.len(), settled: false });
        self.queues.mark_in_flight(&recipient, Flight::Relays(attempt), ids);
        tracing::debug!(%recipient, relays = relays.len(), "deposited to relays");
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
        let drain = self.relays.drains.entry(relay).or_default();
        if drain.busy {
            return;
        }
        drain.busy = true;
        drain.cursor = None;
        let id = self.swarm.behaviour_mut().mailbox.send_request_with_addresses(&relay, MailboxRequest::Challenge, vec![addr]);
        self.relays.requests.insert(id, Pending::DrainChallenge { relay });
    }

    fn drain_done(&mut self, relay: &PeerId) {
        if let Some(d) = self.relays.drains.get_mut(relay) {
            d.busy = false;
        }
    }

    fn mailbox_request(&mut self, relay: &PeerId, request: MailboxRequest, pending: Pending) {
        let id = self.swarm.behaviour_mut().mailbox.send_request(relay, request);
        self.relays.requests.insert(id, pending);
    }

    /// An event of the mailbox protocol.
    pub(super) fn mailbox_event(&mut self, event: request_response::Event<MailboxRequest, MailboxResponse>) {
        match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => {
                if let Some(pending) = self.relays.requests.remove(&request_id) {
                    self.mailbox_response(pending, response);
                }
            }
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(relay = %peer, %error, "mailbox request failed");
                match self.relays.requests.remove(&request_id) {
                    Some(Pending::Deposit { attempt, .. }) => self.attempt_answered(attempt),
                    Some(step) => self.drain_done(&step.relay()),
                    None => {}
                }
            }
            _ => {}
        }
    }

    fn mailbox_response(&mut self, pending: Pending, response: MailboxResponse) {
        match (pending, response) {
            (Pending::Deposit { attempt, relay }, MailboxResponse::Deposited { results }) => {
                self.deposited(attempt, relay, &results);
                self.attempt_answered(attempt);
            }
            (Pending::Deposit { attempt, relay }, MailboxResponse::Refused(refusal)) => {
                if let Some(a) = self.relays.attempts.get(&attempt) {
                    let recipient = a.recipient;
                    self.refused(relay, recipient, refusal);
                }
                self.attempt_answered(attempt);
            }
            (Pending::DrainChallenge { relay }, MailboxResponse::Challenge { nonce }) => {
                let after = self.relays.drains.get(&relay).and_then(|d| d.cursor);
                let max = mailbox::MAX_DRAIN_ITEMS as u32;
                let request = MailboxRequest::drain(&self.config.identity, &relay, nonce, after, max);
                self.mailbox_request(&relay, request, Pending::Page { relay });
            }
            (Pending::Page { relay }, MailboxResponse::Envelopes { items, more }) => {
                self.drained_page(relay, items, more);
            }
            (Pending::AckChallenge { relay, seqs }, MailboxResponse::Challenge { nonce }) => {
                let request = MailboxRequest::ack(&self.config.identity, &relay, nonce, seqs);
                self.mailbox_request(&relay, request, Pending::Ack { relay });
            }
            (Pending::Ack { relay }, MailboxResponse::Acked { .. }) => {
                let more = self.relays.drains.get(&relay).is_some_and(|d| d.more);
                if more {
                    self.mailbox_request(&relay, MailboxRequest::Challenge, Pending::DrainChallenge { relay });
                } else {
                    self.drain_done(&relay);
                }
            }
            (Pending::Deposit { attempt, relay }, response) => {
                tracing::warn!(%relay, ?response, "unexpected answer to a deposit");
                self.attempt_answered(attempt);
            }
            (step, response) => {
                let relay = step.relay();
                tracing::warn!(%relay, ?response, "relay refused to let us drain our mailbox");
                self.drain_done(&relay);
            }
        }
    }

    /// A relay answered a deposit: what it holds is `sent`; the first such answer
    /// settles the attempt.
    fn deposited(&mut self, attempt: u64, relay: PeerId, results: &[mailbox::DepositResult]) {
        let Some(a) = self.relays.attempts.get(&attempt) else { return };
        let (recipient, settled) = (a.recipient, a.settled);
        for result in results {
            if let mailbox::DepositResult::Refused(refusal) = result {
                self.refused(relay, recipient, *refusal);
            }
        }
        if settled {
            return;
        }
        let Some(ids) = self.queues.in_flight(&recipient, Flight::Relays(attempt)) else { return };
        let held: Vec<(MessageId, MessageState)> = ids
            .iter()
            .zip(results)
            .filter(|(_, r)| r.is_held())
            .map(|(id, _)| (*id, MessageState::Sent))
            .collect();
        if held.is_empty() {
            return;
        }
        if let Some(a) = self.relays.attempts.get_mut(&attempt) {
            a.settled = true;
        }
        self.settle(recipient, Flight::Relays(attempt), &held);
    }

    /// One request of a deposit attempt is over; when all are and none held the
    /// batch, it is retried after a backoff.
    fn attempt_answered(&mut self, attempt: u64) {
        let Some(a) = self.relays.attempts.get_mut(&attempt) else { return };
        a.outstanding = a.outstanding.saturating_sub(1);
        if a.outstanding > 0 {
            return;
        }
        let (recipient, settled) = (a.recipient, a.settled);
        self.relays.attempts.remove(&attempt);
        let retry = if settled { None } else { self.queues.fail(&recipient, Flight::Relays(attempt), Instant::now()) };
        if let Some(delay) = retry {
            tracing::debug!(%recipient, ?delay, "no relay holds the batch; will retry");
        }
    }

    fn refused(&mut self, relay: PeerId, recipient: PeerId, refusal: Refusal) {
        tracing::warn!(%relay, %recipient, %refusal, "relay refused mail");
        self.emit(Event::RelayRefused {
            relay: relay.to_string(),
            recipient: recipient.to_string(),
            code: refusal.as_str().to_owned(),
            message: refusal.to_string(),
        });
    }

    /// Queue a `delivered` receipt to the author of each of `stored` (not flushed).
    /// Returns whether anything was queued.
    pub(super) fn queue_delivery_receipts(&self, stored: &[(String, MessageId)]) -> bool {
        let mut by_author: HashMap<&str, Vec<MessageId>> = HashMap::new();
        for (author, id) in stored {
            by_author.entry(author).or_default().push(*id);
        }
        let mut queued = false;
        for (author, ids) in by_author {
            for receipt in Payload::receipts(ReceiptKind::Delivered, &ids) {
                match ops::enqueue(&self.store, author, &receipt) {
                    Ok(_) => queued = true,
                    Err(e) => tracing::warn!(error = %e, "cannot queue a delivery receipt"),
                }
            }
        }
        queued
    }

    /// A page of our mail: store it like a direct delivery, receipt it, then ack it.
    fn drained_page(&mut self, relay: PeerId, items: Vec<mailbox::MailItem>, more: bool) {
        let (page, envelopes): (Vec<u64>, Vec<Vec<u8>>) = items.into_iter().map(|i| (i.seq, i.envelope)).unzip();
        let (mut results, accepted) = self.accept(&envelopes, true);
        // The relay deletes what we ack: flush first (here, not on the flushing
        // thread: draining is not the hot path).
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "flushing drained mail failed; the relay keeps it");
            super::unstored(&mut results);
        }
        self.after_accept(accepted);
        // Everything but what our disk failed to store can go from the relay.
        let seqs: Vec<u64> = page
            .iter()
            .zip(&results)
            .filter(|(_, r)| !matches!(r, DmResult::Rejected(RejectReason::Storage | RejectReason::Unready)))
            .map(|(seq, _)| *seq)
            .collect();
        tracing::debug!(%relay, items = page.len(), more, "drained a page");
        let Some(drain) = self.relays.drains.get_mut(&relay) else { return };
        drain.cursor = page.last().copied().or(drain.cursor);
        drain.more = more;
        if seqs.is_empty() {
            drain.busy = false;
            return;
        }
        self.mailbox_request(&relay, MailboxRequest::Challenge, Pending::AckChallenge { relay, seqs });
    }
}
