//! [`MailboxClient`]: the node's side of relays' mailboxes as a state machine that
//! takes answers and returns what to do, without a network or a store.
//!
//! Deposits: one attempt sends a sealed batch to every relay the recipient pinned;
//! the first relay that holds it durably settles the attempt ([`Effect::Held`]: those
//! messages are `sent`; the receiver's de-duplication makes the other copies
//! harmless). When every relay has answered or failed and none held the batch, the
//! attempt ends unheld ([`Effect::Unheld`]: retry with backoff). Refusals are reported
//! per relay ([`Effect::Refused`]).
//!
//! Redeposits: a relay that says it holds mail can still lose it (a crash, a full
//! disk, a hostile operator), and nothing sends a `sent` message again. So when
//! the attempt is over, every other relay of it that did not take what the first
//! one held (unreachable, busy, a passing refusal) is sent those envelopes again
//! later, with backoff, until it holds them, refuses them for good, a receipt says
//! the recipient has them ([`MailboxClient::delivered`]), or
//! [`REDEPOSIT_TRIES`](super::redeposits::REDEPOSIT_TRIES) tries were made. Kept in memory only, up to
//! [`MAX_REDEPOSIT_BYTES`](super::redeposits::MAX_REDEPOSIT_BYTES): a restart or a full budget leaves the mail with the
//! relays that hold it, as before.
//!
//! Drains, per pinned relay, one at a time: challenge → signed drain of a page →
//! the caller stores the page ([`Effect::Store`]) and reports what it stored
//! ([`MailboxClient::page_stored`]) → challenge → signed ack of that → the next page
//! while the relay says there is more and the page was not empty. A failure or
//! refusal at any step ends the drain; the next [`drain`](MailboxClient::drain)
//! starts over from the relay's oldest envelope (what was acked is gone, what was
//! not comes again and is de-duplicated).
//!
//! The actor sends each [`Request`] (signing drains and acks with the identity, which
//! stays out of this module), reports the request id with
//! [`sent`](MailboxClient::sent), and feeds answers and failures back.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use kith_storage::MessageId;
use libp2p::request_response::OutboundRequestId;
use libp2p::{Multiaddr, PeerId};

use super::redeposits::Redeposits;
use crate::mailbox::{DepositResult, MailItem, MailboxResponse, NONCE_LEN, Refusal};

/// A request for the actor to send to `relay` (at `addr` if given, else on the
/// connection it has), then to report with [`MailboxClient::sent`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The relay it goes to.
    pub(crate) relay: PeerId,
    /// Where to dial the relay, when not connected.
    pub(crate) addr: Option<Multiaddr>,
    /// What to ask.
    pub(crate) ask: Ask,
    /// What the answer continues (opaque to the actor).
    pub(crate) step: Step,
}

/// What a [`Request`] asks of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Hold these envelopes for `recipient`.
    Deposit {
        /// Whose mailbox.
        recipient: PeerId,
        /// The sealed envelopes.
        envelopes: Vec<Vec<u8>>,
    },
    /// A fresh challenge nonce (before a drain or an ack).
    Challenge,
    /// A page of our mailbox after `after` (signed over the nonce).
    Drain {
        /// The relay's challenge.
        nonce: [u8; NONCE_LEN],
        /// The last sequence number already seen in this drain.
        after: Option<u64>,
    },
    /// Delete `seqs` from our mailbox (signed over the nonce).
    Ack {
        /// The relay's challenge.
        nonce: [u8; NONCE_LEN],
        /// What we stored.
        seqs: Vec<u64>,
    },
}

/// What an answer to a request continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step(Pending);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Deposit { attempt: u64 },
    Redeposit { key: u64, ids: Vec<MessageId> },
    DrainChallenge,
    Page,
    AckChallenge { seqs: Vec<u64> },
    Ack,
}

/// What the actor does after an input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Send this request.
    Send(Request),
    /// The first relay to answer held these envelopes of the attempt's batch (one
    /// flag per envelope, in order): their messages are `sent`.
    Held {
        /// Whose batch.
        recipient: PeerId,
        /// The attempt, as [`MailboxClient::deposit`] returned it.
        attempt: u64,
        /// Per envelope, whether the relay holds it.
        held: Vec<bool>,
    },
    /// Every relay of the attempt answered or failed, and none held the batch.
    Unheld {
        /// Whose batch.
        recipient: PeerId,
        /// The attempt.
        attempt: u64,
    },
    /// A relay refused mail for `recipient`.
    Refused {
        /// Which relay.
        relay: PeerId,
        /// Whose mail.
        recipient: PeerId,
        /// Why.
        refusal: Refusal,
    },
    /// A page of our own mail: store it durably, then report with
    /// [`MailboxClient::page_stored`].
    Store {
        /// The relay it came from.
        relay: PeerId,
        /// The envelopes, in sequence order.
        items: Vec<MailItem>,
    },
}

