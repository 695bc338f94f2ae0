//! Messages and the operations spanning trees: ordering, paging, idempotent
//! insert, state transitions, unread counts, the outbox link.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, conversation, incoming, mid, outgoing, temp_store};
use kith_storage::{
    ConversationId, Inserted, Message, MessageId, MessageState, OutboxEntry, Recipient, Refusal,
    Store, StoreError,
};

/// "Now" for deletions: the helpers' messages are received at 2 000 ms.
const NOW: u64 = 2_000;

/// Every message of `conv`, collected by paging backwards `limit` at a time.
fn page_all(store: &Store, conv: ConversationId, limit: usize) -> Vec<Message> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = store.messages().page(conv, before, limit).unwrap();
        assert!(page.len() <= limit);
        assert!(
            page.iter().all(|m| m.conversation == conv),
            "paging crossed conversations"
        );
        let Some(first) = page.first() else { break };
        before = Some(first.id);
        let done = page.len() < limit;
        all.splice(0..0, page);
        if done {
            break;
        }
    }
    all
}

fn entry(id: MessageId) -> OutboxEntry {
    OutboxEntry {
        id,
        recipient: Recipient::Peer(common::peer(1)),
        payload: vec![1, 2, 3],
        attempts: 0,
        next_attempt_ms: 0,
        created_at_ms: 0,
    }
}

#[test]
fn paging_across_interleaved_conversations() {
    let (_dir, store) = temp_store();
    for c in 1..=3 {
        conversation(&store, c);
    }
    // Interleave three conversations; lamports repeat and arrive out of order
    // so ties are broken by id.
    let mut expected: Vec<Vec<Message>> = vec![Vec::new(); 3];
    for i in 0..60u128 {
        let c = i % 3;
        let lamport = ((i * 7) % 13) as u64;
        let msg = incoming(cid(c + 1), mid(1000 - i), lamport);
        assert_eq!(store.messages().insert(&msg).unwrap(), Inserted::New);
        expected[c as usize].push(msg);
    }
    for (c, exp) in expected.iter_mut().enumerate() {
        exp.sort_by_key(|m| (m.lamport, m.id));
        let conv = cid(c as u128 + 1);
        for limit in [1, 3, 7, 20, 100] {
            assert_eq!(&page_all(&store, conv, limit), exp, "limit {limit}");
        }
        assert_eq!(store.messages().count(conv).unwrap(), 20);
        assert_eq!(store.messages().latest(conv).unwrap().as_ref(), exp.last());
        // A page before a given message ends right before it.
        let page = store.messages().page(conv, Some(exp[10].id), 4).unwrap();
        assert_eq!(page, exp[6..10]);
        assert_eq!(store.messages().page(conv, Some(exp[0].id), 4).unwrap(), []);
        assert_eq!(store.messages().page(conv, None, 0).unwrap(), []);
    }
    // `before` from another conversation or unknown is an error, not a crossing.
    let foreign = expected[1][0].id;
    assert!(matches!(
        store.messages().page(cid(1), Some(foreign), 5),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.messages().page(cid(1), Some(mid(1)), 5),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.messages().count(cid(9)).unwrap(), 0);
    assert_eq!(store.messages().latest(cid(9)).unwrap(), None);
}

#[test]
fn insert_is_idempotent() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let msg = incoming(cid(1), mid(1), 5);
    assert_eq!(store.messages().insert(&msg).unwrap(), Inserted::New);
    let altered = Message {
        text: "changed".into(),
        lamport: 99,
        ..msg.clone()
    };
    assert_eq!(
        store.messages().insert(&altered).unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(store.messages().get(mid(1)).unwrap(), Some(msg));
    assert_eq!(store.messages().count(cid(1)).unwrap(), 1);
    let conv = store.conversations().get(cid(1)).unwrap().unwrap();
    assert_eq!(
        (conv.unread, conv.last_lamport),
        (1, 5),
        "a duplicate changes no counter"
    );
}

#[test]
fn batch_with_repeats() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    conversation(&store, 2);
    store
        .messages()
        .insert(&incoming(cid(1), mid(1), 1))
        .unwrap();
    let batch = [
        incoming(cid(1), mid(1), 1),
        incoming(cid(1), mid(2), 2),
        incoming(cid(2), mid(3), 3),
        incoming(cid(1), mid(2), 2),
    ];
    let result = store.insert_incoming_batch(&batch).unwrap();
    use Inserted::*;
    assert_eq!(result, [Duplicate, New, New, Duplicate]);
    let c1 = store.conversations().get(cid(1)).unwrap().unwrap();
    assert_eq!(
        (c1.unread, c1.last_lamport, c1.last_activity_ms),
        (2, 2, 2_002)
    );
    let c2 = store.conversations().get(cid(2)).unwrap().unwrap();
    assert_eq!((c2.unread, c2.last_lamport), (1, 3));
    assert_eq!(store.insert_incoming_batch(&[]).unwrap(), []);
}

