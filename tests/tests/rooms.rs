//! A group's voice room through a real relay's forwarder (`kith-relay` with the media
//! role) and real daemons on 127.0.0.1: each member's recording holds the other
//! members' tones and not its own, and a member removed from the group is out of the
//! room.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use kith_call::{tone, wav};
use kith_tests::group::{GROUP_DEADLINE, group, make_group, members};
use kith_tests::{Peer, Relay, wait_output, wait_until};
use serde_json::Value;

const TONES: [f64; 3] = [440.0, 660.0, 990.0];

/// Samples in a recording so far (its header is brought up to date every second).
fn recorded(path: &Path) -> usize {
    wav::read_mono(path).map(|s| s.len()).unwrap_or(0)
}

/// Who `peer` hears speaking in its (only) room, sorted.
fn speaking(peer: &Peer) -> Vec<String> {
    let rooms = peer.json(&["room", "list", "--json"]);
    let list = rooms.as_array().unwrap().first().map(|r: &Value| r["speaking"].as_array().unwrap().clone());
    let mut names: Vec<String> = list.unwrap_or_default().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

fn participants(peer: &Peer) -> usize {
    let rooms = peer.json(&["room", "list", "--json"]);
    rooms.as_array().unwrap().first().map_or(0, |r: &Value| r["participants"].as_array().unwrap().len())
}

/// A child killed when the test ends, however it ends.
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_voice_room_of_three_forwards_each_to_the_others_and_a_removed_member_is_out() {
    let mut relay = Relay::new("[media]\nenabled = true\n");
    relay.start();
    let peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let id = make_group(&peers, "club");
    let dir = tempfile::tempdir().unwrap();
    let mut heard: Vec<PathBuf> = Vec::new();
    let mut joins = Vec::new();
    for (peer, hz) in peers.iter().zip(TONES) {
        let input = dir.path().join(format!("{}-{hz}.wav", peer.name));
        wav::write_mono(&input, &tone::sine(hz, 120.0, 6000)).unwrap();
        let output = dir.path().join(format!("{}-heard.wav", peer.name));
        let child = peer
            .command(&["room", "join", "club", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        joins.push(Killed(Some(child)));
        heard.push(output);
    }
    wait_until(Duration::from_secs(60), "everyone sees three in the room", || peers.iter().all(|p| participants(p) == 3));
    // Everyone's tone is speech: each member hears the other two speaking, by name.
    wait_until(Duration::from_secs(30), "each hears the other two speaking", || {
        peers.iter().all(|p| {
            let mut others: Vec<String> = peers.iter().filter(|o| o.peer_id != p.peer_id).map(|o| o.peer_id.clone()).collect();
            others.sort();
            speaking(p) == others
        })
    });

    // Two seconds of everyone, from now.
    let from: Vec<usize> = heard.iter().map(|h| recorded(h)).collect();
    wait_until(Duration::from_secs(30), "two more seconds recorded by everyone", || {
        heard.iter().zip(&from).all(|(h, f)| recorded(h) >= f + 96_000)
    });
    for (i, path) in heard.iter().enumerate() {
        let samples = wav::read_mono(path).unwrap()[from[i]..].to_vec();
        for (j, hz) in TONES.iter().enumerate() {
            let seconds = tone::tone_seconds(&samples, *hz);
            if i == j {
                assert!(seconds < 0.2, "{} hears itself: {seconds:.2} s of {hz} Hz", peers[i].name);
            } else {
                assert!(seconds >= 1.5, "{} hears {seconds:.2} s of {}'s {hz} Hz", peers[i].name, peers[j].name);
            }
        }
    }

    // Carol is removed from the group: she is out of the room, and Alice and Bob
    // hear only each other.
    peers[0].ok(&["group", "remove", "club", &peers[2].peer_id]);
    wait_until(GROUP_DEADLINE, "Carol learns she was removed", || group(&peers[2], &id).is_some_and(|g| g["active"] == false));
    wait_until(Duration::from_secs(30), "the room is down to Alice and Bob", || {
        participants(&peers[0]) == 2 && participants(&peers[1]) == 2
    });
    let carol = joins.pop().unwrap().0.take().unwrap();
    // Out either way: her node left when it learned of the removal, or the members'
    // nodes had the media node eject her first.
    let out = wait_output(carol, Duration::from_secs(30), "Carol's `kith room join` to end");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.contains("removed") || out.contains("closed"), "Carol's `kith room join` says why it ended: {out:?}");
    let from: Vec<usize> = heard[..2].iter().map(|h| recorded(h)).collect();
    wait_until(Duration::from_secs(30), "three more seconds for Alice and Bob", || {
        heard[..2].iter().zip(&from).all(|(h, f)| recorded(h) >= f + 144_000)
    });
    for i in 0..2 {
        // A recording's length on disk lags by up to a second (its header is
        // updated every second), and what was in flight still plays: the first 1.5 s
        // are left out.
        let samples = wav::read_mono(&heard[i]).unwrap()[from[i] + 72_000..].to_vec();
        assert!(tone::tone_seconds(&samples, 990.0) < 0.2, "{} still hears Carol", peers[i].name);
        assert!(tone::tone_seconds(&samples, TONES[1 - i]) >= 1.2, "{} hears the other", peers[i].name);
    }

    // Alice mutes herself: Bob no longer hears her speak; unmuted, he does again.
    let muted = peers[0].json(&["room", "mute", "club", "--json"]);
    assert_eq!(muted["muted"], true, "{muted}");
    wait_until(Duration::from_secs(10), "Alice falls silent at Bob's", || speaking(&peers[1]).is_empty());
    peers[0].ok(&["room", "mute", "club", "--off"]);
    wait_until(Duration::from_secs(10), "Alice speaks again at Bob's", || speaking(&peers[1]) == vec![peers[0].peer_id.clone()]);
}
