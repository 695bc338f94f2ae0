//! Connection limits for nodes and relays: how many connections a peer, an IP address
//! or everyone together may hold, and a ceiling on the process's memory above which
//! new connections are refused.
//!
//! [`Behaviour`] is one [`NetworkBehaviour`] to compose into a swarm. It runs libp2p's
//! `connection_limits` (one instance per limit, so a refusal names the limit that
//! refused it), `memory_connection_limits` and our own [`PerIp`], and turns every
//! refusal into a [`ConnectionRefused`] inside libp2p's [`ConnectionDenied`]: the
//! swarm reports it as `SwarmEvent::IncomingConnectionError` (or
//! `OutgoingConnectionError`) with `Denied { cause }`, and [`refusal`] finds ours in
//! the cause. Checks before the handshake (pending, per IP, memory) cost the refused
//! peer's connection no cryptography; per peer and total can only be checked once the
//! handshake has told who the peer is.
//!
//! [`ConnectionLimits::default`] are a node's limits; a relay sets its own from its
//! config (`[connections]` in `kith-relay.toml`).

mod per_ip;
#[cfg(feature = "test-support")]
pub mod testing;

use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm, dummy,
};
use libp2p::{PeerId, connection_limits, memory_connection_limits};

pub use per_ip::{IPV6_SOURCE_PREFIX_BITS, PerIp, Source};

/// A node's default [`ConnectionLimits::max_established`], in connections: its
/// contacts, group members, DHT neighbours and relays fit many times over; at the
/// ~50 KiB an idle connection costs (docs/PERFORMANCE.md) the cap is ~25 MiB.
pub const DEFAULT_MAX_ESTABLISHED: u32 = 512;

/// A node's default [`ConnectionLimits::max_established_incoming`], in connections:
/// three quarters of the total, so a flood of inbound connections can never take the
/// slots the node needs for its own dials (an eclipse).
pub const DEFAULT_MAX_ESTABLISHED_INCOMING: u32 = 384;

/// A node's default [`ConnectionLimits::max_pending_incoming`], in connections still
/// in their handshake: each costs Noise key agreement, and honest peers seldom
/// arrive dozens at once.
pub const DEFAULT_MAX_PENDING_INCOMING: u32 = 64;

/// A node's default [`ConnectionLimits::max_per_peer`], in connections: one peer
/// honestly holds up to about four (TCP, QUIC, a relayed circuit, a duplicate from
/// dialing each other at once); twice that leaves room without letting one peer
/// take many slots.
pub const DEFAULT_MAX_PER_PEER: u32 = 8;

/// A node's default [`ConnectionLimits::max_per_ip`], in inbound connections per IPv4
/// address or IPv6 /64, pending and established together. Many honest peers can share
/// one address (a home or campus NAT; every node of the end-to-end tests and of the
/// 50-member group benchmark runs on 127.0.0.1, up to ~50 inbound connections from
/// there), so it is not small; yet one address gets at most a sixth of the inbound
/// slots ([`DEFAULT_MAX_ESTABLISHED_INCOMING`]).
pub const DEFAULT_MAX_PER_IP: u32 = 64;

/// A node's default [`MemoryLimit`], in percent of the machine's physical memory used
/// by this process: a messenger that big is already in trouble, and refusing new
/// connections keeps it from growing further on peers' behalf.
pub const DEFAULT_MAX_MEMORY_PERCENT: u8 = 50;

/// Above how much memory new connections (inbound and our own dials) are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryLimit {
    /// Percent (1–100) of the machine's physical memory, used by this process.
    Percent(u8),
    /// Bytes of physical memory used by this process (for a container whose memory
    /// limit is below the machine's).
    Bytes(u64),
}

/// The limits [`Behaviour`] enforces. [`ConnectionLimits::default`] is a node's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Established connections in total, both directions
    /// (default [`DEFAULT_MAX_ESTABLISHED`]).
    pub max_established: u32,
    /// Established inbound connections (default [`DEFAULT_MAX_ESTABLISHED_INCOMING`]).
    pub max_established_incoming: u32,
    /// Inbound connections still in their handshake
    /// (default [`DEFAULT_MAX_PENDING_INCOMING`]).
    pub max_pending_incoming: u32,
    /// Established connections with one peer, both directions
    /// (default [`DEFAULT_MAX_PER_PEER`]).
    pub max_per_peer: u32,
    /// Inbound connections, pending and established, per IPv4 address or IPv6 /64;
    /// relayed connections are not counted per IP (default [`DEFAULT_MAX_PER_IP`]).
    pub max_per_ip: u32,
    /// Memory above which new connections are refused
    /// (default [`DEFAULT_MAX_MEMORY_PERCENT`] percent).
    pub max_memory: MemoryLimit,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_established: DEFAULT_MAX_ESTABLISHED,
            max_established_incoming: DEFAULT_MAX_ESTABLISHED_INCOMING,
            max_pending_incoming: DEFAULT_MAX_PENDING_INCOMING,
            max_per_peer: DEFAULT_MAX_PER_PEER,
            max_per_ip: DEFAULT_MAX_PER_IP,
            max_memory: MemoryLimit::Percent(DEFAULT_MAX_MEMORY_PERCENT),
        }
    }
}

