//! Files between real daemons on 127.0.0.1: sent with `kith send-file`, fetched by
//! themselves up to the automatic size or with `kith get` above it, byte for byte the
//! same (SHA-256), and resumed after `kill -9` of either side without sending the
//! file again; through a media node while each side is offline in turn; a group
//! file uploaded once.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kith_tests::group::{group, make_group, members};
use kith_tests::files::{counter, file_of, pair_on, random_file, wait_for_file};
use kith_tests::{Peer, Relay, connected_pair, contains_bytes, files_under, wait_until};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// Each sealed chunk carries a 16-byte tag over 256 KiB of file.
const SEALED_PER_BYTE: f64 = (262_144.0 + 16.0) / 262_144.0;

/// The SHA-256 of a file, by `sha256sum` (coreutils).
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// Sends `path` from `from` to `to_name`; returns the file id.
fn send_file(from: &Peer, to_name: &str, path: &Path, caption: &str) -> String {
    let message = from.json(&["send-file", to_name, path.to_str().unwrap(), "--caption", caption, "--json"]);
    assert_eq!(message["text"], caption);
    message["file"]["id"].as_str().unwrap().to_owned()
}

#[test]
fn small_files_arrive_by_themselves_and_big_ones_on_request_byte_for_byte() {
    let (alice, bob) = connected_pair();
    let dir = tempfile::tempdir().unwrap();

    let small = random_file(dir.path(), "notes 1.bin", 3 * MIB + 17);
    let id = send_file(&alice, "Bob", &small, "the notes");
    let received = wait_for_file(&bob, &id, "complete", Duration::from_secs(60));
    assert_eq!(received["name"], "notes 1.bin");
    assert_eq!(received["size"], 3 * MIB + 17);
    let saved = PathBuf::from(received["path"].as_str().unwrap());
    assert!(saved.starts_with(bob.home()), "saved under Bob's home: {}", saved.display());
    assert_eq!(sha256(&saved), sha256(&small));
    // Written to Bob's disk once: the saved file and the blob he serves it from are
    // one file (a hard link), and no sealed copy of it is kept beside.
    assert_eq!(std::fs::metadata(&saved).unwrap().nlink(), 2, "the saved file is the blob's data file");
    let held: u64 = std::fs::read_dir(bob.home().join("blobs"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap())
        .filter(|meta| meta.nlink() == 1)
        .map(|meta| meta.len())
        .sum();
    assert!(held < MIB, "beside the saved file the blob store holds only small records: {held} bytes");
    let history = bob.history("Alice");
    let last = history.last().unwrap();
    assert_eq!(last["file"]["id"], id.as_str());
    assert_eq!(last["text"], "the notes");
    assert_eq!(file_of(&alice, &id).unwrap()["state"], "shared");

    // Above the automatic size (25 MiB): offered, then fetched when asked for.
    let big = random_file(dir.path(), "big.bin", 256 * MIB);
    let id = send_file(&alice, "Bob", &big, "");
    wait_for_file(&bob, &id, "offered", Duration::from_secs(30));
    let copy = dir.path().join("copy.bin");
    let got = bob.json(&["get", &id[..12], "--wait", "--out", copy.to_str().unwrap(), "--json"]);
    assert_eq!(got["state"], "complete");
    assert_eq!(sha256(&copy), sha256(&big), "Bob's copy of the 256 MiB file is Alice's file");
    let kept = PathBuf::from(file_of(&bob, &id).unwrap()["path"].as_str().unwrap());
    assert_eq!(sha256(&kept), sha256(&big));

    // A prefix that names no file is a typed error.
    let out = bob.run(&["get", "ffffffffffff", "--json"]);
    assert!(!out.status.success());
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["code"], "unknown_file");
}