struct Attempt {
    recipient: PeerId,
    /// Envelopes in the batch: an answer must have one result per envelope.
    envelopes: usize,
    outstanding: usize,
    /// Per envelope, whether the relay that settled the attempt holds it (those
    /// messages are `sent`); `None` until one did.
    settled: Option<Vec<bool>>,
    /// With more than one relay, what a redeposit needs.
    copies: Option<Copies>,
}

/// A batch deposited at several relays, kept until each has answered.
struct Copies {
    batch: Vec<Vec<u8>>,
    ids: Vec<MessageId>,
    relays: Vec<(PeerId, Multiaddr)>,
    /// Per relay (in `relays` order), per envelope: it does not hold it, and did not
    /// refuse it for good.
    missing: Vec<Vec<bool>>,
}

#[derive(Default)]
struct Drain {
    busy: bool,
    cursor: Option<u64>,
    more: bool,
}

/// Deposit attempts and drains in progress, and the requests they wait on (by the
/// swarm's request id; any id type in tests).
pub(crate) struct MailboxClient<Id = OutboundRequestId> {
    next_attempt: u64,
    attempts: HashMap<u64, Attempt>,
    requests: HashMap<Id, (PeerId, Pending)>,
    drains: HashMap<PeerId, Drain>,
    redeposits: Redeposits,
}

impl<Id> Default for MailboxClient<Id> {
    fn default() -> Self {
        MailboxClient::new(Duration::from_secs(30))
    }
}

impl<Id> MailboxClient<Id> {
    /// A client whose redeposits wait `redeposit_after` first, doubling per try.
    pub(crate) fn new(redeposit_after: Duration) -> Self {
        MailboxClient {
            next_attempt: 0,
            attempts: HashMap::new(),
            requests: HashMap::new(),
            drains: HashMap::new(),
            redeposits: Redeposits::new(redeposit_after),
        }
    }
}

impl<Id: Hash + Eq> MailboxClient<Id> {
    /// Starts a deposit attempt of `envelopes` (whose outbox ids are `ids`, in
    /// order) for `recipient` at each of `relays`; returns its number (`None`
    /// without relays) and the requests to send.
    pub(crate) fn deposit(
        &mut self,
        recipient: PeerId,
        relays: &[(PeerId, Multiaddr)],
        envelopes: Vec<Vec<u8>>,
        ids: &[MessageId],
    ) -> Option<(u64, Vec<Effect>)> {
        if relays.is_empty() {
            return None;
        }
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        // One relay has no other to fall back on: nothing to keep for a redeposit.
        let copies = (relays.len() > 1 && ids.len() == envelopes.len()).then(|| Copies {
            batch: envelopes.clone(),
            ids: ids.to_vec(),
            relays: relays.to_vec(),
            missing: vec![vec![true; envelopes.len()]; relays.len()],
        });
        self.attempts.insert(attempt, Attempt { recipient, envelopes: envelopes.len(), outstanding: relays.len(), settled: None, copies });
        let sends = relays
            .iter()
            .map(|(relay, addr)| {
                Effect::Send(Request {
                    relay: *relay,
                    addr: Some(addr.clone()),
                    ask: Ask::Deposit { recipient, envelopes: envelopes.clone() },
                    step: Step(Pending::Deposit { attempt }),
                })
            })
            .collect();
        Some((attempt, sends))
    }

    /// Starts draining our mailbox at `relay` unless a drain there is under way.
    pub(crate) fn drain(&mut self, relay: PeerId, addr: Multiaddr) -> Vec<Effect> {
        let drain = self.drains.entry(relay).or_default();
        if drain.busy {
            return Vec::new();
        }
        *drain = Drain { busy: true, cursor: None, more: false };
        vec![Effect::Send(Request { relay, addr: Some(addr), ask: Ask::Challenge, step: Step(Pending::DrainChallenge) })]
    }

    /// Whether a drain at `relay` is under way.
    #[cfg(test)]
    pub(crate) fn draining(&self, relay: &PeerId) -> bool {
        self.drains.get(relay).is_some_and(|d| d.busy)
    }

    /// The actor sent `request` as `id`.
    pub(crate) fn sent(&mut self, id: Id, relay: PeerId, step: Step) {
        self.requests.insert(id, (relay, step.0));
    }

    /// The recipient of the deposit `id` carries, if it is one.
    pub(crate) fn deposit_recipient(&self, id: &Id) -> Option<PeerId> {
        match self.requests.get(id) {
            Some((_, Pending::Deposit { attempt })) => self.attempts.get(attempt).map(|a| a.recipient),
            _ => None,
        }
    }

