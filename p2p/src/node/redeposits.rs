//! [`Redeposits`]: envelopes kept to send again to relays that missed what another
//! relay holds (see [`super::mailbox_client`]), indexed so that the event loop's
//! questions cost no scan: when the next one is due, which are due, and which are
//! for a recipient a receipt or a removal names.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use kith_storage::MessageId;
use libp2p::{Multiaddr, PeerId};

/// Tries, the first deposit included, of sending one relay what another held.
pub(crate) const REDEPOSIT_TRIES: u32 = 6;

/// Most bytes of envelopes kept for redeposits at once: past it, no new one is kept.
pub(crate) const MAX_REDEPOSIT_BYTES: usize = 16 << 20;

/// Envelopes for one relay, sent again because another relay holds them.
pub(crate) struct Redeposit {
    /// Whose mail.
    pub(crate) recipient: PeerId,
    /// The relay that missed it.
    pub(crate) relay: PeerId,
    /// Where that relay is.
    pub(crate) addr: Multiaddr,
    /// The sealed envelopes, in sequence order.
    pub(crate) envelopes: Vec<Vec<u8>>,
    /// The outbox ids of `envelopes`, in order.
    pub(crate) ids: Vec<MessageId>,
    /// Tries made, the first deposit included.
    tries: u32,
    /// When to try next; `None` while a try is in flight.
    due: Option<Instant>,
}

impl Redeposit {
    fn bytes(&self) -> usize {
        self.envelopes.iter().map(Vec::len).sum()
    }

    /// Drops the envelopes of `gone` (ids), keeping envelopes and ids aligned.
    fn drop_ids(&mut self, gone: &HashSet<MessageId>) {
        let mut kept = self.ids.iter().map(|id| !gone.contains(id));
        self.envelopes.retain(|_| kept.next().unwrap_or(true));
        self.ids.retain(|id| !gone.contains(id));
    }
}

/// The redeposits waiting or in flight, with their byte budget and two indexes (by
/// due time, by recipient) that every change keeps in step with the map.
pub(crate) struct Redeposits {
    next_key: u64,
    by_key: HashMap<u64, Redeposit>,
    /// `(due, key)` of every redeposit that waits (none in flight).
    schedule: BTreeSet<(Instant, u64)>,
    by_recipient: HashMap<PeerId, BTreeSet<u64>>,
    /// Bytes of envelopes in `by_key`.
    bytes: usize,
    /// The first wait before a redeposit; it doubles per try.
    first_wait: Duration,
}

impl Redeposits {
    /// None yet; each waits `first_wait` before its first try, doubling per try.
    pub(crate) fn new(first_wait: Duration) -> Self {
        Redeposits {
            next_key: 0,
            by_key: HashMap::new(),
            schedule: BTreeSet::new(),
            by_recipient: HashMap::new(),
            bytes: 0,
            first_wait,
        }
    }

    /// Keeps `envelopes` (with their `ids`) for `relay` to try at `now` plus the
    /// first wait; `false` when they would pass [`MAX_REDEPOSIT_BYTES`] (nothing is
    /// kept then).
    pub(crate) fn keep(
        &mut self,
        recipient: PeerId,
        (relay, addr): (PeerId, Multiaddr),
        envelopes: Vec<Vec<u8>>,
        ids: Vec<MessageId>,
        now: Instant,
    ) -> bool {
        let due = now + self.first_wait;
        let redeposit = Redeposit { recipient, relay, addr, envelopes, ids, tries: 1, due: Some(due) };
        if self.bytes + redeposit.bytes() > MAX_REDEPOSIT_BYTES {
            return false;
        }
        let key = self.next_key;
        self.next_key += 1;
        self.bytes += redeposit.bytes();
        self.schedule.insert((due, key));
        self.by_recipient.entry(recipient).or_default().insert(key);
        self.by_key.insert(key, redeposit);
        true
    }

