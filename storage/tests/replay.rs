//! Hostile authors and replays: messages are identified by (author, id), deleted
//! messages stay deleted, and incoming messages outside the replay window are
//! refused.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, conversation, incoming, mid, outgoing, peer, temp_store};
use kith_storage::{
    Inserted, MAX_CLOCK_SKEW, Message, MessageState, REPLAY_WINDOW, Recipient, Refusal, Usage,
};
use kith_storage::ContactPayload::{Acceptance, Request};

const DAY_MS: u64 = 24 * 3600 * 1000;
/// A plausible "now", far from zero so the window fits below it.
const NOW: u64 = 1_700_000_000_000;

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

/// `author`'s incoming message, written `age_ms` before it is received at [`NOW`].
fn by(author: &str, conv: u128, id: u128, lamport: u64, age_ms: u64) -> Message {
    Message {
        author: author.into(),
        text: format!("{author} says {id}"),
        sent_at_ms: NOW - age_ms,
        received_at_ms: NOW,
        ..incoming(cid(conv), mid(id), lamport)
    }
}

/// Issue 11: a group member sends its own message under another member's id
/// first; the real message must still be stored, and each stays idempotent.
#[test]
fn member_reusing_an_id_does_not_suppress_the_message() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let forged = by("mallory", 1, 7, 3, 0);
    let real = by("alice", 1, 7, 3, 0);
    assert_eq!(
        store
            .insert_incoming_batch(std::slice::from_ref(&forged))
            .unwrap(),
        [Inserted::New]
    );
    assert_eq!(
        store
            .insert_incoming_batch(&[real.clone(), forged.clone(), real.clone()])
            .unwrap(),
        [Inserted::New, Inserted::Duplicate, Inserted::Duplicate]
    );
    assert_eq!(
        store.messages().get_from("alice", mid(7)).unwrap(),
        Some(real.clone())
    );
    assert_eq!(
        store.messages().get_from("mallory", mid(7)).unwrap(),
        Some(forged.clone())
    );
    assert_eq!(store.messages().get_from("bob", mid(7)).unwrap(), None);
    let all = store.messages().page(cid(1), None, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&real) && all.contains(&forged));
    let conv = store.conversations().get(cid(1)).unwrap().unwrap();
    assert_eq!(conv.unread, 2);
    assert_eq!(
        store.messages().usage(cid(1)).unwrap(),
        Usage {
            messages: 2,
            text_bytes: real.text.len() + forged.text.len(),
        }
    );
    assert_eq!(store.mark_read(cid(1)).unwrap().len(), 2);
}

/// Lookups by id alone (receipts and state changes for our own messages) find
/// our message even when a peer reused its id.
#[test]
fn id_alone_resolves_to_our_own_message() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let mine = outgoing(cid(1), mid(5), 1);
    store
        .append_outgoing(
            &mine,
            &kith_storage::OutboxEntry {
                id: mid(5),
                recipient: Recipient::Peer(common::peer(1)),
                payload: vec![],
                attempts: 0,
                next_attempt_ms: 0,
                created_at_ms: 0,
            },
        )
        .unwrap();
    // "a" sorts before "me" in no particular way: the digest decides key
    // order, so try authors on both sides of ours.
    for author in ["a", "zz", "peer"] {
        let copy = Message {
            author: author.into(),
            ..incoming(cid(1), mid(5), 1)
        };
        assert_eq!(store.messages().insert(&copy).unwrap(), Inserted::New);
    }
    assert_eq!(store.messages().get(mid(5)).unwrap().unwrap().author, "me");
    assert_eq!(
        store
            .set_message_states(&[(mid(5), MessageState::Delivered)], true)
            .unwrap(),
        [Some(MessageState::Delivered)]
    );
    assert_eq!(
        store
            .messages()
            .get_from("me", mid(5))
            .unwrap()
            .unwrap()
            .state,
        MessageState::Delivered
    );
    for author in ["a", "zz", "peer"] {
        let theirs = store.messages().get_from(author, mid(5)).unwrap().unwrap();
        assert_eq!(theirs.state, MessageState::Delivered, "untouched");
    }
    assert!(store.outbox().is_empty());
}

