//! Adding someone notes the request as it was issued, and only an answer to that
//! request (or a later one) makes them a contact: a relay's held-back acceptance of
//! an earlier request must not (the rule itself is unit-tested in
//! `node/inbound/tests.rs`; this shows the real "add" path writes what it checks).
//! New contacts hold each other's deposit tickets.
//!
//! The nodes run in this process on 127.0.0.1, so the test reads their stores while
//! they run.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kith_p2p::kith_storage::{ContactPayload, ContactState, Store};
use kith_p2p::node::{self, Timers};
use kith_p2p::ops;

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(30);

async fn start(dir: &std::path::Path) -> node::Started {
    let config = common::loopback_config(Timers::default(), None);
    tokio::time::timeout(DEADLINE, node::start(config, Store::open(&dir.join("db")).unwrap())).await.unwrap().unwrap()
}

/// Polls `done` every 20 ms until it holds, failing the test after [`DEADLINE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn state(of: &node::Started, peer: &node::Started) -> Option<ContactState> {
    of.handle.store().contacts().get(&peer.handle.peer_id()).unwrap().map(|c| c.state)
}

/// `of`'s mark of its latest request to `peer` (µs).
fn asked(of: &node::Started, peer: &node::Started) -> Option<u64> {
    of.handle.store().contact_payload_mark(&peer.handle.peer_id(), ContactPayload::Asked).unwrap()
}

/// Bob asks Alice (her invite without its token: a request she must accept) and
/// returns the time window the request was issued in.
async fn bob_asks_alice(alice: &node::Started, bob: &node::Started) -> std::ops::RangeInclusive<u64> {
    let mut invite = tokio::time::timeout(DEADLINE, alice.handle.invite()).await.unwrap().unwrap();
    invite.token = None;
    let before = ops::issue_time_us();
    tokio::time::timeout(DEADLINE, bob.handle.add_invite(invite, Some("alice".into()))).await.unwrap().unwrap();
    before..=ops::issue_time_us()
}

/// Alice accepts Bob's pending request, as `kith accept` does (her profile goes
/// with the acceptance).
async fn alice_accepts(alice: &node::Started, bob: &node::Started) {
    let bob_id = bob.handle.peer_id();
    let accept = Box::new(move |store: &Store, ctx: &node::LocalContext| {
        let contact = store.contacts().get(&bob_id)?.expect("Bob's request is kept");
        ops::accept(store, &contact, ctx.display_name.as_deref())?;
        kith_p2p::node::profiles::share(store, &ctx.me, &bob_id)?;
        Ok(serde_json::Value::Null)
    });
    tokio::time::timeout(DEADLINE, alice.handle.local(accept)).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_someone_notes_the_request_its_acceptance_must_answer_and_asking_again_moves_it() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = (start(a_dir.path()).await, start(b_dir.path()).await);

    let first = bob_asks_alice(&alice, &bob).await;
    let noted = asked(&bob, &alice).expect("the request Bob made is noted");
    assert!(first.contains(&noted), "noted as issued: {noted} in {first:?}");
    assert_eq!(state(&bob, &alice), Some(ContactState::PendingOut));
    until("Bob's request at Alice", || state(&alice, &bob) == Some(ContactState::PendingIn)).await;
    alice_accepts(&alice, &bob).await;
    until("Alice's acceptance taken by Bob", || state(&bob, &alice) == Some(ContactState::Accepted)).await;

    // Bob removes Alice and asks again: the mark moves to the new request, which
    // Alice's node (still holding Bob as a contact) answers by itself.
    let alice_id = alice.handle.peer_id();
    let me = bob.handle.peer_id();
    let remove = Box::new(move |store: &Store, _: &node::LocalContext| {
        let contact = store.contacts().get(&alice_id)?.expect("Alice is a contact");
        ops::remove(store, &me, &contact)?;
        Ok(serde_json::Value::Null)
    });
    tokio::time::timeout(DEADLINE, bob.handle.local(remove)).await.unwrap().unwrap();
    assert_eq!(state(&bob, &alice), None);
    let second = bob_asks_alice(&alice, &bob).await;
    let renoted = asked(&bob, &alice).expect("the second request is noted");
    assert!(second.contains(&renoted) && renoted > noted, "{renoted} in {second:?}, after {noted}");
    until("Alice's node answers the second request", || state(&bob, &alice) == Some(ContactState::Accepted)).await;

    for started in [alice, bob] {
        started.handle.shutdown().await;
        tokio::time::timeout(DEADLINE, started.stopped).await.unwrap().unwrap();
    }
}

/// Each side of a new contact holds the other's deposit ticket, and the requester
/// the accepter's profile: what Alice queues with her acceptance of Bob's request
/// leaves in the order she queued it, within one millisecond too (a profile sealed in
/// the ratchet that overtook the acceptance was refused, and lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_contacts_hold_each_others_deposit_tickets_and_the_accepters_profile() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = (start(a_dir.path()).await, start(b_dir.path()).await);
    let profile = kith_p2p::node::profiles::ProfileChange { name: Some("Alice A.".into()), status: None, avatar: None };
    tokio::time::timeout(DEADLINE, alice.handle.set_profile(profile)).await.unwrap().unwrap();
    bob_asks_alice(&alice, &bob).await;
    until("Bob's request at Alice", || state(&alice, &bob) == Some(ContactState::PendingIn)).await;
    alice_accepts(&alice, &bob).await;
    let holds = |of: &node::Started, from: &node::Started| {
        of.handle.store().deposit_tickets().held(&from.handle.peer_id()).unwrap().is_some_and(|t| {
            kith_p2p::mailbox::ticket_admits(
                &t.into(),
                &from.handle.peer_id(),
                &of.handle.peer_id(),
                ops::now_ms(),
            )
        })
    };
    until("each holds the other's ticket", || holds(&alice, &bob) && holds(&bob, &alice)).await;
    let alice_id = alice.handle.peer_id();
    until("Bob holds Alice's profile", || bob.handle.store().profiles().get(&alice_id).unwrap().is_some()).await;
    assert_eq!((state(&alice, &bob), state(&bob, &alice)), (Some(ContactState::Accepted), Some(ContactState::Accepted)));

    for started in [alice, bob] {
        started.handle.shutdown().await;
        tokio::time::timeout(DEADLINE, started.stopped).await.unwrap().unwrap();
    }
}
