//! `/kith/turn/1`: a node asks one of its relays with the media role for a TURN grant
//! (the address of the relay's TURN server and a username and password), so that a
//! call whose two ends cannot reach each other can run through it.
//!
//! The member writes a [`GrantRequest`]; the relay answers one [`GrantReply`] and
//! closes. The relay checks its access policy first, so its TURN server is as open as
//! its mailbox; the grant ties each allocation to the asking peer for the relay's
//! quotas.
//!
//! A node keeps grants from its pinned relays fresh in a task of its own
//! ([`Keeper`]), so that placing or answering a call never waits on a relay.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use kith_call::turn::TurnGrant;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use libp2p_stream::Control;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::node::Command;
use crate::wire;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/turn/1");

/// Frame version.
const VERSION: u32 = 1;

/// Largest frame either way.
pub const MAX_FRAME_LEN: usize = 1024;

/// Longest text field of a grant.
const MAX_TEXT: usize = 128;

/// What a node asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {}

/// Why a relay gave no grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum GrantRefusal {
    /// Its access policy does not admit the node.
    #[error("the media relay does not admit us")]
    NotAllowed,
    /// It relays as many calls as it may.
    #[error("the media relay is full")]
    Full,
}

/// A relay's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum GrantReply {
    /// Use the TURN server at `addr` with these credentials for `ttl_secs`.
    Granted {
        /// The TURN server's UDP address, `ip:port`.
        #[serde(deserialize_with = "wire::Max::<MAX_TEXT>::text")]
        addr: String,
        /// The username.
        #[serde(deserialize_with = "wire::Max::<MAX_TEXT>::text")]
        username: String,
        /// The password.
        #[serde(deserialize_with = "wire::Max::<MAX_TEXT>::text")]
        password: String,
        /// How long it may start allocations.
        ttl_secs: u64,
    },
    /// No grant.
    Refused {
        /// Why.
        reason: GrantRefusal,
    },
}

/// Writes one frame.
pub async fn write<T: Serialize, W: AsyncWrite + Unpin + Send>(io: &mut W, frame: &T) -> std::io::Result<()> {
    wire::write_body(io, frame, MAX_FRAME_LEN, VERSION).await
}

/// Reads one frame.
pub async fn read<T: serde::de::DeserializeOwned, R: AsyncRead + Unpin + Send>(io: &mut R) -> std::io::Result<T> {
    wire::read_body(io, MAX_FRAME_LEN, VERSION).await
}

/// Longest wait for one relay's grant.
const ASK_DEADLINE: Duration = Duration::from_secs(5);

/// A grant is renewed this long before it runs out.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// Waits between rounds when no relay gave a grant: doubling up to the longest.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_LONGEST: Duration = Duration::from_secs(300);

/// Relays asked per round (the first pinned ones).
const MAX_RELAYS: usize = 3;

/// The grants of the latest round, and how many rounds ran.
#[derive(Debug, Clone, Default)]
struct Round {
    number: u64,
    grants: Vec<TurnGrant>,
    /// When the first of them runs out.
    expires: Option<Instant>,
}

impl Round {
    /// Its grants, if they have not run out.
    fn live(&self) -> Vec<TurnGrant> {
        if self.expires.is_some_and(|at| at <= Instant::now()) { Vec::new() } else { self.grants.clone() }
    }
}

/// The node's current TURN grants, kept fresh by a task of its own.
#[derive(Clone)]
pub(crate) struct Keeper {
    rounds: watch::Receiver<Round>,
    wake: mpsc::Sender<()>,
}

impl Keeper {
    /// Starts the task that fetches grants from the pinned relays.
    pub(crate) fn start(control: Control, commands: mpsc::Sender<Command>) -> Keeper {
        let (tx, rounds) = watch::channel(Round::default());
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(keep(control, commands, tx, woken));
        Keeper { rounds, wake }
    }

    /// The grants now; when there are none, asks for a new round and waits up to
    /// `wait` for it (a call placed right after start, or after the relays changed).
    /// A node without relays finishes its round at once.
    pub(crate) async fn current(&self, wait: Duration) -> Vec<TurnGrant> {
        let now = self.rounds.borrow().clone();
        let live = now.live();
        if !live.is_empty() {
            return live;
        }
        let _ = self.wake.try_send(());
        let mut rounds = self.rounds.clone();
        let _ = tokio::time::timeout(wait, rounds.wait_for(|r| r.number > now.number)).await;
        rounds.borrow().live()
    }
}

async fn keep(
    control: Control,
    commands: mpsc::Sender<Command>,
    rounds: watch::Sender<Round>,
    mut woken: mpsc::Receiver<()>,
) {
    let mut retry = RETRY_FIRST;
    for number in 1.. {
        let (tx, rx) = oneshot::channel();
        if commands.send(Command::PinnedRelays(tx)).await.is_err() {
            return;
        }
        let relays = rx.await.unwrap_or_default();
        let asks = relays.iter().take(MAX_RELAYS).filter_map(|addr| {
            let relay = crate::node::relay_peer(addr)?;
            Some(ask(control.clone(), commands.clone(), relay, addr.clone()))
        });
        let started = Instant::now();
        let fresh: Vec<TurnGrant> = futures::future::join_all(asks).await.into_iter().flatten().collect();
        let next = match fresh.iter().map(|g| g.ttl).min() {
            Some(ttl) => {
                retry = RETRY_FIRST;
                ttl.saturating_sub(RENEW_MARGIN).max(RETRY_FIRST).saturating_sub(started.elapsed())
            }
            None => {
                let wait = retry;
                retry = (retry * 2).min(RETRY_LONGEST);
                wait
            }
        };
        let expires = fresh.iter().map(|g| started + g.ttl).min();
        if rounds.send(Round { number, grants: fresh, expires }).is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            woke = woken.recv() => if woke.is_none() { return },
        }
    }
}