/// Paging by an id that several authors used in one conversation still visits
/// every message exactly once, whatever the page size.
#[test]
fn paging_by_a_reused_id_visits_every_message_once() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let mut batch = Vec::new();
    for n in 0..12u128 {
        batch.push(by("alice", 1, n, n as u64, 0));
    }
    // Mallory reuses ids at other places of the order (later and earlier).
    batch.push(by("mallory", 1, 3, 9, 0));
    batch.push(by("mallory", 1, 8, 1, 0));
    batch.push(by("trudy", 1, 8, 8, 0));
    batch.push(by("eve", 1, 8, 20, 0));
    store.insert_incoming_batch(&batch).unwrap();
    let everything = store.messages().page(cid(1), None, usize::MAX).unwrap();
    assert_eq!(everything.len(), batch.len());
    for limit in 1..=5 {
        let mut seen: Vec<Message> = Vec::new();
        let mut before = None;
        loop {
            let page = store.messages().page(cid(1), before, limit).unwrap();
            let Some(first) = page.first() else { break };
            before = Some(first.id);
            seen.splice(0..0, page);
            assert!(
                seen.len() <= everything.len(),
                "limit {limit}: a message came twice"
            );
        }
        assert_eq!(seen, everything, "limit {limit}");
    }
}

/// Issue 11: deleting a conversation forgets its messages but not that they
/// were deleted, so a replay (of any of them, into any conversation) stores
/// nothing and fails no batch; tombstones go once the window has passed.
#[test]
fn deleted_messages_stay_deleted() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    conversation(&store, 2);
    let old = by("alice", 1, 1, 1, ms(REPLAY_WINDOW) + 1);
    let fresh = by("alice", 1, 2, 2, DAY_MS);
    let mine = Message {
        sent_at_ms: NOW,
        received_at_ms: NOW,
        ..outgoing(cid(1), mid(3), 3)
    };
    let elsewhere = by("alice", 2, 4, 1, 0);
    // An old message stored before the window passed (here: inserted with an
    // earlier "now") is deleted without a tombstone: the window refuses it.
    let old_then = Message {
        received_at_ms: old.sent_at_ms,
        ..old.clone()
    };
    store
        .insert_incoming_batch(&[old_then, fresh.clone(), elsewhere.clone()])
        .unwrap();
    store.messages().insert(&mine).unwrap();
    assert!(store.conversations().remove(cid(1), NOW).unwrap());
    assert_eq!(store.tombstone_count(), 2, "the fresh message and ours");

    // Replayed later, even after the conversation was made again or into
    // another one: refused, nothing stored, nothing counted.
    assert_eq!(
        store
            .insert_incoming_batch(std::slice::from_ref(&fresh))
            .unwrap(),
        [Inserted::Refused(Refusal::Deleted)]
    );
    assert_eq!(
        store.messages().refusal(&fresh).unwrap(),
        Some(Refusal::Deleted)
    );
    conversation(&store, 1);
    let moved = Message {
        conversation: cid(2),
        ..fresh.clone()
    };
    assert_eq!(
        store
            .insert_incoming_batch(&[fresh.clone(), moved, old.clone()])
            .unwrap(),
        [
            Inserted::Refused(Refusal::Deleted),
            Inserted::Refused(Refusal::Deleted),
            Inserted::Refused(Refusal::Expired)
        ]
    );
    assert_eq!(
        store.messages().insert(&mine).unwrap(),
        Inserted::Refused(Refusal::Deleted)
    );
    assert_eq!(store.messages().count(cid(1)).unwrap(), 0);
    assert_eq!(store.messages().count(cid(2)).unwrap(), 1);
    let conv = store.conversations().get(cid(1)).unwrap().unwrap();
    assert_eq!((conv.unread, conv.last_lamport), (0, 0));
    // The same id from someone else is another message.
    assert_eq!(
        store.messages().insert(&by("bob", 1, 2, 2, 0)).unwrap(),
        Inserted::New
    );

    // Once a replay would fail the window anyway, the tombstone goes.
    let later = fresh.sent_at_ms + ms(REPLAY_WINDOW);
    assert_eq!(
        store.prune_tombstones(later).unwrap(),
        0,
        "still needed at the edge"
    );
    assert_eq!(store.prune_tombstones(later + 1).unwrap(), 1);
    let replay_then = Message {
        received_at_ms: later + 1,
        ..fresh.clone()
    };
    assert_eq!(
        store.messages().insert(&replay_then).unwrap(),
        Inserted::Refused(Refusal::Expired)
    );
    // Deleting prunes as well.
    assert!(
        store
            .conversations()
            .remove(cid(2), mine.sent_at_ms + ms(REPLAY_WINDOW) + 1)
            .unwrap()
    );
    assert_eq!(store.tombstone_count(), 0);
}

