//! The group log role: the store on its own (cursor pages, idempotent appends,
//! quotas, expiry, reopening, `kill -9` of an appending process), then a real
//! `kith-relay` process on loopback with in-test peers speaking `/kith/grouplog/1`
//! (paging, retries, restarts, the members policy, quotas, hostile requests).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{DEADLINE, RelayProcess, TestPeer, loopback_config, metric};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use kith_p2p::grouplog::{
    GroupLogRequest, GroupLogResponse, LOG_ID_LEN, LogItem, MAX_APPEND_BATCH, MAX_ITEM_LEN, Refusal,
};
use kith_relay::grouplog::{
    AppendOutcome, Appended, GroupLogLimits, GroupLogStats, GroupLogStore, Refusal as StoreRefusal,
};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, identity, noise, request_response, tcp, yamux};

const LOG: [u8; LOG_ID_LEN] = [7; LOG_ID_LEN];

fn open(dir: &std::path::Path, limits: GroupLogLimits) -> GroupLogStore {
    GroupLogStore::open(dir, limits).unwrap()
}

fn items(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{tag} item {i:03} {}", "x".repeat(i % 50)).into_bytes())
        .collect()
}

fn stored(outcome: &AppendOutcome) -> Vec<u64> {
    match outcome {
        AppendOutcome::Appended(appended) => appended.iter().map(Appended::seq).collect(),
        other => panic!("refused: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The store.

/// A disk write the store cannot make (its blob directory replaced by a file, so
/// sled's write of a leaf over ~128 KiB fails even for root) fails it for good:
/// the append fails, so does the next one, and `failed_for_good` (which the relay
/// exports as `kith_relay_grouplog_store_failed`) says so, where it did not
/// before.
#[test]
fn store_that_failed_for_good_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), GroupLogLimits::default());
    stored(&store.append(&LOG, &items(2, "before"), 1_000).unwrap());
    assert!(!store.failed_for_good());
    let blobs = dir.path().join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    std::fs::write(&blobs, b"").unwrap();
    let large: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; MAX_ITEM_LEN]).collect();
    assert!(store.append(&LOG, &large, 2_000).is_err());
    assert!(store.failed_for_good());
    assert!(store.append(&LOG, &items(1, "after"), 3_000).is_err(), "refused until reopened");
}

#[test]
fn store_append_fetch_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), GroupLogLimits::default());
    let sent = items(25, "a");
    let out = store.append(&LOG, &sent, 1_000).unwrap();
    assert_eq!(stored(&out), (1..=25).collect::<Vec<u64>>());
    // Pages of 10 by cursor: 10, 10, 5.
    let mut cursor = 0;
    let mut got = Vec::new();
    loop {
        let page = store.fetch(&LOG, cursor, 10, usize::MAX).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        cursor = page.last().unwrap().seq;
        got.extend(page);
    }
    assert_eq!(
        got.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>(),
        sent
    );
    assert!(got.iter().all(|i| i.appended_at_ms == 1_000));
    // The byte budget cuts a page, but never below one item.
    assert_eq!(store.fetch(&LOG, 0, 100, 0).unwrap().len(), 1);
    // Another log is separate, and starts at 1 too.
    let other = [8; LOG_ID_LEN];
    assert!(store.fetch(&other, 0, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(stored(&store.append(&other, &[b"x"], 0).unwrap()), [1]);
    assert_eq!(
        store.stats(),
        GroupLogStats {
            logs: 2,
            items: 26,
            bytes: sent.iter().map(|i| i.len() as u64).sum::<u64>() + 1,
        }
    );
    assert!(
        store
            .fetch(&LOG, u64::MAX, 10, usize::MAX)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn store_appends_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), GroupLogLimits::default());
    let first = store.append(&LOG, &[b"a", b"b"], 0).unwrap();
    assert_eq!(
        first,
        AppendOutcome::Appended(vec![
            Appended::Stored { seq: 1 },
            Appended::Stored { seq: 2 }
        ])
    );
    // A retry, mixed with a new item and a duplicate within the batch.
    let again = store.append(&LOG, &[b"b", b"c", b"a", b"c"], 0).unwrap();
    assert_eq!(
        again,
        AppendOutcome::Appended(vec![
            Appended::Duplicate { seq: 2 },
            Appended::Stored { seq: 3 },
            Appended::Duplicate { seq: 1 },
            Appended::Duplicate { seq: 3 },
        ])
    );
    assert_eq!(store.stats().items, 3);
    // The same bytes in another log are another item.
    assert_eq!(stored(&store.append(&[1; 32], &[b"a"], 0).unwrap()), [1]);
}

