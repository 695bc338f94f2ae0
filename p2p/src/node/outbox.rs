//! In-memory delivery queues over the persistent outbox.
//!
//! The outbox tree in the store is the truth; this keeps, per recipient, the entries
//! in send order, at most one request in flight (so a peer receives our items in the
//! order we wrote them), and an exponential backoff that resets whenever the peer
//! becomes reachable again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use kith_storage::{MessageId, OutboxEntry, Recipient};
use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;

/// What carries a batch in flight: a direct request, deposits to the recipient's
/// relays (one logical attempt, numbered by the caller, spanning several requests),
/// or the flush that must make the ratchet state it was sealed with durable before
/// it leaves (numbered by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Flight {
    Direct(OutboundRequestId),
    Relays(u64),
    Flushing(u64),
}

/// Per-recipient state.
#[derive(Debug)]
struct Queue {
    entries: VecDeque<OutboxEntry>,
    in_flight: Option<(Flight, Vec<MessageId>)>,
    backoff: Duration,
    next_try: Instant,
    /// A direct attempt failed: deposit to the recipient's relays until it is back.
    via_relays: bool,
}

/// All recipients' queues.
#[derive(Debug)]
pub(crate) struct Queues {
    queues: HashMap<PeerId, Queue>,
    known: HashSet<MessageId>,
    /// How many entries have ever left (answered, dropped, forgotten).
    departures: u64,
    retry_initial: Duration,
    retry_max: Duration,
}

impl Queues {
    pub(crate) fn new(retry_initial: Duration, retry_max: Duration) -> Queues {
        Queues { queues: HashMap::new(), known: HashSet::new(), departures: 0, retry_initial, retry_max }
    }

    /// Add entries not yet queued, keeping each recipient's queue in creation order.
    /// Entries whose recipient is not a valid peer id are returned for the caller to drop.
    pub(crate) fn load(&mut self, mut entries: Vec<OutboxEntry>, now: Instant) -> Vec<OutboxEntry> {
        entries.sort_by_key(|e| e.created_at_ms);
        let mut invalid = Vec::new();
        for entry in entries {
            if self.known.contains(&entry.id) {
                continue;
            }
            let Recipient::Peer(peer) = entry.recipient else {
                invalid.push(entry);
                continue;
            };
            self.push(peer, entry, now);
        }
        invalid
    }

    /// Queue one entry at the end of its recipient's queue.
    pub(crate) fn push(&mut self, peer: PeerId, entry: OutboxEntry, now: Instant) {
        if !self.known.insert(entry.id) {
            return;
        }
        let initial = self.retry_initial;
        self.queues
            .entry(peer)
            .or_insert_with(|| Queue {
                entries: VecDeque::new(),
                in_flight: None,
                backoff: initial,
                next_try: now,
                via_relays: false,
            })
            .entries
            .push_back(entry);
    }

