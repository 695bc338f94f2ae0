//! Replies, edits, deletes and reactions (issue 17) between real daemons on
//! 127.0.0.1: 1:1 with the peer offline during all of them, a group of three
//! through a relay with one member offline, non-authors refused (by the CLI, and
//! by every receiver when a hostile client sends one anyway), and `kith follow`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_p2p::dm::DmResult;
use kith_p2p::kith_storage::{Link, MessageId};
use kith_p2p::payload::Payload;
use kith_tests::group::{id_of, make_group, members, wait_message};
use kith_tests::raw::{RawPeer, identity_of};
use kith_tests::{Relay, connected_pair};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);


fn emojis(message: &Value) -> Vec<(String, u64)> {
    message["reactions"]
        .as_array()
        .map(|r| r.iter().map(|r| (r["emoji"].as_str().unwrap().to_owned(), r["count"].as_u64().unwrap())).collect())
        .unwrap_or_default()
}

#[test]
fn a_reply_an_edit_a_delete_and_reactions_reach_a_contact_who_was_offline_for_all_of_them() {
    let (alice, mut bob) = connected_pair();
    let noon = id_of(&alice.json(&["send", "Bob", "see you at noon", "--wait", "delivered", "--json"]));
    let question = id_of(&bob.json(&["send", "Alice", "where?", "--wait", "delivered", "--json"]));

    // Online: Bob's follow hears Alice's edit as a change, not as a new message.
    let follow = bob.follow();
    alice.ok(&["edit", &noon, "see you at one"]);
    let event = follow.wait_for(DEADLINE, "message_changed", |e| e["type"] == "message_changed");
    assert_eq!(event["message"]["id"], noon.as_str(), "{event}");
    assert_eq!(event["message"]["text"], "see you at one", "{event}");
    assert_eq!(event["message"]["edited"], true, "{event}");
    drop(follow);

    // Offline for all that follows.
    bob.stop();
    alice.ok(&["edit", &noon, "see you at dusk"]);
    let reply = id_of(&alice.json(&["send", "Bob", "at the café", "--reply-to", &question, "--json"]));
    let reacted = alice.json(&["react", &question, "👍", "--json"]);
    assert_eq!(emojis(&reacted), [("👍".to_owned(), 1)], "{reacted}");
    alice.ok(&["react", &question, "🎉"]);
    alice.ok(&["react", &question, "🎉"]); // again: taken back
    let oops = id_of(&alice.json(&["send", "Bob", "wrong chat, sorry", "--json"]));
    assert!(alice.ok(&["delete", &oops, "--for-everyone"]).contains("for everyone"));

    // The CLI refuses what only the author may do, and bad input (exit 2, as every
    // refusal of the node's: not_allowed, invalid, unknown_message).
    let not_mine = alice.run(&["edit", &question, "forged"]);
    assert_eq!(not_mine.status.code(), Some(2), "{}", String::from_utf8_lossy(&not_mine.stderr));
    assert!(String::from_utf8_lossy(&not_mine.stderr).contains("only its author"));
    assert_eq!(alice.run(&["delete", &question, "--for-everyone"]).status.code(), Some(2));
    assert_eq!(alice.run(&["react", &question, "two words"]).status.code(), Some(2));
    assert_eq!(alice.run(&["edit", "nonsense", "x"]).status.code(), Some(2));
    assert_eq!(alice.run(&["send", "Bob", "x", "--reply-to", &"ab".repeat(16)]).status.code(), Some(2), "no such message");

    bob.start(&[]);
    let edited = wait_message(&bob, "Alice", &noon, "the edit", |m| m["text"] == "see you at dusk");
    assert_eq!(edited["edited"], true);
    let versions: Vec<&str> = edited["versions"].as_array().unwrap().iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(versions, ["see you at noon", "see you at one", "see you at dusk"], "every version, oldest first");
    let answered = wait_message(&bob, "Alice", &reply, "the reply", |_| true);
    assert_eq!(answered["reply_to"]["id"], question.as_str(), "{answered}");
    assert_eq!(answered["reply_to"]["text"], "where?", "{answered}");
    let question_now = wait_message(&bob, "Alice", &question, "the reaction", |m| !emojis(m).is_empty());
    assert_eq!(emojis(&question_now), [("👍".to_owned(), 1)], "🎉 was taken back");
    assert_eq!(question_now["reactions"][0]["by"][0], alice.peer_id.as_str());
    let deleted = wait_message(&bob, "Alice", &oops, "the delete", |m| m["deleted"] == true);
    assert_eq!(deleted["text"], "", "the text is gone from Bob's view");
    assert!(bob.json(&["search", "wrong", "--json"]).as_array().unwrap().is_empty(), "and from his search");
    let human = bob.ok(&["history", "Alice"]);
    assert!(human.contains("↪ you: where?") && human.contains("see you at dusk (edited)"), "{human}");
    assert!(human.contains("(deleted)") && human.contains("👍 1"), "{human}");

    // Delete for me: hidden here only.
    assert!(bob.ok(&["delete", &noon]).contains("here"));
    assert!(bob.history("Alice").iter().all(|m| m["id"] != noon.as_str()));
    assert!(alice.history("Bob").iter().any(|m| m["id"] == noon.as_str()), "Alice still has it");

    // A hostile client with Bob's keys edits and deletes Alice's message: Alice's
    // node stores what arrives but never applies it.
    let mut raw = RawPeer::new(identity_of(&bob));
    let target: MessageId = reply.parse().unwrap();
    let forged = |n: u8, link: Link, text: &str| Payload::Text {
        id: MessageId::from_bytes([n; 16]),
        lamport: 1_000 + u64::from(n),
        sent_at_ms: kith_p2p::ops::now_ms(),
        text: text.into(),
        file: None,
        link: Some(link),
    };
    let results = raw.send(&alice, &[forged(1, Link::Edit(target), "forged by bob"), forged(2, Link::Delete(target), "")]);
    assert!(results.iter().all(|r| *r == DmResult::Stored), "{results:?}");
    let mine = alice.history("Bob").into_iter().find(|m| m["id"] == reply.as_str()).unwrap();
    assert_eq!(mine["text"], "at the café", "{mine}");
    assert_eq!(mine["edited"], Value::Null);
    assert_eq!(mine["deleted"], Value::Null);
    // A hide from the wire is malformed, and refused.
    let hide = raw.send(&alice, &[forged(3, Link::Hide(target), "")]);
    assert!(matches!(hide[0], DmResult::Rejected(_)), "{hide:?}");
}

