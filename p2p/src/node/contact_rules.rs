//! The rules of adding a contact, apart from the swarm and the store: the record an
//! invite or a bare peer id makes of what we knew of that peer, and whether a
//! contact request goes out. The actor reads the record, asks these, and stores,
//! queues and dials as they say.

use kith_storage::{Contact, ContactState, PeerId};

use super::NodeError;
use crate::identity::KeyUpdate;
use crate::invite::Invite;
use crate::ops;

/// What adding a peer by its id does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Adding {
    /// They asked first: adding them back accepts their request.
    Accept(Contact),
    /// Store the record and send them a contact request: someone new, someone who
    /// has not answered ours yet, or a fellow group member we never added.
    Request(Contact),
    /// Store the record (a new alias) and send nothing: already a contact, or
    /// blocked (unblocking is a step of its own).
    Store(Contact),
}

impl Adding {
    /// The record to store.
    pub(crate) fn contact(&self) -> &Contact {
        match self {
            Adding::Accept(c) | Adding::Request(c) | Adding::Store(c) => c,
        }
    }
}

/// What adding `peer` (with an optional `alias`) by its id does, given the record we
/// hold for it. Everything we knew (keys, addresses, verification) is kept; a new
/// alias replaces the old one.
pub(crate) fn add_by_peer_id(existing: Option<Contact>, peer: PeerId, alias: Option<String>, now_ms: u64) -> Adding {
    let Some(mut contact) = existing else {
        let contact = ops::new_contact(&peer, ContactState::PendingOut);
        return Adding::Request(Contact { alias, added_at_ms: now_ms, updated_at_ms: now_ms, ..contact });
    };
    if alias.is_some() {
        contact.alias = alias;
    }
    match contact.state {
        ContactState::PendingIn => Adding::Accept(contact),
        ContactState::PendingOut => Adding::Request(contact),
        ContactState::Member => {
            // Known through a group only: adding them asks them, as for anyone new.
            contact.state = ContactState::PendingOut;
            contact.updated_at_ms = now_ms;
            Adding::Request(contact)
        }
        ContactState::Accepted | ContactState::Blocked => Adding::Store(contact),
    }
}

/// Whether a contact request from a peer of whom we hold `existing` is a new one,
/// bounded by the strangers' quota (`MAX_PENDING_REQUESTS`): from someone we do not
/// know, or from a fellow group member, which it makes a pending request like
/// anyone's (a group's admin could otherwise add members only to fill our requests).
pub(crate) fn is_new_request(existing: Option<&Contact>) -> bool {
    existing.is_none_or(|c| c.state == ContactState::Member)
}

