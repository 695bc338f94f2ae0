//! Daemon lifecycle: SIGTERM and SIGINT stop it cleanly with everything kept, and what
//! a command was answered for survives `kill -9` right after the answer.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kith_tests::{Peer, connect, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn sigterm_and_sigint_stop_cleanly_and_keep_everything() {
    let (mut alice, mut bob) = kith_tests::connected_pair();
    for i in 0..20 {
        alice.json(&["send", "Bob", &format!("before shutdown {i}"), "--json"]);
    }
    wait_until(DEADLINE, "Bob has all 20", || bob.history("Alice").len() == 20);
    // Only the owner may talk to a running node.
    let socket_mode = std::fs::metadata(bob.home().join("kith.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(socket_mode, 0o600, "the control socket is the owner's only");
    // Changes made right before the signal, with no time for background flushes.
    bob.ok(&["rename", "Alice", "Ally"]);
    bob.ok(&["read", "Ally"]);
    let status = bob.signal("TERM").unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(!bob.home().join("kith.sock").exists(), "control socket removed on shutdown");

    bob.start(&[]);
    assert_eq!(bob.history("Ally").len(), 20);
    assert_eq!(bob.json(&["inbox", "--json"]), serde_json::json!([]), "read state kept");
    let queued = alice.json(&["send", "Bob", "after restart", "--wait", "delivered", "--json"]);
    assert_eq!(queued["state"], "delivered");
    assert_eq!(bob.history("Ally").len(), 21);

    let status = alice.signal("INT").unwrap();
    assert!(status.success(), "SIGINT exit: {status:?}");
    // What Alice saw before the signal is what her store says after the restart.
    alice.start(&[]);
    let mine = alice.history("Bob");
    let last = mine.last().unwrap();
    assert_eq!(last["id"], queued["id"]);
    assert_eq!(last["state"], "delivered");
    assert_eq!(alice.json(&["status", "--json"])["outbox"], 0);
}

#[test]
fn contact_changes_survive_kill_9_right_after_they_are_answered() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    let mut carol = Peer::init("Carol");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.start(&[]);
    }
    connect(&alice, &bob);
    connect(&alice, &carol);
    let state = |alice: &Peer, who: &Peer| -> String {
        let contacts = alice.json(&["contacts", "--json"]);
        let contact = contacts.as_array().unwrap().iter().find(|c| c["peer_id"] == who.peer_id.as_str()).cloned();
        contact.map_or_else(|| "gone".to_owned(), |c| c["state"].as_str().unwrap().to_owned())
    };
    // Each answered change is on disk at once, not when the store next flushes.
    alice.ok(&["block", "Bob"]);
    alice.kill9();
    alice.start(&[]);
    assert_eq!(state(&alice, &bob), "blocked");
    alice.ok(&["remove", "Carol"]);
    alice.kill9();
    alice.start(&[]);
    assert_eq!(state(&alice, &carol), "gone");
}

/// Where `peer`'s message log is.
fn message_log(peer: &Peer) -> std::path::PathBuf {
    kith_tests::files_under(peer.home()).into_iter().find(|p| p.ends_with("messages.log")).unwrap()
}

/// The size of `peer`'s message log on disk.
fn message_log_bytes(peer: &Peer) -> u64 {
    std::fs::metadata(message_log(peer)).unwrap().len()
}

/// Alice and Bob, contacts, running; Alice's daemon looks every 200 ms whether its
/// message log is worth compacting.
fn compacting_pair() -> (Peer, Peer) {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.env.push(("KITH_LOG_COMPACTION_CHECK_MS".into(), "200".into()));
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);
    (alice, bob)
}

