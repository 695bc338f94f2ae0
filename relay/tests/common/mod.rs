//! Helpers for tests that run the real `kith-relay` binary on 127.0.0.1 with ephemeral
//! ports and talk to it with an in-test libp2p peer.
//!
//! Synchronisation is always on an event with a deadline: the `ready` line on stdout,
//! the `serving metrics bound=…` line on stderr, a swarm event, a process exit.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_p2p::grouplog::{self, GroupLogRequest, GroupLogResponse};
use kith_p2p::identity::Identity;
use kith_p2p::mailbox::{self, MailboxRequest, MailboxResponse};
use kith_p2p::node::{IDENTIFY_VERSION, KAD_PROTOCOL};
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, identify, identity, kad, noise, ping, relay, request_response, tcp,
    yamux,
};

/// Bound on every wait in these tests (debug builds on a busy 2-core machine).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Pause between two scrapes of `/metrics` while waiting for a value.
pub const METRICS_POLL: Duration = Duration::from_millis(50);

pub const BIN: &str = env!("CARGO_BIN_EXE_kith-relay");

/// A config for loopback tests: TCP on an ephemeral port, metrics on an ephemeral
/// port, state in `data_dir`, plus `extra` (whole tables such as `[mailbox]`).
pub fn loopback_config(data_dir: &Path, extra: &str) -> String {
    format!(
        r#"listen = ["/ip4/127.0.0.1/tcp/0"]
data_dir = "{}"

[metrics]
listen = "127.0.0.1:0"

{extra}
"#,
        data_dir.display()
    )
}

/// A running `kith-relay` process; SIGKILLed when dropped.
pub struct RelayProcess {
    child: Option<Child>,
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
    pub metrics_addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl RelayProcess {
    /// Writes `config` to `dir/relay.toml`, starts the relay and waits for its `ready`
    /// line and metrics address.
    pub fn start(dir: &Path, config: &str) -> RelayProcess {
        let path = dir.join("relay.toml");
        std::fs::write(&path, config).unwrap();
        RelayProcess::start_with(&path)
    }

    pub fn start_with(config_path: &Path) -> RelayProcess {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config_path)
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "info,kith_relay=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = ready_tx.send(line);
            }
        });
        let (metrics_tx, metrics_rx) = mpsc::channel();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr_lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[relay] {line}");
                // `bound=ADDR` in text logs, `"bound":"ADDR"` in JSON logs.
                let bound = line
                    .contains("serving metrics")
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix("bound="))
                            .or_else(|| {
                                let rest = line.split_once("\"bound\":\"")?.1;
                                rest.split('"').next()
                            })
                    })
                    .flatten();
                if let Some(addr) = bound {
                    let _ = metrics_tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                sink.lock().unwrap().push(line);
            }
        });

        let line = ready_rx
            .recv_timeout(DEADLINE)
            .expect("no ready line from kith-relay");
        let mut words = line.split_whitespace();
        assert_eq!(
            words.next(),
            Some("ready"),
            "unexpected first line {line:?}"
        );
        let peer_id: PeerId = words.next().unwrap().parse().unwrap();
        let addrs: Vec<Multiaddr> = words.map(|w| w.parse().unwrap()).collect();
        assert!(!addrs.is_empty(), "no addresses in {line:?}");
        // Exactly one line on stdout.
        assert!(ready_rx.try_recv().is_err());
        let metrics_addr = metrics_rx
            .recv_timeout(DEADLINE)
            .expect("no metrics address logged");
        RelayProcess {
            child: Some(child),
            peer_id,
            addrs,
            metrics_addr,
            stderr: stderr_lines,
        }
    }

    pub fn addr(&self) -> Multiaddr {
        self.addrs[0].clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (e.g. "TERM") and waits for the process to exit.
    pub fn signal_and_wait(mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        wait_exit(&mut child, DEADLINE)
    }

    /// stderr lines so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to [`DEADLINE`]) for a stderr line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < end,
                "no log line with {needle:?} in {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_addr, "/metrics").await
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit, polling, up to `deadline`.
pub fn wait_exit(child: &mut Child, deadline: Duration) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < end, "process did not exit in {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 GET returning the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    };
    tokio::time::timeout(DEADLINE, fetch).await.unwrap()
}

