//! Payloads already sealed in a contact's ratchet, kept for the entries they were
//! sealed for until those leave both the outbox queues and the set of staged sends
//! (see `Actor::ratchet_cached` and `Actor::preseal`).
//!
//! A contact's cache holds at most [`SealCaches::new`]'s `per_contact` payloads.
//! When it is full, room is made by letting go of payloads whose entries have left
//! (delivered, dropped, a failed flush). Behind a long queue nothing has left, and
//! every message sealed at dispatch would look at the whole cache again for
//! nothing; so a full cache is swept again only after some entry has left since
//! its last sweep. The caller counts those departures.

use std::collections::HashMap;

use kith_storage::MessageId;
use libp2p::PeerId;

/// One contact's sealed payloads.
#[derive(Debug, Default)]
struct Cache {
    sealed: HashMap<MessageId, Vec<u8>>,
    /// The departure count at a sweep that left this cache full: the next sweep
    /// would free nothing until the count moves.
    full_at: Option<u64>,
}

/// Every contact's sealed payloads.
#[derive(Debug)]
pub(crate) struct SealCaches {
    caches: HashMap<PeerId, Cache>,
    per_contact: usize,
}

impl SealCaches {
    /// Empty caches holding at most `per_contact` payloads each.
    pub(crate) fn new(per_contact: usize) -> SealCaches {
        SealCaches { caches: HashMap::new(), per_contact }
    }

    /// The payload sealed for `peer`'s entry `id`, if kept.
    pub(crate) fn get(&self, peer: &PeerId, id: &MessageId) -> Option<&Vec<u8>> {
        self.caches.get(peer)?.sealed.get(id)
    }

    /// Whether a payload sealed for `peer`'s entry `id` is kept.
    pub(crate) fn contains(&self, peer: &PeerId, id: &MessageId) -> bool {
        self.caches.get(peer).is_some_and(|c| c.sealed.contains_key(id))
    }

    /// Whether a payload is kept for an entry of `peer`'s, as a test of entry ids
    /// (one look-up of the contact for many entries).
    pub(crate) fn held_for(&self, peer: &PeerId) -> impl Fn(&MessageId) -> bool + '_ {
        let cache = self.caches.get(peer);
        move |id| cache.is_some_and(|c| c.sealed.contains_key(id))
    }

    /// Whether `peer`'s cache can take one more payload. A full cache first lets go
    /// of the payloads whose entries `wanted` no longer picks, but only if
    /// `departures` (how many entries have ever left the queues or the staged
    /// sends) moved since the sweep that last left it full.
    pub(crate) fn room(&mut self, peer: &PeerId, departures: u64, wanted: impl Fn(&MessageId) -> bool) -> bool {
        let Some(cache) = self.caches.get_mut(peer) else { return true };
        if cache.sealed.len() < self.per_contact {
            return true;
        }
        if cache.full_at == Some(departures) {
            return false;
        }
        cache.sealed.retain(|id, _| wanted(id));
        let room = cache.sealed.len() < self.per_contact;
        cache.full_at = if room { None } else { Some(departures) };
        room
    }

    /// Keeps `sealed` for `peer`'s entry `id` (the caller checked [`SealCaches::room`]).
    pub(crate) fn insert(&mut self, peer: PeerId, id: MessageId, sealed: Vec<u8>) {
        self.caches.entry(peer).or_default().sealed.insert(id, sealed);
    }

    /// Lets go of the payload sealed for `peer`'s entry `id`.
    pub(crate) fn remove(&mut self, peer: &PeerId, id: &MessageId) {
        if let Some(cache) = self.caches.get_mut(peer) {
            cache.sealed.remove(id);
            cache.full_at = None;
        }
    }

    /// Lets go of everything sealed for `peer`; whether anything was kept.
    pub(crate) fn forget(&mut self, peer: &PeerId) -> bool {
        self.caches.remove(peer).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 16])
    }

    #[test]
    fn a_full_cache_is_swept_again_only_after_an_entry_left() {
        let peer = PeerId::random();
        let mut caches = SealCaches::new(2);
        caches.insert(peer, id(1), vec![1]);
        caches.insert(peer, id(2), vec![2]);
        let looked = Cell::new(0);
        let still_queued = |_: &MessageId| {
            looked.set(looked.get() + 1);
            true
        };
        // Full, and both entries still queued: no room, after one sweep.
        assert!(!caches.room(&peer, 7, still_queued));
        assert_eq!(looked.get(), 2);
        // Nothing left since: no second sweep, still no room.
        assert!(!caches.room(&peer, 7, still_queued));
        assert!(!caches.room(&peer, 7, still_queued));
        assert_eq!(looked.get(), 2);
        // Entry 1 was delivered (a departure): the sweep frees its place.
        assert!(caches.room(&peer, 8, |m| *m != id(1)));
        assert!(!caches.contains(&peer, &id(1)));
        assert_eq!(caches.get(&peer, &id(2)), Some(&vec![2]));
    }

    #[test]
    fn a_payload_let_go_makes_room_without_a_sweep() {
        let peer = PeerId::random();
        let mut caches = SealCaches::new(1);
        caches.insert(peer, id(1), vec![1]);
        assert!(!caches.room(&peer, 0, |_| true));
        caches.remove(&peer, &id(1));
        assert!(caches.room(&peer, 0, |_| panic!("no sweep needed")));
        caches.insert(peer, id(2), vec![2]);
        assert!(caches.contains(&peer, &id(2)));
        {
            let held = caches.held_for(&peer);
            assert!(held(&id(2)) && !held(&id(1)));
        }
        assert!(caches.forget(&peer));
        assert!(!caches.contains(&peer, &id(2)));
        assert!(caches.room(&peer, 0, |_| panic!("nothing kept")));
    }
}
