//! Connections per remote IP address: a [`NetworkBehaviour`] that refuses a pending
//! inbound connection when its source address already has the maximum of inbound
//! connections, pending and established together.
//!
//! Counting starts in `handle_pending_inbound_connection` — before the Noise
//! handshake, so a refused connection costs no cryptography — and ends when the swarm
//! reports the connection failed (`ListenFailure`, also sent when another behaviour
//! refused it) or closed (`ConnectionClosed`). Only inbound connections count: they are
//! the ones a remote host chooses to open; our own dials are bounded by the total limit.
//!
//! What counts as one address: an IPv4 address (an IPv4-mapped IPv6 address is its
//! IPv4 address), or an IPv6 /64 network — one host usually holds a whole /64, so
//! counting single IPv6 addresses would limit nothing. Addresses without an IP
//! (relayed `/p2p-circuit` connections carry the relay's IP, which many peers share;
//! memory transports in tests) are not counted here: the per-peer and total limits
//! bound them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::PeerId;

use super::ConnectionRefused;

/// Bits of an IPv6 address that name one source: a /64 is what one host (or one home
/// network) is normally given, so its addresses count together.
pub const IPV6_SOURCE_PREFIX_BITS: u32 = 64;

/// The unit connections are counted by: an IPv4 address or an IPv6 /64 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a remote address, or `None` when it is not counted per IP (no IP
    /// component, or a relayed circuit).
    pub fn of(addr: &Multiaddr) -> Option<Source> {
        let mut ip = None;
        for protocol in addr.iter() {
            match protocol {
                Protocol::Ip4(v4) if ip.is_none() => ip = Some(IpAddr::V4(v4)),
                Protocol::Ip6(v6) if ip.is_none() => ip = Some(IpAddr::V6(v6)),
                Protocol::P2pCircuit => return None,
                _ => {}
            }
        }
        ip.map(Source::from_ip)
    }

    /// The source an IP address belongs to.
    pub fn from_ip(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let mask = u128::MAX << (128 - IPV6_SOURCE_PREFIX_BITS);
                    Source(IpAddr::V6(Ipv6Addr::from(v6.to_bits() & mask)))
                }
            },
        }
    }

    /// The IPv4 address, or the first address of the IPv6 /64.
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{IPV6_SOURCE_PREFIX_BITS}"),
        }
    }
}

/// Refuses inbound connections beyond `max` per [`Source`]. Memory: one entry per
/// counted connection, so it is bounded by the swarm's own connection limits.
#[derive(Debug)]
pub struct PerIp {
    max: u32,
    /// Every counted inbound connection (pending or established) and its source.
    connections: HashMap<ConnectionId, Source>,
    /// Counted connections per source; a source with none has no entry.
    per_source: HashMap<Source, u32>,
}

impl PerIp {
    /// Allows at most `max` inbound connections per source (0 refuses every inbound
    /// connection that has an IP).
    pub fn new(max: u32) -> PerIp {
        PerIp { max, connections: HashMap::new(), per_source: HashMap::new() }
    }

    /// Inbound connections counted for `source` now.
    pub fn count(&self, source: &Source) -> u32 {
        self.per_source.get(source).copied().unwrap_or(0)
    }

