//! The running relay: one task owns the libp2p [`Swarm`], records every event into
//! the Prometheus registry and serves the roles of [`behaviour::Behaviour`].
//!
//! [`Relay::start`] opens the mailbox and group log stores, builds the swarm (TCP +
//! Noise + yamux, QUIC), starts listening, serves `/metrics` and returns once every
//! configured listener has reported its concrete addresses ([`Relay::listen_addrs`]).
//! [`Relay::run`] is the event loop; it returns after a graceful shutdown:
//! listeners closed, jobs in flight finished and answered, the stores flushed.
//!
//! Disk I/O never runs on the loop: mailbox and group log requests that touch a store
//! become jobs on tokio's blocking pool (at most `mailbox.max_jobs` and
//! `grouplog.max_jobs` at once, see `jobs`), and their answers come back to the
//! loop, which sends them.

mod behaviour;
mod dht;
mod grouplog_service;
mod jobs;
mod mailbox_service;
mod media_service;
mod rate;
mod room_service;
mod turn_service;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_p2p::conn_limits;
use kith_p2p::grouplog::GroupLogResponse;
use kith_p2p::mailbox::MailboxResponse;
use kith_p2p::node::KAD_PROTOCOL;
use libp2p::core::transport::ListenerId;
use libp2p::kad::store::RecordStore;
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, kad, relay};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::config::{AccessPolicy, RelayConfig};
use crate::grouplog::GroupLogStore;
use crate::limits::RateLimiter;
use crate::mailbox::{MailboxStore, OpenError};
use crate::media::{MediaError, MediaStore};
use crate::metrics::{Exposition, Metrics};
use behaviour::{Behaviour, BehaviourEvent};
use jobs::Jobs;
use mailbox_service::{Access, Service};

/// How long [`Relay::start`] waits for every listener to report an address.
const LISTEN_DEADLINE: Duration = Duration::from_secs(10);

/// After every listener has reported one address, how long to keep collecting more
/// (a listener on `0.0.0.0` reports one address per interface, one event each).
const LISTEN_SETTLE: Duration = Duration::from_millis(100);

/// A connection without open streams is closed after this long. Reservations and
/// circuits keep their connections open on their own.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the DHT record gauge is refreshed and idle rate-limiter state dropped.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(30);