#[test]
fn batch_into_unknown_conversation_stores_nothing() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let batch = [incoming(cid(1), mid(1), 1), incoming(cid(7), mid(2), 1)];
    let err = store.insert_incoming_batch(&batch).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(
        store.messages().get(mid(1)).unwrap(),
        None,
        "the batch is atomic"
    );
    assert_eq!(
        store.conversations().get(cid(1)).unwrap().unwrap().unread,
        0
    );
}

#[test]
fn conversation_counters_only_move_forward() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    store
        .messages()
        .insert(&incoming(cid(1), mid(1), 10))
        .unwrap();
    // An older message arriving late moves neither activity nor lamport back.
    store
        .messages()
        .insert(&incoming(cid(1), mid(2), 3))
        .unwrap();
    let conv = store.conversations().get(cid(1)).unwrap().unwrap();
    assert_eq!(
        (conv.last_lamport, conv.last_activity_ms, conv.unread),
        (10, 2_010, 2)
    );
}

#[test]
fn state_transitions() {
    use MessageState::*;
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    store
        .append_outgoing(&outgoing(cid(1), mid(1), 1), &entry(mid(1)))
        .unwrap();
    let set = |state, remove| store.set_message_state(mid(1), state, remove).unwrap();
    let state = || store.messages().get(mid(1)).unwrap().unwrap().state;

    assert_eq!(set(Failed, false), Some(Failed));
    assert_eq!(set(Failed, false), None, "idempotent");
    assert_eq!(set(Pending, false), Some(Pending), "retry");
    assert_eq!(set(Sent, false), Some(Sent));
    assert_eq!(set(Failed, false), None, "a sent message cannot fail");
    assert_eq!(set(Pending, false), None);
    assert_eq!(set(Read, false), Some(Read), "states may be skipped");
    assert_eq!(set(Delivered, false), None, "stale receipt");
    assert_eq!(state(), Read);
    assert!(matches!(
        store.set_message_state(mid(2), Sent, true),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn state_change_removes_outbox_entry_atomically() {
    use MessageState::*;
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    store
        .append_outgoing(&outgoing(cid(1), mid(1), 1), &entry(mid(1)))
        .unwrap();
    store
        .append_outgoing(&outgoing(cid(1), mid(2), 2), &entry(mid(2)))
        .unwrap();
    assert_eq!(store.outbox().len(), 2);
    assert_eq!(
        store.set_message_state(mid(1), Sent, false).unwrap(),
        Some(Sent)
    );
    assert!(store.outbox().get(mid(1)).unwrap().is_some());
    // Even a non-move removes the entry when asked (e.g. a repeated ack).
    assert_eq!(store.set_message_state(mid(1), Sent, true).unwrap(), None);
    assert_eq!(store.outbox().get(mid(1)).unwrap(), None);
    assert_eq!(
        store.set_message_state(mid(2), Delivered, true).unwrap(),
        Some(Delivered)
    );
    assert!(store.outbox().is_empty());
}

#[test]
fn append_outgoing_is_atomic_and_idempotent() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let mut msg = outgoing(cid(1), mid(1), 4);
    msg.state = MessageState::Sent; // forced back to Pending
    store.append_outgoing(&msg, &entry(mid(1))).unwrap();
    let stored = store.messages().get(mid(1)).unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Pending);
    assert_eq!(store.outbox().get(mid(1)).unwrap(), Some(entry(mid(1))));
    let conv = store.conversations().get(cid(1)).unwrap().unwrap();
    assert_eq!(
        (conv.last_lamport, conv.last_activity_ms, conv.unread),
        (4, 1_004, 0)
    );

    // A retried append after the entry was delivered does not re-queue it.
    store.outbox().remove(mid(1)).unwrap();
    store.append_outgoing(&msg, &entry(mid(1))).unwrap();
    assert!(store.outbox().is_empty());

    // Unknown conversation: nothing is written.
    let err = store
        .append_outgoing(&outgoing(cid(5), mid(2), 1), &entry(mid(2)))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    assert!(store.outbox().is_empty());
    assert_eq!(store.messages().get(mid(2)).unwrap(), None);
}

#[test]
fn unread_counts_and_mark_read() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    conversation(&store, 2);
    let mut read_already = incoming(cid(1), mid(4), 4);
    read_already.state = MessageState::Read;
    store
        .insert_incoming_batch(&[
            incoming(cid(1), mid(1), 1),
            incoming(cid(1), mid(2), 2),
            incoming(cid(2), mid(3), 3),
            read_already,
        ])
        .unwrap();
    store
        .append_outgoing(&outgoing(cid(1), mid(5), 5), &entry(mid(5)))
        .unwrap();
    let unread = |c| store.conversations().get(cid(c)).unwrap().unwrap().unread;
    assert_eq!((unread(1), unread(2)), (2, 1));

    let read = store.mark_read(cid(1)).unwrap();
    assert_eq!(
        read.iter().map(|m| m.id).collect::<Vec<_>>(),
        [mid(1), mid(2)]
    );
    assert!(read.iter().all(|m| m.state == MessageState::Read));
    assert_eq!(
        store.messages().get(mid(2)).unwrap().unwrap().state,
        MessageState::Read
    );
    assert_eq!(
        store.messages().get(mid(5)).unwrap().unwrap().state,
        MessageState::Pending,
        "outgoing messages are untouched"
    );
    assert_eq!((unread(1), unread(2)), (0, 1));
    assert_eq!(store.mark_read(cid(1)).unwrap(), [], "nothing newly read");

    // Reading one message through a state change lowers the count too.
    assert_eq!(
        store
            .set_message_state(mid(3), MessageState::Read, false)
            .unwrap(),
        Some(MessageState::Read)
    );
    assert_eq!(unread(2), 0);
    assert_eq!(store.mark_read(cid(2)).unwrap(), []);
    assert!(matches!(
        store.mark_read(cid(9)),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn removing_a_conversation_removes_its_messages() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    conversation(&store, 2);
    store
        .insert_incoming_batch(&[incoming(cid(1), mid(1), 1), incoming(cid(2), mid(2), 1)])
        .unwrap();
    assert!(store.conversations().remove(cid(1), NOW).unwrap());
    assert!(!store.conversations().remove(cid(1), NOW).unwrap());
    assert_eq!(store.messages().get(mid(1)).unwrap(), None);
    assert_eq!(store.messages().count(cid(1)).unwrap(), 0);
    assert_eq!(
        store.messages().get(mid(2)).unwrap().unwrap().conversation,
        cid(2)
    );
    // The id is not free again: a replay of the deleted message is refused
    // (see tests/replay.rs), but another message in the new conversation is not.
    conversation(&store, 1);
    assert_eq!(
        store
            .messages()
            .insert(&incoming(cid(1), mid(1), 1))
            .unwrap(),
        Inserted::Refused(Refusal::Deleted)
    );
    assert_eq!(
        store
            .messages()
            .insert(&incoming(cid(1), mid(3), 1))
            .unwrap(),
        Inserted::New
    );
}

#[test]
fn batched_staging_and_state_updates() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    let items: Vec<(Message, OutboxEntry)> = (1..=3)
        .map(|n| (outgoing(cid(1), mid(n), n as u64), entry(mid(n))))
        .collect();
    store.stage_outgoing(&items).unwrap();
    store.flush().unwrap();
    assert_eq!(store.outbox().list().unwrap().len(), 3);
    assert_eq!(store.conversations().get(cid(1)).unwrap().unwrap().last_lamport, 3);

    // A receipt-like outbox item that is not a message.
    store.outbox().put(&entry(mid(9))).unwrap();
    let moved = store
        .set_message_states(
            &[
                (mid(1), MessageState::Delivered),
                (mid(2), MessageState::Sent),
                (mid(9), MessageState::Delivered),
                (mid(1), MessageState::Sent), // backwards: no move
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        moved,
        [Some(MessageState::Delivered), Some(MessageState::Sent), None, None]
    );
    let states: Vec<MessageState> = (1..=3)
        .map(|n| store.messages().get(mid(n)).unwrap().unwrap().state)
        .collect();
    assert_eq!(
        states,
        [MessageState::Delivered, MessageState::Sent, MessageState::Pending]
    );
    let left: Vec<MessageId> = store.outbox().list().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(left, [mid(3)], "updated ids and the non-message item left the outbox");
}

#[test]
fn a_raised_lamport_floor_holds_until_messages_pass_it_and_survives_compaction() {
    let (_dir, store) = temp_store();
    conversation(&store, 1);
    store.stage_outgoing(&[(outgoing(cid(1), mid(1), 5), entry(mid(1)))]).unwrap();
    let lamport = |store: &Store| store.conversations().get(cid(1)).unwrap().unwrap().last_lamport;
    assert_eq!(lamport(&store), 5);

    store.conversations().raise_lamport(cid(1), 69);
    assert_eq!(lamport(&store), 69, "the floor is above the stored messages");
    store.conversations().raise_lamport(cid(1), 10);
    assert_eq!(lamport(&store), 69, "a lower floor changes nothing");
    store.compact_log().unwrap();
    assert_eq!(lamport(&store), 69, "a compaction keeps the floor");

    assert_eq!(store.conversations().highest_lamport(cid(1)), 69);
    store.stage_outgoing(&[(outgoing(cid(1), mid(2), 80), entry(mid(2)))]).unwrap();
    assert_eq!(lamport(&store), 80, "a message above the floor counts");
    assert_eq!(store.conversations().highest_lamport(cid(1)), 80);
    // Another conversation is not touched.
    conversation(&store, 2);
    assert_eq!(store.conversations().get(cid(2)).unwrap().unwrap().last_lamport, 0);
}
