//! Request floods against a real `kith-relay` process (issue 11): a peer asking for
//! drain challenges or group log pages as fast as it can gets its burst, then typed
//! `RateLimited` refusals (counted in `kith_relay_rate_limited_total{request=…}`),
//! while other peers' challenges, drains and fetches keep working; and however many
//! challenges one peer asks for, it never pushes out another peer's.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::{RelayProcess, TestPeer, loopback_config, metric, wait_metric};
use kith_p2p::grouplog::{GroupLogRequest, GroupLogResponse};
use kith_p2p::identity::Identity;
use kith_p2p::mailbox::{MailboxRequest, MailboxResponse, Refusal};
use libp2p::identity;

/// Requests the flooder sends, one after another.
const FLOOD: usize = 40;

fn relay_with(dir: &tempfile::TempDir, extra: &str) -> RelayProcess {
    RelayProcess::start(
        dir.path(),
        &loopback_config(&dir.path().join("data"), extra),
    )
}

/// Whether `response` is a typed rate-limit refusal with a wait.
fn rate_limited(refusal: &Refusal) -> bool {
    matches!(refusal, Refusal::RateLimited { retry_after_ms } if *retry_after_ms > 0)
}

/// Checks a flood of [`FLOOD`] requests of kind `request` (the label of
/// `kith_relay_rate_limited_total`) against a limit of burst 5, 1 per second:
/// `granted` is the burst plus at most what refilled while the flood ran (the machine
/// may be slow), and every other request was refused and counted, both by kind and
/// as `reason="rate_limited"` in the service's `refusals` family. Returns the scrape.
async fn assert_flood_limited(
    relay: &RelayProcess,
    granted: usize,
    started: Instant,
    request: &str,
    refusals: &str,
) -> String {
    const BURST: usize = 5;
    let refilled = usize::try_from(started.elapsed().as_secs() + 1).unwrap();
    assert!(
        (BURST..=BURST + refilled).contains(&granted),
        "granted {granted} of {FLOOD}, burst {BURST}, refill up to {refilled}"
    );
    let refused = (FLOOD - granted) as f64;
    let name = format!("kith_relay_rate_limited_total{{request=\"{request}\"}}");
    let text = wait_metric(relay, &name, refused).await;
    let reason = format!("{refusals}{{reason=\"rate_limited\"}}");
    assert_eq!(metric(&text, &reason), Some(refused), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_flood_is_rate_limited_while_another_peer_drains() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with(
        &dir,
        "[mailbox]\nchallenge_rate_per_sec = 1\nchallenge_burst = 5\n",
    );
    let addr = relay.addr();
    let alice = Identity::generate();
    let mut alice_peer = TestPeer::new(alice.libp2p_keypair());
    let deposit = MailboxRequest::deposit(&alice.peer_id(), vec![b"before the flood".to_vec()]);
    assert!(matches!(
        alice_peer.request(relay.peer_id, &addr, deposit).await,
        MailboxResponse::Deposited { .. }
    ));
    // Alice holds a challenge while Mallory floods.
    let nonce = alice_peer.challenge(relay.peer_id, &addr).await;

    let mut mallory = TestPeer::new(identity::Keypair::generate_ed25519());
    let started = Instant::now();
    let mut granted = 0;
    for _ in 0..FLOOD {
        match mallory
            .request(relay.peer_id, &addr, MailboxRequest::Challenge)
            .await
        {
            MailboxResponse::Challenge { .. } => granted += 1,
            MailboxResponse::Refused(refusal) if rate_limited(&refusal) => {}
            other => panic!("unexpected answer to a challenge: {other:?}"),
        }
    }
    assert_flood_limited(
        &relay,
        granted,
        started,
        "challenge",
        "kith_relay_refusals_total",
    )
    .await;

    // Alice's challenge from before the flood still drains, and she gets new ones.
    let drain = MailboxRequest::drain(&alice, &relay.peer_id, nonce, None, 10);
    match alice_peer.request(relay.peer_id, &addr, drain).await {
        MailboxResponse::Envelopes { items, .. } => assert_eq!(items.len(), 1),
        other => panic!("alice's drain failed: {other:?}"),
    }
    alice_peer
        .deposit_and_drain(&alice, relay.peer_id, &addr, b"after the flood")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_flood_cannot_push_out_another_peers_challenge() {
    let dir = tempfile::tempdir().unwrap();
    // A small table and a rate that lets the whole flood through: only the per-peer
    // cap stands between Mallory and Alice's challenge.
    let relay = relay_with(
        &dir,
        "[mailbox]\nmax_pending_challenges = 8\nmax_challenges_per_peer = 2\n\
         challenge_rate_per_sec = 1000\nchallenge_burst = 1000\n",
    );
    let addr = relay.addr();
    let alice = Identity::generate();
    let mut alice_peer = TestPeer::new(alice.libp2p_keypair());
    let deposit = MailboxRequest::deposit(&alice.peer_id(), vec![b"mail".to_vec()]);
    alice_peer.request(relay.peer_id, &addr, deposit).await;
    let nonce = alice_peer.challenge(relay.peer_id, &addr).await;

    let mallory = Identity::generate();
    let mut mallory_peer = TestPeer::new(mallory.libp2p_keypair());
    let mut nonces = Vec::new();
    for _ in 0..FLOOD {
        nonces.push(mallory_peer.challenge(relay.peer_id, &addr).await);
    }
    let drain = MailboxRequest::drain(&alice, &relay.peer_id, nonce, None, 10);
    match alice_peer.request(relay.peer_id, &addr, drain).await {
        MailboxResponse::Envelopes { items, .. } => assert_eq!(items.len(), 1),
        other => panic!("the flood pushed out alice's challenge: {other:?}"),
    }
    // Mallory only ever replaced her own: her latest is valid, an early one is not.
    let stale = MailboxRequest::drain(&mallory, &relay.peer_id, nonces[0], None, 10);
    assert_eq!(
        mallory_peer.request(relay.peer_id, &addr, stale).await,
        MailboxResponse::Refused(Refusal::BadChallenge)
    );
    let latest = MailboxRequest::drain(&mallory, &relay.peer_id, nonces[FLOOD - 1], None, 10);
    assert!(matches!(
        mallory_peer.request(relay.peer_id, &addr, latest).await,
        MailboxResponse::Envelopes { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_flood_is_rate_limited_while_another_peer_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with(
        &dir,
        "[grouplog]\nfetch_rate_per_sec = 1\nfetch_burst = 5\n",
    );
    let addr = relay.addr();
    let log = [7u8; 32];
    let mut alice = TestPeer::new(identity::Keypair::generate_ed25519());
    let append = GroupLogRequest::Append {
        log,
        items: vec![b"sealed".to_vec()],
    };
    assert_eq!(
        alice.group_request(relay.peer_id, &addr, append).await,
        GroupLogResponse::Appended { seqs: vec![1] }
    );
    let fetch = GroupLogRequest::Fetch {
        log,
        after: 0,
        limit: 256,
    };

    let mut mallory = TestPeer::new(identity::Keypair::generate_ed25519());
    let started = Instant::now();
    let mut granted = 0;
    for _ in 0..FLOOD {
        match mallory
            .group_request(relay.peer_id, &addr, fetch.clone())
            .await
        {
            GroupLogResponse::Page { .. } => granted += 1,
            GroupLogResponse::Refused(refusal) if rate_limited(&refusal) => {}
            other => panic!("unexpected answer to a fetch: {other:?}"),
        }
    }
    let text = assert_flood_limited(
        &relay,
        granted,
        started,
        "fetch",
        "kith_relay_grouplog_refusals_total",
    )
    .await;
    assert_eq!(
        metric(&text, "kith_relay_grouplog_fetches_total"),
        Some(granted as f64),
        "{text}"
    );

    // Alice still reads the log.
    match alice.group_request(relay.peer_id, &addr, fetch).await {
        GroupLogResponse::Page { items, .. } => assert_eq!(items.len(), 1),
        other => panic!("alice's fetch failed: {other:?}"),
    }
}
