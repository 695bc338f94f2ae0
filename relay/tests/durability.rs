//! Durability: whatever `deposit` acknowledged survives a `kill -9` of the process.
//!
//! The test re-runs its own binary as a child (selected by an environment variable)
//! that deposits in a loop and prints each acknowledged sequence number; the parent
//! kills it with SIGKILL mid-stream, reopens the store and checks that every
//! acknowledged envelope is there, intact, and that numbering goes on above them.
//! Several rounds, so recovery of an already recovered store is exercised too.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kith_relay::mailbox::{DepositOutcome, MailboxLimits, MailboxStore};

/// Set (to the store directory) in the child process only.
const CHILD_DIR_VAR: &str = "KITH_RELAY_TEST_CHILD_DIR";
/// The round number, so each child deposits distinct envelopes.
const CHILD_ROUND_VAR: &str = "KITH_RELAY_TEST_CHILD_ROUND";
/// Kill-and-recover rounds.
const ROUNDS: u64 = 3;
/// Acknowledgements to wait for before killing the child.
const ACKS_BEFORE_KILL: usize = 40;
/// Upper bound for the child to produce them (generous for slow CI disks).
const DEADLINE: Duration = Duration::from_secs(60);

fn limits() -> MailboxLimits {
    MailboxLimits {
        max_messages_per_mailbox: 1_000_000,
        ..MailboxLimits::default()
    }
}

fn envelope(i: u64) -> Vec<u8> {
    format!("envelope {i} {}", "x".repeat((i % 7) as usize * 100)).into_bytes()
}

/// The child's body; a no-op when run as a normal test.
#[test]
fn child_depositor() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND_VAR).unwrap().parse().unwrap();
    let store = MailboxStore::open(dir.as_ref(), limits()).unwrap();
    for i in round * 1_000_000.. {
        let batch = [envelope(2 * i), envelope(2 * i + 1)];
        let out = store.deposit(b"owner", &batch, i).unwrap();
        for (n, outcome) in out.iter().enumerate() {
            let DepositOutcome::Stored { seq } = outcome else {
                panic!("{outcome:?}");
            };
            // Only now is the envelope acknowledged.
            println!("ACK {seq} {}", 2 * i + n as u64);
        }
    }
}

#[test]
fn acknowledged_deposits_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        acked.extend(run_and_kill_child(dir.path(), round));
        let store = MailboxStore::open(dir.path(), limits()).unwrap();
        let held = store.list(b"owner", None, usize::MAX, usize::MAX).unwrap();
        for &(seq, i) in &acked {
            let found = held
                .iter()
                .find(|e| e.seq == seq)
                .unwrap_or_else(|| panic!("lost seq {seq}"));
            assert_eq!(found.envelope, envelope(i));
        }
        assert!(held.len() >= acked.len());
        assert_eq!(store.stats().envelopes, held.len() as u64);
        let max_seq = held.iter().map(|e| e.seq).max().unwrap();
        let note = format!("after round {round}");
        let out = store.deposit(b"owner", &[note.as_bytes()], 0).unwrap();
        assert!(
            matches!(out[0], DepositOutcome::Stored { seq } if seq > max_seq),
            "{out:?}"
        );
        assert_eq!(store.stats().envelopes, held.len() as u64 + 1);
    }
}

/// Runs a depositing child until it has acknowledged [`ACKS_BEFORE_KILL`] envelopes,
/// SIGKILLs it and returns every (seq, envelope index) it acknowledged.
fn run_and_kill_child(dir: &std::path::Path, round: u64) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_depositor",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_ROUND_VAR, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
                if tx
                    .send((parts.next().unwrap(), parts.next().unwrap()))
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < ACKS_BEFORE_KILL {
        match rx.recv_timeout(DEADLINE) {
            Ok(ack) => acked.push(ack),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging: {e}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush.
    child.wait().unwrap();
    // Acks printed between our last read and the kill count too.
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    acked
}
