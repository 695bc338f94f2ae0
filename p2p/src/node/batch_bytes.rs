//! How many bytes one direct request to a contact may carry.
//!
//! A request must reach its receiver and be answered within the request timeout
//! (10 s). Full batches are up to [`dm::MAX_BATCH_BYTES`] (8 MiB): on a link of a
//! few hundred kilobytes a second such a request times out every time, and the
//! same batch would be sent again and again, never delivered. So a timeout cuts
//! the contact's next requests to a quarter of the bytes (never below
//! [`MIN_BATCH_BYTES`], and the first envelope of a batch always goes), and every
//! answered request doubles it again, back to the full size.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::dm;

/// The fewest bytes a cut may leave a request: the largest single message
/// (text, its payload and its seals) fits, and goes alone anyway.
pub(crate) const MIN_BATCH_BYTES: usize = 64 * 1024;

/// The byte cap of each contact whose requests timed out; every other contact's
/// is [`dm::MAX_BATCH_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct BatchBytes {
    cut: HashMap<PeerId, usize>,
}

impl BatchBytes {
    /// The most bytes of envelopes one request to `peer` may carry.
    pub(crate) fn cap(&self, peer: &PeerId) -> usize {
        self.cut.get(peer).copied().unwrap_or(dm::MAX_BATCH_BYTES)
    }

    /// A request to `peer` timed out: its next ones carry a quarter of the bytes.
    pub(crate) fn timed_out(&mut self, peer: PeerId) {
        let cut = (self.cap(&peer) / 4).max(MIN_BATCH_BYTES);
        self.cut.insert(peer, cut);
    }

    /// A request to `peer` was answered: its next ones may carry twice the bytes,
    /// up to the full size (then it is forgotten).
    pub(crate) fn answered(&mut self, peer: &PeerId) {
        let Some(cut) = self.cut.get_mut(peer) else { return };
        *cut = cut.saturating_mul(2);
        if *cut >= dm::MAX_BATCH_BYTES {
            self.cut.remove(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_cut_a_contacts_requests_to_the_floor_and_answers_grow_them_back() {
        let (slow, other) = (PeerId::random(), PeerId::random());
        let mut caps = BatchBytes::default();
        assert_eq!(caps.cap(&slow), dm::MAX_BATCH_BYTES);
        caps.timed_out(slow);
        assert_eq!(caps.cap(&slow), dm::MAX_BATCH_BYTES / 4);
        for _ in 0..10 {
            caps.timed_out(slow);
        }
        assert_eq!(caps.cap(&slow), MIN_BATCH_BYTES, "never below the floor");
        assert_eq!(caps.cap(&other), dm::MAX_BATCH_BYTES, "another contact is not cut");

        caps.answered(&slow);
        assert_eq!(caps.cap(&slow), 2 * MIN_BATCH_BYTES);
        let mut answers = 1;
        while caps.cap(&slow) < dm::MAX_BATCH_BYTES {
            caps.answered(&slow);
            answers += 1;
            assert!(answers < 20, "grows back within a few answers");
        }
        assert_eq!(caps.cap(&slow), dm::MAX_BATCH_BYTES, "never above the full size");
        assert!(caps.cut.is_empty(), "a contact back at the full size is forgotten");
        caps.answered(&other);
        assert!(caps.cut.is_empty(), "an answer to a contact never cut changes nothing");
    }
}
