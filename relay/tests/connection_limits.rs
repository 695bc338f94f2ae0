//! Connection limits against a real `kith-relay` process (issue 11): an attacker
//! opening connections past the per-IP, per-peer, total or memory limit is refused
//! — the relay closes the connection and counts it in
//! `kith_relay_connections_refused_total{limit=…}` — while another peer keeps
//! depositing and draining.
//!
//! The attacker is a raw libp2p swarm that speaks only ping
//! (`kith_p2p::conn_limits::testing::Flooder`); it counts a connection as held once a
//! ping has crossed it, so the relay has counted it too. Where the test needs it to come from
//! another address than the bystander it dials from 127.0.0.2 (every 127/8 address
//! is loopback).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{DEADLINE, RelayProcess, TestPeer, loopback_config, metric, wait_metric};
use kith_p2p::conn_limits::testing::{Flooder, Opened};
use kith_p2p::identity::Identity;

/// Where the attacker's connections come from: not the bystander's 127.0.0.1.
const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A fresh attacker identity dialing from `source`.
fn flooder(source: IpAddr) -> Flooder {
    Flooder::new(source, DEADLINE).unwrap()
}

/// Opens a connection and waits for the relay's decision on it.
async fn open(mallory: &mut Flooder, relay: &RelayProcess) -> Opened {
    mallory.open(relay.peer_id, &relay.addr()).await.unwrap().1
}

/// A relay with `[connections]` set to `table`.
fn relay_with(dir: &tempfile::TempDir, table: &str) -> RelayProcess {
    let config = loopback_config(
        &dir.path().join("data"),
        &format!("[connections]\n{table}\n"),
    );
    RelayProcess::start(dir.path(), &config)
}

/// A bystander: its own identity, on 127.0.0.1, connected.
async fn bystander(relay: &RelayProcess) -> (Identity, TestPeer) {
    let identity = Identity::generate();
    let mut peer = TestPeer::new(identity.libp2p_keypair());
    peer.connect(relay.peer_id, relay.addr()).await;
    (identity, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_past_its_limit_is_refused_while_another_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with(&dir, "max_per_ip = 3");
    let addr = relay.addr();
    let mut mallory = flooder(ATTACKER_IP);

    // At the limit: three connections from 127.0.0.2 are accepted and stay open.
    let mut accepted = Vec::new();
    for _ in 0..3 {
        let (id, opened) = mallory.open(relay.peer_id, &addr).await.unwrap();
        assert_eq!(opened, Opened::Served, "refused within the per-IP limit");
        accepted.push(id);
    }
    // Past it: refused before the handshake, so the dial itself fails. A fresh
    // identity from the same address fares no better.
    for _ in 0..2 {
        assert_eq!(open(&mut mallory, &relay).await, Opened::Refused);
    }
    let mut sybil = flooder(ATTACKER_IP);
    assert_eq!(open(&mut sybil, &relay).await, Opened::Refused);
    wait_metric(
        &relay,
        "kith_relay_connections_refused_total{limit=\"per_ip\"}",
        3.0,
    )
    .await;
    assert_eq!(mallory.open_connections(), 3);

    // Another address is not affected: a peer from 127.0.0.1 deposits and drains.
    let (alice, mut peer) = bystander(&relay).await;
    peer.deposit_and_drain(&alice, relay.peer_id, &addr, b"mail for alice")
        .await;

    // A closed connection frees its slot (once the relay has seen it close).
    assert!(mallory.close(accepted[0]));
    mallory.wait_closed(accepted[0]).await.unwrap();
    wait_metric(&relay, "kith_relay_connections", 3.0).await;
    assert_eq!(open(&mut mallory, &relay).await, Opened::Served);
    let text = relay.metrics().await;
    assert_eq!(
        metric(
            &text,
            "kith_relay_connections_refused_total{limit=\"per_ip\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "kith_relay_connections_refused_total{limit=\"per_peer\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_past_its_limit_is_refused_while_another_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with(&dir, "max_per_peer = 2");
    let addr = relay.addr();
    // Same address as the bystander: only the per-peer limit is at play.
    let mut mallory = flooder(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for _ in 0..2 {
        assert_eq!(open(&mut mallory, &relay).await, Opened::Served);
    }
    // Past it: the relay learns who it is from the handshake, then closes it.
    for expected in 1..=2 {
        assert_eq!(open(&mut mallory, &relay).await, Opened::Closed);
        wait_metric(
            &relay,
            "kith_relay_connections_refused_total{limit=\"per_peer\"}",
            f64::from(expected),
        )
        .await;
    }
    assert_eq!(mallory.open_connections(), 2);

    let (bob, mut peer) = bystander(&relay).await;
    peer.deposit_and_drain(&bob, relay.peer_id, &addr, b"mail for bob")
        .await;
    // Mallory's first two connections were never disturbed.
    assert_eq!(mallory.open_connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_relay_refuses_newcomers_and_keeps_serving_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with(&dir, "max_established = 3");
    let addr = relay.addr();
    // Carol was there first.
    let (carol, mut peer) = bystander(&relay).await;
    let mut mallory = flooder(ATTACKER_IP);
    for _ in 0..2 {
        assert_eq!(open(&mut mallory, &relay).await, Opened::Served);
    }
    // Full: one more (from anyone) is refused after its handshake.
    assert_eq!(open(&mut mallory, &relay).await, Opened::Closed);
    let text = wait_metric(
        &relay,
        "kith_relay_connections_refused_total{limit=\"total\"}",
        1.0,
    )
    .await;
    assert_eq!(metric(&text, "kith_relay_connections"), Some(3.0), "{text}");
    // Carol's connection still carries her mail.
    peer.deposit_and_drain(&carol, relay.peer_id, &addr, b"mail for carol")
        .await;
    assert_eq!(mallory.open_connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_memory_limit_the_relay_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB: less than the relay process uses idle, so the limit is already exceeded.
    let relay = relay_with(&dir, "max_memory_bytes = 1048576");
    let mut mallory = flooder(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(open(&mut mallory, &relay).await, Opened::Refused);
    let text = wait_metric(
        &relay,
        "kith_relay_connections_refused_total{limit=\"memory\"}",
        1.0,
    )
    .await;
    assert_eq!(metric(&text, "kith_relay_connections"), Some(0.0), "{text}");
}
