//! Benchmark of `kith-relay` (issue 4): durable mailbox deposit throughput, drain
//! throughput, and the relay's memory per idle connected peer.
//!
//! Run: `cargo run --release -p kith-tests --bin relay-bench -- [--deposits N]
//! [--peers 1000,5000] [--senders K] [--in-flight W] [--owners M] [--drainers D]
//! [--hold SECS] [--bare-relay]`.
//!
//! Everything runs against a real `kith-relay` process (the release build next to this
//! binary) on 127.0.0.1; the clients are raw libp2p swarms in this process (TCP, Noise,
//! yamux), exactly what a kith node puts on the wire:
//!
//! 1. **Deposit.** `K` senders (distinct identities, one connection each) deposit `N`
//!    real envelopes (100-byte text messages sealed with [`Sealer`] up front, each
//!    distinct) into `M` owners' mailboxes, in batches of [`MAX_DEPOSIT_BATCH`] with
//!    `W` requests in flight per sender. A deposit's answer comes only after the relay
//!    has flushed it, so the rate reported is of durable, acknowledged envelopes.
//!    Then the relay is stopped (SIGTERM) and started again holding them all: the
//!    time to `ready` includes loading the de-duplication index the stop left in a
//!    checkpoint. It is then killed (`kill -9`) and started again: with no checkpoint
//!    to trust, the start reads every envelope to rebuild the index.
//! 2. **Drain.** The `M` owners, `D` at a time, each on its own connection, drain their
//!    mailboxes as a node does (challenge, drain a page of [`MAX_DRAIN_ITEMS`],
//!    challenge, ack, repeat) and the envelopes received are checked against those
//!    deposited, exactly once each.
//! 3. **Memory.** On a fresh relay, idle peers (distinct identities, identify + ping,
//!    as a kith node) connect until the relay counts `P` connections for each `P` of
//!    `--peers` (cumulative); the relay's RSS growth divided by `P` is the cost of one
//!    idle peer. The relay closes connections without open streams after 60 s, so each
//!    peer sends a no-op mailbox request (an empty deposit) every [`KEEPALIVE_INTERVAL`],
//!    as a node's periodic traffic would. `--hold SECS` keeps them connected that much
//!    longer and measures again (past 70 s it shows that they stay connected);
//!    `--bare-relay` switches the DHT, circuit relay and AutoNAT roles off for this
//!    phase, to separate the cost of the connection stack from that of the roles'
//!    per-connection handlers.
//!
//! Besides the rates, each phase reports the CPU time the relay and this process used
//! (from /proc), to show which side limited it: the machine's cores are shared.
//!
//! Numbers go to docs/PERFORMANCE.md; nothing here is a pass/fail test, but every
//! phase is bounded in time and the program exits non-zero with a message if a phase
//! cannot finish or a check fails.

#![allow(clippy::unwrap_used)]

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use kith_p2p::envelope::{OPENER_CACHE_CAPACITY, Opener, Sealer, SealerConfig};
use kith_p2p::identity::Identity;
use kith_p2p::libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use kith_p2p::libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use kith_p2p::libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, identity, noise, ping, tcp, yamux};
use kith_p2p::mailbox::{self, MAX_DEPOSIT_BATCH, MAX_DRAIN_ITEMS, MailboxRequest, MailboxResponse, Refusal};
use kith_p2p::node::IDENTIFY_VERSION;
use kith_p2p::ops;
use kith_p2p::payload::Payload;
use kith_tests::bench::{cpu_time, ms, percentile, rss_kib};
use kith_tests::{Relay, free_port, relay_bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// Connecting one client (dial, Noise, yamux) must finish within this.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// One mailbox request may take this long before it fails (the relay's own limit is 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How often an idle peer sends the relay a keep-alive request (an empty mailbox
/// deposit). The relay closes a connection that has had no open stream for 60 s (plus
/// the 10 s its circuit-relay handler keeps a fresh connection alive). Ping does not
/// count: libp2p ignores ping streams for keep-alive. Identify does not reliably count
/// either: the relay answers it inside its connection task, and an exchange that
/// completes within one poll of the connection never resets the idle timer (libp2p-swarm
/// 0.48 checks for open streams only when nothing else can progress). A mailbox
/// request is answered by the relay's event loop, so its stream is open across polls.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// Idle peers handshaking at once (bounds the load of building thousands of swarms).
const IDLE_CONNECT_CONCURRENCY: usize = 64;

/// After the relay counts the connections, wait this long before reading its RSS.
const SETTLE: Duration = Duration::from_secs(5);

/// Length of each benchmark message's text, in bytes.
const MESSAGE_LEN: usize = 100;

struct Args {
    deposits: usize,
    peers: Vec<usize>,
    senders: usize,
    in_flight: usize,
    owners: usize,
    drainers: usize,
    hold: u64,
    bare_relay: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        deposits: 100_000,
        peers: vec![1000, 5000],
        senders: 4,
        in_flight: 8,
        owners: 100,
        drainers: 16,
        hold: 0,
        bare_relay: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bare-relay" {
            args.bare_relay = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag} needs a number, got {value:?}"));
        match flag.as_str() {
            "--deposits" => args.deposits = number().max(1),
            "--senders" => args.senders = number().max(1),
            // The relay serves at most 16 mailbox streams per connection.
            "--in-flight" => args.in_flight = number().clamp(1, 16),
            "--owners" => args.owners = number().max(1),
            "--drainers" => args.drainers = number().max(1),
            "--hold" => args.hold = number() as u64,
            "--peers" => {
                args.peers = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("--peers needs numbers, got {s:?}")))
                    .collect();
                assert!(args.peers.windows(2).all(|w| w[0] < w[1]), "--peers totals must increase");
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

// ---------------------------------------------------------------------------------------
// Small helpers

/// Runs `fut`, failing with a message naming `what` if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut).await.map_err(|_| anyhow!("timed out after {limit:?}: {what}"))?
}

