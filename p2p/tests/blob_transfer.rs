//! `/kith/blob/1` between two real libp2p swarms on 127.0.0.1 (TCP, Noise, yamux),
//! with real blob stores in temp dirs: a whole fetch, a resumed one that asks only
//! for what is missing, streams opened together, a peer that lacks the blob, and a
//! peer that lies.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use kith_p2p::blob::transfer::{self, FetchError, PROTOCOL};
use kith_p2p::blob::{BlobId, BlobKey, BlobStore, CHUNK_SIZE, Outboard, TAG_SIZE, seal};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use libp2p_stream::Control;

const DEADLINE: Duration = Duration::from_secs(30);

/// A swarm speaking only raw streams, listening on 127.0.0.1, running in its own task.
struct Node {
    peer: PeerId,
    addr: Multiaddr,
    control: Control,
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
    connected: tokio::sync::mpsc::UnboundedReceiver<PeerId>,
}

impl Node {
    async fn start() -> Node {
        let mut swarm: Swarm<libp2p_stream::Behaviour> = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = tokio::time::timeout(DEADLINE, async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address;
                }
            }
        })
        .await
        .unwrap();
        let peer = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        let (connections, connected) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
                            let _ = connections.send(peer_id);
                        }
                    }
                    Some(addr) = dials.recv() => { let _ = swarm.dial(addr); }
                }
            }
        });
        Node { peer, addr, control, dial, connected }
    }

    /// Connects to `other` and waits until the connection is up.
    async fn connect(&mut self, other: &Node) {
        self.dial.send(other.addr.clone().with(libp2p::multiaddr::Protocol::P2p(other.peer))).unwrap();
        tokio::time::timeout(DEADLINE, async {
            while let Some(peer) = self.connected.recv().await {
                if peer == other.peer {
                    return;
                }
            }
        })
        .await
        .unwrap();
    }
}

/// A sealed file of `len` bytes in a new store: (store dir, store, key, outboard, plaintext).
fn stored_blob(len: usize) -> (tempfile::TempDir, Arc<BlobStore>, BlobKey, Outboard, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let key = BlobKey::generate();
    let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    let mut sealed = Vec::new();
    let outboard = seal(&key, len as u64, &mut plain.as_slice(), &mut sealed).unwrap();
    let id = outboard.id();
    store.add(&outboard).unwrap();
    for (index, chunk) in sealed.chunks(CHUNK_SIZE + TAG_SIZE).enumerate() {
        store.put(&id, index as u64, chunk).unwrap();
    }
    store.sync(&id).unwrap();
    (dir, store, key, outboard, plain)
}

