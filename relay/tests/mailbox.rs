//! Behaviour of the mailbox store through its public API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_relay::mailbox::{
    ChallengeError, DepositOutcome, MailboxError, MailboxLimits, MailboxStats, MailboxStore,
    OpenError, Refusal, StoredEnvelope, Usage,
};

const DAY_MS: u64 = 86_400_000;

fn limits() -> MailboxLimits {
    MailboxLimits {
        ttl: Duration::from_millis(DAY_MS),
        max_messages_per_mailbox: 3,
        max_bytes_per_mailbox: 100,
        open_share_percent: 100,
        max_total_bytes: 250,
        max_total_envelopes: 10_000,
        max_envelope_bytes: 60,
        challenge_ttl: Duration::from_secs(60),
        max_pending_challenges: 8,
        max_challenges_per_mailbox: 4,
    }
}

fn open(dir: &tempfile::TempDir) -> MailboxStore {
    MailboxStore::open(&dir.path().join("mailbox"), limits()).unwrap()
}

fn stored(seq: u64) -> DepositOutcome {
    DepositOutcome::Stored { seq }
}

fn seqs(items: &[StoredEnvelope]) -> Vec<u64> {
    items.iter().map(|e| e.seq).collect()
}

#[test]
fn deposit_list_ack_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let out = store
        .deposit(b"alice", &[b"one".to_vec(), b"two".to_vec()], 1_000)
        .unwrap();
    assert_eq!(out, [stored(1), stored(2)]);
    assert_eq!(
        store.deposit(b"alice", &[b"three"], 2_000).unwrap(),
        [stored(3)]
    );

    let all = store.list(b"alice", None, 10, 1 << 20).unwrap();
    assert_eq!(seqs(&all), [1, 2, 3]);
    assert_eq!(all[0].envelope, b"one");
    assert_eq!(
        (all[0].deposited_at_ms, all[2].deposited_at_ms),
        (1_000, 2_000)
    );
    assert_eq!(
        seqs(&store.list(b"alice", Some(1), 10, 1 << 20).unwrap()),
        [2, 3]
    );
    assert_eq!(
        seqs(&store.list(b"alice", None, 2, 1 << 20).unwrap()),
        [1, 2]
    );
    assert!(
        store
            .list(b"alice", Some(u64::MAX), 10, 100)
            .unwrap()
            .is_empty()
    );
    assert!(store.list(b"bob", None, 10, 100).unwrap().is_empty());
    assert!(store.list(b"alice", None, 0, 100).unwrap().is_empty());
    // Byte budget: whole envelopes only, but always at least one.
    assert_eq!(seqs(&store.list(b"alice", None, 10, 6).unwrap()), [1, 2]);
    assert_eq!(seqs(&store.list(b"alice", None, 10, 1).unwrap()), [1]);

    assert_eq!(store.ack(b"alice", &[1, 3, 3, 99]).unwrap(), 2);
    assert_eq!(store.ack(b"alice", &[1]).unwrap(), 0);
    assert_eq!(seqs(&store.list(b"alice", None, 10, 1 << 20).unwrap()), [2]);
    assert_eq!(
        store.usage(b"alice").unwrap(),
        Usage {
            envelopes: 1,
            bytes: 3
        }
    );
    assert_eq!(
        store.stats(),
        MailboxStats {
            mailboxes: 1,
            envelopes: 1,
            bytes: 3
        }
    );
    assert_eq!(store.ack(b"nobody", &[1]).unwrap(), 0);
    assert_eq!(store.ack(b"alice", &[2]).unwrap(), 1);
    assert_eq!(store.stats(), MailboxStats::default());
    assert_eq!(store.usage(b"alice").unwrap(), Usage::default());
}

#[test]
fn mailboxes_are_separate_even_when_ids_share_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.deposit(b"ab", &[b"x"], 0).unwrap();
    store.deposit(b"abc", &[b"y"], 0).unwrap();
    assert_eq!(store.list(b"ab", None, 10, 100).unwrap()[0].envelope, b"x");
    assert_eq!(store.list(b"abc", None, 10, 100).unwrap().len(), 1);
    assert_eq!(store.stats().mailboxes, 2);
}