/// CPU time used by the relay and by this process between two points.
struct CpuMeter {
    relay_pid: u32,
    relay: Duration,
    bench: Duration,
    since: Instant,
}

impl CpuMeter {
    fn start(relay_pid: u32) -> CpuMeter {
        CpuMeter { relay_pid, relay: cpu_time(relay_pid), bench: cpu_time(std::process::id()), since: Instant::now() }
    }

    /// CPU seconds of both sides since the start, and their share of one core.
    fn report(&self) -> String {
        let wall = self.since.elapsed();
        let relay = cpu_time(self.relay_pid).saturating_sub(self.relay);
        let bench = cpu_time(std::process::id()).saturating_sub(self.bench);
        let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64().max(1e-9);
        format!(
            "CPU: relay {:.2} s ({:.0}% of a core), clients {:.2} s ({:.0}%)",
            relay.as_secs_f64(),
            share(relay),
            bench.as_secs_f64(),
            share(bench)
        )
    }
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A short description of a response, for error messages (never the envelopes).
fn describe(response: &MailboxResponse) -> String {
    match response {
        MailboxResponse::Deposited { results } => format!("deposited ({} results)", results.len()),
        MailboxResponse::Challenge { .. } => "a challenge".into(),
        MailboxResponse::Envelopes { items, more } => format!("a page of {} (more: {more})", items.len()),
        MailboxResponse::Acked { removed } => format!("acked {removed}"),
        MailboxResponse::Refused(refusal) => format!("refused: {refusal} ({})", refusal.as_str()),
    }
}

/// `RLIMIT_NOFILE` (soft, hard) of this process, from /proc.
fn nofile_limits() -> Option<(String, String)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line.split_whitespace().skip(3);
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit, so the relay (a child
/// spawned afterwards) inherits it. The workspace forbids `unsafe`, so this uses
/// util-linux `prlimit` on our own pid instead of calling `setrlimit` directly.
fn raise_nofile_limit() -> String {
    let Some((soft, hard)) = nofile_limits() else { return "unknown (no /proc/self/limits)".into() };
    if soft != hard {
        let status = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: could not raise RLIMIT_NOFILE from {soft} to {hard} (prlimit: {status:?})");
        }
    }
    match nofile_limits() {
        Some((soft, hard)) => format!("soft {soft}, hard {hard}"),
        None => "unknown".into(),
    }
}

/// Fetches the relay's `/metrics` page with a plain HTTP/1.1 GET.
async fn fetch_metrics(port: u16) -> anyhow::Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        anyhow::Ok(body)
    };
    let body =
        tokio::time::timeout(Duration::from_secs(10), fetch).await.map_err(|_| anyhow!("GET /metrics timed out"))??;
    if !body.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {}", body.lines().next().unwrap_or("no answer"));
    }
    Ok(body)
}

/// The value of the unlabelled metric `name` on a `/metrics` page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name)).then(|| words.next()?.parse().ok()).flatten()
    })
}

async fn relay_metric(port: u16, name: &str) -> anyhow::Result<f64> {
    let page = fetch_metrics(port).await?;
    metric(&page, name).ok_or_else(|| anyhow!("no metric {name} on /metrics"))
}

/// A relay configured for the benchmark: mailbox limits far above what it deposits,
/// so quotas, the per-peer rate limits and the connection limits (every client is on
/// 127.0.0.1) never interfere; metrics on loopback.
fn start_relay(deposits: usize, bare: bool) -> (Relay, u16) {
    let metrics_port = free_port();
    let roles = if bare {
        "[dht]\nenabled = false\n\n[circuit]\nenabled = false\n\n[autonat]\nenabled = false\n\n"
    } else {
        ""
    };
    let per_mailbox = (deposits as u64).max(10_000) * 2;
    let config = format!(
        "{roles}[mailbox]\n\
         max_messages_per_mailbox = {per_mailbox}\n\
         max_total_envelopes = {per_mailbox}\n\
         max_bytes_per_mailbox = {bytes}\n\
         open_share_percent = 100\n\
         max_total_bytes = {bytes}\n\
         sender_rate_per_sec = 1000000000\n\
         sender_burst = 1000000000\n\
         challenge_rate_per_sec = 1000000000\n\
         challenge_burst = 1000000000\n\
         \n\
         [connections]\n\
         max_established = 1000000\n\
         max_per_ip = 1000000\n\
         \n\
         [metrics]\n\
         listen = \"127.0.0.1:{metrics_port}\"\n",
        bytes = per_mailbox * 4096,
    );
    let mut relay = Relay::new(&config);
    relay.start();
    (relay, metrics_port)
}

