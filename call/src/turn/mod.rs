//! A TURN server (RFC 5766, UDP only) for calls whose two ends cannot reach each
//! other: each end allocates a relayed address here and media flows through it. The
//! relay only moves packets: DTLS-SRTP still runs end to end between the callers, so
//! the operator sees ciphertext and who talks to whom, never the audio.
//!
//! It is not an open relay. Only holders of a grant can allocate: a grant (a random
//! username and password, [`TurnServer::grant`]) is handed out over the relay's
//! authenticated libp2p protocol to peers its access policy admits, and ties every
//! allocation to that peer. Quotas bound allocations in all and per peer, and each
//! allocation's rate; peers may only be sent to at addresses they were given
//! permission for, never multicast, broadcast or unspecified ones, and loopback only
//! when the server itself is on loopback.

mod allocation;
mod stun;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::crypto::RTCCryptoProvider;
use rtc::stun::attributes::{ATTR_NONCE, ATTR_USERNAME};
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, Getter, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message,
};
use rtc::turn::proto::PROTO_UDP;
use rtc::turn::proto::channum::ChannelNumber;
use rtc::turn::proto::data::Data;
use rtc::turn::proto::lifetime::Lifetime;
use rtc::turn::proto::relayaddr::RelayedAddress;
use rtc::turn::proto::reqtrans::RequestedTransport;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use allocation::{Allocation, Bucket};

/// How a TURN server runs and what it allows.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Where it listens. With an unspecified IP (0.0.0.0), `public_ip` must say what
    /// clients reach; port 0 takes any free port (grants say which).
    pub listen: SocketAddr,
    /// The address clients reach it at, and of the relayed addresses, when it is not
    /// `listen`'s IP (a relay behind a port forward).
    pub public_ip: Option<IpAddr>,
    /// Allocations held at once.
    pub max_allocations: usize,
    /// Allocations one grant holder may hold at once.
    pub max_allocations_per_peer: usize,
    /// Bytes per second one allocation may relay, both ways together (bursts of a
    /// second's worth); beyond it packets are dropped.
    pub bytes_per_second: u64,
    /// How long a grant may start allocations (those started keep it while they live).
    pub grant_ttl: Duration,
}

impl Default for TurnConfig {
    fn default() -> TurnConfig {
        TurnConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
            max_allocations: 128,
            max_allocations_per_peer: 4,
            // An Opus call is ~65 kbit/s on the wire; video later needs more.
            bytes_per_second: 256 * 1024,
            grant_ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// What a client needs to use the server: its address and a username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnGrant {
    /// Where the server listens (UDP).
    pub addr: SocketAddr,
    /// The username to allocate with.
    pub username: String,
    /// Its password.
    pub password: String,
    /// How long it may start allocations.
    pub ttl: Duration,
}

/// Why the server gave no grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TurnRefusal {
    /// It holds as many allocations as it may.
    #[error("the media relay is full")]
    Full,
}

/// Counters of a TURN server, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Allocations held now.
    pub allocations: u64,
    /// Payload bytes relayed, both ways, since start.
    pub bytes_relayed: u64,
    /// Packets dropped: over an allocation's rate, or to a peer without permission.
    pub packets_dropped: u64,
    /// Allocations refused for a quota.
    pub allocations_refused: u64,
}

/// Where a client's packet goes: a peer it names, or the one bound to a channel.
enum Target {
    Peer(SocketAddr),
    Channel(u16),
}

/// The realm of every allocation (RFC 5389 long-term credentials).
const REALM: &str = "kith";

/// Default and longest lifetime of an allocation without a refresh (RFC 5766 §2.2).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// How often a nonce is replaced (the previous one stays good for as long again).
const NONCE_ROTATION: Duration = Duration::from_secs(3600);

/// How often expired allocations, permissions and grants are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Live grants one peer may hold.
const GRANTS_PER_PEER: usize = 2;

/// Largest UDP payload read.
const MAX_DATAGRAM: usize = 2048;

struct Grant {
    peer: Vec<u8>,
    key: Vec<u8>,
    expires: Instant,
}

