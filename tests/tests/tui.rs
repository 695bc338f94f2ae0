//! The terminal interface as a person runs it (issues 6 and 14): `kith tui` in tmux,
//! driven with send-keys and read with capture-pane, against real daemons.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::tmux::Tmux;
use kith_tests::{Peer, kith_bin, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// Start `kith tui` for `peer` in a `width`×`height` window.
fn open(tmux: &Tmux, peer: &Peer, width: u16, height: u16, extra: &str) {
    let command = format!("{} --home {} tui {extra}", kith_bin().display(), peer.home().display());
    tmux.start(width, height, &["KITH_RETRY_MAX_MS=500"], &command);
}

/// Bob sends Alice `texts`, in order; returns once her node holds them all.
fn bob_writes_to_alice(alice: &Peer, bob: &Peer, texts: &[String]) {
    let before = alice.history("Bob").len();
    for text in texts {
        bob.ok(&["send", "Alice", text]);
    }
    wait_until(DEADLINE, "Alice holds all of Bob's messages", || alice.history("Bob").len() == before + texts.len());
}

#[test]
fn tui_in_tmux_sends_and_receives() {
    let Some(tmux) = Tmux::new() else {
        return kith_tests::skip_or_fail("tui_in_tmux_sends_and_receives", "tmux is not installed");
    };
    let (mut alice, bob) = kith_tests::connected_pair();
    // Alice closes her daemon: the TUI runs her node itself.
    alice.stop();

    open(&tmux, &alice, 110, 32, "--no-mdns --listen /ip4/127.0.0.1/tcp/0");
    tmux.wait_for_screen("the conversation list", |s| s.contains("Bob"));
    // Scripts keep working alongside the TUI: its node serves the control socket.
    wait_until(DEADLINE, "Alice's control socket", || alice.run(&["status", "--json"]).status.success());
    // The help says that quitting stops this node (no daemon runs it).
    tmux.keys(&["F1"]);
    tmux.wait_for_screen("the help", |s| s.contains("Help · Esc closes"));
    // The keys run past 32 rows: the quitting line is further down.
    tmux.keys(&["PageDown"]);
    tmux.wait_for_screen("the help on quitting", |s| s.contains("quit and stop the node"));
    assert!(!tmux.screen().contains("keeps running"));
    tmux.keys(&["Escape"]);
    tmux.wait_for_screen("the help closed", |s| !s.contains("Help · Esc closes"));

    // Open the conversation with the quick switcher and type a message.
    tmux.keys(&["C-k"]);
    tmux.type_text("Bob");
    tmux.keys(&["Enter"]);
    let typed = "Привет из терминала 👋 漢字";
    tmux.type_text(typed);
    tmux.keys(&["Enter"]);
    wait_until(DEADLINE, "Bob receives the typed text", || {
        bob.history("Alice").iter().any(|m| m["text"] == typed)
    });
    tmux.wait_for_screen("the sent text on Alice's screen", |s| s.contains("Привет из терминала"));

    // An incoming message appears in the TUI.
    bob.json(&["send", "Alice", "reply from the daemon side", "--json"]);
    tmux.wait_for_screen("the incoming message", |s| s.contains("reply from the daemon side"));

    // Quitting stops the in-process node cleanly.
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
    wait_until(DEADLINE, "the control socket is gone", || !alice.home().join("kith.sock").exists());
    assert_eq!(alice.history("Bob").len(), 2, "both messages kept in Alice's store");
}

/// Alice and Bob, contacts, each with a daemon, and Alice's TUI open on hers (one
/// more client of it) showing the list; `None` (after saying so) without tmux.
fn alice_in_tmux_with_bob(test: &str) -> Option<(Tmux, Peer, Peer)> {
    alice_in_tmux_with_bob_after(test, |_, _| {})
}

/// [`alice_in_tmux_with_bob`], running `before` (with Alice and Bob) before the TUI opens.
fn alice_in_tmux_with_bob_after(test: &str, before: impl FnOnce(&Peer, &Peer)) -> Option<(Tmux, Peer, Peer)> {
    let Some(tmux) = Tmux::new() else {
        kith_tests::skip_or_fail(test, "tmux is not installed");
        return None;
    };
    let (alice, bob) = kith_tests::connected_pair();
    before(&alice, &bob);
    open(&tmux, &alice, 110, 32, "");
    tmux.wait_for_screen("the conversation list", |s| s.contains("Bob") && s.contains("● connected"));
    Some((tmux, alice, bob))
}

#[test]
fn tui_reconnects_when_the_daemon_restarts() {
    let Some((tmux, mut alice, bob)) = alice_in_tmux_with_bob("tui_reconnects_when_the_daemon_restarts") else {
        return;
    };

    // The daemon restarts (on the same address, so Bob finds it again).
    let addr = alice.addrs[0].clone();
    alice.stop();
    tmux.wait_for_screen("the countdown to reconnecting", |s| s.contains("✗ disconnected · reconnecting"));
    assert!(tmux.session_alive(), "the TUI keeps running without its node");
    alice.start_on(&[&addr], &[]);
    tmux.wait_for_screen("connected again", |s| s.contains("● connected") && !s.contains("✗ disconnected"));

    // Subscribed again: a new message shows without reopening the TUI.
    bob.json(&["send", "Alice", "written after the restart", "--json"]);
    tmux.wait_for_screen("the message sent after the restart", |s| s.contains("written after the restart"));
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
    assert!(alice.run(&["status", "--json"]).status.success(), "quitting the TUI left the daemon running");
}

#[test]
fn tui_opens_a_conversation_at_its_first_unread_message() {
    let Some(tmux) = Tmux::new() else {
        return kith_tests::skip_or_fail("tui_opens_a_conversation_at_its_first_unread_message", "tmux is not installed");
    };
    let (alice, bob) = kith_tests::connected_pair();
    // One of ours, then more unread messages from Bob than the pane has rows.
    alice.ok(&["send", "Bob", "ours, before the unread ones"]);
    let unread: Vec<String> = (1..=30).map(|n| format!("unread {n:02}")).collect();
    bob_writes_to_alice(&alice, &bob, &unread);

    open(&tmux, &alice, 110, 32, "");
    tmux.wait_for_screen("the new-messages line", |s| s.contains("new messages") && s.contains("unread 01"));
    let screen = tmux.screen();
    let rows: Vec<&str> = screen.lines().collect();
    let line = rows.iter().position(|r| r.contains("new messages")).unwrap();
    assert!(rows[line + 1].contains("Bob: unread 01"), "the first unread message is right below the line:\n{screen}");
    assert!(rows[..line].iter().all(|r| !r.contains("Bob: unread")), "no unread message above the line:\n{screen}");
    // The newest is below the view (only the list's preview shows it).
    assert_eq!(screen.matches("unread 30").count(), 1, "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for_screen("the newest message after Esc", |s| s.contains("Bob: unread 30"));
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
}

#[test]
fn tui_keeps_a_paste_too_long_to_send_and_stays_connected() {
    let test = "tui_keeps_a_paste_too_long_to_send_and_stays_connected";
    let Some((tmux, alice, bob)) = alice_in_tmux_with_bob(test) else { return };
    tmux.keys(&["C-k"]);
    tmux.type_text("Bob");
    tmux.keys(&["Enter"]);

    // A paste over what a message holds (64 KiB), as one bracketed paste.
    let paste = alice.home().join("paste.txt");
    std::fs::write(&paste, "x".repeat(70 * 1024)).unwrap();
    assert!(tmux.run(&["load-buffer", &paste.display().to_string()]).status.success());
    assert!(tmux.run(&["paste-buffer", "-p", "-t", "kith"]).status.success());
    tmux.wait_for_screen("the paste in the input", |s| s.contains("xxxxxxxxxxxxxxxxxxxx"));
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("the refusal", |s| s.contains("too long to send: 70 KiB"));
    assert!(tmux.screen().contains("xxxxxxxxxxxxxxxxxxxx"), "the text stays in the input");

    // Still connected: the next message goes through.
    tmux.keys(&["C-u"]);
    tmux.wait_for_screen("the input emptied", |s| !s.contains("xxxxxxxxxxxxxxxxxxxx"));
    tmux.type_text("a short one");
    tmux.keys(&["Enter"]);
    wait_until(DEADLINE, "Bob receives the short message", || {
        bob.history("Alice").iter().any(|m| m["text"] == "a short one")
    });
    assert!(tmux.screen().contains("● connected"), "{}", tmux.screen());
    assert!(bob.history("Alice").iter().all(|m| m["text"] != "x".repeat(70 * 1024)));
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
}

#[test]
fn tui_search_finds_an_old_message_and_enter_opens_it_in_its_conversation() {
    let texts: Vec<String> = std::iter::once("Встреча в пятницу".to_owned()).chain((1..=60).map(|n| format!("filler {n:02}"))).collect();
    let test = "tui_search_finds_an_old_message_and_enter_opens_it_in_its_conversation";
    let Some((tmux, _alice, _bob)) = alice_in_tmux_with_bob_after(test, |a, b| bob_writes_to_alice(a, b, &texts)) else {
        return;
    };

    // Ctrl+F, a form of the word in capitals: found as she types, no Enter needed.
    tmux.keys(&["C-f"]);
    tmux.type_text("ВСТРЕЧИ");
    tmux.wait_for_screen("the hit", |s| s.contains("Встреча в пятницу") && s.contains("1 message"));
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("the hit in its conversation", |s| {
        !s.contains("Search all conversations") && s.contains("Bob: Встреча в пятницу") && !s.contains("Bob: filler 60")
    });

    // A query with no words says so; Esc closes the overlay.
    tmux.type_text("/search ?!");
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("the refusal", |s| s.contains("the query has no words to look for"));
    tmux.keys(&["Escape"]);
    tmux.wait_for_screen("the overlay closed", |s| !s.contains("the query has no words to look for"));
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
}

#[test]
fn tui_shows_a_contacts_status_and_profile_and_sets_ours() {
    let test = "tui_shows_a_contacts_status_and_profile_and_sets_ours";
    let Some((tmux, alice, bob)) = alice_in_tmux_with_bob(test) else {
        return;
    };
    // Bob's status reaches Alice's header while her TUI runs.
    bob.ok(&["profile", "set", "--status", "at the lake"]);
    tmux.keys(&["C-k"]);
    tmux.type_text("Bob");
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("Bob's status in the header", |s| s.contains("at the lake"));

    // The overlay shows his profile; Esc closes it.
    tmux.type_text("/profile Bob");
    tmux.keys(&["Enter"]);
    // (The peer id is shown whole, broken over two lines.)
    let start = &bob.peer_id[..20];
    tmux.wait_for_screen("the profile overlay", |s| s.contains("Profile · Esc closes") && s.contains(start) && s.contains("Status    at the lake"));
    tmux.keys(&["Escape"]);
    tmux.wait_for_screen("the overlay closed", |s| !s.contains("Profile · Esc closes"));

    // Her own status, set from the TUI, reaches Bob.
    tmux.type_text("/status gone fishing");
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("the confirmation", |s| s.contains("profile updated"));
    wait_until(DEADLINE, "Bob has Alice's new status", || {
        bob.json(&["profile", "show", "Alice", "--json"])["status"] == "gone fishing"
    });
    assert_eq!(alice.json(&["profile", "show", "--json"])["status"], "gone fishing");
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
}
