//! Envelopes applied to a real store, without a network: sealed envelopes in, results,
//! records and events out.

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
    /// Whether batches come drained from a relay rather than from their sender.
    from_relay: bool,
}

impl Receiver {
    fn new() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let me = Identity::from_secrets([1; 32], [2; 32]);
        let opener = Opener::new(&me, 4);
        let ratchets = Ratchets::load(store.ratchet(), &me, ops::now_ms()).unwrap();
        Receiver { _dir: dir, store, me, opener, ratchets, from_relay: false }
    }

    /// Applies one batch, as a direct delivery or a drained page (`from_relay`).
    fn apply(&mut self, envelopes: &[Vec<u8>]) -> (Vec<DmResult>, Outcome) {
        Inbound {
            store: &self.store,
            me: self.me.peer_id(),
            my_name: None,
            opener: &mut self.opener,
            ratchets: &mut self.ratchets,
            legacy_grace: LEGACY_GRACE,
            tally: Tally::default(),
            from_relay: self.from_relay,
        }
        .apply(envelopes)
    }

    /// `payload` from `sender`, sealed to us.
    fn sealed_from(&self, sender: &Identity, payload: &Payload) -> Vec<u8> {
        let mut sealer = Sealer::new(sender, SealerConfig::default());
        sealer.seal(&self.me.public().e2e_public, &payload.encode().unwrap()).unwrap()
    }

    /// A bare contact request from `sender`, sealed to us.
    fn request_from(&self, sender: &Identity) -> Vec<u8> {
        self.sealed_from(sender, &contact_request(None, Vec::new(), ops::issue_time_us()))
    }

    /// A text `n` from `sender` (its id follows from `n`), sealed to us.
    fn text_from(&self, sender: &Identity, n: u8) -> Vec<u8> {
        let text = Payload::Text {
            id: MessageId([n; 16]),
            lamport: u64::from(n) + 1,
            sent_at_ms: ops::now_ms(),
            text: format!("text {n}"),
            file: None,
            link: None,
        };
        self.sealed_from(sender, &text)
    }

    /// The texts stored in our conversation with `peer`.
    fn texts_with(&self, peer: &PeerId) -> Vec<String> {
        let conversation = ops::direct_conversation(&self.me.peer_id(), peer);
        match self.store.messages().page(conversation, None, 1000) {
            Ok(page) => page.into_iter().map(|m| m.text).collect(),
            Err(kith_storage::StoreError::NotFound { .. }) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
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

    fn record_of(&self, peer: &PeerId) -> Option<Contact> {
        self.store.contacts().get(peer).unwrap()
    }

    fn state_of(&self, peer: &PeerId) -> Option<ContactState> {
        self.record_of(peer).map(|c| c.state)
    }
}

/// A contact request with no addresses, token or keys, issued at `issued_us`.
fn contact_request(name: Option<&str>, relays: Vec<Vec<u8>>, issued_us: u64) -> Payload {
    Payload::ContactRequest { name: name.map(str::to_owned), addrs: Vec::new(), token: None, relays, keys: None, issued_us }
}

/// [`kith_storage::MAX_CLOCK_SKEW`] in µs: how far before our request an answer may
/// be dated and still count.
fn skew_us() -> u64 {
    u64::try_from(kith_storage::MAX_CLOCK_SKEW.as_micros()).unwrap()
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

#[test]
fn a_contacts_text_is_stored_once_however_often_it_comes() {
    let mut node = Receiver::new();
    let bob = someone(0);
    node.knows(&bob, ContactState::Accepted);
    let text = node.text_from(&bob, 1);
    // Twice in one batch, then again in a later one (a retry after a lost answer).
    let (results, outcome) = node.apply(&[text.clone(), text.clone()]);
    assert_eq!(results, vec![DmResult::Stored, DmResult::Stored]);
    assert_eq!(outcome.stored.len(), 1, "one new message");
    let (results, outcome) = node.apply(&[text]);
    assert_eq!(results, vec![DmResult::Stored], "a copy is answered as stored");
    assert!(outcome.stored.is_empty());
    assert_eq!(node.texts_with(&bob.peer_id()), ["text 1"]);
}

#[test]
fn a_blocked_senders_text_is_answered_but_never_stored() {
    let mut node = Receiver::new();
    let mallory = someone(0);
    node.knows(&mallory, ContactState::Blocked);
    let (results, outcome) = node.apply(&[node.text_from(&mallory, 1), node.request_from(&mallory)]);
    assert_eq!(results, vec![DmResult::Accepted, DmResult::Accepted], "its retries stop, it learns nothing");
    assert!(outcome.events.is_empty() && !outcome.queued);
    assert!(node.texts_with(&mallory.peer_id()).is_empty());
    assert_eq!(node.state_of(&mallory.peer_id()), Some(ContactState::Blocked));
}

#[test]
fn envelopes_for_someone_else_cut_short_or_garbage_are_refused_and_change_nothing() {
    let mut node = Receiver::new();
    let bob = someone(0);
    let for_someone_else = {
        let mut sealer = Sealer::new(&bob, SealerConfig::default());
        let request = contact_request(None, Vec::new(), ops::issue_time_us());
        sealer.seal(&someone(1).public().e2e_public, &request.encode().unwrap()).unwrap()
    };
    let mut cut = node.text_from(&bob, 1);
    cut.truncate(cut.len() / 2);
    let (results, outcome) = node.apply(&[for_someone_else, cut, vec![0xa5; 300], Vec::new()]);
    assert_eq!(results[0], DmResult::Rejected(RejectReason::Decrypt));
    assert!(results.iter().all(|r| matches!(r, DmResult::Rejected(_))), "{results:?}");
    assert!(outcome.events.is_empty() && !outcome.queued);
    assert_eq!(node.state_of(&bob.peer_id()), None, "no record of anyone");
    assert!(node.texts_with(&bob.peer_id()).is_empty());
}

#[test]
fn a_strangers_texts_are_held_as_a_request_up_to_its_bound() {
    let mut node = Receiver::new();
    let stranger = someone(0);
    let texts: Vec<Vec<u8>> = (0..=requests::MAX_HELD_MESSAGES as u8).map(|n| node.text_from(&stranger, n)).collect();
    let (results, outcome) = node.apply(&texts);
    let (last, held) = results.split_last().unwrap();
    assert!(held.iter().all(|r| *r == DmResult::Stored), "{held:?}");
    assert_eq!(*last, DmResult::Rejected(RejectReason::Quota), "one past the bound");
    assert_eq!(node.state_of(&stranger.peer_id()), Some(ContactState::PendingIn));
    assert_eq!(node.texts_with(&stranger.peer_id()).len(), requests::MAX_HELD_MESSAGES);
    assert!(outcome.events.iter().any(|e| matches!(e, Event::ContactRequest { .. })));
}

#[test]
fn a_contacts_newer_key_is_taken_and_shown_and_an_older_one_is_refused() {
    let mut node = Receiver::new();
    let expires = ops::now_ms() + 24 * 3600 * 1000;
    let bob = someone(0).with_e2e([50; 32], 10, expires);
    node.knows(&bob, ContactState::Accepted);
    // Bob rotated his end-to-end key: taken, marked changed, and the user told.
    let rotated = bob.with_e2e([51; 32], 11, expires);
    let (results, outcome) = node.apply(&[node.text_from(&rotated, 1)]);
    assert_eq!(results, vec![DmResult::Stored]);
    let record = node.record_of(&bob.peer_id()).unwrap();
    assert_eq!(record.e2e_public, Some(rotated.public().e2e_public));
    assert!(record.key_changed_at_ms.is_some());
    assert!(outcome.events.iter().any(|e| matches!(e, Event::KeyChanged { .. })));
    // A key bound before the one held (an old key, perhaps stolen) is refused, and
    // nothing it carried is stored.
    let old = bob.with_e2e([49; 32], 9, expires);
    let (results, outcome) = node.apply(&[node.text_from(&old, 2)]);
    assert_eq!(results, vec![DmResult::Rejected(RejectReason::Forged)]);
    assert!(outcome.events.is_empty());
    let record = node.record_of(&bob.peer_id()).unwrap();
    assert_eq!(record.e2e_public, Some(rotated.public().e2e_public), "the newer key stays");
    assert_eq!(node.texts_with(&bob.peer_id()), ["text 1"]);
}

#[test]
fn an_acceptance_from_a_fellow_member_we_did_not_ask_changes_nothing() {
    let mut node = Receiver::new();
    let member = someone(0);
    node.knows(&member, ContactState::Member);
    let accepted = node.sealed_from(&member, &Payload::ContactAccepted { name: Some("Mallory".into()), issued_us: ops::issue_time_us(), answers_us: 0 });
    let (results, outcome) = node.apply(&[accepted]);
    assert_eq!(results, vec![DmResult::Stored]);
    assert!(outcome.events.is_empty(), "no contact shows up");
    let record = node.record_of(&member.peer_id()).unwrap();
    assert_eq!((record.state, record.display_name), (ContactState::Member, None));
}

#[test]
fn a_ratchet_message_drained_twice_in_one_page_is_stored_once_and_its_copy_waits_at_the_relay() {
    let mut node = Receiver::new();
    let bob = someone(0);
    node.knows(&bob, ContactState::Accepted);
    // Bob holds a session with us, made from the keys we offered him.
    let bobs_dir = tempfile::tempdir().unwrap();
    let bobs_store = Store::open(&bobs_dir.path().join("db")).unwrap();
    let mut bobs_ratchets = Ratchets::load(bobs_store.ratchet(), &bob, ops::now_ms()).unwrap();
    let offer = node.ratchets.offer(&node.me, &bob.peer_id(), false).unwrap();
    node.ratchets.persist(ops::now_ms()).unwrap();
    bobs_ratchets.learn(&node.me.peer_id(), &offer).unwrap();
    let text = Payload::Text {
        id: MessageId([7; 16]),
        lamport: 1,
        sent_at_ms: ops::now_ms(),
        text: "sent twice".into(),
        file: None,
        link: None,
    };
    let (kind, body) = bobs_ratchets.seal(&node.me.peer_id(), &text.encode().unwrap()).unwrap().unwrap();
    let ratcheted = Payload::Ratcheted { kind, body };
    // A deposit that timed out after the relay took it, then the retry: each attempt
    // seals its envelope anew, so the relay holds two envelopes of one ratchet message.
    let first = node.sealed_from(&bob, &ratcheted);
    let second = node.sealed_from(&bob, &ratcheted);
    assert_ne!(first, second);
    node.from_relay = true;
    let (results, outcome) = node.apply(&[first, second.clone()]);
    assert_eq!(results[0], DmResult::Stored);
    assert_eq!(
        results[1],
        DmResult::Rejected(RejectReason::Unready),
        "the copy is not refused (its key is spent): it stays at the relay until its original is settled"
    );
    assert_eq!(outcome.stored.len(), 1);
    // What the actor does once the batch's results are final.
    for (_, digest, _) in outcome.ratcheted {
        node.ratchets.record(digest);
    }
    node.ratchets.persist(ops::now_ms()).unwrap();
    let (results, outcome) = node.apply(&[second]);
    assert_eq!(results, vec![DmResult::Stored], "the next drain finds it a copy, which the relay may drop");
    assert!(outcome.stored.is_empty());
    assert_eq!(node.texts_with(&bob.peer_id()), ["sent twice"]);
}

#[test]
fn a_receipt_moves_only_our_messages_to_its_sender_once_however_often_it_names_them() {
    let mut node = Receiver::new();
    let (bob, carol) = (someone(0), someone(1));
    node.knows(&bob, ContactState::Accepted);
    node.knows(&carol, ContactState::Accepted);
    let me = node.me.peer_id();
    let contact = |peer: &Identity| node.store.contacts().get(&peer.peer_id()).unwrap().unwrap();
    let mut lamports = HashMap::new();
    let (to_bob, bob_entry) = ops::compose_text(&node.store, &me, &contact(&bob), "to Bob", None, None, &mut lamports).unwrap();
    let (to_carol, carol_entry) =
        ops::compose_text(&node.store, &me, &contact(&carol), "to Carol", None, None, &mut lamports).unwrap();
    node.store.stage_outgoing(&[(&to_bob, &bob_entry), (&to_carol, &carol_entry)]).unwrap();
    let his = node.text_from(&bob, 9);
    node.apply(&[his]);

    // Bob names ours to him hundreds of times (each costs a look-up in memory, not a
    // read), ours to Carol, his own text and an id nobody wrote.
    let mut ids = vec![to_bob.id; 500];
    ids.extend([to_carol.id, MessageId([9; 16]), MessageId([77; 16])]);
    let receipt = node.sealed_from(&bob, &Payload::Receipt { kind: ReceiptKind::Delivered, ids });
    let (results, outcome) = node.apply(std::slice::from_ref(&receipt));
    assert_eq!(results, [DmResult::Stored]);
    let moved: Vec<(String, MessageState)> = outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::MessageStateChanged { id, state, .. } => Some((id.clone(), *state)),
            _ => None,
        })
        .collect();
    assert_eq!(moved, [(to_bob.id.to_string(), MessageState::Delivered)], "ours to Bob moved, once");
    let state_of = |id| node.store.messages().get_from(&me.to_string(), id).unwrap().unwrap().state;
    assert_eq!(state_of(to_bob.id), MessageState::Delivered);
    assert_eq!(state_of(to_carol.id), MessageState::Pending, "Bob cannot move what went to Carol");
    assert_eq!(node.texts_with(&bob.peer_id()), ["to Bob", "text 9"]);

    // The same receipt again moves nothing and tells no one.
    let (results, outcome) = node.apply(&[receipt]);
    assert_eq!(results, [DmResult::Stored]);
    assert!(!outcome.events.iter().any(|e| matches!(e, Event::MessageStateChanged { .. })), "{:?}", outcome.events);
}

