//! Soak run (issue 12): two `kith daemon`s and a relay on 127.0.0.1 under light
//! traffic — a message each way every `--interval-ms`, a group message now and then, a
//! contact offline for a minute in every ten so its mail goes through the relay — for
//! `--minutes`. Every minute it samples each process's resident memory, open file
//! descriptors and (for the daemons) database size, and at the end compares the last
//! samples with those after warm-up: what a daemon left running for weeks would do.
//!
//! Run: `cargo run --release -p kith-tests --bin soak -- [--minutes 30]
//! [--interval-ms 2000]`. Bounded in time; results go to docs/TESTING.md. It reports;
//! it does not pass or fail.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use kith_tests::bench::rss_kib;
use kith_tests::group::make_group;
use kith_tests::{Peer, Relay, connect, files_under};

struct Args {
    minutes: u64,
    interval: Duration,
}

fn parse_args() -> Args {
    let mut args = Args { minutes: 30, interval: Duration::from_secs(2) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it.next().unwrap_or_else(|| panic!("{flag} needs a value")).parse().unwrap();
        match flag.as_str() {
            "--minutes" => args.minutes = value,
            "--interval-ms" => args.interval = Duration::from_millis(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn dir_kib(dir: &Path) -> u64 {
    files_under(dir).iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum::<u64>() / 1024
}

/// One minute's sample of a process.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    db_kib: u64,
}

fn sample(pid: u32, db: Option<&Path>) -> Sample {
    Sample { rss_kib: rss_kib(pid), fds: fds(pid), db_kib: db.map_or(0, dir_kib) }
}

fn main() {
    let args = parse_args();
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = [Peer::init("Ann"), Peer::init("Bob")];
    for p in &mut peers {
        p.ok(&["relay", "add", &relay.addr()]);
        p.start(&[]);
    }
    connect(&peers[0], &peers[1]);
    make_group(&peers, "soak");
    let dbs: Vec<std::path::PathBuf> = peers.iter().map(|p| kith_p2p::home::Home::at(p.home()).db_path()).collect();

    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let mut next_sample = started;
    let mut minute = 0u64;
    let mut sent = 0u64;
    let mut rows: Vec<[Sample; 3]> = Vec::new();
    println!("minute | Ann rss KiB fds db KiB | Bob rss KiB fds db KiB | relay rss KiB fds | messages sent");
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            let pids: Vec<u32> = peers.iter().map(|p| p.daemon.as_ref().map_or(0, |c| c.id())).collect();
            let relay_pid = relay.process.as_ref().map_or(0, |c| c.id());
            let row = [sample(pids[0], Some(&dbs[0])), sample(pids[1], Some(&dbs[1])), sample(relay_pid, None)];
            println!(
                "{minute:>6} | {:>7} {:>3} {:>6} | {:>7} {:>3} {:>6} | {:>7} {:>3} | {sent}",
                row[0].rss_kib, row[0].fds, row[0].db_kib, row[1].rss_kib, row[1].fds, row[1].db_kib, row[2].rss_kib, row[2].fds
            );
            rows.push(row);
            minute += 1;
            next_sample += Duration::from_secs(60);
            // Bob is offline for the first minute of every ten (after warm-up): his mail
            // goes through the relay's mailbox and is drained when he is back.
            if minute % 10 == 5 {
                peers[1].stop();
            } else if minute % 10 == 6 && peers[1].daemon.is_none() {
                peers[1].start(&[]);
            }
        }
        let bob_up = peers[1].daemon.is_some();
        peers[0].ok(&["send", "Bob", &format!("soak {sent} from Ann")]);
        if bob_up {
            peers[1].ok(&["send", "Ann", &format!("soak {sent} from Bob")]);
            if sent.is_multiple_of(10) {
                peers[1].ok(&["send", "soak", &format!("soak {sent} to the group")]);
            }
        }
        sent += 1;
        std::thread::sleep(args.interval);
    }
    if peers[1].daemon.is_none() {
        peers[1].start(&[]);
    }

    // Flat after warm-up: compare the sample after 4 minutes (or the first) with the last.
    let warm = rows.get(4).or(rows.first()).copied().unwrap_or_default();
    let last = rows.last().copied().unwrap_or_default();
    for (i, who) in ["Ann", "Bob", "relay"].iter().enumerate() {
        println!(
            "{who}: rss {} → {} KiB, fds {} → {}, db {} → {} KiB",
            warm[i].rss_kib, last[i].rss_kib, warm[i].fds, last[i].fds, warm[i].db_kib, last[i].db_kib
        );
    }
    println!("{sent} rounds in {:.1} min", started.elapsed().as_secs_f64() / 60.0);
}
