//! What a relay operator sees, with the real `kith-relay` process: the metric
//! families of the roles that are on (and none of those off), build and process
//! metrics, capacities beside their usage, lower-case label values, and JSON logs
//! whose fields are values rather than Rust debug text.
#![allow(clippy::unwrap_used)]

mod common;

use common::{RelayProcess, TestPeer, loopback_config, metric};
use libp2p::identity;

/// The family names (`# TYPE` lines) of a scrape.
fn families(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// Every label value of every sample line of a scrape, but histogram bounds (`le`,
/// whose `+Inf` is fixed by the format).
fn label_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else {
            continue;
        };
        let labels = labels.rsplit_once('}').map_or(labels, |(l, _)| l);
        for pair in labels.split("\",") {
            match pair.split_once("=\"") {
                Some(("le", _)) | None => {}
                Some((_, value)) => values.push(value.trim_end_matches('"').to_owned()),
            }
        }
    }
    values
}

#[tokio::test]
async fn metrics_follow_the_roles_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(
        &dir.path().join("data"),
        "[dht]\nenabled = false\n\n[circuit]\nenabled = false\n\n[grouplog]\nenabled = false\n\n\
         [mailbox]\nmax_total_bytes = 1073741824\nmax_total_envelopes = 20000\n\n[connections]\nmax_established = 321\n",
    );
    let relay = RelayProcess::start(dir.path(), &config);
    // A connection, so the swarm's labelled families have samples.
    let mut peer = TestPeer::new(identity::Keypair::generate_ed25519());
    peer.connect(relay.peer_id, relay.addr()).await;
    let text = common::wait_metric(&relay, "kith_relay_connections", 1.0).await;
    let names = families(&text);

    // Roles that are off: no family at all, the relay's or libp2p's.
    for prefix in [
        "kith_relay_circuits",
        "kith_relay_reservations",
        "kith_relay_dht",
        "kith_relay_grouplog",
        "libp2p_kad_",
        "libp2p_relay_",
        "libp2p_gossipsub_",
        "libp2p_dcutr_",
    ] {
        assert!(
            !names.iter().any(|n| n.starts_with(prefix)),
            "{prefix} in\n{text}"
        );
    }
    // The mailbox is on, with its capacity beside its usage.
    assert_eq!(
        metric(&text, "kith_relay_mailbox_bytes"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "kith_relay_mailbox_limit_bytes"),
        Some(1_073_741_824.0)
    );
    assert_eq!(metric(&text, "kith_relay_mailbox_envelopes"), Some(0.0));
    assert_eq!(
        metric(&text, "kith_relay_mailbox_envelopes_limit"),
        Some(20_000.0)
    );
    assert_eq!(metric(&text, "kith_relay_connections_limit"), Some(321.0));
    assert!(names.contains(&"libp2p_identify_received"), "{text}");
    // Build and process metrics.
    let build = format!(
        "kith_relay_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&text, &build), Some(1.0), "{text}");
    #[cfg(target_os = "linux")]
    {
        let fds = metric(&text, "process_open_fds").unwrap();
        let max_fds = metric(&text, "process_max_fds").unwrap();
        // At least the listener, the metrics socket and the peer's connection.
        assert!(fds >= 3.0 && fds <= max_fds, "{fds} of {max_fds}");
        assert!(metric(&text, "process_resident_memory_bytes").unwrap() > 1e6);
        // Present (the relay may not have used 10 ms of CPU yet).
        assert!(metric(&text, "process_cpu_seconds_total").unwrap() >= 0.0);
        assert!(metric(&text, "process_start_time_seconds").unwrap() > 1.6e9);
        assert!(metric(&text, "kith_relay_memory_limit_bytes").unwrap() > 0.0);
    }
    // Label values in lower case, libp2p's included.
    let values = label_values(&text);
    assert!(values.iter().any(|v| v == "listener"), "{values:?}");
    for value in &values {
        assert!(
            !value.chars().any(|c| c.is_ascii_uppercase()),
            "label value {value:?} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn json_logs_carry_fields_not_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(&dir.path().join("data"), "[log]\nformat = \"json\"\n");
    let relay = RelayProcess::start(dir.path(), &config);
    let listening = relay.wait_log("relay listening");
    let addr = relay.addr().to_string();
    for field in [
        format!("\"addrs\":\"{addr}\""),
        "\"policy\":\"open\"".to_owned(),
        "\"mailbox\":true".to_owned(),
    ] {
        assert!(listening.contains(&field), "{field} in {listening}");
    }
    let opened = relay.wait_log("opened mailbox store");
    assert!(
        opened.contains("\"envelopes\":0") && opened.contains("\"mailboxes\":0"),
        "{opened}"
    );
    for line in relay.log() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        // Debug text of structs, options and vectors has these shapes.
        for debug in ["Stats {", "Some(", "\"[/", ": None", "Open\""] {
            assert!(!line.contains(debug), "{debug:?} in {line}");
        }
    }
    assert!(relay.signal_and_wait("TERM").success());
}
