//! How many bytes one request for a contact — to it, or a deposit of its mail
//! at its relays — may carry.
//!
//! A request must reach the other end and be answered within the request
//! timeout (10 s). Full batches are up to [`dm::MAX_BATCH_BYTES`] (8 MiB): on a link of a
//! few hundred kilobytes a second such a request times out every time, and the
//! same batch would be sent again and again, never delivered. So a request that
//! fails by timing out (or by its stream failing, which is how the receiver's own
//! timeout shows) cuts the contact's next requests to a quarter of what it carried
//! (never below [`MIN_BATCH_BYTES`]; the first envelope of a batch always goes),
//! and an answered request that used at least half of the cap doubles it again,
//! back to the full size. A cut lasts while the contact stays connected: a new
//! connection may take another path.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::request_response::OutboundFailure;

use crate::dm;

/// The fewest bytes a cut may leave a request: about one long text (a text of
/// 64 KiB sealed is some 70 KiB, and goes alone anyway).
pub(crate) const MIN_BATCH_BYTES: usize = 64 * 1024;

/// The byte cap of each contact whose requests were cut, and the size of the
/// request in flight to each; every other contact's cap is
/// [`dm::MAX_BATCH_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct BatchBytes {
    cut: HashMap<PeerId, usize>,
    in_flight: HashMap<PeerId, usize>,
}

impl BatchBytes {
    /// The most bytes of envelopes one request to `peer` may carry.
    pub(crate) fn cap(&self, peer: &PeerId) -> usize {
        self.cut.get(peer).copied().unwrap_or(dm::MAX_BATCH_BYTES)
    }

    /// A request of `envelopes` left for `peer` (one is in flight per contact).
    pub(crate) fn sent(&mut self, peer: PeerId, envelopes: &[Vec<u8>]) {
        self.in_flight.insert(peer, envelopes.iter().map(|e| e.len() + dm::ENVELOPE_FRAMING).sum());
    }

    /// The request to `peer` failed with `error`: if it timed out or its stream
    /// failed (how the receiver's own timeout shows), the next ones carry a
    /// quarter of what it carried. A batch deposited at several relays is judged
    /// once, by the first of them to answer or fail: one relay that took it says
    /// the size is fine.
    pub(crate) fn failed(&mut self, peer: PeerId, error: &OutboundFailure) {
        let Some(carried) = self.in_flight.remove(&peer) else { return };
        if matches!(error, OutboundFailure::Timeout | OutboundFailure::Io(_)) {
            let cut = (self.cap(&peer).min(carried) / 4).max(MIN_BATCH_BYTES);
            self.cut.insert(peer, cut);
        }
    }

    /// The request to `peer` was answered: if it used at least half of the cap,
    /// the next ones may carry twice the bytes, up to the full size (then the
    /// contact is forgotten).
    pub(crate) fn answered(&mut self, peer: &PeerId) {
        let carried = self.in_flight.remove(peer).unwrap_or(0);
        let Some(cut) = self.cut.get_mut(peer) else { return };
        if carried < *cut / 2 {
            return;
        }
        *cut = cut.saturating_mul(2);
        if *cut >= dm::MAX_BATCH_BYTES {
            self.cut.remove(peer);
        }
    }

    /// `peer`'s last connection closed: its next requests start at the full size.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.cut.remove(peer);
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
        let mut caps = BatchBytes::default();
        assert_eq!(caps.cap(&slow), dm::MAX_BATCH_BYTES);
        // A 1.8 MB request times out: the next ones carry 450 KB, not a quarter of 8 MiB.
        caps.sent(slow, &envelopes(1_800_000));
        caps.failed(slow, &timeout());
        assert_eq!(caps.cap(&slow), 450_000);
        for _ in 0..10 {
            caps.sent(slow, &envelopes(caps.cap(&slow)));
            caps.failed(slow, &timeout());
        }
        assert_eq!(caps.cap(&slow), MIN_BATCH_BYTES, "never below the floor");
        assert_eq!(caps.cap(&other), dm::MAX_BATCH_BYTES, "another contact is not cut");
        // A failure that says nothing of the link's speed (a dial that failed) cuts nothing.
        caps.sent(other, &envelopes(2_000_000));
        caps.failed(other, &OutboundFailure::DialFailure);
        assert_eq!(caps.cap(&other), dm::MAX_BATCH_BYTES);
        // A batch at two relays: the second's timeout, after the first took it, cuts nothing.
        caps.sent(other, &envelopes(2_000_000));
        caps.answered(&other);
        caps.failed(other, &timeout());
        assert_eq!(caps.cap(&other), dm::MAX_BATCH_BYTES);
    }

    #[test]
    fn only_answers_to_requests_that_used_the_cap_grow_it_back_and_a_new_connection_starts_afresh() {
        let slow = PeerId::random();
        let mut caps = BatchBytes::default();
        caps.sent(slow, &envelopes(MIN_BATCH_BYTES));
        caps.failed(slow, &timeout());
        assert_eq!(caps.cap(&slow), MIN_BATCH_BYTES);
        // A small request answered (a receipt) says nothing of a full one.
        caps.sent(slow, &envelopes(300));
        caps.answered(&slow);
        assert_eq!(caps.cap(&slow), MIN_BATCH_BYTES);
        let mut answers = 0;
        while caps.cap(&slow) < dm::MAX_BATCH_BYTES {
            caps.sent(slow, &envelopes(caps.cap(&slow)));
            caps.answered(&slow);
            answers += 1;
            assert!(answers < 20, "full requests answered grow it back within a few");
        }
        assert_eq!(caps.cap(&slow), dm::MAX_BATCH_BYTES, "never above the full size");
        assert!(caps.cut.is_empty() && caps.in_flight.is_empty(), "a contact back at the full size is forgotten");

        caps.sent(slow, &envelopes(1_000_000));
        caps.failed(slow, &timeout());
        assert!(caps.cap(&slow) < dm::MAX_BATCH_BYTES);
        caps.disconnected(&slow);
        assert_eq!(caps.cap(&slow), dm::MAX_BATCH_BYTES, "a new connection may take another path");
    }
}