    /// `id` could not be sent or was not answered (at `now`).
    pub(crate) fn failed(&mut self, id: Id, now: Instant) -> Vec<Effect> {
        match self.requests.remove(&id) {
            Some((_, Pending::Deposit { attempt })) => self.attempt_answered(attempt, now),
            Some((_, Pending::Redeposit { key, .. })) => {
                self.redeposits.answered(key, &[], now);
                Vec::new()
            }
            Some((relay, _)) => {
                self.drain_done(&relay);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The relay answered `id` (at `now`).
    pub(crate) fn answered(&mut self, id: Id, response: MailboxResponse, now: Instant) -> Vec<Effect> {
        let Some((relay, pending)) = self.requests.remove(&id) else {
            return Vec::new();
        };
        let send = |ask, step| vec![Effect::Send(Request { relay, addr: None, ask, step: Step(step) })];
        match (pending, response) {
            (Pending::Deposit { attempt }, MailboxResponse::Deposited { results }) => {
                let mut effects = self.deposited(attempt, relay, &results);
                effects.extend(self.attempt_answered(attempt, now));
                effects
            }
            (Pending::Deposit { attempt }, MailboxResponse::Refused(refusal)) => {
                let mut effects = Vec::new();
                if let Some(a) = self.attempts.get_mut(&attempt) {
                    effects.push(Effect::Refused { relay, recipient: a.recipient, refusal });
                    if refusal.is_permanent()
                        && let Some(missing) = a.copies.as_mut().and_then(|c| c.missing_at(&relay))
                    {
                        missing.fill(false);
                    }
                }
                effects.extend(self.attempt_answered(attempt, now));
                effects
            }
            (Pending::Deposit { attempt }, response) => {
                tracing::warn!(%relay, response = response.kind(), "unexpected answer to a deposit");
                self.attempt_answered(attempt, now)
            }
            (Pending::Redeposit { key, ids }, MailboxResponse::Deposited { results }) => {
                let done = settled_ids(&ids, &results);
                self.redeposits.answered(key, &done, now);
                Vec::new()
            }
            (Pending::Redeposit { key, ids }, MailboxResponse::Refused(refusal)) => {
                tracing::debug!(%relay, %refusal, "a relay refused mail sent again");
                let done = if refusal.is_permanent() { ids } else { Vec::new() };
                self.redeposits.answered(key, &done, now);
                Vec::new()
            }
            (Pending::Redeposit { key, .. }, response) => {
                tracing::warn!(%relay, response = response.kind(), "unexpected answer to a deposit");
                self.redeposits.answered(key, &[], now);
                Vec::new()
            }
            (Pending::DrainChallenge, MailboxResponse::Challenge { nonce }) => {
                let after = self.drains.get(&relay).and_then(|d| d.cursor);
                send(Ask::Drain { nonce, after }, Pending::Page)
            }
            (Pending::Page, MailboxResponse::Envelopes { items, more }) => {
                let drain = self.drains.entry(relay).or_default();
                if !rises_after(drain.cursor, items.iter().map(|i| i.seq)) {
                    // A relay that pages backwards (or in place) would keep us walking.
                    tracing::warn!(%relay, "drain page out of sequence order; drain ended");
                    drain.busy = false;
                    return Vec::new();
                }
                drain.cursor = items.last().map(|i| i.seq).or(drain.cursor);
                // An empty page moved nothing: asking again at once (as `more` says)
                // would loop for as long as a broken or hostile relay kept saying so.
                drain.more = more && !items.is_empty();
                vec![Effect::Store { relay, items }]
            }
            (Pending::AckChallenge { seqs }, MailboxResponse::Challenge { nonce }) => {
                send(Ask::Ack { nonce, seqs }, Pending::Ack)
            }
            (Pending::Ack, MailboxResponse::Acked { .. }) => {
                if self.drains.get(&relay).is_some_and(|d| d.more) {
                    send(Ask::Challenge, Pending::DrainChallenge)
                } else {
                    self.drain_done(&relay);
                    Vec::new()
                }
            }
            (_, response) => {
                match response {
                    MailboxResponse::Refused(refusal) => tracing::warn!(%relay, ?refusal, "relay refused to let us drain our mailbox"),
                    other => tracing::warn!(%relay, response = other.kind(), "unexpected answer while draining our mailbox"),
                }
                self.drain_done(&relay);
                Vec::new()
            }
        }
    }

    /// The page last drained from `relay` is stored, except what our disk failed to
    /// store (`disk_failed`) and what waits for something first: `stored` are the
    /// sequence numbers the relay may delete. A page with nothing to delete ends the
    /// drain if our disk failed; otherwise the next page is asked for, so that mail
    /// that must wait (a group's key before its group) never holds up what is behind
    /// it.
    pub(crate) fn page_stored(&mut self, relay: PeerId, stored: Vec<u64>, disk_failed: bool) -> Vec<Effect> {
        if stored.is_empty() {
            if disk_failed || !self.drains.get(&relay).is_some_and(|d| d.more) {
                self.drain_done(&relay);
                return Vec::new();
            }
            return vec![Effect::Send(Request { relay, addr: None, ask: Ask::Challenge, step: Step(Pending::DrainChallenge) })];
        }
        vec![Effect::Send(Request {
            relay,
            addr: None,
            ask: Ask::Challenge,
            step: Step(Pending::AckChallenge { seqs: stored }),
        })]
    }

    /// A relay answered a deposit: the first answer holding anything settles the
    /// attempt; refusals of single envelopes are reported. An answer without exactly
    /// one result per envelope settles nothing (the relay is broken or lying; the
    /// others, or a retry, decide).
    fn deposited(&mut self, attempt: u64, relay: PeerId, results: &[DepositResult]) -> Vec<Effect> {
        let Some(a) = self.attempts.get_mut(&attempt) else { return Vec::new() };
        let recipient = a.recipient;
        if results.len() != a.envelopes {
            tracing::warn!(%relay, results = results.len(), envelopes = a.envelopes, "a deposit answer of the wrong length; ignored");
            return Vec::new();
        }
        if let Some(missing) = a.copies.as_mut().and_then(|c| c.missing_at(&relay)) {
            for (missing, result) in missing.iter_mut().zip(results) {
                *missing = might_take_later(result);
            }
        }
        let mut effects: Vec<Effect> = results
            .iter()
            .filter_map(|r| match r {
                DepositResult::Refused(refusal) => Some(Effect::Refused { relay, recipient, refusal: *refusal }),
                _ => None,
            })
            .collect();
        let held: Vec<bool> = results.iter().map(DepositResult::is_held).collect();
        if a.settled.is_none() && held.contains(&true) {
            a.settled = Some(held.clone());
            effects.push(Effect::Held { recipient, attempt, held });
        }
        effects
    }

    /// One request of a deposit attempt is over; when all are and none held the
    /// batch, the attempt ends unheld; when one held some of it, the other relays
    /// that may still take those envelopes get a [`Redeposit`].
    fn attempt_answered(&mut self, attempt: u64, now: Instant) -> Vec<Effect> {
        let Some(a) = self.attempts.get_mut(&attempt) else { return Vec::new() };
        a.outstanding = a.outstanding.saturating_sub(1);
        if a.outstanding > 0 {
            return Vec::new();
        }
        let Some(a) = self.attempts.remove(&attempt) else { return Vec::new() };
        let Some(settled) = a.settled else { return vec![Effect::Unheld { recipient: a.recipient, attempt }] };
        if let Some(copies) = a.copies {
            self.keep_redeposits(a.recipient, &settled, copies, now);
        }
        Vec::new()
    }

    /// Keeps, for each relay of a settled attempt, the envelopes the settling relay
    /// holds that this one may still take.
    fn keep_redeposits(&mut self, recipient: PeerId, settled: &[bool], copies: Copies, now: Instant) {
        let Copies { batch, ids, relays, missing } = copies;
        for ((relay, addr), missing) in relays.into_iter().zip(missing) {
            let pick = |i: usize| settled.get(i) == Some(&true) && missing[i];
            let envelopes: Vec<Vec<u8>> = batch.iter().enumerate().filter(|(i, _)| pick(*i)).map(|(_, e)| e.clone()).collect();
            if envelopes.is_empty() {
                continue;
            }
            let ids = ids.iter().enumerate().filter(|(i, _)| pick(*i)).map(|(_, id)| *id).collect();
            let count = envelopes.len();
            if self.redeposits.keep(recipient, (relay, addr), envelopes, ids, now) {
                tracing::debug!(%relay, %recipient, envelopes = count, "a relay missed mail another holds; sending it again later");
            } else {
                tracing::debug!(%relay, %recipient, "no room to keep mail for a relay that missed it");
            }
        }
    }

    /// The redeposits due at `now`, as requests to send.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Effect> {
        self.redeposits
            .take_due(now)
            .into_iter()
            .map(|(key, r)| {
                Effect::Send(Request {
                    relay: r.relay,
                    addr: Some(r.addr.clone()),
                    ask: Ask::Deposit { recipient: r.recipient, envelopes: r.envelopes.clone() },
                    step: Step(Pending::Redeposit { key, ids: r.ids.clone() }),
                })
            })
            .collect()
    }

    /// When the next redeposit is due, if one waits.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.redeposits.next_due()
    }

    /// A receipt says `recipient` has the messages `ids`: no relay needs them again.
    pub(crate) fn delivered(&mut self, recipient: &PeerId, ids: &[MessageId]) {
        self.redeposits.delivered(recipient, ids);
    }

    /// Drops every redeposit for `recipient` (removed or blocked: nothing more goes
    /// to it).
    pub(crate) fn forget(&mut self, recipient: &PeerId) {
        self.redeposits.forget(recipient);
    }

    fn drain_done(&mut self, relay: &PeerId) {
        if let Some(d) = self.drains.get_mut(relay) {
            d.busy = false;
        }
    }
}

impl Copies {
    /// What `relay` may still take, if it is one of these relays.
    fn missing_at(&mut self, relay: &PeerId) -> Option<&mut Vec<bool>> {
        let at = self.relays.iter().position(|(r, _)| r == relay)?;
        self.missing.get_mut(at)
    }
}

/// The ids of `sent` whose envelope the relay holds or refused for good, by its
/// `results` (none when they are not one per envelope: they say nothing then).
/// Matched by id, since a receipt may have trimmed the redeposit meanwhile.
fn settled_ids(sent: &[MessageId], results: &[DepositResult]) -> Vec<MessageId> {
    if results.len() != sent.len() {
        return Vec::new();
    }
    sent.iter().zip(results).filter(|(_, r)| !might_take_later(r)).map(|(id, _)| *id).collect()
}

/// Whether a relay that answered `result` for an envelope may take it on another
/// try: it does not hold it, and did not refuse it for good.
fn might_take_later(result: &DepositResult) -> bool {
    match result {
        DepositResult::Refused(refusal) => !refusal.is_permanent(),
        held => !held.is_held(),
    }
}

/// Whether `seqs` rise strictly, all above `after` (a page that does not cannot be
/// the next part of a walk: following it could loop forever).
pub(crate) fn rises_after(after: Option<u64>, seqs: impl IntoIterator<Item = u64>) -> bool {
    let mut last = after;
    for seq in seqs {
        if last.is_some_and(|l| seq <= l) {
            return false;
        }
        last = Some(seq);
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::node::redeposits::REDEPOSIT_TRIES;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn addr(relay: &PeerId) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}").parse().unwrap()
    }

