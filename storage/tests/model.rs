//! Property test: random operations across conversations, checked against a
//! `BTreeMap` model of the message store. Authors draw ids from one small
//! range, so the same id from different authors (and the same author) is
//! common; conversations are deleted and their messages replayed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{cid, conversation, incoming, mid, outgoing};
use kith_storage::{
    ConversationId, Direction, Inserted, Message, MessageId, MessageState, Refusal, Store,
};
use proptest::prelude::*;

const CONVERSATIONS: u128 = 3;
/// Authors of incoming messages (outgoing ones are by "me").
const AUTHORS: u8 = 3;
/// "Now" for deletions: the helpers' messages are sent at ~1 000 ms, received
/// at ~2 000 ms, so every deleted message leaves a tombstone.
const NOW: u64 = 2_000;

#[derive(Debug, Clone)]
enum Op {
    /// Insert one message (ids are drawn from a small range so they repeat).
    Insert {
        conv: u128,
        id: u128,
        lamport: u64,
        /// `None`: outgoing; else the incoming message's author.
        author: Option<u8>,
    },
    /// Insert a batch of incoming messages: (conversation, id, lamport, author).
    Batch(Vec<(u128, u128, u64, u8)>),
    /// Delete a conversation (and make it again, empty).
    Remove {
        conv: u128,
    },
    /// Page backwards from the `nth` message (or the newest) and compare.
    Page {
        conv: u128,
        nth: Option<usize>,
        limit: usize,
    },
    MarkRead {
        conv: u128,
    },
    SetState {
        id: u128,
        state: MessageState,
    },
    Reopen,
}

