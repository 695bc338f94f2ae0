//! The `kith-relay` command line as a process: `init-config`, `id`, config errors.
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

#[test]
fn bad_or_missing_configs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = kith_relay(dir.path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));

    let out = kith_relay(dir.path(), &["--config", "missing.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));

    std::fs::write(dir.path().join("bad.toml"), "[mailbox]\nttl_days = 0\n").unwrap();
    let out = kith_relay(dir.path(), &["run", "--config", "bad.toml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mailbox.ttl_days") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no ready line on failure");
}
