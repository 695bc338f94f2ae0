//! A raw `/kith/call/1` client for hostile tests: it sends whatever call signal the
//! test chooses, as whatever identity the test gives it, where the real client would
//! refuse to (it calls only accepted contacts).

use std::time::Duration;

use futures::StreamExt;
use kith_p2p::call::signal::{self, Reply, Signal};
use kith_p2p::identity::Identity;
use kith_p2p::libp2p::{Multiaddr, PeerId, noise, tcp, yamux};

use crate::Peer;

/// How long one signal may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// Sends `signal` to `to` (a running peer) as `identity`; the node's reply.
pub fn send_signal(identity: &Identity, to: &Peer, signal: &Signal) -> Result<Reply, signal::SignalError> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut swarm = kith_p2p::libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let control = swarm.behaviour().new_control();
        let peer: PeerId = to.peer_id.parse().unwrap();
        let addr: Multiaddr = to.addrs[0].parse().unwrap();
        swarm.dial(kith_p2p::libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(vec![addr]).build()).unwrap();
        let connected = async {
            loop {
                if let kith_p2p::libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } =
                    swarm.select_next_some().await
                    && peer_id == peer
                {
                    return;
                }
            }
        };
        tokio::time::timeout(DEADLINE, connected).await.expect("connected to the peer in time");
        let driving = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let reply = signal::send(control, peer, signal, DEADLINE).await;
        driving.abort();
        reply
    })
}
