//! TURN for calls of the media role (`/kith/turn/1`): nodes the access policy admits
//! get a grant for the relay's TURN server (`kith_call::turn`), which carries the
//! media of calls whose two ends cannot reach each other. DTLS-SRTP runs end to end
//! through it; the relay sees only ciphertext.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_call::turn::TurnServer;
use kith_p2p::call::turn::{self, GrantReply, GrantRefusal, GrantRequest};
use libp2p::PeerId;
use libp2p_stream::IncomingStreams;

use super::mailbox_service::Access;
use super::room_service::Rooms;
use crate::metrics::Metrics;

/// How long a node has to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How often the TURN server's and the rooms' counters go into the metrics.
const METRICS_INTERVAL: Duration = Duration::from_secs(2);

/// Grants of one relay's TURN server.
pub(crate) struct Grants {
    server: TurnServer,
    access: Access,
}

impl Grants {
    pub(crate) fn new(server: TurnServer, access: Access) -> Arc<Grants> {
        Arc::new(Grants { server, access })
    }

    /// Serves every `/kith/turn/1` stream.
    pub(crate) async fn serve(self: Arc<Self>, mut incoming: IncomingStreams) {
        while let Some((peer, stream)) = incoming.next().await {
            tokio::spawn(self.clone().grant(peer, stream));
        }
    }

    async fn grant(self: Arc<Self>, peer: PeerId, mut stream: libp2p::Stream) {
        let read = tokio::time::timeout(REQUEST_DEADLINE, turn::read::<GrantRequest, _>(&mut stream)).await;
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let reply = if !self.access.admits(&peer) {
            GrantReply::Refused { reason: GrantRefusal::NotAllowed }
        } else {
            match self.server.grant(&peer.to_bytes()) {
                Ok(grant) => GrantReply::Granted {
                    addr: grant.addr.to_string(),
                    username: grant.username,
                    password: grant.password,
                    ttl_secs: grant.ttl.as_secs(),
                },
                Err(_) => GrantReply::Refused { reason: GrantRefusal::Full },
            }
        };
        if let Err(e) = turn::write(&mut stream, &reply).await {
            tracing::debug!(%peer, "a TURN grant: {e}");
        }
    }

    /// Copies the TURN server's and the rooms' counters into `metrics` now and then.
    pub(crate) async fn report(self: Arc<Self>, rooms: Option<Arc<Rooms>>, metrics: Metrics) {
        let mut tick = tokio::time::interval(METRICS_INTERVAL);
        let mut last = kith_call::turn::TurnStats::default();
        loop {
            tick.tick().await;
            let now = self.server.stats();
            metrics.turn_allocations.set(now.allocations as i64);
            metrics.turn_relayed_bytes.inc_by(now.bytes_relayed.saturating_sub(last.bytes_relayed));
            metrics.turn_dropped_packets.inc_by(now.packets_dropped.saturating_sub(last.packets_dropped));
            metrics.turn_refused_allocations.inc_by(now.allocations_refused.saturating_sub(last.allocations_refused));
            last = now;
            if let Some(rooms) = &rooms {
                let (held, participants) = rooms.counts();
                metrics.rooms.set(held as i64);
                metrics.room_participants.set(participants as i64);
            }
        }
    }
}
