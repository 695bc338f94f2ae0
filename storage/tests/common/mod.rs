//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use kith_storage::{
    Conversation, ConversationId, ConversationKind, Direction, Message, MessageId, MessageState,
    OpenError, OpenOptions, Store,
};

/// A valid peer id made from `n` (a SHA-256 multihash of 32 bytes of `n`).
pub fn peer(n: u8) -> kith_storage::PeerId {
    kith_storage::PeerId::from_bytes(&[&[0x12, 0x20][..], &[n; 32]].concat()).unwrap()
}

/// How long tests wait for sled to release a database lock after a drop
/// (generous: a loaded CI machine can be slow to reap sled's threads).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens a store, waiting up to [`LOCK_WAIT`] for a previous one to close.
pub fn open(path: &Path) -> Result<Store, OpenError> {
    Store::open_with(path, &OpenOptions::default().with_lock_wait(LOCK_WAIT))
}

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db")).unwrap();
    (dir, store)
}

/// Opens the sled database under a store directly (to fake other kith
/// versions or foreign databases), waiting for its lock like [`open`].
pub fn raw_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
}

/// The schema version recorded in a database opened with [`raw_sled`].
pub fn schema_version(db: &sled::Db) -> u32 {
    let v = db
        .open_tree("meta")
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap();
    u32::from_be_bytes(v.as_ref().try_into().unwrap())
}

/// A deterministic id from a number.
pub fn mid(n: u128) -> MessageId {
    MessageId::from_bytes(n.to_be_bytes())
}

/// A deterministic conversation id from a number.
pub fn cid(n: u128) -> ConversationId {
    ConversationId::from_bytes(n.to_be_bytes())
}

/// Creates a direct conversation with peer `peer-<n>`.
pub fn conversation(store: &Store, n: u128) -> Conversation {
    store
        .conversations()
        .get_or_create(
            cid(n),
            ConversationKind::Direct {
                peer_id: format!("peer-{n}"),
            },
            0,
        )
        .unwrap()
}

/// An incoming, delivered message.
pub fn incoming(conv: ConversationId, id: MessageId, lamport: u64) -> Message {
    Message {
        id,
        conversation: conv,
        author: "peer".into(),
        lamport,
        sent_at_ms: 1_000 + lamport,
        received_at_ms: 2_000 + lamport,
        text: format!("message {id}"),
        state: MessageState::Delivered,
        direction: Direction::Incoming,
        file: None,
        link: None,
    }
}

/// An outgoing, pending message.
pub fn outgoing(conv: ConversationId, id: MessageId, lamport: u64) -> Message {
    Message {
        author: "me".into(),
        state: MessageState::Pending,
        direction: Direction::Outgoing,
        ..incoming(conv, id, lamport)
    }
}