fn state() -> impl Strategy<Value = MessageState> {
    prop_oneof![
        Just(MessageState::Failed),
        Just(MessageState::Pending),
        Just(MessageState::Sent),
        Just(MessageState::Delivered),
        Just(MessageState::Read),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let conv = 0..CONVERSATIONS;
    prop_oneof![
        6 => (conv.clone(), 0..40u128, 0..8u64, prop::option::of(0..AUTHORS))
            .prop_map(|(conv, id, lamport, author)| Op::Insert { conv, id, lamport, author }),
        2 => prop::collection::vec((conv.clone(), 0..40u128, 0..8u64, 0..AUTHORS), 0..6)
            .prop_map(Op::Batch),
        1 => conv.clone().prop_map(|conv| Op::Remove { conv }),
        3 => (conv.clone(), prop::option::of(0..50usize), 0..6usize)
            .prop_map(|(conv, nth, limit)| Op::Page { conv, nth, limit }),
        1 => conv.prop_map(|conv| Op::MarkRead { conv }),
        2 => (0..40u128, state()).prop_map(|(id, state)| Op::SetState { id, state }),
        1 => Just(Op::Reopen),
    ]
}

/// The author digest that breaks ties in the store's key order: BLAKE3
/// key derivation truncated to 16 bytes (the layout documented in the
/// storage crate's `keys` module).
fn digest(author: &str) -> [u8; 16] {
    let full = blake3::derive_key("kith 2026 message author digest v1", author.as_bytes());
    full[..16].try_into().unwrap()
}

/// A message's place in its conversation.
type Order = (u64, MessageId, [u8; 16]);

fn order(m: &Message) -> Order {
    (m.lamport, m.id, digest(&m.author))
}

/// The model: messages per conversation in key order, where each (author, id)
/// lives, and which were deleted.
#[derive(Default)]
struct Model {
    convs: BTreeMap<ConversationId, BTreeMap<Order, Message>>,
    by_ref: BTreeMap<(MessageId, String), ConversationId>,
    deleted: BTreeSet<(MessageId, String)>,
}

impl Model {
    fn insert(&mut self, msg: Message) -> Inserted {
        let reference = (msg.id, msg.author.clone());
        if self.by_ref.contains_key(&reference) {
            return Inserted::Duplicate;
        }
        if self.deleted.contains(&reference) {
            return Inserted::Refused(Refusal::Deleted);
        }
        self.by_ref.insert(reference, msg.conversation);
        self.convs
            .entry(msg.conversation)
            .or_default()
            .insert(order(&msg), msg);
        Inserted::New
    }

    fn remove(&mut self, conv: ConversationId) {
        for msg in self.convs.remove(&conv).unwrap_or_default().into_values() {
            let reference = (msg.id, msg.author);
            self.by_ref.remove(&reference);
            self.deleted.insert(reference);
        }
    }

    /// The message an id alone means: ours if any, else the first in
    /// `id ‖ author digest` order.
    fn resolve_mut(&mut self, id: MessageId) -> Option<&mut Message> {
        let mut found: Vec<&mut Message> = self
            .convs
            .values_mut()
            .flat_map(|c| c.values_mut())
            .filter(|m| m.id == id)
            .collect();
        found.sort_by_key(|m| (m.direction != Direction::Outgoing, digest(&m.author)));
        found.into_iter().next()
    }

    fn messages(&self, conv: ConversationId) -> Vec<Message> {
        self.convs
            .get(&conv)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// What `Messages::page` promises: the messages before the oldest with
    /// id `before`, at most `limit` unless the page's first message has an
    /// older namesake (then extended until it has none). `None`: not found.
    fn page(
        &self,
        conv: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Option<Vec<Message>> {
        let all = self.messages(conv);
        let end = match before {
            None => all.len(),
            Some(id) => all.iter().position(|m| m.id == id)?,
        };
        let mut start = end.saturating_sub(limit);
        let oldest = |i: usize| all[..i].iter().all(|m| m.id != all[i].id);
        while start < end && start > 0 && !oldest(start) {
            start -= 1;
        }
        Some(all[start..end].to_vec())
    }

    fn unread(&self, conv: ConversationId) -> u32 {
        self.messages(conv).iter().filter(|m| is_unread(m)).count() as u32
    }
}

fn is_unread(m: &Message) -> bool {
    m.direction == Direction::Incoming && m.state != MessageState::Read
}

fn by(author: u8, msg: Message) -> Message {
    Message {
        author: format!("author-{author}"),
        ..msg
    }
}

fn check_against_model(store: &Store, model: &Model) {
    for c in 0..CONVERSATIONS {
        let conv = cid(c);
        let expected = model.messages(conv);
        let all = store.messages().page(conv, None, usize::MAX).unwrap();
        assert_eq!(all, expected);
        assert_eq!(store.messages().count(conv).unwrap(), expected.len());
        assert_eq!(
            store.messages().latest(conv).unwrap().as_ref(),
            expected.last()
        );
        let stored = store.conversations().get(conv).unwrap().unwrap();
        assert_eq!(stored.unread, model.unread(conv), "unread of {conv}");
        let max_lamport = expected.iter().map(|m| m.lamport).max().unwrap_or(0);
        assert_eq!(stored.last_lamport, max_lamport);
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = common::open(&path).unwrap();
    for c in 0..CONVERSATIONS {
        conversation(&store, c);
    }
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Insert {
                conv,
                id,
                lamport,
                author,
            } => {
                let msg = match author {
                    Some(a) => by(a, incoming(cid(conv), mid(id), lamport)),
                    None => outgoing(cid(conv), mid(id), lamport),
                };
                assert_eq!(store.messages().insert(&msg).unwrap(), model.insert(msg));
            }
            Op::Batch(items) => {
                let msgs: Vec<_> = items
                    .into_iter()
                    .map(|(conv, id, lamport, a)| by(a, incoming(cid(conv), mid(id), lamport)))
                    .collect();
                let expected: Vec<_> = msgs.iter().map(|m| model.insert(m.clone())).collect();
                assert_eq!(store.insert_incoming_batch(&msgs).unwrap(), expected);
            }
            Op::Remove { conv } => {
                assert!(store.conversations().remove(cid(conv), NOW).unwrap());
                model.remove(cid(conv));
                conversation(&store, conv);
            }
            Op::Page { conv, nth, limit } => {
                let all = model.messages(cid(conv));
                let before = nth
                    .and_then(|n| all.get(n.min(all.len().saturating_sub(1))))
                    .map(|m| m.id);
                let expected = model.page(cid(conv), before, limit).unwrap();
                assert_eq!(
                    store.messages().page(cid(conv), before, limit).unwrap(),
                    expected
                );
            }
            Op::MarkRead { conv } => {
                let mut expected = Vec::new();
                for m in model.convs.entry(cid(conv)).or_default().values_mut() {
                    if is_unread(m) {
                        m.state = MessageState::Read;
                        expected.push(m.clone());
                    }
                }
                assert_eq!(store.mark_read(cid(conv)).unwrap(), expected);
            }
            Op::SetState { id, state } => {
                let result = store.set_message_state(mid(id), state, true);
                match model.resolve_mut(mid(id)) {
                    None => assert!(result.is_err()),
                    Some(m) if m.state.can_become(state) => {
                        m.state = state;
                        assert_eq!(result.unwrap(), Some(state));
                    }
                    Some(_) => assert_eq!(result.unwrap(), None),
                }
            }
            Op::Reopen => {
                drop(store);
                store = common::open(&path).unwrap();
            }
        }
    }
    check_against_model(&store, &model);
    // Paging backwards visits every message exactly once, in order.
    for c in 0..CONVERSATIONS {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store.messages().page(cid(c), before, 3).unwrap();
            let Some(first) = page.first() else { break };
            before = Some(first.id);
            seen.splice(0..0, page);
            assert!(
                seen.len() <= model.messages(cid(c)).len(),
                "a message came twice"
            );
        }
        assert_eq!(seen, model.messages(cid(c)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