#[test]
fn store_quotas_refuse_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLogLimits {
        max_items_per_log: 3,
        max_bytes_per_log: 250,
        max_total_bytes: 300,
        ..GroupLogLimits::default()
    };
    let store = open(dir.path(), limits);
    assert_eq!(
        stored(&store.append(&LOG, &[vec![1; 100]], 0).unwrap()),
        [1]
    );
    // Two more would be 3 items but 300 bytes: the whole batch is refused.
    let refused = store
        .append(&LOG, &[vec![2; 100], vec![3; 100]], 0)
        .unwrap();
    assert_eq!(refused, AppendOutcome::Refused(StoreRefusal::QuotaBytes));
    assert_eq!(store.stats().items, 1);
    assert_eq!(
        stored(&store.append(&LOG, &[vec![2; 10], vec![3; 10]], 0).unwrap()),
        [2, 3]
    );
    assert_eq!(
        store.append(&LOG, &[vec![4; 1]], 0).unwrap(),
        AppendOutcome::Refused(StoreRefusal::QuotaCount)
    );
    // A full log still answers retries of what it holds.
    assert_eq!(stored(&store.append(&LOG, &[vec![2; 10]], 0).unwrap()), [2]);
    // The store as a whole: 120 held, 200 more would pass 300 (though they fit
    // the log), 100 more would not.
    let other = [9; 32];
    assert_eq!(
        store
            .append(&other, &[vec![5; 100], vec![6; 100]], 0)
            .unwrap(),
        AppendOutcome::Refused(StoreRefusal::StoreFull)
    );
    assert_eq!(
        stored(&store.append(&other, &[vec![5; 100]], 0).unwrap()),
        [1]
    );
    // Too large: refused whatever the quotas.
    assert_eq!(
        store
            .append(&[10; 32], &[vec![0; MAX_ITEM_LEN + 1]], 0)
            .unwrap(),
        AppendOutcome::Refused(StoreRefusal::TooLarge)
    );
    assert_eq!(store.stats().logs, 2);
    // Nothing of a refused batch was numbered: the next item of `other` is 2.
    assert_eq!(
        store.append(&other, &[vec![7; 1]], 0).unwrap(),
        AppendOutcome::Appended(vec![Appended::Stored { seq: 2 }])
    );
}

