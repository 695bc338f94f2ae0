//! Files between two real nodes on 127.0.0.1: one seals a file into its blob store,
//! the other fetches it over `/kith/blob/1` and saves it, byte for byte. (The file
//! messages that will carry ids and keys between users are not built yet.)

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kith_p2p::blob::{BlobId, CHUNK_SIZE};
use kith_p2p::kith_storage::Store;
use kith_p2p::node::{self, NodeError, Timers};

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(30);

/// A node on 127.0.0.1 with its store and blob store in `dir` (files off without).
async fn start(dir: &std::path::Path, files: bool) -> node::Started {
    let config = common::loopback_config(Timers::default(), files.then(|| dir.join("blobs")));
    node::start(config, Store::open(&dir.join("db")).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_is_fetched_and_saved_byte_for_byte() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = start(a_dir.path(), true).await;
    let bob = start(b_dir.path(), true).await;
    let addr = alice.listen_addrs[0].clone().with(libp2p::multiaddr::Protocol::P2p(alice.handle.peer_id()));
    bob.handle.dial(addr).await.unwrap();

    let original = a_dir.path().join("holiday.jpg");
    let bytes: Vec<u8> = (0..3 * CHUNK_SIZE + 999).map(|i| (i * 13 % 256) as u8).collect();
    std::fs::write(&original, &bytes).unwrap();
    let shared = alice.handle.share_file(&original).await.unwrap();
    assert_eq!(shared.size, bytes.len() as u64);

    let mut last = (0, 0);
    tokio::time::timeout(DEADLINE, bob.handle.fetch_blob(alice.handle.peer_id(), shared.id, |held, total| last = (held, total)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, (4, 4));
    let saved = b_dir.path().join("saved.jpg");
    bob.handle.save_blob(shared.id, shared.key.clone(), &saved).await.unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), bytes);
    // Only sealed chunks crossed: Alice's store holds no plaintext.
    for entry in std::fs::read_dir(a_dir.path().join("blobs")).unwrap() {
        let held = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!held.windows(64).any(|w| w == &bytes[1000..1064]));
    }

    // Asking for a blob Alice does not hold is a typed refusal, and saves nothing.
    let missing = bob.handle.fetch_blob(alice.handle.peer_id(), BlobId([1; 32]), |_, _| {}).await;
    assert!(matches!(missing, Err(NodeError::Fetch(_))), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_blob_store_says_files_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), false).await;
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(node.handle.share_file(&file).await, Err(NodeError::FilesOff)));
}
