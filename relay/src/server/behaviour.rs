//! The relay's composed libp2p behaviour: one field per role, the optional roles in
//! [`Toggle`] so the config can switch them off.
//!
//! Library defaults are overridden on purpose: Kademlia speaks kith's protocol name
//! ([`KAD_PROTOCOL`]) in server mode with a bounded record store; identify announces
//! kith's version ([`IDENTIFY_VERSION`]); the circuit relay advertises itself from the
//! start (a dedicated relay needs no confirmation that it is reachable) and, under the
//! `members` policy, grants reservations to members only; AutoNAT answers probes but
//! never probes anyone itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kith_p2p::node::{IDENTIFY_VERSION, KAD_PROTOCOL};
use kith_p2p::{conn_limits, grouplog, mailbox};
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{PeerId, autonat, identify, identity, kad, ping, relay, request_response};

use super::dht::Dht;
use crate::config::RelayConfig;

/// How long a mailbox request may take, from reading it to writing the response.
/// Generous: a full drain page is 8 MiB read from disk and written to a slow link.
const MAILBOX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Mailbox streams one connection may have open at once; beyond it the peer's new
/// streams are refused, so one peer cannot tie up the request table.
const MAILBOX_STREAMS_PER_CONNECTION: usize = 16;

/// How long a Kademlia query the relay itself runs (bootstrap, replication) may take.
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Room in a Kademlia message beyond its record: libp2p's default packet cap, which
/// fits a full list of closer peers with their addresses.
const KAD_PACKET_HEADROOM: usize = 16 * 1024;

/// Everything the relay speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Connection limits (`[connections]`); first, so a refused connection reaches no
    /// other role.
    pub(crate) limits: conn_limits::Behaviour,
    /// The kith DHT, server mode (`[dht]`), bootstrapping only from known peers.
    pub(crate) kad: Toggle<Dht>,
    /// Circuit relay v2 server (`[circuit]`).
    pub(crate) relay: Toggle<relay::Behaviour>,
    /// AutoNAT v1, answering dial-back probes (`[autonat]`).
    pub(crate) autonat: Toggle<autonat::Behaviour>,
    /// `/kith/mailbox/1`, inbound only (answers `Disabled` when `[mailbox]` is off).
    pub(crate) mailbox: request_response::Behaviour<mailbox::Codec>,
    /// `/kith/grouplog/1`, inbound only (answers `Disabled` when `[grouplog]` is off).
    pub(crate) grouplog: request_response::Behaviour<grouplog::Codec>,
    /// Always on: peers learn our addresses and protocols, we learn theirs.
    pub(crate) identify: identify::Behaviour,
    /// Always on: keeps idle connections alive and measures round trips.
    pub(crate) ping: ping::Behaviour,
    /// Raw streams for the media role (`[media]`): `/kith/media/1` uploads and
    /// `/kith/blob/1` downloads, served by `media_service`. Off, the relay offers
    /// neither protocol.
    pub(crate) streams: Toggle<libp2p_stream::Behaviour>,
}

impl Behaviour {
    /// Builds the behaviour from the config. `members` is the parsed allow-list, used
    /// only under the `members` policy (`None` means open).
    pub(crate) fn new(
        key: &identity::Keypair,
        config: &RelayConfig,
        members: Option<Arc<HashSet<PeerId>>>,
    ) -> Behaviour {
        let peer_id = key.public().to_peer_id();

        let kad = config.dht.enabled.then(|| {
            let store = MemoryStore::with_config(
                peer_id,
                MemoryStoreConfig {
                    max_records: config.dht.max_records as usize,
                    max_value_bytes: config.dht.max_record_bytes as usize,
                    ..MemoryStoreConfig::default()
                },
            );
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(KAD_QUERY_TIMEOUT);
            // The server refreshes the routing table itself, and only when it holds
            // a peer (`Dht::refresh`): periodic bootstrap with an empty table warns.
            kad_config.set_periodic_bootstrap_interval(None);
            // A Kademlia message carries at most one record, plus peer lists.
            kad_config.set_max_packet_size(
                (config.dht.max_record_bytes as usize).saturating_add(KAD_PACKET_HEADROOM),
            );
            // PUT_VALUE records are stored as they come (the default): kith nodes
            // verify peer record signatures themselves when they read them.
            let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
            // Always a server: a relay exists to be queried, whatever kad's automatic
            // mode would conclude from (un)confirmed external addresses.
            kad.set_mode(Some(kad::Mode::Server));
            Dht::new(kad)
        });

        let relay = config.circuit.enabled.then(|| {
            let c = &config.circuit;
            let mut relay_config = relay::Config {
                max_reservations: c.max_reservations as usize,
                max_reservations_per_peer: c.max_reservations_per_peer as usize,
                reservation_duration: c.reservation_duration(),
                max_circuits: c.max_circuits as usize,
                max_circuits_per_peer: c.max_circuits_per_peer as usize,
                max_circuit_duration: c.max_circuit_duration(),
                max_circuit_bytes: c.max_circuit_bytes,
                // Keeps libp2p's per-peer and per-IP rate limiters for reservations
                // and circuits.
                ..relay::Config::default()
            };
            if let Some(members) = members {
                // Checked first, so a refused non-member does not use up the rate
                // limiters' allowance. Circuits are not gated: their destination must
                // hold a reservation, hence be a member, and anyone may reach it.
                relay_config.reservation_rate_limiters.insert(
                    0,
                    Box::new(move |peer: PeerId, _: &libp2p::Multiaddr, _| members.contains(&peer)),
                );
            }
            let mut relay = relay::Behaviour::new(peer_id, relay_config);
            // Advertise the hop protocol now; by default it waits for a confirmed
            // external address, which a dedicated relay configures instead.
            relay.set_status(Some(relay::Status::Enable));
            relay
        });

        let autonat = config.autonat.enabled.then(|| {
            autonat::Behaviour::new(
                peer_id,
                autonat::Config {
                    // Server only: never probe connected peers about our own
                    // reachability (no server is ever added either).
                    use_connected: false,
                    only_global_ips: config.autonat.only_global_ips,
                    ..autonat::Config::default()
                },
            )
        });

        let mailbox = request_response::Behaviour::with_codec(
            mailbox::Codec::default(),
            [(
                mailbox::PROTOCOL,
                request_response::ProtocolSupport::Inbound,
            )],
            request_response::Config::default()
                .with_request_timeout(MAILBOX_REQUEST_TIMEOUT)
                .with_max_concurrent_streams(MAILBOX_STREAMS_PER_CONNECTION),
        );

        // The same bounds as the mailbox: a group log page is as large as a drain page.
        let grouplog = request_response::Behaviour::with_codec(
            grouplog::Codec::default(),
            [(
                grouplog::PROTOCOL,
                request_response::ProtocolSupport::Inbound,
            )],
            request_response::Config::default()
                .with_request_timeout(MAILBOX_REQUEST_TIMEOUT)
                .with_max_concurrent_streams(MAILBOX_STREAMS_PER_CONNECTION),
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                .with_agent_version(format!("kith-relay/{}", env!("CARGO_PKG_VERSION")))
                .with_push_listen_addr_updates(true),
        );

        Behaviour {
            limits: conn_limits::Behaviour::new(config.connections.limits()),
            kad: kad.into(),
            relay: relay.into(),
            autonat: autonat.into(),
            mailbox,
            grouplog,
            identify,
            ping: ping::Behaviour::default(),
            streams: config
                .media
                .enabled
                .then(libp2p_stream::Behaviour::new)
                .into(),
        }
    }
}
