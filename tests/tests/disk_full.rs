//! A full disk under a running node: its home on a small tmpfs that fills up while
//! it sends. Sends are refused with a typed `storage` error instead of being
//! acknowledged, the node keeps answering, everything it acknowledged reaches the
//! contact and is still in its history after a restart with room again, and it then
//! sends as before.
//!
//! Mounting needs root: outside CI the test skips, saying why; under CI (`CI` set)
//! it fails instead ([`kith_tests::skip_or_fail`]).

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kith_tests::{Peer, connect, skip_or_fail, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);
/// At most this many sends while the disk is full (each a real `kith send`).
const MAX_SENDS: usize = 400;

/// A tmpfs mounted over a directory for the length of a test, with its contents.
struct SmallDisk {
    mount_point: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    /// Moves `dir`'s contents onto a tmpfs of `size` mounted over it, or says why
    /// it cannot.
    fn mount_over(dir: &Path, size: &str) -> Result<SmallDisk, String> {
        let saved = dir.with_extension("saved");
        std::fs::rename(dir, &saved).unwrap();
        std::fs::create_dir(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "kith-disk-full", dir.to_str().unwrap()])
            .output();
        let refused = match mounted {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!("cannot mount a tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => Some(format!("cannot run mount: {e}")),
        };
        if let Some(reason) = refused {
            std::fs::remove_dir(dir).unwrap();
            std::fs::rename(&saved, dir).unwrap();
            return Err(reason);
        }
        let disk = SmallDisk { mount_point: dir.to_owned(), filler: dir.join("filler") };
        let copied = Command::new("cp").arg("-a").arg(saved.join(".")).arg(dir).status().unwrap();
        assert!(copied.success(), "the home is copied onto the tmpfs");
        Ok(disk)
    }

    /// Takes every free byte with one file.
    fn fill(&self) {
        let mut file = File::create(&self.filler).unwrap();
        let chunk = vec![0xA5u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // What is left is smaller than a chunk: take it byte by byte.
        while let Ok(1) = file.write(&[0]) {}
    }

    /// Gives the space back.
    fn empty(&self) {
        std::fs::remove_file(&self.filler).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a daemon that outlived a failed assertion must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.mount_point).status();
    }
}

/// ENOSPC on Linux.
fn libc_enospc() -> i32 {
    28
}

#[test]
fn a_full_disk_refuses_sends_with_a_storage_error_and_loses_nothing_acknowledged() {
    let test = "a_full_disk_refuses_sends_with_a_storage_error_and_loses_nothing_acknowledged";
    let mut alice = Peer::init("alice");
    let disk = match SmallDisk::mount_over(&alice.home, "32m") {
        Ok(disk) => disk,
        Err(reason) => return skip_or_fail(test, &reason),
    };
    let mut bob = Peer::init("bob");
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);
    let mut acknowledged = vec!["before the disk filled".to_owned()];
    alice.ok(&["send", "bob", &acknowledged[0]]);
    wait_until(DEADLINE, "bob has the first message", || bob.texts(&alice, "incoming").len() == 1);

    disk.fill();
    let mut refusal = None;
    for i in 0..MAX_SENDS {
        let text = format!("while the disk is full {i:03}");
        let out = alice.run(&["send", "bob", &text, "--json"]);
        if out.status.success() {
            acknowledged.push(text);
        } else {
            refusal = Some(serde_json::from_slice::<Value>(&out.stderr).unwrap_or_else(|e| {
                panic!("a refusal is JSON on stderr ({e}): {}", String::from_utf8_lossy(&out.stderr))
            }));
            break;
        }
    }
    let refusal = refusal.unwrap_or_else(|| panic!("{MAX_SENDS} sends on a full disk were all acknowledged"));
    assert_eq!(refusal["error"]["code"], "storage", "{refusal}");
    assert!(refusal["error"]["message"].as_str().unwrap().contains("not stored"), "{refusal}");
    // Usually a hundred or more land in the log's zeros written ahead; none if
    // the fill came just as those ran out, which is as correct.
    eprintln!("{} send(s) acknowledged on the full disk (into the log's zeros written ahead) before the refusal", acknowledged.len() - 1);
    let status = alice.json(&["status", "--json"]);
    assert_eq!(status["storage_failed"], true, "the node still answers, and says it stopped storing: {status}");
    let said = alice.ok(&["status"]);
    assert!(said.contains("FAILED: a write to disk failed"), "kith status says so to people:\n{said}");

    // Room again. The log's index in memory may hold what its file lacks, so the
    // node goes on refusing until it restarts.
    disk.empty();
    let out = alice.run(&["send", "bob", "with room but before a restart", "--json"]);
    assert!(!out.status.success(), "still refused before a restart");

    // A restart (as people would: kith stops, kith starts): everything
    // acknowledged is still her history, and she sends as before.
    alice.stop();
    alice.start(&[]);
    assert_eq!(alice.json(&["status", "--json"])["storage_failed"], false);
    let kept = alice.texts(&bob, "outgoing");
    assert_eq!(&kept[..acknowledged.len()], &acknowledged[..], "alice's history keeps every acknowledged message, in order");
    // Sending needs the ratchet's state stored, so what had not left when the node
    // stopped storing leaves now: Bob gets every acknowledged message, once and in
    // order.
    wait_until(DEADLINE, "bob has every acknowledged message", || bob.texts(&alice, "incoming").len() >= acknowledged.len());
    assert_eq!(&bob.texts(&alice, "incoming")[..acknowledged.len()], &acknowledged[..], "bob has each acknowledged message once, in order");
    alice.ok(&["send", "bob", "after the restart"]);
    wait_until(DEADLINE, "bob has the message sent after the restart", || {
        bob.texts(&alice, "incoming").last().map(String::as_str) == Some("after the restart")
    });
    let all = bob.texts(&alice, "incoming");
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "bob got no message twice: {all:?}");
    alice.kill9();
}
