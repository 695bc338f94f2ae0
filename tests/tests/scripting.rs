//! The CLI as a script writer uses it (issue 14): errors as JSON under `--json` with
//! the documented exit codes, invites pasted with line breaks, `send -` and its waits,
//! one message and the unsent ones, `follow` ending when the node does, settings one
//! key at a time, man pages and name completion. Real daemons on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::Duration;

use kith_tests::{Peer, kith_bin, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// The one JSON object a failed `--json` command printed on stderr.
fn json_error(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn json_errors_are_one_object_on_stderr_with_the_exit_codes() {
    let mut alice = Peer::init("Alice");
    // No node running: exit 3, code no_node.
    let out = alice.run(&["send", "Bob", "hi", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let error = json_error(&out);
    assert_eq!(error["error"]["code"], "no_node", "{error}");
    assert_eq!(error["error"]["exit"], 3);
    assert!(stdout(&out).is_empty());
    // Bad usage caught by the parser: exit 2, code usage.
    let out = alice.run(&["send", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_error(&out)["error"]["code"], "usage");
    // The node's own code, from a running node: exit 2, code unknown_contact.
    alice.start(&[]);
    let out = alice.run(&["send", "Nobody", "hi", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let error = json_error(&out);
    assert_eq!(error["error"]["code"], "unknown_contact", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("Nobody"), "{error}");
    // Without --json the same error is one line for people.
    let out = alice.run(&["send", "Nobody", "hi"]);
    assert!(stderr(&out).starts_with("kith: "), "{}", stderr(&out));
}

#[test]
fn a_file_that_cannot_be_read_and_a_file_or_call_that_does_not_exist_are_usage_errors() {
    let mut alice = Peer::init("Alice");
    alice.start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    // Each is the caller's mistake (exit 2, docs/CLI.md), not the node's bug.
    for (args, code) in [
        (vec!["send-file", "Alice", missing.to_str().unwrap(), "--json"], "invalid"),
        (vec!["send-file", "Alice", dir.path().to_str().unwrap(), "--json"], "invalid"),
        (vec!["get", "ffffffffffff", "--json"], "unknown_file"),
        (vec!["hangup", "ffffffff", "--json"], "unknown_call"),
    ] {
        let out = alice.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(json_error(&out)["error"]["code"], code, "{args:?}");
    }
}

#[test]
fn a_message_too_large_for_the_control_socket_says_so() {
    let mut alice = Peer::init("Alice");
    alice.start(&[]);
    let mut child = alice.command(&["send", "Bob", "-", "--json"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&vec![b'x'; 2 << 20]).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json_error(&out)["error"]["code"], "too_large", "not just a closed connection");
}

#[test]
fn an_invite_pasted_over_several_lines_works_and_a_cut_one_says_so() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.start(&[]);
    bob.start(&[]);
    let invite = alice.invite();
    let cut = bob.run(&["add", &invite[..80], "--json"]);
    assert_eq!(cut.status.code(), Some(2));
    assert!(json_error(&cut)["error"]["message"].as_str().unwrap().contains("truncated"), "{}", stderr(&cut));

    // As a terminal wraps it, indented, with a trailing newline.
    let wrapped: String = invite.as_bytes().chunks(60).map(|c| format!("  {}\n", std::str::from_utf8(c).unwrap())).collect();
    let out = bob.ok(&["add", &wrapped, "--name", "Alice", "--timeout", "60"]);
    assert!(out.contains("Alice is now a contact"), "{out}");
}

#[test]
fn send_from_stdin_drops_one_final_newline() {
    let (alice, bob) = kith_tests::connected_pair();
    for (input, expected) in [("from echo\n", "from echo"), ("two lines\n\n", "two lines\n"), ("no newline", "no newline")] {
        let mut child = alice.command(&["send", "Bob", "-", "--json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let message: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(message["text"], expected);
    }
    wait_until(DEADLINE, "Bob has the three", || bob.history("Alice").len() == 3);
}

#[test]
fn waits_beyond_sent_are_refused_for_groups_at_once() {
    let (alice, bob) = kith_tests::connected_pair();
    alice.ok(&["group", "create", "club"]);
    alice.ok(&["group", "add", "club", "Bob"]);
    wait_until(DEADLINE, "Bob in the club", || bob.json(&["group", "list", "--json"]).as_array().unwrap().len() == 1);
    let out = alice.run(&["send", "club", "hello", "--wait", "delivered", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let error = json_error(&out);
    assert!(error["error"]["message"].as_str().unwrap().contains("--wait sent"), "{error}");
    assert!(alice.history("club").is_empty(), "nothing was sent");
    let sent = alice.json(&["send", "club", "hello", "--wait", "sent", "--json"]);
    assert_eq!(sent["state"], "sent");
}

#[test]
fn wait_read_returns_once_the_contact_reads() {
    let (alice, bob) = kith_tests::connected_pair();
    let waiting = alice
        .command(&["send", "Bob", "read me", "--wait", "read", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(DEADLINE, "Bob has it", || !bob.history("Alice").is_empty());
    bob.ok(&["read", "Alice"]);
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap()["state"], "read");
}

#[test]
fn a_timed_out_wait_still_prints_the_message_and_unsent_lists_it() {
    let (alice, mut bob) = kith_tests::connected_pair();
    bob.stop();
    let out = alice.run(&["send", "Bob", "while you were out", "--wait", "delivered", "--timeout", "1", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_error(&out)["error"]["code"], "timeout");
    let message: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = message["id"].as_str().unwrap();
    assert_eq!(message["text"], "while you were out");

    // One message, with the contact it belongs to.
    let one = alice.json(&["message", id, "--json"]);
    assert_eq!(one["peer"], bob.peer_id.as_str());
    assert_eq!(one["state"], "pending");
    let shown = alice.ok(&["message", id]);
    let row = |key: &str| shown.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_default().to_owned();
    assert!(row("conversation").ends_with(" Bob"), "{shown}");
    assert!(row("from").ends_with(" you"), "{shown}");
    assert!(!shown.contains(&bob.peer_id[bob.peer_id.len() - 8..]), "no peer id where a name is known: {shown}");

    // Listed as unsent until it leaves.
    let unsent = alice.json(&["unsent", "--json"]);
    assert_eq!(unsent.as_array().unwrap().len(), 1, "{unsent}");
    assert_eq!(unsent[0]["id"], id);
    assert!(alice.ok(&["unsent"]).contains("while you were out"));
    bob.start(&[]);
    wait_until(DEADLINE, "nothing unsent", || alice.json(&["unsent", "--json"]).as_array().unwrap().is_empty());
}

#[test]
fn follow_exits_non_zero_when_the_node_stops() {
    let (mut alice, bob) = kith_tests::connected_pair();
    let mut follow = alice.command(&["follow"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Subscribed once an event comes through.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut lines, &mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    // `follow` may not have subscribed yet when the first message lands: write until
    // one shows up on it.
    wait_until(DEADLINE, "an event on follow", || {
        bob.ok(&["send", "Alice", "are you following?"]);
        rx.recv_timeout(Duration::from_millis(200)).is_ok()
    });
    alice.stop();
    let out = follow.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the node stopped"), "{}", stderr(&out));
}

#[test]
fn human_history_shows_names_and_you_never_peer_ids() {
    let (alice, bob) = kith_tests::connected_pair();
    bob.ok(&["send", "Alice", "first"]);
    wait_until(DEADLINE, "Bob's in Alice's history", || alice.history("Bob").len() == 1);
    alice.ok(&["send", "Bob", "second"]);
    let out = alice.ok(&["history", "Bob"]);
    let lines: Vec<&str> = out.lines().collect();
    // `HH:MM who text mark`, authors in one column.
    assert!(lines[0][6..].starts_with("Bob first"), "{out}");
    assert!(lines[1][6..].starts_with("you second"), "{out}");
    assert!(!out.contains(&bob.peer_id[bob.peer_id.len() - 8..]), "{out}");
}

#[test]
fn config_get_and_set_one_key_validated() {
    let alice = Peer::init("Alice");
    alice.ok(&["config", "set", "display_name", "Alice Liddell"]);
    assert_eq!(alice.ok(&["config", "get", "display_name"]).trim(), "Alice Liddell");
    alice.ok(&["config", "set", "mdns", "off"]);
    assert_eq!(alice.json(&["config", "get", "mdns", "--json"]), Value::Bool(false));
    let before = std::fs::read_to_string(alice.home().join("config.toml")).unwrap();
    let bad = alice.run(&["config", "set", "listen", "/ip4/not-an-address"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("listen") && stderr(&bad).contains("not-an-address"), "{}", stderr(&bad));
    assert_eq!(std::fs::read_to_string(alice.home().join("config.toml")).unwrap(), before, "nothing half-written");
    let unknown = alice.run(&["config", "get", "colour"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("display_name"), "lists the settings: {}", stderr(&unknown));
}

#[test]
fn man_pages_and_name_completion() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(kith_bin()).arg("manpages").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["kith.1", "kith-send.1", "kith-group-add.1", "kith-config-set.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }

    let (alice, _bob) = kith_tests::connected_pair();
    alice.ok(&["group", "create", "book club"]);
    let names = alice.ok(&["complete-names"]);
    assert_eq!(names.lines().collect::<Vec<_>>(), ["Bob", "book club"], "{names}");
    let script = alice.ok(&["completions", "bash"]);
    assert!(script.contains("complete-names") && script.contains("complete -F _kith_with_names"), "bash completes names");
}

#[test]
fn zsh_completes_contact_and_group_names() {
    if std::process::Command::new("zsh").arg("--version").output().is_err() {
        return kith_tests::skip_or_fail("zsh_completes_contact_and_group_names", "zsh is not installed");
    }
    let (alice, _bob) = kith_tests::connected_pair();
    alice.ok(&["group", "create", "book: club"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("_kith");
    std::fs::write(&script, alice.ok(&["completions", "zsh"])).unwrap();
    assert!(alice.ok(&["completions", "zsh"]).contains(":contact -- Alias, peer id, or a unique prefix of either:_kith_names"));
    // The names completer as zsh runs it, with `_describe` standing in for the
    // completion system: it must hand over the contact and the group, colons escaped.
    let driver = format!(
        "autoload -U compinit && compinit -u -d {dump}\nsource {script}\n\
         _describe() {{ print -rl -- \"${{(@P)4}}\" }}\ntypeset -A opt_args\nopt_args[--home]={home}\n_kith_names\n",
        dump = dir.path().join("zcompdump").display(),
        script = script.display(),
        home = alice.home().display(),
    );
    let bin = kith_bin();
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("zsh").arg("-f").arg("-c").arg(&driver).env("PATH", path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), ["Bob", "book\\: club"], "{}", stderr(&out));
}

#[test]
fn the_systemd_user_unit_matches_the_binary() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../cli/kith.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_owned()
    };
    assert!(value("ExecStart").ends_with("/kith daemon"), "{}", value("ExecStart"));
    // The pages Documentation= names are among those `kith manpages` writes.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(kith_bin()).arg("manpages").arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    for page in value("Documentation").split_whitespace() {
        let name = page.strip_prefix("man:").unwrap().replace("(1)", ".1");
        assert!(dir.path().join(&name).exists(), "{page}: no {name}");
    }
    // A node that cannot start for its config exits with the code systemd must not
    // restart on.
    let alice = Peer::init("Alice");
    std::fs::write(alice.home().join("config.toml"), "listen = [\"/ip4/nope\"]\n").unwrap();
    let out = alice.run(&["daemon"]);
    assert_eq!(out.status.code().map(|c| c.to_string()), Some(value("RestartPreventExitStatus")), "{}", stderr(&out));
}
