//! Opening databases: creation, persistence, and refusal of bad ones.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use std::time::Duration;

use common::{cid, conversation, incoming, mid, open, raw_sled};
use kith_storage::{Contact, ContactState, OpenError, OpenOptions, SCHEMA_VERSION, Store};

fn contact(n: u8) -> Contact {
    Contact {
        peer_id: common::peer(n),
        alias: Some("Ann".into()),
        display_name: None,
        state: ContactState::Accepted,
        e2e_public: Some([9; 32]),
        binding: Some(vec![1; 64]),
        addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
        relays: vec![],
        added_at_ms: 1,
        updated_at_ms: 2,
        last_seen_ms: None,
        verified_at_ms: None,
        key_changed_at_ms: None,
    }
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = open(&path).unwrap();
        conversation(&store, 1);
        store.contacts().put(&contact(1)).unwrap();
        store
            .insert_incoming_batch(&[incoming(cid(1), mid(1), 1), incoming(cid(1), mid(2), 2)])
            .unwrap();
        store.invites().create([3; 16], 100).unwrap();
        store.settings().set("theme", "dark").unwrap();
        store.flush().unwrap();
        let clone = store.clone();
        drop(store);
        drop(clone);
    }
    let store = open(&path).unwrap();
    assert_eq!(store.contacts().get(&common::peer(1)).unwrap(), Some(contact(1)));
    assert_eq!(store.messages().count(cid(1)).unwrap(), 2);
    assert_eq!(
        store.messages().get(mid(2)).unwrap(),
        Some(incoming(cid(1), mid(2), 2))
    );
    assert_eq!(
        store.conversations().get(cid(1)).unwrap().unwrap().unread,
        2
    );
    assert_eq!(
        store.invites().list_active(0).unwrap(),
        vec![([3; 16], 100)]
    );
    assert_eq!(
        store.settings().get::<String>("theme").unwrap().as_deref(),
        Some("dark")
    );
}

#[test]
fn second_open_is_locked() {
    let (dir, _store) = common::temp_store();
    let options = OpenOptions::default().with_lock_wait(Duration::from_millis(50));
    let err = Store::open_with(&dir.path().join("db"), &options).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
}

/// Creates a kith database, then overwrites its schema version with a raw
/// value, as an older or newer kith would have written it.
fn write_version(path: &Path, version: &[u8]) {
    if !path.exists() {
        drop(open(path).unwrap());
    }
    let db = raw_sled(path);
    db.open_tree("meta")
        .unwrap()
        .insert("schema_version", version)
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn future_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    write_version(&path, &(SCHEMA_VERSION + 1).to_be_bytes());
    match open(&path) {
        Err(OpenError::UnsupportedVersion { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn unknown_old_version_and_bad_version_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Version 0 never existed, so no migration step leads from it.
    write_version(&path, &0u32.to_be_bytes());
    assert!(matches!(open(&path), Err(OpenError::Corrupt { .. })));
    write_version(&path, b"\x01");
    assert!(matches!(open(&path), Err(OpenError::Corrupt { .. })));
}

#[test]
fn current_version_reopens_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(open(&path).unwrap());
    drop(open(&path).unwrap());
    assert_eq!(common::schema_version(&raw_sled(&path)), SCHEMA_VERSION);
}

#[test]
fn foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Unrelated trees.
    let path = dir.path().join("trees");
    {
        let db = raw_sled(&path);
        db.open_tree("users").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(open(&path), Err(OpenError::Foreign { .. })));
    // Data in sled's default tree only.
    let path = dir.path().join("default");
    {
        let db = raw_sled(&path);
        db.insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(open(&path), Err(OpenError::Foreign { .. })));
    // A kith database whose version key was deleted.
    let path = dir.path().join("unversioned");
    {
        let store = open(&path).unwrap();
        conversation(&store, 1);
        store.flush().unwrap();
    }
    {
        let db = raw_sled(&path);
        db.open_tree("meta")
            .unwrap()
            .remove("schema_version")
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(open(&path), Err(OpenError::Foreign { .. })));
}

#[test]
fn garbage_files_are_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Garbage in sled's config file, alone and with its log. (Garbage in the
    // log alone reads as an empty database to sled 0.34, which is then
    // indistinguishable from a new one.)
    for files in [&["conf"][..], &["conf", "db"]] {
        let path = dir.path().join(files.join("-"));
        {
            let store = open(&path).unwrap();
            conversation(&store, 1);
            store.flush().unwrap();
        }
        for f in files {
            fs::write(path.join(f), &garbage).unwrap();
        }
        let result = open(&path);
        assert!(
            matches!(result, Err(OpenError::Corrupt { .. })),
            "{files:?}: {result:?}"
        );
    }
}

#[test]
fn path_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    fs::write(&path, b"not a directory").unwrap();
    let result = open(&path);
    assert!(matches!(result, Err(OpenError::Io(_))), "{result:?}");
}

#[test]
fn corrupt_values_are_typed_errors() {
    use kith_storage::StoreError;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = open(&path).unwrap();
        conversation(&store, 1);
        store
            .insert_incoming_batch(&[incoming(cid(1), mid(1), 1)])
            .unwrap();
    }
    {
        let db = raw_sled(&path);
        let garbage = &b"\xff\x00garbage"[..];
        db.open_tree("conversations")
            .unwrap()
            .insert(cid(1).0, garbage)
            .unwrap();
        db.open_tree("contacts")
            .unwrap()
            .insert(common::peer(1).to_base58(), garbage)
            .unwrap();
        db.flush().unwrap();
    }
    let store = open(&path).unwrap();
    let corrupt = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Corrupt { .. }));
    assert!(corrupt(store.conversations().get(cid(1)).map(drop)));
    assert!(corrupt(store.conversations().list().map(drop)));
    assert!(corrupt(store.contacts().get(&common::peer(1)).map(drop)));
    assert!(corrupt(store.contacts().list().map(drop)));
    assert!(corrupt(store.contacts().set_state(&common::peer(1), kith_storage::ContactState::Blocked).map(drop)));
    assert_eq!(store.contacts().get(&common::peer(2)).unwrap(), None, "other contacts read as before");
    // Messages live in the message log (its damaged records are tested beside
    // it, in msglog's unit tests): a damaged conversation record does not stop them.
    // Intact entries are still readable.
    assert_eq!(
        store.messages().get(mid(1)).unwrap(),
        Some(incoming(cid(1), mid(1), 1))
    );
    store.messages().insert(&incoming(cid(1), mid(3), 3)).unwrap();
    assert_eq!(store.mark_read(cid(1)).unwrap().len(), 2);
}
