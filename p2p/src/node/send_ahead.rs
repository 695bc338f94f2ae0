//! Which of our new 1:1 messages leave before the flush that stores them, so that
//! the sender's disk write overlaps the network and the receiver's instead of
//! adding to them (docs/PROTOCOL.md, *Delivery*, *Sending ahead*, says what a crash
//! at each point does).
//!
//! A crash before that flush loses the message here while the contact may hold
//! it. Two things must then not be used again: the ratchet keys it was sealed with,
//! and its Lamport value (the next message must order after it). So a message
//! leaves ahead only when
//! - the contact's mark is durable: a start that finds it skips
//!   [`MAX_SENT_AHEAD`] keys of every session of that contact
//!   ([`crate::ratchet::Ratchets::mark_sends_ahead`]) and raises the
//!   conversation's Lamport value by as much;
//! - the sending chain it was sealed on was not started in a batch whose flush is
//!   still pending (after a crash the contact could not follow the chain started
//!   again; [`crate::ratchet::Ratchets::take_new_chains`], [`SendAhead::unmark`]);
//! - it was sealed with the batch (presealed) and carries no file (a file's record
//!   must be durable before anyone asks for its chunks);
//! - fewer than [`MAX_SENT_AHEAD`] of the contact's messages sent ahead wait for
//!   their flush, and its Lamport value is above that of the contact's message
//!   flushed last and at most [`MAX_SENT_AHEAD`] above it: so what a crash can lose
//!   is within what the next start skips (a conversation within
//!   [`MAX_SENT_AHEAD`] of the Lamport cap, where the raised value could tie,
//!   sends nothing ahead);
//! - no earlier message to the contact is held for its flush (the queue keeps the
//!   order they were written in);
//! - no flush has failed since the node started (after a failed `fdatasync` the
//!   kernel may have dropped what it held, so nothing counts as durable that a
//!   later flush did not write again).
//!
//! Everything else waits for its flush as before.

use std::collections::{HashMap, HashSet};

use kith_storage::MessageId;
use libp2p::PeerId;

use crate::payload::MAX_LAMPORT;
use crate::ratchet::MAX_SENT_AHEAD;

/// One staged message to a contact, as [`SendAhead::take`] judges it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged {
    pub(crate) peer: PeerId,
    pub(crate) id: MessageId,
    pub(crate) lamport: u64,
    /// Presealed with its batch and carrying no file.
    pub(crate) eligible: bool,
}

/// One contact's messages between their staging and their flush.
#[derive(Debug, Default)]
struct Contact {
    /// The Lamport value of its message flushed last (its conversation's values
    /// only rise, unless the conversation is deleted and starts again).
    flushed_lamport: u64,
    /// Sent ahead, flush pending.
    ahead: usize,
    /// Held for their flush.
    held: usize,
}

/// The bookkeeping of sends ahead (see the module docs). Pure: the actor asks and
/// carries out.
#[derive(Debug, Default)]
pub(crate) struct SendAhead {
    /// Contacts whose mark is durable.
    marked: HashSet<PeerId>,
    /// The batch that last unmarked each contact ([`Self::unmark`]): only the flush
    /// of that batch or a later one marks it again.
    unmarked_by: HashMap<PeerId, u64>,
    contacts: HashMap<PeerId, Contact>,
    /// Messages sent ahead whose flush is pending.
    ids: HashSet<MessageId>,
    /// A flush failed: nothing goes ahead any more in this run.
    stopped: bool,
}

impl SendAhead {
    /// A contact whose mark was found at start, and the highest Lamport value of
    /// its conversation then stored (the conversation's next value is raised past
    /// it, so its first message waits for its flush).
    pub(crate) fn marked_at_start(&mut self, peer: PeerId, stored_lamport: u64) {
        self.marked.insert(peer);
        self.contacts.entry(peer).or_default().flushed_lamport = stored_lamport;
    }

    /// Whether `peer` has no durable mark yet (the batch should mark it).
    pub(crate) fn needs_mark(&self, peer: &PeerId) -> bool {
        !self.marked.contains(peer)
    }

