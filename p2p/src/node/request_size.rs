//! How much one request for a contact may carry — to it, or a deposit of its mail
//! at its relays: how many envelopes, and how many bytes.
//!
//! **Envelopes.** A connected peer whose identify lists [`dm::PROTOCOL_V2`] takes
//! [`dm::MAX_BATCH`] envelopes in a direct request; every other request carries at
//! most [`dm::MAX_BATCH_V1`] (what a relay's deposit takes too). A direct request
//! to a large-batch peer that fails cuts its next ones to [`dm::MAX_BATCH_V1`]
//! until a direct one is answered: a retry then sends the seals it kept (the sealed-form
//! cache holds two such batches), where a large batch would seal its uncached
//! part again at later keys each time, and a slow link gets a smaller request.
//!
//! **Bytes.** A request must reach the other end and be answered within the
//! request timeout (10 s). Full batches are up to [`dm::MAX_BATCH_BYTES`] (8 MiB):
//! on a link of a few hundred kilobytes a second such a request times out every
//! time, and the same batch would be sent again and again, never delivered. So a
//! request that fails by timing out (or by its stream failing, which is how the
//! receiver's own timeout shows) cuts the contact's next requests to a quarter of
//! what it carried (never below [`MIN_BATCH_BYTES`]; the first envelope of a batch
//! always goes), and an answered request that used at least half of the cap
//! doubles it again, back to the full size.
//!
//! Both cuts last while the contact stays connected: a new connection may take
//! another path. Pure: the actor reports what happened and asks.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use libp2p::request_response::OutboundFailure;

use crate::dm;

/// The fewest bytes a cut may leave a request: about one long text (a text of
/// 64 KiB sealed is some 70 KiB, and goes alone anyway).
pub(crate) const MIN_BATCH_BYTES: usize = 64 * 1024;

/// Which way a request for a contact goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// A `/kith/dm` request to the contact.
    Direct,
    /// A deposit of its mail at its relays.
    Relays,
}

/// What each contact's requests may carry (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RequestSize {
    /// Connected peers that take [`dm::MAX_BATCH`] envelopes.
    large: HashSet<PeerId>,
    /// Peers of `large` whose last direct request failed.
    count_cut: HashSet<PeerId>,
    /// The byte cap of each contact whose requests were cut; every other
    /// contact's is [`dm::MAX_BATCH_BYTES`].
    bytes_cut: HashMap<PeerId, usize>,
    /// The bytes of the request in flight to each contact.
    in_flight: HashMap<PeerId, usize>,
}

impl RequestSize {
    /// Whether `peer` takes [`dm::MAX_BATCH`] envelopes now: true when it is
    /// connected and its identify listed [`dm::PROTOCOL_V2`] (the caller judges).
    pub(crate) fn identified(&mut self, peer: PeerId, takes_large: bool) {
        if takes_large {
            self.large.insert(peer);
        } else {
            self.large.remove(&peer);
        }
    }

    /// The most envelopes one request for `peer` may carry on `path`.
    pub(crate) fn max_envelopes(&self, peer: &PeerId, path: Path) -> usize {
        if path == Path::Direct && self.large.contains(peer) && !self.count_cut.contains(peer) {
            dm::MAX_BATCH
        } else {
            dm::MAX_BATCH_V1.min(crate::mailbox::MAX_DEPOSIT_BATCH)
        }
    }

    /// The most bytes of envelopes one request for `peer` may carry.
    pub(crate) fn max_bytes(&self, peer: &PeerId) -> usize {
        self.bytes_cut.get(peer).copied().unwrap_or(dm::MAX_BATCH_BYTES)
    }

    /// A request of `envelopes` left for `peer` (one is in flight per contact).
    pub(crate) fn sent(&mut self, peer: PeerId, envelopes: &[Vec<u8>]) {
        self.in_flight.insert(peer, envelopes.iter().map(|e| e.len() + dm::ENVELOPE_FRAMING).sum());
    }

    /// The request for `peer` on `path` failed with `error`. A direct one cuts a
    /// large-batch peer's envelopes; one that timed out or whose stream failed cuts
    /// the bytes to a quarter of what it carried. A batch deposited at several
    /// relays is judged once, by the first of them to answer or fail: one relay
    /// that took it says the size is fine.
    pub(crate) fn failed(&mut self, peer: PeerId, path: Path, error: &OutboundFailure) {
        if path == Path::Direct && self.large.contains(&peer) {
            self.count_cut.insert(peer);
        }
        let Some(carried) = self.in_flight.remove(&peer) else { return };
        if matches!(error, OutboundFailure::Timeout | OutboundFailure::Io(_)) {
            let cut = (self.max_bytes(&peer).min(carried) / 4).max(MIN_BATCH_BYTES);
            self.bytes_cut.insert(peer, cut);
        }
    }

    /// The request for `peer` on `path` was answered. A direct one lifts the cut
    /// of the envelopes; one that used at least half of the byte cap doubles it,
    /// up to the full size (then the contact is forgotten).
    pub(crate) fn answered(&mut self, peer: &PeerId, path: Path) {
        if path == Path::Direct {
            self.count_cut.remove(peer);
        }
        let carried = self.in_flight.remove(peer).unwrap_or(0);
        let Some(cut) = self.bytes_cut.get_mut(peer) else { return };
        if carried < *cut / 2 {
            return;
        }
        *cut = cut.saturating_mul(2);
        if *cut >= dm::MAX_BATCH_BYTES {
            self.bytes_cut.remove(peer);
        }
    }