    /// Takes the redeposits due at `now` out of the schedule (in flight until
    /// [`answered`](Self::answered)), earliest first, with their keys.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(u64, &Redeposit)> {
        let mut keys = Vec::new();
        while let Some(&(due, key)) = self.schedule.first()
            && due <= now
        {
            self.schedule.pop_first();
            keys.push(key);
        }
        for key in &keys {
            if let Some(r) = self.by_key.get_mut(key) {
                r.due = None;
            }
        }
        keys.into_iter().filter_map(|key| Some((key, self.by_key.get(&key)?))).collect()
    }

    /// When the next redeposit is due, if one waits.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.schedule.first().map(|(due, _)| *due)
    }

    /// Bytes of envelopes kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// `recipient` has the messages `ids`: they are dropped from its redeposits.
    pub(crate) fn delivered(&mut self, recipient: &PeerId, ids: &[MessageId]) {
        let Some(keys) = self.by_recipient.get(recipient) else { return };
        let gone: HashSet<MessageId> = ids.iter().copied().collect();
        let mut emptied = Vec::new();
        for key in keys {
            let Some(r) = self.by_key.get_mut(key) else { continue };
            let before = r.bytes();
            r.drop_ids(&gone);
            self.bytes -= before - r.bytes();
            if r.envelopes.is_empty() {
                emptied.push(*key);
            }
        }
        for key in emptied {
            self.remove(key);
        }
    }

    /// Drops every redeposit for `recipient`.
    pub(crate) fn forget(&mut self, recipient: &PeerId) {
        for key in self.by_recipient.get(recipient).cloned().unwrap_or_default() {
            self.remove(key);
        }
    }

    /// A try of `key` ended at `now`; `done` are the ids the relay now holds or
    /// refused for good (none for a failure). Those are dropped; the rest waits
    /// twice as long as before, until [`REDEPOSIT_TRIES`].
    pub(crate) fn answered(&mut self, key: u64, done: &[MessageId], now: Instant) {
        let first_wait = self.first_wait;
        let Some(r) = self.by_key.get_mut(&key) else { return };
        if let Some(due) = r.due.take() {
            // An answer to a try that is not in flight (a stale one): the key's
            // schedule entry goes, so the index never outlives the state it mirrors.
            self.schedule.remove(&(due, key));
        }
        let before = r.bytes();
        r.drop_ids(&done.iter().copied().collect());
        self.bytes -= before - r.bytes();
        r.tries += 1;
        if !r.envelopes.is_empty() && r.tries < REDEPOSIT_TRIES {
            let due = now + first_wait * 2u32.pow(r.tries - 1);
            r.due = Some(due);
            self.schedule.insert((due, key));
            return;
        }
        if !r.envelopes.is_empty() {
            tracing::warn!(relay = %r.relay, recipient = %r.recipient, envelopes = r.envelopes.len(), "a relay did not take mail another holds; gave up");
        }
        self.remove(key);
    }

    fn remove(&mut self, key: u64) {
        let Some(r) = self.by_key.remove(&key) else { return };
        self.bytes -= r.bytes();
        if let Some(due) = r.due {
            self.schedule.remove(&(due, key));
        }
        if let Some(keys) = self.by_recipient.get_mut(&r.recipient) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_recipient.remove(&r.recipient);
            }
        }
    }

    /// How many are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn relay() -> (PeerId, Multiaddr) {
        let peer = PeerId::random();
        (peer, format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap())
    }

    fn ids(n: u8) -> Vec<MessageId> {
        (0..n).map(|i| MessageId([i; 16])).collect()
    }

    #[test]
    fn thousands_waiting_are_taken_by_due_time_and_a_recipients_receipts_touch_only_its_own() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(30);
        let mut r = Redeposits::new(wait);
        let (alice, bob) = (PeerId::random(), PeerId::random());
        for i in 0..5_000u32 {
            let whose = if i % 2 == 0 { alice } else { bob };
            assert!(r.keep(whose, relay(), vec![vec![1; 10]], ids(1), t0 + Duration::from_millis(u64::from(i))));
        }
        assert_eq!((r.len(), r.bytes(), r.next_due()), (5_000, 50_000, Some(t0 + wait)));
        // The first 100 ms of them are due; the rest wait.
        let due = r.take_due(t0 + wait + Duration::from_millis(99));
        assert_eq!(due.len(), 100);
        assert_eq!(r.next_due(), Some(t0 + wait + Duration::from_millis(100)));
        // A receipt for Alice empties every one of hers, and leaves Bob's.
        r.delivered(&alice, &ids(1));
        assert_eq!((r.len(), r.bytes()), (2_500, 25_000));
        assert_eq!(r.next_due(), Some(t0 + wait + Duration::from_millis(101)), "Bob's next");
        r.forget(&bob);
        assert_eq!((r.len(), r.bytes(), r.next_due()), (0, 0, None));
    }

    #[test]
    fn a_try_that_fails_waits_twice_as_long_each_time_until_the_last() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(1);
        let mut r = Redeposits::new(wait);
        assert!(r.keep(PeerId::random(), relay(), vec![vec![1; 10], vec![2; 10]], ids(2), t0));
        let mut now = t0 + wait;
        for tries in 1..REDEPOSIT_TRIES {
            assert_eq!(r.next_due(), Some(now), "try {tries}");
            let due: Vec<u64> = r.take_due(now).into_iter().map(|(key, _)| key).collect();
            assert_eq!(due.len(), 1);
            assert_eq!(r.next_due(), None, "in flight");
            r.answered(due[0], &ids(1), now);
            now += wait * 2u32.pow(tries);
        }
        assert_eq!((r.len(), r.bytes(), r.next_due()), (0, 0, None), "given up after the last try");
    }

    #[test]
    fn nothing_is_kept_past_the_byte_budget() {
        let mut r = Redeposits::new(Duration::from_secs(1));
        let half = vec![0; MAX_REDEPOSIT_BYTES / 2];
        assert!(r.keep(PeerId::random(), relay(), vec![half.clone()], ids(1), Instant::now()));
        assert!(r.keep(PeerId::random(), relay(), vec![half.clone()], ids(1), Instant::now()));
        assert!(!r.keep(PeerId::random(), relay(), vec![vec![0; 1]], ids(1), Instant::now()));
        assert_eq!(r.len(), 2);
    }
}