#[test]
fn a_kept_copy_of_a_contact_request_or_acceptance_changes_nothing_when_it_comes_again() {
    let mut node = Receiver::new();
    let bob = someone(0);
    let me = node.me.peer_id();
    let request = |node: &Receiver, name: &str| node.sealed_from(&bob, &contact_request(Some(name), Vec::new(), ops::issue_time_us()));
    let name_of = |node: &Receiver| node.record_of(&bob.peer_id()).and_then(|c| c.display_name);

    // A request the user rejects does not come back from a kept copy, though its
    // sender may ask again.
    let first = request(&node, "Bob");
    assert_eq!(node.apply(std::slice::from_ref(&first)).0, [DmResult::Stored]);
    ops::reject(&node.store, &me, &node.record_of(&bob.peer_id()).unwrap()).unwrap();
    let (results, outcome) = node.apply(std::slice::from_ref(&first));
    assert_eq!(results, [DmResult::Stored], "a copy counts as taken: its holder may let go of it");
    assert!(outcome.events.is_empty() && !outcome.queued);
    assert_eq!(node.state_of(&bob.peer_id()), None, "the rejected request stays rejected");
    let second = request(&node, "Robert");
    assert_eq!(node.apply(std::slice::from_ref(&second)).0, [DmResult::Stored]);
    assert_eq!((node.state_of(&bob.peer_id()), name_of(&node)), (Some(ContactState::PendingIn), Some("Robert".into())));

    // An accepted contact's old request does not set its name back, nor queue
    // another acceptance.
    ops::accept(&node.store, &node.record_of(&bob.peer_id()).unwrap(), None).unwrap();
    assert_eq!(node.apply(&[request(&node, "Bobby")]).0, [DmResult::Stored]);
    assert_eq!(name_of(&node), Some("Bobby".into()));
    let (results, outcome) = node.apply(&[second]);
    assert_eq!(results, [DmResult::Stored]);
    assert!(outcome.events.is_empty() && !outcome.queued, "nothing queued for a copy");
    assert_eq!(name_of(&node), Some("Bobby".into()));

    // An acceptance kept from before we removed the contact does not accept our
    // new request; a new acceptance does.
    let carol = someone(1);
    let accepted = |node: &Receiver| {
        node.sealed_from(&carol, &Payload::ContactAccepted { name: Some("Carol".into()), issued_us: ops::issue_time_us(), answers_us: 0 })
    };
    node.knows(&carol, ContactState::PendingOut);
    let old = accepted(&node);
    assert_eq!(node.apply(std::slice::from_ref(&old)).0, [DmResult::Stored]);
    assert_eq!(node.state_of(&carol.peer_id()), Some(ContactState::Accepted));
    ops::remove(&node.store, &me, &node.record_of(&carol.peer_id()).unwrap()).unwrap();
    node.knows(&carol, ContactState::PendingOut);
    let (_, outcome) = node.apply(&[old]);
    assert!(outcome.events.is_empty());
    assert_eq!(node.state_of(&carol.peer_id()), Some(ContactState::PendingOut), "a copy accepts nothing");
    node.apply(&[accepted(&node)]);
    assert_eq!(node.state_of(&carol.peer_id()), Some(ContactState::Accepted));

    // An acceptance a relay held back and never delivered, of a request we made
    // before removing the contact, does not accept the request we made since; one
    // that answers it does.
    let erin = someone(3);
    let asked = |node: &Receiver| {
        let at = ops::issue_time_us();
        node.store.note_contact_payload(&erin.peer_id(), kith_storage::ContactPayload::Asked, at).unwrap();
        at
    };
    let accepting = |node: &Receiver, answers_us| {
        let payload = Payload::ContactAccepted { name: None, issued_us: ops::issue_time_us(), answers_us };
        node.sealed_from(&erin, &payload)
    };
    node.knows(&erin, ContactState::PendingOut);
    let first_request = asked(&node);
    let held_back = accepting(&node, first_request);
    ops::remove(&node.store, &me, &node.record_of(&erin.peer_id()).unwrap()).unwrap();
    node.knows(&erin, ContactState::PendingOut);
    let second_request = asked(&node);
    assert_eq!(node.apply(&[held_back]).0, [DmResult::Stored]);
    assert_eq!(node.state_of(&erin.peer_id()), Some(ContactState::PendingOut), "it answers an older request");
    node.apply(&[accepting(&node, second_request)]);
    assert_eq!(node.state_of(&erin.peer_id()), Some(ContactState::Accepted));

    // Nor does one from before the replay window, or from an older version (no time).
    let dave = someone(2);
    node.knows(&dave, ContactState::PendingOut);
    let window_us = u64::try_from(kith_storage::REPLAY_WINDOW.as_micros()).unwrap();
    for issued_us in [0, ops::issue_time_us() - window_us - 1_000_000] {
        let stale = node.sealed_from(&dave, &Payload::ContactAccepted { name: None, issued_us, answers_us: 0 });
        assert_eq!(node.apply(&[stale]).0, [DmResult::Rejected(RejectReason::Stale)]);
        assert_eq!(node.state_of(&dave.peer_id()), Some(ContactState::PendingOut));
    }
}