/// Which limit refused a connection (a metrics label: [`Limit::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// `pending_incoming`: too many inbound handshakes at once.
    PendingIncoming,
    /// `incoming`: too many established inbound connections.
    Incoming,
    /// `total`: too many established connections.
    Total,
    /// `per_peer`: too many connections with this peer.
    PerPeer,
    /// `per_ip`: too many inbound connections from this address.
    PerIp,
    /// `memory`: the process uses more memory than allowed.
    Memory,
}

impl Limit {
    /// Every limit, in label order.
    pub const ALL: [Limit; 6] =
        [Limit::PendingIncoming, Limit::Incoming, Limit::Total, Limit::PerPeer, Limit::PerIp, Limit::Memory];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::PendingIncoming => "pending_incoming",
            Limit::Incoming => "incoming",
            Limit::Total => "total",
            Limit::PerPeer => "per_peer",
            Limit::PerIp => "per_ip",
            Limit::Memory => "memory",
        }
    }
}

/// Why a connection was refused: the cause inside libp2p's [`ConnectionDenied`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionRefused {
    /// Too many inbound connections in their handshake.
    #[error("too many connections being set up: at most {max} at once")]
    PendingIncoming {
        /// The limit.
        max: u32,
    },
    /// Too many established inbound connections.
    #[error("too many incoming connections: at most {max}")]
    Incoming {
        /// The limit.
        max: u32,
    },
    /// Too many established connections.
    #[error("too many connections: at most {max}")]
    Total {
        /// The limit.
        max: u32,
    },
    /// Too many connections with one peer.
    #[error("too many connections with {peer}: at most {max} per peer")]
    PerPeer {
        /// The peer.
        peer: PeerId,
        /// The limit.
        max: u32,
    },
    /// Too many inbound connections from one address.
    #[error("too many connections from {address}: at most {max} per IP address")]
    PerIp {
        /// The address (an IPv4 address or an IPv6 /64).
        address: Source,
        /// The limit.
        max: u32,
    },
    /// The process uses too much memory for more connections.
    #[error("using {used_bytes} bytes of memory, over the limit of {max_bytes}: no new connections")]
    Memory {
        /// Physical memory the process used when checked.
        used_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
}

impl ConnectionRefused {
    /// The limit that refused.
    pub fn limit(&self) -> Limit {
        match self {
            ConnectionRefused::PendingIncoming { .. } => Limit::PendingIncoming,
            ConnectionRefused::Incoming { .. } => Limit::Incoming,
            ConnectionRefused::Total { .. } => Limit::Total,
            ConnectionRefused::PerPeer { .. } => Limit::PerPeer,
            ConnectionRefused::PerIp { .. } => Limit::PerIp,
            ConnectionRefused::Memory { .. } => Limit::Memory,
        }
    }
}

/// Our refusal inside a swarm's `Denied { cause }`, if one of these limits refused.
pub fn refusal(cause: &ConnectionDenied) -> Option<&ConnectionRefused> {
    cause.downcast_ref::<ConnectionRefused>()
}