// ---------------------------------------------------------------------------------------
// A mailbox client: one connection to the relay speaking /kith/mailbox/1.

type MailboxBehaviour = request_response::Behaviour<mailbox::Codec>;

struct MailClient {
    swarm: Swarm<MailboxBehaviour>,
    relay: PeerId,
}

impl MailClient {
    /// Connects to the relay as `keypair` and waits for the connection.
    async fn connect(keypair: identity::Keypair, relay: PeerId, addr: &Multiaddr) -> anyhow::Result<MailClient> {
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    mailbox::Codec::default(),
                    [(mailbox::PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(64),
                )
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build();
        swarm.dial(addr.clone()).context("dialling the relay")?;
        let connected = async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == relay => return Ok(()),
                    SwarmEvent::OutgoingConnectionError { error, .. } => bail!("cannot connect to the relay: {error}"),
                    _ => {}
                }
            }
        };
        within(CONNECT_DEADLINE, "connecting to the relay", connected).await?;
        Ok(MailClient { swarm, relay })
    }

    fn send(&mut self, request: MailboxRequest) -> OutboundRequestId {
        self.swarm.behaviour_mut().send_request(&self.relay, request)
    }

    /// One request, one answer (the request-response timeout bounds the wait).
    async fn call(&mut self, request: MailboxRequest) -> anyhow::Result<MailboxResponse> {
        let id = self.send(request);
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response },
                    ..
                }) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, error, .. })
                    if request_id == id =>
                {
                    bail!("mailbox request failed: {error}")
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == self.relay => {
                    bail!("the relay closed the connection: {cause:?}")
                }
                _ => {}
            }
        }
    }

    /// A request that needs a fresh challenge: asks for one, builds the request with
    /// its nonce and sends it; starts over (after the hinted pause) while the relay
    /// answers `RateLimited`.
    async fn authorized(
        &mut self,
        make: impl Fn([u8; mailbox::NONCE_LEN]) -> MailboxRequest,
    ) -> anyhow::Result<MailboxResponse> {
        for _ in 0..100 {
            let nonce = match self.call(MailboxRequest::Challenge).await? {
                MailboxResponse::Challenge { nonce } => nonce,
                MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms }) => {
                    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
                    continue;
                }
                other => bail!("unexpected answer to a challenge request: {}", describe(&other)),
            };
            match self.call(make(nonce)).await? {
                MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms }) => {
                    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
                }
                response => return Ok(response),
            }
        }
        bail!("the relay stayed busy for 100 attempts")
    }
}

// ---------------------------------------------------------------------------------------
// Phase 1: deposits

/// One deposit request's worth of envelopes, all for one owner.
struct Batch {
    owner: usize,
    envelopes: Vec<Vec<u8>>,
}

/// The benchmark's cast and its sealed mail.
struct Mail {
    senders: Vec<Identity>,
    owners: Vec<Identity>,
    owner_ids: Vec<PeerId>,
    /// Every batch; batch `g` is for owner `g % owners` and sent by sender
    /// `(g / owners) % senders`, so every sender writes to every mailbox.
    batches: Vec<Batch>,
    /// Per owner, the content hashes of the envelopes deposited for it.
    expected: Vec<HashSet<u64>>,
    envelope_bytes: usize,
}

/// A 100-byte text message as a node encodes it before sealing.
fn message(sender: usize, index: usize) -> Vec<u8> {
    let text = format!("{sender:>3}:{index:0>width$}", width = MESSAGE_LEN - 4);
    Payload::Text { id: ops::new_message_id(), lamport: index as u64 + 1, sent_at_ms: ops::now_ms(), text, file: None, link: None }
        .encode()
        .unwrap()
}

/// Seals `total` distinct envelopes (each a fresh message, each its own nonce).
fn seal_mail(total: usize, senders: usize, owners: usize) -> Mail {
    let sender_ids: Vec<Identity> = (0..senders).map(|_| Identity::generate()).collect();
    let owner_ids: Vec<Identity> = (0..owners).map(|_| Identity::generate()).collect();
    let owner_keys: Vec<[u8; 32]> = owner_ids.iter().map(Identity::e2e_public).collect();
    let mut sealers: Vec<Sealer> = sender_ids.iter().map(|s| Sealer::new(s, SealerConfig::default())).collect();
    let mut batches = Vec::with_capacity(total.div_ceil(MAX_DEPOSIT_BATCH));
    let mut expected = vec![HashSet::new(); owners];
    let mut envelope_bytes = 0;
    let mut sealed = 0;
    while sealed < total {
        let g = batches.len();
        let owner = g % owners;
        let sender = (g / owners) % senders;
        let count = MAX_DEPOSIT_BATCH.min(total - sealed);
        let envelopes: Vec<Vec<u8>> = (0..count)
            .map(|i| sealers[sender].seal(&owner_keys[owner], &message(sender, sealed + i)).unwrap())
            .collect();
        for envelope in &envelopes {
            envelope_bytes += envelope.len();
            assert!(expected[owner].insert(content_hash(envelope)), "two envelopes are identical");
        }
        sealed += count;
        batches.push(Batch { owner, envelopes });
    }
    Mail {
        senders: sender_ids,
        owner_ids: owner_ids.iter().map(Identity::peer_id).collect(),
        owners: owner_ids,
        batches,
        expected,
        envelope_bytes,
    }
}

