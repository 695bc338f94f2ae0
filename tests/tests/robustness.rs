//! Hostile input over `/kith/dm/1` against a running node (issue 3): forged senders,
//! replays, tampered, misaddressed, garbage and oversized envelopes get typed
//! per-envelope refusals; truncated, oversized, garbage and over-long frames are
//! refused at the codec. Throughout, the node keeps serving and stores exactly the
//! genuine messages, once each.
//!
//! Hostile peers (issue 11): a reused message id suppresses nothing, a replay after
//! `kith remove` brings nothing back, and strangers' contact requests are bounded in
//! count, bytes and addresses.
//!
//! The attacker is a raw libp2p client speaking the protocol with a codec that writes
//! whatever bytes the test gives it; the node is the real one, on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::io;
use std::time::Duration;

use futures::io::Cursor;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use kith_p2p::dm::{self, DmRequest, DmResponse, DmResult, RejectReason};
use kith_p2p::envelope::{self, MAX_ENVELOPE_LEN, Sealer, SealerConfig};
use kith_p2p::identity::Identity;
use kith_p2p::kith_storage::{Contact, ContactState, MessageId, Store};
use kith_p2p::libp2p::request_response::{self, Codec as _, ProtocolSupport};
use kith_p2p::libp2p::swarm::SwarmEvent;
use kith_p2p::libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use kith_p2p::node::{self, Event, NodeConfig, NodeHandle, Timers};
use kith_p2p::ops;
use kith_p2p::payload::Payload;

const DEADLINE: Duration = Duration::from_secs(20);

/// Writes a request's bytes exactly as given: the test decides what is on the wire.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = DmResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>> {
        Err(io::Error::other("this client only sends"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<DmResponse> {
        dm::Codec::default().read_response(p, io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, bytes: Vec<u8>) -> io::Result<()> {
        io.write_all(&bytes).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, _: &mut T, _: DmResponse) -> io::Result<()> {
        Err(io::Error::other("this client only sends"))
    }
}

/// What came back for one raw request.
#[derive(Debug)]
enum Answer {
    Results(Vec<DmResult>),
    /// The node refused the frame itself: the stream ended without an answer.
    Refused(String),
}

struct Attacker {
    swarm: Swarm<request_response::Behaviour<RawCodec>>,
    target: PeerId,
    addr: Multiaddr,
}

impl Attacker {
    fn new(target: PeerId, addr: Multiaddr) -> Attacker {
        let swarm = kith_p2p::libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    RawCodec,
                    [(dm::PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
                )
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Attacker { swarm, target, addr }
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) -> Answer {
        let id = self.swarm.behaviour_mut().send_request_with_addresses(&self.target, bytes, vec![self.addr.clone()]);
        let wait = async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    }) if request_id == id => return Answer::Results(response.results),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, error, .. })
                        if request_id == id =>
                    {
                        return Answer::Refused(error.to_string());
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.expect("no answer and no failure before the deadline")
    }

    /// A well-formed request frame carrying `envelopes`.
    async fn send(&mut self, envelopes: Vec<Vec<u8>>) -> Answer {
        self.send_raw(frame(envelopes).await).await
    }

    /// Keeps the connection served for `period` (answering what the node opens);
    /// whether the node closed it meanwhile.
    async fn closed_within(&mut self, period: Duration) -> bool {
        let target = self.target;
        let closed = async {
            loop {
                if let SwarmEvent::ConnectionClosed { peer_id, .. } = self.swarm.select_next_some().await
                    && peer_id == target
                {
                    return;
                }
            }
        };
        tokio::time::timeout(period, closed).await.is_ok()
    }
}

async fn frame(envelopes: Vec<Vec<u8>>) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    dm::Codec::default().write_request(&dm::PROTOCOL, &mut buf, DmRequest { envelopes }).await.unwrap();
    buf.into_inner()
}

