//! A raw kith client for hostile tests: it seals real end-to-end envelopes as any
//! identity the test gives it (a stranger's, or a member's taken from its keystore)
//! and sends whatever payloads the test chooses over `/kith/dm/1` to a real node,
//! where the real client would refuse to misbehave; and a bare client of a relay's
//! protocols ([`ask_relay`]), for what a stranger with no kith node can do there.

use std::time::Duration;

use futures::StreamExt;
use kith_p2p::dm::{self, DmRequest, DmResult};
use kith_p2p::envelope::{Sealer, SealerConfig};
use kith_p2p::home::Home;
use kith_p2p::identity::Identity;
use kith_p2p::keystore;
use kith_p2p::libp2p::request_response::{self, ProtocolSupport};
use kith_p2p::libp2p::swarm::SwarmEvent;
use kith_p2p::libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use kith_p2p::payload::Payload;

use crate::Peer;

/// How long one request may take.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// The identity of a peer whose home has no passphrase (read from its keystore file,
/// which the running daemon does not lock).
pub fn identity_of(peer: &Peer) -> Identity {
    keystore::load(&Home::at(peer.home()).keystore_path(), None).unwrap()
}

/// A libp2p client that speaks `/kith/dm/1` as `identity`.
pub struct RawPeer {
    runtime: tokio::runtime::Runtime,
    swarm: Swarm<request_response::Behaviour<dm::Codec>>,
    sealer: Sealer,
    /// Whose identity it uses.
    pub identity: Identity,
}

impl RawPeer {
    /// A client with `identity`.
    pub fn new(identity: Identity) -> RawPeer {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let swarm = runtime.block_on(async {
            kith_p2p::libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
                .with_tokio()
                .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
                .unwrap()
                .with_behaviour(|_| {
                    request_response::Behaviour::with_codec(
                        dm::Codec::default(),
                        [(dm::PROTOCOL, ProtocolSupport::Outbound)],
                        request_response::Config::default().with_request_timeout(ANSWER_DEADLINE),
                    )
                })
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                .build()
        });
        let sealer = Sealer::new(&identity, SealerConfig::default());
        RawPeer { runtime, swarm, sealer, identity }
    }

    /// Seal `payloads` for `to` (a running peer) and send them in one request; the
    /// node's verdict on each.
    pub fn send(&mut self, to: &Peer, payloads: &[Payload]) -> Vec<DmResult> {
        let recipient = identity_of(to).public();
        let envelopes = payloads
            .iter()
            .map(|p| self.sealer.seal(&recipient.e2e_public, &p.encode().unwrap()).unwrap())
            .collect();
        self.send_envelopes(to, envelopes)
    }

    /// Send envelopes as they are (sealed by anyone: a captured one, say) to `to` in
    /// one request; the node's verdict on each.
    pub fn send_envelopes(&mut self, to: &Peer, envelopes: Vec<Vec<u8>>) -> Vec<DmResult> {
        let peer: PeerId = to.peer_id.parse().unwrap();
        let addrs: Vec<Multiaddr> = to.addrs.iter().map(|a| a.parse().unwrap()).collect();
        let swarm = &mut self.swarm;
        self.runtime.block_on(async {
            let id = swarm.behaviour_mut().send_request_with_addresses(&peer, DmRequest { envelopes }, addrs);
            let answer = async {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response },
                            ..
                        }) if request_id == id => return response.results,
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, error, .. })
                            if request_id == id =>
                        {
                            panic!("request failed: {error}");
                        }
                        _ => {}
                    }
                }
            };
            tokio::time::timeout(ANSWER_DEADLINE, answer).await.expect("an answer before the deadline")
        })
    }
}

/// A client of one of a relay's request-response protocols (`codec` on `protocol`)
/// with a new identity of its own, no kith node: sends the request `next` makes from
/// the previous response (`None` at first) until it makes none, and returns the
/// responses in order. Each answer is awaited at most [`ANSWER_DEADLINE`].
pub fn ask_relay<C>(
    relay: &crate::Relay,
    codec: C,
    protocol: kith_p2p::libp2p::StreamProtocol,
    mut next: impl FnMut(Option<&C::Response>) -> Option<C::Request>,
) -> Vec<C::Response>
where
    C: request_response::Codec<Protocol = kith_p2p::libp2p::StreamProtocol> + Clone + Send + 'static,
{
    let addr: Multiaddr = relay.addr().parse().unwrap();
    let Some(kith_p2p::libp2p::multiaddr::Protocol::P2p(relay_id)) = addr.iter().last() else { panic!("no peer id in {addr}") };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut swarm = kith_p2p::libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(codec, [(protocol, ProtocolSupport::Outbound)], request_response::Config::default())
            })
            .unwrap()
            .build();
        let mut responses: Vec<C::Response> = Vec::new();
        while let Some(request) = next(responses.last()) {
            let id = swarm.behaviour_mut().send_request_with_addresses(&relay_id, request, vec![addr.clone()]);
            let response = tokio::time::timeout(ANSWER_DEADLINE, async {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::Behaviour(request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response },
                            ..
                        }) if request_id == id => return response,
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, error, .. }) if request_id == id => {
                            panic!("the relay did not answer: {error}")
                        }
                        _ => {}
                    }
                }
            })
            .await
            .expect("the relay answers in time");
            responses.push(response);
        }
        responses
    })
}