/// Small items spread over many logs stay under every byte quota; the store-wide
/// count refuses a batch that would pass it, whole, in any log, counting only the
/// items not held yet, and takes items again once expiry frees room.
#[test]
fn store_caps_the_number_of_items_across_logs() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLogLimits {
        ttl: Duration::from_millis(1_000),
        max_items_per_log: 3,
        max_total_items: 4,
        ..GroupLogLimits::default()
    };
    let store = open(dir.path(), limits.clone());
    assert_eq!(
        stored(&store.append(&LOG, &[b"a", b"b", b"c"], 0).unwrap()),
        [1, 2, 3]
    );
    let (other, third) = ([9; LOG_ID_LEN], [10; LOG_ID_LEN]);
    // Two more would be five: refused whole, though the log has room for them.
    assert_eq!(
        store.append(&other, &[b"d", b"e"], 500).unwrap(),
        AppendOutcome::Refused(StoreRefusal::StoreFull)
    );
    assert_eq!(store.stats().items, 3);
    assert!(store.fetch(&other, 0, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(stored(&store.append(&other, &[b"d"], 500).unwrap()), [1]);
    assert_eq!(
        store.append(&third, &[b"f"], 500).unwrap(),
        AppendOutcome::Refused(StoreRefusal::StoreFull)
    );
    // Retries of held items are answered when full; one new item among them is not.
    assert_eq!(
        store.append(&other, &[b"d", b"d"], 500).unwrap(),
        AppendOutcome::Appended(vec![
            Appended::Duplicate { seq: 1 },
            Appended::Duplicate { seq: 1 }
        ])
    );
    assert_eq!(
        store.append(&other, &[b"d", b"y"], 500).unwrap(),
        AppendOutcome::Refused(StoreRefusal::StoreFull)
    );
    // The count survives a restart.
    drop(store);
    let store = open(dir.path(), limits);
    assert_eq!(
        store.stats(),
        GroupLogStats {
            logs: 2,
            items: 4,
            bytes: 4
        }
    );
    assert_eq!(
        store.append(&third, &[b"f"], 500).unwrap(),
        AppendOutcome::Refused(StoreRefusal::StoreFull)
    );
    // Expiry frees room for three; a repeat within the batch is counted once. The
    // emptied first log left its numbers (1–3) to the store's floor, so the new log
    // starts above them.
    assert_eq!(store.expire(1_000).unwrap(), 3);
    assert_eq!(
        store.append(&third, &[b"f", b"g", b"f", b"h"], 1_000).unwrap(),
        AppendOutcome::Appended(vec![
            Appended::Stored { seq: 4 },
            Appended::Stored { seq: 5 },
            Appended::Duplicate { seq: 4 },
            Appended::Stored { seq: 6 },
        ])
    );
    assert_eq!(
        store.append(&LOG, &[b"i"], 1_000).unwrap(),
        AppendOutcome::Refused(StoreRefusal::StoreFull)
    );
    // Emptied too, `other` numbers on from the floor (its own next number, 2, shows
    // that the refused batches took none, but it is below the floor).
    assert_eq!(store.expire(1_500).unwrap(), 1);
    assert_eq!(stored(&store.append(&other, &[b"y"], 1_500).unwrap()), [4]);
}

#[test]
fn store_expiry_keeps_numbering_and_cursors_valid() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLogLimits {
        ttl: Duration::from_millis(1_000),
        ..GroupLogLimits::default()
    };
    let store = open(dir.path(), limits.clone());
    store.append(&LOG, &items(3, "old"), 100).unwrap();
    store.append(&LOG, &items(2, "new"), 5_000).unwrap();
    assert_eq!(store.expire(1_099).unwrap(), 0);
    assert_eq!(store.expire(1_100).unwrap(), 3);
    let left = store.fetch(&LOG, 0, 10, usize::MAX).unwrap();
    assert_eq!(left.iter().map(|i| i.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(store.expire(10_000).unwrap(), 2);
    assert_eq!(store.stats(), GroupLogStats::default());
    // The emptied log numbers on, and an expired item appended again is new.
    assert_eq!(
        stored(&store.append(&LOG, &items(1, "old"), 20_000).unwrap()),
        [6]
    );
    drop(store);
    // Across a reopen too.
    let store = open(dir.path(), limits);
    assert_eq!(
        stored(&store.append(&LOG, &[b"later"], 20_000).unwrap()),
        [7]
    );
    assert_eq!(store.stats().items, 2);
    assert_eq!(store.stats().logs, 1);
}

#[test]
fn store_reopens_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let sent = items(40, "keep");
    {
        let store = open(dir.path(), GroupLogLimits::default());
        store.append(&LOG, &sent, 1).unwrap();
    }
    let store = open(dir.path(), GroupLogLimits::default());
    let held = store.fetch(&LOG, 0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(
        held.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>(),
        sent
    );
    assert_eq!(store.stats().items, 40);
    assert_eq!(stored(&store.append(&LOG, &[b"next"], 1).unwrap()), [41]);
    // Not a mailbox database, nor the other way round.
    drop(store);
    assert!(matches!(
        kith_relay::mailbox::MailboxStore::open(dir.path(), Default::default()),
        Err(kith_relay::mailbox::OpenError::Foreign { .. })
    ));
    let mailbox = tempfile::tempdir().unwrap();
    let mail = kith_relay::mailbox::MailboxStore::open(mailbox.path(), Default::default()).unwrap();
    mail.deposit(b"owner", &[b"sealed"], 0).unwrap();
    drop(mail);
    assert!(matches!(
        GroupLogStore::open(mailbox.path(), GroupLogLimits::default()),
        Err(kith_relay::mailbox::OpenError::Foreign { .. })
    ));
    // The store still opens as itself.
    assert_eq!(
        open(dir.path(), GroupLogLimits::default()).stats().items,
        41
    );
}

/// Set (to the store directory) in the child process of the SIGKILL test only.
const CHILD_DIR_VAR: &str = "KITH_RELAY_TEST_GROUPLOG_CHILD_DIR";
/// The round number, so each child appends distinct items.
const CHILD_ROUND_VAR: &str = "KITH_RELAY_TEST_GROUPLOG_CHILD_ROUND";

fn child_item(i: u64) -> Vec<u8> {
    format!("item {i} {}", "y".repeat((i % 5) as usize * 200)).into_bytes()
}

/// The body of the appending child; a no-op when run as a normal test.
#[test]
fn child_appender() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND_VAR).unwrap().parse().unwrap();
    let store = open(dir.as_ref(), GroupLogLimits::default());
    for i in round * 1_000_000.. {
        let batch = [child_item(2 * i), child_item(2 * i + 1)];
        let out = store.append(&LOG, &batch, i).unwrap();
        // Only now are the items acknowledged.
        for (n, seq) in stored(&out).into_iter().enumerate() {
            println!("ACK {seq} {}", 2 * i + n as u64);
        }
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    for round in 0..2 {
        acked.extend(run_and_kill_child(dir.path(), round));
        let store = open(dir.path(), GroupLogLimits::default());
        let held = store.fetch(&LOG, 0, usize::MAX, usize::MAX).unwrap();
        for &(seq, i) in &acked {
            let found = held
                .iter()
                .find(|item| item.seq == seq)
                .unwrap_or_else(|| panic!("lost seq {seq}"));
            assert_eq!(found.bytes, child_item(i));
        }
        assert_eq!(store.stats().items, held.len() as u64);
        // Numbering goes on above everything held, with no gap reuse.
        let max_seq = held.iter().map(|i| i.seq).max().unwrap();
        let note = format!("after round {round}");
        assert_eq!(
            stored(&store.append(&LOG, &[note.as_bytes()], 0).unwrap()),
            [max_seq + 1]
        );
    }
}

/// Runs an appending child until it has acknowledged 30 items, SIGKILLs it and
/// returns every (seq, item index) it acknowledged.
fn run_and_kill_child(dir: &std::path::Path, round: u64) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appender",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_ROUND_VAR, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
                if tx
                    .send((parts.next().unwrap(), parts.next().unwrap()))
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 30 {
        match rx.recv_timeout(DEADLINE) {
            Ok(ack) => acked.push(ack),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging: {e}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush.
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    acked
}

// ---------------------------------------------------------------------------
// The relay.

/// Appends `items` in batches; returns every sequence number.
async fn append_all(
    peer: &mut TestPeer,
    relay: &RelayProcess,
    log: [u8; LOG_ID_LEN],
    items: &[Vec<u8>],
) -> Vec<u64> {
    let mut seqs = Vec::new();
    for batch in items.chunks(MAX_APPEND_BATCH) {
        let request = GroupLogRequest::Append {
            log,
            items: batch.to_vec(),
        };
        match peer
            .group_request(relay.peer_id, &relay.addr(), request)
            .await
        {
            GroupLogResponse::Appended { seqs: s } => {
                assert_eq!(s.len(), batch.len());
                seqs.extend(s);
            }
            other => panic!("append refused: {other:?}"),
        }
    }
    seqs
}

/// Fetches every page after `after`; returns all items.
async fn fetch_all(
    peer: &mut TestPeer,
    relay: &RelayProcess,
    log: [u8; LOG_ID_LEN],
    after: u64,
    limit: u32,
) -> Vec<LogItem> {
    let mut all: Vec<LogItem> = Vec::new();
    loop {
        let cursor = all.last().map_or(after, |i| i.seq);
        let request = GroupLogRequest::Fetch {
            log,
            after: cursor,
            limit,
        };
        match peer
            .group_request(relay.peer_id, &relay.addr(), request)
            .await
        {
            GroupLogResponse::Page { items, more } => {
                assert!(items.len() <= limit as usize);
                all.extend(items);
                if !more {
                    return all;
                }
            }
            other => panic!("fetch refused: {other:?}"),
        }
    }
}

fn peer() -> TestPeer {
    TestPeer::new(identity::Keypair::generate_ed25519())
}

#[tokio::test]
async fn append_fetch_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(&dir.path().join("data"), "");
    let relay = RelayProcess::start(dir.path(), &config);
    let mut sender = peer();
    let sent = items(100, "group");
    let seqs = append_all(&mut sender, &relay, LOG, &sent).await;
    assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
    // A retry (the sender timed out, say) gets the same numbers and stores nothing.
    assert_eq!(
        append_all(&mut sender, &relay, LOG, &sent[10..13]).await,
        [11, 12, 13]
    );

    // Another member reads in pages of 30 with a cursor: 30, 30, 30, 10.
    let mut reader = peer();
    let got = fetch_all(&mut reader, &relay, LOG, 0, 30).await;
    assert_eq!(
        got.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>(),
        sent
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    // From a later cursor, only what follows.
    let tail = fetch_all(&mut reader, &relay, LOG, 95, 30).await;
    assert_eq!(
        tail.iter().map(|i| i.seq).collect::<Vec<_>>(),
        [96, 97, 98, 99, 100]
    );

    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_grouplog_appends_total"),
        Some(100.0)
    );
    assert_eq!(
        metric(&text, "kith_relay_grouplog_duplicates_total"),
        Some(3.0)
    );
    assert_eq!(metric(&text, "kith_relay_grouplog_items"), Some(100.0));
    assert_eq!(metric(&text, "kith_relay_grouplog_logs"), Some(1.0));
    assert_eq!(
        metric(&text, "kith_relay_grouplog_fetched_items_total"),
        Some(105.0)
    );

    // A graceful restart leaves the de-duplication index in a checkpoint, which
    // the next start loads (and spends) instead of reading every item: retries are
    // still known for what they are.
    assert!(relay.signal_and_wait("TERM").success());
    let checkpoint = dir.path().join("data/grouplog/grouplog.index");
    assert!(checkpoint.exists(), "a clean shutdown writes the index checkpoint");
    let relay = RelayProcess::start(dir.path(), &config);
    assert!(!checkpoint.exists(), "the start spent the checkpoint");
    let loaded = |l: &String| l.contains("loaded from the last clean stop's checkpoint") && l.contains("grouplog");
    assert!(relay.log().iter().any(loaded), "the index came from the checkpoint: {:#?}", relay.log());
    assert_eq!(
        append_all(&mut peer(), &relay, LOG, &sent[40..42]).await,
        [41, 42]
    );
    // Then a kill -9 right after an acknowledged append: the next start reads the
    // items, and knows the retries too.
    let more = items(5, "after restart");
    assert_eq!(
        append_all(&mut peer(), &relay, LOG, &more).await,
        [101, 102, 103, 104, 105]
    );
    relay.kill();
    let relay = RelayProcess::start(dir.path(), &config);
    let scanned = |l: &String| l.contains("rebuilt by reading every item") && l.contains("grouplog");
    assert!(relay.log().iter().any(scanned), "no checkpoint after kill -9: {:#?}", relay.log());
    assert_eq!(
        append_all(&mut peer(), &relay, LOG, &[sent[0].clone(), more[4].clone()]).await,
        [1, 105]
    );
    let all = fetch_all(&mut peer(), &relay, LOG, 0, 256).await;
    assert_eq!(all.len(), 105);
    assert_eq!(
        all[100..]
            .iter()
            .map(|i| i.bytes.clone())
            .collect::<Vec<_>>(),
        more
    );
    let text = relay.metrics().await;
    assert_eq!(metric(&text, "kith_relay_grouplog_items"), Some(105.0));
}

#[tokio::test]
async fn members_policy_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let member_key = identity::Keypair::generate_ed25519();
    let member_id = member_key.public().to_peer_id();
    let extra = format!(
        "[access]\npolicy = \"members\"\nmembers = [\"{member_id}\"]\n\n[grouplog]\nmax_items_per_log = 3\n"
    );
    let relay = RelayProcess::start(
        dir.path(),
        &loopback_config(&dir.path().join("data"), &extra),
    );
    let addr = relay.addr();

    let mut stranger = peer();
    let append = |items: Vec<Vec<u8>>| GroupLogRequest::Append { log: LOG, items };
    assert_eq!(
        stranger
            .group_request(relay.peer_id, &addr, append(vec![b"spam".to_vec()]))
            .await,
        GroupLogResponse::Refused(Refusal::NotMember)
    );
    let mut member = TestPeer::new(member_key);
    assert_eq!(
        member
            .group_request(
                relay.peer_id,
                &addr,
                append(vec![b"a".to_vec(), b"b".to_vec()])
            )
            .await,
        GroupLogResponse::Appended { seqs: vec![1, 2] }
    );
    // Anyone who names the log reads it: nothing of the stranger's got in.
    let fetched = fetch_all(&mut stranger, &relay, LOG, 0, 10).await;
    assert_eq!(
        fetched.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    // The quota refuses a batch that does not fit, as a whole.
    assert_eq!(
        member
            .group_request(
                relay.peer_id,
                &addr,
                append(vec![b"c".to_vec(), b"d".to_vec()])
            )
            .await,
        GroupLogResponse::Refused(Refusal::QuotaCount)
    );
    assert_eq!(
        member
            .group_request(relay.peer_id, &addr, append(vec![b"c".to_vec()]))
            .await,
        GroupLogResponse::Appended { seqs: vec![3] }
    );
    // Too large is refused, typed, whoever asks.
    assert_eq!(
        member
            .group_request(
                relay.peer_id,
                &addr,
                append(vec![vec![0; MAX_ITEM_LEN + 1]])
            )
            .await,
        GroupLogResponse::Refused(Refusal::TooLarge)
    );
    let text = relay.metrics().await;
    for (reason, n) in [
        ("not_member", 1.0),
        ("quota_count", 1.0),
        ("too_large", 1.0),
    ] {
        let name = format!("kith_relay_grouplog_refusals_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &name), Some(n), "{name}");
    }
    // The mailbox refusals are counted apart.
    assert_eq!(
        metric(&text, "kith_relay_refusals_total{reason=\"not_member\"}"),
        Some(0.0)
    );
}

/// A codec that sends the test's bytes verbatim and reads whatever comes back, as a
/// hostile or broken peer would.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(std::io::Error::other("outbound only"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// Sends raw bytes on `/kith/grouplog/1`; returns the raw answer (empty or an error
/// when the relay dropped the stream).
async fn send_raw(relay: PeerId, addr: &Multiaddr, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    kith_p2p::grouplog::PROTOCOL,
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(DEADLINE),
            )
        })
        .unwrap()
        .build();
    swarm.add_peer_address(relay, addr.clone());
    let id = swarm.behaviour_mut().send_request(&relay, bytes);
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => return Err(error.to_string()),
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap()
}