#[test]
fn duplicates_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(
        store
            .deposit(b"alice", &[&b"same"[..], b"same", b"other"], 0)
            .unwrap(),
        [stored(1), DepositOutcome::Duplicate { seq: 1 }, stored(2)]
    );
    // A retry of the whole batch stores nothing, even with the mailbox nearly full.
    assert_eq!(
        store
            .deposit(b"alice", &[&b"same"[..], b"other"], 5)
            .unwrap(),
        [
            DepositOutcome::Duplicate { seq: 1 },
            DepositOutcome::Duplicate { seq: 2 }
        ]
    );
    // The same envelope in another mailbox is another message.
    assert_eq!(store.deposit(b"bob", &[b"same"], 0).unwrap(), [stored(1)]);
    assert_eq!(store.stats().envelopes, 3);
    // Once acknowledged, the envelope is gone, hash and all.
    store.ack(b"alice", &[1]).unwrap();
    assert_eq!(store.deposit(b"alice", &[b"same"], 9).unwrap(), [stored(3)]);
}

#[test]
fn quotas_refuse_without_harming_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let big = vec![7u8; 61];
    let forty = vec![1u8; 40];
    let out = store
        .deposit(
            b"alice",
            &[
                big.clone(),
                forty.clone(),
                vec![2; 40],
                vec![3; 40],
                vec![4; 10],
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        out,
        [
            DepositOutcome::Refused(Refusal::TooLarge),
            stored(1),
            stored(2),
            DepositOutcome::Refused(Refusal::QuotaBytes),
            stored(3),
        ]
    );
    assert_eq!(
        store.deposit(b"alice", &[vec![5u8; 1]], 0).unwrap(),
        [DepositOutcome::Refused(Refusal::QuotaCount)]
    );
    // Refusals leave the stored envelopes intact and the store serving.
    assert_eq!(
        seqs(&store.list(b"alice", None, 10, 1000).unwrap()),
        [1, 2, 3]
    );
    assert_eq!(
        store.usage(b"alice").unwrap(),
        Usage {
            envelopes: 3,
            bytes: 90
        }
    );
    assert_eq!(store.deposit(b"bob", &[b"fine"], 0).unwrap(), [stored(1)]);
    // Acknowledging frees quota; sequence numbers keep increasing.
    store.ack(b"alice", &[1]).unwrap();
    assert_eq!(
        store.deposit(b"alice", &[vec![6u8; 50]], 0).unwrap(),
        [stored(4)]
    );
}

#[test]
fn the_store_as_a_whole_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for (i, mailbox) in [b"m1", b"m2", b"m3"].iter().enumerate() {
        let out = store
            .deposit(*mailbox, &[vec![i as u8; 60], vec![i as u8 + 10; 30]], 0)
            .unwrap();
        if i < 2 {
            assert!(
                out.iter()
                    .all(|o| matches!(o, DepositOutcome::Stored { .. })),
                "{out:?}"
            );
        } else {
            // 180 bytes held: 60 more fit, 30 after that do not.
            assert_eq!(
                out,
                [stored(1), DepositOutcome::Refused(Refusal::StoreFull)]
            );
        }
    }
    assert_eq!(store.stats().bytes, 240);
    store.ack(b"m1", &[1]).unwrap();
    assert_eq!(
        store.deposit(b"m3", &[vec![9u8; 30]], 0).unwrap(),
        [stored(2)]
    );
}

