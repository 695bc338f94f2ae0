//! The composed libp2p behaviour of a kith node.

use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, dcutr, gossipsub, identify, identity, kad, mdns, ping, relay, request_response};

use crate::{conn_limits, dm, grouplog, mailbox};

/// Kademlia under kith's own protocol name, so kith nodes form their own DHT instead
/// of joining (and answering for) the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/kad/1");

/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/kith/1";

/// Everything a kith node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Connection limits; first, so a refused connection reaches no other behaviour.
    pub(crate) limits: conn_limits::Behaviour,
    pub(crate) dm: request_response::Behaviour<dm::Codec>,
    /// Deposits to recipients' relays and drains of our own mailboxes (client side).
    pub(crate) mailbox: request_response::Behaviour<mailbox::Codec>,
    /// Appends to and fetches from group logs on relays (client side).
    pub(crate) grouplog: request_response::Behaviour<grouplog::Codec>,
    /// Group messages to online members, on one topic per group.
    pub(crate) gossipsub: gossipsub::Behaviour,
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
    /// Raw streams: `/kith/blob/1`, files fetched from and served to peers.
    pub(crate) blobs: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        mdns_on: bool,
        timers: &super::Timers,
    ) -> std::io::Result<Behaviour> {
        let request_timeout = timers.request_timeout;
        let peer_id = key.public().to_peer_id();
        let dm = request_response::Behaviour::with_codec(
            dm::Codec::default(),
            // Requests go on `/kith/dm/1` alone: with one protocol to propose, the
            // stream's negotiation costs no round trip (two would cost one per
            // message). `/kith/dm/2` is answered and listed, to say larger batches
            // are taken (see `dm`).
            [(dm::PROTOCOL, request_response::ProtocolSupport::Full), (dm::PROTOCOL_V2, request_response::ProtocolSupport::Inbound)],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        let mailbox = request_response::Behaviour::with_codec(
            mailbox::Codec::default(),
            [(mailbox::PROTOCOL, request_response::ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        let grouplog = request_response::Behaviour::with_codec(
            grouplog::Codec::default(),
            [(grouplog::PROTOCOL, request_response::ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        // Anonymous: a gossip message carries no author peer id, sequence number or
        // transport signature. Group messages authenticate their authors inside their
        // encryption (see `group::sender_key`), so a gossip peer that is not a member
        // cannot tell who wrote what.
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Anonymous,
            gossip_config(timers.gossip_heartbeat).map_err(std::io::Error::other)?,
        )
        .map_err(std::io::Error::other)?;
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(timers.dht_query_timeout);
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
            limits: conn_limits::Behaviour::new(timers.connection_limits.clone()),
            dm,
            mailbox,
            grouplog,
            gossipsub,
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, timers.autonat.config()),
            kad,
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(timers.ping_interval)),
            mdns: mdns.into(),
            blobs: libp2p_stream::Behaviour::new(),
        })
    }
}

/// Gossipsub for group messages. Messages are anonymous (`ValidationMode::Anonymous`
/// refuses any that carry an author, sequence number or signature). Every message is
/// checked by the node before it is forwarded (`validate_messages`: a non-member's or
/// forged message goes no further); ids are content hashes, so a re-published
/// message is a duplicate; the
/// publisher sends to its mesh only (`flood_publish` off), so what a sender uploads
/// per message does not grow with the group.
fn gossip_config(heartbeat: std::time::Duration) -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .flood_publish(false)
        .max_transmit_size(crate::grouplog::MAX_ITEM_LEN + 4 * 1024)
        .heartbeat_interval(heartbeat)
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec()))
        .build()
        .map_err(|e| e.to_string())
}