/// Enforces [`ConnectionLimits`]; compose it into the swarm's behaviour. Never emits
/// events: refusals reach the swarm's caller as connection errors.
pub struct Behaviour {
    limits: ConnectionLimits,
    per_ip: PerIp,
    /// One libp2p counter per limit, so each refusal says which limit it was.
    pending_incoming: connection_limits::Behaviour,
    incoming: connection_limits::Behaviour,
    total: connection_limits::Behaviour,
    per_peer: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Behaviour {
    /// Enforces `limits` from now on.
    pub fn new(limits: ConnectionLimits) -> Behaviour {
        let counter = |set: fn(connection_limits::ConnectionLimits, Option<u32>) -> connection_limits::ConnectionLimits,
                       max: u32| {
            connection_limits::Behaviour::new(set(connection_limits::ConnectionLimits::default(), Some(max)))
        };
        let memory = match limits.max_memory {
            MemoryLimit::Percent(percent) => {
                memory_connection_limits::Behaviour::with_max_percentage(f64::from(percent.clamp(1, 100)) / 100.0)
            }
            MemoryLimit::Bytes(bytes) => {
                memory_connection_limits::Behaviour::with_max_bytes(usize::try_from(bytes).unwrap_or(usize::MAX))
            }
        };
        Behaviour {
            per_ip: PerIp::new(limits.max_per_ip),
            pending_incoming: counter(
                connection_limits::ConnectionLimits::with_max_pending_incoming,
                limits.max_pending_incoming,
            ),
            incoming: counter(
                connection_limits::ConnectionLimits::with_max_established_incoming,
                limits.max_established_incoming,
            ),
            total: counter(connection_limits::ConnectionLimits::with_max_established, limits.max_established),
            per_peer: counter(connection_limits::ConnectionLimits::with_max_established_per_peer, limits.max_per_peer),
            memory,
            limits,
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// The memory limit in bytes (a percentage is resolved against the machine's
    /// physical memory when the behaviour is built).
    pub fn max_memory_bytes(&self) -> u64 {
        u64::try_from(self.memory.max_allowed_bytes()).unwrap_or(u64::MAX)
    }

    /// Our refusal for a denial by the memory limit.
    fn memory_refusal(&self, denied: ConnectionDenied) -> ConnectionDenied {
        let used_bytes = denied
            .downcast_ref::<memory_connection_limits::MemoryUsageLimitExceeded>()
            .map_or(0, |e| u64::try_from(e.process_physical_memory_bytes()).unwrap_or(u64::MAX));
        ConnectionDenied::new(ConnectionRefused::Memory { used_bytes, max_bytes: self.max_memory_bytes() })
    }
}

/// Replaces libp2p's refusal by ours.
fn refused(refusal: ConnectionRefused) -> impl FnOnce(ConnectionDenied) -> ConnectionDenied {
    move |_| ConnectionDenied::new(refusal)
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // Cheapest first. When one refuses, the swarm reports a `ListenFailure` to
        // every counter, so those that had already counted the connection let it go.
        self.pending_incoming
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
            .map_err(refused(ConnectionRefused::PendingIncoming { max: self.limits.max_pending_incoming }))?;
        self.per_ip.handle_pending_inbound_connection(connection_id, local_addr, remote_addr)?;
        if let Err(denied) = self.memory.handle_pending_inbound_connection(connection_id, local_addr, remote_addr) {
            return Err(self.memory_refusal(denied));
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_incoming.handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)?;
        // Total before incoming: when both are full (a relay sets them equal), the
        // relay is simply full.
        self.total
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map_err(refused(ConnectionRefused::Total { max: self.limits.max_established }))?;
        self.incoming
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map_err(refused(ConnectionRefused::Incoming { max: self.limits.max_established_incoming }))?;
        self.per_peer
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map_err(refused(ConnectionRefused::PerPeer { peer, max: self.limits.max_per_peer }))?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Err(denied) =
            self.memory.handle_pending_outbound_connection(connection_id, peer, addresses, effective_role)
        {
            return Err(self.memory_refusal(denied));
        }
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.total
            .handle_established_outbound_connection(connection_id, peer, addr, role_override, port_use)
            .map_err(refused(ConnectionRefused::Total { max: self.limits.max_established }))?;
        self.per_peer
            .handle_established_outbound_connection(connection_id, peer, addr, role_override, port_use)
            .map_err(refused(ConnectionRefused::PerPeer { peer, max: self.limits.max_per_peer }))?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.per_ip.on_swarm_event(event);
        self.pending_incoming.on_swarm_event(event);
        self.incoming.on_swarm_event(event);
        self.total.on_swarm_event(event);
        self.per_peer.on_swarm_event(event);
        self.memory.on_swarm_event(event);
    }

    fn on_connection_handler_event(&mut self, _peer: PeerId, _connection: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        // None of the counters ever has anything to say to the swarm.
        Poll::Pending
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use libp2p::core::ConnectedPoint;
    use libp2p::swarm::behaviour::ConnectionEstablished;

    use super::*;

    /// Limits that never bind, but for the ones a test sets.
    fn loose() -> ConnectionLimits {
        ConnectionLimits {
            max_established: 1000,
            max_established_incoming: 1000,
            max_pending_incoming: 1000,
            max_per_peer: 1000,
            max_per_ip: 1000,
            max_memory: MemoryLimit::Percent(100),
        }
    }

    fn local() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/4001".parse().unwrap()
    }

    fn remote(port: usize) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    /// Runs an inbound connection through both checks and reports it established.
    fn connect(limits: &mut Behaviour, id: usize, peer: PeerId) -> Result<(), ConnectionRefused> {
        let connection_id = ConnectionId::new_unchecked(id);
        let refused = |denied: ConnectionDenied| denied.downcast::<ConnectionRefused>().unwrap();
        limits.handle_pending_inbound_connection(connection_id, &local(), &remote(id)).map_err(refused)?;
        limits.handle_established_inbound_connection(connection_id, peer, &local(), &remote(id)).map_err(refused)?;
        let endpoint = ConnectedPoint::Listener { local_addr: local(), send_back_addr: remote(id) };
        limits.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        Ok(())
    }

    #[test]
    fn each_limit_refuses_with_its_own_typed_error() {
        let peer = PeerId::random();
        let mut limits = Behaviour::new(ConnectionLimits { max_per_peer: 2, ..loose() });
        connect(&mut limits, 1, peer).unwrap();
        connect(&mut limits, 2, peer).unwrap();
        let refused = connect(&mut limits, 3, peer).unwrap_err();
        assert_eq!(refused, ConnectionRefused::PerPeer { peer, max: 2 });
        assert_eq!(refused.limit(), Limit::PerPeer);
        connect(&mut limits, 4, PeerId::random()).unwrap();

        let mut limits = Behaviour::new(ConnectionLimits { max_established: 2, ..loose() });
        connect(&mut limits, 1, PeerId::random()).unwrap();
        connect(&mut limits, 2, PeerId::random()).unwrap();
        assert_eq!(connect(&mut limits, 3, PeerId::random()), Err(ConnectionRefused::Total { max: 2 }));

        let mut limits =
            Behaviour::new(ConnectionLimits { max_established: 2, max_established_incoming: 2, ..loose() });
        connect(&mut limits, 1, PeerId::random()).unwrap();
        connect(&mut limits, 2, PeerId::random()).unwrap();
        assert_eq!(connect(&mut limits, 3, PeerId::random()), Err(ConnectionRefused::Total { max: 2 }));

        let mut limits = Behaviour::new(ConnectionLimits { max_established_incoming: 1, ..loose() });
        connect(&mut limits, 1, PeerId::random()).unwrap();
        assert_eq!(connect(&mut limits, 2, PeerId::random()), Err(ConnectionRefused::Incoming { max: 1 }));

        let mut limits = Behaviour::new(ConnectionLimits { max_per_ip: 1, ..loose() });
        connect(&mut limits, 1, PeerId::random()).unwrap();
        assert_eq!(connect(&mut limits, 2, PeerId::random()).unwrap_err().limit(), Limit::PerIp);

        // Handshakes in progress: the third is refused before it starts.
        let mut limits = Behaviour::new(ConnectionLimits { max_pending_incoming: 2, ..loose() });
        for id in 1..=2 {
            limits.handle_pending_inbound_connection(ConnectionId::new_unchecked(id), &local(), &remote(id)).unwrap();
        }
        let denied =
            limits.handle_pending_inbound_connection(ConnectionId::new_unchecked(3), &local(), &remote(3)).unwrap_err();
        assert_eq!(refusal(&denied), Some(&ConnectionRefused::PendingIncoming { max: 2 }));
        assert_eq!(refusal(&denied).unwrap().to_string(), "too many connections being set up: at most 2 at once");
    }

    #[test]
    fn memory_limit_refuses_inbound_and_outbound() {
        // This test process uses far more than 1 MiB.
        let mut limits = Behaviour::new(ConnectionLimits { max_memory: MemoryLimit::Bytes(1 << 20), ..loose() });
        assert_eq!(limits.max_memory_bytes(), 1 << 20);
        let refused = connect(&mut limits, 1, PeerId::random()).unwrap_err();
        let ConnectionRefused::Memory { used_bytes, max_bytes } = refused else { panic!("{refused:?}") };
        assert!(used_bytes > max_bytes && max_bytes == 1 << 20, "{used_bytes} {max_bytes}");
        let denied = limits
            .handle_pending_outbound_connection(ConnectionId::new_unchecked(2), None, &[], Endpoint::Dialer)
            .unwrap_err();
        assert_eq!(refusal(&denied).map(ConnectionRefused::limit), Some(Limit::Memory));
        // A percentage is resolved against the machine's memory.
        assert!(Behaviour::new(ConnectionLimits::default()).max_memory_bytes() > 1 << 20);
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<&str> = Limit::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(labels.len(), Limit::ALL.len());
    }
}
