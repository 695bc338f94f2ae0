//! The `kith-relay` command line as a process: `init-config`, `id`, `check-config`,
//! config errors and their exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

use common::{BIN, RelayProcess, loopback_config};
use libp2p::{Multiaddr, PeerId};

fn kith_relay(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn init_config_writes_an_accepted_config_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = kith_relay(dir.path(), &["init-config"]);
    assert!(out.status.success(), "{out:?}");
    let path = dir.path().join("kith-relay.toml");
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written, kith_relay::config::EXAMPLE_CONFIG);
    // The written file is a valid config: `id` loads it (and creates the identity
    // under its relative data_dir).
    let out = kith_relay(dir.path(), &["id", "--config", "kith-relay.toml"]);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("kith-relay-data/identity.key").exists());

    // A second init-config refuses, says why, and leaves the file alone.
    std::fs::write(&path, "# mine\n").unwrap();
    let out = kith_relay(dir.path(), &["init-config"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");

    // An explicit path works too.
    let out = kith_relay(dir.path(), &["init-config", "other.toml"]);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("other.toml").exists());
}

#[test]
fn the_example_config_starts_a_relay_once_ports_are_ephemeral() {
    // The written file, with only the addresses changed, runs.
    let dir = tempfile::tempdir().unwrap();
    assert!(kith_relay(dir.path(), &["init-config"]).status.success());
    let path = dir.path().join("kith-relay.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            r#"listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]"#,
            r#"listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]"#,
        )
        .replace("# listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "data_dir = \"./kith-relay-data\"",
            &format!("data_dir = \"{}\"", dir.path().join("data").display()),
        );
    std::fs::write(&path, text).unwrap();
    let relay = RelayProcess::start_with(&path);
    assert_eq!(relay.addrs.len(), 2, "{:?}", relay.addrs);
    assert!(relay.addrs.iter().all(|a| !a.to_string().ends_with("/0")));
    assert!(
        relay
            .addrs
            .iter()
            .any(|a| a.to_string().contains("quic-v1"))
    );
    assert!(relay.signal_and_wait("INT").success());
}

#[test]
fn id_prints_peer_id_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    // A top-level key, so it goes before the config's tables.
    let config = format!(
        "external_addresses = [\"/ip4/203.0.113.7/tcp/4001\"]\n{}",
        loopback_config(&dir.path().join("data"), "")
    );
    std::fs::write(dir.path().join("r.toml"), config).unwrap();
    let out = kith_relay(dir.path(), &["id", "--config", "r.toml"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let peer: PeerId = lines[0].parse().unwrap();
    assert_eq!(
        &lines[1..],
        [
            format!("/ip4/127.0.0.1/tcp/0/p2p/{peer}"),
            format!("/ip4/203.0.113.7/tcp/4001/p2p/{peer}")
        ]
    );
    for line in &lines[1..] {
        line.parse::<Multiaddr>().unwrap();
    }
    // The listen address has port 0, which nobody can dial: said once, on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("warning: `listen[0]` = \"/ip4/127.0.0.1/tcp/0\" has port 0").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("external_addresses"), "{stderr}");
    // Stable: the same identity next time, and the relay uses it.
    let again = kith_relay(dir.path(), &["id", "--config", "r.toml"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), stdout);
    let relay = RelayProcess::start_with(&dir.path().join("r.toml"));
    assert_eq!(relay.peer_id, peer);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir.path().join("data/identity.key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

/// The exit code of `out`, which must have exited (not been killed by a signal).
fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

#[test]
fn bad_or_missing_configs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    // No --config at all: a usage error.
    let out = kith_relay(dir.path(), &[]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));

    // A missing file is a config error naming the file, once.
    let out = kith_relay(dir.path(), &["--config", "missing.toml"]);
    assert_eq!(code(&out), 78, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("missing.toml").count(), 1, "{stderr}");

    std::fs::write(dir.path().join("bad.toml"), "[mailbox]\nttl_days = 0\n").unwrap();
    let out = kith_relay(dir.path(), &["run", "--config", "bad.toml"]);
    assert_eq!(code(&out), 78, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "kith-relay: bad.toml: relay config line 2: `mailbox.ttl_days` = 0: must be between 1 and 3650"
    );
    assert!(out.stdout.is_empty(), "no ready line on failure");
    // Nothing was created for a config that was refused.
    assert!(!dir.path().join("kith-relay-data").exists());
}

#[test]
fn check_config_accepts_a_good_config_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("r.toml"), loopback_config(&data, "")).unwrap();
    let out = kith_relay(dir.path(), &["check-config", "--config", "r.toml"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "r.toml: ok\n");
    // No key, no data directory, no stores.
    assert!(!data.exists(), "check-config created {data:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no identity key"), "{stderr}");

    // With a key in place (made by `id`), it is read and accepted, and left as it was.
    assert!(kith_relay(dir.path(), &["id", "--config", "r.toml"]).status.success());
    let key = std::fs::read(data.join("identity.key")).unwrap();
    let out = kith_relay(dir.path(), &["check-config", "--config", "r.toml"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(std::fs::read(data.join("identity.key")).unwrap(), key);
    assert!(!data.join("mailbox").exists() && !data.join("grouplog").exists());
}

#[test]
fn a_damaged_identity_key_is_a_config_error_that_no_restart_mends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("r.toml"), loopback_config(&data, "")).unwrap();
    assert!(kith_relay(dir.path(), &["id", "--config", "r.toml"]).status.success());
    std::fs::write(data.join("identity.key"), b"not a key at all").unwrap();
    for command in ["check-config", "run"] {
        let out = kith_relay(dir.path(), &[command, "--config", "r.toml"]);
        assert_eq!(code(&out), 78, "{command}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("identity.key") && stderr.contains("not a libp2p keypair"), "{command}: {stderr}");
    }
}