fn text(body: &str, lamport: u64) -> Vec<u8> {
    Payload::Text { id: ops::new_message_id(), lamport, sent_at_ms: ops::now_ms(), text: body.into(), file: None, link: None }
        .encode()
        .unwrap()
}

fn contact_of(identity: &Identity) -> Contact {
    let public = identity.public();
    Contact {
        peer_id: public.peer_id,
        alias: Some("alice".into()),
        display_name: None,
        state: ContactState::Accepted,
        e2e_public: Some(public.e2e_public),
        binding: Some(public.binding.to_bytes()),
        addrs: vec![],
        relays: vec![],
        added_at_ms: 1,
        updated_at_ms: 1,
        last_seen_ms: None,
        verified_at_ms: None,
        key_changed_at_ms: None,
    }
}

async fn start_bob(bob: &Identity, store: Store) -> (NodeHandle, Multiaddr) {
    start_bob_with(bob, store, Timers::default()).await
}

async fn start_bob_with(bob: &Identity, store: Store, timers: Timers) -> (NodeHandle, Multiaddr) {
    let config = NodeConfig {
        identity: bob.clone(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![],
        relays: vec![],
        mdns: false,
        display_name: Some("bob".into()),
        read_receipts: true,
        presence: true,
        timers,
        files: None,
        key_ring: None,
    };
    let started = node::start(config, store).await.unwrap();
    let addr = started.listen_addrs[0].clone();
    (started.handle, addr)
}

fn texts_from_alice(bob: &NodeHandle) -> Vec<String> {
    let store = bob.store();
    let alice = ops::resolve_contact(store, "alice").unwrap();
    ops::history(store, &bob.peer_id(), &alice, 1000, None).unwrap().into_iter().map(|m| m.text).collect()
}

fn results(answer: Answer) -> Vec<DmResult> {
    match answer {
        Answer::Results(r) => r,
        Answer::Refused(why) => panic!("expected per-envelope results, the frame was refused: {why}"),
    }
}

fn refused(answer: Answer) -> String {
    match answer {
        Answer::Refused(why) => why,
        Answer::Results(r) => panic!("expected the frame to be refused, got results {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_while_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Identity::generate();
    let bob = Identity::generate();
    let mallory = Identity::generate();
    let carol = Identity::generate();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.contacts().put(&contact_of(&alice)).unwrap();
    let (node, addr) = start_bob(&bob, store).await;
    let mut events = node.subscribe();
    let mut attacker = Attacker::new(bob.peer_id(), addr);
    let mut alice_sealer = Sealer::new(&alice, SealerConfig::default());
    let bob_key = bob.e2e_public();

    // A genuine message is stored and announced.
    let one = alice_sealer.seal(&bob_key, &text("one", 1)).unwrap();
    assert_eq!(results(attacker.send(vec![one.clone()]).await), [DmResult::Stored]);
    let received = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(Event::MessageReceived { message }) = events.recv().await {
                return message.text;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(received, "one");

    // Replayed: acknowledged again (the sender may have lost the first answer) but
    // stored once.
    assert_eq!(results(attacker.send(vec![one.clone(), one.clone()]).await), [DmResult::Stored, DmResult::Stored]);

    // Forged sender: Mallory's key claiming Alice's identity.
    let forged = envelope::seal_forged(&mallory, &alice.public(), &bob_key, &text("from 'alice'", 2)).unwrap();
    assert_eq!(results(attacker.send(vec![forged.clone()]).await), [DmResult::Rejected(RejectReason::Forged)]);

    // Tampered in transit, sealed for someone else, not an envelope at all, too large.
    let mut tampered = alice_sealer.seal(&bob_key, &text("tampered", 3)).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let for_carol = alice_sealer.seal(&carol.e2e_public(), &text("for carol", 4)).unwrap();
    let garbage = b"\x00\x01not an envelope".to_vec();
    let huge = vec![0u8; MAX_ENVELOPE_LEN + 1];
    let two = alice_sealer.seal(&bob_key, &text("two", 5)).unwrap();
    // One batch: every item gets its own verdict and the good one still lands.
    assert_eq!(
        results(attacker.send(vec![tampered, for_carol, garbage, huge, two, forged]).await),
        [
            DmResult::Rejected(RejectReason::Decrypt),
            DmResult::Rejected(RejectReason::Decrypt),
            DmResult::Rejected(RejectReason::Malformed),
            DmResult::Rejected(RejectReason::TooLarge),
            DmResult::Stored,
            DmResult::Rejected(RejectReason::Forged),
        ]
    );

    // Frame-level garbage never reaches the node's logic: the codec refuses it
    // before allocating, the stream ends without an answer, the connection survives.
    let good = frame(vec![alice_sealer.seal(&bob_key, &text("never sent", 6)).unwrap()]).await;
    let truncated = good[..good.len() / 2].to_vec();
    refused(attacker.send_raw(truncated).await);
    refused(attacker.send_raw(u32::MAX.to_be_bytes().to_vec()).await);
    let mut claims_too_much = ((dm::MAX_REQUEST_LEN + 1) as u32).to_be_bytes().to_vec();
    claims_too_much.extend_from_slice(&[0u8; 64]);
    refused(attacker.send_raw(claims_too_much).await);
    let mut cbor_garbage = 9u32.to_be_bytes().to_vec();
    cbor_garbage.extend_from_slice(b"\xff\xfe garbage");
    refused(attacker.send_raw(cbor_garbage).await);
    refused(attacker.send_raw(Vec::new()).await);
    let over_batch = (0..=dm::MAX_BATCH).map(|i| text(&format!("{i}"), 7)).collect();
    refused(attacker.send(over_batch).await);

    // Still serving: a genuine message goes through, and the node answers its handle.
    let three = alice_sealer.seal(&bob_key, &text("three", 8)).unwrap();
    assert_eq!(results(attacker.send(vec![three]).await), [DmResult::Stored]);
    node.status().await.unwrap();

    // Exactly the genuine messages, once each, in order.
    assert_eq!(texts_from_alice(&node), ["one", "two", "three"]);
    // Nothing from Mallory leaked in as a contact (request) either.
    assert!(node.store().contacts().get(&mallory.peer_id()).unwrap().is_none());
    node.shutdown().await;
}

/// A text with a chosen id.
fn text_with(id: MessageId, body: &str, lamport: u64) -> Vec<u8> {
    Payload::Text { id, lamport, sent_at_ms: ops::now_ms(), text: body.into(), file: None, link: None }.encode().unwrap()
}

fn texts_from(node: &NodeHandle, who: &str) -> Vec<String> {
    let store = node.store();
    let contact = ops::resolve_contact(store, who).unwrap();
    ops::history(store, &node.peer_id(), &contact, 1000, None).unwrap().into_iter().map(|m| m.text).collect()
}

/// The node negotiates streams lazily (a protocol's name leaves with the first
/// request), so a peer that does not speak ping refuses the node's pings only when
/// their answer is read, not at negotiation. That says nothing about the path: the
/// connection stays open and goes on serving, as it did when the refusal came at
/// negotiation. (libp2p's ping says nothing of a connection's first failure, so the
/// node pings often here and the test waits for several.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_speak_ping_keeps_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.contacts().put(&contact_of(&alice)).unwrap();
    let timers = Timers { ping_interval: Duration::from_millis(200), ..Timers::default() };
    let (node, addr) = start_bob_with(&bob, store, timers).await;
    let mut attacker = Attacker::new(bob.peer_id(), addr);
    let mut sealer = Sealer::new(&alice, SealerConfig::default());
    let bob_key = bob.e2e_public();
    let one = sealer.seal(&bob_key, &text("one", 1)).unwrap();
    assert_eq!(results(attacker.send(vec![one]).await), [DmResult::Stored]);
    assert!(!attacker.closed_within(Duration::from_secs(3)).await, "the node closed the connection of a peer without ping");
    let two = sealer.seal(&bob_key, &text("two", 2)).unwrap();
    assert_eq!(results(attacker.send(vec![two]).await), [DmResult::Stored]);
    assert_eq!(texts_from_alice(&node), ["one", "two"]);
    node.shutdown().await;
}

/// Issue 11: receivers de-duplicated by message id alone, so a peer who learned the id
/// of someone else's message (a fellow group member sees every id) could send its own
/// message under that id first and suppress the real one. Now two senders' messages
/// with the same id are two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_message_id_does_not_suppress_another_senders_message() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, mallory) = (Identity::generate(), Identity::generate(), Identity::generate());
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.contacts().put(&contact_of(&alice)).unwrap();
    store.contacts().put(&Contact { alias: Some("mallory".into()), ..contact_of(&mallory) }).unwrap();
    let (node, addr) = start_bob(&bob, store).await;
    let mut attacker = Attacker::new(bob.peer_id(), addr);
    let bob_key = bob.e2e_public();
    let id = ops::new_message_id();
    let first = Sealer::new(&mallory, SealerConfig::default()).seal(&bob_key, &text_with(id, "mallory's", 1)).unwrap();
    let real = Sealer::new(&alice, SealerConfig::default()).seal(&bob_key, &text_with(id, "alice's", 1)).unwrap();
    assert_eq!(results(attacker.send(vec![first]).await), [DmResult::Stored]);
    assert_eq!(results(attacker.send(vec![real.clone(), real]).await), [DmResult::Stored, DmResult::Stored]);
    assert_eq!(texts_from(&node, "alice"), ["alice's"]);
    assert_eq!(texts_from(&node, "mallory"), ["mallory's"]);
    node.shutdown().await;
}

/// Bob's real daemon, started; his invite; a raw client connected to him; and the
/// identity (Alice) that client seals as.
fn bob_and_a_raw_sender() -> (kith_tests::Peer, kith_p2p::invite::Invite, Attacker, Identity) {
    let mut bob = kith_tests::Peer::init("bob");
    bob.start(&[]);
    let invite = kith_p2p::invite::Invite::parse(&bob.invite()).unwrap();
    let attacker = Attacker::new(invite.peer_id, bob.addrs[0].parse().unwrap());
    (bob, invite, attacker, Identity::generate())
}

/// A bare contact request from `name`, issued now, redeeming `token` if given.
fn contact_request(name: &str, token: Option<[u8; 16]>) -> Payload {
    Payload::ContactRequest {
        name: Some(name.into()),
        addrs: vec![],
        token,
        relays: vec![],
        keys: None,
        issued_us: kith_p2p::ops::issue_time_us(),
    }
}

/// A contact request carries no message id, so a relay operator (or anyone who
/// kept the envelope) could replay it: a request the user rejected came back as a
/// new one, and a copy of an accepted contact's old request set its name back.
/// Here the real `kith` daemon receives requests over `/kith/dm/1`, the user
/// rejects one with `kith reject`, and kept copies come again, before and after a
/// restart: nothing changes, while a request its sender issues anew is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_copy_of_a_contact_request_brings_back_nothing_the_user_rejected_or_changed() {
    let (mut bob, invite, mut attacker, alice) = bob_and_a_raw_sender();
    let alice_id = alice.peer_id().to_string();
    let mut sealer = Sealer::new(&alice, SealerConfig::default());
    let mut request = |name: &str| sealer.seal(&invite.e2e_public, &contact_request(name, None).encode().unwrap()).unwrap();
    let asking = |bob: &kith_tests::Peer| -> Option<String> {
        let requests = bob.json(&["requests", "--json"]);
        let mine = requests.as_array().unwrap().iter().find(|r| r["contact"]["peer_id"] == alice_id.as_str())?;
        Some(mine["contact"]["display_name"].as_str().unwrap_or_default().to_owned())
    };
    let first = request("first");
    assert_eq!(results(attacker.send(vec![first.clone()]).await), [DmResult::Stored]);
    assert_eq!(asking(&bob).as_deref(), Some("first"));
    bob.ok(&["reject", &alice_id]);
    assert_eq!(asking(&bob), None);

    // The copy is acknowledged (a relay holding it may let go) and changes nothing,
    // now and after a restart.
    assert_eq!(results(attacker.send(vec![first.clone()]).await), [DmResult::Stored]);
    assert_eq!(asking(&bob), None, "a rejected request stays rejected");
    bob.stop();
    bob.start(&[]);
    let mut attacker = Attacker::new(invite.peer_id, bob.addrs[0].parse().unwrap());
    assert_eq!(results(attacker.send(vec![first]).await), [DmResult::Stored]);
    assert_eq!(asking(&bob), None, "and after a restart");

    // Alice asks again: a new request is taken. Bob accepts; she renames herself;
    // a copy of the earlier request does not set the old name back.
    let second = request("second");
    assert_eq!(results(attacker.send(vec![second.clone()]).await), [DmResult::Stored]);
    assert_eq!(asking(&bob).as_deref(), Some("second"));
    bob.ok(&["accept", &alice_id]);
    assert_eq!(results(attacker.send(vec![request("third")]).await), [DmResult::Stored]);
    assert_eq!(results(attacker.send(vec![second]).await), [DmResult::Stored]);
    let contacts = bob.json(&["contacts", "--json"]);
    let alice_there = contacts.as_array().unwrap().iter().find(|c| c["peer_id"] == alice_id.as_str()).unwrap();
    assert_eq!(alice_there["display_name"], "third", "{contacts}");
    bob.stop();
}

/// Issue 11: deleting a conversation forgot its message ids, so whoever kept an
/// envelope (a relay, an observer) could replay it and bring the deleted message back,
/// as a contact request from the removed contact. Here the real `kith` daemon receives
/// a text, the user removes the contact and its conversation with `kith remove`, and
/// the captured envelope comes again over `/kith/dm/1`: nothing reappears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_envelope_after_kith_remove_stores_nothing() {
    let (mut bob, invite, mut attacker, alice) = bob_and_a_raw_sender();
    let alice_id = alice.peer_id().to_string();
    let mut sealer = Sealer::new(&alice, SealerConfig::default());
    let redeem = contact_request("alice", invite.token);
    let redeem = sealer.seal(&invite.e2e_public, &redeem.encode().unwrap()).unwrap();
    assert_eq!(results(attacker.send(vec![redeem]).await), [DmResult::Stored]);
    let secret = sealer.seal(&invite.e2e_public, &text("deleted later", 1)).unwrap();
    assert_eq!(results(attacker.send(vec![secret.clone()]).await), [DmResult::Stored]);
    let texts = |peer: &kith_tests::Peer| -> Vec<String> {
        peer.history(&alice_id).iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(texts(&bob), ["deleted later"]);

    bob.ok(&["remove", &alice_id]);
    let nothing_from_alice = |bob: &kith_tests::Peer| {
        let contacts = bob.json(&["contacts", "--json"]);
        let requests = bob.json(&["requests", "--json"]);
        let inbox = bob.json(&["inbox", "--json"]);
        let listed = |v: &serde_json::Value| v.to_string().contains(&alice_id);
        assert!(!listed(&contacts) && !listed(&requests) && !listed(&inbox), "{contacts} {requests} {inbox}");
        assert!(!bob.run(&["history", &alice_id, "--json"]).status.success(), "no conversation with alice");
    };
    nothing_from_alice(&bob);

    // The replay is acknowledged (it was delivered once) and leaves no trace, neither
    // alone nor twice in one batch, neither now nor after a restart.
    assert_eq!(results(attacker.send(vec![secret.clone()]).await), [DmResult::Stored]);
    assert_eq!(results(attacker.send(vec![secret.clone(), secret.clone()]).await), [DmResult::Stored; 2]);
    nothing_from_alice(&bob);
    bob.stop();
    bob.start(&[]);
    let mut attacker = Attacker::new(invite.peer_id, bob.addrs[0].parse().unwrap());
    assert_eq!(results(attacker.send(vec![secret]).await), [DmResult::Stored]);
    nothing_from_alice(&bob);

    // A new message from alice is not a replay: it makes a contact request as usual.
    let fresh = sealer.seal(&invite.e2e_public, &text("hello again", 2)).unwrap();
    assert_eq!(results(attacker.send(vec![fresh]).await), [DmResult::Stored]);
    let requests = bob.json(&["requests", "--json"]);
    assert!(requests.to_string().contains(&alice_id), "{requests}");
}

/// Total size of the files under `dir`.
fn disk_use(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { disk_use(&entry.path()) } else { meta.len() };
    }
    total
}

