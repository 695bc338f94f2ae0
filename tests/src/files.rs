//! What the file tests and `file-bench` share: random files, a pair pinned to a relay,
//! and a peer's file records.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{Peer, Relay, connect, wait_until};

/// A file of `size` bytes from the kernel's generator (a debug build's own would be
/// slower than the transfer it feeds), named `name` in `dir`, synced.
pub fn random_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    let mut file = std::fs::File::create(&path).unwrap();
    let copied = std::io::copy(&mut std::io::Read::take(&mut random, size), &mut file).unwrap();
    assert_eq!(copied, size);
    file.sync_all().unwrap();
    path
}

/// Alice and Bob, both pinned to `relay`, running, mutual contacts.
pub fn pair_on(relay: &Relay) -> (Peer, Peer) {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    for p in [&mut alice, &mut bob] {
        p.ok(&["relay", "add", &relay.addr()]);
        p.start(&[]);
    }
    connect(&alice, &bob);
    (alice, bob)
}

/// `peer`'s record of file `id` (from `kith files --json`), if it has one.
pub fn file_of(peer: &Peer, id: &str) -> Option<Value> {
    peer.json(&["files", "--json"]).as_array().unwrap().iter().find(|f| f["id"] == id).cloned()
}

/// Waits until `peer` holds file `id` in `state`; returns its record.
pub fn wait_for_file(peer: &Peer, id: &str, state: &str, deadline: Duration) -> Value {
    let mut found = None;
    wait_until(deadline, &format!("{} holds file {id} {state}", peer.name), || {
        found = file_of(peer, id).filter(|f| f["state"] == state);
        found.is_some()
    });
    found.unwrap()
}

/// The `files_*_bytes` counter `which` of a running peer's status.
pub fn counter(peer: &Peer, which: &str) -> u64 {
    peer.json(&["status", "--json"])[which].as_u64().unwrap()
}