#[test]
fn check_config_exits_78_naming_key_line_and_value_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases = [
        // A listen address the relay could not listen on: caught before any start.
        (
            "listen = [\"/ip4/127.0.0.1/tcp/0\", \"/dns4/relay.example/tcp/4001\"]\n",
            "listen[1]",
            "line 1",
            "\"/dns4/relay.example/tcp/4001\"",
        ),
        (
            "listen = [\"/ip4/127.0.0.1/tcp/0\"]\n\n[circuit]\nmax_circuits = -3\n",
            "circuit.max_circuits",
            "line 4",
            "-3",
        ),
        (
            "listen = [\"/ip4/127.0.0.1/tcp/0\"]\n[log]\nformat = \"xml\"\n",
            "log.format",
            "line 3",
            "\"xml\"",
        ),
        (
            "listen = [\"/ip4/127.0.0.1/tcp/0\"]\n[mailbox]\nttl_dayz = 3\n",
            "mailbox.ttl_dayz",
            "line 3",
            "3",
        ),
    ];
    for (text, key, line, value) in cases {
        let text = format!("data_dir = \"{}\"\n{text}", data.display());
        std::fs::write(dir.path().join("bad.toml"), &text).unwrap();
        let out = kith_relay(dir.path(), &["check-config", "--config", "bad.toml"]);
        assert_eq!(code(&out), 78, "{text}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Line numbers count the data_dir line put in front.
        let line = format!("line {}", line[5..].parse::<usize>().unwrap() + 1);
        for (what, needle) in [("file", "bad.toml"), ("key", key), ("line", &line)] {
            assert_eq!(stderr.matches(needle).count(), 1, "{what} {needle:?} once in {stderr}");
        }
        assert!(stderr.contains(&format!("`{key}` = {value}: ")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!data.exists());
    }

    // Not TOML at all: 78 too, with the line as written (its key and value, once).
    std::fs::write(dir.path().join("syntax.toml"), "[mailbox]\nttl_days = 3x\n").unwrap();
    let out = kith_relay(dir.path(), &["check-config", "--config", "syntax.toml"]);
    assert_eq!(code(&out), 78, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("kith-relay: syntax.toml: relay config line 2: "), "{stderr}");
    assert_eq!(stderr.matches("ttl_days = 3x").count(), 1, "{stderr}");

    // `run` refuses the same config with the same exit code, before creating anything.
    let out = kith_relay(dir.path(), &["run", "--config", "bad.toml"]);
    assert_eq!(code(&out), 78, "{out:?}");
    assert!(!data.exists());

    // A missing file: 78 and the file's name.
    let out = kith_relay(dir.path(), &["check-config", "--config", "nope.toml"]);
    assert_eq!(code(&out), 78, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("kith-relay: cannot read the relay config nope.toml: "),
        "{stderr}"
    );
    // The reason once, not once per layer of the error.
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
}

/// A store-wide count below one full mailbox or log is refused at start, naming
/// the key, before any store is opened.
#[test]
fn run_refuses_a_total_count_below_one_full_mailbox_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases = [
        (
            "[mailbox]\nmax_messages_per_mailbox = 50\nmax_total_envelopes = 49\n",
            "`mailbox.max_total_envelopes` = 49: must be at least max_messages_per_mailbox (50)",
        ),
        (
            "[grouplog]\nmax_total_items = 10\n",
            "`grouplog.max_total_items` = 10: must be at least max_items_per_log (100000)",
        ),
    ];
    for (section, message) in cases {
        std::fs::write(dir.path().join("bad.toml"), loopback_config(&data, section)).unwrap();
        let out = kith_relay(dir.path(), &["run", "--config", "bad.toml"]);
        assert_eq!(code(&out), 78, "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(out.stdout.is_empty(), "no ready line on failure");
        assert!(!data.join("mailbox").exists() && !data.join("grouplog").exists());
    }
}
