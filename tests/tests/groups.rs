//! Group chats with real daemons and a real relay on 127.0.0.1 (issue 5): five
//! members and a relay, members offline during 50 messages catching up exactly once
//! and in order, a removed member that can read nothing sent afterwards (checked on
//! the bytes the relay holds, with the keys the removed member has), concurrent
//! membership changes by two admins converging, a stranger's posts refused, and a
//! group change durable once answered, and fellow members becoming contacts.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::group::GroupSecret;
use kith_p2p::group::sender_key::{self, SenderKey};
use kith_p2p::grouplog::{self, GroupLogRequest, GroupLogResponse, LogItem};
use kith_p2p::kith_storage::{GroupId, Store};
use kith_p2p::libp2p::PeerId;
use kith_tests::group::{GROUP_DEADLINE, group, make_group, member_ids, members, texts};
use kith_tests::raw::ask_relay;
use kith_tests::{Peer, Relay, connect, wait_until};
use serde_json::Value;

const DEADLINE: Duration = GROUP_DEADLINE;

/// Wait until `peer`'s history of the group holds `expected` texts (in any order), then
/// return it.
fn wait_for_texts(peer: &Peer, group: &str, expected: usize) -> Vec<Value> {
    let mut last = Vec::new();
    wait_until(DEADLINE, &format!("{} has {expected} group messages", peer.name), || {
        last = peer.history(group);
        last.len() >= expected
    });
    last
}

#[test]
fn five_members_and_a_relay_with_two_members_catching_up() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol", "Dave", "Erin"]);
    let id = make_group(&peers, "club");

    // Every online member receives every member's message.
    for p in &peers {
        p.ok(&["send", "club", &format!("hello from {}", p.name)]);
    }
    for p in &peers {
        let history = wait_for_texts(p, &id, 5);
        let mut got = texts(&history);
        got.sort();
        let mut want: Vec<String> = peers.iter().map(|q| format!("hello from {}", q.name)).collect();
        want.sort();
        assert_eq!(got, want, "{} has exactly the five messages", p.name);
    }

    // Reading a group marks the four messages from others read.
    assert_eq!(peers[1].ok(&["read", "club"]).trim(), "marked 4 message(s) read");

    // Dave and Erin go offline; Alice writes 50 messages.
    peers[3].stop();
    peers[4].stop();
    for i in 0..50 {
        peers[0].ok(&["send", "club", &format!("while you were out {i:02}")]);
    }
    wait_until(DEADLINE, "the relay holds all 50 (sent)", || {
        let h = peers[0].history(&id);
        h.len() == 55 && h.iter().all(|m| m["direction"] == "incoming" || m["state"] == "sent")
    });
    for p in &peers[1..3] {
        wait_for_texts(p, &id, 55);
    }

    // Back online: they catch up from the relay's log, exactly once, in order.
    peers[3].start(&[]);
    peers[4].start(&[]);
    let expected: Vec<String> = (0..50).map(|i| format!("while you were out {i:02}")).collect();
    for p in &peers[3..] {
        let history = wait_for_texts(p, &id, 55);
        let mut ids: Vec<&str> = history.iter().map(|m| m["id"].as_str().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), history.len(), "{}: no message twice", p.name);
        let from_alice: Vec<String> = history
            .iter()
            .filter(|m| m["author"] == peers[0].peer_id.as_str() && m["text"].as_str().unwrap().starts_with("while"))
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(from_alice, expected, "{}: Alice's messages in her order", p.name);
    }
    // Histories converge: everyone holds the same messages in the same order.
    let reference: Vec<String> = peers[0].history(&id).iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    for p in &peers[1..] {
        let ids: Vec<String> = p.history(&id).iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, reference, "{}'s history matches Alice's", p.name);
    }
}

/// A minimal client of a relay's group log: what anyone who knows a group's secret
/// can fetch.
fn fetch_log(relay: &Relay, secret: &GroupSecret) -> Vec<LogItem> {
    let pages = ask_relay(relay, grouplog::Codec::default(), grouplog::PROTOCOL, |last| {
        let after = match last {
            None => 0,
            Some(GroupLogResponse::Page { items, more: true }) => items.last().map_or(0, |i| i.seq),
            Some(GroupLogResponse::Page { more: false, .. }) => return None,
            Some(other) => panic!("fetch refused: {other:?}"),
        };
        Some(GroupLogRequest::Fetch { log: grouplog::log_id(secret), after, limit: 256 })
    });
    pages
        .into_iter()
        .flat_map(|page| match page {
            GroupLogResponse::Page { items, .. } => items,
            other => panic!("fetch refused: {other:?}"),
        })
        .collect()
}

