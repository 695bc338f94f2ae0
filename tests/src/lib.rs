//! Helpers for kith's end-to-end tests: real `kith` processes in fresh temp homes on
//! 127.0.0.1 with ephemeral ports, a clean environment, and waits with deadlines.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod bench;
pub mod chaos;
pub mod files;
pub mod group;
pub mod netns;
pub mod raw;
pub mod raw_call;
pub mod tmux;
pub mod tones;

/// How long a daemon may take to print `ready`.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The `kith` binary of the same build profile as this executable.
pub fn kith_bin() -> PathBuf {
    workspace_bin("kith", "kith")
}

/// The `slow-link` test forwarder of the same build profile as this executable.
pub fn slow_link_bin() -> PathBuf {
    workspace_bin("kith-tests", "slow-link")
}

/// The `kith-relay` binary of the same build profile as this executable.
pub fn relay_bin() -> PathBuf {
    workspace_bin("kith-relay", "kith-relay")
}

/// A workspace binary of the same build profile as this executable: next to it (a
/// benchmark in `target/<profile>/`) or one level up (a test in `target/<profile>/deps/`).
/// Built on demand when only this package was built.
fn workspace_bin(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let here = exe.parent().unwrap();
    let profile_dir = if here.ends_with("deps") { here.parent().unwrap() } else { here };
    let bin = profile_dir.join(name);
    if !bin.exists() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", package, "--bin", name]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building {name} failed");
    }
    bin
}

/// Spawn `cmd` with stdout piped, wait for its `ready <peer id> <addr>...` line and
/// keep draining stdout afterwards. Returns the child, the peer id and the addresses.
pub(crate) fn spawn_ready(mut cmd: Command, what: &str) -> (Child, String, Vec<String>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the process never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx.recv_timeout(READY_DEADLINE).unwrap_or_else(|_| panic!("{what} not ready in time"));
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("ready"), "{line}");
    let peer_id = words.next().unwrap_or_else(|| panic!("no peer id in {line:?}")).to_owned();
    (child, peer_id, words.map(str::to_owned).collect())
}

/// Send `signal` (a `kill -s` name) to `child`, wait up to 20 s for it to exit.
fn signal_and_wait(mut child: Child, signal: &str, what: &str) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-s", signal]).arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("{what} ignored SIG{signal}");
}

/// How many envelopes the mailboxes of the relay whose metrics listen on
/// `127.0.0.1:port` hold (`kith_relay_mailbox_envelopes`); `None` while it does not
/// answer.
pub fn relay_mailbox_envelopes(port: u16) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| l.strip_prefix("kith_relay_mailbox_envelopes ")).and_then(|v| v.trim().parse().ok())
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests on loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The variable whose value (a `RUST_LOG` filter) the daemons and relays these tests
/// start log with (their environment is cleared otherwise; relays log warnings).
pub const TEST_LOG: &str = "KITH_TEST_LOG";

/// `cmd` (program, arguments, explicitly set environment; its environment is assumed
/// cleared) run inside the network namespace `netns` through `ip netns exec`, which
/// execs the program in place, so the child's pid is the program's own. Its logs
/// follow [`TEST_LOG`], as `cmd`'s would.
pub fn in_netns(netns: &str, cmd: &Command) -> Command {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip");
    let mut wrapped = Command::new(ip);
    wrapped.env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    wrapped.args(["netns", "exec", netns]).arg(cmd.get_program()).args(cmd.get_args()).stdin(Stdio::null());
    wrapped
}

/// A `kith-relay` with its config and data in a temp dir, on a fixed loopback port so
/// that it keeps its address across restarts.
pub struct Relay {
    dir: tempfile::TempDir,
    /// Its data directory (mailboxes, identity).
    pub data_dir: PathBuf,
    /// The running process, if any.
    pub process: Option<Child>,
    /// Its peer id (after the first start).
    pub peer_id: String,
    /// The addresses from its `ready` line.
    pub addrs: Vec<String>,
    port: u16,
    /// The IPv4 address it listens on (127.0.0.1 unless made by [`Relay::in_netns`]).
    ip: String,
    /// The network namespace it runs in, if not the test's own.
    netns: Option<String>,
    /// What it listens on (kept for [`Relay::reconfigure`]).
    listen: Vec<String>,
}

