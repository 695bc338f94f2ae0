//! The composed libp2p behaviour of a kith node.

use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, dcutr, identify, identity, kad, mdns, ping, relay, request_response};

use crate::{dm, mailbox};

/// Kademlia under kith's own protocol name, so kith nodes form their own DHT instead
/// of joining (and answering for) the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/kad/1");

/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/kith/1";

/// Everything a kith node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) dm: request_response::Behaviour<dm::Codec>,
    /// Deposits to recipients' relays and drains of our own mailboxes (client side).
    pub(crate) mailbox: request_response::Behaviour<mailbox::Codec>,
    /// Reservations and circuits through relays, for peers without a direct path.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Upgrades relayed connections to direct ones by hole punching.
    pub(crate) dcutr: dcutr::Behaviour,
    /// Tells us whether our addresses are reachable from outside.
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

impl Behaviour {
    pub(crate) fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        mdns_on: bool,
        request_timeout: std::time::Duration,
    ) -> std::io::Result<Behaviour> {
        let peer_id = key.public().to_peer_id();
        let dm = request_response::Behaviour::with_codec(
            dm::Codec,
            [(dm::PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        let mailbox = request_response::Behaviour::with_codec(
            mailbox::Codec,
            [(mailbox::PROTOCOL, request_response::ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(std::time::Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
        // Every kith node serves the DHT: peers on one LAN or loopback have no
        // "confirmed external address" for kad's automatic mode to go by.
        kad.set_mode(Some(kad::Mode::Server));
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                .with_push_listen_addr_updates(true),
        );
        let mdns = if mdns_on {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?)
        } else {
            None
        };
        Ok(Behaviour {
            dm,
            mailbox,
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
            kad,
            identify,
            ping: ping::Behaviour::default(),
            mdns: mdns.into(),
        })
    }
}
