//! Deposit tickets given to contacts (see [`crate::mailbox::DepositTicket`]).
//!
//! Every accepted contact holds a ticket of ours, so that its deposits into our
//! relay mailboxes may fill them beyond the share a relay leaves open to anyone:
//! a stranger filling that share does not shut our contacts' mail out. A ticket
//! runs [`TICKET_LIFETIME`]; a new one is queued once the last one given has less
//! than [`RENEW_WITHIN`] to run, so a contact that is offline for a while still
//! holds a valid one when it comes back, and a contact we remove or block holds
//! ours at most [`TICKET_LIFETIME`] longer (relays cannot be told to refuse it
//! sooner).

use std::collections::HashSet;

use kith_storage::{ContactState, Recipient, Store};

use crate::identity::Identity;
use crate::mailbox;
use crate::ops::{self, OpError};
use crate::payload::Payload;

/// How long a ticket we give runs (30 days, in ms).
pub(crate) const TICKET_LIFETIME: u64 = 30 * 24 * 3600 * 1000;

/// A contact whose ticket runs out within this gets a new one (20 days, in ms).
pub(crate) const RENEW_WITHIN: u64 = 20 * 24 * 3600 * 1000;

/// Queues a new ticket (not flushed) for every accepted contact that has none of
/// ours running past `now_ms` + [`RENEW_WITHIN`], in place of any older one still
/// queued for it (a contact offline for long gets the latest, not one per
/// renewal); returns how many were queued. The ticket is noted as given when it is
/// queued: one lost before it arrives (a crash before the flush, a contact on a
/// build that does not know tickets) is given again at the next renewal.
pub(crate) fn give_due(store: &Store, me: &Identity, now_ms: u64) -> Result<usize, OpError> {
    let tickets = store.deposit_tickets();
    let renew_before = now_ms.saturating_add(RENEW_WITHIN);
    let mut due = HashSet::new();
    for contact in store.contacts().matching(|c| c.state == ContactState::Accepted)? {
        if tickets.given_until(&contact.peer_id)?.is_none_or(|until| until <= renew_before) {
            due.insert(contact.peer_id);
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    for entry in store.outbox().list()? {
        if let Recipient::Peer(peer) = &entry.recipient
            && due.contains(peer)
            && matches!(Payload::decode(&entry.payload), Ok(Payload::DepositTicket { .. }))
        {
            store.outbox().remove(entry.id)?;
        }
    }
    let not_after_ms = now_ms.saturating_add(TICKET_LIFETIME);
    for peer in &due {
        ops::enqueue(store, peer, &Payload::DepositTicket { ticket: mailbox::sign_ticket(me, peer, not_after_ms) })?;
        tickets.note_given(peer, not_after_ms)?;
    }
    Ok(due.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    /// The tickets queued in `store`'s outbox, by recipient.
    fn queued(store: &Store) -> Vec<(libp2p::PeerId, mailbox::DepositTicket)> {
        let mut out = Vec::new();
        for entry in store.outbox().list().unwrap() {
            if let (Recipient::Peer(peer), Ok(Payload::DepositTicket { ticket })) = (entry.recipient, Payload::decode(&entry.payload)) {
                out.push((peer, ticket));
            }
        }
        out
    }

    #[test]
    fn every_accepted_contact_gets_a_ticket_that_admits_it_and_a_new_one_before_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let me = Identity::generate();
        let (bob, carol, dave) = (Identity::generate().peer_id(), Identity::generate().peer_id(), Identity::generate().peer_id());
        store.contacts().put(&ops::new_contact(&bob, ContactState::Accepted)).unwrap();
        store.contacts().put(&ops::new_contact(&carol, ContactState::PendingIn)).unwrap();
        store.contacts().put(&ops::new_contact(&dave, ContactState::Blocked)).unwrap();
        let now = 1_000 * DAY_MS;

        assert_eq!(give_due(&store, &me, now).unwrap(), 1, "Bob alone is a contact");
        let given = queued(&store);
        assert_eq!(given.len(), 1);
        let (to, ticket) = &given[0];
        assert_eq!(to, &bob);
        assert!(mailbox::ticket_admits(ticket, &me.peer_id(), &bob, now + 29 * DAY_MS));
        assert!(!mailbox::ticket_admits(ticket, &me.peer_id(), &bob, now + 31 * DAY_MS), "it runs 30 days");
        assert!(!mailbox::ticket_admits(ticket, &me.peer_id(), &carol, now));

        // Asked again at once, or nine days on: Bob's still runs long enough.
        assert_eq!(give_due(&store, &me, now).unwrap(), 0);
        assert_eq!(give_due(&store, &me, now + 9 * DAY_MS).unwrap(), 0);
        // Eleven days on it has less than twenty to run: a new one, running 30 days
        // from then.
        assert_eq!(give_due(&store, &me, now + 11 * DAY_MS).unwrap(), 1);
        let given = queued(&store);
        assert_eq!(given.len(), 1, "in place of the one still queued: Bob was offline");
        assert!(mailbox::ticket_admits(&given[0].1, &me.peer_id(), &bob, now + 40 * DAY_MS));

        // Carol accepted: hers comes with the next check, and Bob's stays queued.
        store.contacts().set_state(&carol, ContactState::Accepted).unwrap();
        assert_eq!(give_due(&store, &me, now + 11 * DAY_MS).unwrap(), 1);
        let mut to: Vec<_> = queued(&store).into_iter().map(|(peer, _)| peer).collect();
        to.sort();
        let mut both = vec![bob, carol];
        both.sort();
        assert_eq!(to, both);
    }
}
