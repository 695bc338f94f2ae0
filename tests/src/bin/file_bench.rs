//! `file-bench`: how fast a file moves between real daemons on 127.0.0.1, directly
//! and through a media node, how much memory the daemons take while it does, and
//! what an interrupted transfer costs.
//!
//! `cargo run --release -p kith-tests --bin file-bench -- --mib 1024`
//!
//! Phases, each timed from the command's start to its answer:
//! - seal: `kith send-file` to a connected contact (read, encrypt, hash, write the
//!   sealed blob; the message stored);
//! - direct: `kith get ID --wait` at the receiver (fetch over `/kith/blob/1`, check
//!   and open every chunk, write it into the file, fsynced; the save is a link);
//! - upload: `kith send-file` to a contact who is offline (seal, then the media node
//!   pulls and stores every chunk);
//! - from media: `kith get ID --wait` with the sender offline (from the media node);
//! - resume: a direct transfer with the receiver killed (`kill -9`) half-way and
//!   restarted: its total time and the bytes the sender served.
//!
//! Peak RSS is each daemon's `VmHWM` (its whole life, start-up included). Timings are
//! printed, never asserted.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use kith_tests::files::{counter, file_of, pair_on, random_file, wait_for_file};
use kith_tests::{Peer, Relay, wait_until};

const MIB: u64 = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args
        .iter()
        .position(|a| a == "--mib")
        .and_then(|i| args.get(i + 1))
        .map_or(1024, |v| v.parse().expect("--mib takes a number"));
    let size = mib * MIB;
    let dir = tempfile::tempdir().unwrap();

    let mut relay = Relay::new("[media]\nenabled = true\n");
    relay.start();
    let (mut alice, mut bob) = pair_on(&relay);
    println!("file-bench: {mib} MiB, daemons and a media node on 127.0.0.1");
    // The disk's own pace for scale: the receiver writes the file once, the sender
    // writes its sealed copy and reads it again while serving.
    let (_, floor) = timed(|| write_zeros(&dir.path().join("floor.bin"), size));
    report("disk floor (write + fsync of the same size)", size, floor);

    // Direct.
    let file = random_file(dir.path(), "direct.bin", size);
    let (id, seal) = timed(|| send_file(&alice, &file));
    report("seal (send-file, connected)", size, seal);
    wait_for_state(&bob, &id, "offered");
    let events = bob.follow();
    let start = Instant::now();
    // The last progress event marks the end of the fetch; the rest is the save.
    let (fetch, direct) = std::thread::scope(|scope| {
        let getting = scope.spawn(|| bob.ok(&["get", &id, "--wait"]));
        events.wait_for(Duration::from_secs(600), "the whole file fetched", |e| {
            e["type"] == "file_progress" && e["id"] == id.as_str() && e["have"] == size
        });
        let fetch = start.elapsed();
        getting.join().unwrap();
        (fetch, start.elapsed())
    });
    drop(events);
    report("direct (get --wait)", size, direct);
    report("  of which fetch (network, chunks checked and stored)", size, fetch);
    report("  of which save (a link to the received file, or a checked copy)", size, direct.saturating_sub(fetch));
    println!("  peak RSS: sender {} MiB, receiver {} MiB", peak_rss_mib(&alice), peak_rss_mib(&bob));
    check_same(&bob, &id, &file);

    // Through the media node: Bob offline while Alice sends, Alice offline while Bob
    // fetches.
    bob.stop();
    let file = random_file(dir.path(), "media.bin", size);
    let (id, upload) = timed(|| send_file(&alice, &file));
    report("upload (send-file, recipient offline: seal + media node pulls)", size, upload);
    wait_until(Duration::from_secs(120), "the message reaches the relay", || {
        alice.history("Bob").iter().filter(|m| m["file"]["id"] == id.as_str()).all(|m| m["state"] == "sent")
    });
    println!("  peak RSS: sender {} MiB", peak_rss_mib(&alice));
    alice.stop();
    bob.start(&[]);
    wait_for_state(&bob, &id, "offered");
    let (_, from_media) = timed(|| bob.ok(&["get", &id, "--wait"]));
    report("from the media node (get --wait, sender offline)", size, from_media);
    report("end to end through the media node (upload + download)", size, upload + from_media);
    println!("  peak RSS: receiver {} MiB", peak_rss_mib(&bob));
    check_same(&bob, &id, &file);

    // Resume: the receiver is killed half-way.
    alice.start(&[]);
    wait_until(Duration::from_secs(60), "Alice and Bob reconnect", || {
        alice.json(&["status", "--json"])["connected_peers"].as_array().unwrap().iter().any(|p| p == bob.peer_id.as_str())
    });
    let served_before = counter(&alice, "files_served_bytes");
    let file = random_file(dir.path(), "resume.bin", size);
    let id = send_file(&alice, &file);
    wait_for_state(&bob, &id, "offered");
    let start = Instant::now();
    let events = bob.follow();
    bob.ok(&["get", &id]);
    events.wait_for(Duration::from_secs(600), "half of the file", |e| {
        e["type"] == "file_progress" && e["id"] == id.as_str() && e["have"].as_u64().unwrap() >= size / 2
    });
    bob.kill9();
    drop(events);
    bob.start(&[]);
    wait_until(Duration::from_secs(600), "the file completes after the restart", || {
        file_of(&bob, &id).is_some_and(|f| f["state"] == "complete")
    });
    let resumed = start.elapsed();
    let served = counter(&alice, "files_served_bytes") - served_before;
    report("direct with kill -9 of the receiver half-way (restart included)", size, resumed);
    println!(
        "  served {:.1} MiB for {mib} MiB ({:.3}x the file; sealing adds 1/16384)",
        served as f64 / MIB as f64,
        served as f64 / size as f64
    );
    check_same(&bob, &id, &file);
}

fn write_zeros(path: &Path, size: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    std::io::copy(&mut std::io::Read::take(std::io::repeat(0), size), &mut file).unwrap();
    file.sync_all().unwrap();
    std::fs::remove_file(path).unwrap();
}

fn send_file(from: &Peer, path: &Path) -> String {
    let message = from.json(&["send-file", "Bob", path.to_str().unwrap(), "--json"]);
    message["file"]["id"].as_str().unwrap().to_owned()
}

fn wait_for_state(peer: &Peer, id: &str, state: &str) {
    wait_for_file(peer, id, state, Duration::from_secs(120));
}

fn check_same(peer: &Peer, id: &str, original: &Path) {
    let saved = file_of(peer, id).unwrap()["path"].as_str().unwrap().to_owned();
    let same = std::process::Command::new("cmp").arg(&saved).arg(original).status().unwrap().success();
    assert!(same, "{saved} differs from {}", original.display());
    std::fs::remove_file(saved).unwrap();
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn report(what: &str, size: u64, took: Duration) {
    let mb_s = size as f64 / 1e6 / took.as_secs_f64();
    println!("{what}: {:.2} s, {mb_s:.0} MB/s", took.as_secs_f64());
}

/// A daemon's peak resident memory (`VmHWM`), in MiB.
fn peak_rss_mib(peer: &Peer) -> u64 {
    let pid = peer.daemon.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib / 1024
}