#[test]
fn a_request_issued_before_an_acceptance_that_overtook_it_is_still_taken_and_one_batch_takes_a_copy_once() {
    let mut node = Receiver::new();
    let bob = someone(0);
    // We asked Bob while he asked us: his request waits at a relay, his acceptance of
    // ours comes first, directly.
    node.knows(&bob, ContactState::PendingOut);
    let relay: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq".parse().unwrap();
    let request = node.sealed_from(&bob, &contact_request(Some("Bob"), vec![relay.to_vec()], ops::issue_time_us()));
    let accepted = node.sealed_from(&bob, &Payload::ContactAccepted { name: None, issued_us: ops::issue_time_us(), answers_us: 0 });
    assert_eq!(node.apply(&[accepted]).0, [DmResult::Stored]);
    assert_eq!(node.state_of(&bob.peer_id()), Some(ContactState::Accepted));
    assert_eq!(node.apply(&[request]).0, [DmResult::Stored]);
    assert_eq!(node.record_of(&bob.peer_id()).unwrap().relays, [relay], "the older request is taken: its relays count");

    // A stranger's request twice in one batch: one request shown.
    let carol = someone(1);
    let twice = node.request_from(&carol);
    let (results, outcome) = node.apply(&[twice.clone(), twice]);
    assert_eq!(results, [DmResult::Stored, DmResult::Stored]);
    let shown = outcome.events.iter().filter(|e| matches!(e, Event::ContactRequest { .. })).count();
    assert_eq!(shown, 1);
}

