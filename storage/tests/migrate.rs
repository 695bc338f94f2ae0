//! Opening a database written by an older kith migrates it: a schema-1
//! database (messages keyed by id alone) is built here byte by byte, as
//! version 1 wrote it, and must come out of `Store::open` with every message,
//! unread count and outbox entry intact.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, mid, open, raw_sled};
use kith_storage::{
    Conversation, ConversationId, ConversationKind, Direction, Inserted, Message, MessageState,
    OutboxEntry, Recipient, SCHEMA_VERSION,
};

fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

/// A message key of schema version 1: `conversation ‖ lamport ‖ id`.
fn v1_key(m: &Message) -> Vec<u8> {
    let mut key = m.conversation.0.to_vec();
    key.extend_from_slice(&m.lamport.to_be_bytes());
    key.extend_from_slice(&m.id.0);
    key
}

/// The messages of the old database: two conversations, more messages than
/// one migration chunk, incoming read and unread, outgoing pending and sent.
fn old_messages() -> Vec<Message> {
    (0..1500u128)
        .map(|n| {
            let conv = cid(1 + n % 2);
            let incoming = n % 3 != 0;
            Message {
                id: mid(10_000 + n * 7 % 1500),
                conversation: conv,
                author: if incoming {
                    format!("peer-{}", 1 + n % 2)
                } else {
                    "me".into()
                },
                lamport: (n / 4) as u64,
                sent_at_ms: 1_000 + n as u64,
                received_at_ms: 2_000 + n as u64,
                text: format!("old message {n}"),
                state: match (incoming, n % 5) {
                    (true, 0) => MessageState::Read,
                    (true, _) => MessageState::Delivered,
                    (false, 0) => MessageState::Pending,
                    (false, _) => MessageState::Sent,
                },
                direction: if incoming {
                    Direction::Incoming
                } else {
                    Direction::Outgoing
                },
                file: None,
                link: None,
            }
        })
        .collect()
}

fn unread(m: &Message) -> bool {
    m.direction == Direction::Incoming && m.state != MessageState::Read
}

fn entry(m: &Message) -> OutboxEntry {
    OutboxEntry {
        id: m.id,
        recipient: Recipient::Peer(common::peer(1)),
        payload: m.text.as_bytes().to_vec(),
        attempts: 2,
        next_attempt_ms: 5_000,
        created_at_ms: m.sent_at_ms,
    }
}

/// Writes `messages` (and their conversations, index, unread set and outbox)
/// in the layout of schema version 1.
fn write_v1(path: &std::path::Path, messages: &[Message]) {
    let db = raw_sled(path);
    db.open_tree("meta")
        .unwrap()
        .insert("schema_version", &1u32.to_be_bytes())
        .unwrap();
    let (tree, index, unread_set, outbox, conversations) = (
        db.open_tree("messages").unwrap(),
        db.open_tree("message_index").unwrap(),
        db.open_tree("unread").unwrap(),
        db.open_tree("outbox").unwrap(),
        db.open_tree("conversations").unwrap(),
    );
    for m in messages {
        tree.insert(v1_key(m), cbor(m)).unwrap();
        index.insert(m.id.0, v1_key(m)).unwrap();
        if unread(m) {
            unread_set.insert(v1_key(m), &[][..]).unwrap();
        }
        if m.state == MessageState::Pending {
            outbox.insert(m.id.0, cbor(&entry(m))).unwrap();
        }
    }
    for c in [cid(1), cid(2)] {
        let mine: Vec<&Message> = messages.iter().filter(|m| m.conversation == c).collect();
        let conv = Conversation {
            id: c,
            kind: ConversationKind::Direct {
                peer_id: format!("peer-{}", c.0[15]),
            },
            last_activity_ms: 9_999,
            unread: mine.iter().filter(|m| unread(m)).count() as u32,
            last_lamport: mine.iter().map(|m| m.lamport).max().unwrap(),
        };
        conversations.insert(c.0, cbor(&conv)).unwrap();
    }
    db.flush().unwrap();
}

fn sorted(messages: &[Message], conv: ConversationId) -> Vec<Message> {
    let mut mine: Vec<Message> = messages
        .iter()
        .filter(|m| m.conversation == conv)
        .cloned()
        .collect();
    mine.sort_by_key(|m| (m.lamport, m.id));
    mine
}

