//! What the node's unit tests share.

use kith_storage::{Contact, ContactState, PeerId};

/// An accepted contact `peer`, with no key, address or relay known yet.
pub(crate) fn accepted_contact(peer: PeerId) -> Contact {
    Contact {
        peer_id: peer,
        alias: None,
        display_name: None,
        state: ContactState::Accepted,
        e2e_public: None,
        binding: None,
        addrs: Vec::new(),
        relays: Vec::new(),
        added_at_ms: 0,
        updated_at_ms: 0,
        last_seen_ms: None,
        verified_at_ms: None,
        key_changed_at_ms: None,
    }
}