/// Shortest and longest lifetime taken from a relay's grant: a relay cannot make us
/// ask every few seconds, nor keep credentials in use for ever.
const MIN_GRANT_TTL: Duration = Duration::from_secs(60);
const MAX_GRANT_TTL: Duration = Duration::from_secs(3600);

/// Whether `turn` may be the TURN server of the relay we reach at `relay`: at the
/// relay's own IP when we know it, and never an address that would make our node
/// send to itself, its link or a broadcast (a relay operator cannot aim our calls'
/// packets at our own machine or LAN).
fn plausible_turn_addr(relay: &Multiaddr, turn: SocketAddr) -> bool {
    let ip = turn.ip().to_canonical();
    let relay_ip = relay.iter().next().and_then(|p| match p {
        Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    });
    if turn.port() == 0 || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match relay_ip {
        Some(relay_ip) => ip == relay_ip.to_canonical(),
        // A relay reached by name: any unicast address not on this machine or link.
        None => {
            let link_local = match ip {
                std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
                std::net::IpAddr::V6(v6) => v6.is_unicast_link_local(),
            };
            !ip.is_loopback() && !link_local
        }
    }
}

/// One relay's grant, if it gives one in time.
async fn ask(control: Control, commands: mpsc::Sender<Command>, relay: PeerId, addr: Multiaddr) -> Option<TurnGrant> {
    let exchange = async {
        let (tx, rx) = oneshot::channel();
        if commands.send(Command::Reach(relay, vec![addr.clone()], tx)).await.is_ok() {
            let _ = rx.await;
        }
        let mut stream = crate::streams::open(&control, relay, PROTOCOL).await.map_err(|e| e.to_string())?;
        write(&mut stream, &GrantRequest {}).await.map_err(|e| e.to_string())?;
        match read::<GrantReply, _>(&mut stream).await.map_err(|e| e.to_string())? {
            GrantReply::Granted { addr: turn, username, password, ttl_secs } => {
                let turn: SocketAddr = turn.parse().map_err(|_| format!("a malformed TURN address {turn:?}"))?;
                if !plausible_turn_addr(&addr, turn) {
                    return Err(format!("a TURN address {turn} that is not the relay's"));
                }
                let ttl = Duration::from_secs(ttl_secs).clamp(MIN_GRANT_TTL, MAX_GRANT_TTL);
                Ok(TurnGrant { addr: turn, username, password, ttl })
            }
            GrantReply::Refused { reason } => Err(reason.to_string()),
        }
    };
    match tokio::time::timeout(ASK_DEADLINE, exchange).await {
        Ok(Ok(grant)) => Some(grant),
        Ok(Err(e)) => {
            tracing::debug!(%relay, "no TURN grant: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%relay, "no TURN grant in time");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn a_grant_must_point_at_the_relay_itself() {
        let at = |a: &str| a.parse::<Multiaddr>().unwrap();
        let relay = at("/ip4/10.0.0.1/tcp/4001");
        assert!(plausible_turn_addr(&relay, "10.0.0.1:3478".parse().unwrap()));
        assert!(!plausible_turn_addr(&relay, "10.0.0.2:3478".parse().unwrap()), "another host");
        assert!(!plausible_turn_addr(&relay, "10.0.0.1:0".parse().unwrap()), "port 0");
        let named = at("/dns4/relay.example.org/tcp/4001");
        assert!(plausible_turn_addr(&named, "203.0.113.7:3478".parse().unwrap()));
        for bad in ["127.0.0.1:3478", "169.254.169.254:80", "255.255.255.255:9", "224.0.0.1:9", "[::ffff:127.0.0.1]:9"] {
            assert!(!plausible_turn_addr(&named, bad.parse().unwrap()), "{bad}");
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_long_fields_are_refused() {
        for frame in [
            GrantReply::Granted { addr: "10.0.0.1:3478".into(), username: "u".into(), password: "p".into(), ttl_secs: 600 },
            GrantReply::Refused { reason: GrantRefusal::Full },
        ] {
            let mut buf = Cursor::new(Vec::new());
            write(&mut buf, &frame).await.unwrap();
            assert_eq!(read::<GrantReply, _>(&mut Cursor::new(buf.into_inner())).await.unwrap(), frame);
        }
        let long = GrantReply::Granted { addr: "x".repeat(MAX_TEXT + 1), username: "u".into(), password: "p".into(), ttl_secs: 1 };
        let raw = wire::raw_frame(&long, VERSION);
        assert!(read::<GrantReply, _>(&mut Cursor::new(raw)).await.is_err());
    }
}