/// Incoming messages are refused outside the window around their receipt, but
/// a duplicate of one already held is still a duplicate (its sender may retry
/// late) and our own messages are never checked.
#[test]
fn incoming_messages_outside_the_window_are_refused() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let window = ms(REPLAY_WINDOW);
    let skew = ms(MAX_CLOCK_SKEW);
    let edge_old = by("alice", 1, 1, 1, window);
    let too_old = by("alice", 1, 2, 2, window + 1);
    let edge_new = Message {
        sent_at_ms: NOW + skew,
        ..by("alice", 1, 3, 3, 0)
    };
    let too_new = Message {
        sent_at_ms: NOW + skew + 1,
        ..by("alice", 1, 4, 4, 0)
    };
    assert_eq!(
        store
            .insert_incoming_batch(&[edge_old.clone(), too_old.clone(), edge_new, too_new.clone()])
            .unwrap(),
        [
            Inserted::New,
            Inserted::Refused(Refusal::Expired),
            Inserted::New,
            Inserted::Refused(Refusal::Future)
        ]
    );
    assert_eq!(
        store.messages().refusal(&too_new).unwrap(),
        Some(Refusal::Future)
    );
    assert_eq!(store.messages().count(cid(1)).unwrap(), 2);
    let retried = Message {
        received_at_ms: NOW + 10 * window,
        ..edge_old
    };
    assert_eq!(
        store.messages().insert(&retried).unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(store.messages().refusal(&retried).unwrap(), None);
    let mine = Message {
        sent_at_ms: 0,
        received_at_ms: NOW,
        ..outgoing(cid(1), mid(9), 9)
    };
    assert_eq!(store.messages().insert(&mine).unwrap(), Inserted::New);
}

/// Issue 11: a group's conversation, once deleted, is not brought back when its log
/// is fetched again from a relay: the group path hands the same messages, with their
/// real authors, to `insert_incoming_batch`, which refuses every one of them — even
/// with the conversation gone, where a new message would be `NotFound`.
#[test]
fn a_deleted_group_conversation_is_not_resurrected_by_a_refetch() {
    use kith_storage::{ConversationKind, GroupId, StoreError};
    let (_dir, store) = temp_store();
    let group = ConversationKind::Group {
        group_id: GroupId([3; 16]),
    };
    store
        .conversations()
        .get_or_create(cid(5), group, NOW)
        .unwrap();
    let page: Vec<Message> = ["alice", "bob", "carol"]
        .iter()
        .enumerate()
        .map(|(n, author)| by(author, 5, 40 + n as u128, n as u64, DAY_MS))
        .collect();
    assert_eq!(
        store.insert_incoming_batch(&page).unwrap(),
        [Inserted::New; 3]
    );
    assert!(store.conversations().remove(cid(5), NOW).unwrap());
    let refetched = Message {
        received_at_ms: NOW + DAY_MS,
        ..page[1].clone()
    };
    let again: Vec<Message> = page.iter().cloned().chain([refetched]).collect();
    assert_eq!(
        store.insert_incoming_batch(&again).unwrap(),
        [Inserted::Refused(Refusal::Deleted); 4]
    );
    assert_eq!(store.conversations().get(cid(5)).unwrap(), None);
    assert_eq!(store.messages().count(cid(5)).unwrap(), 0);
    let new = by("alice", 5, 99, 9, 0);
    assert!(matches!(
        store.insert_incoming_batch(&[new]),
        Err(StoreError::NotFound { .. })
    ));
}

