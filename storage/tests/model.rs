//! Property test: random operations across conversations, checked against a
//! `BTreeMap` model of the message store.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{cid, conversation, incoming, mid, outgoing};
use kith_storage::{ConversationId, Inserted, Message, MessageId, MessageState, Store};
use proptest::prelude::*;

const CONVERSATIONS: u128 = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Insert one message (ids are drawn from a small range so they repeat).
    Insert {
        conv: u128,
        id: u128,
        lamport: u64,
        incoming: bool,
    },
    /// Insert a batch of incoming messages.
    Batch(Vec<(u128, u128, u64)>),
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
        6 => (conv.clone(), 0..40u128, 0..8u64, any::<bool>())
            .prop_map(|(conv, id, lamport, incoming)| Op::Insert { conv, id, lamport, incoming }),
        2 => prop::collection::vec((conv.clone(), 0..40u128, 0..8u64), 0..6).prop_map(Op::Batch),
        3 => (conv.clone(), prop::option::of(0..50usize), 0..6usize)
            .prop_map(|(conv, nth, limit)| Op::Page { conv, nth, limit }),
        1 => conv.prop_map(|conv| Op::MarkRead { conv }),
        2 => (0..40u128, state()).prop_map(|(id, state)| Op::SetState { id, state }),
        1 => Just(Op::Reopen),
    ]
}

/// The model: messages per conversation in (lamport, id) order.
#[derive(Default)]
struct Model {
    convs: BTreeMap<ConversationId, BTreeMap<(u64, MessageId), Message>>,
    by_id: BTreeMap<MessageId, (ConversationId, u64)>,
}

impl Model {
    fn insert(&mut self, msg: Message) -> Inserted {
        if self.by_id.contains_key(&msg.id) {
            return Inserted::Duplicate;
        }
        self.by_id.insert(msg.id, (msg.conversation, msg.lamport));
        self.convs
            .entry(msg.conversation)
            .or_default()
            .insert((msg.lamport, msg.id), msg);
        Inserted::New
    }

    fn get_mut(&mut self, id: MessageId) -> Option<&mut Message> {
        let (conv, lamport) = *self.by_id.get(&id)?;
        self.convs.get_mut(&conv)?.get_mut(&(lamport, id))
    }

    fn messages(&self, conv: ConversationId) -> Vec<Message> {
        self.convs
            .get(&conv)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn unread(&self, conv: ConversationId) -> u32 {
        self.messages(conv).iter().filter(|m| is_unread(m)).count() as u32
    }
}

fn is_unread(m: &Message) -> bool {
    m.direction == kith_storage::Direction::Incoming && m.state != MessageState::Read
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
                incoming: inc,
            } => {
                let msg = if inc {
                    incoming(cid(conv), mid(id), lamport)
                } else {
                    outgoing(cid(conv), mid(id), lamport)
                };
                assert_eq!(store.messages().insert(&msg).unwrap(), model.insert(msg));
            }
            Op::Batch(items) => {
                let msgs: Vec<_> = items
                    .into_iter()
                    .map(|(conv, id, lamport)| incoming(cid(conv), mid(id), lamport))
                    .collect();
                let expected: Vec<_> = msgs.iter().map(|m| model.insert(m.clone())).collect();
                assert_eq!(store.insert_incoming_batch(&msgs).unwrap(), expected);
            }
            Op::Page { conv, nth, limit } => {
                let all = model.messages(cid(conv));
                let end = nth.map_or(all.len(), |n| n.min(all.len().saturating_sub(1)));
                let before = nth.and_then(|_| all.get(end)).map(|m| m.id);
                let end = if before.is_some() { end } else { all.len() };
                let expected = &all[end.saturating_sub(limit)..end];
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
                match model.get_mut(mid(id)) {
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
