//! Throughput of end-to-end sealing: sessions versus one handshake per message.
//!
//! Seals and opens `N` 100-byte messages from one sender to one recipient, first with
//! a single long-lived [`Sealer`]/[`Opener`] pair (one Noise `X` handshake for the whole
//! run), then with sessions of one message and an opener without a session cache (one
//! handshake per message on each side: the cost of sealing without sessions).
//!
//! Run with `cargo run --release -p kith-p2p --example seal_bench [N]`; debug builds
//! measure the debug build, not the code.

use std::time::{Duration, Instant};

use kith_p2p::{
    envelope::{OPENER_CACHE_CAPACITY, Opener, Sealer, SealerConfig},
    identity::Identity,
};

/// Messages per run unless given on the command line.
const DEFAULT_MESSAGES: usize = 20_000;

/// Plaintext size of each message: a typical short chat line.
const MESSAGE_BYTES: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => DEFAULT_MESSAGES,
    };
    let alice = Identity::generate();
    let bob = Identity::generate();
    let recipient = bob.e2e_public();
    let msg = vec![0x42u8; MESSAGE_BYTES];

    // With sessions: one handshake, then only AEAD per message.
    let mut sealer = Sealer::new(&alice, SealerConfig::default());
    let start = Instant::now();
    let envelopes = (0..n)
        .map(|_| sealer.seal(&recipient, &msg))
        .collect::<Result<Vec<_>, _>>()?;
    let seal = start.elapsed();
    let mut opener = Opener::new(&bob, OPENER_CACHE_CAPACITY);
    let start = Instant::now();
    for env in &envelopes {
        let opened = opener.open(env)?;
        assert_eq!(opened.plaintext.len(), MESSAGE_BYTES);
    }
    let open = start.elapsed();
    let envelope_bytes = envelopes.first().map_or(0, Vec::len);
    report("session", n, seal, open);

    // Without sessions: a new handshake for every message on both sides. A sealer whose
    // sessions last one message is a fresh sealer per message, minus the one-off cost of
    // constructing it (which signs the E2E binding).
    let mut per_message = SealerConfig::default();
    per_message.session_max_messages = 1;
    let mut sealer = Sealer::new(&alice, per_message);
    let start = Instant::now();
    let envelopes = (0..n)
        .map(|_| sealer.seal(&recipient, &msg))
        .collect::<Result<Vec<_>, _>>()?;
    let seal = start.elapsed();
    let mut opener = Opener::new(&bob, 0);
    let start = Instant::now();
    for env in &envelopes {
        opener.open(env)?;
    }
    let open = start.elapsed();
    report("no-session", n, seal, open);

    println!("envelope size for a {MESSAGE_BYTES}-byte message: {envelope_bytes} bytes");
    Ok(())
}

fn report(label: &str, n: usize, seal: Duration, open: Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "{label:>10}: seal {:>10.0} msg/s ({:>7.2} µs/msg)   open {:>10.0} msg/s ({:>7.2} µs/msg)",
        rate(seal),
        seal.as_secs_f64() * 1e6 / n as f64,
        rate(open),
        open.as_secs_f64() * 1e6 / n as f64,
    );
}
