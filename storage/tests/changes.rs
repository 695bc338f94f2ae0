//! Changes to messages (edits, deletes, reactions) in a real store: kept apart
//! from the messages shown, applied by their rules (only the author edits and
//! deletes; each reactor's latest word counts), across reopening, and whatever
//! order they arrive in.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kith_storage::{Link, Message, MessageState};

fn change(target: &Message, id: u128, lamport: u64, author: &str, link: Link, text: &str) -> Message {
    Message { author: author.into(), text: text.into(), link: Some(link), ..incoming(target.conversation, mid(id), lamport) }
}

#[test]
fn edits_deletes_and_reactions_apply_by_their_rules_and_survive_reopening() {
    let (dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let original = incoming(conv, mid(1), 1);
    let other = incoming(conv, mid(2), 2);
    // A change may arrive before its message: it waits for it.
    let early_edit = change(&original, 10, 3, "peer", Link::Edit(mid(1)), "second version");
    store.insert_incoming_batch(&[early_edit]).unwrap();
    store.insert_incoming_batch(&[original.clone(), other.clone()]).unwrap();
    let changes = [
        change(&original, 11, 4, "mallory", Link::Edit(mid(1)), "forged"),
        change(&original, 12, 5, "peer", Link::Edit(mid(1)), "third version"),
        change(&original, 13, 6, "alice", Link::React { target: mid(1), emoji: "👍".into(), on: true }, ""),
        change(&original, 14, 7, "bob", Link::React { target: mid(1), emoji: "👍".into(), on: true }, ""),
        change(&original, 15, 8, "bob", Link::React { target: mid(1), emoji: "🎉".into(), on: true }, ""),
        change(&original, 16, 9, "alice", Link::React { target: mid(1), emoji: "👍".into(), on: false }, ""),
        change(&other, 17, 10, "mallory", Link::Delete(mid(2)), ""),
    ];
    store.insert_incoming_batch(&changes).unwrap();

    let check = |store: &kith_storage::Store| {
        let original = store.messages().get(mid(1)).unwrap().unwrap();
        let a = store.messages().annotations(&original).unwrap();
        let texts: Vec<&str> = a.edits.iter().map(|v| v.text.as_str()).collect();
        assert_eq!(texts, ["second version", "third version"], "only the author's edits");
        assert_eq!(a.text(&original), "third version");
        assert!(!a.deleted);
        let reactions: Vec<(&str, Vec<&str>)> =
            a.reactions.iter().map(|r| (r.emoji.as_str(), r.by.iter().map(String::as_str).collect())).collect();
        assert_eq!(reactions, [("👍", vec!["bob"]), ("🎉", vec!["bob"])], "alice took hers back");
        let other = store.messages().get(mid(2)).unwrap().unwrap();
        assert!(!store.messages().annotations(&other).unwrap().deleted, "a stranger's delete does nothing");

        // Changes are not messages to show, nor unread.
        let page = store.messages().page(conv, None, 50).unwrap();
        assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), [mid(1), mid(2)]);
        assert_eq!(store.messages().count(conv).unwrap(), 2);
        assert_eq!(store.conversations().get(conv).unwrap().unwrap().unread, 2);
    };
    check(&store);

    // The author deletes it: no text, no edits.
    store.insert_incoming_batch(&[change(&original, 18, 11, "peer", Link::Delete(mid(1)), "")]).unwrap();
    let a = store.messages().annotations(&original).unwrap();
    assert!(a.deleted && a.edits.is_empty());
    assert_eq!(a.text(&original), "");

    // A receipt reaches a change like any message (our own changes are acknowledged).
    let mine = Message { direction: kith_storage::Direction::Outgoing, state: MessageState::Pending, author: "me".into(),
        ..change(&other, 19, 12, "me", Link::React { target: mid(2), emoji: "❤".into(), on: true }, "") };
    store.insert_incoming_batch(std::slice::from_ref(&mine)).unwrap();
    store.set_message_state(mine.id, MessageState::Delivered, false).unwrap();
    assert!(store.messages().is_change(mine.id));
    assert!(!store.messages().is_change(mid(1)));
    assert!(!store.messages().is_change(mid(999)), "unknown");
    assert_eq!(store.messages().get(mine.id).unwrap().unwrap().state, MessageState::Delivered);

    drop(store);
    let store = open(&dir.path().join("db")).unwrap();
    let original = store.messages().get(mid(1)).unwrap().unwrap();
    assert!(store.messages().annotations(&original).unwrap().deleted, "after reopening");
    assert_eq!(store.messages().changes_to(conv, mid(1)).unwrap().len(), 8);
    assert_eq!(store.messages().get(mine.id).unwrap().unwrap().state, MessageState::Delivered);
}

