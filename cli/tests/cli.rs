//! The `kith` binary as a user runs it: fresh temp homes, env cleared, real files.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kith_p2p::invite::Invite;

const PASS: &str = "correct horse battery staple";

/// `kith --home <home> args...` with a clean environment and no stdin.
fn kith(home: &Path, passphrase: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null());
    if let Some(p) = passphrase {
        cmd.env("KITH_PASSPHRASE", p);
    }
    cmd.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kith failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file below `root` with its bytes: "nothing on disk changed" compares two of these.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn new_home() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("kith");
    (dir, home)
}

#[test]
fn init_then_id_round_trips_peer_id_through_invite() {
    let (_dir, home) = new_home();
    let created: serde_json::Value =
        serde_json::from_str(&ok(kith(&home, Some(PASS), &["init", "--name", "Ada", "--json"])))
            .unwrap();
    assert_eq!(created["encrypted"], true);

    let id: serde_json::Value =
        serde_json::from_str(&ok(kith(&home, Some(PASS), &["id", "--json"]))).unwrap();
    let peer_id = id["peer_id"].as_str().unwrap();
    assert_eq!(peer_id, created["peer_id"].as_str().unwrap());
    assert_eq!(id["display_name"], "Ada");
    let fingerprint = id["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.split(' ').count(), 12, "{fingerprint}");
    assert!(fingerprint.chars().all(|c| c.is_ascii_digit() || c == ' '));

    let invite: Invite = id["invite"].as_str().unwrap().parse().unwrap();
    assert_eq!(invite.peer_id.to_string(), peer_id);
    assert_eq!(bs58::encode(invite.e2e_public).into_string(), id["e2e_public"].as_str().unwrap());
    assert_eq!(invite.name.as_deref(), Some("Ada"));
}

#[test]
fn home_is_owner_only_and_files_are_0600() {
    let (_dir, home) = new_home();
    ok(kith(&home, Some(PASS), &["init"]));
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("identity.key")), 0o600);
    assert_eq!(mode(&home.join("config.toml")), 0o600);
    let db_files = snapshot(&home.join("db"));
    assert!(!db_files.is_empty());
    for path in db_files.keys() {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    // The passphrase-encrypted keystore does not contain the secret in the clear:
    // at least it must not be the unencrypted format.
    let text = std::fs::read_to_string(home.join("identity.key")).unwrap();
    assert!(!text.contains("\"encryption\":\"none\""), "{text}");
}

#[test]
fn second_init_refuses_and_keeps_identity() {
    let (_dir, home) = new_home();
    ok(kith(&home, Some(PASS), &["init"]));
    let before = std::fs::read(home.join("identity.key")).unwrap();
    let again = kith(&home, Some(PASS), &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(home.join("identity.key")).unwrap(), before);
    let again = kith(&home, None, &["init", "--no-passphrase"]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read(home.join("identity.key")).unwrap(), before);
}

#[test]
fn wrong_passphrase_exits_2_and_changes_nothing() {
    let (_dir, home) = new_home();
    ok(kith(&home, Some(PASS), &["init"]));
    let before = snapshot(&home);
    let out = kith(&home, Some("not the passphrase"), &["id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    assert_eq!(snapshot(&home), before);
    // Without env and without a terminal there is no way to ask: a usage error, no hang.
    let out = kith(&home, None, &["id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KITH_PASSPHRASE"));
    // The right one still works, from the environment, without a prompt.
    ok(kith(&home, Some(PASS), &["id"]));
}

#[test]
fn no_passphrase_needs_no_secret_and_says_so() {
    let (_dir, home) = new_home();
    let out = kith(&home, None, &["init", "--no-passphrase"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(stderr.contains("UNENCRYPTED"), "{stderr}");
    let id: serde_json::Value =
        serde_json::from_str(&ok(kith(&home, None, &["id", "--json"]))).unwrap();
    assert!(id["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
}

#[test]
fn id_without_identity_says_run_init() {
    let (_dir, home) = new_home();
    let out = kith(&home, None, &["id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kith init"));
}

#[test]
fn config_show_and_bad_config_names_key_and_line() {
    let (_dir, home) = new_home();
    ok(kith(&home, None, &["init", "--no-passphrase", "--name", "Bo"]));
    let shown: serde_json::Value =
        serde_json::from_str(&ok(kith(&home, None, &["config", "show", "--json"]))).unwrap();
    assert_eq!(shown["display_name"], "Bo");
    assert_eq!(shown["mdns"], true);

    std::fs::write(home.join("config.toml"), "mdns = true\n\nlisten = [\"not an address\"]\n")
        .unwrap();
    let out = kith(&home, None, &["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen") && err.contains("line 3"), "{err}");

    std::fs::write(home.join("config.toml"), "colour = \"red\"\n").unwrap();
    let out = kith(&home, None, &["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("colour") && err.contains("line 1"), "{err}");
}

#[test]
fn help_and_completions() {
    let (_dir, home) = new_home();
    let help = ok(kith(&home, None, &["init", "--help"]));
    assert!(help.contains("--no-passphrase"));
    let script = ok(kith(&home, None, &["completions", "bash"]));
    assert!(script.contains("_kith"));
    let out = kith(&home, None, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}
