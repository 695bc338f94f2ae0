//! Full-text search from the CLI (issue 17), with real daemons on 127.0.0.1:
//! messages in Russian, English, Japanese and with emoji found folded and by
//! stem, a message found the moment it arrives, filters, `--json`, marks in
//! the human output, a search with the daemon stopped, a rebuild, and a
//! removed conversation's messages gone from the results.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::{connected_pair, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

/// The texts of `kith search QUERY --json` hits, best first.
fn found(peer: &kith_tests::Peer, args: &[&str]) -> Vec<String> {
    let mut all = vec!["search", "--json"];
    all.extend_from_slice(args);
    let hits = peer.json(&all);
    hits.as_array().unwrap().iter().map(|h| h["message"]["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn messages_in_four_scripts_are_found_at_once_folded_and_by_stem_and_a_removed_conversation_is_not() {
    let (mut alice, bob) = connected_pair();
    let texts = [
        "Встреча в пятницу",
        "Let's meet at the cafe",
        "明日の会議は金曜日です",
        "Party tonight 🎉",
        "unrelated words",
    ];
    for text in texts {
        bob.ok(&["send", "Alice", text, "--wait", "delivered"]);
    }
    alice.ok(&["send", "Bob", "see you at the café"]);

    assert_eq!(found(&alice, &["встреча"]), ["Встреча в пятницу"]);
    assert_eq!(found(&alice, &["ВСТРЕЧИ"]), ["Встреча в пятницу"], "by the stem встреч");
    assert_eq!(found(&alice, &["café"]), ["see you at the café", "Let's meet at the cafe"], "newest first");
    assert_eq!(found(&alice, &["会議"]), ["明日の会議は金曜日です"]);
    assert_eq!(found(&alice, &["🎉"]), ["Party tonight 🎉"]);
    assert_eq!(found(&alice, &["cafe", "--from", "me"]), ["see you at the café"]);
    assert_eq!(found(&alice, &["cafe", "--from", "Bob"]), ["Let's meet at the cafe"]);
    assert_eq!(found(&alice, &["cafe", "--in", "Bob", "--limit", "1"]).len(), 1);
    assert!(found(&alice, &["zebra"]).is_empty());

    // The hit carries where, who and the marked words.
    let hits = alice.json(&["search", "ВСТРЕЧИ", "--json"]);
    let hit = &hits[0];
    assert_eq!(hit["message"]["author"], bob.peer_id.as_str(), "{hit}");
    assert_eq!(hit["message"]["peer"], bob.peer_id.as_str(), "{hit}");
    let snippet = hit["snippet"].as_str().unwrap();
    let mark = &hit["marks"][0];
    let (start, end) = (mark[0].as_u64().unwrap() as usize, mark[1].as_u64().unwrap() as usize);
    assert_eq!(&snippet[start..end], "Встреча");
    let human = alice.ok(&["search", "пятница"]);
    assert!(human.contains("Bob") && human.contains("Встреча в [пятницу]"), "{human}");

    // A message that arrives while the daemon runs is found at once.
    bob.ok(&["send", "Alice", "brand new zeppelin"]);
    wait_until(DEADLINE, "the message at Alice", || {
        alice.json(&["history", "Bob", "--json"]).as_array().unwrap().iter().any(|m| m["text"] == "brand new zeppelin")
    });
    assert_eq!(found(&alice, &["zeppelin"]), ["brand new zeppelin"]);

    // Bad input is a usage error.
    let empty = alice.run(&["search", "?!"]);
    assert_eq!(empty.status.code(), Some(2), "{}", String::from_utf8_lossy(&empty.stderr));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no words"));
    let unknown = alice.run(&["search", "x", "--in", "nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody"), "{}", String::from_utf8_lossy(&unknown.stderr));

    // With the daemon stopped, the CLI searches the database itself; a rebuild
    // holds the same.
    alice.stop();
    assert_eq!(found(&alice, &["zeppelin"]), ["brand new zeppelin"]);
    let rebuilt = alice.json(&["search", "--rebuild", "--json"]);
    assert_eq!(rebuilt["messages"], texts.len() + 2, "{rebuilt}");
    assert_eq!(found(&alice, &["meet"]), ["Let's meet at the cafe"]);

    // A removed conversation's messages are not found.
    alice.start(&[]);
    alice.ok(&["remove", "Bob"]);
    assert!(found(&alice, &["встреча"]).is_empty());
    assert!(found(&alice, &["cafe"]).is_empty());
}
