//! Contacts, keyed by peer id (its base58 text), with every contact also kept
//! decoded in memory ([`ContactCache`]).

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, PoisonError};

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::{StoreError, db};
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

/// Every contact of the table, decoded, loaded at open and changed with the table
/// under one lock. Contacts are read for every message sent and every batch
/// received, and sent to by name (a scan); decoding them from sled each time was a
/// tenth of a node's CPU under load. They are few (hundreds), so holding them costs
/// little.
///
/// A record that does not decode stays an error for whoever reads it, as it was
/// when every read decoded (until it is written again or removed).
#[derive(Debug, Default)]
pub(crate) struct ContactCache {
    contacts: HashMap<PeerId, Contact>,
    /// State changes so far (see [`Contacts::state_changes`]).
    changes: u64,
    /// Table keys whose record does not decode, with why.
    broken: HashMap<Vec<u8>, String>,
}

impl ContactCache {
    /// Decodes every record of `tree`.
    pub(crate) fn load(tree: &sled::Tree) -> Result<ContactCache, StoreError> {
        let mut cache = ContactCache::default();
        for entry in tree.iter() {
            let (key, value) = entry.map_err(db)?;
            match decode::<Contact>(CONTACTS, &value) {
                Ok(contact) => {
                    cache.contacts.insert(contact.peer_id, contact);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a contact record does not decode");
                    cache.broken.insert(key.to_vec(), e.to_string());
                }
            }
        }
        Ok(cache)
    }

    fn check(&self, peer_id: &PeerId) -> Result<(), StoreError> {
        if self.broken.is_empty() {
            return Ok(());
        }
        match self.broken.get(peer_id.to_base58().as_bytes()) {
            Some(detail) => Err(StoreError::corrupt(CONTACTS, detail)),
            None => Ok(()),
        }
    }

    fn check_all(&self) -> Result<(), StoreError> {
        match self.broken.values().next() {
            Some(detail) => Err(StoreError::corrupt(CONTACTS, detail)),
            None => Ok(()),
        }
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

    /// The cache, locked. Writers hold it across their sled write, so the cache
    /// and the table change in the same order.
    fn cache(&self) -> MutexGuard<'_, ContactCache> {
        // Changed only after its sled write succeeded, so a panic leaves it matching.
        self.inner.contacts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The contact with this peer id, if any.
    pub fn get(&self, peer_id: &PeerId) -> Result<Option<Contact>, StoreError> {
        let cache = self.cache();
        cache.check(peer_id)?;
        Ok(cache.contacts.get(peer_id).cloned())
    }

    /// Whether `peer_id` is a contact we blocked.
    pub fn is_blocked(&self, peer_id: &PeerId) -> Result<bool, StoreError> {
        Ok(self.get(peer_id)?.is_some_and(|c| c.state == ContactState::Blocked))
    }

    /// Inserts or replaces the contact keyed by its `peer_id`. Not flushed.
    pub fn put(&self, contact: &Contact) -> Result<(), StoreError> {
        let mut cache = self.cache();
        let key = contact.peer_id.to_base58();
        self.tree().insert(key.as_bytes(), encode(contact)?).map_err(db)?;
        cache.broken.remove(key.as_bytes());
        if let Some(old) = cache.contacts.insert(contact.peer_id, contact.clone())
            && old.state == contact.state
        {
            return Ok(());
        }
        cache.changes += 1;
        Ok(())
    }

    /// Deletes a contact; returns whether it existed. Not flushed.
    pub fn remove(&self, peer_id: &PeerId) -> Result<bool, StoreError> {
        // Their profile goes with them.
        crate::profiles::Profiles { inner: self.inner.clone() }.remove(peer_id)?;
        let mut cache = self.cache();
        let key = peer_id.to_base58();
        let existed = self.tree().remove(key.as_bytes()).map_err(db)?.is_some();
        cache.broken.remove(key.as_bytes());
        cache.contacts.remove(peer_id);
        cache.changes += 1;
        Ok(existed)
    }

    /// A count that moves whenever a contact is added, removed or changes state
    /// through this store (since it was opened): the same count twice means no one
    /// became or stopped being a contact in between, known without looking at any.
    /// Other changes (names, addresses, last seen) do not move it.
    pub fn state_changes(&self) -> u64 {
        self.cache().changes
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
        self.matching(|_| true)
    }

    /// The contacts for which `keep` is true, in no particular order: a scan of
    /// memory that copies only those.
    pub fn matching(&self, keep: impl Fn(&Contact) -> bool) -> Result<Vec<Contact>, StoreError> {
        let cache = self.cache();
        cache.check_all()?;
        Ok(cache.contacts.values().filter(|c| keep(c)).cloned().collect())
    }

    /// How many contacts are in `state` (a scan of memory: O(contacts)).
    pub fn count(&self, state: ContactState) -> Result<usize, StoreError> {
        let cache = self.cache();
        cache.check_all()?;
        Ok(cache.contacts.values().filter(|c| c.state == state).count())
    }

    /// Atomically changes a contact's state and returns the updated contact
    /// (`updated_at_ms` is left to callers, who know the time; use
    /// [`put`](Self::put) to change it). [`StoreError::NotFound`] if unknown.
    /// Not flushed.
    pub fn set_state(&self, peer_id: &PeerId, state: ContactState) -> Result<Contact, StoreError> {
        // Atomic: every writer holds the cache's lock across its sled write.
        let mut cache = self.cache();
        cache.check(peer_id)?;
        let Some(mut contact) = cache.contacts.get(peer_id).cloned() else {
            return Err(StoreError::not_found("contact", peer_id.to_base58()));
        };
        let moved = contact.state != state;
        contact.state = state;
        self.tree().insert(peer_id.to_base58().as_bytes(), encode(&contact)?).map_err(db)?;
        cache.contacts.insert(*peer_id, contact.clone());
        cache.changes += u64::from(moved);
        Ok(contact)
    }
}