impl Relay {
    /// A relay whose config is the loopback defaults plus `extra` TOML (whole tables).
    pub fn new(extra: &str) -> Relay {
        let port = free_port();
        Relay::configured(&[format!("/ip4/127.0.0.1/tcp/{port}")], "127.0.0.1", port, None, extra)
    }

    /// A relay that runs in the network namespace `netns` and listens on `ip`, TCP and
    /// QUIC, port 4001 (the namespace is the test's own, so the port is free), plus
    /// `extra` TOML.
    pub fn in_netns(netns: &str, ip: &str, extra: &str) -> Relay {
        let listen = [format!("/ip4/{ip}/tcp/4001"), format!("/ip4/{ip}/udp/4001/quic-v1")];
        Relay::configured(&listen, ip, 4001, Some(netns), extra)
    }

    /// Write the config (`listen`, a data dir in a fresh temp dir, then `extra`).
    fn configured(listen: &[String], ip: &str, port: u16, netns: Option<&str>, extra: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let relay = Relay {
            dir,
            data_dir,
            process: None,
            peer_id: String::new(),
            addrs: Vec::new(),
            port,
            ip: ip.into(),
            netns: netns.map(str::to_owned),
            listen: listen.to_vec(),
        };
        relay.reconfigure(extra);
        relay
    }

    /// Rewrite its config: the same listen addresses and data dir, then `extra`. Takes
    /// effect at the next [`start`](Relay::start).
    pub fn reconfigure(&self, extra: &str) {
        let config = format!("listen = {:?}\ndata_dir = {:?}\n{extra}\n", self.listen, self.data_dir.to_str().unwrap());
        std::fs::write(self.dir.path().join("relay.toml"), config).unwrap();
    }

    /// Start it and wait for `ready`.
    pub fn start(&mut self) {
        let mut cmd = Command::new(relay_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var_os(TEST_LOG).unwrap_or_else(|| "warn".into()))
            .arg("--config")
            .arg(self.dir.path().join("relay.toml"))
            .stdin(Stdio::null());
        if let Some(netns) = &self.netns {
            cmd = in_netns(netns, &cmd);
        }
        let (child, peer_id, addrs) = spawn_ready(cmd, "kith-relay");
        self.process = Some(child);
        self.peer_id = peer_id;
        self.addrs = addrs;
    }

    /// Its dialable address, `/ip4/127.0.0.1/tcp/<port>/p2p/<peer id>` (its own IP
    /// instead of 127.0.0.1 when made by [`Relay::in_netns`]).
    pub fn addr(&self) -> String {
        format!("/ip4/{}/tcp/{}/p2p/{}", self.ip, self.port, self.peer_id)
    }