#[test]
fn an_acceptance_names_the_request_it_answers_whether_the_user_or_the_node_accepts() {
    let mut node = Receiver::new();
    let request = |node: &Receiver, from: &Identity, issued_us| node.sealed_from(from, &contact_request(None, Vec::new(), issued_us));
    let answered = |node: &Receiver, to: &Identity| -> Vec<u64> {
        let entries = node.store.outbox().list().unwrap();
        let answers = entries.iter().filter(|e| e.recipient == kith_storage::Recipient::Peer(to.peer_id()));
        answers
            .filter_map(|e| match Payload::decode(&e.payload).unwrap() {
                Payload::ContactAccepted { answers_us, .. } => Some(answers_us),
                _ => None,
            })
            .collect()
    };
    // The user accepts Bob's request: the acceptance names it.
    let bob = someone(0);
    let asked_at = ops::issue_time_us();
    node.apply(&[request(&node, &bob, asked_at)]);
    ops::accept(&node.store, &node.record_of(&bob.peer_id()).unwrap(), None).unwrap();
    assert_eq!(answered(&node, &bob), [asked_at]);
    // Carol and we add each other at once: the node answers her request itself.
    let carol = someone(1);
    node.knows(&carol, ContactState::PendingOut);
    let asked_at = ops::issue_time_us();
    node.apply(&[request(&node, &carol, asked_at)]);
    assert_eq!(answered(&node, &carol), [asked_at]);

    // An acceptance naming no request counts only if issued after our latest request
    // (give or take a day of clock skew).
    let dave = someone(2);
    node.knows(&dave, ContactState::PendingOut);
    let ours = ops::issue_time_us();
    node.store.note_contact_payload(&dave.peer_id(), kith_storage::ContactPayload::Asked, ours).unwrap();
    let unnamed = |node: &Receiver, issued_us| {
        node.sealed_from(&dave, &Payload::ContactAccepted { name: Some("Old Dave".into()), issued_us, answers_us: 0 })
    };
    let early = unnamed(&node, ours - skew_us() - 1_000_000);
    let (_, outcome) = node.apply(&[early]);
    assert_eq!(node.state_of(&dave.peer_id()), Some(ContactState::PendingOut), "issued well before our request");
    assert!(outcome.events.is_empty(), "nothing to tell: {:?}", outcome.events);
    assert_eq!(node.record_of(&dave.peer_id()).unwrap().display_name, None, "a stale acceptance renames no one");
    let late = unnamed(&node, ops::issue_time_us());
    node.apply(&[late]);
    assert_eq!(node.state_of(&dave.peer_id()), Some(ContactState::Accepted));
}

