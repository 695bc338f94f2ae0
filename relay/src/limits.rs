//! Per-sender rate limiting: a token bucket per sending peer, kept as GCRA state.
//!
//! Each sender has a "theoretical arrival time" (`tat`): when its bucket would be
//! full again. A request costing `c` tokens moves it `c × interval` later and is
//! allowed while `tat` stays within `burst × interval` of now. One `Instant` per
//! sender is all the state, and a sender whose `tat` has passed has a full bucket —
//! exactly like an untracked one — so forgetting it loses nothing. Memory is bounded
//! by a cap on tracked senders; past it, idle senders are dropped first, then those
//! closest to idle.
//!
//! Time is passed in (`now: Instant`), so tests use explicit instants, not sleeps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Senders tracked at most, unless set with [`RateLimiter::with_max_senders`].
pub const DEFAULT_MAX_SENDERS: usize = 65_536;

/// A request was refused; the sender may try again after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limited, retry after {retry_after:?}")]
#[non_exhaustive]
pub struct RateLimited {
    /// How long until the same request would be allowed.
    pub retry_after: Duration,
}

/// Token buckets keyed by sender id (opaque bytes, e.g. a peer id).
#[derive(Debug)]
pub struct RateLimiter {
    /// Time to earn one token.
    interval: Duration,
    /// Tokens a full bucket holds.
    burst: u32,
    max_senders: usize,
    /// Per sender: when its bucket will be full again.
    tats: HashMap<Box<[u8]>, Instant>,
}

impl RateLimiter {
    /// A limiter allowing each sender `rate_per_sec` tokens per second sustained and
    /// `burst` at once (both at least 1; 0 is taken as 1).
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            interval: Duration::from_secs(1) / rate_per_sec.max(1),
            burst: burst.max(1),
            max_senders: DEFAULT_MAX_SENDERS,
            tats: HashMap::new(),
        }
    }

    /// Sets how many senders are tracked at most (at least 1).
    pub fn with_max_senders(mut self, max_senders: usize) -> RateLimiter {
        self.max_senders = max_senders.max(1);
        self
    }

    /// Takes `cost` tokens from `sender`'s bucket at time `now`, or refuses without
    /// taking any. A cost above the burst is charged as the burst (a full bucket), so
    /// an oversized request is possible but drains the sender's allowance.
    pub fn check(&mut self, sender: &[u8], cost: u32, now: Instant) -> Result<(), RateLimited> {
        let cost = cost.min(self.burst);
        if cost == 0 {
            return Ok(());
        }
        let tolerance = self.interval * self.burst;
        let tat = self.tats.get(sender).copied().unwrap_or(now).max(now);
        let new_tat = tat.checked_add(self.interval * cost).ok_or(RateLimited {
            retry_after: tolerance,
        })?;
        let ahead = new_tat - now;
        if ahead > tolerance {
            return Err(RateLimited {
                retry_after: ahead - tolerance,
            });
        }
        match self.tats.get_mut(sender) {
            Some(slot) => *slot = new_tat,
            None => {
                if self.tats.len() >= self.max_senders {
                    self.make_room(now);
                }
                self.tats.insert(sender.into(), new_tat);
            }
        }
        Ok(())
    }

    /// Forgets senders whose buckets are full again (no effect on decisions); call
    /// now and then to give memory back after a burst of senders.
    pub fn prune(&mut self, now: Instant) {
        self.tats.retain(|_, tat| *tat > now);
    }

    /// Senders currently tracked.
    pub fn tracked(&self) -> usize {
        self.tats.len()
    }

    /// Drops idle senders; if that is not enough, the ones closest to idle, down to
    /// 7/8 of the cap so the cost of sorting is spread over many insertions.
    fn make_room(&mut self, now: Instant) {
        self.prune(now);
        if self.tats.len() < self.max_senders {
            return;
        }
        let keep = self.max_senders - self.max_senders.div_ceil(8);
        let mut tats: Vec<Instant> = self.tats.values().copied().collect();
        let drop = tats.len() - keep;
        let (_, threshold, _) = tats.select_nth_unstable(drop.saturating_sub(1));
        let threshold = *threshold;
        self.tats.retain(|_, tat| *tat > threshold);
        tracing::debug!(
            tracked = self.tats.len(),
            "rate limiter full, forgot the most idle senders"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, 5);
        for _ in 0..5 {
            limiter.check(b"a", 1, t0).unwrap();
        }
        let refused = limiter.check(b"a", 1, t0).unwrap_err();
        assert_eq!(refused.retry_after, 100 * MS);
        // After the advertised wait it passes, once.
        limiter.check(b"a", 1, t0 + 100 * MS).unwrap();
        assert_eq!(
            limiter
                .check(b"a", 1, t0 + 100 * MS)
                .unwrap_err()
                .retry_after,
            100 * MS
        );
        // Idle for long: a full burst again, never more.
        let later = t0 + Duration::from_secs(60);
        limiter.check(b"a", 5, later).unwrap();
        assert!(limiter.check(b"a", 1, later).is_err());
    }

    #[test]
    fn refusal_takes_nothing_and_costs_add_up() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, 10);
        limiter.check(b"a", 7, t0).unwrap();
        let refused = limiter.check(b"a", 4, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        limiter.check(b"a", 3, t0).unwrap();
        assert!(limiter.check(b"a", 1, t0 + 999 * MS).is_err());
        limiter.check(b"a", 1, t0 + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn senders_are_independent() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, 1);
        limiter.check(b"a", 1, t0).unwrap();
        assert!(limiter.check(b"a", 1, t0).is_err());
        limiter.check(b"b", 1, t0).unwrap();
    }

    #[test]
    fn oversized_and_zero_costs() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(100, 10);
        limiter.check(b"a", 0, t0).unwrap();
        assert_eq!(limiter.tracked(), 0);
        limiter.check(b"a", 1_000, t0).unwrap();
        assert_eq!(limiter.check(b"a", 1, t0).unwrap_err().retry_after, 10 * MS);
        // Zero rate and burst are taken as one.
        let mut strict = RateLimiter::new(0, 0);
        strict.check(b"a", 1, t0).unwrap();
        assert_eq!(
            strict.check(b"a", 1, t0).unwrap_err().retry_after,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn memory_is_bounded_and_idle_senders_go_first() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, 2).with_max_senders(16);
        // A busy sender whose state must survive the churn.
        limiter.check(b"busy", 2, t0).unwrap();
        for i in 0..1_000u32 {
            limiter
                .check(&i.to_be_bytes(), 1, t0 + MS * (i + 1))
                .unwrap();
            assert!(limiter.tracked() <= 16);
        }
        // When the cap is hit, the senders closest to idle are forgotten first.
        let mut limiter = RateLimiter::new(1, 2).with_max_senders(4);
        limiter.check(b"busy", 2, t0).unwrap();
        for i in 0..3u8 {
            limiter.check(&[i], 1, t0).unwrap();
        }
        limiter.check(b"new", 1, t0).unwrap();
        assert!(limiter.tracked() <= 4);
        assert!(
            limiter.check(b"busy", 1, t0).is_err(),
            "the busiest sender is remembered"
        );
        // Idle senders are pruned without changing any decision.
        limiter.prune(t0 + Duration::from_secs(10));
        assert_eq!(limiter.tracked(), 0);
        limiter
            .check(b"busy", 2, t0 + Duration::from_secs(10))
            .unwrap();
    }
}