    /// A client whose requests the test "sends" under counted ids.
    #[derive(Default)]
    struct Harness {
        client: MailboxClient<u32>,
        next: u32,
    }

    /// Requests sent (id, relay, what they ask) and the other effects.
    type Outcome = (Vec<(u32, PeerId, Ask)>, Vec<Effect>);

    impl Harness {
        /// Sends every request among `effects` under fresh ids.
        fn send(&mut self, effects: Vec<Effect>) -> Outcome {
            let (mut sent, mut rest) = (Vec::new(), Vec::new());
            for effect in effects {
                match effect {
                    Effect::Send(Request { relay, ask, step, .. }) => {
                        self.next += 1;
                        self.client.sent(self.next, relay, step);
                        sent.push((self.next, relay, ask));
                    }
                    other => rest.push(other),
                }
            }
            (sent, rest)
        }

        /// Sends the redeposits due at `at`.
        fn due(&mut self, at: Instant) -> Outcome {
            let effects = self.client.due(at);
            self.send(effects)
        }

        fn drain(&mut self, relay: PeerId) -> Outcome {
            let effects = self.client.drain(relay, addr(&relay));
            self.send(effects)
        }

        fn answer(&mut self, id: u32, response: MailboxResponse) -> Outcome {
            let effects = self.client.answered(id, response, now());
            self.send(effects)
        }