#[derive(Default)]
struct DepositReport {
    stored: u64,
    duplicates: u64,
    busy_retries: u64,
    latencies: Vec<Duration>,
    last_answer: Option<Instant>,
}

/// Sends `mine` (indices into `mail.batches`) with up to `in_flight` requests pending;
/// returns once every envelope is acknowledged as held.
async fn deposit(
    mut client: MailClient,
    mail: Arc<Mail>,
    mine: Vec<usize>,
    in_flight: usize,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<DepositReport> {
    let mut queue: VecDeque<usize> = mine.into();
    // Batches refused as busy, and when to send them again.
    let mut later: Vec<(tokio::time::Instant, usize)> = Vec::new();
    let mut pending: HashMap<OutboundRequestId, (usize, Instant)> = HashMap::new();
    let mut report = DepositReport::default();
    loop {
        let now = tokio::time::Instant::now();
        later.retain(|&(at, batch)| {
            if at <= now {
                queue.push_front(batch);
            }
            at > now
        });
        while pending.len() < in_flight {
            let Some(index) = queue.pop_front() else { break };
            let batch = &mail.batches[index];
            let request = MailboxRequest::deposit(&mail.owner_ids[batch.owner], batch.envelopes.clone());
            pending.insert(client.send(request), (index, Instant::now()));
        }
        if pending.is_empty() && queue.is_empty() && later.is_empty() {
            return Ok(report);
        }
        let next_retry = later.iter().map(|&(at, _)| at).min();
        let event = tokio::select! {
            event = client.swarm.select_next_some() => event,
            () = tokio::time::sleep_until(next_retry.unwrap_or(now)), if next_retry.is_some() => continue,
        };
        match event {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            }) => {
                let Some((index, sent)) = pending.remove(&request_id) else { continue };
                report.latencies.push(sent.elapsed());
                let expected = mail.batches[index].envelopes.len();
                match response {
                    MailboxResponse::Deposited { results } if results.len() == expected => {
                        for result in results {
                            match result {
                                mailbox::DepositResult::Stored => report.stored += 1,
                                mailbox::DepositResult::Duplicate => report.duplicates += 1,
                                other => bail!("the relay did not store an envelope: {other:?}"),
                            }
                        }
                        progress.fetch_add(expected as u64, Ordering::Relaxed);
                        report.last_answer = Some(Instant::now());
                    }
                    MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms }) => {
                        report.busy_retries += 1;
                        later.push((tokio::time::Instant::now() + Duration::from_millis(retry_after_ms), index));
                    }
                    other => bail!("unexpected answer to a deposit of {expected}: {}", describe(&other)),
                }
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                bail!("a deposit request failed: {error}")
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == client.relay => {
                bail!("the relay closed the connection: {cause:?}")
            }
            _ => {}
        }
    }
}

/// Prints the count every 10 s while a long phase runs.
fn spawn_progress(what: &'static str, counter: Arc<AtomicU64>, total: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            let done = counter.load(Ordering::Relaxed);
            println!(
                "  … {what}: {done}/{total} after {:.0} s ({:.0}/s)",
                start.elapsed().as_secs_f64(),
                done as f64 / start.elapsed().as_secs_f64()
            );
        }
    })
}

struct DepositResult {
    total: usize,
    elapsed: Duration,
    report: DepositReport,
}

async fn deposit_phase(
    mail: Arc<Mail>,
    relay: PeerId,
    addr: &Multiaddr,
    in_flight: usize,
) -> anyhow::Result<DepositResult> {
    let senders = mail.senders.len();
    let mut clients = Vec::with_capacity(senders);
    for sender in &mail.senders {
        clients.push(MailClient::connect(sender.libp2p_keypair(), relay, addr).await?);
    }
    let owners = mail.owners.len();
    let mut assigned = vec![Vec::new(); senders];
    for g in 0..mail.batches.len() {
        assigned[(g / owners) % senders].push(g);
    }
    let total: usize = mail.batches.iter().map(|b| b.envelopes.len()).sum();
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = spawn_progress("deposited", progress.clone(), total as u64);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (client, mine) in clients.into_iter().zip(assigned) {
        tasks.spawn(deposit(client, mail.clone(), mine, in_flight, progress.clone()));
    }
    let mut report = DepositReport::default();
    while let Some(done) = tasks.join_next().await {
        let part = done.context("a depositor panicked")??;
        report.stored += part.stored;
        report.duplicates += part.duplicates;
        report.busy_retries += part.busy_retries;
        report.latencies.extend(part.latencies);
        report.last_answer = report.last_answer.max(part.last_answer);
    }
    ticker.abort();
    let elapsed = report.last_answer.map_or(start.elapsed(), |t| t - start);
    report.latencies.sort();
    Ok(DepositResult { total, elapsed, report })
}

