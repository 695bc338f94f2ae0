//! Databases written in the relay's first layout (schema version 1: one sled tree per
//! index) open in this build with everything they held: envelopes and items in order
//! under their sequence numbers, de-duplication, counters, the sequence floor and each
//! item's time (for expiry). The version-1 files are written here byte for byte as version 1
//! wrote them (the layout documented in its `mailbox/keys.rs`). Databases of schema
//! version 2 (one tree, the de-duplication hashes on disk) open too, and lose the hashes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use kith_relay::grouplog::{AppendOutcome, Appended, GroupLogLimits, GroupLogStats, GroupLogStore};
use kith_relay::mailbox::{DepositOutcome, MailboxLimits, MailboxStats, MailboxStore, Usage};

const DAY_MS: u64 = 86_400_000;

/// `len ‖ id`, version 1's key prefix.
fn prefix(id: &[u8]) -> Vec<u8> {
    [&[id.len() as u8], id].concat()
}

/// One version-1 log: its id, its (seq, appended_at_ms, bytes) items, its next seq.
type LogV1<'a> = (&'a [u8], Vec<(u64, u64, &'a [u8])>, u64);

/// Writes a version-1 store; `trees` names the items, hashes, records and expiry trees.
fn write_v1(dir: &Path, trees: [&str; 4], logs: &[LogV1<'_>], floor: Option<u64>) {
    let db = sled::open(dir).unwrap();
    let [items, hashes, records, expiry] = trees.map(|t| db.open_tree(t).unwrap());
    for (id, held, next_seq) in logs {
        let p = prefix(id);
        let mut bytes = 0u64;
        for (seq, at, item) in held {
            items.insert([&p[..], &seq.to_be_bytes()].concat(), [&at.to_be_bytes()[..], item].concat()).unwrap();
            hashes.insert([&p[..], blake3::hash(item).as_bytes()].concat(), &seq.to_be_bytes()[..]).unwrap();
            expiry.insert([&at.to_be_bytes()[..], &p, &seq.to_be_bytes()].concat(), &[][..]).unwrap();
            bytes += item.len() as u64;
        }
        let record = [next_seq.to_be_bytes(), (held.len() as u64).to_be_bytes(), bytes.to_be_bytes()].concat();
        records.insert(&p, record).unwrap();
    }
    let meta = db.open_tree("meta").unwrap();
    meta.insert("schema_version", &1u32.to_be_bytes()).unwrap();
    if let Some(floor) = floor {
        meta.insert("seq_floor", &floor.to_be_bytes()).unwrap();
    }
    db.flush().unwrap();
}

fn mailbox_limits() -> MailboxLimits {
    MailboxLimits {
        ttl: Duration::from_millis(DAY_MS),
        ..MailboxLimits::default()
    }
}

#[test]
fn a_version_1_mailbox_store_opens_with_everything_it_held() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(
        dir.path(),
        ["envelopes", "hashes", "mailboxes", "expiry"],
        &[
            (b"alice", vec![(12, 1_000, b"first"), (13, 2_000, b"second")], 14),
            (b"bob", vec![(40, 3_000, b"hello")], 41),
        ],
        Some(50),
    );
    let store = MailboxStore::open(dir.path(), mailbox_limits()).unwrap();
    assert_eq!(store.stats(), MailboxStats { mailboxes: 2, envelopes: 3, bytes: 16 });
    assert_eq!(store.usage(b"alice").unwrap(), Usage { envelopes: 2, bytes: 11 });
    let held = store.list(b"alice", None, 10, 1 << 20).unwrap();
    assert_eq!(
        held.iter().map(|e| (e.seq, e.envelope.as_slice(), e.deposited_at_ms)).collect::<Vec<_>>(),
        [(12, &b"first"[..], 1_000), (13, &b"second"[..], 2_000)]
    );
    // A retried deposit is still recognised; new envelopes number on.
    assert_eq!(
        store.deposit(b"alice", &[&b"second"[..], b"third"], 4_000).unwrap(),
        [DepositOutcome::Duplicate { seq: 13 }, DepositOutcome::Stored { seq: 14 }]
    );
    // A new mailbox starts at the floor version 1 recorded.
    assert_eq!(store.deposit(b"carol", &[b"x"], 4_000).unwrap(), [DepositOutcome::Stored { seq: 50 }]);
    // Each envelope's deposit time came along: the two oldest go after a day.
    assert_eq!(store.expire(2_000 + DAY_MS).unwrap(), 2);
    assert_eq!(store.ack(b"bob", &[40]).unwrap(), 1);
    assert_eq!(store.stats(), MailboxStats { mailboxes: 2, envelopes: 2, bytes: 6 });
    drop(store);

    // Migrated once: the old trees are gone, and a reopen finds the same.
    // sled lets go of its lock a moment after the store is dropped: wait for it.
    let db = kith_p2p::kith_storage::engine::open_sled(dir.path(), 16 << 20, Duration::from_secs(10)).unwrap();
    let names: Vec<String> = db.tree_names().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    for old in ["envelopes", "hashes", "mailboxes", "expiry"] {
        assert!(!names.iter().any(|n| n == old), "{old} left behind: {names:?}");
    }
    drop(db);
    let store = MailboxStore::open(dir.path(), mailbox_limits()).unwrap();
    assert_eq!(store.stats(), MailboxStats { mailboxes: 2, envelopes: 2, bytes: 6 });
    // bob's mailbox emptied and went; it starts again at the floor, above its old numbers.
    assert_eq!(store.deposit(b"bob", &[b"again"], 5_000).unwrap(), [DepositOutcome::Stored { seq: 50 }]);
}

#[test]
fn a_version_1_group_log_store_opens_with_everything_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let log = [7u8; 32];
    let emptied = [9u8; 32];
    write_v1(
        dir.path(),
        ["items", "hashes", "logs", "expiry"],
        &[(&log, vec![(1, 1_000, b"one"), (2, 1_000, b"two")], 3), (&emptied, vec![], 8)],
        None,
    );
    let store = GroupLogStore::open(dir.path(), GroupLogLimits::default()).unwrap();
    assert_eq!(store.stats(), GroupLogStats { logs: 1, items: 2, bytes: 6 });
    let held = store.fetch(&log, 0, 10, 1 << 20).unwrap();
    assert_eq!(held.iter().map(|i| (i.seq, i.bytes.as_slice())).collect::<Vec<_>>(), [(1, &b"one"[..]), (2, &b"two"[..])]);
    assert_eq!(
        store.append(&log, &[&b"two"[..], b"three"], 2_000).unwrap(),
        AppendOutcome::Appended(vec![Appended::Duplicate { seq: 2 }, Appended::Stored { seq: 3 }])
    );
    // A log emptied under version 1 kept its record, so its numbering goes on.
    assert_eq!(
        store.append(&emptied, &[b"later"], 2_000).unwrap(),
        AppendOutcome::Appended(vec![Appended::Stored { seq: 8 }])
    );
}