        /// Starts a drain at `relay` and has it answer the first page with `items`.
        fn first_page(&mut self, relay: PeerId, items: Vec<MailItem>, more: bool) -> Vec<Effect> {
            let (sent, _) = self.drain(relay);
            let (sent, _) = self.answer(sent[0].0, MailboxResponse::Challenge { nonce: [1; NONCE_LEN] });
            self.client.answered(sent[0].0, MailboxResponse::Envelopes { items, more }, now())
        }

        fn stored(&mut self, relay: PeerId, seqs: Vec<u64>) -> Outcome {
            let effects = self.client.page_stored(relay, seqs, false);
            self.send(effects)
        }

        /// Deposits `envelopes` for a new recipient at two new relays and sends the
        /// requests: the recipient, the attempt, and what was sent (in relay order).
        fn deposit_at_two(&mut self, envelopes: Vec<Vec<u8>>) -> (PeerId, u64, Outcome) {
            let (bob, r1, r2) = (peer(), peer(), peer());
            let (attempt, effects) = self.client.deposit(bob, &[(r1, addr(&r1)), (r2, addr(&r2))], envelopes, &[]).unwrap();
            (bob, attempt, self.send(effects))
        }
    }

    fn now() -> Instant {
        Instant::now()
    }

    fn item(seq: u64) -> MailItem {
        MailItem { seq, envelope: vec![seq as u8], deposited_at_ms: 0 }
    }

