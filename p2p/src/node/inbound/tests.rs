//! Contact requests applied to a real store, without a network: sealed envelopes in,
//! results, records and events out.

use super::*;
use crate::envelope::{Sealer, SealerConfig};
use crate::identity::Identity;
use crate::ratchet::LEGACY_GRACE;
use crate::requests::MAX_PENDING_REQUESTS;

/// Our node's side: its store and keys.
struct Receiver {
    _dir: tempfile::TempDir,
    store: Store,
    me: Identity,
    opener: Opener,
    ratchets: Ratchets,
}

impl Receiver {
    fn new() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let me = Identity::from_secrets([1; 32], [2; 32]);
        let opener = Opener::new(&me, 4);
        let ratchets = Ratchets::load(store.ratchet(), &me, ops::now_ms()).unwrap();
        Receiver { _dir: dir, store, me, opener, ratchets }
    }

    /// Applies one batch as a direct delivery.
    fn apply(&mut self, envelopes: &[Vec<u8>]) -> (Vec<DmResult>, Outcome) {
        Inbound {
            store: &self.store,
            me: self.me.peer_id(),
            my_name: None,
            opener: &mut self.opener,
            ratchets: &mut self.ratchets,
            legacy_grace: LEGACY_GRACE,
            tally: Tally::default(),
            from_relay: false,
        }
        .apply(envelopes)
    }

    /// A bare contact request from `sender`, sealed to us.
    fn request_from(&self, sender: &Identity) -> Vec<u8> {
        let request = Payload::ContactRequest { name: None, addrs: Vec::new(), token: None, relays: Vec::new(), keys: None };
        let mut sealer = Sealer::new(sender, SealerConfig::default());
        sealer.seal(&self.me.public().e2e_public, &request.encode().unwrap()).unwrap()
    }

    /// Records `sender` in `state`, with the key its envelopes carry (as a group
    /// member's card gives it).
    fn knows(&self, sender: &Identity, state: ContactState) {
        let public = sender.public();
        let contact = Contact {
            e2e_public: Some(public.e2e_public),
            binding: Some(public.binding.to_bytes()),
            ..ops::new_contact(&public.peer_id, state)
        };
        self.store.contacts().put(&contact).unwrap();
    }

    /// Fills the strangers' requests up to `count` waiting.
    fn pending_requests(&self, count: usize) {
        for i in 0..count {
            let mut seed = [3; 32];
            seed[..2].copy_from_slice(&(i as u16).to_be_bytes());
            let peer = Identity::from_secrets(seed, [3; 32]).peer_id();
            self.store.contacts().put(&ops::new_contact(&peer, ContactState::PendingIn)).unwrap();
        }
    }

    fn state_of(&self, peer: &PeerId) -> Option<ContactState> {
        self.store.contacts().get(peer).unwrap().map(|c| c.state)
    }
}

fn someone(n: u8) -> Identity {
    Identity::from_secrets([200 + n; 32], [210 + n; 32])
}

#[test]
fn a_fellow_members_request_becomes_a_pending_request_the_user_answers() {
    let mut node = Receiver::new();
    let member = someone(0);
    node.knows(&member, ContactState::Member);
    let (results, outcome) = node.apply(&[node.request_from(&member)]);
    assert_eq!(results, vec![DmResult::Stored]);
    assert_eq!(node.state_of(&member.peer_id()), Some(ContactState::PendingIn), "no longer a hidden member");
    assert!(
        outcome.events.iter().any(|e| matches!(e, Event::ContactRequest { contact } if contact.peer_id == member.peer_id().to_base58())),
        "the user is told"
    );
    assert!(!outcome.queued, "nothing is answered before the user accepts");
}

#[test]
fn a_fellow_members_request_is_refused_like_a_strangers_once_the_requests_are_full() {
    let mut node = Receiver::new();
    node.pending_requests(MAX_PENDING_REQUESTS);
    let (member, stranger, contact) = (someone(0), someone(1), someone(2));
    node.knows(&member, ContactState::Member);
    node.knows(&contact, ContactState::Accepted);
    let envelopes = [node.request_from(&member), node.request_from(&stranger), node.request_from(&contact)];
    let (results, _) = node.apply(&envelopes);
    let quota = DmResult::Rejected(RejectReason::Quota);
    assert_eq!(results, vec![quota, quota, DmResult::Stored], "a contact's request is no new request");
    assert_eq!(node.state_of(&member.peer_id()), Some(ContactState::Member), "refused: nothing changed");
    assert_eq!(node.state_of(&stranger.peer_id()), None);
    // One slot free: the member's request takes it.
    let freed = node.store.contacts().list().unwrap().into_iter().find(|c| c.state == ContactState::PendingIn).unwrap();
    node.store.contacts().remove(&freed.peer_id).unwrap();
    let (results, _) = node.apply(&[node.request_from(&member)]);
    assert_eq!(results, vec![DmResult::Stored]);
    assert_eq!(node.state_of(&member.peer_id()), Some(ContactState::PendingIn));
}
