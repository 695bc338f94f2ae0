//! Network namespaces for tests that need more than loopback (NAT, LAN discovery,
//! network faults): creating them, the `ip` and `nft` tools, what to do when this
//! machine cannot, and faults injected with nftables on a host's own traffic — packet
//! loss, partitions, blocked pairs ([`Network`]) — plus a slow link ([`SlowLink`]).
//!
//! Namespaces are named `kith<pid>-<n><suffix>` and deleted on drop, also when the test
//! fails; ones left by a killed run are deleted by the next ([`Namespaces::new`]).
//! Nothing leaves the machine: the namespaces have no link to the outside.
//!
//! Under CI (the `CI` environment variable set and not empty, as `.ci/run` does) a
//! machine that cannot build them fails the test: CI runs as root with namespaces, so
//! a skip there would hide a broken setup. Elsewhere the test skips, saying why on
//! stderr ([`skip_or_fail`]).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The `ip` binary, wherever this distribution keeps it.
pub fn ip_bin() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("ip")
}

/// The `nft` binary, wherever this distribution keeps it.
pub fn nft_bin() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("nft")
}

pub use crate::{skip_or_fail, under_ci};

/// Run `program args...` (with `stdin` written to its input); Err with its output if
/// it fails or cannot start.
pub fn try_run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // A program that exits early shows in its status; a broken pipe says nothing more.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Run `program args...`; panics if it fails (for steps after the machine has
/// proven it can build namespaces).
pub fn run(program: &str, args: &[&str]) {
    if let Err(e) = try_run(program, args, None) {
        panic!("{e}");
    }
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid: real effective saved fs"
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// Checks that network namespaces can be made here (root, a working `ip`), or says
/// why not.
pub fn check_prerequisites() -> Result<(), String> {
    if !is_root() {
        return Err("not running as root (network namespaces need it)".into());
    }
    try_run(ip_bin(), &["-V"], None).map_err(|e| format!("iproute2 `ip` unavailable: {e}"))
}

/// The namespaces of one test; deleted on drop, also when the test fails.
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// No namespaces yet; first deletes those left by runs that were killed before
    /// their cleanup (`kith<pid>-...` whose process is gone).
    pub fn new() -> Namespaces {
        remove_stale_namespaces();
        Namespaces { names: Vec::new() }
    }

    /// Create a namespace named `kith<pid>-<n><suffix>` with loopback up (`n` tells
    /// apart the namespaces of tests running at once in one test binary).
    pub fn add(&mut self, suffix: &str) -> Result<String, String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("kith{}-{n}{suffix}", std::process::id());
        try_run(ip_bin(), &["netns", "add", &name], None)
            .map_err(|e| format!("`ip netns add` does not work here: {e}"))?;
        self.names.push(name.clone());
        try_run(ip_bin(), &["-n", &name, "link", "set", "lo", "up"], None)?;
        Ok(name)
    }
}

impl Default for Namespaces {
    fn default() -> Namespaces {
        Namespaces::new()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            // Deleting the namespace also deletes the veth pairs in it.
            if let Err(e) = try_run(ip_bin(), &["netns", "del", name], None) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Delete namespaces left by runs that were killed before their cleanup.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new(ip_bin()).args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some((pid, _)) = name.strip_prefix("kith").and_then(|rest| rest.split_once('-')) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = try_run(ip_bin(), &["netns", "del", name], None);
        }
    }
}