    #[test]
    fn the_first_relay_to_hold_a_deposit_settles_it_and_later_answers_change_nothing() {
        let mut h = Harness::default();
        let (bob, attempt, (sent, rest)) = h.deposit_at_two(vec![vec![1], vec![2]]);
        assert!(rest.is_empty());
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|(_, _, ask)| *ask == Ask::Deposit { recipient: bob, envelopes: vec![vec![1], vec![2]] }));
        let results = vec![DepositResult::Stored, DepositResult::Refused(Refusal::QuotaCount)];
        let effects = h.client.answered(sent[0].0, MailboxResponse::Deposited { results }, now());
        assert_eq!(
            effects,
            [
                Effect::Refused { relay: sent[0].1, recipient: bob, refusal: Refusal::QuotaCount },
                Effect::Held { recipient: bob, attempt, held: vec![true, false] },
            ]
        );
        // The second relay holds it too: already settled, and the attempt ends quietly.
        let effects = h.client.answered(sent[1].0, MailboxResponse::Deposited { results: vec![DepositResult::Duplicate; 2] }, now());
        assert!(effects.is_empty(), "{effects:?}");
        // A late failure of an id already answered is ignored.
        assert!(h.client.failed(sent[1].0, now()).is_empty());
    }

    #[test]
    fn an_answer_of_the_wrong_length_settles_nothing() {
        let mut h = Harness::default();
        let (bob, attempt, (sent, _)) = h.deposit_at_two(vec![vec![1], vec![2]]);
        // One result too many: ignored, not taken as holding the batch.
        let liar = vec![DepositResult::Refused(Refusal::QuotaCount); 2].into_iter().chain([DepositResult::Stored]).collect();
        assert!(h.client.answered(sent[0].0, MailboxResponse::Deposited { results: liar }, now()).is_empty());
        // The honest relay still settles it.
        let effects = h.client.answered(sent[1].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored; 2] }, now());
        assert_eq!(effects, [Effect::Held { recipient: bob, attempt, held: vec![true, true] }]);
    }

    #[test]
    fn when_every_relay_answers_with_the_wrong_length_the_batch_is_retried() {
        let mut h = Harness::default();
        let (bob, attempt, (sent, _)) = h.deposit_at_two(vec![vec![1], vec![2]]);
        // One result short, then one too many: neither holds the batch.
        assert!(h.client.answered(sent[0].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored] }, now()).is_empty());
        let long = vec![DepositResult::Stored; 3];
        let effects = h.client.answered(sent[1].0, MailboxResponse::Deposited { results: long }, now());
        assert_eq!(effects, [Effect::Unheld { recipient: bob, attempt }]);
    }

    #[test]
    fn a_deposit_no_relay_holds_ends_unheld_once_every_relay_is_done() {
        let mut h = Harness::default();
        let (bob, attempt, (sent, _)) = h.deposit_at_two(vec![vec![1]]);
        assert!(h.client.failed(sent[0].0, now()).is_empty(), "one relay is still out");
        let effects = h.client.answered(sent[1].0, MailboxResponse::Refused(Refusal::NotMember), now());
        assert_eq!(
            effects,
            [
                Effect::Refused { relay: sent[1].1, recipient: bob, refusal: Refusal::NotMember },
                Effect::Unheld { recipient: bob, attempt },
            ]
        );
        assert!(h.client.deposit(bob, &[], vec![vec![1]], &[]).is_none(), "no relays, no attempt");
    }

    fn ids(n: u8) -> Vec<MessageId> {
        (1..=n).map(|i| MessageId([i; 16])).collect()
    }

    #[test]
    fn mail_one_relay_holds_goes_again_to_the_relay_that_missed_it_until_it_holds_it_or_a_receipt_comes() {
        let mut h = Harness::default();
        let (bob, r1, r2) = (peer(), peer(), peer());
        let t0 = now();
        let (attempt, effects) =
            h.client.deposit(bob, &[(r1, addr(&r1)), (r2, addr(&r2))], vec![vec![1], vec![2], vec![3]], &ids(3)).unwrap();
        let (sent, _) = h.send(effects);
        // The first relay holds all three; the second one is unreachable.
        let held = MailboxResponse::Deposited { results: vec![DepositResult::Stored; 3] };
        assert_eq!(h.client.answered(sent[0].0, held, t0), [Effect::Held { recipient: bob, attempt, held: vec![true; 3] }]);
        assert!(h.client.failed(sent[1].0, t0).is_empty());
        let after = Duration::from_secs(30);
        assert_eq!(h.client.next_wakeup(), Some(t0 + after));
        assert!(h.client.due(t0 + after - Duration::from_millis(1)).is_empty(), "not yet");
        let (again, _) = h.due(t0 + after);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].1, &again[0].2), (r2, &Ask::Deposit { recipient: bob, envelopes: vec![vec![1], vec![2], vec![3]] }));
        assert_eq!(h.client.next_wakeup(), None, "nothing due while it is in flight");

        // It takes one, refuses one for good and one for now: only that one waits,
        // twice as long.
        let t1 = t0 + after;
        let results = vec![DepositResult::Stored, DepositResult::Refused(Refusal::TooLarge), DepositResult::Refused(Refusal::QuotaBytes)];
        assert!(h.client.answered(again[0].0, MailboxResponse::Deposited { results }, t1).is_empty());
        assert_eq!(h.client.next_wakeup(), Some(t1 + 2 * after));
        let (again, _) = h.due(t1 + 2 * after);
        assert_eq!(again[0].2, Ask::Deposit { recipient: bob, envelopes: vec![vec![3]] });
        assert!(h.client.failed(again[0].0, t1 + 2 * after).is_empty());
        assert!(h.client.next_wakeup().is_some());

        // A receipt from someone else changes nothing; Bob's for it ends the redeposit.
        h.client.delivered(&peer(), &ids(3));
        assert!(h.client.next_wakeup().is_some());
        h.client.delivered(&bob, &ids(3)[2..]);
        assert_eq!(h.client.next_wakeup(), None);
        assert_eq!(h.client.redeposits.bytes(), 0);
    }

    #[test]
    fn a_relays_answer_to_a_redeposit_a_receipt_trimmed_meanwhile_still_counts() {
        let mut h = Harness::default();
        let (bob, r1, r2) = (peer(), peer(), peer());
        let t = now();
        let (_, effects) = h.client.deposit(bob, &[(r1, addr(&r1)), (r2, addr(&r2))], vec![vec![1], vec![2], vec![3]], &ids(3)).unwrap();
        let (sent, _) = h.send(effects);
        h.client.answered(sent[0].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored; 3] }, t);
        h.client.failed(sent[1].0, t);
        let (again, _) = h.due(h.client.next_wakeup().unwrap());
        // Bob's receipt for the second comes while the relay stores all three.
        h.client.delivered(&bob, &ids(2)[1..]);
        h.client.answered(again[0].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored; 3] }, t);
        assert_eq!((h.client.next_wakeup(), h.client.redeposits.bytes()), (None, 0), "all held: nothing to send again");
    }

    #[test]
    fn a_redeposit_stops_after_its_tries_and_none_is_kept_for_one_relay_or_what_no_relay_held() {
        let mut h = Harness::default();
        let (bob, r1, r2) = (peer(), peer(), peer());
        let mut t = now();
        let (_, effects) = h.client.deposit(bob, &[(r1, addr(&r1)), (r2, addr(&r2))], vec![vec![1], vec![2]], &ids(2)).unwrap();
        let (sent, _) = h.send(effects);
        // The first relay holds only the first envelope: only that one is sent again.
        let results = vec![DepositResult::Stored, DepositResult::Refused(Refusal::QuotaCount)];
        h.client.answered(sent[0].0, MailboxResponse::Deposited { results }, t);
        h.client.answered(sent[1].0, MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms: 10 }), t);
        let mut tries = 1;
        while let Some(due) = h.client.next_wakeup() {
            t = due;
            let (again, _) = h.due(t);
            assert_eq!(again[0].2, Ask::Deposit { recipient: bob, envelopes: vec![vec![1]] });
            tries += 1;
            assert!(h.client.failed(again[0].0, t).is_empty());
            assert!(tries <= REDEPOSIT_TRIES, "bounded");
        }
        assert_eq!(tries, REDEPOSIT_TRIES);
        assert_eq!(h.client.redeposits.bytes(), 0);

        // A contact removed or blocked gets nothing more.
        let (_, effects) = h.client.deposit(bob, &[(r1, addr(&r1)), (r2, addr(&r2))], vec![vec![1]], &ids(1)).unwrap();
        let (sent, _) = h.send(effects);
        h.client.answered(sent[0].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored] }, t);
        h.client.failed(sent[1].0, t);
        assert!(h.client.next_wakeup().is_some());
        h.client.forget(&bob);
        assert_eq!((h.client.next_wakeup(), h.client.redeposits.bytes()), (None, 0));

        // A relay that refused for good, or the only relay, gets nothing again.
        let (_, effects) = h.client.deposit(bob, &[(r1, addr(&r1)), (r2, addr(&r2))], vec![vec![1]], &ids(1)).unwrap();
        let (sent, _) = h.send(effects);
        h.client.answered(sent[0].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored] }, t);
        h.client.answered(sent[1].0, MailboxResponse::Refused(Refusal::NotMember), t);
        let (_, effects) = h.client.deposit(bob, &[(r1, addr(&r1))], vec![vec![1]], &ids(1)).unwrap();
        let (sent, _) = h.send(effects);
        h.client.answered(sent[0].0, MailboxResponse::Deposited { results: vec![DepositResult::Stored] }, t);
        assert_eq!(h.client.next_wakeup(), None);
    }

    #[test]
    fn a_drain_walks_challenge_page_ack_and_goes_on_while_there_is_more() {
        let mut h = Harness::default();
        let relay = peer();
        let (sent, _) = h.drain(relay);
        assert_eq!(sent[0].2, Ask::Challenge);
        assert!(h.client.drain(relay, addr(&relay)).is_empty(), "one drain per relay at a time");

        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [1; NONCE_LEN] });
        assert_eq!(sent[0].2, Ask::Drain { nonce: [1; NONCE_LEN], after: None });
        let effects = h.client.answered(sent[0].0, MailboxResponse::Envelopes { items: vec![item(4), item(5)], more: true }, now());
        assert_eq!(effects, [Effect::Store { relay, items: vec![item(4), item(5)] }]);
        // Seq 5 failed to store: only 4 is acked.
        let (sent, _) = h.stored(relay, vec![4]);
        assert_eq!(sent[0].2, Ask::Challenge);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [2; NONCE_LEN] });
        assert_eq!(sent[0].2, Ask::Ack { nonce: [2; NONCE_LEN], seqs: vec![4] });
        // More to come: the next page starts after the last one seen.
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Acked { removed: 1 });
        assert_eq!(sent[0].2, Ask::Challenge);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [3; NONCE_LEN] });
        assert_eq!(sent[0].2, Ask::Drain { nonce: [3; NONCE_LEN], after: Some(5) });
        let effects = h.client.answered(sent[0].0, MailboxResponse::Envelopes { items: vec![item(6)], more: false }, now());
        assert_eq!(effects.len(), 1);
        let (sent, _) = h.stored(relay, vec![6]);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [4; NONCE_LEN] });
        assert!(h.client.answered(sent[0].0, MailboxResponse::Acked { removed: 1 }, now()).is_empty());
        assert!(!h.client.draining(&relay), "done: the next drain may start");
        // It starts over from the relay's oldest envelope.
        let (sent, _) = h.drain(relay);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [5; NONCE_LEN] });
        assert_eq!(sent[0].2, Ask::Drain { nonce: [5; NONCE_LEN], after: None });
    }

    #[test]
    fn an_empty_page_ends_the_drain_whatever_the_relay_says_follows() {
        let mut h = Harness::default();
        let relay = peer();
        // A broken or hostile relay: nothing, and "more". Asking again at once would
        // loop (a challenge, a signature and a page each round) for as long as it
        // went on saying so.
        let effects = h.first_page(relay, Vec::new(), true);
        assert_eq!(effects, [Effect::Store { relay, items: Vec::new() }]);
        let (sent, rest) = h.stored(relay, Vec::new());
        assert!(sent.is_empty() && rest.is_empty(), "nothing more asked: {sent:?} {rest:?}");
        assert!(!h.client.draining(&relay), "done: the next drain starts at the next interval");
    }

    #[test]
    fn a_page_that_does_not_move_forward_ends_the_drain() {
        let mut h = Harness::default();
        let relay = peer();
        h.first_page(relay, vec![item(4), item(5)], true);
        let (sent, _) = h.stored(relay, vec![4, 5]);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [2; NONCE_LEN] });
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Acked { removed: 2 });
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [3; NONCE_LEN] });
        // The relay answers the next page with what it already gave: refused.
        let again = h.client.answered(sent[0].0, MailboxResponse::Envelopes { items: vec![item(5), item(6)], more: true }, now());
        assert!(again.is_empty(), "{again:?}");
        assert!(!h.client.draining(&relay));
        assert!(!rises_after(None, [3, 3]));
        assert!(rises_after(Some(2), [3, 9]));
        assert!(rises_after(Some(2), []));
    }

    #[test]
    fn a_page_that_must_wait_whole_does_not_hold_up_the_pages_behind_it() {
        let mut h = Harness::default();
        let relay = peer();
        h.first_page(relay, vec![item(1), item(2)], true);
        // Nothing of it could be taken yet (not a disk failure): nothing is acked, and
        // the next page is asked for, after it.
        let (sent, _) = h.stored(relay, Vec::new());
        assert_eq!(sent.len(), 1);
        assert!(matches!(sent[0].2, Ask::Challenge));
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [2; NONCE_LEN] });
        assert!(matches!(sent[0].2, Ask::Drain { after: Some(2), .. }), "{:?}", sent[0].2);
        h.client.answered(sent[0].0, MailboxResponse::Envelopes { items: vec![item(3)], more: false }, now());
        let (sent, _) = h.stored(relay, vec![3]);
        assert!(matches!(&sent[0].2, Ask::Challenge));
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [3; NONCE_LEN] });
        assert!(matches!(&sent[0].2, Ask::Ack { seqs, .. } if seqs == &vec![3]));
        // The last page had nothing to take either: the drain ends.
        h.answer(sent[0].0, MailboxResponse::Acked { removed: 1 });
        assert!(!h.client.draining(&relay));
    }

    #[test]
    fn a_failure_or_refusal_at_any_drain_step_ends_the_drain() {
        let mut h = Harness::default();
        let relay = peer();
        // The challenge fails.
        let (sent, _) = h.drain(relay);
        assert!(h.client.failed(sent[0].0, now()).is_empty());
        assert!(!h.client.draining(&relay));
        // The relay refuses the drain.
        let (sent, _) = h.drain(relay);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [1; NONCE_LEN] });
        assert!(h.client.answered(sent[0].0, MailboxResponse::Refused(Refusal::BadChallenge), now()).is_empty());
        assert!(!h.client.draining(&relay));
        // Our disk failed to store any of a page: nothing is acked, the drain ends.
        let (sent, _) = h.drain(relay);
        let (sent, _) = h.answer(sent[0].0, MailboxResponse::Challenge { nonce: [2; NONCE_LEN] });
        h.client.answered(sent[0].0, MailboxResponse::Envelopes { items: vec![item(1)], more: true }, now());
        assert!(h.client.page_stored(relay, Vec::new(), true).is_empty());
        assert!(!h.client.draining(&relay));
        // An answer to an id never sent is ignored.
        assert!(h.client.answered(999, MailboxResponse::Acked { removed: 0 }, now()).is_empty());
    }
}