#[test]
fn removing_a_conversation_removes_its_changes_and_a_replayed_one_stays_out() {
    let (_dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let target = incoming(conv, mid(1), 1);
    // A change whose message never came: the conversation holds nothing else.
    let early = change(&target, 2, 2, "peer", Link::Edit(mid(1)), "early");
    store.insert_incoming_batch(std::slice::from_ref(&early)).unwrap();
    assert_eq!(store.messages().changes_to(conv, mid(1)).unwrap().len(), 1);
    assert!(store.conversations().remove(conv, 3_000).unwrap());
    conversation(&store, 1);
    assert!(store.messages().changes_to(conv, mid(1)).unwrap().is_empty(), "gone with its conversation");
    let replayed = store.insert_incoming_batch(&[early]).unwrap();
    assert!(matches!(replayed[0], kith_storage::Inserted::Refused(_)), "tombstoned: {replayed:?}");
}

#[test]
fn only_this_nodes_own_hide_hides() {
    let (_dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let target = incoming(conv, mid(1), 1);
    store.insert_incoming_batch(std::slice::from_ref(&target)).unwrap();
    let from_peer = change(&target, 2, 2, "peer", Link::Hide(mid(1)), "");
    store.insert_incoming_batch(&[from_peer]).unwrap();
    assert!(!store.messages().annotations(&target).unwrap().hidden, "a peer cannot hide our messages");
    let mine = Message { direction: kith_storage::Direction::Outgoing, ..change(&target, 3, 3, "me", Link::Hide(mid(1)), "") };
    store.insert_incoming_batch(&[mine]).unwrap();
    assert!(store.messages().annotations(&target).unwrap().hidden);
}

#[test]
fn one_person_counts_with_at_most_eight_emoji_on_a_message_and_odd_reactions_are_no_emoji() {
    let (_dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let target = incoming(conv, mid(1), 1);
    store.insert_incoming_batch(std::slice::from_ref(&target)).unwrap();
    let many: Vec<Message> = (0..20u8)
        .map(|n| {
            let emoji = char::from_u32(0x1F600 + u32::from(n)).unwrap().to_string();
            change(&target, 100 + u128::from(n), 10 + u64::from(n), "mallory", Link::React { target: mid(1), emoji, on: true }, "")
        })
        .collect();
    store.insert_incoming_batch(&many).unwrap();
    let a = store.messages().annotations(&target).unwrap();
    assert_eq!(a.reactions.len(), kith_storage::MAX_REACTIONS_PER_AUTHOR, "the first eight count");
    assert!(kith_storage::valid_emoji("👍🏽") && kith_storage::valid_emoji("❤️"));
    for odd in ["", "two words", "a\u{202e}b", "x\n", &"🎉".repeat(20)] {
        assert!(!kith_storage::valid_emoji(odd), "{odd:?}");
    }
}

#[test]
fn an_id_reused_in_another_conversation_is_found_in_each() {
    let (_dir, store) = temp_store();
    let (group, direct) = (conversation(&store, 1).id, conversation(&store, 2).id);
    let carols = Message { author: "carol".into(), ..incoming(group, mid(1), 1) };
    let mallorys = Message { author: "mallory".into(), ..incoming(direct, mid(1), 1) };
    store.insert_incoming_batch(&[carols.clone(), mallorys.clone()]).unwrap();
    assert_eq!(store.messages().with_id(mid(1)).unwrap().len(), 2);
    assert_eq!(store.messages().get_in(group, mid(1)).unwrap().map(|m| m.author), Some("carol".to_owned()));
    assert_eq!(store.messages().get_in(direct, mid(1)).unwrap().map(|m| m.author), Some("mallory".to_owned()));
    assert!(store.messages().get_in(cid(9), mid(1)).unwrap().is_none());
}
