//! The relay's own housekeeping, against a real `kith-relay` process: the periodic
//! expiry sweep deletes mailbox envelopes and group log items past their TTL with
//! nobody asking, and a relay whose disk-job slots are all taken refuses more work
//! at once, typed (`rate_limited`, counted as `busy`), and goes on serving.
#![allow(clippy::unwrap_used)]

mod common;

use common::{RelayProcess, TestPeer, loopback_config, metric, wait_metric};
use kith_p2p::grouplog::{GroupLogRequest, GroupLogResponse};
use kith_p2p::identity::Identity;
use kith_p2p::mailbox::{DepositResult, MailboxRequest, MailboxResponse, Refusal};

fn relay_with(dir: &tempfile::TempDir, extra: &str) -> RelayProcess {
    RelayProcess::start(dir.path(), &loopback_config(&dir.path().join("data"), extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_sweep_deletes_mail_and_log_items_past_their_ttl_unasked() {
    let dir = tempfile::tempdir().unwrap();
    // One-second lifetimes, swept every second.
    let relay = relay_with(
        &dir,
        "[mailbox]\nttl_secs = 1\nexpire_interval_secs = 1\n\
         [grouplog]\nttl_secs = 1\nexpire_interval_secs = 1\n",
    );
    let addr = relay.addr();
    let alice = Identity::generate();
    let mut peer = TestPeer::new(alice.libp2p_keypair());
    let envelopes = vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()];
    let deposit = MailboxRequest::deposit(&alice.peer_id(), envelopes);
    match peer.request(relay.peer_id, &addr, deposit).await {
        MailboxResponse::Deposited { results } => assert_eq!(results, [DepositResult::Stored; 3]),
        other => panic!("deposit refused: {other:?}"),
    }
    let log = [9u8; 32];
    let append = GroupLogRequest::Append { log, items: vec![b"a".to_vec(), b"b".to_vec()] };
    assert_eq!(
        peer.group_request(relay.peer_id, &addr, append).await,
        GroupLogResponse::Appended { seqs: vec![1, 2] }
    );

    // Nobody drains or fetches: the sweeps alone delete them once they are a second old.
    let text = wait_metric(&relay, "kith_relay_expired_total", 3.0).await;
    assert_eq!(metric(&text, "kith_relay_mailbox_envelopes"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "kith_relay_drains_total"), Some(0.0), "{text}");
    let text = wait_metric(&relay, "kith_relay_grouplog_expired_total", 2.0).await;
    assert_eq!(metric(&text, "kith_relay_grouplog_items"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "kith_relay_grouplog_fetches_total"), Some(0.0), "{text}");

    // And they are really gone: the owner's drain and a member's fetch find nothing.
    let nonce = peer.challenge(relay.peer_id, &addr).await;
    let drain = MailboxRequest::drain(&alice, &relay.peer_id, nonce, None, 256);
    match peer.request(relay.peer_id, &addr, drain).await {
        MailboxResponse::Envelopes { items, more } => assert!(items.is_empty() && !more, "{items:?}"),
        other => panic!("drain refused: {other:?}"),
    }
    let fetch = GroupLogRequest::Fetch { log, after: 0, limit: 256 };
    match peer.group_request(relay.peer_id, &addr, fetch).await {
        GroupLogResponse::Page { items, .. } => assert!(items.is_empty(), "{items:?}"),
        other => panic!("fetch refused: {other:?}"),
    }
}

/// Deposits sent at once per round: the relay takes 16 streams per connection.
const BURST: usize = 16;
/// Rounds tried before giving up on seeing a busy refusal (each job flushes to disk,
/// so with one slot nearly every burst has some; more rounds only guard against a
/// machine that runs the job before the loop sees the next request).
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_every_job_slot_busy_refuses_at_once_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // One mailbox job at a time; per-sender limits far away, so only the job bound
    // can refuse.
    let relay = relay_with(
        &dir,
        "[mailbox]\nmax_jobs = 1\nsender_rate_per_sec = 100000\nsender_burst = 100000\n",
    );
    let addr = relay.addr();
    let alice = Identity::generate();
    let mut peer = TestPeer::new(alice.libp2p_keypair());
    let (mut stored, mut busy) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let deposits = (0..BURST)
            .map(|i| MailboxRequest::deposit(&alice.peer_id(), vec![format!("{round}/{i}").into_bytes()]))
            .collect();
        for response in peer.request_all(relay.peer_id, &addr, deposits).await {
            match response {
                MailboxResponse::Deposited { results } if results == [DepositResult::Stored] => stored += 1,
                MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms: 250 }) => busy += 1,
                other => panic!("unexpected answer to a deposit: {other:?}"),
            }
        }
        if busy > 0 {
            break;
        }
    }
    assert!(busy > 0, "no deposit out of {stored} met a busy relay");
    eprintln!("{busy} deposits refused busy, {stored} stored");
    let text = wait_metric(&relay, "kith_relay_refusals_total{reason=\"busy\"}", busy as f64).await;
    assert_eq!(metric(&text, "kith_relay_rate_limited_total{request=\"deposit\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "kith_relay_deposits_total"), Some(stored as f64), "{text}");

    // Nothing refused was stored, everything accepted was, and the relay still serves.
    let nonce = peer.challenge(relay.peer_id, &addr).await;
    let drain = MailboxRequest::drain(&alice, &relay.peer_id, nonce, None, 256);
    match peer.request(relay.peer_id, &addr, drain).await {
        MailboxResponse::Envelopes { items, .. } => assert_eq!(items.len(), stored),
        other => panic!("drain refused: {other:?}"),
    }
    peer.deposit_and_drain(&alice, relay.peer_id, &addr, b"after the burst").await;
}
