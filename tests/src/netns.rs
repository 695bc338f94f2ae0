//! Network namespaces for tests that need more than loopback (NAT, LAN discovery):
//! creating them, the `ip` and `nft` tools, and what to do when this machine cannot.
//!
//! Namespaces are named `kith<pid>-<suffix>` and deleted on drop, also when the test
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

/// Whether this run is under CI (`CI` set and not empty).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// What a test does when this machine cannot build its namespaces: under CI it
/// fails (panics with `reason`); elsewhere it prints `skipping <test>: <reason>` on stderr
/// and the caller returns.
pub fn skip_or_fail(test: &str, reason: &str) {
    assert!(!under_ci(), "{test}: CI must run this test, but {reason}");
    eprintln!("skipping {test}: {reason}");
}

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

    /// Create a namespace named `kith<pid>-<suffix>` with loopback up. `suffix` must
    /// be unique among the tests of one test binary (they share the pid).
    pub fn add(&mut self, suffix: &str) -> Result<String, String> {
        let name = format!("kith{}-{suffix}", std::process::id());
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