#[test]
fn a_transfer_resumes_after_kill_9_of_the_receiver_and_of_the_sender() {
    let (mut alice, mut bob) = connected_pair();
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * MIB;
    let sealed = size as f64 * SEALED_PER_BYTE;

    // The receiver dies half-way.
    let first = random_file(dir.path(), "first.bin", size);
    let id = send_file(&alice, "Bob", &first, "");
    wait_for_file(&bob, &id, "offered", Duration::from_secs(30));
    let events = bob.follow();
    bob.ok(&["get", &id]);
    events.wait_for(Duration::from_secs(120), "Bob has half of the first file", |e| {
        e["type"] == "file_progress" && e["id"] == id.as_str() && e["have"].as_u64().unwrap() >= size / 2
    });
    bob.kill9();
    drop(events);
    bob.start(&[]);
    let done = wait_for_file(&bob, &id, "complete", Duration::from_secs(180));
    assert_eq!(sha256(Path::new(done["path"].as_str().unwrap())), sha256(&first));
    let served = counter(&alice, "files_served_bytes") as f64;
    assert!(served < 1.3 * sealed, "Alice served {served} bytes for a file of {sealed} sealed bytes");

    // The sender dies half-way.
    let second = random_file(dir.path(), "second.bin", size);
    let id = send_file(&alice, "Bob", &second, "");
    wait_for_file(&bob, &id, "offered", Duration::from_secs(30));
    let fetched_before = counter(&bob, "files_fetched_bytes");
    let events = bob.follow();
    bob.ok(&["get", &id]);
    events.wait_for(Duration::from_secs(120), "Bob has half of the second file", |e| {
        e["type"] == "file_progress" && e["id"] == id.as_str() && e["have"].as_u64().unwrap() >= size / 2
    });
    alice.kill9();
    alice.start(&[]);
    let done = wait_for_file(&bob, &id, "complete", Duration::from_secs(180));
    assert_eq!(sha256(Path::new(done["path"].as_str().unwrap())), sha256(&second));
    let fetched = (counter(&bob, "files_fetched_bytes") - fetched_before) as f64;
    assert!(fetched < 1.3 * sealed, "Bob fetched {fetched} bytes for a file of {sealed} sealed bytes");
}

/// A relay with the media role, running.
fn media_relay() -> Relay {
    let mut relay = Relay::new("[media]\nenabled = true\n");
    relay.start();
    relay
}

#[test]
fn through_a_media_node_while_each_side_is_offline_in_turn() {
    let relay = media_relay();
    let (mut alice, mut bob) = pair_on(&relay);
    let dir = tempfile::tempdir().unwrap();

    // Bob is offline: Alice's files go to the media node, her messages to his mailbox.
    bob.stop();
    let marker = b"kith-plaintext-marker-5e1f0c";
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, [&marker[..], b" and the rest of the notes\n"].concat()).unwrap();
    let small = send_file(&alice, "Bob", &notes, "for when you are back");
    let big_file = random_file(dir.path(), "big.bin", 256 * MIB);
    let events = alice.follow();
    let big = send_file(&alice, "Bob", &big_file, "");
    // `kith follow` (and `send-file`'s bar) saw the file sealed and pushed whole.
    let path = big_file.to_str().unwrap();
    for phase in ["sealing", "uploading"] {
        events.wait_for(Duration::from_secs(30), &format!("{phase} reported to the end"), |e| {
            e["type"] == "file_sending" && e["path"] == path && e["phase"] == phase && e["have"] == 256 * MIB
        });
    }
    drop(events);
    for id in [&small, &big] {
        assert_eq!(file_of(&alice, id).unwrap()["state"], "uploaded", "Alice's file {id} is on the media node");
    }
    // Pushed while it was sealed, in the same pass: the media node pulled nothing.
    assert_eq!(counter(&alice, "files_served_bytes"), 0, "the media node pulled the files again");
    wait_until(Duration::from_secs(60), "the relay holds both messages for Bob", || {
        alice.history("Bob").iter().filter(|m| m["file"].is_object()).all(|m| m["state"] == "sent")
    });
    // What the media node keeps is sealed: no plaintext anywhere in its data directory.
    for path in files_under(&relay.data_dir) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(!contains_bytes(&bytes, marker), "plaintext in {}", path.display());
    }

    // Alice goes offline; Bob comes back and fetches both from the media node.
    alice.stop();
    bob.start(&[]);
    let notes_at_bob = wait_for_file(&bob, &small, "complete", Duration::from_secs(60));
    assert_eq!(std::fs::read(notes_at_bob["path"].as_str().unwrap()).unwrap(), std::fs::read(&notes).unwrap());
    wait_for_file(&bob, &big, "offered", Duration::from_secs(30));
    let copy = dir.path().join("copy.bin");
    let got = bob.json(&["get", &big, "--wait", "--out", copy.to_str().unwrap(), "--json"]);
    assert_eq!(got["state"], "complete");
    assert_eq!(sha256(&copy), sha256(&big_file), "Bob's copy from the media node is Alice's file");
}