#[test]
fn a_schema_1_database_migrates_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let messages = old_messages();
    write_v1(&path, &messages);
    // Left by an earlier attempt that a crash interrupted: both are rewritten.
    std::fs::write(path.join("messages.log"), b"kithlog1 half a frame").unwrap();
    std::fs::write(path.join("messages.log.migrating"), b"kithlog1 partial").unwrap();
    let store = open(&path).unwrap();

    // Every message, by id, by author and id, and in conversation order.
    for m in &messages {
        assert_eq!(store.messages().get(m.id).unwrap().as_ref(), Some(m));
        assert_eq!(
            store.messages().get_from(&m.author, m.id).unwrap().as_ref(),
            Some(m)
        );
    }
    for c in [cid(1), cid(2)] {
        let expected = sorted(&messages, c);
        assert_eq!(
            store.messages().page(c, None, usize::MAX).unwrap(),
            expected
        );
        let anchor = expected[expected.len() / 2].id;
        let half = store.messages().page(c, Some(anchor), usize::MAX).unwrap();
        assert_eq!(half, expected[..expected.len() / 2]);
        let conv = store.conversations().get(c).unwrap().unwrap();
        let unread_before = expected.iter().filter(|m| unread(m)).count();
        assert_eq!(conv.unread as usize, unread_before, "unread count of {c}");
        assert_eq!(conv.last_activity_ms, 9_999);
    }
    // The outbox, untouched.
    let pending: Vec<&Message> = messages
        .iter()
        .filter(|m| m.state == MessageState::Pending)
        .collect();
    let mut expected_outbox: Vec<OutboxEntry> = pending.iter().map(|m| entry(m)).collect();
    expected_outbox.sort_by_key(|e| (e.next_attempt_ms, e.id));
    assert_eq!(store.outbox().list().unwrap(), expected_outbox);

    // The migrated indexes work: the unread set, state changes, idempotence.
    let newly_read = store.mark_read(cid(1)).unwrap();
    assert_eq!(
        newly_read.len(),
        sorted(&messages, cid(1))
            .iter()
            .filter(|m| unread(m))
            .count()
    );
    assert_eq!(
        store.conversations().get(cid(1)).unwrap().unwrap().unread,
        0
    );
    let first = pending[0];
    assert_eq!(
        store
            .set_message_state(first.id, MessageState::Delivered, true)
            .unwrap(),
        Some(MessageState::Delivered)
    );
    assert_eq!(store.outbox().get(first.id).unwrap(), None);
    assert_eq!(
        store.insert_incoming_batch(&messages[1..2]).unwrap(),
        [Inserted::Duplicate]
    );
    drop(store);

    // On disk: the new version, the message log, and none of the trees it replaced.
    let db = raw_sled(&path);
    assert_eq!(common::schema_version(&db), SCHEMA_VERSION);
    let trees: Vec<String> = db.tree_names().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    for moved in ["messages", "message_index", "unread", "outbox"] {
        assert!(!trees.iter().any(|t| t == moved), "{moved} left in {trees:?}");
    }
    assert!(!path.join("messages.log.migrating").exists());
    drop(db);

    // And it opens again as it was left.
    let store = open(&path).unwrap();
    assert_eq!(store.messages().count(cid(1)).unwrap() + store.messages().count(cid(2)).unwrap(), messages.len());
    assert_eq!(store.outbox().len(), pending.len() - 1);
    assert_eq!(store.conversations().get(cid(1)).unwrap().unwrap().unread, 0);
}

/// Puts `records` into the sled `ratchet` tree of the store at `path` and marks
/// the database schema version 4, as a build before the move wrote it.
fn write_v4_ratchet_tree(path: &std::path::Path, records: &[(&[u8], &[u8])]) {
    let db = raw_sled(path);
    let tree = db.open_tree("ratchet").unwrap();
    for (key, value) in records {
        tree.insert(key, value.to_vec()).unwrap();
    }
    db.open_tree("meta").unwrap().insert("schema_version", &4u32.to_be_bytes()).unwrap();
    db.flush().unwrap();
}

fn has_ratchet_tree(db: &sled::Db) -> bool {
    db.tree_names().iter().any(|n| n == b"ratchet".as_slice())
}

#[test]
fn the_ratchet_tree_moves_into_the_message_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = open(&path).unwrap();
    common::conversation(&store, 1);
    store.insert_incoming_batch(&[common::incoming(cid(1), mid(1), 1)]).unwrap();
    drop(store);
    let records: [(&[u8], &[u8]); 3] = [(b"account", b"sealed account"), (b"p/bob", b"sealed bob"), (b"d/digest", b"12345678")];
    write_v4_ratchet_tree(&path, &records);

    let store = open(&path).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut r: Vec<_> = records.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        r.sort();
        r
    };
    assert_eq!(store.ratchet().scan(b"").unwrap(), expected);
    assert_eq!(store.ratchet().get(b"p/bob").unwrap().as_deref(), Some(&b"sealed bob"[..]));
    assert_eq!(store.messages().count(cid(1)).unwrap(), 1, "messages stay");
    // Written after the move, the log's values are the ones that count.
    store.ratchet().write(&[(b"p/bob".to_vec(), Some(b"newer bob".to_vec()))]).unwrap();
    store.flush().unwrap();
    drop(store);
    let db = raw_sled(&path);
    assert!(!has_ratchet_tree(&db), "the tree is gone once its records are in the log");
    assert_eq!(common::schema_version(&db), SCHEMA_VERSION);
    drop(db);

    // A crash after the copy but before the tree was dropped copies the same
    // records again at the next open: the same values as before.
    let store = open(&path).unwrap();
    assert_eq!(store.ratchet().get(b"p/bob").unwrap().as_deref(), Some(&b"newer bob"[..]), "moved once only");
    store.ratchet().write(&[(b"p/bob".to_vec(), Some(b"sealed bob".to_vec()))]).unwrap();
    store.flush().unwrap();
    drop(store);
    write_v4_ratchet_tree(&path, &records);
    let store = open(&path).unwrap();
    assert_eq!(store.ratchet().scan(b"").unwrap(), expected);
    drop(store);
    assert!(!has_ratchet_tree(&raw_sled(&path)));
}