    /// A flush failed (of anything): nothing goes ahead any more in this run.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// The flush of batch number `batch` (numbered in the order batches are
    /// staged), which covered the marks of `peers`, completed.
    pub(crate) fn marks_durable(&mut self, batch: u64, peers: impl IntoIterator<Item = PeerId>) {
        for peer in peers {
            if self.unmarked_by.get(&peer).is_none_or(|by| batch >= *by) {
                self.marked.insert(peer);
            }
        }
    }

    /// `peer`'s sending chain was started by batch `batch` or before it, not yet
    /// flushed: nothing to it goes ahead until the flush of that batch (or a later
    /// one) marks it again ([`Self::marks_durable`]); an earlier batch's flush does
    /// not.
    pub(crate) fn unmark(&mut self, batch: u64, peer: &PeerId) {
        self.marked.remove(peer);
        self.unmarked_by.insert(*peer, batch);
    }

    /// Decides for one staged message, in the order of its batch, whether it leaves
    /// now (true) or is held for its flush. Every message judged here is reported
    /// to [`Self::flushed`] when its flush completes.
    pub(crate) fn take(&mut self, staged: Staged) -> bool {
        let contact = self.contacts.entry(staged.peer).or_default();
        let ahead = staged.eligible
            && !self.stopped
            && self.marked.contains(&staged.peer)
            && contact.held == 0
            && contact.ahead < MAX_SENT_AHEAD
            && staged.lamport > contact.flushed_lamport
            && staged.lamport <= contact.flushed_lamport.saturating_add(MAX_SENT_AHEAD as u64)
            && staged.lamport < MAX_LAMPORT - MAX_SENT_AHEAD as u64;
        if ahead {
            contact.ahead += 1;
            self.ids.insert(staged.id);
        } else {
            contact.held += 1;
        }
        ahead
    }

