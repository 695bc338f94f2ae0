//! Muting conversations from the CLI (issue 17): `kith mute` with and without
//! `--for`, `--json`, the mute lapsing by itself, `kith unmute`, and a muted
//! conversation still receiving. Real daemons on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::ops::now_ms;

use kith_tests::{Peer, connected_pair, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// `who`'s inbox entry for the contact `peer_id`, if it has unread messages.
fn inbox_entry(who: &Peer, peer_id: &str) -> Option<Value> {
    let inbox = who.json(&["inbox", "--json"]);
    inbox
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["contact"]["peer_id"] == peer_id)
        .cloned()
}

#[test]
fn mute_lapses_unmute_lifts_and_a_muted_conversation_still_receives() {
    let (alice, bob) = connected_pair();

    // Forever: no end time.
    let muted = alice.json(&["mute", "Bob", "--json"]);
    assert_eq!(muted["muted"], true, "{muted}");
    assert_eq!(muted["muted_until"], Value::Null, "{muted}");
    assert_eq!(muted["peer"], bob.peer_id.as_str(), "{muted}");
    assert!(alice.ok(&["mute", "Bob"]).contains("Bob: muted"));

    // Still delivered, counted unread, and the inbox says it is muted.
    bob.ok(&["send", "Alice", "are you there?"]);
    wait_until(DEADLINE, "Bob's message in Alice's inbox", || {
        inbox_entry(&alice, &bob.peer_id).is_some_and(|e| e["unread"] == 1)
    });
    let entry = inbox_entry(&alice, &bob.peer_id).unwrap();
    assert_eq!(entry["muted"], true, "{entry}");
    assert!(alice.ok(&["inbox"]).contains("(muted)"));

    // For two seconds: an end time, then it lapses by itself.
    let before = now_ms();
    let muted = alice.json(&["mute", "Bob", "--for", "2s", "--json"]);
    let until = muted["muted_until"]
        .as_u64()
        .unwrap_or_else(|| panic!("an end time: {muted}"));
    assert!(
        (before + 2_000..=now_ms() + 2_000).contains(&until),
        "{until} is 2 s from now"
    );
    assert_eq!(
        inbox_entry(&alice, &bob.peer_id).unwrap()["muted_until"],
        until
    );
    wait_until(DEADLINE, "the mute to lapse", || {
        inbox_entry(&alice, &bob.peer_id).unwrap()["muted"] == false
    });
    assert!(now_ms() >= until, "not before its end");

    // Unmute lifts a mute at once.
    alice.ok(&["mute", "Bob"]);
    let unmuted = alice.json(&["unmute", "Bob", "--json"]);
    assert_eq!(unmuted["muted"], false, "{unmuted}");
    assert_eq!(inbox_entry(&alice, &bob.peer_id).unwrap()["muted"], false);

    // Groups too, by name.
    alice.ok(&["group", "create", "club"]);
    let group = alice.json(&["mute", "club", "--for", "8h", "--json"]);
    assert_eq!(group["muted"], true, "{group}");
    assert_eq!(group["group"], group["conversation"], "{group}");
    assert!(group["muted_until"].as_u64().unwrap() >= now_ms() + 8 * 3_600_000 - 60_000);

    // Mistakes are usage errors.
    let out = alice.run(&["mute", "Bob", "--for", "soon", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = alice.run(&["mute", "Nobody", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mute_works_without_a_running_node() {
    let alice = Peer::init("Alice");
    // No contact: the offline path answers like the node does.
    let out = alice.run(&["mute", "Bob", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
