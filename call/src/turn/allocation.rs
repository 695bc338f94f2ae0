//! One TURN allocation: its relayed socket, permissions, channels and rate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::stun::message::TransactionId;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How long a permission lasts without being renewed (RFC 5766 §8).
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);

/// Channels one allocation may bind.
const MAX_CHANNELS: usize = 64;

/// Permissions one allocation may hold.
const MAX_PERMISSIONS: usize = 64;

/// A client's allocation; dropping it stops relaying and frees its port.
pub(super) struct Allocation {
    /// Whose grant it was made with.
    pub(super) peer: Vec<u8>,
    pub(super) username: String,
    /// The grant's long-term key: later requests must be signed with it.
    pub(super) key: Vec<u8>,
    /// The Allocate request's id, to answer a retransmission alike.
    pub(super) transaction: TransactionId,
    pub(super) relay: Arc<UdpSocket>,
    pub(super) relayed: SocketAddr,
    pub(super) lifetime: Duration,
    pub(super) expires: Instant,
    /// Peer IPs that may be sent to and heard from, until when.
    pub(super) permissions: HashMap<IpAddr, Instant>,
    pub(super) channels: HashMap<u16, SocketAddr>,
    pub(super) bucket: Bucket,
    pub(super) task: JoinHandle<()>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Allocation {
    /// Installs or renews a permission for `ip` (at most [`MAX_PERMISSIONS`]).
    pub(super) fn permit(&mut self, ip: IpAddr) {
        if self.permissions.len() < MAX_PERMISSIONS || self.permissions.contains_key(&ip) {
            self.permissions.insert(ip, Instant::now() + PERMISSION_LIFETIME);
        }
    }

    /// Whether `ip` has a permission now.
    pub(super) fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|until| *until > now)
    }

    /// Binds `channel` to `peer` (or renews the binding), which also permits it.
    /// A channel bound to another peer, or a peer on another channel, is refused.
    pub(super) fn bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), ()> {
        match self.channels.get(&channel) {
            Some(bound) if *bound != peer => return Err(()),
            Some(_) => {}
            None => {
                if self.channel_of(peer).is_some() || self.channels.len() >= MAX_CHANNELS {
                    return Err(());
                }
                self.channels.insert(channel, peer);
            }
        }
        self.permit(peer.ip());
        Ok(())
    }

    /// The channel bound to `peer`, if any.
    pub(super) fn channel_of(&self, peer: SocketAddr) -> Option<u16> {
        self.channels.iter().find(|(_, p)| **p == peer).map(|(c, _)| *c)
    }
}

/// A token bucket of bytes: `rate` per second, holding up to a second's worth.
pub(super) struct Bucket {
    rate: u64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(rate: u64) -> Bucket {
        Bucket { rate, tokens: rate as f64, at: None }
    }

    /// Takes `bytes` if there are as many; says whether it did.
    pub(super) fn take(&mut self, bytes: usize, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate as f64;
            self.tokens = (self.tokens + refill).min(self.rate as f64);
        }
        self.at = Some(now);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_and_refills_with_time() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1000);
        assert!(bucket.take(600, start));
        assert!(!bucket.take(600, start), "over a second's worth at once");
        assert!(bucket.take(400, start));
        assert!(!bucket.take(1, start));
        assert!(bucket.take(500, start + Duration::from_millis(500)), "half a second refills half");
        let later = start + Duration::from_secs(60);
        assert!(bucket.take(1000, later), "a minute idle fills it");
        assert!(!bucket.take(1, later), "but only to a second's worth");
    }
}
