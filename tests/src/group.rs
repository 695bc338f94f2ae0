//! Group helpers for end-to-end tests: members that pin a relay, a group every one of
//! them has joined, and what a member's node says about it.

use std::time::Duration;

use kith_p2p::group::GroupSecret;
use kith_p2p::group::membership::{Membership, SignedOp};
use kith_p2p::kith_storage::{GroupId, Store};
use serde_json::Value;

use crate::{Peer, Relay, connect, wait_until};

/// How long group changes and messages may take to reach every member.
pub const GROUP_DEADLINE: Duration = Duration::from_secs(60);

/// Started peers that pin `relay`, each a contact of the first.
pub fn members(relay: &Relay, names: &[&str]) -> Vec<Peer> {
    let mut peers: Vec<Peer> = names.iter().map(|n| Peer::init(n)).collect();
    for p in &mut peers {
        p.ok(&["relay", "add", &relay.addr()]);
        p.start(&[]);
    }
    for p in &peers[1..] {
        connect(&peers[0], p);
    }
    peers
}

/// The group as `peer`'s node knows it (`kith group members --json`), if it does.
pub fn group(peer: &Peer, name: &str) -> Option<Value> {
    let out = peer.run(&["group", "members", name, "--json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// A group's member peer ids, sorted.
pub fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        group["members"].as_array().unwrap().iter().map(|m| m["peer_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

/// The texts of a history, in order.
pub fn texts(history: &[Value]) -> Vec<String> {
    history.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

/// Create `name` on `owner` (the first peer) and add every other peer; wait until
/// all of them see all members. Returns the group id.
pub fn make_group(peers: &[Peer], name: &str) -> String {
    let owner = &peers[0];
    let created = owner.json(&["group", "create", name, "--json"]);
    let id = created["id"].as_str().unwrap().to_owned();
    for p in &peers[1..] {
        owner.ok(&["group", "add", name, &p.name]);
    }
    let mut all: Vec<String> = peers.iter().map(|p| p.peer_id.clone()).collect();
    all.sort();
    wait_until(GROUP_DEADLINE, "every member sees the whole group", || {
        peers.iter().all(|p| group(p, &id).is_some_and(|g| member_ids(&g) == all))
    });
    id
}

/// The history of a group as a (stopped) member's store holds it.
pub fn stored_history(peer: &Peer, group: GroupId) -> Membership {
    let store = Store::open(&kith_p2p::home::Home::at(peer.home()).db_path()).unwrap();
    let ops = store.groups().ops(group).unwrap().iter().map(|b| SignedOp::decode(b).unwrap()).collect();
    Membership::from_ops(ops).unwrap().0
}

/// The secret of a group, from a (stopped) member's store.
pub fn stored_secret(peer: &Peer, group: GroupId) -> GroupSecret {
    stored_history(peer, group).secret().clone()
}

/// The message `id` in `peer`'s history of `conversation` (a contact or group), once
/// `ready` holds for it (within [`GROUP_DEADLINE`]).
pub fn wait_message(peer: &Peer, conversation: &str, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(GROUP_DEADLINE, &format!("{}: {what}", peer.name), || {
        last = peer.history(conversation).into_iter().find(|m| m["id"] == id).unwrap_or(Value::Null);
        !last.is_null() && ready(&last)
    });
    last
}

/// The id of a message as `send --json` (or `edit`, `react`) printed it.
pub fn id_of(sent: &Value) -> String {
    sent["id"].as_str().unwrap().to_owned()
}