#[test]
fn a_group_file_is_uploaded_once_and_reaches_every_member_but_a_removed_one() {
    let relay = media_relay();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"]);
    let id = make_group(&peers, "club");
    // Frank is removed before the file is sent: he never gets its key.
    peers[0].ok(&["group", "remove", "club", &peers[5].peer_id]);
    wait_until(Duration::from_secs(60), "Frank learns he was removed", || {
        group(&peers[5], &id).is_some_and(|g| g["active"] == false)
    });
    let dir = tempfile::tempdir().unwrap();
    let photo = random_file(dir.path(), "photo.jpg", 4 * MIB + 1);
    let file = send_file(&peers[0], "club", &photo, "from the trip");
    assert_eq!(file_of(&peers[0], &file).unwrap()["state"], "uploaded");
    for p in &peers[1..5] {
        let got = wait_for_file(p, &file, "complete", Duration::from_secs(60));
        assert_eq!(sha256(Path::new(got["path"].as_str().unwrap())), sha256(&photo), "{}'s copy", p.name);
        assert_eq!(got["media_type"], "image/jpeg");
    }
    // Uploaded once: the media node holds one blob, whatever the group's size.
    let blobs: Vec<PathBuf> = files_under(&relay.data_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    assert_eq!(blobs.len(), 1, "one blob on the media node: {blobs:?}");
    // Frank's node has no record of the file and nothing in its blob store.
    assert!(file_of(&peers[5], &file).is_none(), "Frank knows of the file");
    peers[5].stop();
    let frank_blobs = files_under(&peers[5].home().join("blobs"));
    assert!(frank_blobs.iter().all(|p| !p.to_string_lossy().contains(&file[..16])), "{frank_blobs:?}");
}

#[test]
fn a_media_node_refusal_is_kept_with_the_file_and_the_file_still_goes_directly() {
    let mut relay = Relay::new("[media]\nenabled = true\nmax_blob_bytes = 1048576\n");
    relay.start();
    let (mut alice, mut bob) = pair_on(&relay);
    bob.stop();
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "two.bin", 2 * MIB);
    // Waits until the message is with the relay: Alice leaves right after.
    let sent = alice.json(&["send-file", "Bob", file.to_str().unwrap(), "--wait", "sent", "--json"]);
    assert_eq!(sent["state"], "sent", "{sent}");
    let id = sent["file"]["id"].as_str().unwrap().to_owned();
    let record = file_of(&alice, &id).unwrap();
    assert_eq!(record["state"], "shared", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("too large"), "the refusal says why: {error}");
    // Bob comes back while Alice is away: no source, so waiting gives up when told.
    alice.stop();
    bob.start(&[]);
    wait_for_file(&bob, &id, "downloading", Duration::from_secs(30));
    let out = bob.run(&["get", &id, "--wait", "--timeout", "2", "--json"]);
    assert!(!out.status.success());
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["code"], "timeout", "{error}");
    // Alice back: the download goes on by itself and completes.
    alice.start(&[]);
    let got = wait_for_file(&bob, &id, "complete", Duration::from_secs(60));
    assert_eq!(sha256(Path::new(got["path"].as_str().unwrap())), sha256(&file));
}

/// The files of blob `id` in `peer`'s blob store (its data, outboard, key and
/// bitmap files).
fn blob_files(peer: &Peer, id: &str) -> Vec<PathBuf> {
    files_under(&peer.home().join("blobs"))
        .into_iter()
        .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(id)))
        .collect()
}

/// Sends `path` from `from` to `to_name` and waits until `to` holds it; returns the
/// message id and the file id.
fn deliver_file(from: &Peer, to: &Peer, to_name: &str, path: &Path) -> (String, String) {
    let message = from.json(&["send-file", to_name, path.to_str().unwrap(), "--json"]);
    let (message_id, file_id) = (message["id"].as_str().unwrap().to_owned(), message["file"]["id"].as_str().unwrap().to_owned());
    wait_for_file(to, &file_id, "complete", Duration::from_secs(60));
    assert!(!blob_files(from, &file_id).is_empty() && !blob_files(to, &file_id).is_empty(), "both hold the file");
    (message_id, file_id)
}

#[test]
fn a_file_deleted_for_everyone_leaves_both_blob_stores_and_the_saved_copy_stays() {
    let (alice, bob) = connected_pair();
    let dir = tempfile::tempdir().unwrap();
    let photo = random_file(dir.path(), "photo.bin", 2 * MIB + 5);
    let (message, id) = deliver_file(&alice, &bob, "Bob", &photo);
    let saved = PathBuf::from(file_of(&bob, &id).unwrap()["path"].as_str().unwrap());

    let events = bob.follow();
    alice.ok(&["delete", &message, "--for-everyone"]);
    // Bob's clients hear that the file went.
    events.wait_for(Duration::from_secs(30), "Bob's clients hear the file was removed", |e| {
        e["type"] == "file_removed" && e["id"] == id.as_str() && e["message"] == message.as_str()
    });
    for peer in [&alice, &bob] {
        // The blob goes first, then the record (docs/PROTOCOL.md, *When a file goes*).
        wait_until(Duration::from_secs(30), &format!("{}'s blob store and file list let the deleted file go", peer.name), || {
            blob_files(peer, &id).is_empty() && file_of(peer, &id).is_none()
        });
    }
    // What Bob saved to his files folder is his, not the node's.
    assert_eq!(sha256(&saved), sha256(&photo), "Bob's saved copy stays");
}

