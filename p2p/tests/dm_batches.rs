//! How many envelopes a node puts in one direct request: more than
//! `dm::MAX_BATCH_V1` only for a peer that lists `/kith/dm/2`, so that a peer of an
//! earlier version, which speaks only `/kith/dm/1` and refuses a larger request,
//! still gets every message. The receiving peer here is a bare libp2p swarm with
//! the contact's identity that answers every envelope `Stored` and records the
//! size of each request.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use kith_p2p::dm::{self, DmResponse, DmResult};
use kith_p2p::identity::Identity;
use kith_p2p::kith_storage::{ContactState, Direction, MessageState, Store};
use kith_p2p::libp2p::request_response::{self, ProtocolSupport};
use kith_p2p::libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use kith_p2p::libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder, identify, noise, tcp, yamux};
use kith_p2p::node::{self, Timers};
use kith_p2p::ops;

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(60);

/// Messages queued for the contact while it is away: more than one large batch.
const QUEUED: usize = 300;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "kith_p2p::libp2p::swarm::derive_prelude")]
struct Receiver {
    dm: request_response::Behaviour<dm::Codec>,
    identify: identify::Behaviour,
}

/// A swarm with `identity` that answers direct deliveries on `protocols` (and lists
/// them through identify, as a node does).
fn receiver(identity: &Identity, protocols: &[StreamProtocol]) -> Swarm<Receiver> {
    SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| Receiver {
            dm: request_response::Behaviour::with_codec(
                dm::Codec::default(),
                protocols.iter().map(|p| (p.clone(), ProtocolSupport::Inbound)),
                request_response::Config::default(),
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                kith_p2p::node::IDENTIFY_VERSION.into(),
                key.public(),
            )),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// `work`, failing the test after [`DEADLINE`].
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, work).await.expect("finished within the deadline")
}

/// Alice's outgoing messages to `bob` that are delivered.
fn delivered(alice: &node::Started, bob: &kith_p2p::libp2p::PeerId) -> usize {
    let conversation = ops::direct_conversation(&alice.handle.peer_id(), bob);
    alice.handle.store().messages().page(conversation, None, 10_000).map_or(0, |page| {
        page.iter().filter(|m| m.direction == Direction::Outgoing && m.state == MessageState::Delivered).count()
    })
}

/// Alice queues `texts` for Bob while he is away; then Bob comes back as a receiver
/// speaking `protocols` that answers every request, except, with `drop_first_large`,
/// the first of more than `dm::MAX_BATCH_V1` envelopes, which he drops unanswered.
/// Returns the number of envelopes in each request he got until all of them were
/// delivered; fails the test if they are not all delivered within [`DEADLINE`].
async fn batches_for_a_peer_speaking(protocols: &[StreamProtocol], texts: &[String], drop_first_large: bool) -> Vec<usize> {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path, config: node::NodeConfig| {
        let store = Store::open(&dir.join("db")).unwrap();
        async move { node::start(config, store).await.unwrap() }
    };
    let bob_config = common::loopback_config(Timers::default(), None);
    let bob_identity = bob_config.identity.clone();
    let alice = bounded(start(a_dir.path(), common::loopback_config(Timers::default(), None))).await;
    let bob = bounded(start(b_dir.path(), bob_config)).await;
    let bob_id = bob.handle.peer_id();
    bob.handle.add_invite(bounded(alice.handle.invite()).await.unwrap(), Some("alice".into())).await.unwrap();
    let accepted = |by: &node::Started, of: &kith_p2p::libp2p::PeerId| {
        by.handle.store().contacts().get(of).unwrap().is_some_and(|c| c.state == ContactState::Accepted)
    };
    bounded(async {
        while !(accepted(&alice, &bob_id) && accepted(&bob, &alice.handle.peer_id())) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    bounded(bob.handle.shutdown()).await;

    let bob_name = bob_id.to_string();
    for answer in bounded(join_all(texts.iter().map(|t| alice.handle.send(&bob_name, t)))).await {
        answer.unwrap();
    }

    let mut swarm = receiver(&bob_identity, protocols);
    let alice_addr: Multiaddr = bounded(alice.handle.status()).await.unwrap().listen_addrs[0].parse().unwrap();
    swarm.dial(alice_addr).unwrap();
    let mut sizes = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    bounded(async {
        while delivered(&alice, &bob_id) < texts.len() {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(ReceiverEvent::Dm(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    })) = event
                    {
                        sizes.push(request.envelopes.len());
                        let large = request.envelopes.len() > dm::MAX_BATCH_V1;
                        if drop_first_large && large && sizes.iter().filter(|&&n| n > dm::MAX_BATCH_V1).count() == 1 {
                            drop(channel);
                            continue;
                        }
                        let results = vec![DmResult::Stored; request.envelopes.len()];
                        swarm.behaviour_mut().dm.send_response(channel, DmResponse { results }).unwrap();
                    }
                }
                _ = tick.tick() => {}
            }
        }
    })
    .await;
    bounded(alice.handle.shutdown()).await;
    sizes
}

/// [`QUEUED`] short texts.
fn short_texts() -> Vec<String> {
    (0..QUEUED).map(|i| format!("queued {i:03}")).collect()
}

#[tokio::test]
async fn a_peer_speaking_only_dm_1_gets_every_message_in_batches_it_takes() {
    let sizes = batches_for_a_peer_speaking(&[dm::PROTOCOL], &short_texts(), false).await;
    assert!(sizes.iter().all(|&n| n <= dm::MAX_BATCH_V1), "requests of {sizes:?} envelopes");
}

#[tokio::test]
async fn a_peer_listing_dm_2_gets_larger_batches() {
    let sizes = batches_for_a_peer_speaking(&[dm::PROTOCOL_V2, dm::PROTOCOL], &short_texts(), false).await;
    assert!(sizes.iter().any(|&n| n > dm::MAX_BATCH_V1), "no request over {}: {sizes:?}", dm::MAX_BATCH_V1);
}

/// 200 texts of the longest kind (64 KiB) come to 13 MiB sealed: more than one
/// request may carry (8 MiB), whatever the count allows. Each request stays under
/// the cap, so all of them arrive within the deadline (a request over it fails to
/// be sent, again and again, and the helper's wait runs out).
#[tokio::test]
async fn a_batch_of_long_texts_is_cut_to_what_one_request_carries() {
    let texts: Vec<String> = (0..200).map(|i| format!("{i:03}{}", "x".repeat(kith_p2p::payload::MAX_TEXT_LEN - 3))).collect();
    // The assertion is the helper's: every text delivered before its deadline.
    batches_for_a_peer_speaking(&[dm::PROTOCOL_V2, dm::PROTOCOL], &texts, false).await;
}

/// A large request that fails makes the next ones small until one is answered, so
/// a retry resends the seals kept for it; then they grow again.
#[tokio::test]
async fn after_a_large_request_fails_the_next_is_small_until_one_is_answered() {
    let sizes = batches_for_a_peer_speaking(&[dm::PROTOCOL_V2, dm::PROTOCOL], &short_texts(), true).await;
    let dropped = sizes.iter().position(|&n| n > dm::MAX_BATCH_V1).expect("a large request");
    assert!(sizes[dropped + 1] <= dm::MAX_BATCH_V1, "after the dropped one: {sizes:?}");
    assert!(sizes[dropped + 2..].iter().any(|&n| n > dm::MAX_BATCH_V1), "large again after an answer: {sizes:?}");
}
