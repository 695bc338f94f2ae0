//! Benchmark of group delivery (issue 5): `kith daemon`s on loopback in one group with
//! one relay keeping its log. For groups of each size: the latency from the sender's
//! clock at sending to each member's clock at storing (same machine, so one clock),
//! per delivery and per message to *all* members, and the bytes the sender's process
//! puts on its TCP sockets per message (from `ss`), which should stay flat as the
//! group grows since the sender publishes to its gossip mesh and appends once.
//!
//! Run: `cargo run --release -p kith-tests --bin group-bench -- [--sizes 10,50]
//! [--messages N]`. Numbers go to docs/PERFORMANCE.md; nothing here is pass/fail.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use kith_p2p::control::Client;
use kith_tests::bench::{ms, percentile};
use kith_tests::{Peer, Relay, connect, wait_until};
use serde_json::{Value, json};

struct Args {
    sizes: Vec<usize>,
    messages: usize,
}

fn parse_args() -> Args {
    let mut args = Args { sizes: vec![10, 50], messages: 30 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => args.sizes = value.split(',').map(|v| v.trim().parse().unwrap()).collect(),
            "--messages" => args.messages = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Bytes sent and received so far on the established TCP sockets of process `pid`
/// (`ss -tinp`).
fn tcp_bytes(pid: u32) -> (u64, u64) {
    let out = Command::new("ss").args(["-tinpH"]).output().expect("ss (iproute2) is needed for the traffic figures");
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    let (mut sent, mut received) = (0, 0);
    let mut ours = false;
    let count = |line: &str, field: &str| {
        line.find(field).map_or(0, |at| {
            let digits: String = line[at + field.len()..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap_or(0)
        })
    };
    for line in text.lines() {
        if line.contains("users:((") {
            ours = line.contains(&owner);
        } else if ours {
            sent += count(line, "bytes_sent:");
            received += count(line, "bytes_received:");
        }
    }
    (sent, received)
}

fn history(peer: &Peer, group: &str) -> Vec<Value> {
    peer.history(group)
}

fn run(size: usize, messages: usize) {
    // Every member runs on 127.0.0.1: one address, so lift the relay's per-IP limit.
    let mut relay = Relay::new("[connections]\nmax_per_ip = 100000\n");
    relay.start();
    let setup = Instant::now();
    let mut peers: Vec<Peer> = (0..size).map(|i| Peer::init(&format!("m{i:02}"))).collect();
    for p in &mut peers {
        p.ok(&["relay", "add", &relay.addr()]);
        p.start(&[]);
    }
    for p in &peers[1..] {
        connect(&peers[0], p);
    }
    let id = peers[0].json(&["group", "create", "bench", "--json"])["id"].as_str().unwrap().to_owned();
    for p in &peers[1..] {
        peers[0].ok(&["group", "add", &id, &p.peer_id]);
    }
    wait_until(Duration::from_secs(300), "every member sees the whole group", || {
        peers.iter().all(|p| {
            // Until the group reaches a member, it does not know the name (exit 2).
            let out = p.run(&["group", "members", &id, "--json"]);
            out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout)
                    .is_ok_and(|g| g["members"].as_array().is_some_and(|m| m.len() == size))
        })
    });
    // Keys reach everyone: a first message from the sender is readable everywhere.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let socket = peers[0].home().join("kith.sock");
    let send = |text: String| {
        runtime.block_on(async {
            let mut client = Client::connect(&socket).await.unwrap();
            client.call("send", json!({ "contact": id, "text": text })).await.unwrap();
        })
    };
    send("warm-up".into());
    wait_until(Duration::from_secs(300), "the warm-up reaches every member", || {
        peers[1..].iter().all(|p| history(p, &id).iter().any(|m| m["text"] == "warm-up"))
    });
    println!("group of {size}: set up in {:.1} s", setup.elapsed().as_secs_f64());

    let pid = peers[0].daemon.as_ref().unwrap().id();
    let (sent_before, received_before) = tcp_bytes(pid);
    let text = "x".repeat(100);
    for i in 0..messages {
        send(format!("{i:04} {text}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(Duration::from_secs(300), "every message reaches every member", || {
        peers[1..].iter().all(|p| history(p, &id).len() > messages)
    });
    let sent_all = Instant::now();
    let uploaded = tcp_bytes(pid).0.saturating_sub(sent_before);
    // Every member's delivery receipt for every message counted at the sender.
    wait_until(Duration::from_secs(300), "every delivery receipt reaches the sender", || {
        let mine: Vec<Value> = history(&peers[0], &id).into_iter().filter(|m| m["text"] != "warm-up").collect();
        mine.len() == messages && mine.iter().all(|m| m["receipts"]["delivered"] == size - 1)
    });
    let receipted_in = sent_all.elapsed();
    let downloaded = tcp_bytes(pid).1.saturating_sub(received_before);

    let mut deliveries = Vec::new();
    let mut to_all: Vec<Duration> = Vec::new();
    let mut worst: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for p in &peers[1..] {
        for m in history(p, &id) {
            if m["text"] == "warm-up" {
                continue;
            }
            let lag = m["received_at"].as_u64().unwrap().saturating_sub(m["sent_at"].as_u64().unwrap());
            deliveries.push(Duration::from_millis(lag));
            let slot = worst.entry(m["id"].as_str().unwrap().to_owned()).or_default();
            *slot = (*slot).max(lag);
        }
    }
    to_all.extend(worst.values().map(|v| Duration::from_millis(*v)));
    deliveries.sort();
    to_all.sort();
    println!(
        "group of {size}: {} deliveries; per delivery p50 {} p99 {}; to all members p50 {} p99 {} max {}",
        deliveries.len(),
        ms(percentile(&deliveries, 0.5)),
        ms(percentile(&deliveries, 0.99)),
        ms(percentile(&to_all, 0.5)),
        ms(percentile(&to_all, 0.99)),
        ms(*to_all.last().unwrap()),
    );
    println!(
        "group of {size}: sender uploaded {uploaded} bytes for {messages} messages = {} bytes/message (100-byte texts; includes its gossip heartbeats, pings and DHT traffic meanwhile)",
        uploaded / messages as u64,
    );
    println!(
        "group of {size}: every delivery receipt counted {} after the last member had the last message; sender received {downloaded} bytes = {} bytes/message (the receipts, its gossip and the rest)",
        ms(receipted_in),
        downloaded / messages as u64,
    );
}

fn main() {
    let args = parse_args();
    for size in &args.sizes {
        run(*size, args.messages);
    }
}
