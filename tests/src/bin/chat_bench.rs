//! Benchmark of two `kith daemon`s on loopback (issue 3): daemon cold start to
//! `ready`, idle RSS, one-way latency of a 100-byte message (sent on A's control
//! socket → stored and announced on B's), and sustained durable throughput A → B.
//! `CHAT_BENCH_LATENCY_LOG=<file>` also writes every latency sample with its time.
//!
//! Run: `cargo run --release -p kith-tests --bin chat-bench -- [--messages N]
//! [--latency-samples N] [--clients N] [--starts N]`. `KITH_*` variables in its
//! environment (the daemons' knobs, docs/CLI.md) reach both measured daemons.
//! Numbers go to docs/PERFORMANCE.md; nothing here is a pass/fail test.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use kith_p2p::control::Client;
use kith_p2p::node::Event;
use kith_tests::bench::{cpu_time, machine_cpu, ms, percentile, rss_kib, taken_connection};
use kith_tests::{Peer, connect, kith_bin};
use serde_json::json;

struct Args {
    messages: usize,
    latency_samples: usize,
    clients: usize,
    starts: usize,
}

fn parse_args() -> Args {
    let mut args = Args { messages: 20_000, latency_samples: 2_000, clients: 32, starts: 10 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--messages" => args.messages = value,
            "--latency-samples" => args.latency_samples = value,
            "--clients" => args.clients = value.max(1),
            "--starts" => args.starts = value.max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn socket(peer: &Peer) -> std::path::PathBuf {
    peer.home().join("kith.sock")
}

fn cold_starts(runs: usize) {
    let mut peer = Peer::init("bench-start");
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        peer.start(&[]);
        times.push(t.elapsed());
        peer.stop();
    }
    times.sort();
    println!(
        "cold start to ready ({runs} runs): median {}, min {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

async fn wait_received(events: &mut Client, text: &str) {
    loop {
        match events.next_event().await.unwrap() {
            Event::MessageReceived { message } if message.text == text => return,
            _ => {}
        }
    }
}

/// With `CHAT_BENCH_LATENCY_LOG=<file>`, the latency phase writes each sample there
/// as `ms since the phase began,latency µs`: to see whether slow ones come together
/// or at an interval.
async fn latency(a: &Path, b: &Path, samples: usize) {
    let mut sender = Client::connect(a).await.unwrap();
    let mut events = Client::connect(b).await.unwrap();
    events.subscribe().await.unwrap();
    let mut times = Vec::with_capacity(samples);
    let log_path = std::env::var_os("CHAT_BENCH_LATENCY_LOG");
    let mut log = String::new();
    let began = Instant::now();
    for i in 0..samples + samples / 10 {
        // 100 bytes, unique so the matching event is unambiguous.
        let text = format!("{i:0>100}");
        let t = Instant::now();
        sender.call("send", json!({ "contact": "b", "text": text })).await.unwrap();
        wait_received(&mut events, &text).await;
        if i >= samples / 10 {
            // The first tenth warms connections and caches.
            let took = t.elapsed();
            times.push(took);
            if log_path.is_some() {
                log.push_str(&format!("{:.3},{}\n", (t - began).as_secs_f64() * 1e3, took.as_micros()));
            }
        }
    }
    if let Some(path) = log_path {
        std::fs::write(path, log).unwrap();
    }
    times.sort();
    println!(
        "one-way latency, 100-byte message ({samples} samples): p50 {}, p99 {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1])
    );
}

async fn throughput(a: &Path, b: &Path, messages: usize, clients: usize, pids: [u32; 2]) {
    let mut events = Client::connect(b).await.unwrap();
    events.subscribe().await.unwrap();
    let per_client = messages / clients;
    let total = per_client * clients;
    let cpu_before = pids.map(cpu_time);
    let (own_before, machine_before) = (cpu_time(std::process::id()), machine_cpu());
    let start = Instant::now();
    let mut senders = Vec::new();
    for c in 0..clients {
        let a = a.to_owned();
        senders.push(tokio::spawn(async move {
            let mut client = taken_connection(&a).await;
            for i in 0..per_client {
                let text = format!("{c:>4}:{i:0>94}");
                client.call("send", json!({ "contact": "b", "text": text })).await.unwrap();
            }
            // When this client heard its last `ok`: A's acceptance, apart from B's storing.
            start.elapsed()
        }));
    }
    let mut received = 0u64;
    let deadline = start + Duration::from_secs(600);
    while received < total as u64 {
        let event = tokio::time::timeout_at(deadline.into(), events.next_event()).await.unwrap().unwrap();
        match event {
            Event::MessageReceived { .. } => received += 1,
            Event::Lagged { missed } => received += missed,
            _ => {}
        }
    }
    let received_at = start.elapsed();
    let cpu = [0, 1].map(|i| cpu_time(pids[i]).saturating_sub(cpu_before[i]));
    let own = cpu_time(std::process::id()).saturating_sub(own_before);
    let machine = machine_cpu();
    let (busy, all) = (machine.0.saturating_sub(machine_before.0), machine.1.saturating_sub(machine_before.1));
    let mut accepted_at = Duration::ZERO;
    for s in senders {
        accepted_at = accepted_at.max(s.await.unwrap());
    }
    // Confirm against B's store: every message is there, exactly once.
    let mut check = Client::connect(b).await.unwrap();
    let history = check.call("history", json!({ "contact": "a", "limit": total + 10 })).await.unwrap();
    let stored = history.as_array().map_or(0, Vec::len);
    assert!(stored >= total, "B stored {stored} of {total}");
    println!(
        "throughput A→B, durable on both sides ({total} messages, {clients} senders): {:.0} msg/s \
         (all stored at B after {}; A accepted them all within {})",
        total as f64 / received_at.as_secs_f64(),
        ms(received_at),
        ms(accepted_at)
    );
    let per_message = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
    println!(
        "daemons' CPU per message (user + system, all threads, 10 ms ticks): A {:.0} µs, B {:.0} µs, both {:.0} µs",
        per_message(cpu[0]),
        per_message(cpu[1]),
        per_message(cpu[0] + cpu[1])
    );
    println!(
        "the benchmark's own clients: {:.0} µs of CPU per message; the machine was {:.0} % busy (all cores)",
        per_message(own),
        100.0 * busy.as_secs_f64() / all.as_secs_f64().max(f64::EPSILON)
    );
}

fn main() {
    let args = parse_args();
    println!("kith binary: {}", kith_bin().display());
    cold_starts(args.starts);

    let mut a = Peer::init("a");
    let mut b = Peer::init("b");
    // The daemons' tuning knobs (docs/CLI.md) pass through from this environment.
    let knobs: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("KITH_")).collect();
    if !knobs.is_empty() {
        println!("knobs for both daemons: {knobs:?}");
    }
    a.env.extend(knobs.iter().cloned());
    b.env.extend(knobs);
    a.start(&[]);
    b.start(&[]);
    connect(&a, &b);
    // Let start-up work (DHT attempts, record publication) settle before measuring idle.
    std::thread::sleep(Duration::from_secs(3));
    let pid = |p: &Peer| p.daemon.as_ref().unwrap().id();
    println!("idle RSS after connecting: A {} KiB, B {} KiB", rss_kib(pid(&a)), rss_kib(pid(&b)));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(latency(&socket(&a), &socket(&b), args.latency_samples));
    runtime.block_on(throughput(&socket(&a), &socket(&b), args.messages, args.clients, [pid(&a), pid(&b)]));
    println!("RSS after the run: A {} KiB, B {} KiB", rss_kib(pid(&a)), rss_kib(pid(&b)));
    a.stop();
    b.stop();
}
