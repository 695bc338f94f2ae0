//! A plain rust-libp2p peer beside a running kith daemon. kith negotiates its own
//! outbound streams lazily (docs/PROTOCOL.md, *Transport*): the protocol's name and the
//! first bytes leave together, so a peer that does not speak the protocol refuses it
//! only after the bytes were sent. A peer that is not kith, and speaks none of kith's
//! protocols but identify, ping and the DHT, must still be answered on those, keep its
//! connection while kith's gossip tries to reach it, and leave kith working.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use kith_p2p::libp2p::kad::store::MemoryStore;
use kith_p2p::libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use kith_p2p::libp2p::{Multiaddr, PeerId, StreamProtocol, SwarmBuilder, identify, kad, noise, ping, tcp, yamux};

/// What the plain peer speaks: nothing of kith's own but the DHT's protocol name.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "kith_p2p::libp2p::swarm::derive_prelude")]
struct Plain {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
}

/// Pings the plain peer must see answered on one connection: about 5 s of it.
const PINGS: usize = 25;

#[test]
fn a_plain_libp2p_peer_is_answered_keeps_its_connection_and_kith_goes_on() {
    let (alice, bob) = kith_tests::connected_pair();
    // A group gives Alice a gossip topic, so her gossip reaches out to every peer that
    // connects: to this one too, which speaks no gossip.
    alice.ok(&["group", "create", "Lazy"]);
    let alice_id: PeerId = alice.peer_id.parse().unwrap();
    let bob_id: PeerId = bob.peer_id.parse().unwrap();
    let alice_addr: Multiaddr = alice.addrs[0].parse().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (identified, pings, found) = runtime.block_on(async {
        let mut swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| {
                let me = key.public().to_peer_id();
                let mut kad =
                    kad::Behaviour::with_config(me, MemoryStore::new(me), kad::Config::new(StreamProtocol::new("/kith/kad/1")));
                kad.set_mode(Some(kad::Mode::Client));
                Plain {
                    identify: identify::Behaviour::new(
                        identify::Config::new("/ipfs/0.1.0".into(), key.public()).with_agent_version("plain-libp2p".into()),
                    ),
                    ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(200))),
                    kad,
                }
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.behaviour_mut().kad.add_address(&alice_id, alice_addr.clone());
        swarm.dial(alice_addr.with_p2p(alice_id).unwrap()).unwrap();

        let (mut identified, mut pings, mut found) = (None, 0, false);
        let mut queried = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while identified.is_none() || pings < PINGS || !found {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await.unwrap_or_else(|_| {
                panic!("before the deadline: identify {}, {pings} pings, Bob found {found}", identified.is_some())
            });
            match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == alice_id && !queried => {
                    // Bob, as Alice's DHT knows him.
                    swarm.behaviour_mut().kad.get_closest_peers(bob_id);
                    queried = true;
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == alice_id => {
                    panic!("Alice closed the connection after {pings} pings: {cause:?}");
                }
                SwarmEvent::Behaviour(PlainEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                    if peer_id == alice_id =>
                {
                    identified = Some(info);
                }
                SwarmEvent::Behaviour(PlainEvent::Ping(ping::Event { peer, result: Ok(_), .. })) if peer == alice_id => {
                    pings += 1;
                }
                SwarmEvent::Behaviour(PlainEvent::Kad(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                    ..
                })) => {
                    found |= ok.peers.iter().any(|p| p.peer_id == bob_id);
                }
                _ => {}
            }
        }
        (identified.unwrap(), pings, found)
    });
    assert_eq!(identified.protocol_version, "/kith/1");
    assert!(identified.protocols.iter().any(|p| p.as_ref() == "/kith/dm/1"), "{:?}", identified.protocols);
    assert!(pings >= PINGS && found);
    // Kith went on working beside it.
    let sent = alice.json(&["send", "Bob", "still here", "--wait", "delivered", "--json"]);
    assert_eq!(sent["state"], "delivered");
}
