//! Deposit tickets (see kith-p2p's `mailbox::DepositTicket`): a contact's signed
//! permission to deposit into its relay mailboxes that it gave us (*held*), and
//! until when the last one we gave each contact runs (*given*), so that a node
//! renews its contacts' tickets before they lapse.
//!
//! Keys: `held/` or `given/` ‖ peer id (base58). A held ticket's value is its
//! expiry (u64 BE, ms) ‖ its 64-byte signature; a given one's is the expiry alone.

use std::sync::Arc;

use libp2p_identity::PeerId;

use crate::codec::be_u64;
use crate::error::{StoreError, db};
use crate::schema::DEPOSIT_TICKETS;
use crate::store::Inner;

/// A ticket's signature length (Ed25519).
pub const TICKET_SIGNATURE_LEN: usize = 64;

/// A ticket a contact gave us: its expiry (ms since the Unix epoch) and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldTicket {
    /// The last moment it admits a deposit.
    pub not_after_ms: u64,
    /// The contact's signature over it.
    pub signature: [u8; TICKET_SIGNATURE_LEN],
}

/// Handle to the deposit tickets held and given. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DepositTickets {
    pub(crate) inner: Arc<Inner>,
}

fn key(kind: &str, peer: &PeerId) -> Vec<u8> {
    let mut key = kind.as_bytes().to_vec();
    key.extend_from_slice(crate::peer::text(peer).as_bytes());
    key
}

impl DepositTickets {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.deposit_tickets
    }

    /// The ticket `owner` gave us, if we hold one (expired or not). A damaged record
    /// counts as none: the deposit then goes without one.
    pub fn held(&self, owner: &PeerId) -> Result<Option<HeldTicket>, StoreError> {
        let Some(value) = self.tree().get(key("held/", owner)).map_err(db)? else { return Ok(None) };
        let Some((expiry, signature)) = value.split_first_chunk::<8>() else { return Ok(None) };
        let Ok(signature) = <[u8; TICKET_SIGNATURE_LEN]>::try_from(signature) else { return Ok(None) };
        Ok(Some(HeldTicket { not_after_ms: u64::from_be_bytes(*expiry), signature }))
    }

    /// Keeps `ticket` from `owner` unless the one held already runs as long or
    /// longer; returns whether it was kept. Not flushed: a ticket lost in a crash
    /// comes again with the next renewal.
    pub fn keep(&self, owner: &PeerId, ticket: &HeldTicket) -> Result<bool, StoreError> {
        if self.held(owner)?.is_some_and(|held| held.not_after_ms >= ticket.not_after_ms) {
            return Ok(false);
        }
        let mut value = ticket.not_after_ms.to_be_bytes().to_vec();
        value.extend_from_slice(&ticket.signature);
        self.tree().insert(key("held/", owner), value).map_err(db)?;
        Ok(true)
    }

    /// Until when the last ticket we gave `peer` runs (ms), if we gave one.
    pub fn given_until(&self, peer: &PeerId) -> Result<Option<u64>, StoreError> {
        match self.tree().get(key("given/", peer)).map_err(db)? {
            Some(v) => Ok(Some(be_u64(DEPOSIT_TICKETS, &v)?)),
            None => Ok(None),
        }
    }

    /// Notes that we gave `peer` a ticket running until `not_after_ms`. Not flushed.
    pub fn note_given(&self, peer: &PeerId, not_after_ms: u64) -> Result<(), StoreError> {
        self.tree().insert(key("given/", peer), &not_after_ms.to_be_bytes()).map_err(db)?;
        Ok(())
    }

    /// Forgets what we hold from and gave `peer` (the contact was removed): a
    /// contact added again gets a new ticket at once. Not flushed.
    pub fn forget(&self, peer: &PeerId) -> Result<(), StoreError> {
        self.tree().remove(key("held/", peer)).map_err(db)?;
        self.tree().remove(key("given/", peer)).map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn a_later_ticket_replaces_the_held_one_and_an_earlier_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let tickets = store.deposit_tickets();
        let bob: PeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".parse().unwrap();
        let carol: PeerId = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq".parse().unwrap();
        assert_eq!(tickets.held(&bob).unwrap(), None);
        let first = HeldTicket { not_after_ms: 100, signature: [1; 64] };
        assert!(tickets.keep(&bob, &first).unwrap());
        assert!(!tickets.keep(&bob, &HeldTicket { not_after_ms: 50, signature: [2; 64] }).unwrap());
        assert_eq!(tickets.held(&bob).unwrap(), Some(first));
        let later = HeldTicket { not_after_ms: 200, signature: [3; 64] };
        assert!(tickets.keep(&bob, &later).unwrap());
        assert_eq!(tickets.held(&bob).unwrap(), Some(later));

        assert_eq!(tickets.given_until(&bob).unwrap(), None);
        tickets.note_given(&bob, 500).unwrap();
        assert_eq!(tickets.given_until(&bob).unwrap(), Some(500));
        assert_eq!(tickets.given_until(&carol).unwrap(), None, "per peer");
        tickets.forget(&bob).unwrap();
        assert_eq!((tickets.held(&bob).unwrap(), tickets.given_until(&bob).unwrap()), (None, None));
    }
}
