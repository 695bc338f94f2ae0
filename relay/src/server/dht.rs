//! The relay's Kademlia behaviour, which never tries to bootstrap from nobody.
//!
//! A relay is where kith peers bootstrap; it has no bootstrap peers of its own. Left
//! alone, libp2p's Kademlia tries to bootstrap when a listen address appears while
//! no peer is connected (at every start) and every five minutes, and with an empty
//! routing table each attempt logs `Failed to trigger bootstrap: No known peers` as
//! a warning — an operator's first sight of a healthy relay. So [`Dht`] wraps it:
//!
//! - the new-listen-address event is not passed on while the routing table is
//!   empty (it only schedules such a bootstrap; Kademlia otherwise uses the
//!   relay's listen addresses only for provider records it publishes itself, and a
//!   relay publishes none);
//! - periodic bootstrap is off in the config ([`Dht::new`]), and the server calls
//!   [`Dht::refresh`] on its own timer, which bootstraps only with peers to ask.
//!
//! Kademlia's own bootstrap after a peer joins the routing table is untouched: then
//! there is somebody to ask.

use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, kad};

/// What [`Dht::refresh`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// A bootstrap query was started.
    Started,
    /// The routing table is empty: nobody to ask, nothing done.
    NoPeers,
}

/// Kademlia in server mode, with bootstrap only when a peer is known.
pub(crate) struct Dht {
    inner: kad::Behaviour<MemoryStore>,
}

impl Dht {
    /// Wraps `inner`, whose config must have periodic bootstrap off
    /// (`kad::Config::set_periodic_bootstrap_interval(None)`).
    pub(crate) fn new(inner: kad::Behaviour<MemoryStore>) -> Dht {
        Dht { inner }
    }

    /// Whether the routing table holds no peer.
    pub(crate) fn knows_no_peer(&mut self) -> bool {
        self.inner
            .kbuckets()
            .all(|bucket| bucket.num_entries() == 0)
    }

    /// Refreshes the routing table by a bootstrap query if it holds a peer;
    /// the periodic bootstrap that libp2p would otherwise run.
    pub(crate) fn refresh(&mut self) -> Refresh {
        if self.knows_no_peer() {
            return Refresh::NoPeers;
        }
        match self.inner.bootstrap() {
            Ok(_) => Refresh::Started,
            Err(kad::NoKnownPeers()) => Refresh::NoPeers,
        }
    }
}

impl Deref for Dht {
    type Target = kad::Behaviour<MemoryStore>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Dht {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl NetworkBehaviour for Dht {
    type ConnectionHandler = <kad::Behaviour<MemoryStore> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = kad::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // The only effect of this event with an empty table is a bootstrap that
        // fails for want of peers (see the module header).
        if matches!(event, FromSwarm::NewListenAddr(_)) && self.knows_no_peer() {
            return;
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::StreamExt;
    use libp2p::kad::store::MemoryStore;
    use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
    use libp2p::{Swarm, SwarmBuilder, identity, kad, noise, tcp, yamux};
    use tracing::field::{Field, Visit};
    use tracing::{Dispatch, Level, Subscriber};
    use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

    use super::*;

    /// Bound on every wait (a busy 2-core machine).
    const DEADLINE: Duration = Duration::from_secs(30);

    /// Warnings logged under one dispatcher.
    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);

    impl Warnings {
        fn dispatch(&self) -> Dispatch {
            Dispatch::new(tracing_subscriber::registry().with(self.clone()))
        }

        fn taken(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl<S: Subscriber> Layer<S> for Warnings {
        fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
            struct Message(String);
            impl Visit for Message {
                fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            if *event.metadata().level() <= Level::WARN {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0.lock().unwrap().push(message.0);
            }
        }
    }

    fn kad_behaviour(key: &identity::Keypair) -> kad::Behaviour<MemoryStore> {
        let peer_id = key.public().to_peer_id();
        let mut config = kad::Config::new(kith_p2p::node::KAD_PROTOCOL);
        config.set_periodic_bootstrap_interval(None);
        let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), config);
        kad.set_mode(Some(kad::Mode::Server));
        kad
    }

    fn swarm<B: NetworkBehaviour>(behaviour: impl FnOnce(&identity::Keypair) -> B) -> Swarm<B> {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key| behaviour(key))
            .unwrap()
            .build()
    }

    /// Polls `swarm` under `dispatch` until it has nothing more to give.
    fn drain<B: NetworkBehaviour>(
        swarm: &mut Swarm<B>,
        dispatch: &Dispatch,
        cx: &mut Context<'_>,
    ) -> Vec<SwarmEvent<B::ToSwarm>> {
        tracing::dispatcher::with_default(dispatch, || {
            let mut events = Vec::new();
            while let Poll::Ready(Some(event)) = swarm.poll_next_unpin(cx) {
                events.push(event);
            }
            events
        })
    }

    /// A relay with nobody to bootstrap from logs no bootstrap warning, while plain
    /// Kademlia, started after it and polled alongside, does: once the plain one has
    /// warned, the relay's would have too.
    #[tokio::test(flavor = "current_thread")]
    async fn no_bootstrap_warning_without_peers() {
        let (ours, theirs) = (Warnings::default(), Warnings::default());
        let (our_dispatch, their_dispatch) = (ours.dispatch(), theirs.dispatch());
        let mut relay = swarm(|key| Dht::new(kad_behaviour(key)));
        let mut plain = swarm(kad_behaviour);

        relay
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let listening = std::future::poll_fn(|cx| {
            let events = drain(&mut relay, &our_dispatch, cx);
            if events
                .iter()
                .any(|e| matches!(e, SwarmEvent::NewListenAddr { .. }))
            {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(DEADLINE, listening).await.unwrap();

        plain
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let plain_warned = std::future::poll_fn(|cx| {
            // The relay first, so a warning it would log is seen before the plain one.
            drain(&mut relay, &our_dispatch, cx);
            drain(&mut plain, &their_dispatch, cx);
            if theirs.taken().is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        tokio::time::timeout(DEADLINE, plain_warned).await.unwrap();
        assert!(
            theirs.taken()[0].contains("Failed to trigger bootstrap"),
            "{:?}",
            theirs.taken()
        );
        assert_eq!(ours.taken(), Vec::<String>::new());

        // With a peer in the routing table, a refresh bootstraps; without, it does not.
        let kad = relay.behaviour_mut();
        assert_eq!(kad.refresh(), Refresh::NoPeers);
        kad.add_address(
            plain.local_peer_id(),
            "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
        );
        assert_eq!(kad.refresh(), Refresh::Started);
    }
}