/// Tiny envelopes spread over many mailboxes stay under every byte quota; the
/// store-wide count refuses them, stores nothing of a refused one, answers retries
/// of what it holds, and takes envelopes again once acks or expiry free room.
#[test]
fn the_store_caps_the_number_of_envelopes_across_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let capped = MailboxLimits {
        max_total_envelopes: 4,
        ..limits()
    };
    let store = MailboxStore::open(dir.path(), capped.clone()).unwrap();
    assert_eq!(
        store.deposit(b"m1", &[b"a", b"b", b"c"], 0).unwrap(),
        [stored(1), stored(2), stored(3)]
    );
    // One more fits, in another mailbox; the next is refused there and in a third.
    assert_eq!(
        store.deposit(b"m2", &[b"d", b"e"], 0).unwrap(),
        [stored(1), DepositOutcome::Refused(Refusal::StoreFull)]
    );
    assert_eq!(
        store.deposit(b"m3", &[b"f"], 0).unwrap(),
        [DepositOutcome::Refused(Refusal::StoreFull)]
    );
    let full = MailboxStats {
        mailboxes: 2,
        envelopes: 4,
        bytes: 4,
    };
    assert_eq!(store.stats(), full);
    assert_eq!(store.usage(b"m3").unwrap(), Usage::default());
    assert!(store.list(b"m3", None, 10, 100).unwrap().is_empty());
    assert_eq!(seqs(&store.list(b"m2", None, 10, 100).unwrap()), [1]);
    // A retry of a held envelope is still answered, as with a full byte quota.
    assert_eq!(
        store.deposit(b"m1", &[b"b"], 0).unwrap(),
        [DepositOutcome::Duplicate { seq: 2 }]
    );
    // The count survives a restart: it is rebuilt from what is held.
    drop(store);
    let store = MailboxStore::open(dir.path(), capped).unwrap();
    assert_eq!(store.stats(), full);
    assert_eq!(
        store.deposit(b"m3", &[b"f"], 0).unwrap(),
        [DepositOutcome::Refused(Refusal::StoreFull)]
    );
    // An ack frees room for exactly as many envelopes as it removed.
    assert_eq!(store.ack(b"m1", &[1, 2]).unwrap(), 2);
    assert_eq!(
        store.deposit(b"m3", &[b"f", b"g", b"h"], DAY_MS).unwrap(),
        [
            stored(1),
            stored(2),
            DepositOutcome::Refused(Refusal::StoreFull)
        ]
    );
    // So does expiry: everything deposited at 0 goes, the two at DAY_MS stay. (A new
    // mailbox numbers from the store's floor, so only the outcomes' kinds count.)
    assert_eq!(store.expire(DAY_MS).unwrap(), 2);
    let out = store.deposit(b"m4", &[b"h", b"i", b"j"], DAY_MS).unwrap();
    assert!(
        matches!(
            out[..],
            [
                DepositOutcome::Stored { .. },
                DepositOutcome::Stored { .. },
                DepositOutcome::Refused(Refusal::StoreFull)
            ]
        ),
        "{out:?}"
    );
    assert_eq!(store.stats().envelopes, 4);
}

#[test]
fn expiry_removes_old_envelopes_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.deposit(b"alice", &[b"old"], 1_000).unwrap();
    store.deposit(b"bob", &[b"old"], 1_000).unwrap();
    store
        .deposit(b"alice", &[b"new"], 1_000 + DAY_MS / 2)
        .unwrap();
    assert_eq!(store.expire(1_000).unwrap(), 0);
    assert_eq!(store.expire(1_000 + DAY_MS - 1).unwrap(), 0);
    assert_eq!(store.expire(1_000 + DAY_MS).unwrap(), 2);
    assert_eq!(store.expire(1_000 + DAY_MS).unwrap(), 0);
    let left = store.list(b"alice", None, 10, 100).unwrap();
    assert_eq!(
        (seqs(&left), left[0].envelope.as_slice()),
        (vec![2], &b"new"[..])
    );
    assert_eq!(
        store.stats(),
        MailboxStats {
            mailboxes: 1,
            envelopes: 1,
            bytes: 3
        }
    );
    // An expired duplicate may be deposited again, and bob's numbering goes on.
    assert_eq!(
        store.deposit(b"bob", &[b"old"], 2 * DAY_MS).unwrap(),
        [stored(2)]
    );
    assert_eq!(store.expire(10 * DAY_MS).unwrap(), 2);
    assert_eq!(store.stats(), MailboxStats::default());
}

#[test]
fn expiry_works_through_large_backlogs() {
    let dir = tempfile::tempdir().unwrap();
    let store = MailboxStore::open(
        dir.path(),
        MailboxLimits {
            max_messages_per_mailbox: 10_000,
            max_total_bytes: 1 << 30,
            max_bytes_per_mailbox: 1 << 20,
            ..limits()
        },
    )
    .unwrap();
    for batch in 0..3u32 {
        let envelopes: Vec<Vec<u8>> = (0..500u32)
            .map(|i| (batch * 1000 + i).to_be_bytes().to_vec())
            .collect();
        store
            .deposit(b"alice", &envelopes, u64::from(batch))
            .unwrap();
    }
    assert_eq!(store.expire(DAY_MS + 1).unwrap(), 1000);
    assert_eq!(store.stats().envelopes, 500);
    assert_eq!(store.list(b"alice", None, 1, 100).unwrap()[0].seq, 1001);
}

