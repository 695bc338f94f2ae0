//! The relay's network roles with real processes: the kith DHT (peers bootstrapping
//! through the relay find records and each other) and circuit relay v2 (reservations,
//! circuits, and the members policy on reservations).
#![allow(clippy::unwrap_used)]

mod common;

use common::{DEADLINE, PeerBehaviourEvent, RelayProcess, TestPeer, loopback_config, metric};
use libp2p::kad::{self, Quorum, Record, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identity, relay};

/// A peer that listens on loopback and knows the relay as its DHT bootstrap node.
async fn dht_peer(relay: &RelayProcess) -> TestPeer {
    let mut peer = TestPeer::new(identity::Keypair::generate_ed25519());
    peer.swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    peer.wait_for("listen address", |e| {
        matches!(e, SwarmEvent::NewListenAddr { .. }).then_some(())
    })
    .await;
    peer.swarm
        .behaviour_mut()
        .kad
        .add_address(&relay.peer_id, relay.addr());
    peer.connect(relay.peer_id, relay.addr()).await;
    peer
}

fn circuit_addr(relay: &RelayProcess) -> Multiaddr {
    relay
        .addr()
        .with(Protocol::P2p(relay.peer_id))
        .with(Protocol::P2pCircuit)
}

#[tokio::test]
async fn peers_bootstrapping_through_the_relay_find_records_and_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(dir.path(), &loopback_config(&dir.path().join("data"), ""));
    let mut alice = dht_peer(&relay).await;
    let mut bob = dht_peer(&relay).await;

    // Alice stores a record; the relay (her only DHT peer) accepts it.
    let key = RecordKey::new(b"kith peer record of alice");
    let value = b"signed peer record bytes".to_vec();
    alice
        .swarm
        .behaviour_mut()
        .kad
        .put_record(Record::new(key.clone(), value.clone()), Quorum::One)
        .unwrap();
    // Both swarms are polled throughout: a query may reach the other peer.
    let put = alice.wait_for("put_record", |e| match e {
        SwarmEvent::Behaviour(PeerBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::PutRecord(result),
            ..
        })) => Some(result.unwrap()),
        _ => None,
    });
    tokio::select! {
        _ = put => {}
        _ = bob.wait_for("nothing", |_| None::<()>) => unreachable!(),
    }

    // Bob reads it back through the relay.
    bob.swarm.behaviour_mut().kad.get_record(key.clone());
    let get = bob.wait_for("get_record", |e| match e {
        SwarmEvent::Behaviour(PeerBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))),
            ..
        })) => Some(found.record),
        SwarmEvent::Behaviour(PeerBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::GetRecord(Err(e)),
            ..
        })) => panic!("get_record failed: {e:?}"),
        _ => None,
    });
    let found = tokio::select! {
        found = get => found,
        _ = alice.wait_for("nothing", |_| None::<()>) => unreachable!(),
    };
    assert_eq!(found.value, value);

    // Bob finds Alice (and her address) from the relay's routing table, which learnt
    // it from identify. The relay may not have processed Alice's identify yet, so
    // ask again until the deadline.
    let alice_id = alice.peer_id();
    let start = std::time::Instant::now();
    loop {
        bob.swarm.behaviour_mut().kad.get_closest_peers(alice_id);
        // Keep Alice's swarm polled meanwhile, so she answers identify.
        let peers = tokio::select! {
            peers = bob.wait_for("closest peers", |e| match e {
                SwarmEvent::Behaviour(PeerBehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::GetClosestPeers(result),
                        step,
                        ..
                    },
                )) if step.last => Some(match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                }),
                _ => None,
            }) => peers,
            _ = alice.wait_for("nothing", |_| None::<()>) => unreachable!(),
        };
        if let Some(info) = peers.iter().find(|p| p.peer_id == alice_id) {
            assert!(!info.addrs.is_empty());
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "bob never found alice: {peers:?}"
        );
    }

    let text = relay.metrics().await;
    assert!(
        metric(&text, "kith_relay_dht_records").unwrap() >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn circuits_connect_peers_through_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(dir.path(), &loopback_config(&dir.path().join("data"), ""));

    let mut dst = TestPeer::new(identity::Keypair::generate_ed25519());
    dst.swarm.listen_on(circuit_addr(&relay)).unwrap();
    dst.wait_for("reservation", |e| match e {
        SwarmEvent::Behaviour(PeerBehaviourEvent::RelayClient(
            relay::client::Event::ReservationReqAccepted { .. },
        )) => Some(()),
        SwarmEvent::ListenerClosed { reason, .. } => panic!("reservation failed: {reason:?}"),
        _ => None,
    })
    .await;

    let mut src = TestPeer::new(identity::Keypair::generate_ed25519());
    let dst_id = dst.peer_id();
    src.swarm
        .dial(circuit_addr(&relay).with(Protocol::P2p(dst_id)))
        .unwrap();
    let connected = async {
        src.wait_for("circuit connection", |e| match e {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == dst_id => Some(endpoint.is_relayed()),
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                panic!("circuit dial failed: {error}")
            }
            _ => None,
        })
        .await
    };
    let relayed = tokio::select! {
        relayed = connected => relayed,
        _ = dst.wait_for("nothing", |_| None::<()>) => unreachable!(),
    };
    assert!(relayed);

    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_reservations_active"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "kith_relay_reservations_accepted_total"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "kith_relay_circuits_total"), Some(1.0));
}

#[tokio::test]
async fn under_the_members_policy_only_members_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let member_key = identity::Keypair::generate_ed25519();
    let member: PeerId = member_key.public().to_peer_id();
    let extra = format!("[access]\npolicy = \"members\"\nmembers = [\"{member}\"]\n");
    let relay = RelayProcess::start(
        dir.path(),
        &loopback_config(&dir.path().join("data"), &extra),
    );

    let mut stranger = TestPeer::new(identity::Keypair::generate_ed25519());
    stranger.swarm.listen_on(circuit_addr(&relay)).unwrap();
    let failed = stranger
        .wait_for("refused reservation", |e| match e {
            SwarmEvent::ListenerClosed { reason, .. } => Some(reason.is_err()),
            SwarmEvent::Behaviour(PeerBehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { .. },
            )) => panic!("a stranger got a reservation"),
            _ => None,
        })
        .await;
    assert!(failed, "the listener should close with an error");

    let mut member_peer = TestPeer::new(member_key);
    member_peer.swarm.listen_on(circuit_addr(&relay)).unwrap();
    member_peer
        .wait_for("reservation", |e| match e {
            SwarmEvent::Behaviour(PeerBehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { .. },
            )) => Some(()),
            SwarmEvent::ListenerClosed { reason, .. } => panic!("member refused: {reason:?}"),
            _ => None,
        })
        .await;
    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_reservations_accepted_total"),
        Some(1.0),
        "{text}"
    );
}
