//! The short chaos run in the test suite (issue 12): a few hundred messages, 1:1 and in
//! a group, among three daemons and two relays on 127.0.0.1 while processes are
//! `kill -9`ed and restarted; every acknowledged message arrives exactly once and in
//! its sender's order, and no store is corrupt. The long run is the `chaos` program.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::chaos::{Config, run};

#[test]
fn acknowledged_messages_survive_kill_9_of_nodes_and_relays() {
    let config = Config {
        seed: 42,
        messages: 300,
        kills: 8,
        pace: Duration::from_millis(150),
        settle: Duration::from_secs(120),
    };
    let report = run(&config).unwrap_or_else(|violation| panic!("chaos run failed: {violation}"));
    eprintln!("chaos: {report:?}");
    assert!(report.acknowledged >= config.messages / 2, "most sends are acknowledged: {report:?}");
    assert!(report.kills.len() >= 3, "processes were killed while messages flowed: {report:?}");
}