/// Writes a version-2 mailbox store: one tree `mail` of items, hashes and records.
fn write_v2(dir: &Path, mailbox: &[u8], held: &[(u64, u64, &[u8])], next_seq: u64) {
    let db = sled::open(dir).unwrap();
    let tree = db.open_tree("mail").unwrap();
    let p = prefix(mailbox);
    let mut bytes = 0u64;
    for (seq, at, item) in held {
        tree.insert([&b"i"[..], &p, &seq.to_be_bytes()].concat(), [&at.to_be_bytes()[..], item].concat()).unwrap();
        tree.insert([&b"h"[..], &p, blake3::hash(item).as_bytes()].concat(), &seq.to_be_bytes()[..]).unwrap();
        bytes += item.len() as u64;
    }
    let record = [next_seq.to_be_bytes(), (held.len() as u64).to_be_bytes(), bytes.to_be_bytes()].concat();
    tree.insert([&b"r"[..], &p].concat(), record).unwrap();
    db.open_tree("meta").unwrap().insert("schema_version", &2u32.to_be_bytes()).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_version_2_store_opens_without_its_disk_hashes_and_still_knows_its_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    write_v2(dir.path(), b"alice", &[(5, 1_000, b"first"), (6, 2_000, b"second")], 7);
    let store = MailboxStore::open(dir.path(), mailbox_limits()).unwrap();
    assert_eq!(store.stats(), MailboxStats { mailboxes: 1, envelopes: 2, bytes: 11 });
    assert_eq!(
        store.deposit(b"alice", &[&b"first"[..], b"third"], 3_000).unwrap(),
        [DepositOutcome::Duplicate { seq: 5 }, DepositOutcome::Stored { seq: 7 }]
    );
    drop(store);

    let db = kith_p2p::kith_storage::engine::open_sled(dir.path(), 16 << 20, Duration::from_secs(10)).unwrap();
    assert_eq!(db.open_tree("mail").unwrap().scan_prefix(b"h").count(), 0, "the disk hashes are gone");
    let version = db.open_tree("meta").unwrap().get("schema_version").unwrap().unwrap();
    assert_eq!(version.as_ref(), 3u32.to_be_bytes());
    drop(db);
    // Across a reopen the held envelopes are still recognised, from memory.
    let store = MailboxStore::open(dir.path(), mailbox_limits()).unwrap();
    assert_eq!(
        store.deposit(b"alice", &[&b"second"[..], b"third"], 4_000).unwrap(),
        [DepositOutcome::Duplicate { seq: 6 }, DepositOutcome::Duplicate { seq: 7 }]
    );
}

/// Opening a version-2 store stamps version 3 before it removes the disk hashes, so
/// a crash in between leaves a version-3 store still holding some of them (never a
/// version-2 store without them). Such a store opens: the rest go, and nothing
/// held is lost or forgotten as a duplicate.
#[test]
fn a_version_3_store_left_holding_disk_hashes_by_a_crash_opens_and_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    write_v2(dir.path(), b"alice", &[(5, 1_000, b"first"), (6, 2_000, b"second")], 7);
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta").unwrap().insert("schema_version", &3u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = MailboxStore::open(dir.path(), mailbox_limits()).unwrap();
    assert_eq!(store.stats(), MailboxStats { mailboxes: 1, envelopes: 2, bytes: 11 });
    assert_eq!(
        store.deposit(b"alice", &[&b"second"[..], b"third"], 3_000).unwrap(),
        [DepositOutcome::Duplicate { seq: 6 }, DepositOutcome::Stored { seq: 7 }]
    );
    drop(store);
    let db = kith_p2p::kith_storage::engine::open_sled(dir.path(), 16 << 20, Duration::from_secs(10)).unwrap();
    assert_eq!(db.open_tree("mail").unwrap().scan_prefix(b"h").count(), 0, "the disk hashes are gone");
}
