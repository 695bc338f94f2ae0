//! What a peer writes reaches the terminal without control sequences: the `kith`
//! binary's human output strips them, its `--json` output keeps the exact text.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::wait_until;

/// ESC sequences (colour, clear screen, cursor home, window title ended by BEL), other
/// C0 controls (CR, backspace, DEL), C1 controls (CSI, OSC, ST), bidi overrides and
/// isolates, and an ordinary second line.
const HOSTILE: &str = "\u{1b}[31mred\u{1b}[2J\u{1b}[H\u{1b}]0;owned\u{7} \r\u{8}\u{7f}\u{9b}2J\u{9d}0;t\u{9c} \
                       \u{202e}evil\u{202c} \u{2067}iso\u{2069}\nsecond line";

/// Any character a terminal would act on, except the line breaks between lines.
fn unsafe_chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| *c != '\n' && kith_p2p::display::is_unsafe(*c)).collect()
}

#[test]
fn peer_text_prints_without_control_sequences_and_intact_in_json() {
    let (mut alice, mut bob) = kith_tests::connected_pair();

    let sent = alice.json(&["send", "Bob", HOSTILE, "--wait", "delivered", "--json"]);
    assert_eq!(sent["state"], "delivered");
    wait_until(Duration::from_secs(60), "bob has the message", || bob.history("Alice").len() == 1);

    // --json: the exact text, as JSON escapes it (C0 controls, ESC among them, as
    // \u escapes; serde_json writes DEL, C1 and bidi characters as they are).
    let history = bob.history("Alice");
    assert_eq!(history[0]["text"], HOSTILE);
    let raw_json = bob.ok(&["history", "Alice", "--json"]);
    assert!(!raw_json.trim_end().chars().any(|c| c < ' '), "JSON output carries raw C0 controls: {raw_json:?}");
    assert!(raw_json.contains(r"\u001b[31mred"), "{raw_json:?}");

    // Human output: nothing a terminal would act on, the visible text still there.
    for args in [&["history", "Alice"][..], &["inbox"][..]] {
        let out = bob.ok(args);
        assert_eq!(unsafe_chars(&out), Vec::<char>::new(), "kith {args:?} printed {out:?}");
        assert!(out.contains("red") && out.contains("evil") && out.contains("iso"), "kith {args:?}: {out:?}");
    }
    let history = bob.ok(&["history", "Alice"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "one message of two lines: {history:?}");
    assert!(lines[1].trim_start().starts_with("second line"), "{history:?}");

    alice.stop();
    bob.stop();
}