/// Issue 11: a stranger's texts are held as a contact request, and nothing bounded
/// them: 100,000 texts (in full dm batches) from one stranger leave at most
/// `MAX_HELD_MESSAGES` of them on disk, the rest refused with `Quota`; a contact
/// request cannot give a contact more than `MAX_CONTACT_ADDRS` addresses; and the node
/// keeps serving its contacts throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_flooding_texts_leaves_disk_use_bounded() {
    use kith_p2p::requests::{MAX_ADDR_LEN, MAX_CONTACT_ADDRS, MAX_CONTACT_RELAYS, MAX_HELD_BYTES, MAX_HELD_MESSAGES};
    const FLOOD: usize = 100_000;
    const BODY: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (alice, bob, stranger) = (Identity::generate(), Identity::generate(), Identity::generate());
    let store = Store::open(&db).unwrap();
    store.contacts().put(&contact_of(&alice)).unwrap();
    store.flush().unwrap();
    let (node, addr) = start_bob(&bob, store).await;
    let bob_key = bob.e2e_public();
    let mut attacker = Attacker::new(bob.peer_id(), addr);
    let mut sealer = Sealer::new(&stranger, SealerConfig::default());
    node.store().flush().unwrap();
    let before = disk_use(&db);

    // A contact request with a thousand addresses does not even decode; one with as
    // many as a payload may carry adds only the contact's bounded share.
    let addrs = |n: usize| -> Vec<Vec<u8>> {
        (0..n).map(|p| format!("/ip4/10.0.0.1/tcp/{p}").parse::<Multiaddr>().unwrap().to_vec()).collect()
    };
    let request = |n| Payload::ContactRequest {
        name: Some("s".into()),
        addrs: addrs(n),
        token: None,
        relays: addrs(n),
        keys: None,
        issued_us: kith_p2p::ops::issue_time_us(),
    };
    let too_many = sealer.seal(&bob_key, &request(1000).encode().unwrap()).unwrap();
    assert_eq!(results(attacker.send(vec![too_many]).await), [DmResult::Rejected(RejectReason::TooLarge)]);
    let most = request(kith_p2p::peer_record::MAX_ADDRS);
    let most = sealer.seal(&bob_key, &most.encode().unwrap()).unwrap();
    assert_eq!(results(attacker.send(vec![most]).await), [DmResult::Stored]);

    let body = "x".repeat(BODY);
    let mut stored = 0;
    let mut sent = 0;
    while sent < FLOOD {
        let n = dm::MAX_BATCH.min(FLOOD - sent);
        let batch = (0..n).map(|i| sealer.seal(&bob_key, &text(&body, (sent + i) as u64)).unwrap()).collect();
        for result in results(attacker.send(batch).await) {
            match result {
                DmResult::Stored => stored += 1,
                DmResult::Rejected(RejectReason::Quota) => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        sent += n;
    }
    assert_eq!(stored, MAX_HELD_MESSAGES.min(MAX_HELD_BYTES / BODY));

    // Still serving: a contact's message is stored and the node answers its handle.
    let hello = Sealer::new(&alice, SealerConfig::default()).seal(&bob_key, &text("still here", 1)).unwrap();
    assert_eq!(results(attacker.send(vec![hello]).await), [DmResult::Stored]);
    node.status().await.unwrap();
    assert_eq!(texts_from_alice(&node), ["still here"]);

    let held = node.store().contacts().get(&stranger.peer_id()).unwrap().unwrap();
    assert_eq!(held.state, ContactState::PendingIn);
    assert_eq!((held.addrs.len(), held.relays.len()), (MAX_CONTACT_ADDRS, MAX_CONTACT_RELAYS));
    let conversation = ops::direct_conversation(&bob.peer_id(), &stranger.peer_id());
    let usage = node.store().messages().usage(conversation).unwrap();
    assert_eq!(usage.messages, stored);
    // On disk: what the bounds allow, whatever the flood's size. A held text costs its
    // body plus its keys in three trees and its CBOR fields (under 1 KiB); the contact
    // at most its bounded addresses and relays; sled logs every write and rewrites
    // pages as it goes, so allow four times that.
    const RECORD_OVERHEAD: usize = 1024;
    const SLED_WRITE_FACTOR: usize = 4;
    let held_bytes = MAX_HELD_MESSAGES * (BODY + RECORD_OVERHEAD);
    let contact_bytes = (MAX_CONTACT_ADDRS + MAX_CONTACT_RELAYS) * MAX_ADDR_LEN + RECORD_OVERHEAD;
    let bound = SLED_WRITE_FACTOR * (held_bytes + contact_bytes);
    assert!(bound < FLOOD * BODY / 100, "the bound is not a loose one");
    node.store().flush().unwrap();
    let grown = disk_use(&db).saturating_sub(before);
    // Plus the zeros the message log may have written ahead meanwhile, once.
    let bound = bound as u64 + kith_storage::LOG_WRITE_AHEAD;
    assert!(grown <= bound, "the database grew by {grown} bytes, more than {bound}");
    node.shutdown().await;
}

/// Issue 11: many strangers (identities are free) are held to
/// `MAX_PENDING_REQUESTS` requests at once; past that, new strangers are refused with
/// `Quota` while the held ones, and contacts, carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_strangers_are_held_to_a_bounded_number_of_requests() {
    use kith_p2p::requests::MAX_PENDING_REQUESTS;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.contacts().put(&contact_of(&alice)).unwrap();
    let (node, addr) = start_bob(&bob, store).await;
    let bob_key = bob.e2e_public();
    let mut attacker = Attacker::new(bob.peer_id(), addr);
    let strangers: Vec<Identity> = (0..MAX_PENDING_REQUESTS + 10).map(|_| Identity::generate()).collect();
    let mut answers = Vec::new();
    for chunk in strangers.chunks(dm::MAX_BATCH) {
        let batch = chunk
            .iter()
            .map(|s| Sealer::new(s, SealerConfig::default()).seal(&bob_key, &text("hi", 1)).unwrap())
            .collect();
        answers.extend(results(attacker.send(batch).await));
    }
    let mut expected = vec![DmResult::Stored; MAX_PENDING_REQUESTS];
    expected.extend([DmResult::Rejected(RejectReason::Quota); 10]);
    assert_eq!(answers, expected);
    assert_eq!(node.store().contacts().count(ContactState::PendingIn).unwrap(), MAX_PENDING_REQUESTS);
    // A held stranger may still write; a contact is not affected.
    let again = Sealer::new(&strangers[0], SealerConfig::default()).seal(&bob_key, &text("again", 2)).unwrap();
    let hello = Sealer::new(&alice, SealerConfig::default()).seal(&bob_key, &text("hello", 1)).unwrap();
    assert_eq!(results(attacker.send(vec![again, hello]).await), [DmResult::Stored, DmResult::Stored]);
    node.shutdown().await;
}