#[test]
fn a_hidden_received_file_goes_a_hidden_sent_one_stays_and_a_removed_contacts_files_go_at_the_next_start() {
    let (alice, mut bob) = connected_pair();
    let dir = tempfile::tempdir().unwrap();
    let (first_message, first) = deliver_file(&alice, &bob, "Bob", &random_file(dir.path(), "first.bin", MIB));
    let (_, second) = deliver_file(&alice, &bob, "Bob", &random_file(dir.path(), "second.bin", MIB + 1));
    let (answer_message, answer) = deliver_file(&bob, &alice, "Alice", &random_file(dir.path(), "answer.bin", MIB + 2));

    // Alice hides the file she sent, then the one she received: a sweep looks at
    // every file, and only the received one goes (Bob may still fetch the sent
    // one from her).
    alice.ok(&["delete", &first_message]);
    alice.ok(&["delete", &answer_message]);
    wait_until(Duration::from_secs(30), "Alice lets the hidden received file go", || {
        blob_files(&alice, &answer).is_empty() && file_of(&alice, &answer).is_none()
    });
    assert!(!blob_files(&alice, &first).is_empty(), "the file Alice sent and hid stays");
    assert_eq!(file_of(&alice, &first).unwrap()["state"], "shared");

    // Bob hides the first file he received: it goes; the second stays.
    bob.ok(&["delete", &first_message]);
    wait_until(Duration::from_secs(30), "Bob lets the hidden file go", || blob_files(&bob, &first).is_empty());
    assert!(!blob_files(&bob, &second).is_empty(), "the file Bob did not hide stays");

    // Without his node, Bob removes Alice (and their conversation): her files go
    // when his node starts again.
    bob.stop();
    bob.ok(&["remove", "Alice"]);
    assert!(!blob_files(&bob, &second).is_empty(), "nothing removes blobs without a node");
    bob.start(&[]);
    wait_until(Duration::from_secs(30), "Bob's next start lets the removed contact's files go", || {
        blob_files(&bob, &second).is_empty() && blob_files(&bob, &answer).is_empty()
    });
    // Each blob goes before its record, and his node had just started.
    wait_until(Duration::from_secs(30), "Bob's file list lets them go", || {
        file_of(&bob, &second).is_none() && file_of(&bob, &answer).is_none()
    });
}

#[test]
fn a_file_deleted_while_it_downloads_from_a_media_node_stops_and_is_neither_saved_nor_kept() {
    // Bob fetches from Alice (its author) first, then from the media node, which
    // keeps serving the file after Alice deleted it: Bob's download must stop by
    // itself, and what it fetched must not be saved. Progress is reported often, so
    // the deletion goes out early in the download.
    let relay = media_relay();
    let (alice, mut bob) = pair_on(&relay);
    bob.env.push(("KITH_FILE_PROGRESS_MS".into(), "5".into()));
    let dir = tempfile::tempdir().unwrap();
    bob.stop();
    let size = 128 * MIB;
    let movie = random_file(dir.path(), "movie.bin", size);
    let message = alice.json(&["send-file", "Bob", movie.to_str().unwrap(), "--json"]);
    let (message, id) = (message["id"].as_str().unwrap().to_owned(), message["file"]["id"].as_str().unwrap().to_owned());
    assert_eq!(file_of(&alice, &id).unwrap()["state"], "uploaded", "the file is on the media node");
    bob.start(&[]);
    wait_for_file(&bob, &id, "offered", Duration::from_secs(60));
    let events = bob.follow();
    bob.ok(&["get", &id]);
    events.wait_for(Duration::from_secs(120), "Bob's download is under way", |e| {
        e["type"] == "file_progress" && e["id"] == id.as_str() && e["have"].as_u64().unwrap() >= size / 32
    });
    alice.ok(&["delete", &message, "--for-everyone"]);
    // A download that runs to its end reports the whole file (its last report is
    // never skipped); one told to stop ends short of it.
    let came_whole = std::cell::Cell::new(false);
    events.wait_for(Duration::from_secs(120), "Bob removes the file", |e| {
        if e["type"] == "file_progress" && e["id"] == id.as_str() && e["have"].as_u64() == Some(size) {
            came_whole.set(true);
        }
        e["type"] == "file_removed" && e["id"] == id.as_str()
    });
    assert!(!came_whole.get(), "the download stopped once the file's message was deleted");
    assert!(blob_files(&bob, &id).is_empty() && file_of(&bob, &id).is_none(), "Bob's blob store let the file go");
    let downloads = bob.home().join("files");
    let saved = if downloads.exists() { files_under(&downloads) } else { Vec::new() };
    assert!(saved.is_empty(), "nothing of the deleted file is saved: {saved:?}");
    assert!(blob_files(&alice, &id).is_empty(), "nor kept by its sender");
}