    /// Recipients that have entries, nothing in flight, and whose backoff has expired.
    pub(crate) fn ready(&self, now: Instant) -> Vec<PeerId> {
        self.queues
            .iter()
            .filter(|(_, q)| q.in_flight.is_none() && !q.entries.is_empty() && q.next_try <= now)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Whether the entry `id` is queued (for any peer).
    pub(crate) fn is_queued(&self, id: &MessageId) -> bool {
        self.known.contains(id)
    }

    /// Whether `holds` is true of every entry queued for `peer` (true when none is).
    pub(crate) fn all_queued(&self, peer: &PeerId, mut holds: impl FnMut(&MessageId) -> bool) -> bool {
        self.queues.get(peer).is_none_or(|q| q.entries.iter().all(|e| holds(&e.id)))
    }

    /// Whether `peer` has anything waiting.
    pub(crate) fn has_pending(&self, peer: &PeerId) -> bool {
        self.queues.get(peer).is_some_and(|q| !q.entries.is_empty())
    }

    /// The next batch for `peer` (front of its queue, up to `max`), if it may send now.
    pub(crate) fn next_batch(&self, peer: &PeerId, max: usize, now: Instant) -> Vec<OutboxEntry> {
        match self.queues.get(peer) {
            Some(q) if q.in_flight.is_none() && q.next_try <= now => {
                q.entries.iter().take(max).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Record that a request carrying `ids` is in flight to `peer`.
    pub(crate) fn mark_in_flight(&mut self, peer: &PeerId, request: Flight, ids: Vec<MessageId>) {
        if let Some(q) = self.queues.get_mut(peer) {
            q.in_flight = Some((request, ids));
        }
    }

    /// The ids carried by `request` if it is the one in flight to `peer`.
    pub(crate) fn in_flight(&self, peer: &PeerId, request: Flight) -> Option<Vec<MessageId>> {
        match &self.queues.get(peer)?.in_flight {
            Some((id, ids)) if *id == request => Some(ids.clone()),
            _ => None,
        }
    }

    /// The request finished with an answer: `done` ids leave the queue and the backoff
    /// resets, unless some ids were not done (then the queue backs off). Returns the ids that were in flight (in order), or None if unknown.
    pub(crate) fn complete(&mut self, peer: &PeerId, request: Flight, done: &[MessageId], now: Instant) -> Option<Vec<MessageId>> {
        let q = self.queues.get_mut(peer)?;
        let (id, ids) = q.in_flight.take()?;
        if id != request {
            q.in_flight = Some((id, ids));
            return None;
        }
        Self::remove_front(q, done);
        if done.len() < ids.len() {
            // The peer kept some ("not yet", or its disk failed): back off instead of
            // resending them at once.
            q.next_try = now + q.backoff;
            q.backoff = (q.backoff * 2).min(self.retry_max);
        } else {
            q.backoff = self.retry_initial;
            q.next_try = now;
        }
        if q.entries.is_empty() {
            self.queues.remove(peer);
        }
        for id in done {
            self.forget_id(id);
        }
        Some(ids)
    }

    /// Drop one entry (e.g. it cannot be sealed and has been marked failed).
    pub(crate) fn remove(&mut self, peer: &PeerId, id: MessageId) {
        if let Some(q) = self.queues.get_mut(peer) {
            Self::remove_front(q, &[id]);
        }
        self.forget_id(&id);
    }

    /// `id` left its queue.
    fn forget_id(&mut self, id: &MessageId) {
        if self.known.remove(id) {
            self.departures += 1;
        }
    }

    /// How many entries have ever left the queues: it moves whenever one does.
    pub(crate) fn departures(&self) -> u64 {
        self.departures
    }

    /// Remove `ids` from `q`. Batches come from the front of the queue, so the scan
    /// stops once all are found: the cost is per batch, not per queued item.
    fn remove_front(q: &mut Queue, ids: &[MessageId]) {
        let mut remaining: HashSet<MessageId> = ids.iter().copied().collect();
        let mut kept = Vec::new();
        while !remaining.is_empty() {
            let Some(entry) = q.entries.pop_front() else { break };
            if !remaining.remove(&entry.id) {
                kept.push(entry);
            }
        }
        for entry in kept.into_iter().rev() {
            q.entries.push_front(entry);
        }
    }

    /// The request failed: nothing leaves the queue; retry after a doubled backoff.
    /// Returns the delay, or None if `request` was not the one in flight.
    pub(crate) fn fail(&mut self, peer: &PeerId, request: Flight, now: Instant) -> Option<Duration> {
        let q = self.queues.get_mut(peer)?;
        match &q.in_flight {
            Some((id, _)) if *id == request => {}
            _ => return None,
        }
        q.in_flight = None;
        let delay = q.backoff;
        q.next_try = now + delay;
        q.backoff = (q.backoff * 2).min(self.retry_max);
        Some(delay)
    }

    /// Delay `peer`'s queue (e.g. while its keys are being looked up).
    pub(crate) fn defer(&mut self, peer: &PeerId, now: Instant) {
        if let Some(q) = self.queues.get_mut(peer) {
            q.next_try = now + q.backoff;
            q.backoff = (q.backoff * 2).min(self.retry_max);
        }
    }

    /// Hold `peer`'s queue for now, without counting it as a failure: it is looked at
    /// again after the first retry interval (a held contact is released by the user,
    /// not by the network, so its backoff must not grow meanwhile).
    pub(crate) fn hold(&mut self, peer: &PeerId, now: Instant) {
        if let Some(q) = self.queues.get_mut(peer) {
            q.next_try = now + self.retry_initial;
        }
    }

    /// The peer became reachable (connected, new address): try again right away,
    /// directly.
    pub(crate) fn wake(&mut self, peer: &PeerId, now: Instant) {
        if let Some(q) = self.queues.get_mut(peer) {
            q.backoff = self.retry_initial;
            q.next_try = now;
            q.via_relays = false;
        }
    }

    /// No direct path works: send `peer`'s queue to its relays, starting now.
    pub(crate) fn prefer_relays(&mut self, peer: &PeerId, now: Instant) {
        if let Some(q) = self.queues.get_mut(peer) {
            q.via_relays = true;
            q.next_try = now;
        }
    }

    /// Whether `peer`'s queue currently goes through its relays.
    pub(crate) fn via_relays(&self, peer: &PeerId) -> bool {
        self.queues.get(peer).is_some_and(|q| q.via_relays)
    }

    /// The earliest time any idle queue wants to try again.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter(|q| q.in_flight.is_none() && !q.entries.is_empty())
            .map(|q| q.next_try)
            .min()
    }

    /// Drop everything queued for `peer` (contact removed or blocked). Returns the ids.
    pub(crate) fn forget(&mut self, peer: &PeerId) -> Vec<MessageId> {
        let Some(q) = self.queues.remove(peer) else { return Vec::new() };
        let ids: Vec<MessageId> = q.entries.iter().map(|e| e.id).collect();
        for id in &ids {
            self.forget_id(id);
        }
        ids
    }

    /// Drop the entries queued for `peer` that `unwanted` picks, except those of the
    /// request in flight (its answer settles them). Returns the ids dropped.
    pub(crate) fn drop_where(&mut self, peer: &PeerId, unwanted: impl Fn(&OutboxEntry) -> bool) -> Vec<MessageId> {
        let Some(q) = self.queues.get_mut(peer) else { return Vec::new() };
        let flying: &[MessageId] = q.in_flight.as_ref().map_or(&[], |(_, ids)| ids.as_slice());
        let mut dropped = Vec::new();
        q.entries.retain(|e| {
            let drop = !flying.contains(&e.id) && unwanted(e);
            if drop {
                dropped.push(e.id);
            }
            !drop
        });
        for id in &dropped {
            self.forget_id(id);
        }
        dropped
    }

    /// How many entries are queued in total.
    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }

    /// What each recipient's queue is doing, for `status`: most entries first.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<QueueStatus> {
        let mut all: Vec<QueueStatus> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.entries.is_empty())
            .map(|(peer, q)| QueueStatus {
                peer_id: peer.to_string(),
                waiting: q.entries.len(),
                in_flight: q.in_flight.is_some(),
                next_try_in_ms: q.next_try.saturating_duration_since(now).as_millis() as u64,
                backoff_ms: q.backoff.as_millis() as u64,
                via_relays: q.via_relays,
            })
            .collect();
        all.sort_by(|a, b| b.waiting.cmp(&a.waiting).then_with(|| a.peer_id.cmp(&b.peer_id)));
        all
    }
}