#[test]
fn a_request_issued_before_our_latest_request_to_its_sender_does_not_make_them_a_contact() {
    let mut node = Receiver::new();
    let bob = someone(0);
    // We asked Bob once, removed him, and asked again; his request from before
    // our second, held back by a relay until now, arrives.
    node.knows(&bob, ContactState::PendingOut);
    let ours = ops::issue_time_us();
    node.store.note_contact_payload(&bob.peer_id(), kith_storage::ContactPayload::Asked, ours).unwrap();
    let held_back = node.sealed_from(&bob, &contact_request(Some("Old Bob"), Vec::new(), ours - skew_us() - 1_000_000));
    let (results, outcome) = node.apply(&[held_back]);
    assert_eq!(results, [DmResult::Stored], "taken, so its holder may let go of it");
    assert!(outcome.events.is_empty() && !outcome.queued, "no acceptance, nothing shown: {:?}", outcome.events);
    let record = node.record_of(&bob.peer_id()).unwrap();
    assert_eq!((record.state, record.display_name), (ContactState::PendingOut, None), "our request still waits");
    assert!(node.store.outbox().list().unwrap().is_empty());
    // Nor does a text he wrote back then.
    let old_text = Payload::Text {
        id: MessageId([5; 16]),
        lamport: 1,
        sent_at_ms: (ours - skew_us()) / 1000 - 1_000,
        text: "from before".into(),
        file: None,
        link: None,
    };
    let (results, _) = node.apply(&[node.sealed_from(&bob, &old_text)]);
    assert_eq!(results, [DmResult::Stored]);
    assert_eq!(node.state_of(&bob.peer_id()), Some(ContactState::PendingOut), "a held-back text accepts nothing");

    // One issued after ours (within the clock skew too) is Bob asking while we
    // ask: the node accepts it and answers it.
    let fresh = node.sealed_from(&bob, &contact_request(Some("Bob"), Vec::new(), ours - skew_us() + 1_000_000));
    let (_, outcome) = node.apply(&[fresh]);
    assert!(outcome.queued);
    assert!(outcome.events.iter().any(|e| matches!(e, Event::ContactChanged { .. })));
    let record = node.record_of(&bob.peer_id()).unwrap();
    assert_eq!((record.state, record.display_name), (ContactState::Accepted, Some("Bob".into())));
}