#[test]
fn a_removed_conversations_space_comes_back_while_chatting_and_nothing_else_is_lost() {
    let (mut alice, bob) = compacting_pair();
    for i in 0..10 {
        alice.ok(&["send", "Bob", &format!("before {i}")]);
    }
    // Carol never answers: 90 messages of 60 KB wait in Alice's outbox for her.
    let carol = Peer::init("Carol");
    alice.ok(&["add", &carol.peer_id, "--name", "Carol"]);
    send_long(&alice, "Carol", 90);
    let grown = message_log_bytes(&alice);
    assert!(grown > 10 << 20, "{grown} bytes");

    // Removing her makes all of it garbage; the running daemon compacts while Alice
    // and Bob go on writing to each other.
    alice.ok(&["remove", "Carol"]);
    for i in 0..10 {
        alice.ok(&["send", "Bob", &format!("during {i}")]);
        bob.ok(&["send", "Alice", &format!("reply {i}")]);
    }
    let log = message_log(&alice);
    wait_until(DEADLINE, "Alice's log compacted", || std::fs::metadata(&log).unwrap().len() < 1 << 20);
    let sent = alice.json(&["send", "Bob", "after", "--wait", "delivered", "--json"]);
    assert_eq!(sent["state"], "delivered");
    wait_until(DEADLINE, "Alice has Bob's replies", || alice.history("Bob").len() == 31);

    // Everything survives kill -9 right after, read back from the compacted file.
    let before = alice.history("Bob");
    alice.kill9();
    alice.start(&[]);
    let after = alice.history("Bob");
    assert_eq!(after, before);
    let texts: Vec<&str> = after.iter().map(|m| m["text"].as_str().unwrap()).collect();
    for i in 0..10 {
        assert!(texts.contains(&format!("before {i}").as_str()) && texts.contains(&format!("reply {i}").as_str()));
    }
    assert!(message_log_bytes(&alice) < 1 << 20);
    assert_eq!(bob.history("Alice").len(), 31);
}

/// Sends `count` messages of 60 KB from `from` to `to` (by name), one `kith send` each.
fn send_long(from: &Peer, to: &str, count: usize) {
    let long = "x".repeat(60_000);
    for _ in 0..count {
        let mut send = from.command(&["send", to, "-"]);
        send.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
        let mut child = send.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), long.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn kill_9_in_the_middle_of_a_compaction_loses_nothing() {
    let (mut alice, bob) = compacting_pair();
    // 6 MB that stay (a compaction copies them), and 15 MB queued for Carol.
    send_long(&alice, "Bob", 100);
    let carol = Peer::init("Carol");
    alice.ok(&["add", &carol.peer_id, "--name", "Carol"]);
    send_long(&alice, "Carol", 125);
    wait_until(DEADLINE, "Bob has all 100", || bob.history("Alice").len() == 100);
    wait_until(DEADLINE, "all 100 delivered", || {
        alice.history("Bob").iter().all(|m| m["state"] == "delivered")
    });
    let before = alice.history("Bob");
    let grown = message_log_bytes(&alice);

    // Removing Carol makes a compaction due; Alice's daemon dies while it copies.
    // The log's path is found once: polling must be quick to catch the copy.
    let log = message_log(&alice);
    let compacting = log.with_extension("log.compacting");
    alice.ok(&["remove", "Carol"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !compacting.exists() {
        assert!(std::time::Instant::now() < deadline, "no compaction began");
        assert!(std::fs::metadata(&log).unwrap().len() >= grown, "the compaction ended before it was seen");
        std::thread::yield_now();
    }
    alice.kill9();
    assert!(compacting.exists(), "killed before the new file took the log's place");

    // The restart throws the unfinished file away and compacts at open instead.
    alice.start(&[]);
    assert!(!compacting.exists());
    assert_eq!(alice.history("Bob"), before);
    // What stays is the 225 messages' texts (Carol's conversation outlives her
    // contact); every outbox entry, delivered or hers, is gone: about half the log.
    let now = message_log_bytes(&alice);
    let texts = 225 * 60_000;
    assert!(now < texts + (1 << 20), "{grown} bytes compacted to {now}, more than the {texts} bytes of texts");
    let sent = alice.json(&["send", "Bob", "after the crash", "--wait", "delivered", "--json"]);
    assert_eq!(sent["state"], "delivered");
    assert_eq!(bob.history("Alice").len(), 101);
}
