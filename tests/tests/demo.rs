//! `kith demo`, the README's first command: in a terminal it opens the interface with
//! an echo bot and a group of two bots that answer; through a pipe it is a line chat
//! with the echo bot. Either way a demo without `--home` leaves nothing behind.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kith_tests::tmux::Tmux;
use kith_tests::{kith_bin, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// Whether `dir` is empty (the demo cleaned up after itself).
fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// `kith demo` (with `--home` if given) with piped stdin and stdout, its temporary
/// home under `tmp`.
fn spawn_demo(tmp: &Path, home: Option<&Path>) -> std::process::Child {
    let mut command = Command::new(kith_bin());
    command.env("TMPDIR", tmp).env_remove("KITH_HOME").stdin(Stdio::piped()).stdout(Stdio::piped());
    if let Some(home) = home {
        command.arg("--home").arg(home);
    }
    command.arg("demo").spawn().unwrap()
}

/// `kith demo` with stdin and stdout pipes, its temp dir in `tmp`; returns its stdout.
fn piped_demo(tmp: &Path, home: Option<&Path>, input: &str) -> String {
    let mut child = spawn_demo(tmp, home);
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let mut exited = None;
    wait_until(DEADLINE, "the demo to exit once the bot answered", || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(exited.unwrap().success(), "{out}");
    out
}

#[test]
fn piped_demo_chats_with_the_echo_bot_and_removes_its_temp_home() {
    let tmp = tempfile::tempdir().unwrap();
    let out = piped_demo(tmp.path(), None, "hello bot\nsecond line\n");
    assert!(out.contains("echo> echo: hello bot"), "{out}");
    assert!(out.contains("echo> echo: second line"), "{out}");
    assert!(is_empty(tmp.path()), "the demo left files behind: {:?}", std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>());
}

#[test]
fn demo_with_a_home_keeps_it_and_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("demo-home");
    piped_demo(tmp.path(), Some(&home), "first run\n");
    assert!(home.join("you").exists(), "the demo's home is kept");
    let out = piped_demo(tmp.path(), Some(&home), "second run\n");
    assert!(out.contains("echo> echo: second run"), "{out}");
}

#[test]
fn demo_in_a_terminal_opens_the_interface_with_bots_that_answer() {
    let Some(tmux) = Tmux::new() else {
        return kith_tests::skip_or_fail("demo_in_a_terminal_opens_the_interface_with_bots_that_answer", "tmux is not installed");
    };
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = format!("TMPDIR={}", tmp.path().display());
    tmux.start(100, 30, &[&tmpdir], &format!("{} demo", kith_bin().display()));
    tmux.wait_for_screen("the echo bot's greeting", |s| s.contains("Hi! I am the echo bot"));

    tmux.type_text("ping");
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("the echo", |s| s.contains("echo: ping"));

    tmux.keys(&["C-n"]);
    tmux.wait_for_screen("the demo group", |s| s.contains("Welcome to the demo group"));
    tmux.type_text("hello group");
    tmux.keys(&["Enter"]);
    tmux.wait_for_screen("both group bots answering", |s| {
        s.contains("«puorg olleh»") && s.contains("11 characters, 2 words")
    });

    tmux.keys(&["C-c"]);
    wait_until(DEADLINE, "the demo exits", || !tmux.session_alive());
    assert!(is_empty(tmp.path()), "the demo left files behind: {:?}", std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>());
}


/// Sends `signal` (e.g. `-TERM`) to `child`.
fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_demo_stopped_by_a_signal_still_removes_its_temp_home() {
    // Mid-chat: a SIGTERM (a closed terminal sends SIGHUP, which the demo treats alike).
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_demo(tmp.path(), None);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"still there?\n").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    wait_until(DEADLINE, "the echo", || rx.try_iter().any(|line| line.contains("echo: still there?")));
    signal(&child, "-TERM");
    let mut exited = None;
    wait_until(DEADLINE, "the demo to stop on SIGTERM", || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    });
    drop(stdin);
    assert!(is_empty(tmp.path()), "left behind: {:?}", std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>());

    // During start-up: SIGINT as soon as it has a home, the first thing it makes
    // after taking its signals. Not before: a signal that comes while the demo
    // still has the disposition it inherited is lost if that is "ignore" (a test
    // run as a background job of a non-interactive shell inherits that for SIGINT).
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_demo(tmp.path(), None);
    wait_until(DEADLINE, "the demo to make its home", || !is_empty(tmp.path()));
    signal(&child, "-INT");
    wait_until(DEADLINE, "the demo to stop on SIGINT", || child.try_wait().unwrap().is_some());
    assert!(is_empty(tmp.path()), "left behind: {:?}", std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>());
}
