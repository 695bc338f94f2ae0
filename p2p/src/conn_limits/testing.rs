//! Test support (feature `test-support`): peers that dial from a chosen local IP
//! address, so a test on one machine can play hosts at different addresses — every
//! address of 127.0.0.0/8 is loopback on Linux. libp2p's own TCP transport always
//! dials from the machine's default address (or `0.0.0.0` and a reused port), so a
//! per-IP limit could not tell an attacker at 127.0.0.1 from a bystander otherwise.
//! [`Flooder`] is such a peer playing an attacker that hoards connections.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, Pending};
use futures::{FutureExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts as SwarmDialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identity, ping, tcp};

/// A dial-only TCP transport whose connections leave from `source`.
#[derive(Clone, Copy, Debug)]
pub struct SourceBoundTcp {
    source: IpAddr,
}

impl SourceBoundTcp {
    /// Dials from `source` (port chosen by the OS).
    pub fn new(source: IpAddr) -> SourceBoundTcp {
        SourceBoundTcp { source }
    }
}

/// `/ip4|ip6/<ip>/tcp/<port>`, optionally followed by `/p2p/<peer>`.
fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else { return None };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => Some(SocketAddr::new(ip, port)),
        Some(_) => None,
    }
}

impl Transport for SourceBoundTcp {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = Pending<Result<Self::Output, io::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn listen_on(&mut self, _id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, addr: Multiaddr, _opts: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some(remote) = socket_addr(&addr) else { return Err(TransportError::MultiaddrNotSupported(addr)) };
        let source = self.source;
        Ok(async move {
            let socket =
                if remote.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(remote).await?;
            stream.set_nodelay(true)?;
            Ok(tcp::tokio::TcpStream(stream))
        }
        .boxed())
    }

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

/// [`SourceBoundTcp`] with Noise and yamux, as a kith node speaks
/// ([`crate::tcp::secure`]): return it from the closure of
/// `SwarmBuilder::with_other_transport` (hence its error type).
pub fn transport(
    key: &identity::Keypair,
    source: IpAddr,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    crate::tcp::secure(SourceBoundTcp::new(source), key)
}

/// What became of a connection a [`Flooder`] opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Refused before the handshake: the dial failed.
    Refused,
    /// Established, then closed by the target before it served anything.
    Closed,
    /// Established and served: a ping crossed it.
    Served,
}

/// Why a [`Flooder`] step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FloodError {
    /// The swarm could not be built.
    #[error("cannot build the flooder: {0}")]
    Build(String),
    /// The dial could not even start.
    #[error("cannot dial: {0}")]
    Dial(#[from] DialError),
    /// Nothing happened within the deadline.
    #[error("no outcome within {0:?}")]
    Timeout(Duration),
}

/// An attacker that opens connection after connection to one target from a chosen
/// address and keeps every accepted one open. It speaks only ping, as a node does
/// (a node closes connections whose pings fail): the connections exist only to take
/// the target's slots.
pub struct Flooder {
    swarm: Swarm<ping::Behaviour>,
    deadline: Duration,
}

impl Flooder {
    /// A fresh identity dialing from `source`; every wait gives up after `deadline`,
    /// which also keeps idle connections open on our side.
    pub fn new(source: IpAddr, deadline: Duration) -> Result<Flooder, FloodError> {
        let swarm = libp2p::SwarmBuilder::with_existing_identity(identity::Keypair::generate_ed25519())
            .with_tokio()
            .with_other_transport(|key| transport(key, source))
            .map_err(|e| FloodError::Build(e.to_string()))?
            .with_behaviour(|_| ping::Behaviour::default())
            .map_err(|e| FloodError::Build(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(deadline))
            .build();
        Ok(Flooder { swarm, deadline })
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Opens one more connection to `target` at `addr` and waits until the target
    /// has decided on it: refused before the handshake (the dial fails), closed right
    /// after it (the target must first learn who we are), or served — a ping has
    /// crossed it, so the target has taken it in. Waiting for the ping keeps the
    /// target's view in step with ours: a connection we count as open is one the
    /// target counts too, so the next one is the newcomer.
    pub async fn open(&mut self, target: PeerId, addr: &Multiaddr) -> Result<(ConnectionId, Opened), FloodError> {
        let opts = SwarmDialOpts::peer_id(target).addresses(vec![addr.clone()]).condition(PeerCondition::Always).build();
        let id = opts.connection_id();
        self.swarm.dial(opts)?;
        let outcome = self.next(|event| match event {
            SwarmEvent::OutgoingConnectionError { connection_id, .. } if connection_id == id => Some(Opened::Refused),
            SwarmEvent::ConnectionClosed { connection_id, .. } if connection_id == id => Some(Opened::Closed),
            SwarmEvent::Behaviour(ping::Event { connection, result: Ok(_), .. }) if connection == id => {
                Some(Opened::Served)
            }
            _ => None,
        });
        Ok((id, outcome.await?))
    }

    /// Waits until connection `id` has closed.
    pub async fn wait_closed(&mut self, id: ConnectionId) -> Result<(), FloodError> {
        self.next(|event| match event {
            SwarmEvent::ConnectionClosed { connection_id, .. } if connection_id == id => Some(()),
            _ => None,
        })
        .await
    }

    /// Closes connection `id` (see [`Flooder::wait_closed`]); false if it is not open.
    pub fn close(&mut self, id: ConnectionId) -> bool {
        self.swarm.close_connection(id)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u32 {
        self.swarm.network_info().connection_counters().num_established()
    }

    /// Drives the swarm until `f` picks an event, for at most the deadline.
    async fn next<T>(&mut self, mut f: impl FnMut(SwarmEvent<ping::Event>) -> Option<T>) -> Result<T, FloodError> {
        let wait = async {
            loop {
                if let Some(out) = f(self.swarm.select_next_some().await) {
                    return out;
                }
            }
        };
        tokio::time::timeout(self.deadline, wait).await.map_err(|_| FloodError::Timeout(self.deadline))
    }
}