    /// The flush of a message judged by [`Self::take`] completed (`ok`) or failed
    /// (then nothing goes ahead any more in this run). Returns whether it was sent
    /// ahead (then it is queued already).
    pub(crate) fn flushed(&mut self, peer: PeerId, id: MessageId, lamport: u64, ok: bool) -> bool {
        let was_ahead = self.ids.remove(&id);
        self.stopped |= !ok;
        let Some(contact) = self.contacts.get_mut(&peer) else { return was_ahead };
        if was_ahead {
            contact.ahead = contact.ahead.saturating_sub(1);
        } else {
            contact.held = contact.held.saturating_sub(1);
        }
        if ok {
            contact.flushed_lamport = lamport;
        }
        was_ahead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(peer: PeerId, lamport: u64, eligible: bool) -> Staged {
        Staged { peer, id: crate::ops::new_message_id(), lamport, eligible }
    }

    #[test]
    fn nothing_leaves_ahead_before_the_mark_is_durable() {
        let peer = PeerId::random();
        let mut ahead = SendAhead::default();
        assert!(ahead.needs_mark(&peer));
        let first = staged(peer, 1, true);
        assert!(!ahead.take(first), "no mark on disk yet");
        assert!(!ahead.flushed(peer, first.id, 1, true));
        ahead.marks_durable(1, [peer]);
        assert!(!ahead.needs_mark(&peer));
        assert!(ahead.take(staged(peer, 2, true)));
        assert!(!ahead.take(staged(PeerId::random(), 1, true)), "another contact is not marked");
    }

    #[test]
    fn a_held_message_holds_those_behind_it_until_its_flush() {
        let peer = PeerId::random();
        let mut ahead = SendAhead::default();
        ahead.marked_at_start(peer, 10);
        let with_file = staged(peer, 11, false);
        assert!(!ahead.take(with_file), "not presealed, or a file: held");
        let behind = staged(peer, 12, true);
        assert!(!ahead.take(behind), "would overtake the held one");
        assert!(!ahead.flushed(peer, with_file.id, 11, true));
        assert!(!ahead.flushed(peer, behind.id, 12, true));
        let next = staged(peer, 13, true);
        assert!(ahead.take(next), "nothing held any more");
        assert!(ahead.flushed(peer, next.id, 13, true), "was sent ahead: queued already");
    }

    #[test]
    fn at_most_the_bound_waits_for_a_flush_and_lamport_values_stay_within_it() {
        let peer = PeerId::random();
        let mut ahead = SendAhead::default();
        ahead.marked_at_start(peer, 100);
        let bound = MAX_SENT_AHEAD as u64;
        let sent: Vec<Staged> = (1..=bound).map(|n| staged(peer, 100 + n, true)).collect();
        assert!(sent.iter().all(|s| ahead.take(*s)));
        let over = staged(peer, 101 + bound, true);
        assert!(!ahead.take(over), "the bound is reached");
        for s in &sent {
            assert!(ahead.flushed(peer, s.id, s.lamport, true));
        }
        assert!(!ahead.flushed(peer, over.id, over.lamport, true));

        // A value far above the flushed ones (incoming messages raised it, not yet
        // flushed here) waits for its flush; after it the next ones go again.
        let flushed = 101 + bound;
        let far = staged(peer, flushed + bound + 1, true);
        assert!(!ahead.take(far));
        assert!(!ahead.flushed(peer, far.id, far.lamport, true));
        assert!(ahead.take(staged(peer, far.lamport + 1, true)));
    }

    #[test]
    fn any_failed_flush_stops_sending_ahead() {
        let peer = PeerId::random();
        let mut ahead = SendAhead::default();
        ahead.marked_at_start(peer, 0);
        ahead.stop();
        assert!(!ahead.take(staged(peer, 1, true)));
    }

    #[test]
    fn a_failed_flush_stops_sending_ahead_for_the_run() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut ahead = SendAhead::default();
        ahead.marked_at_start(peer, 0);
        ahead.marked_at_start(other, 0);
        let first = staged(peer, 1, true);
        assert!(ahead.take(first));
        assert!(ahead.flushed(peer, first.id, first.lamport, false));
        assert!(!ahead.take(staged(peer, 2, true)));
        assert!(!ahead.take(staged(other, 1, true)), "no contact: the disk failed");
    }

    #[test]
    fn lamport_values_that_tie_or_fall_wait_for_their_flush() {
        let peer = PeerId::random();
        let mut ahead = SendAhead::default();
        ahead.marked_at_start(peer, 500);
        // The conversation was deleted and starts again low: held, not judged
        // against the old values.
        let restarted = staged(peer, 1, true);
        assert!(!ahead.take(restarted));
        assert!(!ahead.flushed(peer, restarted.id, 1, true));
        assert!(ahead.take(staged(peer, 2, true)), "judged against the new conversation");
        assert!(!ahead.take(staged(peer, 400, true)), "far above the last flushed");

        // Near the Lamport cap a raised value could tie: nothing goes ahead.
        let capped = PeerId::random();
        let near = MAX_LAMPORT - MAX_SENT_AHEAD as u64;
        ahead.marked_at_start(capped, near - 1);
        assert!(!ahead.take(staged(capped, near, true)));
    }

    #[test]
    fn a_new_chain_waits_for_the_flush_of_the_batch_that_started_it() {
        let peer = PeerId::random();
        let mut ahead = SendAhead::default();
        ahead.marked_at_start(peer, 0);
        // Batch 3 started a chain; batch 2, staged before it, was marking the
        // contact: its flush must not mark it again.
        ahead.unmark(3, &peer);
        assert!(ahead.needs_mark(&peer));
        let first = staged(peer, 1, true);
        assert!(!ahead.take(first));
        assert!(!ahead.flushed(peer, first.id, 1, true));
        ahead.marks_durable(2, [peer]);
        assert!(ahead.needs_mark(&peer), "an earlier batch's flush");
        ahead.marks_durable(3, [peer]);
        assert!(ahead.take(staged(peer, 2, true)));
    }
}
