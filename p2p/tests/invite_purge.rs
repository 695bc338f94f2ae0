//! A running node deletes expired invite tokens by itself (`Timers::invite_purge_interval`),
//! at start and then periodically, and keeps the ones still valid.
//!
//! The node runs in this process on 127.0.0.1, so the test reads its store while it
//! runs (sled allows one process, and the handle shares the node's).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use kith_p2p::kith_storage::Store;
use kith_p2p::node::{self, NodeConfig, Timers};

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(timers: Timers) -> NodeConfig {
    common::loopback_config(timers, None)
}

/// Polls `condition` every 20 ms until it holds; fails after [`DEADLINE`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_invites_are_purged_periodically_and_valid_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    // An expired token left from a previous run goes at start.
    store.invites().create([7; 16], 1).unwrap();
    let timers = Timers {
        // Every invite this node makes is expired as soon as it exists.
        invite_ttl: Duration::from_millis(1),
        invite_purge_interval: Duration::from_millis(100),
        ..Timers::default()
    };
    let started = node::start(config(timers), store.clone()).await.unwrap();
    let node = started.handle;
    assert_eq!(store.invites().len(), 0, "purged at start");

    // One valid token (as a longer-lived invite would be) among expired ones.
    let valid = [9; 16];
    let far = u64::MAX;
    store.invites().create(valid, far).unwrap();
    // Each answer comes once its token is stored (and flushed).
    for _ in 0..3 {
        node.invite().await.unwrap();
    }
    wait_until("the expired invites are purged", || store.invites().len() == 1).await;
    assert_eq!(store.invites().list_active(0).unwrap(), [(valid, far)]);

    // And again later: the purge is periodic, not a one-off.
    node.invite().await.unwrap();
    wait_until("the next expired invite is purged", || store.invites().len() == 1).await;
    node.shutdown().await;
    tokio::time::timeout(DEADLINE, started.stopped).await.unwrap().unwrap();
}
