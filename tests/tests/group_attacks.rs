//! Hostile strangers, members and former members against real daemons on 127.0.0.1
//! (issue 11). Where the real client refuses to misbehave, the attacker is a raw
//! client ([`kith_tests::raw::RawPeer`]) that seals real end-to-end envelopes as a
//! stranger or with a removed admin's own keys:
//!
//! - a stranger's `Create` under a group's id and its operations on the group's real
//!   heads, and a removed admin's back-dated operations, change nothing on any member;
//! - a stranger who adds us to its groups makes invitations (bounded per inviter)
//!   that wait for acceptance, and a declined one does not come back;
//! - a stranger's stream of operations for a made-up group that does not have us in it
//!   costs each arrival only its own work, and the node keeps chatting;
//! - Lamport counters at or past their cap are refused as malformed, without a panic;
//! - what a relay stores and what a gossip peer captures holds neither the group id
//!   nor any author's peer id.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kith_p2p::dm::{DmResult, RejectReason};
use kith_p2p::group::membership::{MemberCard, OpKind, SignedOp};
use kith_p2p::identity::Identity;
use kith_p2p::kith_storage::{GroupId, MessageId, Role};
use kith_p2p::libp2p::gossipsub;
use kith_p2p::libp2p::swarm::SwarmEvent;
use kith_p2p::libp2p::{Multiaddr, noise, tcp, yamux};
use kith_p2p::ops;
use kith_p2p::payload::{MAX_LAMPORT, Payload};
use kith_tests::group::{GROUP_DEADLINE, group, make_group, member_ids, members, stored_history, stored_secret, texts};
use kith_tests::raw::{RawPeer, identity_of};
use kith_tests::{Peer, Relay, contains_bytes, files_under, wait_until};

fn encoded(ops: &[SignedOp]) -> Vec<Vec<u8>> {
    ops.iter().map(|o| o.encode().unwrap()).collect()
}

fn group_ops(group: GroupId, ops: &[SignedOp]) -> Payload {
    Payload::GroupOps { group, ops: encoded(ops), hints: Vec::new() }
}

fn card(identity: &Identity) -> MemberCard {
    MemberCard::of(&identity.public())
}

#[test]
fn forged_creates_and_back_dated_operations_change_nothing() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let id = make_group(&peers, "club");
    let group_id: GroupId = id.parse().unwrap();
    peers[0].ok(&["group", "promote", "club", &peers[1].name]);
    wait_until(GROUP_DEADLINE, "everyone sees Bob as admin", || {
        peers.iter().all(|p| {
            group(p, &id).is_some_and(|g| {
                g["members"].as_array().unwrap().iter().any(|m| m["peer_id"] == peers[1].peer_id.as_str() && m["role"] == "admin")
            })
        })
    });
    // Bob keeps the history from when he was admin; then Alice removes him.
    peers[1].stop();
    let before_removal = stored_history(&peers[1], group_id);
    let bob = identity_of(&peers[1]);
    peers[0].ok(&["group", "remove", "club", &peers[1].peer_id]);
    let remaining = {
        let mut ids = vec![peers[0].peer_id.clone(), peers[2].peer_id.clone()];
        ids.sort();
        ids
    };
    wait_until(GROUP_DEADLINE, "Carol sees Bob removed", || group(&peers[2], &id).is_some_and(|g| member_ids(&g) == remaining));

    // A stranger who learned the group's id, and even its current heads.
    let mallory = Identity::generate();
    let now = ops::now_ms();
    let (_, stranger_create) = SignedOp::create(&mallory, "club", Vec::new(), now).unwrap();
    let add_mallory = OpKind::Add { member: card(&mallory), role: Role::Admin };
    let stranger_ops = [
        stranger_create,
        before_removal.sign(&mallory, now, add_mallory.clone()).unwrap(),
        before_removal.sign(&mallory, now, OpKind::Rename { name: "mallory's".into() }).unwrap(),
        before_removal.sign(&mallory, now, OpKind::Remove { peer: peers[2].peer_id.parse::<kith_p2p::libp2p::PeerId>().unwrap().to_bytes() }).unwrap(),
    ];
    // The removed admin back-dates operations to when he still was one.
    let carol: kith_p2p::libp2p::PeerId = peers[2].peer_id.parse().unwrap();
    let back_dated = [
        before_removal.sign(&bob, now, add_mallory).unwrap(),
        before_removal.sign(&bob, now, OpKind::Remove { peer: carol.to_bytes() }).unwrap(),
        before_removal.sign(&bob, now, OpKind::Rename { name: "taken over".into() }).unwrap(),
        before_removal.sign(&bob, now, OpKind::SetRole { peer: carol.to_bytes(), role: Role::Admin }).unwrap(),
    ];
    let mut as_mallory = RawPeer::new(mallory.clone());
    let mut as_bob = RawPeer::new(bob);
    for victim in [&peers[0], &peers[2]] {
        assert_eq!(as_mallory.send(victim, &[group_ops(group_id, &stranger_ops)]), vec![DmResult::Stored]);
        assert_eq!(as_bob.send(victim, &[group_ops(group_id, &back_dated)]), vec![DmResult::Stored]);
    }
    // Nothing changed on either member: same members and roles, same name, and the
    // members still agree with each other.
    for victim in [&peers[0], &peers[2]] {
        let g = group(victim, &id).unwrap();
        assert_eq!(member_ids(&g), remaining, "{}: members unchanged", victim.name);
        assert_eq!(g["name"], "club", "{}: name unchanged", victim.name);
        let carol_role = g["members"].as_array().unwrap().iter().find(|m| m["peer_id"] == peers[2].peer_id.as_str()).unwrap()["role"].clone();
        assert_eq!(carol_role, "member", "{}: roles unchanged", victim.name);
    }
    assert_eq!(group(&peers[0], &id).unwrap()["version"], group(&peers[2], &id).unwrap()["version"]);
    // The group still works for its members.
    peers[0].ok(&["send", "club", "still ours"]);
    wait_until(GROUP_DEADLINE, "Carol reads Alice", || texts(&peers[2].history(&id)).iter().any(|t| t == "still ours"));
}

