//! The TCP transport of nodes and relays: libp2p's, with Noise and yamux, plus one
//! repair. A dial that reuses the listening port (hole punching needs it: both sides'
//! packets must come from the ports the other side knows) binds `0.0.0.0:<port>`,
//! which fails with `EADDRINUSE` when another socket without `SO_REUSEADDR` holds that
//! port on some other local address (any program's ephemeral port, or one lingering
//! in `TIME_WAIT`; on a machine with several addresses it happens). libp2p-tcp falls
//! back to a fresh port only for `EADDRNOTAVAIL`, so every redial failed the same way
//! and the peer stayed unreachable while the other socket lived; the suite saw it as
//! a contact that never connected. [`PortReuseFallback`] retries such a dial once
//! from a fresh port.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::{Transport, upgrade};
use libp2p::{Multiaddr, PeerId, identity, noise, tcp, yamux};

/// libp2p's tokio TCP transport whose port-reusing dials fall back to a fresh port
/// when the listening port cannot be bound for them. Listening and every other dial
/// are libp2p's own.
pub struct PortReuseFallback {
    inner: tcp::tokio::Transport,
    config: tcp::Config,
}

impl PortReuseFallback {
    /// A transport with `config` (also used for the fallback dials).
    pub fn new(config: tcp::Config) -> PortReuseFallback {
        PortReuseFallback { inner: tcp::tokio::Transport::new(config.clone()), config }
    }
}

impl Transport for PortReuseFallback {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = <tcp::tokio::Transport as Transport>::ListenerUpgrade;
    type Dial = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn listen_on(&mut self, id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<io::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        let first = self.inner.dial(addr.clone(), opts)?;
        if opts.port_use != PortUse::Reuse {
            return Ok(first.boxed());
        }
        let config = self.config.clone();
        Ok(async move {
            match first.await {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tracing::debug!(%addr, "listening port unavailable for dialing; dialing from a fresh port");
                    // Without listeners this transport has no port to reuse: a fresh one.
                    let fresh = DialOpts { port_use: PortUse::New, ..opts };
                    let dial = tcp::tokio::Transport::new(config).dial(addr, fresh).map_err(|e| match e {
                        TransportError::Other(e) => e,
                        TransportError::MultiaddrNotSupported(a) => {
                            io::Error::new(io::ErrorKind::InvalidInput, format!("unsupported address {a}"))
                        }
                    })?;
                    dial.await
                }
                other => other,
            }
        }
        .boxed())
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// The TCP transport of a node or relay with key `key`: [`PortReuseFallback`] with
/// `TCP_NODELAY`, upgraded as [`secure`] does. Returned in the shape
/// `SwarmBuilder::with_other_transport` takes.
pub fn transport(
    key: &identity::Keypair,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    secure(PortReuseFallback::new(tcp::Config::default().nodelay(true)), key)
}

/// `tcp` upgraded with Noise and yamux as `SwarmBuilder::with_tcp` would, boxed.
pub(crate) fn secure<T>(
    tcp: T,
    key: &identity::Keypair,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>>
where
    T: Transport<Output = tcp::tokio::TcpStream, Error = io::Error> + Send + Unpin + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    Ok(tcp
        .upgrade(upgrade::Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;
    use std::time::Duration;

    use futures::StreamExt;
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Swarm, ping};

    use super::*;

    fn swarm() -> Swarm<ping::Behaviour> {
        libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_other_transport(transport)
            .unwrap()
            .with_behaviour(|_| ping::Behaviour::default())
            .unwrap()
            .build()
    }

    /// Listens on 127.0.0.1 and returns the bound address.
    async fn listening(swarm: &mut Swarm<ping::Behaviour>) -> SocketAddr {
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                let mut parts = address.iter();
                if let (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) = (parts.next(), parts.next()) {
                    return SocketAddr::new(ip.into(), port);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_port_reusing_dial_that_cannot_bind_connects_from_a_fresh_port() {
        let mut alice = swarm();
        let mut bob = swarm();
        let alice_addr = listening(&mut alice).await;
        let bob_addr = listening(&mut bob).await;
        // Another socket holds alice's port on another local address, without
        // SO_REUSEADDR (any program's ephemeral port; here 127.0.0.2): a dial that
        // reuses alice's listening port binds 0.0.0.0:port, which that socket forbids.
        let squatter = tokio::net::TcpSocket::new_v4().unwrap();
        squatter.bind(SocketAddr::new([127, 0, 0, 2].into(), alice_addr.port())).unwrap();

        let bob_id = *bob.local_peer_id();
        let target = Multiaddr::from(bob_addr.ip()).with(Protocol::Tcp(bob_addr.port())).with(Protocol::P2p(bob_id));
        alice.dial(target).unwrap();
        let connected = async {
            loop {
                tokio::select! {
                    event = alice.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                        SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                        _ => {}
                    },
                    _ = bob.select_next_some() => {}
                }
            }
        };
        let peer = tokio::time::timeout(Duration::from_secs(10), connected).await.unwrap();
        assert_eq!(peer, Ok(bob_id));
    }
}