/// One recipient's queue as `kith status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueStatus {
    /// The recipient.
    pub peer_id: String,
    /// Items waiting (messages, receipts, group payloads).
    pub waiting: usize,
    /// Whether a delivery attempt is under way.
    pub in_flight: bool,
    /// When the next attempt may start, in ms from now (0: now, or in flight).
    pub next_try_in_ms: u64,
    /// The delay after the next failure, in ms: doubles with every failure up to the
    /// retry ceiling, and starts over when the peer is reachable again.
    pub backoff_ms: u64,
    /// Whether the queue currently goes to the recipient's relays (its direct path
    /// failed).
    pub via_relays: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(n: u8, peer: &PeerId, created: u64) -> OutboxEntry {
        OutboxEntry {
            id: MessageId([n; 16]),
            recipient: Recipient::Peer(*peer),
            payload: vec![n],
            attempts: 0,
            next_attempt_ms: 0,
            created_at_ms: created,
        }
    }

    #[test]
    fn dropping_unwanted_entries_spares_the_request_in_flight_and_keeps_the_order() {
        let peer = PeerId::random();
        let now = Instant::now();
        let mut q = Queues::new(Duration::from_millis(100), Duration::from_millis(350));
        q.load((1..=5).map(|n| entry(n, &peer, u64::from(n))).collect(), now);
        let flying: Vec<MessageId> = q.next_batch(&peer, 2, now).iter().map(|e| e.id).collect();
        q.mark_in_flight(&peer, Flight::Relays(1), flying);
        // Drop the odd ones: 1 is in flight and stays until its answer.
        let dropped = q.drop_where(&peer, |e| e.payload[0] % 2 == 1);
        assert_eq!(dropped, vec![MessageId([3; 16]), MessageId([5; 16])]);
        assert!(!q.is_queued(&MessageId([3; 16])) && q.is_queued(&MessageId([1; 16])));
        assert_eq!(q.len(), 3);
        assert_eq!(q.departures(), 2);
        q.complete(&peer, Flight::Relays(1), &[MessageId([1; 16]), MessageId([2; 16])], now);
        assert_eq!(q.departures(), 4);
        let next: Vec<u8> = q.next_batch(&peer, 10, now).iter().map(|e| e.id.0[0]).collect();
        assert_eq!(next, [4]);
        assert!(q.drop_where(&PeerId::random(), |_| true).is_empty(), "nobody queued, nothing dropped");
    }

    #[test]
    fn order_single_flight_backoff_and_wake() {
        let peer = PeerId::random();
        let now = Instant::now();
        let mut q = Queues::new(Duration::from_millis(100), Duration::from_millis(350));
        let bad = q.load(vec![entry(2, &peer, 20), entry(1, &peer, 10), entry(3, &peer, 30)], now);
        assert!(bad.is_empty());
        let batch = q.next_batch(&peer, 2, now);
        assert_eq!(batch.iter().map(|e| e.id.0[0]).collect::<Vec<_>>(), vec![1, 2]);

        // While a request is in flight, nothing else goes to that peer.
        let rid = Flight::Direct(fake_request_id());
        q.mark_in_flight(&peer, rid, batch.iter().map(|e| e.id).collect());
        assert!(q.next_batch(&peer, 2, now).is_empty());
        assert!(q.ready(now).is_empty());

        // Failure: backoff doubles up to the ceiling.
        assert_eq!(q.fail(&peer, rid, now), Some(Duration::from_millis(100)));
        assert!(q.ready(now).is_empty());
        assert_eq!(q.ready(now + Duration::from_millis(100)), vec![peer]);
        q.mark_in_flight(&peer, rid, vec![]);
        assert_eq!(q.fail(&peer, rid, now), Some(Duration::from_millis(200)));
        q.mark_in_flight(&peer, rid, vec![]);
        assert_eq!(q.fail(&peer, rid, now), Some(Duration::from_millis(350)));
        q.wake(&peer, now);
        assert_eq!(q.ready(now), vec![peer]);

        // Success removes exactly the acknowledged entries and keeps the rest in order.
        assert_eq!(q.departures(), 0, "failures let nothing leave");
        q.mark_in_flight(&peer, rid, vec![MessageId([1; 16])]);
        q.complete(&peer, rid, &[MessageId([1; 16])], now).unwrap();
        let rest = q.next_batch(&peer, 10, now);
        assert_eq!(rest.iter().map(|e| e.id.0[0]).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.departures(), 1);
        // Reloading the same entries does not duplicate them.
        q.load(vec![entry(2, &peer, 20)], now);
        assert_eq!(q.len(), 2);
        // Every way out counts, once per entry.
        q.remove(&peer, MessageId([2; 16]));
        q.remove(&peer, MessageId([2; 16]));
        assert_eq!(q.departures(), 2);
        assert_eq!(q.forget(&peer), vec![MessageId([3; 16])]);
        assert_eq!(q.departures(), 3);
    }

    /// request-response ids cannot be constructed outside libp2p; get a real one.
    fn fake_request_id() -> OutboundRequestId {
        let mut b = libp2p::request_response::Behaviour::with_codec(
            crate::dm::Codec::default(),
            [(crate::dm::PROTOCOL, libp2p::request_response::ProtocolSupport::Full)],
            Default::default(),
        );
        b.send_request(&PeerId::random(), crate::dm::DmRequest { envelopes: vec![] })
    }
}