#[test]
fn a_strangers_groups_are_invitations_until_answered() {
    let mut bob = Peer::init("Bob");
    bob.start(&[]);
    let mallory = Identity::generate();
    let bob_card = card(&identity_of(&bob));
    let mut as_mallory = RawPeer::new(mallory.clone());
    // Mallory makes three groups with Bob in them.
    let mut made = Vec::new();
    for name in ["free prizes", "more prizes", "even more"] {
        let (group, create) = SignedOp::create(&mallory, name, Vec::new(), ops::now_ms()).unwrap();
        let membership = kith_p2p::group::membership::Membership::new(create.clone()).unwrap();
        let add = membership.sign(&mallory, ops::now_ms(), OpKind::Add { member: bob_card.clone(), role: Role::Member }).unwrap();
        made.push((group, vec![create, add]));
    }
    let invites = |bob: &Peer| -> Vec<serde_json::Value> { bob.json(&["group", "invites", "--json"]).as_array().unwrap().clone() };
    assert_eq!(as_mallory.send(&bob, &[group_ops(made[0].0, &made[0].1)]), vec![DmResult::Stored]);
    let listed = invites(&bob);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["invited_by"], mallory.peer_id().to_string());
    assert_eq!(listed[0]["active"], false, "an invitation is not a group Bob is in");
    // Bob cannot post to it, and nothing of it is a conversation yet.
    let out = bob.run(&["send", "free prizes", "hi"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invitation"), "{}", String::from_utf8_lossy(&out.stderr));
    let inbox = bob.json(&["inbox", "--json"]);
    assert!(!inbox.to_string().contains(&made[0].0.to_string()), "no conversation for an invitation: {inbox}");

    // Past two open invitations from one inviter, new ones are dropped.
    for (group, ops) in &made[1..] {
        assert_eq!(as_mallory.send(&bob, &[group_ops(*group, ops)]), vec![DmResult::Stored]);
    }
    assert_eq!(invites(&bob).len(), 2);

    // Declined: gone, and sending it again does not bring it back.
    bob.ok(&["group", "decline", &made[1].0.to_string()]);
    assert_eq!(invites(&bob).len(), 1);
    as_mallory.send(&bob, &[group_ops(made[1].0, &made[1].1)]);
    assert!(!invites(&bob).iter().any(|g| g["id"] == made[1].0.to_string().as_str()));

    // Accepted: now Bob is in it.
    let joined = bob.json(&["group", "accept", "free prizes", "--json"]);
    assert_eq!(joined["active"], true);
    assert!(joined.get("invited_by").is_none_or(|v| v.is_null()));
    assert!(invites(&bob).is_empty());
    bob.ok(&["send", "free prizes", "hello"]);
}

/// Operations a stranger sends, one per payload, for a group it made up and that does
/// not have us in it.
const LIMBO_FLOOD_OPS: usize = 1_500;
/// How long Bob may take to answer one request of that flood.
const LIMBO_ANSWER_DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn a_strangers_stream_of_operations_for_a_made_up_group_leaves_the_node_chatting() {
    let (alice, bob) = kith_tests::connected_pair();
    // Mallory makes a group without Bob and renames it again and again, each change in
    // its own payload: all of it waits in Bob's limbo (a group that might add him
    // later). Folding the whole limbo again on every arrival made this quadratic:
    // minutes of one core for a few hundred kilobytes.
    let mallory = Identity::generate();
    let (group, create) = SignedOp::create(&mallory, "noise", Vec::new(), ops::now_ms()).unwrap();
    let mut membership = kith_p2p::group::membership::Membership::new(create.clone()).unwrap();
    let mut payloads = vec![group_ops(group, &[create])];
    for n in 0..LIMBO_FLOOD_OPS {
        let rename = membership.sign(&mallory, ops::now_ms(), OpKind::Rename { name: format!("noise {n}") }).unwrap();
        membership.insert(rename.clone()).unwrap();
        payloads.push(group_ops(group, &[rename]));
    }
    let mut as_mallory = RawPeer::new(mallory);
    for (n, batch) in payloads.chunks(kith_p2p::dm::MAX_BATCH).enumerate() {
        let asked = std::time::Instant::now();
        let results = as_mallory.send(&bob, batch);
        assert!(results.iter().all(|r| *r == DmResult::Stored), "{results:?}");
        // A liveness bound, not a benchmark: a request takes milliseconds when each
        // arrival costs its own work, and grew past it request by request when each
        // arrival folded everything held (≈ 5 ms per operation held, per request).
        let took = asked.elapsed();
        assert!(took < LIMBO_ANSWER_DEADLINE, "request {n} of the flood took {took:?}");
    }
    // Bob's node keeps up: his contact's message arrives, and nothing of the made-up
    // group became a group or an invitation.
    let msg = alice.json(&["send", "Bob", "still there?", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
    assert!(texts(&bob.history("Alice")).iter().any(|t| t == "still there?"));
    assert_eq!(bob.json(&["group", "list", "--json"]), serde_json::json!([]));
}

#[test]
fn counters_at_their_cap_are_refused_without_panic() {
    let (alice, mut bob) = kith_tests::connected_pair();
    bob.stop();
    let mut as_bob = RawPeer::new(identity_of(&bob));
    let text = |lamport| Payload::Text { id: MessageId(rand_id()), lamport, sent_at_ms: ops::now_ms(), text: "overflow".into(), file: None, link: None };
    let answers = as_bob.send(&alice, &[text(u64::MAX), text(MAX_LAMPORT + 1), text(MAX_LAMPORT)]);
    assert_eq!(
        answers,
        vec![DmResult::Rejected(RejectReason::Malformed), DmResult::Rejected(RejectReason::Malformed), DmResult::Stored]
    );
    // Alice's conversation counter sits at the cap, and stays there: both still talk.
    assert!(alice.run(&["status"]).status.success(), "Alice's node is still up");
    bob.start(&[]);
    alice.ok(&["send", "Bob", "are you there?"]);
    bob.ok(&["send", "Alice", "fine"]);
    wait_until(GROUP_DEADLINE, "Alice reads Bob", || texts(&alice.history("Bob")).iter().any(|t| t == "fine"));
    wait_until(GROUP_DEADLINE, "Bob reads Alice", || texts(&bob.history("Alice")).iter().any(|t| t == "are you there?"));
    let counters: Vec<u64> = alice.history("Bob").iter().map(|m| m["lamport"].as_u64().unwrap()).collect();
    assert!(counters.iter().all(|l| *l <= MAX_LAMPORT), "{counters:?}");
}

fn rand_id() -> [u8; 16] {
    *ops::new_message_id().as_bytes()
}

/// A gossipsub peer that joins a group's topic and records every message it sees.
struct Observer {
    captured: Arc<Mutex<Vec<gossipsub::Message>>>,
    _thread: std::thread::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Observer {
    fn start(topic: gossipsub::IdentTopic, dial: Vec<Multiaddr>) -> Observer {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sink = captured.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let config = gossipsub::ConfigBuilder::default()
                    // Accept messages with or without an author, parsing the author and
                    // sequence number when present, so that they would be seen.
                    .validation_mode(gossipsub::ValidationMode::Permissive)
                    .heartbeat_interval(Duration::from_millis(200))
                    .message_id_fn(|m: &gossipsub::Message| {
                        use std::hash::{Hash, Hasher};
                        let mut hasher = std::collections::hash_map::DefaultHasher::new();
                        m.data.hash(&mut hasher);
                        gossipsub::MessageId::from(hasher.finish().to_be_bytes().to_vec())
                    })
                    .build()
                    .unwrap();
                let mut swarm = kith_p2p::libp2p::SwarmBuilder::with_new_identity()
                    .with_tokio()
                    .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
                    .unwrap()
                    .with_behaviour(|_| gossipsub::Behaviour::<gossipsub::IdentityTransform>::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap())
                    .unwrap()
                    .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                    .build();
                swarm.behaviour_mut().subscribe(&topic).unwrap();
                for addr in dial {
                    swarm.dial(addr).unwrap();
                }
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        event = swarm.select_next_some() => {
                            if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                                sink.lock().unwrap().push(message);
                            }
                        }
                    }
                }
            });
        });
        Observer { captured, _thread: thread, stop }
    }

    fn captured(&self) -> Vec<gossipsub::Message> {
        self.captured.lock().unwrap().clone()
    }
}