#[tokio::test]
async fn hostile_requests_get_no_answer_and_the_relay_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(dir.path(), &loopback_config(&dir.path().join("data"), ""));
    let addr = relay.addr();
    let mut good = peer();
    assert_eq!(
        good.group_request(
            relay.peer_id,
            &addr,
            GroupLogRequest::Append {
                log: LOG,
                items: vec![b"before".to_vec()]
            }
        )
        .await,
        GroupLogResponse::Appended { seqs: vec![1] }
    );

    let mut garbage = 8u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"\xffnonsens");
    // A frame announcing 64 MiB: refused from its prefix, nothing read or allocated.
    let huge = (64u32 << 20).to_be_bytes().to_vec();
    // A well-formed frame with too many items.
    let batch = GroupLogRequest::Append {
        log: LOG,
        items: vec![vec![1]; MAX_APPEND_BATCH + 1],
    };
    let body = kith_p2p::wire::encode(&kith_p2p::wire::Frame { v: 1, body: batch }).unwrap();
    let mut over = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    over.extend_from_slice(&body);
    for bytes in [garbage, huge, over, vec![0xff; 3]] {
        // Either the stream fails or it ends without a byte of answer.
        if let Ok(answer) = send_raw(relay.peer_id, &addr, bytes).await {
            assert!(answer.is_empty(), "answered {answer:?}");
        }
    }

    // Oversized items in a valid frame get a typed refusal, and nothing is stored.
    assert_eq!(
        good.group_request(
            relay.peer_id,
            &addr,
            GroupLogRequest::Append {
                log: LOG,
                items: vec![b"fine".to_vec(), vec![0; MAX_ITEM_LEN + 1]]
            }
        )
        .await,
        GroupLogResponse::Refused(Refusal::TooLarge)
    );
    // The relay serves on.
    assert_eq!(
        good.group_request(
            relay.peer_id,
            &addr,
            GroupLogRequest::Append {
                log: LOG,
                items: vec![b"after".to_vec()]
            }
        )
        .await,
        GroupLogResponse::Appended { seqs: vec![2] }
    );
    let all = fetch_all(&mut good, &relay, LOG, 0, 10).await;
    assert_eq!(
        all.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>(),
        [b"before".to_vec(), b"after".to_vec()]
    );
    assert!(
        relay
            .metrics()
            .await
            .contains("kith_relay_grouplog_items 2")
    );
}

#[tokio::test]
async fn a_disabled_role_refuses_typed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(
        dir.path(),
        &loopback_config(&dir.path().join("data"), "[grouplog]\nenabled = false\n"),
    );
    let response = peer()
        .group_request(
            relay.peer_id,
            &relay.addr(),
            GroupLogRequest::Fetch {
                log: LOG,
                after: 0,
                limit: 1,
            },
        )
        .await;
    assert_eq!(response, GroupLogResponse::Refused(Refusal::Disabled));
    assert!(!dir.path().join("data").join("grouplog").exists());
}
