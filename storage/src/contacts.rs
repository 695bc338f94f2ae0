//! Contacts, keyed by peer id (its base58 text).

use std::sync::Arc;

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::{StoreError, db, tx};
use crate::schema::CONTACTS;
use crate::store::Inner;

/// Where a contact relationship stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// We sent a contact request; no answer yet.
    PendingOut,
    /// They sent us a contact request; we have not answered.
    PendingIn,
    /// Mutual contacts.
    Accepted,
    /// Blocked: their messages never reach the conversation list.
    Blocked,
    /// Not a contact: a fellow member of one of our groups, known only so that
    /// group keys and membership changes reach them end to end. Hidden from
    /// contact lists; a direct message from them is a contact request.
    Member,
}

/// Someone we know (or who asked to know us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their peer id; its base58 text is the key of the table.
    #[serde(with = "crate::peer::peer_text")]
    pub peer_id: PeerId,
    /// Our local name for them.
    pub alias: Option<String>,
    /// The name they announced.
    pub display_name: Option<String>,
    /// Relationship state.
    pub state: ContactState,
    /// Their X25519 end-to-end public key, if known.
    pub e2e_public: Option<[u8; 32]>,
    /// Signature binding `e2e_public` to their identity (opaque here).
    pub binding: Option<Vec<u8>>,
    /// Known addresses.
    #[serde(with = "crate::peer::addr_texts")]
    pub addrs: Vec<Multiaddr>,
    /// Their pinned relays' addresses.
    #[serde(with = "crate::peer::addr_texts")]
    pub relays: Vec<Multiaddr>,
    /// When the contact was added, in ms since the Unix epoch.
    pub added_at_ms: u64,
    /// When the contact last changed, in ms.
    pub updated_at_ms: u64,
    /// When its node was last seen online (its presence), in ms; kept so that "last
    /// seen" survives a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// When the user marked the contact verified (compared safety numbers), in ms;
    /// `None`: not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at_ms: Option<u64>,
    /// When the contact's end-to-end key last changed to one we had not seen, in ms,
    /// until the user verifies it again; `None`: no change since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_changed_at_ms: Option<u64>,
}

impl Contact {
    /// Whether messages to it are held: it was verified and its key changed since,
    /// so nothing goes out until the user verifies it again.
    pub fn held(&self) -> bool {
        self.verified_at_ms.is_some() && self.key_changed_at_ms.is_some()
    }

    /// The name to show and sort by: the alias, else the peer id.
    pub fn sort_name(&self) -> String {
        self.alias.clone().unwrap_or_else(|| self.peer_id.to_base58())
    }

    /// The key [`Contacts::list`] sorts by: the sort name case-insensitively,
    /// then the peer id.
    pub fn list_order(&self) -> (String, String) {
        (self.sort_name().to_lowercase(), self.peer_id.to_base58())
    }
}

/// Handle to the contacts table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Contacts {
    pub(crate) inner: Arc<Inner>,
}

impl Contacts {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.contacts
    }

    /// The contact with this peer id, if any.
    pub fn get(&self, peer_id: &PeerId) -> Result<Option<Contact>, StoreError> {
        match self.tree().get(peer_id.to_base58()).map_err(db)? {
            Some(v) => decode(CONTACTS, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `peer_id` is a contact we blocked.
    pub fn is_blocked(&self, peer_id: &PeerId) -> Result<bool, StoreError> {
        Ok(self.get(peer_id)?.is_some_and(|c| c.state == ContactState::Blocked))
    }

    /// Inserts or replaces the contact keyed by its `peer_id`. Not flushed.
    pub fn put(&self, contact: &Contact) -> Result<(), StoreError> {
        self.tree()
            .insert(contact.peer_id.to_base58(), encode(contact)?)
            .map_err(db)?;
        Ok(())
    }

    /// Deletes a contact; returns whether it existed. Not flushed.
    pub fn remove(&self, peer_id: &PeerId) -> Result<bool, StoreError> {
        // Their profile goes with them.
        crate::profiles::Profiles { inner: self.inner.clone() }.remove(peer_id)?;
        Ok(self.tree().remove(peer_id.to_base58()).map_err(db)?.is_some())
    }

    /// All contacts sorted by [`Contact::sort_name`] (case-insensitively,
    /// then by peer id).
    pub fn list(&self) -> Result<Vec<Contact>, StoreError> {
        let mut all = self.unsorted()?;
        all.sort_by_cached_key(Contact::list_order);
        Ok(all)
    }

    /// All contacts in no particular order: [`list`](Self::list) without its
    /// sort, which encodes every peer id in base58 (for lookups that need no order).
    pub fn unsorted(&self) -> Result<Vec<Contact>, StoreError> {
        self.tree().iter().values().map(|v| decode::<Contact>(CONTACTS, &v.map_err(db)?)).collect()
    }

    /// How many contacts are in `state` (a scan: O(contacts)).
    pub fn count(&self, state: ContactState) -> Result<usize, StoreError> {
        let mut n = 0;
        for v in self.tree().iter().values() {
            if decode::<Contact>(CONTACTS, &v.map_err(db)?)?.state == state {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Atomically changes a contact's state and returns the updated contact
    /// (`updated_at_ms` is left to callers, who know the time; use
    /// [`put`](Self::put) to change it). [`StoreError::NotFound`] if unknown.
    /// Not flushed.
    pub fn set_state(&self, peer_id: &PeerId, state: ContactState) -> Result<Contact, StoreError> {
        use sled::transaction::ConflictableTransactionError::Abort;
        let key = peer_id.to_base58();
        tx(self.tree().transaction(|t| {
            let Some(v) = t.get(&key)? else {
                return Err(Abort(StoreError::not_found("contact", &key)));
            };
            let mut contact: Contact = decode(CONTACTS, &v).map_err(Abort)?;
            contact.state = state;
            t.insert(key.as_str(), encode(&contact).map_err(Abort)?)?;
            Ok(contact)
        }))
    }
}
