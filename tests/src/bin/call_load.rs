//! Benchmark of a voice call while the same two daemons carry a flood of messages
//! or a file: the call's audio shares each daemon's event-loop thread with everything
//! else (`kith daemon` runs on one thread), so a long turn of that loop could make
//! frames late. Two real `kith daemon`s on 127.0.0.1; Alice calls Bob with a tone each way
//! from WAV files; the call's own counters (`kith calls --json`: frames played, and
//! of those concealed after a loss or a late packet) are read over a quiet window,
//! over a window in which `--senders` control clients send Alice → Bob as
//! fast as each hears its `ok`, and then while Bob fetches a file of `--mib` MiB
//! from Alice (`kith get --wait`; the transfer's Noise and yamux work runs on the
//! same threads).
//!
//! Run: `cargo run --release -p kith-tests --bin call-load -- [--seconds N]
//! [--senders N] [--mib N]`. Numbers go to docs/PERFORMANCE.md; nothing here is a
//! pass/fail test.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kith_call::{tone, wav};
use kith_tests::bench::taken_connection;
use kith_tests::files::{random_file, wait_for_file};
use kith_tests::{Peer, connect, kith_bin, wait_until};
use serde_json::{Value, json};

struct Args {
    /// Length of each window, quiet and loaded.
    seconds: u64,
    senders: usize,
    /// Size of the file fetched during the call, MiB.
    mib: u64,
}