/// How often the DHT routing table is refreshed by a bootstrap query (when it holds
/// a peer): libp2p's default period, which the relay now runs itself (see `dht`).
const DHT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// On shutdown, how long to wait for mailbox jobs in flight to finish and their
/// answers to be written before giving up on them. A deposit not answered by then
/// is retried by its sender (and de-duplicated here if it was stored).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A configured address is not a valid multiaddr.
    #[error("config `{key}`: {addr:?} is not a valid multiaddr: {reason}")]
    BadAddress {
        /// The config key, e.g. `listen[0]`.
        key: String,
        /// The text given.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A member in `access.members` is not a peer id.
    #[error("config `access.members`: {member:?} is not a peer id")]
    BadMember {
        /// The text given.
        member: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The mailbox store could not be opened.
    #[error("cannot open the mailbox store")]
    Store(#[from] OpenError),
    /// The group log store could not be opened.
    #[error("cannot open the group log store")]
    GroupLogStore(#[source] OpenError),
    /// The media store could not be opened.
    #[error("cannot open the media store")]
    MediaStore(#[source] MediaError),
    /// The libp2p swarm could not be built.
    #[error("cannot build the network stack: {0}")]
    Build(String),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The metrics endpoint could not be bound.
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        /// The configured address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A background task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the relay stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The final flush of a store failed: deposits and appends acknowledged before
    /// it were flushed individually and are safe; nothing else was pending.
    #[error("flushing the {0} store on shutdown failed: {1}")]
    Flush(&'static str, String),
}

/// A started relay; drive it with [`Relay::run`].
pub struct Relay {
    swarm: Swarm<Behaviour>,
    peer_id: PeerId,
    service: Service,
    group_service: grouplog_service::Service,
    metrics: Metrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    metrics_addr: Option<SocketAddr>,
    metrics_server: Option<AbortOnDrop>,
    expire_interval: Duration,
    group_expire_interval: Duration,
    /// Announce listen addresses as external ones (no `external_addresses` given).
    announce_listen_addrs: bool,
    listen_addrs: Vec<Multiaddr>,
    listeners: HashSet<ListenerId>,
    /// Listeners that have reported at least one address.
    reported: HashSet<ListenerId>,
    /// Whether new mailbox and group log requests are taken (false while shutting
    /// down).
    accepting: bool,
    jobs: Jobs<MailboxResponse>,
    group_jobs: Jobs<GroupLogResponse>,
    /// Reservations held, per peer (for the gauge; see `on_relay_event`).
    reservations: HashMap<PeerId, i64>,
    /// Set when a listener that had not reported an address yet failed.
    listen_failure: Option<StartError>,
    /// The media role's upload and download tasks (empty when it is off), aborted
    /// with the relay.
    media_tasks: Vec<AbortOnDrop>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("peer_id", &self.peer_id)
            .field("listen_addrs", &self.listen_addrs)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Opens the store, builds the swarm, listens on every configured address and
    /// serves metrics; returns once every listener has reported its addresses.
    ///
    /// `config` must be validated ([`RelayConfig::validate`]); `keypair` is the
    /// relay's identity ([`crate::identity::load_or_create`]).
    pub async fn start(
        config: RelayConfig,
        keypair: identity::Keypair,
    ) -> Result<Relay, StartError> {
        let listen = parse_addrs("listen", &config.listen)?;
        let external = parse_addrs("external_addresses", &config.external_addresses)?;
        let members = match config.access.policy {
            AccessPolicy::Members => Some(Arc::new(parse_members(&config.access.members)?)),
            _ => None,
        };
        if config.access.operator_tokens {
            tracing::warn!(
                "access.operator_tokens is not implemented yet: only the listed members are admitted"
            );
        }
        kith_p2p::home::create_private_dir(&config.data_dir).map_err(|source| {
            StartError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?;

        let store = if config.mailbox.enabled {
            let dir = config.mailbox_dir();
            let limits = config.mailbox.limits();
            let store = tokio::task::spawn_blocking(move || MailboxStore::open(&dir, limits))
                .await
                .map_err(|e| StartError::Internal(e.to_string()))??;
            let stats = store.stats();
            tracing::info!(
                path = %store.path().display(),
                mailboxes = stats.mailboxes,
                envelopes = stats.envelopes,
                bytes = stats.bytes,
                "opened mailbox store"
            );
            Some(store)
        } else {
            None
        };
        let group_store = if config.grouplog.enabled {
            let dir = config.grouplog_dir();
            let limits = config.grouplog.limits();
            let store = tokio::task::spawn_blocking(move || GroupLogStore::open(&dir, limits))
                .await
                .map_err(|e| StartError::Internal(e.to_string()))?
                .map_err(StartError::GroupLogStore)?;
            let stats = store.stats();
            tracing::info!(
                path = %store.path().display(),
                logs = stats.logs,
                items = stats.items,
                bytes = stats.bytes,
                "opened group log store"
            );
            Some(store)
        } else {
            None
        };
        let media_store = if config.media.enabled {
            let dir = config.media_dir();
            let limits = config.media.limits();
            let store = tokio::task::spawn_blocking(move || MediaStore::open(&dir, limits))
                .await
                .map_err(|e| StartError::Internal(e.to_string()))?
                .map_err(StartError::MediaStore)?;
            let stats = store.stats();
            tracing::info!(
                path = %store.path().display(),
                blobs = stats.blobs,
                bytes = stats.bytes,
                "opened media store"
            );
            Some(store)
        } else {
            None
        };

        let mut registry = Registry::default();
        let metrics = Metrics::for_config(&mut registry, &config);
        // libp2p's own metrics, tidied at each scrape (see `Exposition`).
        let mut libp2p_registry = Registry::default();
        let peer_id = keypair.public().to_peer_id();
        let behaviour_config = config.clone();
        let behaviour_members = members.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_quic()
            .with_other_transport(kith_p2p::tcp::transport)
            .map_err(|e| StartError::Build(e.to_string()))?
            .with_bandwidth_metrics(&mut libp2p_registry)
            .with_behaviour(|key| Behaviour::new(key, &behaviour_config, behaviour_members))
            .map_err(|e| StartError::Build(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build();
        let libp2p_metrics = libp2p::metrics::Metrics::new(&mut libp2p_registry);

        let mut listeners = HashSet::new();
        for addr in listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| StartError::Listen {
                    addr,
                    reason: error_chain(&e),
                })?;
            listeners.insert(id);
        }
        for addr in &external {
            swarm.add_external_address(addr.clone());
        }

        let exposition = Arc::new(Exposition::new(registry).with_libp2p(libp2p_registry, &config));
        let (metrics_addr, metrics_server) = match config.metrics.listen {
            Some(addr) => {
                let (bound, server) = crate::http::serve_metrics(addr, exposition)
                    .await
                    .map_err(|source| StartError::Metrics { addr, source })?;
                let task = tokio::spawn(async move {
                    if let Err(e) = server.await {
                        tracing::error!(error = %e, "the metrics endpoint failed");
                    }
                });
                (Some(bound), Some(AbortOnDrop(task)))
            }
            None => (None, None),
        };

        let access = match members {
            Some(members) => Access::Members(members),
            None => Access::Open,
        };
        let access_for_media = access.clone();
        // Every limiter tracks at most `max_tracked_senders` peers.
        let limiter = |rate, burst| {
            RateLimiter::new(rate, burst)
                .with_max_senders(config.mailbox.max_tracked_senders as usize)
        };
        let (m, g) = (&config.mailbox, &config.grouplog);
        let group_service = grouplog_service::Service::new(
            group_store,
            access.clone(),
            limiter(g.sender_rate_per_sec, g.sender_burst),
            limiter(g.fetch_rate_per_sec, g.fetch_burst),
            metrics.clone(),
        );
        let service = Service::new(
            store,
            peer_id,
            access,
            limiter(m.sender_rate_per_sec, m.sender_burst),
            limiter(m.challenge_rate_per_sec, m.challenge_burst),
            metrics.clone(),
        );
        let relay_metrics = metrics.clone();
        let media_tasks = match media_store {
            Some(store) => start_media(&swarm, store, access_for_media, &config, metrics.clone()).await?,
            None => Vec::new(),
        };

        let mut relay = Relay {
            swarm,
            peer_id,
            service,
            group_service,
            metrics,
            libp2p_metrics,
            metrics_addr,
            metrics_server,
            expire_interval: config.mailbox.expire_interval(),
            group_expire_interval: config.grouplog.expire_interval(),
            announce_listen_addrs: external.is_empty(),
            listen_addrs: Vec::new(),
            listeners: listeners.clone(),
            reported: HashSet::new(),
            accepting: true,
            // Separate bounds, so a flood of one kind cannot starve the other.
            jobs: Jobs::new(
                config.mailbox.max_jobs as usize,
                "mailbox",
                relay_metrics.mailbox_jobs.clone(),
            ),
            group_jobs: Jobs::new(
                config.grouplog.max_jobs as usize,
                "grouplog",
                relay_metrics.grouplog_jobs.clone(),
            ),
            reservations: HashMap::new(),
            listen_failure: None,
            media_tasks,
        };
        relay.await_listen_addrs(listeners).await?;
        tracing::info!(
            peer_id = %relay.peer_id,
            addrs = %joined(&relay.listen_addrs),
            dht = config.dht.enabled,
            circuit = config.circuit.enabled,
            autonat = config.autonat.enabled,
            mailbox = config.mailbox.enabled,
            grouplog = config.grouplog.enabled,
            media = config.media.enabled,
            policy = config.access.policy.as_str(),
            max_connections = config.connections.max_established,
            max_per_ip = config.connections.max_per_ip,
            "relay listening"
        );
        Ok(relay)
    }

    /// Handles events until each listener in `pending` has reported an address, then
    /// for [`LISTEN_SETTLE`] more.
    async fn await_listen_addrs(
        &mut self,
        mut pending: HashSet<ListenerId>,
    ) -> Result<(), StartError> {
        let deadline = tokio::time::Instant::now() + LISTEN_DEADLINE;
        let mut settle_until = None;
        loop {
            if let Some(failure) = self.listen_failure.take() {
                return Err(failure);
            }
            pending.retain(|id| !self.reported.contains(id));
            if pending.is_empty() && settle_until.is_none() {
                settle_until = Some(tokio::time::Instant::now() + LISTEN_SETTLE);
            }
            let until = settle_until.unwrap_or(deadline);
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tokio::time::sleep_until(until) => {
                    if settle_until.is_some() {
                        return Ok(());
                    }
                    return Err(StartError::Internal(format!(
                        "no listen address reported within {LISTEN_DEADLINE:?}"
                    )));
                }
            }
        }
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The concrete addresses the relay listens on (no `/p2p` suffix).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Where `/metrics` is served, if configured (the real port when the config said 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Runs the relay until `shutdown` completes, then shuts down gracefully: stops
    /// listening, lets jobs in flight finish and answers them (for up to
    /// [`SHUTDOWN_GRACE`]), and flushes the stores, leaving their de-duplication
    /// indexes in checkpoints so the next start need not read every item.
    ///
    /// Not cancel-safe in the sense that dropping the future skips the graceful part;
    /// every acknowledged deposit is durable regardless.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        tokio::pin!(shutdown);
        let mut expiry = tokio::time::interval(self.expire_interval);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut group_expiry = tokio::time::interval(self.group_expire_interval);
        group_expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is one period away: at start the table is empty anyway.
        let mut dht_refresh = tokio::time::interval_at(
            tokio::time::Instant::now() + DHT_REFRESH_INTERVAL,
            DHT_REFRESH_INTERVAL,
        );
        dht_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    self.jobs.on_done(&mut self.swarm.behaviour_mut().mailbox, done);
                }
                Some(done) = self.group_jobs.join_next(), if !self.group_jobs.is_empty() => {
                    self.group_jobs.on_done(&mut self.swarm.behaviour_mut().grouplog, done);
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = expiry.tick() => self.start_expiry(),
                _ = group_expiry.tick() => self.start_group_expiry(),
                _ = housekeeping.tick() => {
                    self.update_dht_records();
                    self.service.prune();
                    self.group_service.prune();
                }
                _ = dht_refresh.tick() => self.refresh_dht(),
            }
        }
        self.shutdown().await
    }

    async fn shutdown(mut self) -> Result<(), RunError> {
        tracing::info!(
            jobs = self.jobs.len(),
            grouplog_jobs = self.group_jobs.len(),
            "shutting down"
        );
        for id in std::mem::take(&mut self.listeners) {
            self.swarm.remove_listener(id);
        }
        self.accepting = false;
        let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(deadline);
        while !self.jobs.is_settled() || !self.group_jobs.is_settled() {
            tokio::select! {
                biased;
                () = &mut deadline => {
                    tracing::warn!(
                        jobs = self.jobs.len(),
                        unsent = self.jobs.unsent(),
                        grouplog_jobs = self.group_jobs.len(),
                        grouplog_unsent = self.group_jobs.unsent(),
                        "shutdown grace period over; leaving requests unanswered"
                    );
                    break;
                }
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    self.jobs.on_done(&mut self.swarm.behaviour_mut().mailbox, done);
                }
                Some(done) = self.group_jobs.join_next(), if !self.group_jobs.is_empty() => {
                    self.group_jobs.on_done(&mut self.swarm.behaviour_mut().grouplog, done);
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
        }
        if let Some(store) = self.service.store().cloned() {
            tokio::task::spawn_blocking(move || store.checkpoint())
                .await
                .map_err(|e| RunError::Flush("mailbox", e.to_string()))?
                .map_err(|e| RunError::Flush("mailbox", e.to_string()))?;
        }
        if let Some(store) = self.group_service.store().cloned() {
            tokio::task::spawn_blocking(move || store.checkpoint())
                .await
                .map_err(|e| RunError::Flush("group log", e.to_string()))?
                .map_err(|e| RunError::Flush("group log", e.to_string()))?;
        }
        // Uploads still being pulled were never answered `held`: their uploaders
        // retry, and what they pulled is swept at the next start.
        self.media_tasks.clear();
        drop(self.metrics_server.take());
        tracing::info!("relay stopped");
        Ok(())
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.reported.insert(listener_id);
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                if self.announce_listen_addrs {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "no longer listening");
                self.listen_addrs.retain(|a| a != &address);
                if self.announce_listen_addrs {
                    self.swarm.remove_external_address(&address);
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                if self.listeners.remove(&listener_id) {
                    let reason = match reason {
                        Ok(()) => "closed".to_owned(),
                        Err(e) => error_chain(&e),
                    };
                    tracing::warn!(addresses = %joined(&addresses), %reason, "listener closed");
                    if !self.reported.contains(&listener_id) {
                        self.listen_failure = Some(StartError::Listen {
                            addr: addresses.first().cloned().unwrap_or_else(Multiaddr::empty),
                            reason,
                        });
                    }
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error_chain(&error), "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                self.metrics.connections.inc();
                tracing::debug!(%peer_id, addr = %endpoint.get_remote_address(), "connection established");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                self.metrics.connections.dec();
                tracing::debug!(
                    %peer_id,
                    cause = cause.as_ref().map(tracing::field::display),
                    "connection closed"
                );
                if num_established == 0 && self.reservations.remove(&peer_id).is_some() {
                    self.update_reservations();
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                let refusal = match &error {
                    ListenError::Denied { cause } => conn_limits::refusal(cause),
                    _ => None,
                };
                match refusal {
                    // Debug only: a flood of refusals must not become a flood of logs.
                    Some(refusal) => {
                        self.metrics.connection_refused(refusal.limit());
                        tracing::debug!(
                            %send_back_addr,
                            limit = refusal.limit().as_str(),
                            %refusal,
                            "connection refused"
                        );
                    }
                    None => tracing::debug!(%send_back_addr, %error, "incoming connection failed"),
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(
                    peer_id = peer_id.map(tracing::field::display),
                    %error,
                    "outgoing connection failed"
                );
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Mailbox(event) => {
                let mailbox = &mut self.swarm.behaviour_mut().mailbox;
                self.jobs.on_event(&mut self.service, mailbox, self.accepting, event);
            }
            BehaviourEvent::Grouplog(event) => {
                let grouplog = &mut self.swarm.behaviour_mut().grouplog;
                self.group_jobs.on_event(&mut self.group_service, grouplog, self.accepting, event);
            }
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.on_identified(peer_id, info);
                }
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                match event {
                    kad::Event::InboundRequest {
                        request: kad::InboundRequest::PutRecord { source, .. },
                    } => {
                        tracing::debug!(%source, "stored a DHT record");
                        self.update_dht_records();
                    }
                    kad::Event::RoutingUpdated { peer, .. } => {
                        tracing::debug!(%peer, "DHT routing table updated");
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Relay(event) => {
                self.libp2p_metrics.record(&event);
                self.on_relay_event(event);
            }
            BehaviourEvent::Autonat(event) => log_autonat(event),
            BehaviourEvent::Ping(event) => {
                self.libp2p_metrics.record(&event);
            }
            // Raw streams report nothing; `media_service` serves them.
            BehaviourEvent::Streams(()) => {}
        }
    }

    /// Puts a kith node's advertised addresses in the routing table, so peers that
    /// bootstrap through the relay find each other.
    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        for addr in info.listen_addrs {
            let usable = !addr.iter().any(|p| {
                matches!(p, Protocol::P2pCircuit)
                    || matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
                    || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
            });
            if usable {
                kad.add_address(&peer_id, addr);
            }
        }
    }

    fn on_relay_event(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed,
            } => {
                self.metrics.reservations_accepted.inc();
                if !renewed {
                    *self.reservations.entry(src_peer_id).or_default() += 1;
                    self.update_reservations();
                }
                tracing::debug!(peer = %src_peer_id, renewed, "reservation accepted");
            }
            relay::Event::ReservationReqDenied {
                src_peer_id,
                status,
            } => {
                tracing::debug!(peer = %src_peer_id, status = status_name(status), "reservation denied");
            }
            relay::Event::ReservationTimedOut { src_peer_id } => {
                if let Some(count) = self.reservations.get_mut(&src_peer_id) {
                    *count -= 1;
                    if *count <= 0 {
                        self.reservations.remove(&src_peer_id);
                    }
                    self.update_reservations();
                }
            }
            // libp2p reports this for every closed connection of a peer, reserved or
            // not; a reservation lives on one connection, so they are all gone when
            // the peer's last connection is (see `ConnectionClosed`).
            relay::Event::ReservationClosed { src_peer_id } => {
                if !self.swarm.is_connected(&src_peer_id)
                    && self.reservations.remove(&src_peer_id).is_some()
                {
                    self.update_reservations();
                }
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                self.metrics.circuits.inc();
                self.metrics.circuits_active.inc();
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "circuit opened");
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                self.metrics.circuits_active.dec();
                tracing::debug!(
                    src = %src_peer_id,
                    dst = %dst_peer_id,
                    error = error.as_ref().map(tracing::field::display),
                    "circuit closed"
                );
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => {
                tracing::debug!(
                    src = %src_peer_id,
                    dst = %dst_peer_id,
                    status = status_name(status),
                    "circuit denied"
                );
            }
            other => tracing::debug!(event = %variant_name(&other), "relay"),
        }
    }

    fn update_reservations(&self) {
        self.metrics
            .reservations_active
            .set(self.reservations.values().sum());
    }

    fn refresh_dht(&mut self) {
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            let outcome = kad.refresh();
            tracing::debug!(started = outcome == dht::Refresh::Started, "DHT refresh");
        }
    }

    fn update_dht_records(&mut self) {
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            let count = kad.store_mut().records().count();
            self.metrics
                .dht_records
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    fn start_expiry(&mut self) {
        if let Some(job) = self.service.expire_job() {
            self.jobs.spawn_expiry(move || job.run());
        }
    }

    fn start_group_expiry(&mut self) {
        if let Some(job) = self.group_service.expire_job() {
            self.group_jobs.spawn_expiry(move || job.run());
        }
    }
}

/// Starts the media role on `swarm`: `/kith/media/1` uploads and `/kith/blob/1`
/// downloads from `store`, voice rooms (`/kith/room/1`) and TURN grants
/// (`/kith/turn/1`) with the TURN server, each in a task aborted with the relay.
async fn start_media(
    swarm: &Swarm<Behaviour>,
    store: MediaStore,
    access: Access,
    config: &RelayConfig,
    metrics: Metrics,
) -> Result<Vec<AbortOnDrop>, StartError> {
    let Some(streams) = swarm.behaviour().streams.as_ref() else {
        return Err(StartError::Internal("the media role has no stream behaviour".into()));
    };
    let mut control = streams.new_control();
    let registered = |e: libp2p_stream::AlreadyRegistered| StartError::Internal(e.to_string());
    let uploads = control
        .accept(kith_p2p::blob::media::PROTOCOL)
        .map_err(registered)?;
    let downloads = control
        .accept(kith_p2p::blob::transfer::PROTOCOL)
        .map_err(registered)?;
    // Voice rooms: forwarding connections gather host candidates on the relay's own
    // addresses (concrete listen addresses and external ones).
    let rooms = control
        .accept(kith_p2p::call::room::PROTOCOL)
        .map_err(registered)?;
    let grants = control
        .accept(kith_p2p::call::turn::PROTOCOL)
        .map_err(registered)?;
    let media_ips = media_ips(config);
    let room_tasks = if media_ips.is_empty() {
        tracing::warn!("voice rooms are off: no concrete listen or external address to forward media on");
        None
    } else {
        let media = kith_call::MediaConfig { bind: media_ips.clone(), ..Default::default() };
        Some(room_service::Rooms::new(access.clone(), media))
    };
    let turn = match media_ips.first() {
        Some(ip) => Some(turn_server(*ip, config).await?),
        None => {
            tracing::warn!("the TURN server is off: no concrete listen or external address to relay calls on");
            None
        }
    };
    let (access_for_turn, metrics_for_turn) = (access.clone(), metrics.clone());
    let service = Arc::new(media_service::MediaService::new(
        store,
        access,
        metrics,
        config.media.max_uploads as usize,
        config.media.expire_interval(),
    ));
    let serving = service.clone();
    let mut tasks = vec![
        AbortOnDrop(tokio::spawn(async move {
            serving.serve_downloads(downloads).await;
        })),
        AbortOnDrop(tokio::spawn(service.serve_uploads(control, uploads))),
    ];
    if let Some(room_service) = &room_tasks {
        tasks.push(AbortOnDrop(tokio::spawn(room_service.clone().serve(rooms))));
    }
    if let Some(server) = turn {
        let grants_service = turn_service::Grants::new(server, access_for_turn);
        tasks.push(AbortOnDrop(tokio::spawn(grants_service.clone().serve(grants))));
        tasks.push(AbortOnDrop(tokio::spawn(grants_service.report(room_tasks, metrics_for_turn))));
    }
    Ok(tasks)
}

/// The media role's TURN server on `ip` (`media.turn_port`): bound to `ip` where it
/// is one of this host's, else (an external address behind a port forward) to every
/// interface, telling clients `ip`.
async fn turn_server(ip: std::net::IpAddr, config: &RelayConfig) -> Result<kith_call::turn::TurnServer, StartError> {
    let m = &config.media;
    let turn = |listen: std::net::IpAddr, public_ip| kith_call::turn::TurnConfig {
        listen: SocketAddr::new(listen, m.turn_port),
        public_ip,
        max_allocations: m.turn_max_allocations as usize,
        max_allocations_per_peer: m.turn_max_allocations_per_peer as usize,
        bytes_per_second: m.turn_max_bytes_per_second,
        ..Default::default()
    };
    match kith_call::turn::TurnServer::bind(turn(ip, None)).await {
        Ok(server) => Ok(server),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            let any = if ip.is_ipv4() { std::net::Ipv4Addr::UNSPECIFIED.into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
            kith_call::turn::TurnServer::bind(turn(any, Some(ip)))
                .await
                .map_err(|e| StartError::Internal(format!("the TURN server (media.turn_port {}): {e}", m.turn_port)))
        }
        Err(e) => Err(StartError::Internal(format!("the TURN server on {ip} (media.turn_port {}): {e}", m.turn_port))),
    }
}

/// The IP addresses of the relay's concrete listen and external addresses.
fn media_ips(config: &RelayConfig) -> Vec<std::net::IpAddr> {
    let addrs: Vec<Multiaddr> = config
        .listen
        .iter()
        .chain(&config.external_addresses)
        .filter_map(|a| a.parse().ok())
        .collect();
    kith_p2p::call::media_ips(&addrs)
}

/// A task aborted when this is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn parse_addrs(key: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, StartError> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<Multiaddr>()
                .map_err(|e| StartError::BadAddress {
                    key: format!("{key}[{i}]"),
                    addr: text.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

fn parse_members(members: &[String]) -> Result<HashSet<PeerId>, StartError> {
    members
        .iter()
        .map(|m| {
            m.parse::<PeerId>()
                .map_err(|_| StartError::BadMember { member: m.clone() })
        })
        .collect()
}

/// Addresses as one space-separated field value (not the debug text of a `Vec`).
fn joined(addrs: &[Multiaddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name of an enum value's variant, from its debug text (`CircuitReqAcceptFailed
/// { .. }` gives `CircuitReqAcceptFailed`): for events and codes of libp2p types
/// that have no `Display`, so a log field holds a word, not a dump.
fn variant_name(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let end = text.find([' ', '{', '(']).unwrap_or(text.len());
    text[..end].to_owned()
}

/// A circuit relay status code (`ResourceLimitExceeded`) as a log word
/// (`resource_limit_exceeded`), as the metrics' label values are.
fn status_name(status: impl std::fmt::Debug) -> String {
    crate::metrics::snake_case(&variant_name(&status))
}

/// AutoNAT server events, as fields. The relay only answers probes.
fn log_autonat(event: libp2p::autonat::Event) {
    use libp2p::autonat::{Event, InboundProbeError, InboundProbeEvent};
    match event {
        Event::InboundProbe(InboundProbeEvent::Request {
            peer, addresses, ..
        }) => {
            tracing::debug!(%peer, addresses = %joined(&addresses), "autonat probe requested");
        }
        Event::InboundProbe(InboundProbeEvent::Response { peer, address, .. }) => {
            tracing::debug!(%peer, %address, "autonat probe reached the peer");
        }
        Event::InboundProbe(InboundProbeEvent::Error { peer, error, .. }) => {
            let error = match error {
                InboundProbeError::InboundRequest(failure) => failure.to_string(),
                InboundProbeError::Response(response) => status_name(response),
            };
            tracing::debug!(%peer, %error, "autonat probe failed");
        }
        other => tracing::debug!(event = %variant_name(&other), "autonat"),
    }
}

/// An error and its sources as one line (some libp2p errors display as nothing and
/// keep the detail in their source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(inner) = source {
        parts.push(inner.to_string());
        source = inner.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_words_for_statuses_are_snake_case() {
        assert_eq!(status_name(libp2p::relay::StatusCode::ResourceLimitExceeded), "resource_limit_exceeded");
        assert_eq!(status_name(libp2p::relay::StatusCode::OK), "ok");
        assert_eq!(status_name(libp2p::autonat::ResponseError::DialError), "dial_error");
    }
}
