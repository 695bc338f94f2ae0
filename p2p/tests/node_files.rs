//! Files between two real nodes on 127.0.0.1: one seals a file into its blob store,
//! the other fetches it over `/kith/blob/1` and saves it, byte for byte; and an offer
//! that lies about a file's size fetches nothing. (File messages between users, end
//! to end, are tested with daemons in the tests crate, `files.rs`.)

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kith_p2p::blob::{BlobId, CHUNK_SIZE};
use kith_p2p::kith_storage::{
    Contact, ContactState, ConversationKind, Direction, FileRecord, FileRef, FileState, Message, MessageId, MessageState,
    Store,
};
use kith_p2p::ops;
use kith_p2p::node::{self, NodeError, SharedFile, Timers};

/// Bound on every wait.
const DEADLINE: Duration = Duration::from_secs(30);

/// A node on 127.0.0.1 with its store and blob store in `dir` (files off without).
async fn start(dir: &std::path::Path, files: bool) -> node::Started {
    let config = common::loopback_config(Timers::default(), files.then(|| dir.join("blobs")));
    node::start(config, Store::open(&dir.join("db")).unwrap()).await.unwrap()
}

/// [`start`] again in `dir` (files on) once the node that used it before has let
/// go of its database (its tasks end a moment after it stopped).
async fn start_when_unlocked(dir: &std::path::Path) -> node::Started {
    let started = std::time::Instant::now();
    loop {
        match Store::open(&dir.join("db")) {
            Ok(store) => {
                let config = common::loopback_config(Timers::default(), Some(dir.join("blobs")));
                return node::start(config, store).await.unwrap();
            }
            Err(e) => {
                assert!(started.elapsed() < DEADLINE, "the database is let go of: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// `node`'s record of file `prefix` once `done` holds of it: read now, and again at
/// each of the node's events (subscribed first, so no change is missed), within
/// [`DEADLINE`].
async fn file_once(node: &node::Started, prefix: &str, what: &str, done: impl Fn(&FileRecord) -> bool) -> FileRecord {
    let mut events = node.handle.subscribe();
    let waiting = async {
        loop {
            if let Ok(record) = node.handle.file(prefix)
                && done(&record)
            {
                return record;
            }
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
                panic!("the node stopped before: {what}");
            }
        }
    };
    tokio::time::timeout(DEADLINE, waiting).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Alice and Bob with files on, Bob connected to Alice.
async fn connected_pair(a_dir: &std::path::Path, b_dir: &std::path::Path) -> (node::Started, node::Started) {
    let alice = start(a_dir, true).await;
    let bob = start(b_dir, true).await;
    let addr = alice.listen_addrs[0].clone().with(libp2p::multiaddr::Protocol::P2p(alice.handle.peer_id()));
    bob.handle.dial(addr).await.unwrap();
    (alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_is_fetched_and_saved_byte_for_byte() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = connected_pair(a_dir.path(), b_dir.path()).await;

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

/// A sender that lies about a file's size in its offer ("1 KiB", for a blob of 1 MiB)
/// gets nothing fetched: the blob's outboard, which its id fixes, gives the real size,
/// and a size other than the offer's marks the file `failed` before any chunk is asked
/// for, so a contact cannot have a huge file downloaded under the automatic limit.
/// Our nodes cannot be made to lie, so the offer is written into Bob's store as his
/// inbound path stores a received message; everything after is the real node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_lies_about_the_size_fetches_no_chunk() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = connected_pair(a_dir.path(), b_dir.path()).await;
    let original = a_dir.path().join("big.bin");
    std::fs::write(&original, vec![7u8; 4 * CHUNK_SIZE]).unwrap();
    let shared = alice.handle.share_file(&original).await.unwrap();

    let author = alice.handle.peer_id();
    let conversation = ops::direct_conversation(&bob.handle.peer_id(), &author);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let store = bob.handle.store();
    store.conversations().get_or_create(conversation, ConversationKind::Direct { peer_id: author.to_base58() }, now).unwrap();
    let offer = FileRef {
        blob: shared.id.0,
        key: shared.key.0,
        name: "small.txt".into(),
        size: 1024,
        media_type: "text/plain".into(),
        sources: Vec::new(),
    };
    let message = Message {
        id: MessageId::from_bytes([7; 16]),
        conversation,
        author: author.to_base58(),
        lamport: 1,
        sent_at_ms: now,
        received_at_ms: now,
        text: String::new(),
        state: MessageState::Delivered,
        direction: Direction::Incoming,
        file: Some(Box::new(offer)),
        link: None,
    };
    store.insert_incoming_batch(&[message]).unwrap();

    let prefix = &hex::encode(shared.id.0)[..16];
    let got = tokio::time::timeout(DEADLINE, bob.handle.get_file(prefix, None, true)).await.unwrap();
    let error = got.expect_err("a lying offer is refused").to_string();
    assert!(error.contains(&format!("the blob holds {} bytes, its message said 1024", 4 * CHUNK_SIZE)), "{error}");
    let record = bob.handle.file(prefix).unwrap();
    assert_eq!(record.state, FileState::Failed);
    assert_eq!(bob.handle.status().await.unwrap().files_fetched_bytes, 0, "no chunk fetched");
    assert_eq!(alice.handle.status().await.unwrap().files_served_bytes, 0, "no chunk served");
    let kept: u64 = std::fs::read_dir(b_dir.path().join("blobs")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(kept, 0, "nothing of the blob is kept, not even room for it");
}

/// A received message naming Alice's blob `shared` by `author`, with `key`, as
/// Bob's inbound path stores it (our nodes cannot be made to name someone else's
/// blob, so such a message is written into Bob's store).
fn naming(bob: &node::Started, author: libp2p::PeerId, id: u8, shared: &SharedFile, key: [u8; 32]) -> Message {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let conversation = ops::direct_conversation(&bob.handle.peer_id(), &author);
    let kind = ConversationKind::Direct { peer_id: author.to_base58() };
    bob.handle.store().conversations().get_or_create(conversation, kind, now).unwrap();
    Message {
        id: MessageId::from_bytes([id; 16]),
        conversation,
        author: author.to_base58(),
        lamport: u64::from(id),
        sent_at_ms: now,
        received_at_ms: now,
        text: String::new(),
        state: MessageState::Delivered,
        direction: Direction::Incoming,
        file: Some(Box::new(FileRef {
            blob: shared.id.0,
            key,
            name: "report.pdf".into(),
            size: shared.size,
            media_type: "application/pdf".into(),
            sources: Vec::new(),
        })),
        link: None,
    }
}

/// Alice, Bob and Mallory (connected to Bob, holding nothing), and a file Alice
/// shared, with its bytes.
async fn alice_bob_and_mallory(dirs: [&std::path::Path; 3]) -> (node::Started, node::Started, node::Started, SharedFile, Vec<u8>) {
    let (alice, bob) = connected_pair(dirs[0], dirs[1]).await;
    let mallory = start(dirs[2], true).await;
    let addr = mallory.listen_addrs[0].clone().with(libp2p::multiaddr::Protocol::P2p(mallory.handle.peer_id()));
    bob.handle.dial(addr).await.unwrap();
    let original = dirs[0].join("report.pdf");
    let bytes: Vec<u8> = (0..2 * CHUNK_SIZE + 77).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&original, &bytes).unwrap();
    let shared = alice.handle.share_file(&original).await.unwrap();
    (alice, bob, mallory, shared, bytes)
}

/// Someone who learned a blob's id (Mallory) names it in a message of their own,
/// with a wrong key, before the real message (Alice's) reaches Bob, and does not
/// hold it: Bob fetches it from Alice, the other message that named it, finds that
/// Mallory's key does not open it, and passes the file to Alice's message, whose key
/// does. Before, the first message to name a blob held it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_named_first_with_a_wrong_key_passes_to_the_real_message_and_opens() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (alice, bob, mallory, shared, bytes) = alice_bob_and_mallory([dirs[0].path(), dirs[1].path(), dirs[2].path()]).await;
    let store = bob.handle.store();
    store.insert_incoming_batch(&[naming(&bob, mallory.handle.peer_id(), 1, &shared, [9; 32])]).unwrap();
    store.insert_incoming_batch(&[naming(&bob, alice.handle.peer_id(), 2, &shared, shared.key.0)]).unwrap();

    let prefix = &hex::encode(shared.id.0)[..16];
    assert_eq!(bob.handle.file(prefix).unwrap().message, MessageId::from_bytes([1; 16]));
    let got = tokio::time::timeout(DEADLINE, bob.handle.get_file(prefix, None, true)).await.unwrap().unwrap();
    assert_eq!(got.state, FileState::Complete);
    assert_eq!(got.message, MessageId::from_bytes([2; 16]).to_string(), "the file is Alice's message's now");
    let saved = got.path.expect("saved");
    assert_eq!(std::fs::read(saved).unwrap(), bytes, "opened with Alice's key, byte for byte");
}

/// Mallory names Alice's blob first, with the right key (she was sent the file),
/// Bob fetches it, and Mallory then deletes her message for everyone: the file is
/// Alice's message's from then on, kept as it was (complete, saved, its blob still
/// held), not removed with Mallory's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_first_namer_deletes_their_message_stays_with_the_real_one() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (alice, bob, mallory, shared, bytes) = alice_bob_and_mallory([dirs[0].path(), dirs[1].path(), dirs[2].path()]).await;
    let store = bob.handle.store();
    store.insert_incoming_batch(&[naming(&bob, mallory.handle.peer_id(), 1, &shared, shared.key.0)]).unwrap();
    store.insert_incoming_batch(&[naming(&bob, alice.handle.peer_id(), 2, &shared, shared.key.0)]).unwrap();
    let prefix = &hex::encode(shared.id.0)[..16];
    let got = tokio::time::timeout(DEADLINE, bob.handle.get_file(prefix, None, true)).await.unwrap().unwrap();
    assert_eq!((got.state, got.message.as_str()), (FileState::Complete, MessageId::from_bytes([1; 16]).to_string().as_str()));

    let mut delete = naming(&bob, mallory.handle.peer_id(), 3, &shared, shared.key.0);
    delete.file = None;
    delete.link = Some(kith_p2p::kith_storage::Link::Delete(MessageId::from_bytes([1; 16])));
    store.insert_incoming_batch(&[delete]).unwrap();
    bob.handle.sweep_files();
    let record = file_once(&bob, prefix, "the file passes to Alice's message", |r| r.message == MessageId::from_bytes([2; 16])).await;
    assert_eq!(record.state, FileState::Complete, "kept as it was");
    assert_eq!(record.path, got.path, "at the same place");
    assert_eq!(std::fs::read(record.path.unwrap()).unwrap(), bytes);
    let held = std::fs::read_dir(dirs[1].path().join("blobs")).unwrap().count();
    assert!(held > 0, "its blob is still held");
}

/// Mallory, a stranger, names Alice's blob first and says it is 1 GiB; Alice, an
/// accepted contact, names it too, with its true size. The file is Alice's message's
/// before anything is fetched, so at Bob's next start it downloads by itself, as a
/// contact's small file does. (Before, the stranger's message held it, and its size:
/// never fetched by itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_file_that_a_stranger_named_first_downloads_by_itself() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (alice, bob, mallory, shared, bytes) = alice_bob_and_mallory([dirs[0].path(), dirs[1].path(), dirs[2].path()]).await;
    let store = bob.handle.store();
    let mut lie = naming(&bob, mallory.handle.peer_id(), 1, &shared, shared.key.0);
    lie.file.as_mut().unwrap().size = 1 << 30;
    store.insert_incoming_batch(&[lie]).unwrap();
    store.insert_incoming_batch(&[naming(&bob, alice.handle.peer_id(), 2, &shared, shared.key.0)]).unwrap();
    let contact = Contact { addrs: alice.listen_addrs.clone(), ..ops::new_contact(&alice.handle.peer_id(), ContactState::Accepted) };
    store.contacts().put(&contact).unwrap();
    let node::Started { handle, stopped, .. } = bob;
    handle.shutdown().await;
    drop(handle);
    tokio::time::timeout(DEADLINE, stopped).await.unwrap().unwrap();

    let bob = start_when_unlocked(dirs[1].path()).await;
    let prefix = &hex::encode(shared.id.0)[..16];
    let record = file_once(&bob, prefix, "the contact's file downloads by itself", |r| r.state == FileState::Complete).await;
    assert_eq!(record.message, MessageId::from_bytes([2; 16]), "as Alice's message's");
    assert_eq!(record.size, bytes.len() as u64);
    assert_eq!(std::fs::read(record.path.unwrap()).unwrap(), bytes);
}

/// A media node from before pushes, as a bare libp2p peer: it answers a push
/// `bad request` (an unknown kind), as such a relay does, and takes an upload by
/// pulling it into `store`. Returns its address (with its peer id) and how many
/// pushes it was offered.
async fn media_node_that_predates_pushes(
    store: std::sync::Arc<kith_p2p::blob::BlobStore>,
) -> (libp2p::Multiaddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use futures::StreamExt as _;
    use futures::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use kith_p2p::blob::media::{self, Answer, REQUEST_LEN, Request};
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(libp2p::tcp::Config::default().nodelay(true), libp2p::noise::Config::new, libp2p::yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(DEADLINE))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address.with(libp2p::multiaddr::Protocol::P2p(*swarm.local_peer_id()));
        }
    };
    let mut control = swarm.behaviour().new_control();
    let mut incoming = control.accept(media::PROTOCOL).unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let pushes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = pushes.clone();
    tokio::spawn(async move {
        while let Some((peer, mut stream)) = incoming.next().await {
            let mut request = [0u8; REQUEST_LEN];
            stream.read_exact(&mut request).await.unwrap();
            let answer = match Request::decode(&request) {
                Ok(Request::Hold { id, .. }) => {
                    kith_p2p::blob::transfer::fetch(&control, peer, id, &store, |_, _| {}).await.unwrap();
                    Answer::Held { expires_at: 4_000_000_000 }
                }
                _ => {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Answer::BadRequest
                }
            };
            stream.write_all(&answer.encode()).await.unwrap();
            stream.close().await.unwrap();
        }
    });
    (addr, pushes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_node_that_predates_pushes_is_offered_one_and_then_pulls_the_file() {
    let (a_dir, m_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let held = std::sync::Arc::new(kith_p2p::blob::BlobStore::open(m_dir.path()).unwrap());
    let (media, pushes) = media_node_that_predates_pushes(held.clone()).await;
    let mut config = common::loopback_config(Timers::default(), Some(a_dir.path().join("blobs")));
    config.relays = vec![media];
    let alice = node::start(config, Store::open(&a_dir.path().join("db")).unwrap()).await.unwrap();
    // A group's file goes to the group's media nodes, whoever is online.
    alice.handle.group(node::GroupChange::Create { name: "notes".into() }).await.unwrap();
    let original = a_dir.path().join("plan.txt");
    std::fs::write(&original, vec![7u8; 2 * CHUNK_SIZE + 5]).unwrap();
    tokio::time::timeout(DEADLINE, alice.handle.send_file("notes", &original, "")).await.unwrap().unwrap();

    let file = alice.handle.files(None).unwrap().remove(0);
    assert_eq!(file.state, FileState::Uploaded, "{file:?}");
    assert_eq!(pushes.load(std::sync::atomic::Ordering::Relaxed), 1, "a push was offered first");
    let id = BlobId(hex::decode(&file.id).unwrap().try_into().unwrap());
    assert!(held.is_complete(&id).unwrap(), "the media node pulled the whole file");
}