// ---------------------------------------------------------------------------------------
// Phase 2: drains

#[derive(Default)]
struct DrainReport {
    envelopes: u64,
    pages: u64,
}

/// Drains and acks `owner`'s whole mailbox, checking that exactly the `expected`
/// envelopes come out, once each, and that they open as sealed by one of `senders`.
async fn drain(
    owner: Identity,
    relay: PeerId,
    addr: Multiaddr,
    mut expected: HashSet<u64>,
    senders: Arc<HashSet<PeerId>>,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<DrainReport> {
    let mut client = MailClient::connect(owner.libp2p_keypair(), relay, &addr).await?;
    let mut opener = Opener::new(&owner, OPENER_CACHE_CAPACITY);
    let mut report = DrainReport::default();
    let mut after = None;
    loop {
        let page = client
            .authorized(|nonce| MailboxRequest::drain(&owner, &relay, nonce, after, MAX_DRAIN_ITEMS as u32))
            .await?;
        let MailboxResponse::Envelopes { items, more } = page else {
            bail!("unexpected answer to a drain: {}", describe(&page));
        };
        if let Some(first) = items.first() {
            // Spot check: the first of each page opens, from one of our senders.
            let opened = opener.open(&first.envelope).map_err(|e| anyhow!("a drained envelope does not open: {e}"))?;
            if !senders.contains(&opened.sender) {
                bail!("a drained envelope claims an unknown sender {}", opened.sender);
            }
        }
        for item in &items {
            if !expected.remove(&content_hash(&item.envelope)) {
                bail!("drained an envelope that was not deposited, or twice (seq {})", item.seq);
            }
        }
        report.pages += 1;
        if !items.is_empty() {
            let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
            after = seqs.last().copied();
            let count = seqs.len();
            let acked = client.authorized(|nonce| MailboxRequest::ack(&owner, &relay, nonce, seqs.clone())).await?;
            match acked {
                MailboxResponse::Acked { removed } if removed as usize == count => {}
                other => bail!("unexpected answer to an ack of {count}: {}", describe(&other)),
            }
            report.envelopes += count as u64;
            progress.fetch_add(count as u64, Ordering::Relaxed);
        }
        if !more {
            break;
        }
    }
    if !expected.is_empty() {
        bail!("{} deposited envelopes never came out of the mailbox", expected.len());
    }
    Ok(report)
}

async fn drain_phase(
    mail: &Mail,
    relay: PeerId,
    addr: &Multiaddr,
    drainers: usize,
) -> anyhow::Result<(DrainReport, Duration)> {
    let senders: Arc<HashSet<PeerId>> = Arc::new(mail.senders.iter().map(Identity::peer_id).collect());
    let total: usize = mail.expected.iter().map(HashSet::len).sum();
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = spawn_progress("drained", progress.clone(), total as u64);
    let mut waiting: VecDeque<usize> = (0..mail.owners.len()).collect();
    let mut tasks = JoinSet::new();
    let mut report = DrainReport::default();
    let start = Instant::now();
    loop {
        while tasks.len() < drainers {
            let Some(owner) = waiting.pop_front() else { break };
            tasks.spawn(drain(
                mail.owners[owner].clone(),
                relay,
                addr.clone(),
                mail.expected[owner].clone(),
                senders.clone(),
                progress.clone(),
            ));
        }
        let Some(done) = tasks.join_next().await else { break };
        let part = done.context("a drainer panicked")??;
        report.envelopes += part.envelopes;
        report.pages += part.pages;
    }
    let elapsed = start.elapsed();
    ticker.abort();
    Ok((report, elapsed))
}

// ---------------------------------------------------------------------------------------
// Phase 3: idle peers

/// What an idle kith node speaks to its relay: identify, ping, and (for the
/// keep-alive, see [`KEEPALIVE_INTERVAL`]) the mailbox protocol.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "kith_p2p::libp2p::swarm::derive_prelude")]
struct IdleBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mailbox: MailboxBehaviour,
}

/// Connection counts of the idle peers, updated by their tasks.
#[derive(Default)]
struct IdleCounts {
    connected: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    keepalive_failures: AtomicUsize,
    /// Why the first closed connection closed, and after how long.
    first_close: std::sync::Mutex<Option<String>>,
}