#[test]
fn in_a_group_of_three_a_member_who_was_offline_gets_the_reply_edit_delete_and_reactions() {
    let mut relay = Relay::new("");
    relay.start();
    let mut peers = members(&relay, &["Alice", "Bob", "Carol"]);
    let group = make_group(&peers, "club");
    let hello = id_of(&peers[0].json(&["send", "club", "hello all", "--json"]));
    wait_message(&peers[2], &group, &hello, "hello", |_| true);

    peers[2].stop();
    wait_message(&peers[1], &group, &hello, "hello", |_| true);
    let answer = id_of(&peers[1].json(&["send", "club", "hi Alice", "--reply-to", &hello, "--json"]));
    peers[0].ok(&["edit", &hello, "hello everyone"]);
    peers[1].ok(&["react", &hello, "🎉"]);
    peers[0].ok(&["react", &hello, "🎉"]);
    let oops = id_of(&peers[0].json(&["send", "club", "oops", "--json"]));
    peers[0].ok(&["delete", &oops, "--for-everyone"]);
    let refused = peers[1].run(&["edit", &hello, "Bob was here"]);
    assert_eq!(refused.status.code(), Some(2), "only the author edits");

    peers[2].start(&[]);
    let carol = &peers[2];
    let edited = wait_message(carol, &group, &hello, "the edit and both reactions", |m| {
        m["text"] == "hello everyone" && emojis(m) == [("🎉".to_owned(), 2)]
    });
    assert_eq!(edited["versions"].as_array().unwrap().len(), 2);
    let reply = wait_message(carol, &group, &answer, "the reply", |_| true);
    assert_eq!(reply["reply_to"]["text"], "hello everyone", "the quote shows the text as it is now");
    wait_message(carol, &group, &oops, "the delete", |m| m["deleted"] == true);
    // Changes are not messages: the history holds the three messages only.
    assert_eq!(carol.history(&group).len(), 3);
    // And nothing is unread but those three.
    let inbox = carol.json(&["inbox", "--json"]);
    let unread: u64 = inbox.as_array().unwrap().iter().map(|e| e["unread"].as_u64().unwrap()).sum();
    assert_eq!(unread, 3, "{inbox}");
}