    /// SIGKILL it and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stop it with SIGTERM; returns how it exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.process.take()?;
        Some(signal_and_wait(child, "TERM", "kith-relay"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A kith home in a temp dir, with the daemon optionally running.
pub struct Peer {
    _dir: tempfile::TempDir,
    /// The home directory.
    pub home: PathBuf,
    /// The display name given at init.
    pub name: String,
    /// The running daemon, if any.
    pub daemon: Option<Child>,
    /// The peer id (after init).
    pub peer_id: String,
    /// The daemon's listen addresses from its `ready` line.
    pub addrs: Vec<String>,
    /// The network namespace the daemon runs in (`None`: the test's own). CLI commands
    /// run in the test's namespace: the control socket is a file, reachable from any.
    pub netns: Option<String>,
    /// Whether the daemon discovers peers with mDNS (default `false`: tests on one
    /// machine would find each other's nodes).
    pub mdns: bool,
    /// More environment for every `kith` command of this peer, after the defaults of
    /// [`Peer::command`] (e.g. the daemon's `KITH_*` timer knobs, docs/CLI.md).
    pub env: Vec<(String, String)>,
}

impl Peer {
    /// `kith init --no-passphrase --name NAME` in a fresh temp home.
    pub fn init(name: &str) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let mut peer = Peer {
            _dir: dir,
            home,
            name: name.into(),
            daemon: None,
            peer_id: String::new(),
            addrs: vec![],
            netns: None,
            mdns: false,
            env: Vec::new(),
        };
        let out = peer.json(&["init", "--no-passphrase", "--name", name, "--json"]);
        peer.peer_id = out["peer_id"].as_str().unwrap().to_owned();
        peer
    }

    /// A `kith` command for this home with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kith_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KITH_RETRY_MAX_MS", "500")
            // Mail that went to a relay (a direct delivery that timed out under load)
            // arrives within a second, not at the next minute's drain.
            .env("KITH_DRAIN_INTERVAL_MS", "1000")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(std::env::var_os(TEST_LOG).map(|filter| ("RUST_LOG", filter)))
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `kith args...` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run `kith args...`, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} kith {:?} failed ({:?}):\n{}{}",
            self.name,
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run a command whose stdout is JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Start `kith daemon` on 127.0.0.1 (ephemeral port; mDNS only if [`Peer::mdns`])
    /// plus `extra` flags, and wait for its `ready` line.
    pub fn start(&mut self, extra: &[&str]) {
        self.start_on(&["/ip4/127.0.0.1/tcp/0"], extra);
    }

    /// Start `kith daemon` listening on exactly `listen` (mDNS only if [`Peer::mdns`])
    /// plus `extra` flags, and wait for its `ready` line.
    pub fn start_on(&mut self, listen: &[&str], extra: &[&str]) {
        let mut args = vec!["daemon"];
        if !self.mdns {
            args.push("--no-mdns");
        }
        for addr in listen {
            args.extend_from_slice(&["--listen", addr]);
        }
        args.extend_from_slice(extra);
        let mut cmd = self.command(&args);
        if let Some(netns) = &self.netns {
            cmd = in_netns(netns, &cmd);
        }
        let (child, peer_id, addrs) = spawn_ready(cmd, &format!("{} daemon", self.name));
        assert_eq!(peer_id, self.peer_id);
        self.addrs = addrs;
        self.daemon = Some(child);
    }

    /// The daemon's first address with `/p2p/<peer id>` appended.
    pub fn dial_addr(&self) -> String {
        format!("{}/p2p/{}", self.addrs[0], self.peer_id)
    }

    /// SIGKILL the daemon (no chance to flush anything) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stop the daemon gracefully (SIGTERM) and wait for it to exit.
    pub fn stop(&mut self) {
        self.signal("TERM");
    }

    /// Send the daemon `signal` (a `kill -s` name such as `TERM` or `INT`), wait for it
    /// to exit and return how it exited. Panics if it is still running after 20 s.
    pub fn signal(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let child = self.daemon.take()?;
        Some(signal_and_wait(child, signal, &format!("{} daemon", self.name)))
    }

    /// Start `kith follow` for this (running) peer: its events as they happen, every
    /// one from the moment this returns (it waits until `kith follow` says on stderr
    /// that it is subscribed).
    pub fn follow(&self) -> Follow {
        let mut child = self.command(&["follow"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (subscribed_tx, subscribed) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("following events") {
                    let _ = subscribed_tx.send(());
                } else {
                    eprintln!("[follow] {line}");
                }
            }
        });
        subscribed.recv_timeout(READY_DEADLINE).unwrap_or_else(|_| panic!("{}: kith follow did not subscribe", self.name));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        Follow { child, events: rx }
    }

    /// A one-time invite from this (running) peer.
    pub fn invite(&self) -> String {
        self.ok(&["invite"]).trim().to_owned()
    }

    /// The full history with `contact`, oldest first.
    pub fn history(&self, contact: &str) -> Vec<Value> {
        match self.json(&["history", contact, "--limit", "100000", "--json"]) {
            Value::Array(list) => list,
            other => panic!("history is not a list: {other}"),
        }
    }