fn idle_swarm() -> anyhow::Result<Swarm<IdleBehaviour>> {
    let swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| IdleBehaviour {
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public()).with_agent_version("relay-bench".into()),
            ),
            ping: ping::Behaviour::default(),
            mailbox: request_response::Behaviour::with_codec(
                mailbox::Codec::default(),
                [(mailbox::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            ),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

/// One idle peer (the `index`th): a fresh identity connects to the relay, then keeps
/// its swarm polled, with a keep-alive request every [`KEEPALIVE_INTERVAL`], until the
/// task is aborted. `permit` is held while connecting.
async fn idle_peer(
    index: usize,
    relay: PeerId,
    addr: Multiaddr,
    counts: Arc<IdleCounts>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut swarm = match idle_swarm() {
        Ok(swarm) => swarm,
        Err(e) => {
            eprintln!("idle peer: {e:#}");
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if swarm.dial(addr).is_err() {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let connected = tokio::time::timeout(CONNECT_DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == relay => return true,
                SwarmEvent::OutgoingConnectionError { .. } => return false,
                _ => {}
            }
        }
    })
    .await;
    drop(permit);
    if connected != Ok(true) {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    counts.connected.fetch_add(1, Ordering::Relaxed);
    let connected_at = Instant::now();
    // An empty deposit into our own mailbox: answered at once, leaves no state.
    let own = *swarm.local_peer_id();
    // Spread the peers' keep-alives evenly over the interval.
    let offset = KEEPALIVE_INTERVAL.mul_f64((index % 1000) as f64 / 1000.0);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + offset, KEEPALIVE_INTERVAL);
    loop {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = keepalive.tick() => {
                swarm.behaviour_mut().mailbox.send_request(&relay, MailboxRequest::deposit(&own, Vec::new()));
                continue;
            }
        };
        match event {
            SwarmEvent::Behaviour(IdleBehaviourEvent::Mailbox(request_response::Event::OutboundFailure { .. })) => {
                counts.keepalive_failures.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::ConnectionClosed { num_established: 0, cause, .. } => {
                counts.closed.fetch_add(1, Ordering::Relaxed);
                counts
                    .first_close
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{cause:?} after {:.1} s", connected_at.elapsed().as_secs_f64()));
                return;
            }
            _ => {}
        }
    }
}

struct MemoryPoint {
    peers: usize,
    relay_connections: f64,
    rss_kib: u64,
    per_peer_kib: f64,
    connect_time: Duration,
}

/// The state after `--hold`: how long, connections the relay counts, its RSS.
struct Held {
    after: Duration,
    relay_connections: f64,
    rss_kib: u64,
}

struct MemoryResult {
    baseline_kib: u64,
    points: Vec<MemoryPoint>,
    held: Option<Held>,
    client_rss_growth_kib: u64,
    closed: usize,
}

async fn memory_phase(relay: &Relay, metrics_port: u16, totals: &[usize], hold: u64) -> anyhow::Result<MemoryResult> {
    let pid = relay.process.as_ref().unwrap().id();
    let relay_peer: PeerId = relay.peer_id.parse().unwrap();
    let addr: Multiaddr = relay.addr().parse().unwrap();
    // Let start-up allocation settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base_connections = relay_metric(metrics_port, "kith_relay_connections").await?;
    let baseline_kib = rss_kib(pid);
    let client_baseline = rss_kib(std::process::id());
    println!("  relay RSS idle: {baseline_kib} KiB ({base_connections} connections)");

    let counts = Arc::new(IdleCounts::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(IDLE_CONNECT_CONCURRENCY));
    let mut peers = JoinSet::new();
    let mut points = Vec::new();
    for &total in totals {
        let start = Instant::now();
        for _ in peers.len()..total {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let index = peers.len();
            peers.spawn(idle_peer(index, relay_peer, addr.clone(), counts.clone(), permit));
        }
        // Every peer spawned has connected or failed once all permits are back.
        let all_permits = u32::try_from(IDLE_CONNECT_CONCURRENCY).unwrap();
        within(Duration::from_secs(60), "idle peers connecting", async {
            drop(gate.acquire_many(all_permits).await?);
            Ok(())
        })
        .await?;
        let failed = counts.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!("{failed} idle peers could not connect (see RLIMIT_NOFILE and the relay's log)");
        }
        let connect_time = start.elapsed();
        let want = base_connections + total as f64;
        let relay_connections = within(Duration::from_secs(60), "the relay counting the idle peers", async {
            loop {
                let seen = relay_metric(metrics_port, "kith_relay_connections").await?;
                if seen >= want {
                    return Ok(seen);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await?;
        tokio::time::sleep(SETTLE).await;
        let closed = counts.closed.load(Ordering::Relaxed);
        if closed > 0 {
            bail!("{closed} idle connections were closed while measuring");
        }
        let rss = rss_kib(pid);
        let per_peer_kib = rss.saturating_sub(baseline_kib) as f64 / total as f64;
        println!(
            "  {total} idle peers (connected in {:.1} s; relay counts {relay_connections}): relay RSS {rss} KiB, \
             {per_peer_kib:.1} KiB per peer",
            connect_time.as_secs_f64()
        );
        points.push(MemoryPoint { peers: total, relay_connections, rss_kib: rss, per_peer_kib, connect_time });
    }
    let client_rss_growth_kib = rss_kib(std::process::id()).saturating_sub(client_baseline);
    let held = if hold > 0 {
        // Past the relay's 60 s idle timeout, connections without streams would close.
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let relay_connections = relay_metric(metrics_port, "kith_relay_connections").await?;
        let rss_kib = rss_kib(pid);
        let after = SETTLE + Duration::from_secs(hold);
        println!(
            "  {:.0} s later: relay counts {relay_connections} connections, {} closed on the client side (first: {}), \
             {} keep-alives failed; relay RSS {rss_kib} KiB",
            after.as_secs_f64(),
            counts.closed.load(Ordering::Relaxed),
            counts.first_close.lock().unwrap().as_deref().unwrap_or("none"),
            counts.keepalive_failures.load(Ordering::Relaxed),
        );
        Some(Held { after, relay_connections, rss_kib })
    } else {
        None
    };
    let closed = counts.closed.load(Ordering::Relaxed);
    peers.abort_all();
    while peers.join_next().await.is_some() {}
    Ok(MemoryResult { baseline_kib, points, held, client_rss_growth_kib, closed })
}

// ---------------------------------------------------------------------------------------

async fn run(args: &Args, command: &str, nofile: &str) -> anyhow::Result<()> {
    // Phases 1 and 2 share one relay.
    println!("sealing {} envelopes ({}-byte messages) for {} owners…", args.deposits, MESSAGE_LEN, args.owners);
    let sealing = Instant::now();
    let mail = Arc::new(seal_mail(args.deposits, args.senders, args.owners));
    let seal_time = sealing.elapsed();
    let envelope_avg = mail.envelope_bytes as f64 / args.deposits as f64;
    println!(
        "  sealed in {:.2} s ({:.0}/s), {envelope_avg:.0} bytes per envelope on average",
        seal_time.as_secs_f64(),
        args.deposits as f64 / seal_time.as_secs_f64()
    );

    let (mut relay, metrics_port) = start_relay(args.deposits, false);
    let mut relay_pid = relay.process.as_ref().unwrap().id();
    let relay_peer: PeerId = relay.peer_id.parse().unwrap();
    let addr: Multiaddr = relay.addr().parse().unwrap();
    println!("relay {} at {addr}, metrics on 127.0.0.1:{metrics_port}", relay_peer);

    println!(
        "phase 1: deposit, {} senders × {} requests in flight, batches of {MAX_DEPOSIT_BATCH}…",
        args.senders, args.in_flight
    );
    let deposit_deadline = Duration::from_secs(300 + args.deposits as u64 / 100);
    let cpu = CpuMeter::start(relay_pid);
    let deposited =
        within(deposit_deadline, "the deposit phase", deposit_phase(mail.clone(), relay_peer, &addr, args.in_flight))
            .await?;
    let deposit_cpu = cpu.report();
    let d = &deposited.report;
    let deposit_rate = deposited.total as f64 / deposited.elapsed.as_secs_f64();
    if d.stored as usize != deposited.total {
        bail!("{} envelopes stored of {} (duplicates: {})", d.stored, deposited.total, d.duplicates);
    }
    let held = relay_metric(metrics_port, "kith_relay_mailbox_envelopes").await?;
    if held as usize != deposited.total {
        bail!("the relay reports {held} envelopes held, expected {}", deposited.total);
    }
    let relay_rss_full = rss_kib(relay_pid);
    println!(
        "  {} stored in {:.2} s: {deposit_rate:.0} envelopes/s ({:.1} MB/s of envelopes), \
         request latency p50 {} p99 {}, {} busy retries; relay holds {held}, RSS {relay_rss_full} KiB; {deposit_cpu}",
        deposited.total,
        deposited.elapsed.as_secs_f64(),
        mail.envelope_bytes as f64 / deposited.elapsed.as_secs_f64() / 1e6,
        ms(percentile(&d.latencies, 0.5)),
        ms(percentile(&d.latencies, 0.99)),
        d.busy_retries,
    );

    // A clean stop leaves the de-duplication index in a checkpoint the start loads.
    let stop = relay.stop();
    let restarting = Instant::now();
    relay.start();
    let restart_time = restarting.elapsed();
    relay_pid = relay.process.as_ref().unwrap().id();
    let relay_rss_restarted = rss_kib(relay_pid);
    let held_after = relay_metric(metrics_port, "kith_relay_mailbox_envelopes").await?;
    if held_after != held {
        bail!("the relay holds {held_after} envelopes after a restart, {held} before");
    }
    println!(
        "  restarted ({stop:?}) holding {held_after}: ready in {:.0} ms, RSS {relay_rss_restarted} KiB",
        restart_time.as_secs_f64() * 1e3
    );
    // A crash leaves no checkpoint the start may trust: it reads every envelope.
    relay.kill9();
    let restarting = Instant::now();
    relay.start();
    let crash_restart_time = restarting.elapsed();
    relay_pid = relay.process.as_ref().unwrap().id();
    let relay_rss_crash = rss_kib(relay_pid);
    let held_after = relay_metric(metrics_port, "kith_relay_mailbox_envelopes").await?;
    if held_after != held {
        bail!("the relay holds {held_after} envelopes after kill -9 and a restart, {held} before");
    }
    println!(
        "  killed (kill -9) and restarted holding {held_after}: ready in {:.0} ms, RSS {relay_rss_crash} KiB",
        crash_restart_time.as_secs_f64() * 1e3
    );

    println!("phase 2: drain + ack, {} owners, {} at a time, pages of {MAX_DRAIN_ITEMS}…", args.owners, args.drainers);
    let drain_deadline = Duration::from_secs(300 + args.deposits as u64 / 100);
    let cpu = CpuMeter::start(relay_pid);
    let (drained, drain_time) =
        within(drain_deadline, "the drain phase", drain_phase(&mail, relay_peer, &addr, args.drainers)).await?;
    let drain_cpu = cpu.report();
    if drained.envelopes as usize != deposited.total {
        bail!("drained {} envelopes, deposited {}", drained.envelopes, deposited.total);
    }
    let left = relay_metric(metrics_port, "kith_relay_mailbox_envelopes").await?;
    if left != 0.0 {
        bail!("the relay still holds {left} envelopes after the drain");
    }
    let drain_rate = drained.envelopes as f64 / drain_time.as_secs_f64();
    println!(
        "  {} drained and acked in {:.2} s: {drain_rate:.0} envelopes/s ({} pages); every envelope exactly once; \
         relay holds {left}; {drain_cpu}",
        drained.envelopes,
        drain_time.as_secs_f64(),
        drained.pages
    );
    let stop = relay.stop();
    println!("  relay stopped: {stop:?}");
    drop(relay);

    let relay_kind = if args.bare_relay { "fresh relay, DHT/circuit/AutoNAT off" } else { "fresh relay, all roles on" };
    let memory = if args.peers.is_empty() {
        println!("phase 3: skipped (no --peers)");
        None
    } else {
        println!("phase 3: memory per idle connected peer ({relay_kind}), totals {:?}…", args.peers);
        let (mut relay, metrics_port) = start_relay(args.deposits, args.bare_relay);
        let limit = Duration::from_secs(120 + 60 * args.peers.len() as u64 + args.hold);
        let result =
            within(limit, "the memory phase", memory_phase(&relay, metrics_port, &args.peers, args.hold)).await?;
        let stop = relay.stop();
        println!("  relay stopped: {stop:?}");
        Some(result)
    };

    println!();
    println!("=== relay-bench summary ===");
    println!("command:  {command}");
    println!("relay:    {}", relay_bin().display());
    println!("machine:  {} CPUs, RLIMIT_NOFILE {nofile}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| deposit, durable ({} × {envelope_avg:.0}-byte envelopes, {} senders × {} in flight, \
         batches of {MAX_DEPOSIT_BATCH}, {} mailboxes) | {deposit_rate:.0} envelopes/s \
         ({:.2} s; request p50 {}, p99 {}; {deposit_cpu}) |",
        deposited.total,
        args.senders,
        args.in_flight,
        args.owners,
        deposited.elapsed.as_secs_f64(),
        ms(percentile(&d.latencies, 0.5)),
        ms(percentile(&d.latencies, 0.99)),
    );
    println!(
        "| relay start holding them all after a clean stop (process start to `ready`) | {:.0} ms, RSS {relay_rss_restarted} KiB |",
        restart_time.as_secs_f64() * 1e3
    );
    println!(
        "| relay start holding them all after `kill -9` (reads every envelope) | {:.0} ms, RSS {relay_rss_crash} KiB |",
        crash_restart_time.as_secs_f64() * 1e3
    );
    println!(
        "| drain + ack ({} owners, {} in parallel, pages of {MAX_DRAIN_ITEMS}) | {drain_rate:.0} envelopes/s \
         ({:.2} s, {} = {} deposited; {drain_cpu}) |",
        args.owners,
        args.drainers,
        drain_time.as_secs_f64(),
        drained.envelopes,
        deposited.total,
    );
    if let Some(memory) = &memory {
        println!("| relay RSS, idle, no peers ({relay_kind}) | {} KiB |", memory.baseline_kib);
        for p in &memory.points {
            println!(
                "| relay RSS with {} idle peers ({} connections; connected in {:.1} s) | {} KiB: +{:.1} KiB per peer |",
                p.peers,
                p.relay_connections,
                p.connect_time.as_secs_f64(),
                p.rss_kib,
                p.per_peer_kib
            );
        }
        if let (Some(held), Some(last)) = (&memory.held, memory.points.last()) {
            println!(
                "| relay RSS {:.0} s after the last point ({} connections) | {} KiB: +{:.1} KiB per peer |",
                held.after.as_secs_f64(),
                held.relay_connections,
                held.rss_kib,
                held.rss_kib.saturating_sub(memory.baseline_kib) as f64 / last.peers as f64
            );
        }
        if let Some(last) = memory.points.last() {
            println!(
                "| this process (clients), RSS growth for {} swarms | {:.1} KiB per swarm |",
                last.peers,
                memory.client_rss_growth_kib as f64 / last.peers as f64
            );
        }
        if memory.closed > 0 {
            println!("| idle connections closed during the run | {} |", memory.closed);
        }
    }
    Ok(())
}

fn main() {
    let args = parse_args();
    let flags: Vec<String> = std::env::args().skip(1).collect();
    let mut command = "cargo run --release -p kith-tests --bin relay-bench".to_owned();
    if !flags.is_empty() {
        command = format!("{command} -- {}", flags.join(" "));
    }
    // Before the relay is spawned, so that it inherits the raised limit.
    let nofile = raise_nofile_limit();
    println!("RLIMIT_NOFILE: {nofile}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if let Err(e) = runtime.block_on(run(&args, &command, &nofile)) {
        eprintln!("relay-bench failed: {e:#}");
        std::process::exit(1);
    }
}
