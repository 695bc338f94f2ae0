//! Benchmark of unlocking the identity file (issue 11): how long `keystore::load`
//! takes with the Argon2id cost that `keystore::create` writes today, and with the
//! cost kith 0.1 wrote (a file from then still opens, with the cost it names).
//!
//! Run: `cargo run --release -p kith-tests --bin keystore-bench -- [--unlocks N]`
//! (the dev profile builds argon2 at opt-level 3 too, so `cargo run` without
//! `--release` measures the same). Numbers go to docs/PERFORMANCE.md; nothing here is
//! pass/fail.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_p2p::identity::Identity;
use kith_p2p::keystore::{self, Protection};
use kith_tests::bench::summary;

const PASSPHRASE: &str = "correct horse battery staple";

fn unlocks(path: &std::path::Path, passphrase: &str, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            keystore::load(path, Some(passphrase)).unwrap();
            start.elapsed()
        })
        .collect()
}

/// The `kdf` object of a keystore file, for the report.
fn kdf(path: &std::path::Path) -> String {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let k = &doc["kdf"];
    format!("m = {} KiB, t = {}, p = {}", k["m_cost"], k["t_cost"], k["p_cost"])
}

fn main() {
    let mut n = 10;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--unlocks", Some(v)) => n = v.parse().unwrap(),
            _ => panic!("usage: keystore-bench [--unlocks N]"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let identity = Identity::generate();

    let start = Instant::now();
    keystore::create(&path, &identity, Protection::Passphrase(PASSPHRASE)).unwrap();
    println!("create (new cost: {}): {:?}", kdf(&path), start.elapsed());
    println!("unlock, new cost: {}", summary(&unlocks(&path, PASSPHRASE, n)));

    // kith 0.1's cost: a file it wrote (editing the cost of a new file would break
    // its authentication, which covers the header).
    let old = dir.path().join("old.key");
    std::fs::write(&old, OLD_FILE).unwrap();
    println!("unlock, kith 0.1 cost ({}): {}", kdf(&old), summary(&unlocks(&old, OLD_PASSPHRASE, n)));
}

/// A keystore written by kith 0.1: the fixture of `keystore`'s own tests.
const OLD_FILE: &str = include_str!("../../../p2p/tests/data/identity-kith-0.1.key");
const OLD_PASSPHRASE: &str = "written by kith 0.1";
