//! Streams asked for at once to several peers not yet connected: each starts its own
//! dial and opens. libp2p-stream kept room for one dial request in all, so all but
//! the first waited for a connection nothing dialled
//! (vendor/libp2p-stream/KITH-PATCH.md). Real swarms on 127.0.0.1 (TCP, Noise, yamux).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt as _;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    dummy,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(30);

/// What the servers answer: the byte they were sent.
const ECHO: StreamProtocol = StreamProtocol::new("/kith-test/echo/1");

/// How many servers the client asks at once.
const SERVERS: usize = 4;

/// Peers' addresses, handed to the swarm when it dials a peer by its id alone (the
/// node's Kademlia and identify do this).
#[derive(Default)]
struct AddressBook(HashMap<PeerId, Multiaddr>);

impl NetworkBehaviour for AddressBook {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(peer.and_then(|p| self.0.get(&p).cloned()).into_iter().collect())
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[derive(NetworkBehaviour)]
struct Dialer {
    book: AddressBook,
    streams: libp2p_stream::Behaviour,
}

fn swarm<B: NetworkBehaviour>(behaviour: impl FnOnce() -> B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| behaviour())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// A server answering [`ECHO`] streams, running in its own task; its peer id and
/// address.
async fn echo_server() -> (PeerId, Multiaddr) {
    let mut server = swarm(libp2p_stream::Behaviour::new);
    server.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = tokio::time::timeout(DEADLINE, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .unwrap();
    let peer = *server.local_peer_id();
    let mut incoming = server.behaviour().new_control().accept(ECHO).unwrap();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                let mut byte = [0u8];
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(&byte).await;
                    let _ = stream.close().await;
                }
            });
        }
    });
    tokio::spawn(async move {
        loop {
            server.select_next_some().await;
        }
    });
    (peer, addr)
}

// One thread: the client's requests are all made before its swarm is polled again,
// as a node's are when several fetches start in one turn of its loop.
#[tokio::test(flavor = "current_thread")]
async fn streams_asked_for_at_once_to_peers_not_yet_connected_all_open() {
    let mut servers = Vec::new();
    for _ in 0..SERVERS {
        servers.push(echo_server().await);
    }
    let mut client = swarm(|| Dialer { book: AddressBook(servers.iter().cloned().collect()), streams: libp2p_stream::Behaviour::new() });
    let control = client.behaviour().streams.new_control();
    tokio::spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });
    let asks = servers.iter().enumerate().map(|(n, (peer, _))| {
        let mut control = control.clone();
        let peer = *peer;
        async move {
            let mut stream = control.open_stream(peer, ECHO).await.unwrap();
            stream.write_all(&[n as u8]).await.unwrap();
            let mut byte = [0u8];
            stream.read_exact(&mut byte).await.unwrap();
            byte[0]
        }
    });
    let echoed = tokio::time::timeout(DEADLINE, futures::future::join_all(asks)).await.expect("every stream opened");
    assert_eq!(echoed, (0..SERVERS as u8).collect::<Vec<_>>());
}