/// Two namespaces on one Ethernet segment (a veth pair): a LAN of two hosts with
/// multicast, and no route anywhere else.
pub struct Lan {
    /// The hosts' namespaces.
    pub hosts: [String; 2],
    /// Their addresses on the segment.
    pub ips: [&'static str; 2],
    _namespaces: Namespaces,
}

impl Lan {
    /// Build the LAN (namespaces `<prefix>a` and `<prefix>b`, addresses 10.77.0.1 and
    /// 10.77.0.2/24 on `eth0`), or say why this machine cannot.
    pub fn new(prefix: &str) -> Result<Lan, String> {
        check_prerequisites()?;
        let mut namespaces = Namespaces::new();
        let a = namespaces.add(&format!("{prefix}a"))?;
        let b = namespaces.add(&format!("{prefix}b"))?;
        let ips = ["10.77.0.1", "10.77.0.2"];
        let ip = ip_bin();
        try_run(ip, &["-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b], None)
            .map_err(|e| format!("cannot create virtual links: {e}"))?;
        for (host, addr) in [(&a, ips[0]), (&b, ips[1])] {
            run(ip, &["-n", host, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            run(ip, &["-n", host, "link", "set", "eth0", "up"]);
        }
        Ok(Lan { hosts: [a, b], ips, _namespaces: namespaces })
    }
}

/// A host on a [`Network`]: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The network namespace the host's processes run in.
    pub netns: String,
    /// Its IPv4 address on the LAN.
    pub ip: String,
}

/// The table every host gets, whose chains the fault helpers fill.
const FAULT_TABLE: &str = "
table inet faults {
    chain input {
        type filter hook input priority filter; policy accept;
    }
    chain output {
        type filter hook output priority filter; policy accept;
    }
}
";

/// Hosts `10.9.0.1`, `10.9.0.2`, ... on one bridge, each in its own namespace with an
/// empty nftables table for faults.
pub struct Network {
    /// The hosts, in the order asked for.
    pub hosts: Vec<Host>,
    _namespaces: Namespaces,
}

impl Network {
    /// A network of `names.len()` hosts, or the reason this machine cannot build one.
    pub fn new(names: &[&str]) -> Result<Network, String> {
        check_prerequisites()?;
        try_run(nft_bin(), &["--version"], None).map_err(|e| format!("`nft` unavailable: {e}"))?;
        let mut namespaces = Namespaces::new();
        let switch = namespaces.add("sw").map_err(|e| format!("`ip netns add` does not work here: {e}"))?;
        let ip = ip_bin();
        let link = |args: &[&str]| try_run(ip, args, None).map_err(|e| format!("cannot create virtual links: {e}"));
        link(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        link(&["-n", &switch, "link", "set", "br0", "up"])?;
        let mut hosts = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let netns = namespaces.add(name)?;
            let host_ip = format!("10.9.0.{}", i + 1);
            let port = format!("to-{name}");
            link(&["-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
            link(&["-n", &switch, "link", "set", &port, "master", "br0"])?;
            link(&["-n", &switch, "link", "set", &port, "up"])?;
            link(&["-n", &netns, "addr", "add", &format!("{host_ip}/24"), "dev", "eth0"])?;
            link(&["-n", &netns, "link", "set", "eth0", "up"])?;
            try_run(ip, &["netns", "exec", &netns, nft_bin(), "-f", "-"], Some(FAULT_TABLE))
                .map_err(|e| format!("nftables unavailable in a network namespace: {e}"))?;
            hosts.push(Host { netns, ip: host_ip });
        }
        Ok(Network { hosts, _namespaces: namespaces })
    }
}

impl Host {
    fn nft(&self, rule: &str) {
        let args: Vec<&str> = rule.split_whitespace().collect();
        let mut all = vec!["netns", "exec", &self.netns, nft_bin()];
        all.extend(args);
        if let Err(e) = try_run(ip_bin(), &all, None) {
            panic!("nft on {}: {e}", self.netns);
        }
    }

    /// Drop `percent` % of the packets this host sends and of those it receives.
    pub fn lose(&self, percent: u32) {
        for chain in ["input", "output"] {
            self.nft(&format!("add rule inet faults {chain} numgen random mod 100 < {percent} drop"));
        }
    }

    /// Cut this host off the LAN (everything on `eth0` dropped, both ways).
    pub fn partition(&self) {
        self.nft("add rule inet faults input iifname eth0 drop");
        self.nft("add rule inet faults output oifname eth0 drop");
    }

    /// Drop everything between this host and `other`, both ways.
    pub fn block(&self, other: &Host) {
        self.nft(&format!("add rule inet faults input ip saddr {} drop", other.ip));
        self.nft(&format!("add rule inet faults output ip daddr {} drop", other.ip));
    }

    /// Police what this host receives to `kbytes_per_s` kilobytes a second: packets
    /// over the rate are dropped, so TCP settles near it (a slow link).
    pub fn throttle(&self, kbytes_per_s: u32) {
        self.nft(&format!("add rule inet faults input limit rate over {kbytes_per_s} kbytes/second drop"));
    }

    /// Remove every fault from this host.
    pub fn heal(&self) {
        self.nft("flush chain inet faults input");
        self.nft("flush chain inet faults output");
    }
}

/// A `slow-link` forwarder running in a host's namespace; killed on drop.
pub struct SlowLink {
    child: std::process::Child,
}

impl SlowLink {
    /// Forward `listen` to `target` in `host`'s namespace, each chunk delayed by
    /// `delay_ms ± jitter_ms`; returns once it listens.
    pub fn start(host: &Host, listen: &str, target: &str, delay_ms: u64, jitter_ms: u64) -> SlowLink {
        let mut cmd = Command::new(crate::slow_link_bin());
        cmd.env_clear().args([listen, target, &delay_ms.to_string(), &jitter_ms.to_string()]);
        let (child, _, _) = crate::spawn_ready(crate::in_netns(&host.netns, &cmd), "slow-link");
        SlowLink { child }
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter or gauge of the relay whose metrics listen on `addr` (`ip:port`) inside
/// `netns`, read through bash's /dev/tcp there.
pub fn metric(netns: &str, addr: &str, name: &str) -> Option<f64> {
    let (ip, port) = addr.split_once(':').unwrap();
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
    let out = std::process::Command::new(ip_bin())
        .args(["netns", "exec", netns, "timeout", "5", "bash", "-c", &script])
        .output()
        .ok()?;
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.trim().parse().ok())
}