/// The record an invite makes, given the one we hold for its maker: the invite's
/// name, addresses and relays, our alias (or the new one) and verification kept,
/// and its key taken by the rules of [`ops::take_key`] (another key than ours is
/// marked as a change). Accepted only if we already were contacts: otherwise the
/// maker accepts by answering the request (its token may be spent or expired).
/// An invite with an older or expired key than the one we hold is refused.
pub(crate) fn from_invite(
    existing: Option<&Contact>,
    invite: &Invite,
    alias: Option<String>,
    now_ms: u64,
) -> Result<Contact, NodeError> {
    let known = existing.cloned().unwrap_or_else(|| Contact {
        added_at_ms: now_ms,
        ..ops::new_contact(&invite.peer_id, ContactState::PendingOut)
    });
    let state = match known.state {
        ContactState::Accepted => ContactState::Accepted,
        _ => ContactState::PendingOut,
    };
    let mut contact = Contact {
        alias: alias.or_else(|| known.alias.clone()),
        display_name: invite.name.clone(),
        state,
        addrs: invite.addrs.clone(),
        relays: invite.relays.clone(),
        updated_at_ms: now_ms,
        ..known
    };
    match ops::take_key(&mut contact, invite.e2e_public, &invite.binding, now_ms) {
        KeyUpdate::Stale | KeyUpdate::Expired => Err(NodeError::BadTarget(
            "this invite carries an older or expired key than the one known for this contact; ask for a new invite".into(),
        )),
        _ => Ok(contact),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use libp2p::Multiaddr;

    use super::*;
    use crate::identity::{Binding, Identity};
    use crate::node::test_support::accepted_contact;

    const NOW: u64 = 1_800_000_000_000;

    fn peer() -> PeerId {
        Identity::from_secrets([7; 32], [8; 32]).peer_id()
    }

    fn in_state(state: ContactState) -> Contact {
        let mut c = accepted_contact(peer());
        (c.state, c.alias, c.added_at_ms, c.e2e_public) = (state, Some("ann".into()), 5, Some([3; 32]));
        c
    }

    /// A binding of version `version` that expires long after [`NOW`].
    fn binding(version: u64) -> Binding {
        Binding::from_parts([1; 64], version, NOW + 3_600_000, &[2; 64])
    }

    fn invite(key: [u8; 32], binding: Binding) -> Invite {
        Invite {
            peer_id: peer(),
            e2e_public: key,
            binding,
            name: Some("Ann".into()),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()],
            relays: Vec::new(),
            token: Some([9; 16]),
        }
    }

    #[test]
    fn someone_new_is_asked_and_so_is_someone_who_has_not_answered() {
        match add_by_peer_id(None, peer(), Some("ann".into()), NOW) {
            Adding::Request(c) => {
                assert_eq!((c.state, c.alias.as_deref(), c.added_at_ms), (ContactState::PendingOut, Some("ann"), NOW));
                assert_eq!(c.e2e_public, None, "its key is looked up");
            }
            other => panic!("{other:?}"),
        }
        let again = add_by_peer_id(Some(in_state(ContactState::PendingOut)), peer(), None, NOW);
        assert!(matches!(&again, Adding::Request(c) if c.alias.as_deref() == Some("ann") && c.added_at_ms == 5));
    }

    #[test]
    fn adding_someone_who_asked_first_accepts_them_with_the_new_alias() {
        let adding = add_by_peer_id(Some(in_state(ContactState::PendingIn)), peer(), Some("annie".into()), NOW);
        assert!(matches!(&adding, Adding::Accept(c) if c.alias.as_deref() == Some("annie") && c.e2e_public == Some([3; 32])));
    }

    #[test]
    fn a_fellow_group_member_added_by_id_is_asked_to_become_a_contact() {
        let adding = add_by_peer_id(Some(in_state(ContactState::Member)), peer(), None, NOW);
        match adding {
            Adding::Request(c) => {
                assert_eq!(c.state, ContactState::PendingOut, "no longer hidden as a mere member");
                assert_eq!(c.e2e_public, Some([3; 32]), "the key their card vouched for is kept");
                assert_eq!((c.alias.as_deref(), c.added_at_ms, c.updated_at_ms), (Some("ann"), 5, NOW));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_from_a_stranger_or_a_fellow_member_counts_against_the_quota() {
        assert!(is_new_request(None));
        assert!(is_new_request(Some(&in_state(ContactState::Member))), "a member's request fills a slot too");
        for state in [ContactState::PendingIn, ContactState::PendingOut, ContactState::Accepted, ContactState::Blocked] {
            assert!(!is_new_request(Some(&in_state(state))), "{state:?}");
        }
    }

    #[test]
    fn a_contact_or_a_blocked_peer_only_takes_the_new_alias() {
        for state in [ContactState::Accepted, ContactState::Blocked] {
            let adding = add_by_peer_id(Some(in_state(state)), peer(), Some("annie".into()), NOW);
            assert!(
                matches!(&adding, Adding::Store(c) if c.state == state && c.alias.as_deref() == Some("annie")),
                "{state:?}: {adding:?}"
            );
        }
    }

    #[test]
    fn an_invite_asks_unless_we_are_contacts_and_keeps_what_we_knew() {
        let fresh = from_invite(None, &invite([4; 32], binding(10)), None, NOW).unwrap();
        assert_eq!((fresh.state, fresh.e2e_public, fresh.added_at_ms), (ContactState::PendingOut, Some([4; 32]), NOW));
        assert_eq!(fresh.display_name.as_deref(), Some("Ann"));
        assert_eq!(fresh.addrs.len(), 1);
        // Someone who asked us, or a group member, is asked back: only their answer accepts.
        for state in [ContactState::PendingIn, ContactState::Member, ContactState::Blocked] {
            let c = from_invite(Some(&in_state(state)), &invite([3; 32], binding(10)), None, NOW).unwrap();
            assert_eq!(c.state, ContactState::PendingOut, "{state:?}");
        }
        let mut known = in_state(ContactState::Accepted);
        known.verified_at_ms = Some(42);
        let c = from_invite(Some(&known), &invite([3; 32], binding(10)), None, NOW).unwrap();
        assert_eq!(c.state, ContactState::Accepted);
        assert_eq!((c.alias.as_deref(), c.added_at_ms, c.verified_at_ms), (Some("ann"), 5, Some(42)));
        assert_eq!(c.key_changed_at_ms, None, "the same key is no change");
    }

    #[test]
    fn an_invite_with_another_key_is_a_key_change_and_an_older_or_expired_one_is_refused() {
        let mut known = in_state(ContactState::Accepted);
        known.binding = Some(binding(10).to_bytes());
        let changed = from_invite(Some(&known), &invite([4; 32], binding(11)), None, NOW).unwrap();
        assert_eq!((changed.e2e_public, changed.key_changed_at_ms), (Some([4; 32]), Some(NOW)));
        let older = from_invite(Some(&known), &invite([4; 32], binding(9)), None, NOW);
        assert!(matches!(older, Err(NodeError::BadTarget(_))), "{older:?}");
        // Past its expiry by more than the clock skew allowed.
        let expired = Binding::from_parts([1; 64], 12, NOW - crate::identity::CLOCK_SKEW_MS - 1, &[2; 64]);
        assert!(matches!(from_invite(Some(&known), &invite([4; 32], expired), None, NOW), Err(NodeError::BadTarget(_))));
        assert!(matches!(from_invite(None, &invite([4; 32], expired), None, NOW), Err(NodeError::BadTarget(_))));
    }
}
