//! The long chaos run (issue 12): see [`kith_tests::chaos`]. Three daemons and two
//! relays exchange messages while processes are `kill -9`ed and restarted; the run
//! fails loudly if an acknowledged message is lost, duplicated or out of order, or a
//! store is corrupt.
//!
//! Run: `cargo run --release -p kith-tests --bin chaos -- [--seed N] [--messages
//! 10000] [--kills 60] [--pace-ms 20] [--settle-secs 300]`. Results go to docs/TESTING.md.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::chaos::{Config, run};

fn main() {
    let mut config =
        Config { seed: 1, messages: 10_000, kills: 60, pace: Duration::from_millis(20), settle: Duration::from_secs(300) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it.next().unwrap_or_else(|| panic!("{flag} needs a value")).parse().unwrap();
        match flag.as_str() {
            "--seed" => config.seed = value,
            "--messages" => config.messages = value as usize,
            "--kills" => config.kills = value as usize,
            "--settle-secs" => config.settle = Duration::from_secs(value),
            "--pace-ms" => config.pace = Duration::from_millis(value),
            other => panic!("unknown flag {other}"),
        }
    }
    println!("chaos: {config:?}");
    match run(&config) {
        Ok(report) => {
            println!(
                "ok: {} acknowledged, {} deliveries checked, {} unanswered ({} of them delivered anyway), {} kills; sending {:.1} s, settling {:.1} s",
                report.acknowledged,
                report.deliveries_checked,
                report.unanswered,
                report.unanswered_delivered,
                report.kills.len(),
                report.send_phase.as_secs_f64(),
                report.settle_phase.as_secs_f64(),
            );
            println!("kills: {:?}", report.kills);
        }
        Err(violation) => {
            eprintln!("VIOLATION: {violation}");
            std::process::exit(1);
        }
    }
}
