//! Per-peer rate limits of the request services: one token-bucket limiter
//! ([`RateLimiter`]) per kind of request that costs the relay work, keyed by the
//! authenticated peer that sent it. A refusal is the wire's typed
//! [`Refusal::RateLimited`] with the time to wait, counted in
//! `kith_relay_rate_limited_total{request=…}`; the caller counts it among the
//! service's refusals too.

use std::time::Instant;

use kith_p2p::mailbox::Refusal;
use libp2p::PeerId;

use crate::limits::RateLimiter;
use crate::metrics::{LimitedRequest, Metrics};

/// A rate limit on one kind of request, per peer.
#[derive(Debug)]
pub(crate) struct PeerLimiter {
    limiter: RateLimiter,
    request: LimitedRequest,
    metrics: Metrics,
}

impl PeerLimiter {
    /// Limits `request`s with `limiter`, counting refusals in `metrics`.
    pub(crate) fn new(
        request: LimitedRequest,
        limiter: RateLimiter,
        metrics: Metrics,
    ) -> PeerLimiter {
        PeerLimiter {
            limiter,
            request,
            metrics,
        }
    }

    /// Takes `cost` tokens from `peer`'s bucket, or refuses with the time to wait
    /// (at least 1 ms, so a client never retries at once).
    pub(crate) fn check(&mut self, peer: &PeerId, cost: u32) -> Result<(), Refusal> {
        self.limiter
            .check(&peer.to_bytes(), cost, Instant::now())
            .map_err(|limited| {
                self.metrics.rate_limited(self.request);
                Refusal::RateLimited {
                    retry_after_ms: u64::try_from(limited.retry_after.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                }
            })
    }

    /// Forgets idle peers (memory only; no decision changes).
    pub(crate) fn prune(&mut self) {
        self.limiter.prune(Instant::now());
    }
}