    /// `peer`'s last connection closed: its next requests start afresh (and it
    /// takes large batches again only once it says so).
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.large.remove(peer);
        self.count_cut.remove(peer);
        self.bytes_cut.remove(peer);
        self.in_flight.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envelopes that carry `bytes` in all, framing included.
    fn envelopes(bytes: usize) -> Vec<Vec<u8>> {
        vec![vec![0; bytes - dm::ENVELOPE_FRAMING]]
    }

    fn timeout() -> OutboundFailure {
        OutboundFailure::Timeout
    }

    #[test]
    fn a_timeout_cuts_to_a_quarter_of_what_the_request_carried_down_to_the_floor() {
        let (slow, other) = (PeerId::random(), PeerId::random());
        let mut caps = RequestSize::default();
        assert_eq!(caps.max_bytes(&slow), dm::MAX_BATCH_BYTES);
        // A 1.8 MB request times out: the next ones carry 450 KB, not a quarter of 8 MiB.
        caps.sent(slow, &envelopes(1_800_000));
        caps.failed(slow, Path::Direct, &timeout());
        assert_eq!(caps.max_bytes(&slow), 450_000);
        for _ in 0..10 {
            caps.sent(slow, &envelopes(caps.max_bytes(&slow)));
            caps.failed(slow, Path::Direct, &timeout());
        }
        assert_eq!(caps.max_bytes(&slow), MIN_BATCH_BYTES, "never below the floor");
        assert_eq!(caps.max_bytes(&other), dm::MAX_BATCH_BYTES, "another contact is not cut");
        // A failure that says nothing of the link's speed (a dial that failed) cuts nothing.
        caps.sent(other, &envelopes(2_000_000));
        caps.failed(other, Path::Direct, &OutboundFailure::DialFailure);
        assert_eq!(caps.max_bytes(&other), dm::MAX_BATCH_BYTES);
        // A batch at two relays: the second's timeout, after the first took it, cuts nothing.
        caps.sent(other, &envelopes(2_000_000));
        caps.answered(&other, Path::Relays);
        caps.failed(other, Path::Relays, &timeout());
        assert_eq!(caps.max_bytes(&other), dm::MAX_BATCH_BYTES);
    }

    #[test]
    fn only_answers_to_requests_that_used_the_cap_grow_it_back_and_a_new_connection_starts_afresh() {
        let slow = PeerId::random();
        let mut caps = RequestSize::default();
        caps.sent(slow, &envelopes(MIN_BATCH_BYTES));
        caps.failed(slow, Path::Direct, &timeout());
        assert_eq!(caps.max_bytes(&slow), MIN_BATCH_BYTES);
        // A small request answered (a receipt) says nothing of a full one.
        caps.sent(slow, &envelopes(300));
        caps.answered(&slow, Path::Direct);
        assert_eq!(caps.max_bytes(&slow), MIN_BATCH_BYTES);
        let mut answers = 0;
        while caps.max_bytes(&slow) < dm::MAX_BATCH_BYTES {
            caps.sent(slow, &envelopes(caps.max_bytes(&slow)));
            caps.answered(&slow, Path::Direct);
            answers += 1;
            assert!(answers < 20, "full requests answered grow it back within a few");
        }
        assert_eq!(caps.max_bytes(&slow), dm::MAX_BATCH_BYTES, "never above the full size");
        assert!(caps.bytes_cut.is_empty() && caps.in_flight.is_empty(), "a contact back at the full size is forgotten");

        caps.sent(slow, &envelopes(1_000_000));
        caps.failed(slow, Path::Direct, &timeout());
        assert!(caps.max_bytes(&slow) < dm::MAX_BATCH_BYTES);
        caps.disconnected(&slow);
        assert_eq!(caps.max_bytes(&slow), dm::MAX_BATCH_BYTES, "a new connection may take another path");
    }

    #[test]
    fn a_large_batch_peer_gets_large_direct_requests_until_one_fails_and_again_once_one_is_answered() {
        let (large, old) = (PeerId::random(), PeerId::random());
        let mut caps = RequestSize::default();
        let small = dm::MAX_BATCH_V1;
        assert_eq!(caps.max_envelopes(&large, Path::Direct), small, "not before it says it takes them");
        caps.identified(large, true);
        caps.identified(old, false);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), dm::MAX_BATCH);
        assert_eq!(caps.max_envelopes(&large, Path::Relays), small, "a relay's deposit takes 64");
        assert_eq!(caps.max_envelopes(&old, Path::Direct), small);
        // A deposit that fails says nothing of the direct path.
        caps.failed(large, Path::Relays, &OutboundFailure::DialFailure);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), dm::MAX_BATCH);
        caps.failed(large, Path::Direct, &OutboundFailure::DialFailure);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), small, "a failed direct request cuts it");
        caps.answered(&large, Path::Relays);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), small, "a relay's answer does not lift it");
        caps.answered(&large, Path::Direct);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), dm::MAX_BATCH, "a direct answer does");
        caps.failed(large, Path::Direct, &timeout());
        caps.disconnected(&large);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), small, "a new connection must say it again");
        caps.identified(large, true);
        assert_eq!(caps.max_envelopes(&large, Path::Direct), dm::MAX_BATCH, "and starts uncut");
    }
}