    fn forget(&mut self, connection_id: ConnectionId) {
        let Some(source) = self.connections.remove(&connection_id) else { return };
        if let Some(count) = self.per_source.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

impl NetworkBehaviour for PerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(source) = Source::of(remote_addr) else { return Ok(()) };
        let count = self.count(&source);
        if count >= self.max {
            return Err(ConnectionDenied::new(ConnectionRefused::PerIp { address: source, max: self.max }));
        }
        self.per_source.insert(source, count + 1);
        self.connections.insert(connection_id, source);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => self.forget(connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _peer: PeerId, _connection: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use libp2p::core::ConnectedPoint;
    use libp2p::swarm::ListenError;

    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    fn local() -> Multiaddr {
        addr("/ip4/127.0.0.1/tcp/4001")
    }

    fn pending(limit: &mut PerIp, id: usize, remote: &str) -> Result<(), ConnectionDenied> {
        limit.handle_pending_inbound_connection(ConnectionId::new_unchecked(id), &local(), &addr(remote))
    }

    fn failed(limit: &mut PerIp, id: usize, remote: &str) {
        let error = ListenError::Aborted;
        limit.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
            local_addr: &local(),
            send_back_addr: &addr(remote),
            error: &error,
            connection_id: ConnectionId::new_unchecked(id),
            peer_id: None,
        }));
    }

    fn closed(limit: &mut PerIp, id: usize, remote: &str) {
        let endpoint = ConnectedPoint::Listener { local_addr: local(), send_back_addr: addr(remote) };
        limit.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: PeerId::random(),
            connection_id: ConnectionId::new_unchecked(id),
            endpoint: &endpoint,
            cause: None,
            remaining_established: 0,
        }));
    }

    fn refusal(denied: ConnectionDenied) -> ConnectionRefused {
        denied.downcast::<ConnectionRefused>().unwrap()
    }

    #[test]
    fn at_the_limit_accepted_one_past_refused_with_a_typed_error() {
        let mut limit = PerIp::new(3);
        for id in 0..3 {
            pending(&mut limit, id, &format!("/ip4/10.0.0.1/tcp/{}", 5000 + id)).unwrap();
        }
        let source = Source::of(&addr("/ip4/10.0.0.1/tcp/1")).unwrap();
        assert_eq!(limit.count(&source), 3);
        let refused = refusal(pending(&mut limit, 3, "/ip4/10.0.0.1/udp/9/quic-v1").unwrap_err());
        assert_eq!(refused, ConnectionRefused::PerIp { address: source, max: 3 });
        assert_eq!(refused.limit(), super::super::Limit::PerIp);
        assert_eq!(refused.to_string(), "too many connections from 10.0.0.1: at most 3 per IP address");
        // A refusal is not counted, and another address has its own allowance.
        assert_eq!(limit.count(&source), 3);
        pending(&mut limit, 4, "/ip4/10.0.0.2/tcp/1").unwrap();
    }

    #[test]
    fn failed_and_closed_connections_free_their_slot() {
        let mut limit = PerIp::new(2);
        pending(&mut limit, 1, "/ip4/10.0.0.1/tcp/1").unwrap();
        pending(&mut limit, 2, "/ip4/10.0.0.1/tcp/2").unwrap();
        assert!(pending(&mut limit, 3, "/ip4/10.0.0.1/tcp/3").is_err());
        // The handshake failed (or another behaviour refused it): the slot is free.
        failed(&mut limit, 1, "/ip4/10.0.0.1/tcp/1");
        pending(&mut limit, 4, "/ip4/10.0.0.1/tcp/4").unwrap();
        assert!(pending(&mut limit, 5, "/ip4/10.0.0.1/tcp/5").is_err());
        // An established connection closed: free again.
        closed(&mut limit, 2, "/ip4/10.0.0.1/tcp/2");
        pending(&mut limit, 6, "/ip4/10.0.0.1/tcp/6").unwrap();
        // Reports about connections never counted (refused ones, outbound ones) and
        // repeated reports change nothing.
        failed(&mut limit, 5, "/ip4/10.0.0.1/tcp/5");
        closed(&mut limit, 2, "/ip4/10.0.0.1/tcp/2");
        closed(&mut limit, 99, "/ip4/10.0.0.1/tcp/99");
        assert!(pending(&mut limit, 7, "/ip4/10.0.0.1/tcp/7").is_err());
        for id in [4, 6] {
            closed(&mut limit, id, "/ip4/10.0.0.1/tcp/0");
        }
        assert!(limit.connections.is_empty() && limit.per_source.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let mut limit = PerIp::new(1);
        pending(&mut limit, 1, "/ip6/2001:db8:1:2::1/tcp/1").unwrap();
        let refused = refusal(pending(&mut limit, 2, "/ip6/2001:db8:1:2:ffff::9/tcp/1").unwrap_err());
        assert_eq!(refused.to_string(), "too many connections from 2001:db8:1:2::/64: at most 1 per IP address");
        pending(&mut limit, 3, "/ip6/2001:db8:1:3::1/tcp/1").unwrap();
        pending(&mut limit, 4, "/ip4/192.0.2.7/tcp/1").unwrap();
        assert!(pending(&mut limit, 5, "/ip6/::ffff:192.0.2.7/tcp/1").is_err());
    }

    #[test]
    fn relayed_and_ip_less_connections_are_not_counted() {
        let mut limit = PerIp::new(0);
        let circuit = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit";
        pending(&mut limit, 1, circuit).unwrap();
        pending(&mut limit, 2, "/memory/1234").unwrap();
        assert!(pending(&mut limit, 3, "/ip4/10.0.0.1/tcp/1").is_err());
        assert!(limit.connections.is_empty());
    }
}
