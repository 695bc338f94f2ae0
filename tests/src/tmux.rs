//! A terminal as a person uses it: a private tmux server, driven with `send-keys` and
//! read with `capture-pane`.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a screen may take to show what a test waits for.
const SCREEN_DEADLINE: Duration = Duration::from_secs(60);

/// A private tmux server (its own socket, unique per test) with one session named
/// `kith`; the server is killed on drop.
#[derive(Debug)]
pub struct Tmux {
    server: String,
}

impl Tmux {
    /// A new private server, or `None` when tmux is not installed.
    pub fn new() -> Option<Tmux> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ok.then(|| Tmux { server: format!("kith-test-{}-{n}", std::process::id()) })
    }

    /// Starts the session running `command` (through the shell) in a `width`×`height`
    /// terminal, with `env` (`NAME=value`) set.
    pub fn start(&self, width: u16, height: u16, env: &[&str], command: &str) {
        let (width, height) = (width.to_string(), height.to_string());
        let mut args = vec!["new-session", "-d", "-s", "kith", "-x", &width, "-y", &height];
        for var in env {
            args.extend(["-e", var]);
        }
        args.push(command);
        let started = self.run(&args);
        assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    }

    /// Runs a tmux command against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").args(["-L", &self.server]).args(args).output().unwrap()
    }

    /// What the session's screen shows now.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "kith"]).stdout).into_owned()
    }

    /// Presses `keys` (tmux key names such as `Enter`, `C-n`, `F1`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "kith"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        assert!(self.run(&["send-keys", "-t", "kith", "-l", text]).status.success());
    }

    /// Waits until the screen satisfies `condition`; panics with the screen after a
    /// deadline.
    pub fn wait_for_screen(&self, what: &str, condition: impl Fn(&str) -> bool) {
        let end = Instant::now() + SCREEN_DEADLINE;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the session still runs (its command has not exited).
    pub fn session_alive(&self) -> bool {
        self.run(&["has-session", "-t", "kith"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