fn plaintext(store: &BlobStore, key: &BlobKey, outboard: &Outboard) -> Vec<u8> {
    let mut out = Vec::new();
    store.open_into(&outboard.id(), key, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_fetched_whole_and_a_fetch_resumes_with_only_what_is_missing() {
    let mut server = Node::start().await;
    let mut client = Node::start().await;
    let (_dir, held, key, outboard, plain) = stored_blob(5 * CHUNK_SIZE + 123);
    tokio::spawn(transfer::serve(held, server.control.accept(PROTOCOL).unwrap()));
    client.connect(&server).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let id = outboard.id();
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, transfer::fetch(&client.control, server.peer, id, &store, |held, total| seen.push((held, total))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.first(), Some(&(0, 6)));
    assert_eq!(seen.last(), Some(&(6, 6)));
    assert_eq!(plaintext(&store, &key, &outboard), plain);

    // A second receiver already holds some chunks (an interrupted fetch): it asks for
    // the rest only.
    let dir2 = tempfile::tempdir().unwrap();
    let partial = Arc::new(BlobStore::open(dir2.path()).unwrap());
    partial.add(&outboard).unwrap();
    for index in [0u64, 2, 3] {
        partial.put(&id, index, &store.get(&id, index).unwrap().unwrap()).unwrap();
    }
    partial.sync(&id).unwrap();
    let mut first = None;
    tokio::time::timeout(DEADLINE, transfer::fetch(&client.control, server.peer, id, &partial, |held, total| {
        first.get_or_insert((held, total));
    }))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(first, Some((3, 6)), "the fetch started from what was held");
    assert_eq!(plaintext(&partial, &key, &outboard), plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_told_to_stop_asks_for_no_more_keeps_what_came_durable_and_a_later_fetch_resumes() {
    let mut server = Node::start().await;
    let mut client = Node::start().await;
    let (_dir, held, key, outboard, plain) = stored_blob(40 * CHUNK_SIZE);
    tokio::spawn(transfer::serve(held, server.control.accept(PROTOCOL).unwrap()));
    client.connect(&server).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let id = outboard.id();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut last = 0;
    let fetching = transfer::fetch_until(
        &client.control,
        server.peer,
        id,
        &store,
        |held, _| {
            last = held;
            if held > 0 {
                stop.store(true, std::sync::atomic::Ordering::Release);
            }
        },
        &stop,
    );
    let result = tokio::time::timeout(DEADLINE, fetching).await.unwrap();
    assert!(matches!(result, Err(FetchError::Stopped)), "{result:?}");
    assert!(last > 0 && last < 40, "it stopped part of the way: {last} of 40 chunks");
    drop(store);

    // What came is durable: a store opened again holds it, and a fetch asks for the rest.
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let missing = store.missing(&id).unwrap().unwrap();
    assert_eq!(40 - missing.len() as u64, last, "every chunk it reported is held");
    let mut first = None;
    tokio::time::timeout(DEADLINE, transfer::fetch(&client.control, server.peer, id, &store, |held, total| {
        first.get_or_insert((held, total));
    }))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(first, Some((last, 40)), "the next fetch started from what was held");
    assert_eq!(plaintext(&store, &key, &outboard), plain);
}

/// A fetch opens several streams at once, and the server's connection hands them
/// over together: every one must be served (libp2p-stream dropped all but one of
/// such a burst, so a transfer failed its first requests and waited out its retry
/// backoff; vendor/libp2p-stream/KITH-PATCH.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_together_are_all_answered() {
    let mut server = Node::start().await;
    let mut client = Node::start().await;
    let (_dir, held, _key, outboard, _plain) = stored_blob(CHUNK_SIZE);
    tokio::spawn(transfer::serve(held, server.control.accept(PROTOCOL).unwrap()));
    client.connect(&server).await;
    for round in 0..10 {
        // Eight: the most one peer may have in service at once.
        let asks = (0..8).map(|_| transfer::fetch_outboard(client.control.clone(), server.peer, outboard.id()));
        let answers = tokio::time::timeout(DEADLINE, futures::future::join_all(asks)).await.unwrap();
        for answer in answers {
            assert_eq!(answer.unwrap().id(), outboard.id(), "round {round}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_blob_says_so() {
    let mut server = Node::start().await;
    let mut client = Node::start().await;
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Arc::new(BlobStore::open(empty_dir.path()).unwrap());
    tokio::spawn(transfer::serve(empty, server.control.accept(PROTOCOL).unwrap()));
    client.connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let result = tokio::time::timeout(DEADLINE, transfer::fetch(&client.control, server.peer, BlobId([9; 32]), &store, |_, _| {}))
        .await
        .unwrap();
    assert!(matches!(result, Err(FetchError::NotHeld { .. })), "{result:?}");
    assert_eq!(store.outboard(&BlobId([9; 32])).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_wrong_chunks_gets_nothing_stored_and_an_honest_one_is_asked_next() {
    let mut server = Node::start().await;
    let mut client = Node::start().await;
    let (held_dir, held, key, outboard, data) = stored_blob(2 * CHUNK_SIZE);
    let held_copy = held.clone();
    let id = outboard.id();
    // A liar: the right outboard, then garbage of the right size for every chunk.
    let mut incoming = server.control.accept(PROTOCOL).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let held = held.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 34];
                stream.read_exact(&mut head).await.unwrap();
                let outboard = held.outboard(&BlobId(head[2..].try_into().unwrap())).unwrap().unwrap();
                if head[1] == transfer::KIND_OUTBOARD {
                    let mut out = vec![transfer::OK];
                    out.extend_from_slice(&outboard.len().to_be_bytes());
                    outboard.hashes().iter().for_each(|h| out.extend_from_slice(h));
                    stream.write_all(&out).await.unwrap();
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut count = [0u8; 2];
                    stream.read_exact(&mut count).await.unwrap();
                    let mut indexes = vec![0u8; u16::from_be_bytes(count) as usize * 8];
                    stream.read_exact(&mut indexes).await.unwrap();
                    for _ in indexes.chunks(8) {
                        stream.write_all(&[transfer::OK]).await.unwrap();
                        stream.write_all(&vec![0x5a; CHUNK_SIZE + TAG_SIZE]).await.unwrap();
                    }
                }
                let _ = stream.close().await;
            });
        }
    });
    client.connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let result = tokio::time::timeout(DEADLINE, transfer::fetch(&client.control, server.peer, id, &store, |_, _| {})).await.unwrap();
    assert!(matches!(result, Err(FetchError::BadAnswer(_))), "{result:?}");
    assert!(asked.load(Ordering::SeqCst) >= 1);
    assert_eq!(store.missing(&id).unwrap(), Some(vec![0, 1]), "nothing from the liar was kept");

    // Fetched again from an honest peer, into the same store: whole and readable.
    let mut honest = Node::start().await;
    let (_held_dir, honest_store, honest_key, honest_outboard, original) = (held_dir, held_copy, key, outboard, data);
    let incoming = honest.control.accept(PROTOCOL).unwrap();
    tokio::spawn(transfer::serve(honest_store, incoming));
    client.connect(&honest).await;
    tokio::time::timeout(DEADLINE, transfer::fetch(&client.control, honest.peer, id, &store, |_, _| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plaintext(&store, &honest_key, &honest_outboard), original);
}
