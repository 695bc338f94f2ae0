//! Daemon lifecycle: SIGTERM and SIGINT stop it cleanly with everything kept.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kith_tests::{Peer, connect, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn sigterm_and_sigint_stop_cleanly_and_keep_everything() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);
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
