//! Drain challenges: random nonces that the mailbox owner signs to prove it may
//! drain. Each is bound to one mailbox, valid for a fixed time and usable once.
//! Kept in memory only (a restart simply invalidates outstanding challenges) and
//! bounded twice: a mailbox holds at most `max_per_mailbox` (issuing one more drops
//! that mailbox's own oldest), and the table at most `max` (issuing beyond it drops
//! the expired, then the oldest). So a flood costs memory up to the cap and never
//! blocks issuing, and one requester — whose mailbox is always its own, the relay
//! derives it from the authenticated peer — only ever pushes out its own challenges.
//! Evicting others' takes `max / max_per_mailbox` identities issuing within one
//! challenge's round trip, which the per-peer rate limit and connection limits make
//! expensive.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::ChallengeError;

/// Length of a challenge nonce, in bytes.
pub const NONCE_LEN: usize = 32;

/// Outstanding challenges. Times are milliseconds on any clock that does not go
/// backwards (the store passes Unix time).
#[derive(Debug)]
pub struct Challenges {
    ttl_ms: u64,
    max: usize,
    max_per_mailbox: usize,
    /// (expiry, nonce) → mailbox: ordered so expired and oldest go first.
    by_expiry: BTreeMap<Key, Vec<u8>>,
    /// nonce → expiry, to find an entry from its nonce.
    by_nonce: HashMap<[u8; NONCE_LEN], u64>,
    /// mailbox → its outstanding challenges (at most `max_per_mailbox`).
    by_mailbox: HashMap<Vec<u8>, Vec<Key>>,
}

/// A challenge's place in the table: (expiry, nonce).
type Key = (u64, [u8; NONCE_LEN]);

impl Challenges {
    /// An empty set whose challenges last `ttl`, at most `max` at once and at most
    /// `max_per_mailbox` per mailbox (both at least 1).
    pub fn new(ttl: Duration, max: usize, max_per_mailbox: usize) -> Challenges {
        Challenges {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            max: max.max(1),
            max_per_mailbox: max_per_mailbox.max(1),
            by_expiry: BTreeMap::new(),
            by_nonce: HashMap::new(),
            by_mailbox: HashMap::new(),
        }
    }

    /// Issues a fresh random nonce for `mailbox`, valid until `now_ms + ttl`.
    pub fn issue(&mut self, mailbox: &[u8], now_ms: u64) -> [u8; NONCE_LEN] {
        self.issue_with(mailbox, now_ms, rand::random())
    }

    fn issue_with(
        &mut self,
        mailbox: &[u8],
        now_ms: u64,
        nonce: [u8; NONCE_LEN],
    ) -> [u8; NONCE_LEN] {
        // The mailbox's own oldest first, so it never holds more than its share.
        if let Some(own) = self.by_mailbox.get(mailbox)
            && own.len() >= self.max_per_mailbox
            && let Some(&oldest) = own.iter().min()
        {
            self.remove(oldest);
        }
        // Then the expired, then the oldest while full.
        while let Some(&(expires, old)) = self.by_expiry.keys().next() {
            if expires > now_ms && self.by_expiry.len() < self.max {
                break;
            }
            self.remove((expires, old));
        }
        let key = (now_ms.saturating_add(self.ttl_ms), nonce);
        self.by_expiry.insert(key, mailbox.to_vec());
        self.by_nonce.insert(nonce, key.0);
        self.by_mailbox
            .entry(mailbox.to_vec())
            .or_default()
            .push(key);
        nonce
    }

    /// Removes one challenge from every index; returns its mailbox.
    fn remove(&mut self, key: Key) -> Option<Vec<u8>> {
        self.by_nonce.remove(&key.1);
        let mailbox = self.by_expiry.remove(&key)?;
        if let Some(own) = self.by_mailbox.get_mut(&mailbox) {
            own.retain(|k| *k != key);
            if own.is_empty() {
                self.by_mailbox.remove(&mailbox);
            }
        }
        Some(mailbox)
    }

    /// Consumes `nonce` if it was issued for `mailbox` and has not expired. A nonce
    /// is consumed by its first use whatever the outcome, so it can never be replayed.
    pub fn take(
        &mut self,
        mailbox: &[u8],
        nonce: &[u8; NONCE_LEN],
        now_ms: u64,
    ) -> Result<(), ChallengeError> {
        let expires = *self.by_nonce.get(nonce).ok_or(ChallengeError::Unknown)?;
        let owner = self.remove((expires, *nonce));
        if owner.as_deref() != Some(mailbox) {
            Err(ChallengeError::Unknown)
        } else if now_ms >= expires {
            Err(ChallengeError::Expired)
        } else {
            Ok(())
        }
    }