/// The value of an un-labelled or labelled sample line `name value` in metrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// Scrapes `/metrics` until sample `name` reads `value` (or panics after
/// [`DEADLINE`]); returns the last scrape. The relay counts an event when its loop
/// handles it, which can be just after a peer has seen the effect.
pub async fn wait_metric(relay: &RelayProcess, name: &str, value: f64) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let text = relay.metrics().await;
        if metric(&text, name) == Some(value) {
            return text;
        }
        assert!(
            Instant::now() < end,
            "{name} never reached {value}; last scrape:\n{text}"
        );
        tokio::time::sleep(METRICS_POLL).await;
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// What an in-test kith-like peer speaks: the mailbox and group log clients, the kith
/// DHT, identify, the relay client and ping.
#[derive(NetworkBehaviour)]
pub struct PeerBehaviour {
    pub mailbox: request_response::Behaviour<mailbox::Codec>,
    pub grouplog: request_response::Behaviour<grouplog::Codec>,
    pub kad: kad::Behaviour<MemoryStore>,
    pub identify: identify::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub ping: ping::Behaviour,
}

/// An in-test peer with its own swarm.
pub struct TestPeer {
    pub swarm: Swarm<PeerBehaviour>,
}

impl TestPeer {
    pub fn new(keypair: identity::Keypair) -> TestPeer {
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key, relay_client| {
                let peer_id = key.public().to_peer_id();
                let mut kad = kad::Behaviour::with_config(
                    peer_id,
                    MemoryStore::new(peer_id),
                    kad::Config::new(KAD_PROTOCOL),
                );
                kad.set_mode(Some(kad::Mode::Server));
                PeerBehaviour {
                    mailbox: request_response::Behaviour::with_codec(
                        mailbox::Codec::default(),
                        [(
                            mailbox::PROTOCOL,
                            request_response::ProtocolSupport::Outbound,
                        )],
                        request_response::Config::default().with_request_timeout(DEADLINE),
                    ),
                    grouplog: request_response::Behaviour::with_codec(
                        grouplog::Codec::default(),
                        [(
                            grouplog::PROTOCOL,
                            request_response::ProtocolSupport::Outbound,
                        )],
                        request_response::Config::default().with_request_timeout(DEADLINE),
                    ),
                    kad,
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_VERSION.into(),
                        key.public(),
                    )),
                    relay_client,
                    ping: ping::Behaviour::default(),
                }
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(DEADLINE))
            .build();
        TestPeer { swarm }
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Drives the swarm until `f` returns `Some`, or panics after [`DEADLINE`].
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(SwarmEvent<PeerBehaviourEvent>) -> Option<T>,
    ) -> T {
        let wait = async {
            loop {
                let event = self.swarm.select_next_some().await;
                if let Some(out) = f(event) {
                    return out;
                }
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(out) => out,
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    /// Dials `peer` at `addr` and waits for the connection.
    pub async fn connect(&mut self, peer: PeerId, addr: Multiaddr) {
        self.swarm
            .dial(
                libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .build(),
            )
            .unwrap();
        self.wait_for("connection", |event| match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => Some(()),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } if p == peer => panic!("dial failed: {error}"),
            _ => None,
        })
        .await
    }

    /// Sends a mailbox request to `relay` (at `addr`) and waits for the answer.
    pub async fn request(
        &mut self,
        relay: PeerId,
        addr: &Multiaddr,
        request: MailboxRequest,
    ) -> MailboxResponse {
        self.swarm.add_peer_address(relay, addr.clone());
        let id = self
            .swarm
            .behaviour_mut()
            .mailbox
            .send_request(&relay, request);
        self.wait_for("mailbox response", |event| match event {
            SwarmEvent::Behaviour(PeerBehaviourEvent::Mailbox(event)) => {
                answer(event, id, "mailbox")
            }
            _ => None,
        })
        .await
    }

    /// Sends every request of `requests` to `relay` (at `addr`) at once, each on its
    /// own stream of one connection, and waits for all the answers (in request order).
    pub async fn request_all(
        &mut self,
        relay: PeerId,
        addr: &Multiaddr,
        requests: Vec<MailboxRequest>,
    ) -> Vec<MailboxResponse> {
        self.swarm.add_peer_address(relay, addr.clone());
        let ids: Vec<_> = requests
            .into_iter()
            .map(|r| self.swarm.behaviour_mut().mailbox.send_request(&relay, r))
            .collect();
        let mut answers: Vec<Option<MailboxResponse>> = ids.iter().map(|_| None).collect();
        let mut left = ids.len();
        while left > 0 {
            let (i, response) = self
                .wait_for("mailbox responses", |event| match event {
                    SwarmEvent::Behaviour(PeerBehaviourEvent::Mailbox(
                        request_response::Event::Message {
                            message:
                                request_response::Message::Response {
                                    request_id,
                                    response,
                                },
                            ..
                        },
                    )) => ids.iter().position(|id| *id == request_id).map(|i| (i, response)),
                    SwarmEvent::Behaviour(PeerBehaviourEvent::Mailbox(
                        request_response::Event::OutboundFailure {
                            request_id, error, ..
                        },
                    )) if ids.contains(&request_id) => panic!("mailbox request failed: {error}"),
                    _ => None,
                })
                .await;
            answers[i] = Some(response);
            left -= 1;
        }
        answers.into_iter().map(Option::unwrap).collect()
    }

    /// Sends a group log request to `relay` (at `addr`) and waits for the answer.
    pub async fn group_request(
        &mut self,
        relay: PeerId,
        addr: &Multiaddr,
        request: GroupLogRequest,
    ) -> GroupLogResponse {
        self.swarm.add_peer_address(relay, addr.clone());
        let id = self
            .swarm
            .behaviour_mut()
            .grouplog
            .send_request(&relay, request);
        self.wait_for("group log response", |event| match event {
            SwarmEvent::Behaviour(PeerBehaviourEvent::Grouplog(event)) => {
                answer(event, id, "group log")
            }
            _ => None,
        })
        .await
    }

    /// The relay works for this peer: it deposits `envelope` into its own mailbox
    /// (as `owner`, whose key this peer holds), then drains it with a fresh challenge.
    pub async fn deposit_and_drain(
        &mut self,
        owner: &Identity,
        relay: PeerId,
        addr: &Multiaddr,
        envelope: &[u8],
    ) {
        let deposit = MailboxRequest::deposit(&owner.peer_id(), vec![envelope.to_vec()]);
        match self.request(relay, addr, deposit).await {
            MailboxResponse::Deposited { results } => {
                assert_eq!(results, [mailbox::DepositResult::Stored]);
            }
            other => panic!("deposit refused: {other:?}"),
        }
        let nonce = self.challenge(relay, addr).await;
        let drain = MailboxRequest::drain(owner, &relay, nonce, None, 256);
        match self.request(relay, addr, drain).await {
            MailboxResponse::Envelopes { items, .. } => {
                assert!(items.iter().any(|i| i.envelope == envelope), "{items:?}");
            }
            other => panic!("drain refused: {other:?}"),
        }
    }

    /// Challenge, then return the nonce.
    pub async fn challenge(&mut self, relay: PeerId, addr: &Multiaddr) -> [u8; 32] {
        match self.request(relay, addr, MailboxRequest::Challenge).await {
            MailboxResponse::Challenge { nonce } => nonce,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }
}

/// The answer to request `id` in a request-response event, if this is it; a failed
/// request fails the test.
fn answer<Req, Resp>(
    event: request_response::Event<Req, Resp>,
    id: request_response::OutboundRequestId,
    what: &str,
) -> Option<Resp> {
    match event {
        request_response::Event::Message {
            message:
                request_response::Message::Response {
                    request_id,
                    response,
                },
            ..
        } if request_id == id => Some(response),
        request_response::Event::OutboundFailure {
            request_id, error, ..
        } if request_id == id => {
            panic!("{what} request failed: {error}")
        }
        _ => None,
    }
}