    /// The texts in this peer's history with `other` that went in `direction`
    /// (`incoming` or `outgoing`), oldest first.
    pub fn texts(&self, other: &Peer, direction: &str) -> Vec<String> {
        self.history(&other.name)
            .iter()
            .filter(|m| m["direction"] == direction)
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// This peer's contact entry for `other` (`contacts --json`), if it has one.
    pub fn contact(&self, other: &Peer) -> Option<Value> {
        let contacts = self.json(&["contacts", "--json"]);
        contacts.as_array().unwrap().iter().find(|c| c["peer_id"] == other.peer_id.as_str()).cloned()
    }

    /// The delivery queue this running node keeps for `recipient` (from `status`),
    /// if anything waits for it.
    pub fn queue_for(&self, recipient: &Peer) -> Option<Value> {
        let status = self.json(&["status", "--json"]);
        status["queues"].as_array().unwrap().iter().find(|q| q["peer_id"] == recipient.peer_id.as_str()).cloned()
    }

    /// The home's path.
    pub fn home(&self) -> &Path {
        &self.home
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `kith follow`: the peer's events as JSON values.
pub struct Follow {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl Follow {
    /// The first event (from now on) matching `what`; fails the test after `deadline`.
    pub fn wait_for(&self, deadline: Duration, description: &str, what: impl Fn(&Value) -> bool) -> Value {
        self.try_wait_for(deadline, what).unwrap_or_else(|| panic!("timed out waiting for event: {description}"))
    }

    /// The first event (from now) that satisfies `what`, or `None` after `deadline`.
    /// `kith follow` subscribes a moment after it starts, so a test whose event may
    /// come before that repeats its action until this sees it.
    pub fn try_wait_for(&self, deadline: Duration, what: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if what(&event) => return Some(event),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alice and Bob, both running, mutual contacts (Bob redeemed Alice's invite).
pub fn connected_pair() -> (Peer, Peer) {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);
    (alice, bob)
}

/// Alice and Bob, both pinning every relay of `relays`, running, mutual contacts.
pub fn pair_pinning(relays: &[&Relay]) -> (Peer, Peer) {
    let (alice, bob) = strangers_pinning(relays);
    connect(&alice, &bob);
    (alice, bob)
}

/// Alice and Bob, both pinning every relay of `relays`, running, not yet contacts.
pub fn strangers_pinning(relays: &[&Relay]) -> (Peer, Peer) {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    for peer in [&alice, &bob] {
        for relay in relays {
            peer.ok(&["relay", "add", &relay.addr()]);
        }
    }
    alice.start(&[]);
    bob.start(&[]);
    (alice, bob)
}

/// Make `a` and `b` (both running) mutual contacts through `a`'s invite; `b` calls
/// `a` by `a.name` and `a` calls `b` by `b.name` (the announced display names).
pub fn connect(a: &Peer, b: &Peer) {
    let invite = a.invite();
    b.ok(&["add", &invite, "--name", &a.name]);
    wait_until(Duration::from_secs(30), "contact accepted on both sides", || {
        let accepted = |p: &Peer, other: &Peer| {
            p.json(&["contacts", "--json"])
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["peer_id"] == other.peer_id.as_str() && c["state"] == "accepted")
        };
        accepted(a, b) && accepted(b, a)
    });
    // The acceptance is settled only once its sender has the answer: a test that stops
    // a peer now must not leave it queued for a relay, where it would take a slot.
    wait_until(Duration::from_secs(30), "contact handshake settled on both sides", || {
        a.queue_for(b).is_none() && b.queue_for(a).is_none()
    });
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether this run is under CI (`CI` set and not empty).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// What a test does when this machine lacks what it needs (namespaces, tmux): under CI it
/// fails (panics with `reason`); elsewhere it prints `skipping <test>: <reason>` on stderr
/// and the caller returns.
pub fn skip_or_fail(test: &str, reason: &str) {
    assert!(!under_ci(), "{test}: CI must run this test, but {reason}");
    eprintln!("skipping {test}: {reason}");
}

/// Waits for `child` to exit and returns its output; kills it and fails the test
/// after `deadline` (a hung command must fail the test, not hang it).
pub fn wait_output(mut child: std::process::Child, deadline: Duration, what: &str) -> Output {
    let end = Instant::now() + deadline;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `condition` until it holds, failing the test after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(20);
    loop {
        if condition() {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