#[test]
fn a_removed_member_cannot_read_what_follows() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let id = make_group(&peers, "club");
    peers[2].ok(&["send", "club", "carol was here"]);
    peers[1].ok(&["send", "club", "before the removal"]);
    wait_for_texts(&peers[2], &id, 2);

    peers[0].ok(&["group", "remove", "club", &peers[2].peer_id]);
    wait_until(DEADLINE, "Carol learns she was removed", || {
        group(&peers[2], &id).is_some_and(|g| g["active"] == false)
    });
    wait_until(DEADLINE, "Bob sees two members", || {
        group(&peers[1], &id).is_some_and(|g| g["members"].as_array().unwrap().len() == 2)
    });
    // Sent after the removal: each member seals with a new key generation.
    peers[0].ok(&["send", "club", "secret from alice"]);
    peers[1].ok(&["send", "club", "secret from bob"]);
    wait_until(DEADLINE, "both secrets reach the relay and the other member", || {
        let a = texts(&peers[0].history(&id));
        let b = texts(&peers[1].history(&id));
        let both = |t: &[String]| t.iter().any(|x| x == "secret from alice") && t.iter().any(|x| x == "secret from bob");
        both(&a) && both(&b) && peers[0].history(&id).iter().chain(peers[1].history(&id).iter()).all(|m| m["state"] != "pending")
    });
    // Carol's node holds none of it.
    let carol_texts = texts(&peers[2].history(&id));
    assert!(!carol_texts.iter().any(|t| t.starts_with("secret")), "Carol stored: {carol_texts:?}");

    // What reached (or could reach) Carol: everything the relay logged for the group.
    // With every key Carol's node holds, the messages from before the removal open and
    // none from after it does.
    peers[2].stop();
    let group_id: GroupId = id.parse().unwrap();
    let secret = kith_tests::group::stored_secret(&peers[2], group_id);
    let store = Store::open(&kith_p2p::home::Home::at(peers[2].home()).db_path()).unwrap();
    let members: Vec<PeerId> = peers.iter().map(|p| p.peer_id.parse().unwrap()).collect();
    let items = fetch_log(&relay, &secret);
    let (mut readable, mut unreadable, mut own) = (0, 0, 0);
    for item in &items {
        let opened = sender_key::open(
            &item.bytes,
            group_id,
            &secret,
            |p| members.contains(p),
            |p, generation| {
                let (index, key) = store.groups().chain_key(group_id, &p.to_string(), generation).unwrap()?;
                Some(SenderKey { generation, index, key })
            },
        );
        match opened {
            Ok(_) => readable += 1,
            Err(kith_p2p::group::GroupError::UnknownKey { generation, .. }) => {
                assert!(generation >= 2, "an old-generation message Carol cannot open");
                unreadable += 1;
            }
            // Her own message: her chain moved past its key when she sent it (she
            // keeps the message itself, not the key).
            Err(kith_p2p::group::GroupError::BeforeKey { .. }) => own += 1,
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert_eq!((readable, own), (1, 1), "Carol can open Bob's message from before the removal, not re-derive her own's key");
    assert_eq!(unreadable, 2, "and neither secret sent after it ({} items logged)", items.len());
}

#[test]
fn concurrent_changes_by_two_admins_converge() {
    let mut relay = Relay::new("");
    relay.start();
    let peers = members(&relay, &["Alice", "Bob", "Carol", "Dave", "Erin"]);
    // Erin is Bob's contact too, so either admin could add her.
    connect(&peers[1], &peers[4]);
    let group_peers = &peers[..4];
    let id = make_group(group_peers, "club");
    peers[0].ok(&["group", "promote", "club", &peers[1].name]);
    wait_until(DEADLINE, "everyone sees Bob as admin", || {
        group_peers.iter().all(|p| {
            group(p, &id).is_some_and(|g| {
                g["members"].as_array().unwrap().iter().any(|m| m["peer_id"] == peers[1].peer_id.as_str() && m["role"] == "admin")
            })
        })
    });
    // At the same moment: Alice adds Erin, Bob removes Dave.
    let add = peers[0].command(&["group", "add", "club", &peers[4].peer_id]).spawn().unwrap();
    let remove = peers[1].command(&["group", "remove", "club", &peers[3].peer_id]).spawn().unwrap();
    assert!(add.wait_with_output().unwrap().status.success());
    assert!(remove.wait_with_output().unwrap().status.success());

    let mut want: Vec<String> = [&peers[0], &peers[1], &peers[2], &peers[4]].iter().map(|p| p.peer_id.clone()).collect();
    want.sort();
    wait_until(DEADLINE, "Alice, Bob, Carol and Erin agree on the membership", || {
        [&peers[0], &peers[1], &peers[2], &peers[4]].iter().all(|p| group(p, &id).is_some_and(|g| member_ids(&g) == want))
    });
    let versions: Vec<u64> =
        [&peers[0], &peers[1], &peers[2], &peers[4]].iter().map(|p| group(p, &id).unwrap()["version"].as_u64().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "the same history everywhere: {versions:?}");
    wait_until(DEADLINE, "Dave learns he was removed", || group(&peers[3], &id).is_some_and(|g| g["active"] == false));

    // The converged group works: Erin, added concurrently, reads Bob's next message.
    peers[1].ok(&["send", "club", "welcome Erin"]);
    wait_until(DEADLINE, "Erin reads Bob's message", || {
        texts(&peers[4].history(&id)).iter().any(|t| t == "welcome Erin")
    });
}

#[test]
fn non_members_cannot_post_and_groups_need_rights() {
    let mut relay = Relay::new("");
    relay.start();
    let peers = members(&relay, &["Alice", "Bob", "Mallory"]);
    let id = make_group(&peers[..2], "club");
    // Mallory knows no such group; naming it is an unknown contact (usage error).
    let out = peers[2].run(&["send", "club", "let me in"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // Bob is a plain member: he cannot add or remove anyone.
    let out = peers[1].run(&["group", "remove", "club", &peers[0].peer_id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("owner"), "{}", String::from_utf8_lossy(&out.stderr));
    // Alice cannot add a contact twice, and the group is still whole and working.
    let out = peers[0].run(&["group", "add", "club", &peers[1].name]);
    assert_eq!(out.status.code(), Some(2));
    peers[1].ok(&["send", "club", "still here"]);
    wait_until(DEADLINE, "Alice reads Bob", || texts(&peers[0].history(&id)).iter().any(|t| t == "still here"));
    assert_eq!(member_ids(&group(&peers[0], &id).unwrap()).len(), 2);
    // Leaving works and is seen by the others.
    peers[1].ok(&["group", "leave", "club"]);
    wait_until(DEADLINE, "Alice sees Bob leave", || {
        group(&peers[0], &id).is_some_and(|g| g["members"].as_array().unwrap().len() == 1)
    });
    let out = peers[1].run(&["send", "club", "am I still in?"]);
    assert_eq!(out.status.code(), Some(2), "a former member cannot post");
}

#[test]
fn fellow_members_become_contacts_by_peer_id() {
    let mut relay = Relay::new("");
    relay.start();
    let peers = members(&relay, &["Alice", "Bob", "Carol"]);
    make_group(&peers, "club");
    let (bob, carol) = (&peers[1], &peers[2]);
    // Bob and Carol know each other only through the group: neither lists the other.
    assert!(bob.contact(carol).is_none() && carol.contact(bob).is_none());
    bob.ok(&["add", &carol.peer_id, "--name", "carol"]);
    assert_eq!(bob.contact(carol).expect("Bob lists Carol")["state"], "pending_out");
    wait_until(DEADLINE, "Carol sees Bob's contact request", || {
        carol.contact(bob).is_some_and(|c| c["state"] == "pending_in")
    });
    carol.ok(&["accept", &bob.peer_id]);
    wait_until(DEADLINE, "Bob and Carol are contacts on both sides", || {
        let accepted = |p: &Peer, other: &Peer| p.contact(other).is_some_and(|c| c["state"] == "accepted");
        accepted(bob, carol) && accepted(carol, bob)
    });
    bob.ok(&["send", "carol", "hi, fellow member"]);
    wait_until(DEADLINE, "Carol reads Bob 1:1", || texts(&carol.history(&bob.peer_id)) == ["hi, fellow member"]);
}

#[test]
fn a_fellow_member_removed_before_our_request_left_never_gets_it_but_still_hears_the_group() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let id = make_group(&peers, "club");
    // Carol is away, and so is the relay that would keep mail for her; Bob asks her
    // to be a contact, thinks better of it and removes her.
    peers[2].stop();
    relay.stop();
    let (bob, carol) = (&peers[1], &peers[2]);
    bob.ok(&["add", &carol.peer_id, "--name", "carol"]);
    bob.ok(&["remove", "carol"]);
    assert!(bob.contact(carol).is_none(), "Bob no longer lists Carol");
    wait_until(DEADLINE, "Bob's request to Carol leaves his queue", || {
        bob.queue_for(carol).is_none_or(|q| q["waiting"].as_u64() == Some(0))
    });
    // Carol is back: the group still reaches her both ways, and no request ever came.
    relay.start();
    peers[2].start(&[]);
    let (bob, carol) = (&peers[1], &peers[2]);
    bob.ok(&["send", "club", "still in the club"]);
    carol.ok(&["send", "club", "me too"]);
    wait_until(DEADLINE, "Carol reads Bob in the group", || texts(&carol.history(&id)).iter().any(|t| t == "still in the club"));
    wait_until(DEADLINE, "Bob reads Carol in the group", || texts(&bob.history(&id)).iter().any(|t| t == "me too"));
    assert!(carol.contact(bob).is_none(), "Carol never got Bob's withdrawn request");
    assert!(bob.contact(carol).is_none());
}

#[test]
fn a_group_change_survives_kill_9_right_after_it_is_answered() {
    let mut alice = Peer::init("Alice");
    alice.start(&[]);
    // `kith group create` answered: the group is on disk, whatever happens next.
    alice.ok(&["group", "create", "club"]);
    alice.kill9();
    alice.start(&[]);
    let groups = alice.json(&["group", "list", "--json"]);
    let names: Vec<&str> = groups.as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["club"]);
}


#[test]
fn a_member_added_later_cannot_open_what_was_sent_before_with_everything_it_received() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let id = make_group(&peers[..2], "club");
    // Twenty messages before Carol joins, logged by the relay, from both members.
    for i in 0..20 {
        peers[i % 2].ok(&["send", "club", &format!("before {i}")]);
    }
    wait_for_texts(&peers[1], &id, 20);
    wait_until(DEADLINE, "the relay logs all twenty", || {
        peers[..2].iter().all(|p| p.history(&id).iter().all(|m| m["state"] != "pending"))
    });
    peers[0].ok(&["group", "add", "club", "Carol"]);
    wait_until(DEADLINE, "Carol is in the group", || group(&peers[2], &id).is_some_and(|g| g["members"].as_array().unwrap().len() == 3));
    peers[0].ok(&["send", "club", "after 0"]);
    peers[1].ok(&["send", "club", "after 1"]);
    wait_until(DEADLINE, "Carol gets what is sent after she joined", || {
        let got = texts(&peers[2].history(&id));
        got.contains(&"after 0".to_owned()) && got.contains(&"after 1".to_owned())
    });
    assert!(!texts(&peers[2].history(&id)).iter().any(|t| t.starts_with("before")), "Carol's node shows a message from before she joined");

    // Everything Carol's node holds (keys, secret) against everything the relay logged.
    peers[2].stop();
    let group_id: GroupId = id.parse().unwrap();
    let secret = kith_tests::group::stored_secret(&peers[2], group_id);
    let store = Store::open(&kith_p2p::home::Home::at(peers[2].home()).db_path()).unwrap();
    let items = fetch_log(&relay, &secret);
    let (mut before, mut after) = (0, 0);
    for item in &items {
        let opened = sender_key::open(&item.bytes, group_id, &secret, |_| true, |p, generation| {
            let (index, key) = store.groups().chain_key(group_id, &p.to_string(), generation).unwrap()?;
            Some(SenderKey { generation, index, key })
        });
        match opened {
            Ok(m) => {
                assert!(String::from_utf8_lossy(&m.plaintext).contains("after"), "Carol's keys opened an earlier message");
                after += 1;
            }
            Err(kith_p2p::group::GroupError::BeforeKey { .. }) => before += 1,
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert_eq!((before, after), (20, 2), "{} items logged", items.len());
}