/// Contact requests and acceptances carry no message id, only their issue time:
/// one not issued after the last taken from its sender is a copy, and the time
/// taken is kept until the window alone refuses a copy.
#[test]
fn a_contact_payload_not_newer_than_the_last_taken_is_a_copy_until_the_window_refuses_it() {
    let (_dir, store) = temp_store();
    let (bob, carol) = (peer(1), peer(2));
    let us = |ms: u64| ms * 1000;
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS), NOW).unwrap(), None, "nothing taken yet");
    store.note_contact_payload(&bob, Request, us(NOW - DAY_MS)).unwrap();
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS), NOW).unwrap(), Some(Refusal::Replayed));
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS) - 1, NOW).unwrap(), Some(Refusal::Replayed));
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS) + 1, NOW).unwrap(), None, "issued later");
    assert_eq!(store.contact_payload_refusal(&carol, Request, us(NOW - DAY_MS), NOW).unwrap(), None, "per sender");
    // Each kind has its own mark: an acceptance issued later does not hide an
    // earlier request still on its way, nor the other way round.
    store.note_contact_payload(&carol, Acceptance, us(NOW)).unwrap();
    assert_eq!(store.contact_payload_refusal(&carol, Request, us(NOW - DAY_MS), NOW).unwrap(), None);
    assert_eq!(store.contact_payload_refusal(&bob, Acceptance, us(NOW - DAY_MS), NOW).unwrap(), None);
    assert_eq!(store.contact_payload_refusal(&carol, Acceptance, us(NOW), NOW).unwrap(), Some(Refusal::Replayed));
    // An older time noted later does not move the mark back.
    store.note_contact_payload(&bob, Request, us(NOW - 2 * DAY_MS)).unwrap();
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS), NOW).unwrap(), Some(Refusal::Replayed));

    // Our own latest request is replaced, not kept at its maximum: after our clock
    // went back, a later request may carry an earlier time.
    store.note_contact_payload(&bob, kith_storage::ContactPayload::Asked, us(NOW)).unwrap();
    store.note_contact_payload(&bob, kith_storage::ContactPayload::Asked, us(NOW - DAY_MS)).unwrap();
    assert_eq!(store.contact_payload_mark(&bob, kith_storage::ContactPayload::Asked).unwrap(), Some(us(NOW - DAY_MS)));

    let window = ms(REPLAY_WINDOW);
    assert_eq!(store.contact_payload_refusal(&carol, Request, 0, NOW).unwrap(), Some(Refusal::Expired), "no time: an older version");
    assert_eq!(store.contact_payload_refusal(&carol, Request, us(NOW - window - 1), NOW).unwrap(), Some(Refusal::Expired));
    assert_eq!(store.contact_payload_refusal(&carol, Request, us(NOW + ms(MAX_CLOCK_SKEW) + 1), NOW).unwrap(), Some(Refusal::Future));

    // Kept while a copy could pass the window, across a reopen and a prune. (Pruned
    // once the window refuses every copy: no answer shows the difference.)
    let dir = store.path().to_owned();
    drop(store);
    let store = kith_storage::Store::open(&dir).unwrap();
    store.prune_tombstones(NOW).unwrap();
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS), NOW).unwrap(), Some(Refusal::Replayed));
    let later = NOW - DAY_MS + window + 1;
    store.prune_tombstones(later).unwrap();
    assert_eq!(store.contact_payload_refusal(&bob, Request, us(NOW - DAY_MS), later).unwrap(), Some(Refusal::Expired));
}
