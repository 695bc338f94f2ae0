//! The media role end to end: real `kith-relay` processes with `[media]` and real kith
//! nodes on 127.0.0.1. A node shares a file and uploads it; the relay pulls and checks
//! every chunk, holds it durably and serves it to another node, which decrypts it
//! with the key (which the relay never sees). Quotas, size and policy refusals are
//! typed errors; the TTL deletes; a relay without the role does not offer it; a
//! `kill -9` after `held` keeps the blob.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{DEADLINE, RelayProcess, files_under, loopback_config, metric, wait_metric};
use kith_p2p::blob::media::UploadError;
use kith_p2p::blob::{BlobId, CHUNK_SIZE, TAG_SIZE};
use kith_p2p::identity::Identity;
use kith_p2p::kith_storage::Store;
use kith_p2p::node::{self, NodeConfig, NodeError, SharedFile, Timers};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Plaintext the relay's disk must never show.
const MARKER: &[u8] = b"KITH-MEDIA-PLAINTEXT-MARKER ";

/// A kith node on 127.0.0.1 with its blob store in `dir`.
async fn start_node(dir: &Path) -> node::Started {
    let config = NodeConfig {
        identity: Identity::generate(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: Vec::new(),
        relays: Vec::new(),
        mdns: false,
        display_name: None,
        read_receipts: true,
        presence: true,
        timers: Timers::default(),
        files: Some(kith_p2p::node::FilesConfig {
            blob_dir: dir.join("blobs"),
            download_dir: dir.join("files"),
            // Nothing downloads by itself: each test fetches what it means to.
            auto_download_max: 0,
        }),
        key_ring: None,
    };
    node::start(config, Store::open(&dir.join("db")).unwrap())
        .await
        .unwrap()
}

/// The relay's address with its peer id, for a node to dial.
fn relay_addr(relay: &RelayProcess) -> Multiaddr {
    relay.addr().with(Protocol::P2p(relay.peer_id))
}

/// A node in `dir`, connected to `relay`.
async fn connected_node(dir: &Path, relay: &RelayProcess) -> node::Started {
    let node = start_node(dir).await;
    node.handle.dial(relay_addr(relay)).await.unwrap();
    node
}

/// A file of `len` bytes that is the marker over and over, shared by `node`.
async fn share(node: &node::Started, dir: &Path, name: &str, len: usize) -> (SharedFile, Vec<u8>) {
    let bytes: Vec<u8> = MARKER.iter().copied().cycle().take(len).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (node.handle.share_file(&path).await.unwrap(), bytes)
}

/// What a blob of a `len`-byte file takes on a media node.
fn sealed_size(len: usize) -> u64 {
    kith_p2p::blob::sealed_size_of(len as u64)
}

async fn upload(node: &node::Started, relay: &RelayProcess, id: BlobId) -> Result<(), NodeError> {
    tokio::time::timeout(DEADLINE, node.handle.upload_blob(relay.peer_id, id))
        .await
        .expect("upload answered in time")
}

/// The upload's refusal, as the user would be shown it.
async fn refusal(node: &node::Started, relay: &RelayProcess, id: BlobId) -> UploadError {
    match upload(node, relay, id).await {
        Err(NodeError::Upload(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Fetches `id` from the relay into `node` and decrypts it with `shared`'s key.
async fn fetch_and_open(
    node: &node::Started,
    relay: &RelayProcess,
    dir: &Path,
    shared: &SharedFile,
) -> Vec<u8> {
    tokio::time::timeout(
        DEADLINE,
        node.handle.fetch_blob(relay.peer_id, shared.id, |_, _| {}),
    )
    .await
    .unwrap()
    .unwrap();
    let out = dir.join("saved");
    node.handle
        .save_blob(shared.id, shared.key.clone(), &out)
        .await
        .unwrap();
    std::fs::read(out).unwrap()
}

async fn stop(node: node::Started) {
    node.handle.shutdown().await;
    tokio::time::timeout(DEADLINE, node.stopped)
        .await
        .unwrap()
        .unwrap();
}

/// A relay config with `[media]` on and `media` extra keys in that table.
fn media_config(data_dir: &Path, media: &str) -> String {
    loopback_config(data_dir, &format!("[media]\nenabled = true\n{media}\n"))
}

/// The blob files under the relay's media directory.
fn blob_files(data_dir: &Path) -> Vec<PathBuf> {
    files_under(&data_dir.join("media/blobs"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_file_is_fetched_from_the_relay_after_the_sender_left() {
    let (relay_dir, a_dir, b_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let data = relay_dir.path().join("data");
    let relay = RelayProcess::start(relay_dir.path(), &media_config(&data, ""));

    let alice = connected_node(a_dir.path(), &relay).await;
    let len = 5 * CHUNK_SIZE / 2 + 1234;
    let (shared, bytes) = share(&alice, a_dir.path(), "notes.txt", len).await;
    upload(&alice, &relay, shared.id).await.unwrap();
    // Held means held: the uploader may go at once.
    stop(alice).await;

    let bob = connected_node(b_dir.path(), &relay).await;
    assert_eq!(
        fetch_and_open(&bob, &relay, b_dir.path(), &shared).await,
        bytes,
        "the same bytes"
    );

    // The relay holds sealed chunks only: no file under its data directory shows
    // the plaintext.
    let files = files_under(&data);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "data")),
        "{files:?}"
    );
    for file in &files {
        let held = std::fs::read(file).unwrap();
        assert!(
            !held.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {}",
            file.display()
        );
    }

    // Bob now holds the blob too; uploading it again is answered at once, charged to
    // nobody new.
    upload(&bob, &relay, shared.id).await.unwrap();
    let size = sealed_size(len);
    let text = wait_metric(&relay, "kith_relay_media_upload_duplicates_total", 1.0).await;
    assert_eq!(metric(&text, "kith_relay_media_blobs"), Some(1.0));
    assert_eq!(metric(&text, "kith_relay_media_bytes"), Some(size as f64));
    assert_eq!(metric(&text, "kith_relay_media_uploads_total"), Some(1.0));
    assert_eq!(
        metric(&text, "kith_relay_media_uploaded_bytes_total"),
        Some(size as f64)
    );
    assert_eq!(
        metric(&text, "kith_relay_media_served_bytes_total"),
        Some(size as f64)
    );
    assert_eq!(
        metric(
            &text,
            "kith_relay_media_refusals_total{reason=\"quota_bytes\"}"
        ),
        Some(0.0)
    );

    // A relay with the mailbox role too serves both.
    let owner = Identity::generate();
    let mut peer = common::TestPeer::new(owner.libp2p_keypair());
    peer.deposit_and_drain(&owner, relay.peer_id, &relay.addr(), b"sealed mail")
        .await;
    stop(bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_the_size_limit_are_typed_refusals_before_anything_is_pulled() {
    let (relay_dir, a_dir, b_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let data = relay_dir.path().join("data");
    let limits =
        "max_blob_bytes = 1100000\nmax_bytes_per_uploader = 2000000\nmax_total_bytes = 3000000";
    let relay = RelayProcess::start(relay_dir.path(), &media_config(&data, limits));
    let alice = connected_node(a_dir.path(), &relay).await;
    let bob = connected_node(b_dir.path(), &relay).await;
    let size = sealed_size(900_000);

    let (large, _) = share(&alice, a_dir.path(), "large", 1_200_000).await;
    match refusal(&alice, &relay, large.id).await {
        UploadError::TooLarge { size, max } => {
            assert_eq!((size, max), (sealed_size(1_200_000), 1_100_000))
        }
        other => panic!("{other:?}"),
    }

    for name in ["a1", "a2"] {
        let (file, _) = share(&alice, a_dir.path(), name, 900_000).await;
        upload(&alice, &relay, file.id).await.unwrap();
    }
    let (third, _) = share(&alice, a_dir.path(), "a3", 900_000).await;
    match refusal(&alice, &relay, third.id).await {
        UploadError::QuotaExceeded { limit, used } => {
            assert_eq!((limit, used), (2_000_000, 2 * size))
        }
        other => panic!("{other:?}"),
    }

    // Bob's own quota is untouched, until the relay as a whole is full.
    let (b1, _) = share(&bob, b_dir.path(), "b1", 900_000).await;
    upload(&bob, &relay, b1.id).await.unwrap();
    let (b2, _) = share(&bob, b_dir.path(), "b2", 900_000).await;
    assert!(matches!(
        refusal(&bob, &relay, b2.id).await,
        UploadError::StoreFull
    ));

    let text = wait_metric(
        &relay,
        "kith_relay_media_refusals_total{reason=\"store_full\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            "kith_relay_media_refusals_total{reason=\"too_large\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "kith_relay_media_refusals_total{reason=\"quota_bytes\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&text, "kith_relay_media_uploads_total"), Some(3.0));
    assert_eq!(
        metric(&text, "kith_relay_media_bytes"),
        Some((3 * size) as f64)
    );
    // Refused uploads were never pulled: three blobs' files, no more.
    let data_files = blob_files(&data)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "data"))
        .count();
    assert_eq!(data_files, 3);
    stop(alice).await;
    stop(bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_deleted_when_its_lifetime_ends() {
    let (relay_dir, a_dir, b_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let data = relay_dir.path().join("data");
    let relay = RelayProcess::start(
        relay_dir.path(),
        &media_config(&data, "ttl_secs = 2\nexpire_interval_secs = 1"),
    );
    let alice = connected_node(a_dir.path(), &relay).await;
    let (shared, _) = share(&alice, a_dir.path(), "brief", 100_000).await;
    upload(&alice, &relay, shared.id).await.unwrap();
    wait_metric(&relay, "kith_relay_media_blobs", 1.0).await;

    let text = wait_metric(&relay, "kith_relay_media_expired_total", 1.0).await;
    assert_eq!(metric(&text, "kith_relay_media_blobs"), Some(0.0));
    assert_eq!(metric(&text, "kith_relay_media_bytes"), Some(0.0));
    assert!(blob_files(&data).is_empty(), "{:?}", blob_files(&data));
    assert!(files_under(&data.join("media/held")).is_empty());
    let bob = connected_node(b_dir.path(), &relay).await;
    let gone = bob
        .handle
        .fetch_blob(relay.peer_id, shared.id, |_, _| {})
        .await;
    assert!(matches!(gone, Err(NodeError::Fetch(_))), "{gone:?}");
    stop(alice).await;
    stop(bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_role_or_outside_the_policy_uploads_are_refused() {
    let (relay_dir, a_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The default config: media off. Neither protocol is offered.
    let off = RelayProcess::start(
        relay_dir.path(),
        &loopback_config(&relay_dir.path().join("off"), ""),
    );
    let alice = connected_node(a_dir.path(), &off).await;
    let (shared, _) = share(&alice, a_dir.path(), "f", 1000).await;
    let refused = refusal(&alice, &off, shared.id).await;
    assert!(matches!(refused, UploadError::NotOffered), "{refused:?}");
    let fetched = alice
        .handle
        .fetch_blob(off.peer_id, BlobId([3; 32]), |_, _| {})
        .await;
    assert!(matches!(fetched, Err(NodeError::Fetch(_))), "{fetched:?}");
    assert!(
        !off.metrics().await.contains("kith_relay_media"),
        "no media families"
    );

    // Media on, members only, Alice not among them.
    let member = Identity::generate().peer_id();
    let members_dir = tempfile::tempdir().unwrap();
    let config = loopback_config(
        &members_dir.path().join("data"),
        &format!(
            "[media]\nenabled = true\n\n[access]\npolicy = \"members\"\nmembers = [\"{member}\"]\n"
        ),
    );
    let members_only = RelayProcess::start(members_dir.path(), &config);
    alice.handle.dial(relay_addr(&members_only)).await.unwrap();
    assert!(matches!(
        refusal(&alice, &members_only, shared.id).await,
        UploadError::NotAllowed
    ));
    wait_metric(
        &members_only,
        "kith_relay_media_refusals_total{reason=\"not_member\"}",
        1.0,
    )
    .await;
    assert!(blob_files(&members_dir.path().join("data")).is_empty());
    stop(alice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_answered_held_survives_a_kill_9_of_the_relay() {
    let (relay_dir, a_dir, b_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let data = relay_dir.path().join("data");
    let config = media_config(&data, "");
    let relay = RelayProcess::start(relay_dir.path(), &config);
    let alice = connected_node(a_dir.path(), &relay).await;
    let (shared, bytes) = share(&alice, a_dir.path(), "kept", 3 * CHUNK_SIZE).await;
    upload(&alice, &relay, shared.id).await.unwrap();
    stop(alice).await;
    relay.kill();

    let relay = RelayProcess::start(relay_dir.path(), &config);
    let text = relay.metrics().await;
    assert_eq!(metric(&text, "kith_relay_media_blobs"), Some(1.0));
    assert_eq!(
        metric(&text, "kith_relay_media_bytes"),
        Some(sealed_size(3 * CHUNK_SIZE) as f64)
    );
    let bob = connected_node(b_dir.path(), &relay).await;
    assert_eq!(
        fetch_and_open(&bob, &relay, b_dir.path(), &shared).await,
        bytes
    );
    stop(bob).await;
}

/// A bare libp2p peer speaking raw streams, connected to `relay`; its swarm runs in
/// the returned task.
async fn raw_peer(relay: &RelayProcess) -> (libp2p_stream::Control, tokio::task::JoinHandle<()>) {
    use futures::StreamExt as _;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(DEADLINE))
        .build();
    let control = swarm.behaviour().new_control();
    swarm
        .dial(
            libp2p::swarm::dial_opts::DialOpts::peer_id(relay.peer_id)
                .addresses(vec![relay.addr()])
                .build(),
        )
        .unwrap();
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (control, task)
}

/// Sends raw `request` bytes on a new `/kith/media/1` stream and reads the answer.
async fn ask(
    control: &libp2p_stream::Control,
    relay: &RelayProcess,
    request: &[u8],
) -> Option<kith_p2p::blob::media::Answer> {
    use futures::io::AsyncWriteExt as _;
    let asking = async {
        let mut stream = kith_p2p::streams::open(control, relay.peer_id, kith_p2p::blob::media::PROTOCOL)
            .await
            .unwrap();
        stream.write_all(request).await.unwrap();
        stream.flush().await.unwrap();
        kith_p2p::blob::media::Answer::read(&mut stream)
            .await
            .unwrap()
    };
    tokio::time::timeout(DEADLINE, asking).await.unwrap()
}

/// Serves `/kith/blob/1` like a node, but with one bit of every chunk flipped.
async fn serve_tampered(
    mut incoming: libp2p_stream::IncomingStreams,
    outboard: kith_p2p::blob::Outboard,
    sealed: Vec<u8>,
) {
    use futures::StreamExt as _;
    use futures::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Each stream on its own task, as a node serves them: a fetcher has several
    // requests in flight and may abandon some once a chunk fails its hash.
    while let Some((_, mut stream)) = incoming.next().await {
        let (outboard, sealed) = (outboard.clone(), sealed.clone());
        tokio::spawn(async move {
            let mut head = [0u8; 34];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let mut out = vec![0u8];
            if head[1] == 1 {
                out.extend_from_slice(&outboard.len().to_be_bytes());
                outboard
                    .hashes()
                    .iter()
                    .for_each(|h| out.extend_from_slice(h));
            } else {
                let mut count = [0u8; 2];
                let _ = stream.read_exact(&mut count).await;
                let mut indexes = vec![0u8; usize::from(u16::from_be_bytes(count)) * 8];
                let _ = stream.read_exact(&mut indexes).await;
                out.clear();
                for index in indexes.chunks_exact(8) {
                    let index = u64::from_be_bytes(index.try_into().unwrap()) as usize;
                    let start = index * (CHUNK_SIZE + TAG_SIZE);
                    let end = (start + CHUNK_SIZE + TAG_SIZE).min(sealed.len());
                    let mut chunk = sealed[start..end].to_vec();
                    chunk[0] ^= 1;
                    out.push(0);
                    out.extend_from_slice(&chunk);
                }
            }
            let _ = stream.write_all(&out).await;
            let _ = stream.close().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uploaders_are_answered_and_nothing_they_send_is_kept() {
    use kith_p2p::blob::media::{Answer, Request};
    let relay_dir = tempfile::tempdir().unwrap();
    let data = relay_dir.path().join("data");
    let relay = RelayProcess::start(relay_dir.path(), &media_config(&data, ""));
    let (mut control, task) = raw_peer(&relay).await;
    let plain = vec![5u8; CHUNK_SIZE + 100];
    let mut sealed = Vec::new();
    let outboard = kith_p2p::blob::seal(
        &kith_p2p::blob::BlobKey::generate(),
        plain.len() as u64,
        &mut plain.as_slice(),
        &mut sealed,
    )
    .unwrap();
    let incoming = control.accept(kith_p2p::blob::transfer::PROTOCOL).unwrap();
    tokio::spawn(serve_tampered(incoming, outboard.clone(), sealed));

    // A version from the future is told apart from garbage.
    assert_eq!(
        ask(&control, &relay, &[9; 42]).await,
        Some(Answer::UnsupportedVersion)
    );
    let mut odd_kind = Request::Hold {
        id: outboard.id(),
        sealed_size: 1,
    }
    .encode();
    odd_kind[1] = 7;
    assert_eq!(
        ask(&control, &relay, &odd_kind).await,
        Some(Answer::BadRequest)
    );
    // A declared size that is not the blob's: refused once the outboard shows it.
    let lying = Request::Hold {
        id: outboard.id(),
        sealed_size: outboard.sealed_size() - 1,
    };
    assert_eq!(
        ask(&control, &relay, &lying.encode()).await,
        Some(Answer::BadRequest)
    );
    // Chunks that do not match their hashes: the pull fails, nothing is kept.
    let honest_size = Request::Hold {
        id: outboard.id(),
        sealed_size: outboard.sealed_size(),
    };
    assert_eq!(
        ask(&control, &relay, &honest_size.encode()).await,
        Some(Answer::FetchFailed)
    );
    relay.wait_log("does not match its hash");

    let text = wait_metric(
        &relay,
        "kith_relay_media_refusals_total{reason=\"fetch_failed\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            "kith_relay_media_refusals_total{reason=\"bad_request\"}"
        ),
        Some(3.0)
    );
    assert_eq!(metric(&text, "kith_relay_media_blobs"), Some(0.0));
    assert!(blob_files(&data).is_empty(), "{:?}", blob_files(&data));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_upload_streams_open_cannot_take_the_slots() {
    use futures::io::AsyncReadExt as _;
    use kith_p2p::blob::media::{Answer, PROTOCOL};
    let relay_dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(
        relay_dir.path(),
        &media_config(&relay_dir.path().join("data"), ""),
    );
    let (greedy, greedy_task) = raw_peer(&relay).await;
    // Five streams that never send their request: one past the peer's share of four.
    // Which of them the relay drops depends on the order it accepts them in (their
    // negotiations run side by side), so the check is that one of the five closes at
    // once, well before the 5 s a peer has to send its request.
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = kith_p2p::streams::open(&greedy, relay.peer_id, PROTOCOL).await.unwrap();
        futures::io::AsyncWriteExt::flush(&mut stream).await.unwrap();
        streams.push(stream);
    }
    let reads = streams.iter_mut().map(|stream| {
        Box::pin(async move {
            let mut byte = [0u8; 1];
            stream.read(&mut byte).await
        })
    });
    let first = tokio::time::timeout(Duration::from_secs(3), futures::future::select_all(reads)).await;
    assert!(
        matches!(first, Ok((Ok(0) | Err(_), _, _))),
        "one of the five streams is closed at once: {:?}",
        first.map(|(read, index, _)| (read, index))
    );
    // Another peer is answered meanwhile.
    let (other, other_task) = raw_peer(&relay).await;
    assert_eq!(
        ask(&other, &relay, &[9; 42]).await,
        Some(Answer::UnsupportedVersion)
    );
    drop(streams);
    greedy_task.abort();
    other_task.abort();
}

/// An upload cut short keeps what was pulled: when the uploader tries again (here it
/// held only the first half of the blob the first time), the media node asks only
/// for the chunks still missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_short_resumes_with_only_the_missing_chunks() {
    use kith_p2p::blob::media::{Answer, Request};
    use kith_p2p::blob::{BlobKey, BlobStore, seal};
    use std::sync::atomic::{AtomicU64, Ordering};
    let relay_dir = tempfile::tempdir().unwrap();
    let data = relay_dir.path().join("data");
    let relay = RelayProcess::start(relay_dir.path(), &media_config(&data, ""));
    let (mut control, _task) = raw_peer(&relay).await;

    // The uploader holds the outboard and the first half of the chunks.
    let plain: Vec<u8> = (0..8 * CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
    let mut sealed = Vec::new();
    let outboard = seal(&BlobKey::generate(), plain.len() as u64, &mut plain.as_slice(), &mut sealed).unwrap();
    let chunks: Vec<&[u8]> = sealed.chunks(CHUNK_SIZE + TAG_SIZE).collect();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(store_dir.path()).unwrap());
    store.add(&outboard).unwrap();
    let id = outboard.id();
    for (index, chunk) in chunks.iter().enumerate().take(4) {
        store.put(&id, index as u64, chunk).unwrap();
    }
    store.sync(&id).unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let counting = served.clone();
    let incoming = control.accept(kith_p2p::blob::transfer::PROTOCOL).unwrap();
    tokio::spawn(kith_p2p::blob::transfer::serve_counted(
        store.clone(),
        incoming,
        Arc::new(move |_, _, bytes| {
            counting.fetch_add(bytes, Ordering::Relaxed);
        }),
    ));
    let request = Request::Hold { id, sealed_size: outboard.sealed_size() }.encode();
    assert_eq!(ask(&control, &relay, &request).await, Some(Answer::FetchFailed));
    let first = served.load(Ordering::Relaxed);
    assert!(first > 0, "the media node pulled what the uploader had");

    // The uploader has it all now and tries again.
    for (index, chunk) in chunks.iter().enumerate().skip(4) {
        store.put(&id, index as u64, chunk).unwrap();
    }
    store.sync(&id).unwrap();
    let held = ask(&control, &relay, &request).await;
    assert!(matches!(held, Some(Answer::Held { .. })), "{held:?}");
    let second = served.load(Ordering::Relaxed) - first;
    let half = 4 * (CHUNK_SIZE + TAG_SIZE) as u64;
    assert!(second <= half, "the second pull took {second} bytes; the missing half is {half}");
    assert!(first + second < outboard.sealed_size() * 13 / 10, "{first} + {second} bytes for {}", outboard.sealed_size());
}

/// Pushes `sealed` (a blob's sealed chunks back to back) to `relay` as the uploader
/// `control` speaks for, the way a node does while it seals: every chunk in order,
/// then the answer, which must name `id`.
async fn push(
    control: &libp2p_stream::Control,
    relay: &RelayProcess,
    sealed: &[u8],
    id: BlobId,
) -> Result<kith_p2p::blob::media::Held, UploadError> {
    use kith_p2p::blob::media::Push;
    let pushing = async {
        let mut push = Push::start(control, relay.peer_id, sealed.len() as u64).await?;
        for chunk in sealed.chunks(CHUNK_SIZE + TAG_SIZE) {
            push.send(chunk).await?;
        }
        push.finish(id).await
    };
    tokio::time::timeout(DEADLINE, pushing).await.unwrap()
}

/// Waits until the relay has no pushed upload in progress and nothing of one left
/// behind but the blobs it holds.
async fn settled(relay: &RelayProcess, data: &Path) {
    wait_metric(relay, "kith_relay_media_uploads_active", 0.0).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while blob_files(data).iter().any(|f| f.to_string_lossy().contains(".incoming-")) {
        assert!(tokio::time::Instant::now() < deadline, "a push's temporary file stays: {:?}", blob_files(data));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A push: the uploader streams sealed chunks as it seals them, and the media node
/// holds the blob under the id it computes from what arrived. It serves it to
/// anyone, keeps no plaintext, charges it once; a push cut short leaves nothing and
/// frees its room; sizes no blob has and blobs over the limits are refused before a
/// chunk is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_file_is_held_under_the_id_its_bytes_make_and_a_push_cut_short_leaves_nothing() {
    use kith_p2p::blob::media::Push;
    use kith_p2p::blob::{BlobKey, seal};
    let (relay_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = relay_dir.path().join("data");
    let len = 5 * CHUNK_SIZE / 2 + 1234;
    // Room for one such blob per uploader, not two.
    let limits = format!("max_bytes_per_uploader = {}\nmax_blob_bytes = {}", sealed_size(len) * 3 / 2, sealed_size(len) * 3 / 2);
    let relay = RelayProcess::start(relay_dir.path(), &media_config(&data, &limits));
    let (control, _task) = raw_peer(&relay).await;

    let plain: Vec<u8> = MARKER.iter().copied().cycle().take(len).collect();
    let key = BlobKey::generate();
    let mut sealed = Vec::new();
    let outboard = seal(&key, len as u64, &mut plain.as_slice(), &mut sealed).unwrap();
    let id = outboard.id();

    // Cut short half-way: nothing of it stays, and its room is free again.
    {
        let mut cut = Push::start(&control, relay.peer_id, sealed.len() as u64).await.unwrap();
        cut.send(&sealed[..CHUNK_SIZE + TAG_SIZE]).await.unwrap();
    }
    settled(&relay, &data).await;
    assert!(blob_files(&data).is_empty(), "{:?}", blob_files(&data));
    // Every chunk, then an id they do not make: refused, nothing kept.
    let lying = push(&control, &relay, &sealed, BlobId([7; 32])).await.unwrap_err();
    assert!(matches!(lying, UploadError::BadRequest), "{lying:?}");
    settled(&relay, &data).await;
    assert!(blob_files(&data).is_empty(), "{:?}", blob_files(&data));

    push(&control, &relay, &sealed, id).await.unwrap();
    // Asked for by its id, as any holder may: held already, renewed, charged to
    // nobody new.
    let hold = kith_p2p::blob::media::Request::Hold { id, sealed_size: sealed.len() as u64 }.encode();
    let held = ask(&control, &relay, &hold).await;
    assert!(matches!(held, Some(kith_p2p::blob::media::Answer::Held { .. })), "{held:?}");
    let text = wait_metric(&relay, "kith_relay_media_upload_duplicates_total", 1.0).await;
    assert_eq!(metric(&text, "kith_relay_media_blobs"), Some(1.0));
    assert_eq!(metric(&text, "kith_relay_media_bytes"), Some(sealed.len() as f64));
    assert_eq!(metric(&text, "kith_relay_media_uploads_total"), Some(1.0));

    // Served to anyone like a pulled blob, and opened with the key it never saw.
    let bob = connected_node(b_dir.path(), &relay).await;
    let shared = SharedFile { id, key: key.clone(), size: len as u64 };
    assert_eq!(fetch_and_open(&bob, &relay, b_dir.path(), &shared).await, plain);
    for file in files_under(&data) {
        let held = std::fs::read(&file).unwrap();
        assert!(!held.windows(MARKER.len()).any(|w| w == MARKER), "plaintext in {}", file.display());
    }

    // Refused before any chunk: a size no blob has, one over the limit, one over the
    // uploader's quota (it holds one blob already).
    let bad = Push::start(&control, relay.peer_id, 15).await.unwrap_err();
    assert!(matches!(bad, UploadError::BadRequest), "{bad:?}");
    let huge = Push::start(&control, relay.peer_id, sealed_size(len) * 2).await.unwrap_err();
    assert!(matches!(huge, UploadError::TooLarge { .. }), "{huge:?}");
    let over = Push::start(&control, relay.peer_id, sealed.len() as u64).await.unwrap_err();
    assert!(matches!(over, UploadError::QuotaExceeded { .. }), "{over:?}");
    settled(&relay, &data).await;
    stop(bob).await;
}

/// A pusher that goes silent after `ready` frees its upload slot and the room it
/// reserved once it has sent nothing for 30 seconds, not at the upload's deadline
/// (an hour and more for a large file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pusher_lets_go_of_its_slot_and_room() {
    use kith_p2p::blob::media::Push;
    let relay_dir = tempfile::tempdir().unwrap();
    let data = relay_dir.path().join("data");
    let size = 1u64 << 30;
    let limits = format!("max_bytes_per_uploader = {0}\nmax_blob_bytes = {0}\nmax_uploads = 1", size + size / 2);
    let relay = RelayProcess::start(relay_dir.path(), &media_config(&data, &limits));
    let (control, _task) = raw_peer(&relay).await;
    let sealed = kith_p2p::blob::sealed_size_of(size);

    let silent = Push::start(&control, relay.peer_id, sealed).await.unwrap();
    // It holds the only slot, and room the next push does not fit beside.
    let busy = Push::start(&control, relay.peer_id, sealed).await.unwrap_err();
    assert!(matches!(busy, UploadError::Busy), "{busy:?}");
    wait_metric(&relay, "kith_relay_media_uploads_active", 1.0).await;
    let started = std::time::Instant::now();
    wait_metric(&relay, "kith_relay_media_uploads_active", 0.0).await;
    let freed = started.elapsed();
    assert!(freed < Duration::from_secs(50), "freed after {freed:?}");
    // Slot and room are free again: the same size is admitted.
    let again = Push::start(&control, relay.peer_id, sealed).await;
    assert!(again.is_ok(), "{again:?}");
    drop((silent, again));
}
