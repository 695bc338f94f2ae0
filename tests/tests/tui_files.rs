//! Files from the terminal interface (issue 15): `kith tui` in tmux sends a file
//! with `/file`, its path completed with Tab and relative to the directory the
//! interface was started in, and the peer's daemon receives it whole.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::tmux::Tmux;
use kith_tests::{kith_bin, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn tui_sends_a_file_typed_with_slash_file() {
    let Some(tmux) = Tmux::new() else {
        return kith_tests::skip_or_fail("tui_sends_a_file_typed_with_slash_file", "tmux is not installed");
    };
    let (alice, bob) = kith_tests::connected_pair();
    // The file sits in the directory the interface starts in: typed relative.
    let dir = alice.home().join("outbox dir");
    std::fs::create_dir_all(&dir).unwrap();
    let contents = "a file sent from the terminal interface\n".repeat(100);
    std::fs::write(dir.join("notes-from-tui.txt"), &contents).unwrap();
    let command = format!(
        "cd '{}' && {} --home {} tui",
        dir.display(),
        kith_bin().display(),
        alice.home().display()
    );
    tmux.start(110, 32, &["KITH_RETRY_MAX_MS=500"], &command);
    tmux.wait_for_screen("the conversation list", |s| s.contains("Bob") && s.contains("● connected"));
    tmux.keys(&["C-k"]);
    tmux.type_text("Bob");
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("Bob's conversation", |s| s.contains("Message Bob"));

    // Tab completes the relative path.
    tmux.type_text("/file notes-fr");
    tmux.keys(&["Tab"]);
    tmux.wait_for_screen("the completed path", |s| s.contains("/file notes-from-tui.txt"));
    tmux.type_text("the notes, as promised");
    tmux.keys(&["Enter"]);

    // Bob's daemon has the message and, small enough to fetch by itself, the file.
    wait_until(DEADLINE, "Bob receives the file", || {
        let files = bob.json(&["files", "--json"]);
        files.as_array().is_some_and(|files| {
            files.iter().any(|f| f["name"] == "notes-from-tui.txt" && f["state"] == "complete")
        })
    });
    let files = bob.json(&["files", "--json"]);
    let file = files.as_array().unwrap().iter().find(|f| f["name"] == "notes-from-tui.txt").unwrap();
    assert_eq!(file["size"], Value::from(contents.len()));
    let saved = file["path"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(saved).unwrap(), contents, "Bob's copy is byte for byte Alice's");
    let history = bob.history("Alice");
    assert!(history.iter().any(|m| m["text"] == "the notes, as promised"), "{history:?}");

    // Alice's screen shows the file message with its caption.
    tmux.wait_for_screen("the file message", |s| {
        s.contains("[file] notes-from-tui.txt") && s.contains("the notes, as promised")
    });
    tmux.keys(&["C-q"]);
    wait_until(DEADLINE, "the TUI exits", || !tmux.session_alive());
}