#[test]
fn relays_and_gossip_peers_learn_neither_group_nor_authors() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let id = make_group(&peers, "club");
    let group_id: GroupId = id.parse().unwrap();
    // The observer joins the group's topic: it is given the topic's name (which a
    // stranger could not compute) and connects to two members.
    peers[2].stop();
    let secret = stored_secret(&peers[2], group_id);
    peers[2].start(&[]);
    let dial = peers[..2].iter().map(|p| p.addrs[0].parse().unwrap()).collect();
    let observer = Observer::start(kith_p2p::group::topic(&secret), dial);

    // Messages keep coming until the observer has captured some of every author's.
    let mut round = 0;
    wait_until(GROUP_DEADLINE, "the observer captures group messages", || {
        round += 1;
        for p in &peers {
            p.ok(&["send", "club", &format!("round {round} from {}", p.name)]);
        }
        observer.captured().len() >= 6
    });
    wait_until(GROUP_DEADLINE, "the relay holds every message", || {
        peers.iter().all(|p| p.history(&id).iter().all(|m| m["state"] != "pending"))
    });
    let captured = observer.captured();
    drop(observer.stop);

    let author_ids: Vec<(String, Vec<u8>)> = peers
        .iter()
        .map(|p| (p.peer_id.clone(), p.peer_id.parse::<kith_p2p::libp2p::PeerId>().unwrap().to_bytes()))
        .collect();
    let group_hex = group_id.to_string();
    let secrets_of = |bytes: &[u8], place: &str| {
        assert!(!contains_bytes(bytes, &group_id.0), "{place}: the group id's bytes");
        assert!(!contains_bytes(bytes, group_hex.as_bytes()), "{place}: the group id in hex");
        for (text, raw) in &author_ids {
            assert!(!contains_bytes(bytes, raw), "{place}: an author's peer id bytes");
            assert!(!contains_bytes(bytes, text.as_bytes()), "{place}: an author's peer id");
        }
    };
    assert!(captured.len() >= 6);
    for message in &captured {
        assert_eq!(message.source, None, "a gossip message names no author");
        assert_eq!(message.sequence_number, None);
        secrets_of(&message.data, "a captured gossip message");
    }
    // Everything the relay wrote: its group log (and any other store) holds neither.
    relay.stop();
    let stored: Vec<(std::path::PathBuf, Vec<u8>)> =
        files_under(&relay.data_dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    assert!(!stored.is_empty());
    for (path, bytes) in &stored {
        assert!(!contains_bytes(bytes, &group_id.0), "{}: the group id's bytes", path.display());
        assert!(!contains_bytes(bytes, group_hex.as_bytes()), "{}: the group id in hex", path.display());
    }
    let logs: Vec<&(std::path::PathBuf, Vec<u8>)> =
        stored.iter().filter(|(p, _)| p.to_string_lossy().contains("group")).collect();
    assert!(!logs.is_empty(), "the relay keeps group logs under its data dir: {:?}", stored.iter().map(|f| &f.0).collect::<Vec<_>>());
    for (path, bytes) in logs {
        secrets_of(bytes, &path.display().to_string());
    }
}
