//! A burst of sends to one contact, all waiting before the node takes the first:
//! they form one batch far larger than a ratchet batch, sealed in the contact's
//! session before its flush. Every message must still open at the contact, in
//! order, exactly once (a seal made and then thrown away would put later messages
//! behind keys the contact has already passed, and refuse them for good).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures::future::join_all;
use kith_p2p::kith_storage::{Direction, MessageState, Store};
use kith_p2p::control::{Backend, Request, dispatch};
use kith_p2p::node::{self, Timers};
use kith_p2p::ops;

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(60);

/// Sends in the burst: over two ratchet batches' worth of cached seals
/// (`MAX_CACHED_PER_CONTACT` = 128), under the node's command queue (256), so
/// that all of them wait in it before the node takes one.
const BURST: usize = 250;

async fn start(dir: &std::path::Path) -> node::Started {
    let config = common::loopback_config(Timers::default(), None);
    node::start(config, Store::open(&dir.join("db")).unwrap()).await.unwrap()
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

/// The texts of the conversation between `a` and `b` in `a`'s store, oldest
/// first, with their direction and state.
fn history(a: &node::Started, b: &node::Started) -> Vec<(String, Direction, MessageState)> {
    let conversation = ops::direct_conversation(&a.handle.peer_id(), &b.handle.peer_id());
    match a.handle.store().messages().page(conversation, None, 10_000) {
        Ok(page) => page.into_iter().map(|m| (m.text, m.direction, m.state)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Alice and Bob, contacts with a round trip behind them (Alice's next messages go
/// in a chain Bob has answered), and Bob's hello unread at Alice.
async fn pair_after_a_round_trip(a_dir: &std::path::Path, b_dir: &std::path::Path) -> (node::Started, node::Started) {
    let setup = async {
        let alice = start(a_dir).await;
        let bob = start(b_dir).await;
        let invite = alice.handle.invite().await.unwrap();
        bob.handle.add_invite(invite, Some("alice".into())).await.unwrap();
        (alice, bob)
    };
    let (alice, bob) = tokio::time::timeout(DEADLINE, setup).await.expect("two nodes started and introduced");
    let accepted = |by: &node::Started, of: &node::Started| {
        by.handle
            .store()
            .contacts()
            .get(&of.handle.peer_id())
            .unwrap()
            .is_some_and(|c| c.state == kith_p2p::kith_storage::ContactState::Accepted)
    };
    until("the contact accepted on both sides", || accepted(&alice, &bob) && accepted(&bob, &alice)).await;
    let (bob_name, alice_name) = (bob.handle.peer_id().to_string(), alice.handle.peer_id().to_string());
    bounded(bob.handle.send(&alice_name, "hello alice")).await.unwrap();
    until("Bob's hello at Alice", || history(&alice, &bob).iter().any(|(t, ..)| t == "hello alice")).await;
    bounded(alice.handle.send(&bob_name, "hello bob")).await.unwrap();
    until("Alice's hello delivered", || {
        history(&alice, &bob).iter().any(|(t, _, s)| t == "hello bob" && *s == MessageState::Delivered)
    })
    .await;
    (alice, bob)
}

/// `work`, failing the test after [`DEADLINE`].
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, work).await.expect("finished within the deadline")
}

/// Sends the burst to Bob, every send queued before Alice's node takes one; with
/// `read_first`, Alice marks Bob's hello read just before (a read receipt written
/// to her outbox for Bob, whose flush completes while the burst is staged).
/// Checks that every message of the burst reaches Bob once, in Alice's order, and
/// shows delivered at Alice.
async fn burst_arrives_whole(alice: &node::Started, bob: &node::Started, read_first: bool) {
    let bob_name = bob.handle.peer_id().to_string();
    let texts: Vec<String> = (0..BURST).map(|i| format!("burst {i:03}")).collect();
    let backend = Backend::Node(alice.handle.clone());
    let read = async {
        if read_first {
            dispatch(&backend, Request::Read { contact: bob_name.clone() }).await.map(drop).unwrap();
        }
    };
    let sends = join_all(texts.iter().map(|t| alice.handle.send(&bob_name, t)));
    // Unconstrained: tokio's cooperative budget would end the poll after 128
    // sends and let the node take those as a batch of their own.
    let ((), answers) = bounded(tokio::task::unconstrained(async { tokio::join!(read, sends) })).await;
    for (text, answer) in texts.iter().zip(&answers) {
        assert!(answer.is_ok(), "sending {text}: {answer:?}");
    }

    let received = |h: Vec<(String, Direction, MessageState)>| -> Vec<String> {
        h.into_iter().filter(|(t, d, _)| *d == Direction::Incoming && t.starts_with("burst ")).map(|(t, ..)| t).collect()
    };
    until("the whole burst at Bob, or a message of it refused", || {
        received(history(bob, alice)).len() >= BURST
            || history(alice, bob).iter().any(|(_, _, s)| *s == MessageState::Failed)
    })
    .await;
    let failed: Vec<String> = history(alice, bob)
        .into_iter()
        .filter(|(_, _, s)| *s == MessageState::Failed)
        .map(|(t, ..)| t)
        .collect();
    assert!(failed.is_empty(), "{} of the burst refused by Bob for good, first {:?}", failed.len(), failed.first());
    let sent: Vec<String> = history(alice, bob)
        .into_iter()
        .filter(|(t, d, _)| *d == Direction::Outgoing && t.starts_with("burst "))
        .map(|(t, ..)| t)
        .collect();
    assert_eq!(sent, texts, "Alice's history holds the burst in the order it was sent");
    assert_eq!(received(history(bob, alice)), sent, "Bob holds the burst in Alice's order, each once");
    until("every message of the burst delivered at Alice", || {
        history(alice, bob)
            .iter()
            .filter(|(t, d, s)| *d == Direction::Outgoing && t.starts_with("burst ") && *s == MessageState::Delivered)
            .count()
            == BURST
    })
    .await;
    if read_first {
        until("Alice's read receipt at Bob", || {
            history(bob, alice).iter().any(|(t, d, s)| t == "hello alice" && *d == Direction::Outgoing && *s == MessageState::Read)
        })
        .await;
    }
}

/// Two nodes after a round trip, then the burst ([`burst_arrives_whole`]).
async fn burst_between_two_nodes(read_first: bool) {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = pair_after_a_round_trip(a_dir.path(), b_dir.path()).await;
    burst_arrives_whole(&alice, &bob, read_first).await;
    bounded(alice.handle.shutdown()).await;
    bounded(bob.handle.shutdown()).await;
}

// One thread: the node's actor cannot take a command before every send of the
// burst has been queued, so the burst is one batch, deterministically.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_sends_to_one_contact_in_one_batch_all_open_in_order_exactly_once() {
    burst_between_two_nodes(false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_receipt_written_while_a_burst_is_sealed_does_not_overtake_it() {
    burst_between_two_nodes(true).await;
}
