//! Delivery receipts for group messages, gathered per author for a short while and
//! sent as one: a member of a busy group tells each author once per interval what it
//! stored, instead of once per message.
//!
//! Held in memory only: a crash within the interval loses those receipts, which only
//! leaves the author's counts lower (the messages themselves are durable).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kith_storage::MessageId;
use libp2p::PeerId;

/// Receipts waiting to go out, by author.
#[derive(Debug)]
pub(crate) struct ReceiptBatch {
    delay: Duration,
    /// When the oldest waiting receipt is due.
    due: Option<Instant>,
    by_author: HashMap<PeerId, Vec<MessageId>>,
}

impl ReceiptBatch {
    /// An empty batch whose receipts go out `delay` after the first one.
    pub(crate) fn new(delay: Duration) -> ReceiptBatch {
        ReceiptBatch { delay, due: None, by_author: HashMap::new() }
    }

    /// Adds a receipt for `author`'s message `id`, stored at `now`.
    pub(crate) fn add(&mut self, now: Instant, author: PeerId, id: MessageId) {
        self.due.get_or_insert(now + self.delay);
        self.by_author.entry(author).or_default().push(id);
    }

    /// When the batch is due, if anything waits.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.due
    }

    /// Everything waiting, by author, if it is due at `now` (or `now` is `None`:
    /// the node stops and sends what it has).
    pub(crate) fn take_due(&mut self, now: Option<Instant>) -> HashMap<PeerId, Vec<MessageId>> {
        match (self.due, now) {
            (Some(due), Some(now)) if now < due => HashMap::new(),
            (None, _) => HashMap::new(),
            _ => {
                self.due = None;
                std::mem::take(&mut self.by_author)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_gather_per_author_until_the_first_one_is_due() {
        let start = Instant::now();
        let delay = Duration::from_secs(2);
        let mut batch = ReceiptBatch::new(delay);
        assert_eq!(batch.next_wakeup(), None);
        let (alice, bob) = (PeerId::random(), PeerId::random());
        batch.add(start, alice, MessageId([1; 16]));
        batch.add(start + Duration::from_secs(1), alice, MessageId([2; 16]));
        batch.add(start + Duration::from_secs(1), bob, MessageId([3; 16]));
        assert_eq!(batch.next_wakeup(), Some(start + delay), "due with the first");
        assert!(batch.take_due(Some(start + Duration::from_secs(1))).is_empty(), "not yet");
        let due = batch.take_due(Some(start + delay));
        assert_eq!(due[&alice], [MessageId([1; 16]), MessageId([2; 16])]);
        assert_eq!(due[&bob], [MessageId([3; 16])]);
        assert_eq!(batch.next_wakeup(), None);
        batch.add(start + delay, bob, MessageId([4; 16]));
        assert_eq!(batch.take_due(None)[&bob], [MessageId([4; 16])], "a stopping node sends at once");
    }
}