#[test]
fn an_acceptance_from_someone_we_did_not_ask_renames_no_one() {
    let mut node = Receiver::new();
    let accepting = |node: &Receiver, from: &Identity| {
        let payload = Payload::ContactAccepted { name: Some("Mallory".into()), issued_us: ops::issue_time_us(), answers_us: 0 };
        node.sealed_from(from, &payload)
    };
    // Someone who asked us, and whose request we have not answered.
    let bob = someone(0);
    node.knows(&bob, ContactState::PendingIn);
    let (results, outcome) = node.apply(&[accepting(&node, &bob)]);
    assert_eq!(results, [DmResult::Stored]);
    assert!(outcome.events.is_empty(), "{:?}", outcome.events);
    let record = node.record_of(&bob.peer_id()).unwrap();
    assert_eq!((record.state, record.display_name), (ContactState::PendingIn, None));
    // An accepted contact's newer acceptance may carry a new name.
    let carol = someone(2);
    node.knows(&carol, ContactState::Accepted);
    let (_, outcome) = node.apply(&[accepting(&node, &carol)]);
    assert!(outcome.events.iter().any(|e| matches!(e, Event::ContactChanged { .. })));
    assert_eq!(node.record_of(&carol.peer_id()).unwrap().display_name, Some("Mallory".into()));
}