#[test]
fn reopening_keeps_everything_and_never_reuses_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.deposit(b"alice", &[b"a", b"b"], 0).unwrap();
    store.deposit(b"bob", &[b"c"], 0).unwrap();
    store.ack(b"bob", &[1]).unwrap();
    let stats = store.stats();
    drop(store);

    let store = open(&dir);
    assert_eq!(store.stats(), stats);
    assert_eq!(seqs(&store.list(b"alice", None, 10, 100).unwrap()), [1, 2]);
    assert_eq!(store.deposit(b"alice", &[b"d"], 0).unwrap(), [stored(3)]);
    // bob's mailbox emptied before the restart; its numbers still go up.
    assert_eq!(store.deposit(b"bob", &[b"e"], 0).unwrap(), [stored(2)]);
    // Empty every mailbox, restart, and deposit again: still no reuse.
    store.ack(b"alice", &[1, 2, 3]).unwrap();
    store.ack(b"bob", &[2]).unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(store.stats(), MailboxStats::default());
    let DepositOutcome::Stored { seq } = store.deposit(b"alice", &[b"f"], 0).unwrap()[0] else {
        panic!("not stored");
    };
    assert!(seq > 3, "{seq}");
}

#[test]
fn mailbox_ids_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let long = [1u8; 65];
    assert!(matches!(
        store.deposit(b"", &[b"x"], 0),
        Err(MailboxError::InvalidMailbox { len: 0 })
    ));
    assert!(matches!(
        store.deposit(&long, &[b"x"], 0),
        Err(MailboxError::InvalidMailbox { len: 65 })
    ));
    assert!(store.list(&long, None, 1, 1).is_err());
    assert!(store.ack(&long, &[1]).is_err());
    assert!(store.issue_challenge(&long, 0).is_err());
    assert!(store.deposit(&[1u8; 64], &[b"x"], 0).is_ok());
    assert!(
        store
            .deposit(b"alice", &[] as &[&[u8]], 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn challenges_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let nonce = store.issue_challenge(b"alice", 1_000).unwrap();
    assert_eq!(store.take_challenge(b"alice", &nonce, 2_000), Ok(()));
    assert_eq!(
        store.take_challenge(b"alice", &nonce, 2_000),
        Err(ChallengeError::Unknown)
    );
    let nonce = store.issue_challenge(b"alice", 1_000).unwrap();
    assert_eq!(
        store.take_challenge(b"alice", &nonce, 61_000),
        Err(ChallengeError::Expired)
    );
}

#[test]
fn open_secures_files_and_refuses_foreign_databases() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox");
    let store = MailboxStore::open(&path, limits()).unwrap();
    store.deposit(b"alice", &[b"x"], 0).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    for entry in std::fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap().path();
        if entry.is_file() {
            assert_eq!(mode(&entry), 0o600, "{}", entry.display());
        }
    }
    drop(store);

    let foreign = dir.path().join("foreign");
    {
        let db = sled::open(&foreign).unwrap();
        db.open_tree("contacts").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        MailboxStore::open(&foreign, limits()),
        Err(OpenError::Foreign { .. })
    ));
}

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<MailboxStore>();
}

#[test]
fn concurrent_deposits_keep_counters_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = MailboxStore::open(
        dir.path(),
        MailboxLimits {
            max_messages_per_mailbox: 10_000,
            max_total_bytes: 1 << 30,
            max_bytes_per_mailbox: 1 << 20,
            ..limits()
        },
    )
    .unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    // Two threads share each mailbox; every envelope is distinct.
                    store.deposit(&[t % 2], &[[t, i]], 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        store.stats(),
        MailboxStats {
            mailboxes: 2,
            envelopes: 200,
            bytes: 400
        }
    );
    let listed = store.list(&[0], None, 1000, 1 << 20).unwrap();
    assert_eq!(seqs(&listed), (1..=100).collect::<Vec<_>>());
}

/// The count is checked under the write lock: deposits racing into different
/// mailboxes fill the store exactly to its cap, never past it.
#[test]
fn concurrent_deposits_never_overshoot_the_envelope_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = MailboxStore::open(
        dir.path(),
        MailboxLimits {
            max_messages_per_mailbox: 10_000,
            max_total_bytes: 1 << 30,
            max_bytes_per_mailbox: 1 << 20,
            max_total_envelopes: 120,
            ..limits()
        },
    )
    .unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut stored = 0;
                for i in 0..50u8 {
                    match store.deposit(&[t], &[[t, i]], 0).unwrap()[0] {
                        DepositOutcome::Stored { .. } => stored += 1,
                        DepositOutcome::Refused(Refusal::StoreFull) => {}
                        other => panic!("{other:?}"),
                    }
                }
                stored
            })
        })
        .collect();
    let stored: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(stored, 120);
    assert_eq!(store.stats().envelopes, 120);
}

#[test]
fn a_second_open_is_refused_while_the_store_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    let second = MailboxStore::open(&dir.path().join("mailbox"), limits());
    assert!(
        matches!(second, Err(OpenError::Locked { .. })),
        "{second:?}"
    );
}