#[derive(Default)]
struct State {
    grants: HashMap<String, Grant>,
    /// Allocations by the client's address (the 5-tuple: UDP, this server's address).
    allocations: HashMap<SocketAddr, Allocation>,
    nonce: String,
    previous_nonce: String,
    nonce_since: Option<Instant>,
}

struct Inner {
    socket: Arc<UdpSocket>,
    /// The address in grants.
    advertised: SocketAddr,
    config: TurnConfig,
    crypto: Arc<dyn RTCCryptoProvider>,
    state: Mutex<State>,
    bytes_relayed: AtomicU64,
    packets_dropped: AtomicU64,
    refused: AtomicU64,
}

/// A running TURN server; it stops when the last handle is dropped.
pub struct TurnServer {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Ok(mut state) = self.inner.state.lock() {
            state.allocations.clear();
        }
    }
}

impl TurnServer {
    /// Binds `config.listen` and starts serving.
    pub async fn bind(config: TurnConfig) -> io::Result<TurnServer> {
        let public = match (config.public_ip, config.listen.ip()) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "a TURN server on 0.0.0.0 needs a public IP"));
            }
            (None, ip) => ip,
        };
        let socket = Arc::new(UdpSocket::bind(config.listen).await?);
        let advertised = SocketAddr::new(public, socket.local_addr()?.port());
        let crypto = rtc::crypto::default_provider().map_err(|e| io::Error::other(e.to_string()))?;
        let inner = Arc::new(Inner {
            socket,
            advertised,
            config,
            crypto,
            state: Mutex::new(State::default()),
            bytes_relayed: AtomicU64::new(0),
            packets_dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        inner.sweep(Instant::now());
        let tasks = vec![tokio::spawn(inner.clone().serve()), tokio::spawn(inner.clone().sweeper())];
        Ok(TurnServer { inner, tasks })
    }

    /// Where clients reach the server.
    pub fn addr(&self) -> SocketAddr {
        self.inner.advertised
    }

    /// A grant for `peer` (an opaque id: its allocations are counted against it).
    pub fn grant(&self, peer: &[u8]) -> Result<TurnGrant, TurnRefusal> {
        let inner = &self.inner;
        let mut state = inner.state.lock().map_err(|_| TurnRefusal::Full)?;
        if state.allocations.len() >= inner.config.max_allocations {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(TurnRefusal::Full);
        }
        let username = hex::encode(rand::random::<[u8; 12]>());
        let password = hex::encode(rand::random::<[u8; 18]>());
        let key = MessageIntegrity::long_term_integrity_key(
            username.clone(),
            REALM.to_owned(),
            password.clone(),
            inner.crypto.crypto(),
        )
        .map_err(|_| TurnRefusal::Full)?;
        let ttl = inner.config.grant_ttl;
        // A peer holds at most a few grants (a node renews one before it runs out):
        // asking again and again replaces the oldest rather than piling up.
        let mut held: Vec<(Instant, String)> =
            state.grants.iter().filter(|(_, g)| g.peer == peer).map(|(u, g)| (g.expires, u.clone())).collect();
        if held.len() >= GRANTS_PER_PEER {
            held.sort();
            for (_, oldest) in &held[..=held.len() - GRANTS_PER_PEER] {
                state.grants.remove(oldest);
            }
        }
        state.grants.insert(username.clone(), Grant { peer: peer.to_vec(), key, expires: Instant::now() + ttl });
        Ok(TurnGrant { addr: inner.advertised, username, password, ttl })
    }

    /// The counters now.
    pub fn stats(&self) -> TurnStats {
        let inner = &self.inner;
        TurnStats {
            allocations: inner.state.lock().map(|s| s.allocations.len() as u64).unwrap_or(0),
            bytes_relayed: inner.bytes_relayed.load(Ordering::Relaxed),
            packets_dropped: inner.packets_dropped.load(Ordering::Relaxed),
            allocations_refused: inner.refused.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    async fn serve(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (len, from) = match self.socket.recv_from(&mut buf).await {
                Ok(got) => got,
                // ICMP errors of earlier sends surface here on some systems.
                Err(_) => continue,
            };
            let packet = &buf[..len];
            if let Some((channel, data)) = stun::parse_channel_data(packet) {
                self.to_peer(from, Target::Channel(channel), data);
            } else if rtc::stun::message::is_stun_message(packet)
                && !self.unallocated_send(from, packet)
                && let Some(reply) = self.stun(from, packet)
            {
                let _ = self.socket.try_send_to(&reply, from);
            }
        }
    }

    /// Whether `packet` is a Send indication from a client without an allocation:
    /// dropped on its first two bytes, before anything is decoded.
    fn unallocated_send(&self, from: SocketAddr, packet: &[u8]) -> bool {
        const SEND_INDICATION: [u8; 2] = [0x00, 0x16];
        packet.get(..2) == Some(&SEND_INDICATION[..])
            && self.state.lock().map_or(true, |s| !s.allocations.contains_key(&from))
    }

    async fn sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            self.sweep(Instant::now());
        }
    }

    fn sweep(&self, now: Instant) {
        let Ok(mut state) = self.state.lock() else { return };
        state.grants.retain(|_, g| g.expires > now);
        state.allocations.retain(|_, a| a.expires > now);
        for allocation in state.allocations.values_mut() {
            allocation.permissions.retain(|_, until| *until > now);
        }
        if state.nonce_since.is_none_or(|since| now.duration_since(since) >= NONCE_ROTATION) {
            state.previous_nonce = std::mem::replace(&mut state.nonce, hex::encode(rand::random::<[u8; 16]>()));
            state.nonce_since = Some(now);
        }
    }

    /// Answers one STUN message from `from`; `None` for indications and garbage.
    fn stun(self: &Arc<Self>, from: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
        let mut msg = Message::new();
        msg.raw = packet.to_vec();
        msg.decode().ok()?;
        let crypto = self.crypto.crypto();
        if msg.typ.class == CLASS_INDICATION {
            if msg.typ.method == METHOD_SEND {
                self.send_indication(from, &msg);
            }
            return None;
        }
        if msg.typ.class != CLASS_REQUEST {
            return None;
        }
        if msg.typ.method == METHOD_BINDING {
            return stun::success(&msg, vec![stun::mapped(from)], None, crypto);
        }
        let mut state = self.state.lock().ok()?;
        let key = match self.authenticate(&state, &msg, from) {
            Ok(key) => key,
            Err(reply) => return reply,
        };
        let result = match msg.typ.method {
            METHOD_ALLOCATE => self.allocate(&mut state, &msg, from, &key),
            METHOD_REFRESH => refresh(&mut state, &msg, from),
            METHOD_CREATE_PERMISSION => self.create_permission(&mut state, &msg, from),
            METHOD_CHANNEL_BIND => self.channel_bind(&mut state, &msg, from),
            _ => Err(400),
        };
        match result {
            Ok(attrs) => stun::success(&msg, attrs, Some(&key), crypto),
            Err(code) => stun::error(&msg, code, None),
        }
    }

    /// The key `msg` is signed with, or the error to answer: 401 with a challenge when
    /// it is unsigned or its credentials are unknown, 438 when its nonce is stale.
    fn authenticate(&self, state: &State, msg: &Message, from: SocketAddr) -> Result<Vec<u8>, Option<Vec<u8>>> {
        let challenge = |code| Err(stun::error(msg, code, Some((REALM, &state.nonce))));
        let (Some(username), Some(nonce)) = (stun::text(msg, ATTR_USERNAME), stun::text(msg, ATTR_NONCE)) else {
            return challenge(401);
        };
        if nonce != state.nonce && nonce != state.previous_nonce {
            return challenge(438);
        }
        // An allocation keeps its grant's key for as long as it lives; a new one needs
        // a grant that has not expired.
        let key = match state.allocations.get(&from) {
            Some(allocation) if allocation.username == username => allocation.key.clone(),
            Some(_) => return Err(stun::error(msg, 441, None)),
            None => match state.grants.get(&username) {
                Some(grant) if grant.expires > Instant::now() => grant.key.clone(),
                _ => return challenge(401),
            },
        };
        if !stun::signed_with(msg, &key, self.crypto.crypto()) {
            return challenge(401);
        }
        Ok(key)
    }

    fn allocate(self: &Arc<Self>, state: &mut State, msg: &Message, from: SocketAddr, key: &[u8]) -> Result<stun::Attrs, u16> {
        if let Some(existing) = state.allocations.get(&from) {
            // A retransmitted request gets the same answer; another one is a mismatch.
            if existing.transaction == msg.transaction_id {
                return Ok(allocated(existing.relayed, existing.lifetime, from));
            }
            return Err(437);
        }
        let mut transport = RequestedTransport::default();
        if transport.get_from(msg).is_err() {
            return Err(400);
        }
        if transport.protocol != PROTO_UDP {
            return Err(442);
        }
        let username = stun::text(msg, ATTR_USERNAME).ok_or(400u16)?;
        let peer = state.grants.get(&username).map(|g| g.peer.clone()).ok_or(401u16)?;
        if state.allocations.len() >= self.config.max_allocations {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(508);
        }
        if state.allocations.values().filter(|a| a.peer == peer).count() >= self.config.max_allocations_per_peer {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(486);
        }
        let relay = std::net::UdpSocket::bind(SocketAddr::new(self.config.listen.ip(), 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std)
            .map_err(|_| 508u16)?;
        let port = relay.local_addr().map_err(|_| 508u16)?.port();
        let relayed = SocketAddr::new(self.advertised.ip(), port);
        let lifetime = requested_lifetime(msg).unwrap_or(DEFAULT_LIFETIME).clamp(DEFAULT_LIFETIME, MAX_LIFETIME);
        let relay = Arc::new(relay);
        let task = tokio::spawn(self.clone().from_peers(from, relay.clone()));
        state.allocations.insert(
            from,
            Allocation {
                peer,
                username,
                key: key.to_vec(),
                transaction: msg.transaction_id,
                relay,
                relayed,
                lifetime,
                expires: Instant::now() + lifetime,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                bucket: Bucket::new(self.config.bytes_per_second),
                task,
            },
        );
        tracing::debug!(client = %from, %relayed, "TURN allocation");
        Ok(allocated(relayed, lifetime, from))
    }

    fn create_permission(&self, state: &mut State, msg: &Message, from: SocketAddr) -> Result<stun::Attrs, u16> {
        if !state.allocations.contains_key(&from) {
            return Err(437);
        }
        let peers = stun::peer_addresses(msg).ok_or(400u16)?;
        if peers.is_empty() {
            return Err(400);
        }
        if !peers.iter().all(|p| self.may_reach(state, *p)) {
            return Err(403);
        }
        let allocation = state.allocations.get_mut(&from).ok_or(437u16)?;
        for peer in peers {
            allocation.permit(peer.ip());
        }
        Ok(vec![])
    }

    fn channel_bind(&self, state: &mut State, msg: &Message, from: SocketAddr) -> Result<stun::Attrs, u16> {
        if !state.allocations.contains_key(&from) {
            return Err(437);
        }
        let mut channel = ChannelNumber::default();
        channel.get_from(msg).map_err(|_| 400u16)?;
        let peer = match stun::peer_addresses(msg).as_deref() {
            Some([peer]) => *peer,
            _ => return Err(400),
        };
        if !(0x4000..=0x7FFE).contains(&channel.0) {
            return Err(400);
        }
        if !self.may_reach(state, peer) {
            return Err(403);
        }
        let allocation = state.allocations.get_mut(&from).ok_or(437u16)?;
        allocation.bind(channel.0, peer).map_err(|()| 400u16)?;
        Ok(vec![])
    }

    fn send_indication(&self, from: SocketAddr, msg: &Message) {
        let (Some(&[peer]), Ok(data)) = (stun::peer_addresses(msg).as_deref(), {
            let mut data = Data::default();
            data.get_from(msg).map(|()| data)
        }) else {
            return;
        };
        self.to_peer(from, Target::Peer(peer), &data.0);
    }

    /// Relays `data` from the client at `from` to a peer (by address, or by the
    /// channel it bound), if its allocation has permission and rate for it; all under
    /// one lock.
    fn to_peer(&self, from: SocketAddr, target: Target, data: &[u8]) {
        let Ok(mut state) = self.state.lock() else { return };
        let Some(allocation) = state.allocations.get(&from) else { return };
        let peer = match target {
            Target::Peer(peer) => peer,
            Target::Channel(channel) => match allocation.channels.get(&channel) {
                Some(peer) => *peer,
                None => return,
            },
        };
        let now = Instant::now();
        // A permission is per IP: on our own IP it must still be a relayed port.
        let own = peer.ip().to_canonical() == self.advertised.ip() || peer.ip().to_canonical() == self.config.listen.ip();
        let allowed = allocation.permitted(peer.ip(), now) && (!own || self.may_reach(&state, peer));
        let Some(allocation) = state.allocations.get_mut(&from) else { return };
        if !allowed || !allocation.bucket.take(data.len(), now) {
            self.packets_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if allocation.relay.try_send_to(data, peer).is_ok() {
            self.bytes_relayed.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }

    /// Relays what peers send to `client`'s relayed address back to it, as
    /// ChannelData when the peer has a channel and as Data indications otherwise.
    async fn from_peers(self: Arc<Self>, client: SocketAddr, relay: Arc<UdpSocket>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let Ok((len, peer)) = relay.recv_from(&mut buf).await else { continue };
            let data = &buf[..len];
            let framed = {
                let Ok(mut state) = self.state.lock() else { return };
                let Some(allocation) = state.allocations.get_mut(&client) else { return };
                let now = Instant::now();
                if !allocation.permitted(peer.ip(), now) || !allocation.bucket.take(len, now) {
                    self.packets_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match allocation.channel_of(peer) {
                    Some(channel) => stun::channel_data(channel, data),
                    None => match stun::data_indication(peer, data) {
                        Some(framed) => framed,
                        None => continue,
                    },
                }
            };
            if self.socket.try_send_to(&framed, client).is_ok() {
                self.bytes_relayed.fetch_add(len as u64, Ordering::Relaxed);
            }
        }
    }

    /// Whether clients may send to `peer` through us.
    fn may_reach(&self, state: &State, peer: SocketAddr) -> bool {
        // `::ffff:127.0.0.1` is 127.0.0.1 to a dual-stack socket.
        let ip = peer.ip().to_canonical();
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        let link_local = match ip {
            // 169.254.0.0/16 holds cloud metadata services.
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        if ip.is_unspecified() || ip.is_multicast() || broadcast || link_local || peer.port() == 0 {
            return false;
        }
        // On our own addresses only relayed ports of live allocations are peers (two
        // ends of a call both relayed here): nothing else of this host is reachable,
        // least of all our listening socket, which would loop.
        if ip == self.advertised.ip() || ip == self.config.listen.ip() {
            return state.allocations.values().any(|a| a.relayed.port() == peer.port());
        }
        !ip.is_loopback() || self.config.listen.ip().is_loopback()
    }
}

fn refresh(state: &mut State, msg: &Message, from: SocketAddr) -> Result<stun::Attrs, u16> {
    let allocation = state.allocations.get_mut(&from).ok_or(437u16)?;
    let asked = requested_lifetime(msg).unwrap_or(DEFAULT_LIFETIME);
    if asked.is_zero() {
        state.allocations.remove(&from);
        return Ok(vec![Box::new(Lifetime(Duration::ZERO))]);
    }
    let lifetime = asked.clamp(DEFAULT_LIFETIME, MAX_LIFETIME);
    allocation.lifetime = lifetime;
    allocation.expires = Instant::now() + lifetime;
    Ok(vec![Box::new(Lifetime(lifetime))])
}

fn requested_lifetime(msg: &Message) -> Option<Duration> {
    let mut lifetime = Lifetime::default();
    lifetime.get_from(msg).ok().map(|()| lifetime.0)
}

fn allocated(relayed: SocketAddr, lifetime: Duration, from: SocketAddr) -> stun::Attrs {
    vec![
        Box::new(RelayedAddress { ip: relayed.ip(), port: relayed.port() }),
        Box::new(Lifetime(lifetime)),
        stun::mapped(from),
    ]
}