#[test]
fn a_deposit_ticket_is_kept_from_a_contact_or_someone_we_asked_and_only_if_it_admits_us() {
    let mut node = Receiver::new();
    let me = node.me.peer_id();
    let (bob, carol) = (someone(0), someone(1));
    node.knows(&bob, ContactState::Accepted);
    node.knows(&carol, ContactState::PendingIn);
    let far = ops::now_ms() + 3_600_000;
    let ticket = |from: &Identity, to: &PeerId, not_after_ms| {
        Payload::DepositTicket { ticket: crate::mailbox::sign_ticket(from, to, not_after_ms) }
    };
    let held = |node: &Receiver, from: &Identity| node.store.deposit_tickets().held(&from.peer_id()).unwrap();

    // Not from someone who is not a contact, nor one made for someone else, expired,
    // or signed by another.
    let dropped = [
        node.sealed_from(&carol, &ticket(&carol, &me, far)),
        node.sealed_from(&bob, &ticket(&bob, &carol.peer_id(), far)),
        node.sealed_from(&bob, &ticket(&bob, &me, ops::now_ms() - 1)),
        node.sealed_from(&bob, &ticket(&carol, &me, far)),
    ];
    for (n, envelope) in dropped.into_iter().enumerate() {
        assert_eq!(node.apply(&[envelope]).0, [DmResult::Stored], "{n}");
    }
    assert_eq!((held(&node, &bob), held(&node, &carol)), (None, None));

    // Bob's own, for us: kept, and a later one replaces it.
    node.apply(&[node.sealed_from(&bob, &ticket(&bob, &me, far))]);
    assert_eq!(held(&node, &bob).map(|t| t.not_after_ms), Some(far));
    node.apply(&[node.sealed_from(&bob, &ticket(&bob, &me, far + 1))]);
    assert_eq!(held(&node, &bob).map(|t| t.not_after_ms), Some(far + 1));

    // Dave, whom we asked, accepts: his ticket may come before his acceptance in
    // the batch, and is kept all the same.
    let dave = someone(2);
    node.knows(&dave, ContactState::PendingOut);
    let accepted = Payload::ContactAccepted { name: None, issued_us: ops::issue_time_us(), answers_us: 0 };
    let (results, _) = node.apply(&[node.sealed_from(&dave, &ticket(&dave, &me, far)), node.sealed_from(&dave, &accepted)]);
    assert_eq!(results, [DmResult::Stored, DmResult::Stored]);
    assert_eq!(node.state_of(&dave.peer_id()), Some(ContactState::Accepted));
    assert_eq!(held(&node, &dave).map(|t| t.not_after_ms), Some(far));
}