fn parse_args() -> Args {
    let mut args = Args { seconds: 5, senders: 32, mib: 512 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.clamp(1, 60),
            "--senders" => args.senders = usize::try_from(value).unwrap().clamp(1, 48),
            "--mib" => args.mib = value.clamp(1, 4096),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

/// One side's call counters at a moment.
#[derive(Clone, Copy)]
struct Counters {
    played: u64,
    concealed: u64,
}

fn counters(peer: &Peer) -> Counters {
    let calls = peer.json(&["calls", "--json"]);
    let call = &calls["active"][0];
    let field = |name: &str| call[name].as_u64().unwrap_or_else(|| panic!("no {name} in {calls}"));
    Counters { played: field("frames_played"), concealed: field("frames_concealed") }
}

/// `frames played, concealed (share)` between two readings.
fn window(from: Counters, to: Counters) -> String {
    let played = to.played - from.played;
    let concealed = to.concealed - from.concealed;
    format!(
        "{played} frames played, {concealed} concealed ({:.2} %)",
        100.0 * concealed as f64 / played.max(1) as f64
    )
}

/// Sends Alice → Bob from `senders` clients until `stop`, counting in `sent` the
/// messages each heard `ok` for.
async fn flood(socket: PathBuf, senders: usize, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut tasks = Vec::new();
    for c in 0..senders {
        let (socket, stop, sent) = (socket.clone(), stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = taken_connection(&socket).await;
            // Bounded as every load loop here: by the stop flag, and by count.
            for i in 0..200_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let text = format!("{c:>4}:{i:0>94}");
                client.call("send", json!({ "contact": "Bob", "text": text })).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn main() {
    let args = parse_args();
    println!("kith binary: {}", kith_bin().display());
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    let knobs: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("KITH_")).collect();
    alice.env.extend(knobs.iter().cloned());
    bob.env.extend(knobs);
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // Two windows, the fetch (seconds at most at this machine's ~400 MB/s) and room.
    let call_seconds = 2 * args.seconds + 6 + 4 + args.mib / 100;
    let (a_in, b_in, a_out, b_out) = (path("a440.wav"), path("b660.wav"), path("a-heard.wav"), path("b-heard.wav"));
    wav::write_mono(&a_in, &tone::sine(440.0, call_seconds as f64 + 4.0, 8000)).unwrap();
    wav::write_mono(&b_in, &tone::sine(660.0, call_seconds as f64 + 4.0, 8000)).unwrap();
    let duration = call_seconds.to_string();
    // The file is sealed at Alice before the call, so its window holds the fetch only.
    let file = random_file(dir.path(), "file.bin", args.mib << 20);
    let sent_file = alice.json(&["send-file", "Bob", file.to_str().unwrap(), "--json"]);
    let file_id = sent_file["file"]["id"].as_str().unwrap().to_owned();
    wait_for_file(&bob, &file_id, "offered", Duration::from_secs(120));
    let args_call = [
        "call",
        "Bob",
        "--input",
        a_in.to_str().unwrap(),
        "--output",
        a_out.to_str().unwrap(),
        "--duration",
        &duration,
        "--json",
    ];
    let caller = alice.command(&args_call).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut ringing = String::new();
    wait_until(Duration::from_secs(20), "the call rings at Bob", || {
        let calls = bob.json(&["calls", "--json"]);
        match calls["active"][0]["id"].as_str() {
            Some(id) if calls["active"][0]["state"] == "ringing" => {
                ringing = id[..8].to_owned();
                true
            }
            _ => false,
        }
    });
    bob.ok(&["answer", &ringing, "--input", b_in.to_str().unwrap(), "--output", b_out.to_str().unwrap()]);
    wait_until(Duration::from_secs(20), "the call is active on both sides", || {
        [&alice, &bob].iter().all(|p| p.json(&["calls", "--json"])["active"][0]["state"] == "active")
    });
    // Past the jitter buffer's start: a second of audio played on each side.
    wait_until(Duration::from_secs(20), "a second of the call played on both sides", || {
        [&alice, &bob].iter().all(|p| counters(p).played >= 50)
    });

    let window_length = Duration::from_secs(args.seconds);
    let quiet_from = [counters(&alice), counters(&bob)];
    std::thread::sleep(window_length);
    let quiet_to = [counters(&alice), counters(&bob)];

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load = runtime.spawn(flood(alice.home().join("kith.sock"), args.senders, stop.clone(), sent.clone()));
    // The window opens once the flood runs: as many messages sent as there are senders.
    wait_until(Duration::from_secs(20), "the flood under way", || sent.load(Ordering::Relaxed) >= args.senders as u64);
    let loaded_from = [counters(&alice), counters(&bob)];
    std::thread::sleep(window_length);
    let loaded_to = [counters(&alice), counters(&bob)];
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(load).unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let flood_took = started.elapsed();

    // The file is fetched during the call as the flood ends.
    let fetch_from = [counters(&alice), counters(&bob)];
    let fetch_started = Instant::now();
    bob.ok(&["get", &file_id, "--wait"]);
    let fetch_took = fetch_started.elapsed();
    let fetch_to = [counters(&alice), counters(&bob)];

    let out = caller.wait_with_output().unwrap();
    assert!(out.status.success(), "kith call failed: {}", String::from_utf8_lossy(&out.stderr));
    let ended: Value = serde_json::from_slice(&out.stdout).unwrap();

    println!("call: {call_seconds} s of a tone each way, ended {}", ended["reason"]);
    for (i, name) in ["Alice (hears 660 Hz)", "Bob (hears 440 Hz)"].iter().enumerate() {
        println!("{name}, quiet {} s: {}", args.seconds, window(quiet_from[i], quiet_to[i]));
        println!("{name}, under load {} s: {}", args.seconds, window(loaded_from[i], loaded_to[i]));
        println!("{name}, during the fetch: {}", window(fetch_from[i], fetch_to[i]));
    }
    println!(
        "load: {} senders, {sent} messages Alice → Bob in {:.1} s ({:.0} msg/s, durable at Alice)",
        args.senders,
        flood_took.as_secs_f64(),
        sent as f64 / flood_took.as_secs_f64()
    );
    println!(
        "fetch: {} MiB Alice → Bob (`get --wait`) in {:.2} s ({:.0} MB/s)",
        args.mib,
        fetch_took.as_secs_f64(),
        (args.mib << 20) as f64 / 1e6 / fetch_took.as_secs_f64()
    );
    for (heard, hz, name) in [(&b_out, 440.0, "Bob"), (&a_out, 660.0, "Alice")] {
        let samples = wav::read_mono(heard).unwrap();
        println!(
            "{name} recorded {:.2} s, {:.2} s of it the {hz} Hz tone",
            samples.len() as f64 / 48_000.0,
            tone::tone_seconds(&samples, hz)
        );
    }
    alice.stop();
    bob.stop();
}
