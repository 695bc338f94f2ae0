//! Drain challenges: random nonces that the mailbox owner signs to prove it may
//! drain. Each is bound to one mailbox, valid for a fixed time and usable once.
//! Kept in memory only (a restart simply invalidates outstanding challenges) and
//! bounded: issuing beyond the cap drops the oldest, so a flood of requests costs
//! memory up to the cap and never blocks issuing.

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
    /// (expiry, nonce) → mailbox: ordered so expired and oldest go first.
    by_expiry: BTreeMap<(u64, [u8; NONCE_LEN]), Vec<u8>>,
    /// nonce → expiry, to find an entry from its nonce.
    by_nonce: HashMap<[u8; NONCE_LEN], u64>,
}

impl Challenges {
    /// An empty set whose challenges last `ttl`, at most `max` (at least 1) at once.
    pub fn new(ttl: Duration, max: usize) -> Challenges {
        Challenges {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            max: max.max(1),
            by_expiry: BTreeMap::new(),
            by_nonce: HashMap::new(),
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
        // Drop the expired, then the oldest while full.
        while let Some(&(expires, old)) = self.by_expiry.keys().next() {
            if expires > now_ms && self.by_expiry.len() < self.max {
                break;
            }
            self.by_expiry.remove(&(expires, old));
            self.by_nonce.remove(&old);
        }
        let expires = now_ms.saturating_add(self.ttl_ms);
        self.by_expiry.insert((expires, nonce), mailbox.to_vec());
        self.by_nonce.insert(nonce, expires);
        nonce
    }

    /// Consumes `nonce` if it was issued for `mailbox` and has not expired. A nonce
    /// is consumed by its first use whatever the outcome, so it can never be replayed.
    pub fn take(
        &mut self,
        mailbox: &[u8],
        nonce: &[u8; NONCE_LEN],
        now_ms: u64,
    ) -> Result<(), ChallengeError> {
        let expires = self.by_nonce.remove(nonce).ok_or(ChallengeError::Unknown)?;
        let owner = self.by_expiry.remove(&(expires, *nonce));
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
        Challenges::new(Duration::from_secs(60), max)
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
}