    /// Challenges held (some may have expired but not yet been dropped).
    pub fn len(&self) -> usize {
        self.by_nonce.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_nonce.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn challenges(max: usize) -> Challenges {
        Challenges::new(Duration::from_secs(60), max, max)
    }

    #[test]
    fn a_challenge_is_used_once() {
        let mut c = challenges(10);
        let nonce = c.issue(b"alice", 1_000);
        assert_eq!(c.take(b"alice", &nonce, 2_000), Ok(()));
        assert_eq!(
            c.take(b"alice", &nonce, 2_000),
            Err(ChallengeError::Unknown)
        );
        assert!(c.is_empty());
    }

    #[test]
    fn nonces_are_random() {
        let mut c = challenges(10);
        assert_ne!(c.issue(b"alice", 0), c.issue(b"alice", 0));
    }

    #[test]
    fn expired_challenges_are_refused_and_consumed() {
        let mut c = challenges(10);
        let nonce = c.issue(b"alice", 1_000);
        assert_eq!(
            c.take(b"alice", &nonce, 61_000),
            Err(ChallengeError::Expired)
        );
        assert_eq!(
            c.take(b"alice", &nonce, 1_001),
            Err(ChallengeError::Unknown)
        );
        let nonce = c.issue(b"alice", 1_000);
        assert_eq!(c.take(b"alice", &nonce, 60_999), Ok(()));
    }

    #[test]
    fn a_challenge_is_bound_to_its_mailbox() {
        let mut c = challenges(10);
        let nonce = c.issue(b"alice", 0);
        assert_eq!(c.take(b"mallory", &nonce, 1), Err(ChallengeError::Unknown));
        assert_eq!(c.take(b"alice", &nonce, 1), Err(ChallengeError::Unknown));
        assert_eq!(
            c.take(b"alice", &[0; NONCE_LEN], 1),
            Err(ChallengeError::Unknown)
        );
    }

    #[test]
    fn bounded_dropping_expired_then_oldest() {
        let mut c = challenges(3);
        let first = c.issue_with(b"a", 0, [1; NONCE_LEN]);
        let second = c.issue_with(b"a", 10, [2; NONCE_LEN]);
        c.issue_with(b"a", 20, [3; NONCE_LEN]);
        c.issue_with(b"a", 30, [4; NONCE_LEN]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.take(b"a", &first, 40), Err(ChallengeError::Unknown));
        assert_eq!(c.take(b"a", &second, 40), Ok(()));
        // Issuing long after drops every expired entry.
        for i in 0..3 {
            c.issue_with(b"a", 1_000 + i, [10 + i as u8; NONCE_LEN]);
        }
        c.issue_with(b"b", 200_000, [20; NONCE_LEN]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.take(b"b", &[20; NONCE_LEN], 200_001), Ok(()));
    }

    #[test]
    fn a_flood_only_replaces_the_flooders_own_challenges() {
        let mut c = Challenges::new(Duration::from_secs(60), 8, 2);
        let alice = c.issue_with(b"alice", 0, [1; NONCE_LEN]);
        let bob = c.issue_with(b"bob", 1, [2; NONCE_LEN]);
        // Mallory asks again and again: at the cap, her own oldest goes.
        for i in 0..1_000u32 {
            let mut nonce = [0xee; NONCE_LEN];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            c.issue_with(b"mallory", 2 + u64::from(i), nonce);
            assert!(c.len() <= 4);
        }
        assert_eq!(c.by_mailbox[b"mallory".as_slice()].len(), 2);
        assert_eq!(c.take(b"alice", &alice, 2_000), Ok(()));
        assert_eq!(c.take(b"bob", &bob, 2_000), Ok(()));
        // Her last two are still valid, the one before is gone.
        let nonce = |i: u32| {
            let mut n = [0xee; NONCE_LEN];
            n[..4].copy_from_slice(&i.to_be_bytes());
            n
        };
        assert_eq!(
            c.take(b"mallory", &nonce(997), 2_000),
            Err(ChallengeError::Unknown)
        );
        assert_eq!(c.take(b"mallory", &nonce(998), 2_000), Ok(()));
        assert_eq!(c.take(b"mallory", &nonce(999), 2_000), Ok(()));
        assert!(c.is_empty() && c.by_mailbox.is_empty());
    }

    #[test]
    fn per_mailbox_cap_at_the_limit_and_one_past() {
        let mut c = Challenges::new(Duration::from_secs(60), 100, 3);
        let first = c.issue_with(b"a", 0, [1; NONCE_LEN]);
        c.issue_with(b"a", 1, [2; NONCE_LEN]);
        c.issue_with(b"a", 2, [3; NONCE_LEN]);
        // At the limit: all three valid.
        assert_eq!(c.len(), 3);
        // One past: the oldest of the mailbox is dropped.
        c.issue_with(b"a", 3, [4; NONCE_LEN]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.take(b"a", &first, 10), Err(ChallengeError::Unknown));
        // Taking one frees its place for the mailbox.
        assert_eq!(c.take(b"a", &[2; NONCE_LEN], 10), Ok(()));
        c.issue_with(b"a", 4, [5; NONCE_LEN]);
        for n in [3, 4, 5] {
            assert_eq!(c.take(b"a", &[n; NONCE_LEN], 10), Ok(()));
        }
        assert!(c.is_empty() && c.by_mailbox.is_empty() && c.by_expiry.is_empty());
    }
}
