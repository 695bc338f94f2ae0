//! Which files a node stops keeping: the blob (and record) of a file whose message
//! its author deleted for everyone, of a received file whose message the user hid,
//! and of a file whose message is no longer stored at all (its conversation was
//! deleted, with the contact). The download task removes them
//! (docs/PROTOCOL.md, *Files*, *When a file goes*).
//!
//! A file we sent and then only hid stays: hiding is for our eyes, and the
//! recipients may still fetch it from us. A received file already saved to the
//! files folder stays there too: that copy is the user's, not the node's.

use kith_storage::{Direction, FileRecord, Store, StoreError};

/// Why a file's blob goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Its author deleted its message for everyone.
    Deleted,
    /// We received it, and hid its message.
    Hidden,
    /// Its message is no longer stored (its conversation was deleted).
    NoMessage,
}

/// Whether `record`'s blob goes, and why. The message is the one the record names,
/// by its author: a peer that sends a message naming a blob of ours, then deletes
/// it, deletes its own message, not our file.
pub(crate) fn gone(store: &Store, record: &FileRecord) -> Result<Option<Gone>, StoreError> {
    let messages = store.messages();
    let Some(message) = messages.get_from(&kith_storage::peer_text(&record.author), record.message)? else {
        return Ok(Some(Gone::NoMessage));
    };
    let annotations = messages.annotations(&message)?;
    Ok(if annotations.deleted {
        Some(Gone::Deleted)
    } else if annotations.hidden && record.direction == Direction::Incoming {
        Some(Gone::Hidden)
    } else {
        None
    })
}

/// The record of file `blob` and why it goes, if it has one and it goes.
pub(crate) fn blob_gone(store: &Store, blob: &[u8; 32]) -> Result<Option<(FileRecord, Gone)>, StoreError> {
    let Some(record) = store.files().get(blob)? else { return Ok(None) };
    Ok(gone(store, &record)?.map(|why| (record, why)))
}

/// Every file record whose blob goes.
pub(crate) fn all_gone(store: &Store) -> Result<Vec<(FileRecord, Gone)>, StoreError> {
    let mut gone_ones = Vec::new();
    for record in store.files().list()? {
        if let Some(why) = gone(store, &record)? {
            gone_ones.push((record, why));
        }
    }
    Ok(gone_ones)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_storage::{ConversationId, ConversationKind, FileRef, Link, Message, MessageId, MessageState, PeerId};

    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::from_bytes(&[&[0x12, 0x20][..], &[n; 32]].concat()).unwrap()
    }

    fn message(id: u128, author: &PeerId, direction: Direction, file: Option<u8>, link: Option<Link>) -> Message {
        Message {
            id: MessageId::from_bytes(id.to_be_bytes()),
            conversation: ConversationId::from_bytes([7; 16]),
            author: kith_storage::peer_text(author),
            lamport: id as u64,
            sent_at_ms: 1_000,
            received_at_ms: 1_000,
            text: String::new(),
            state: MessageState::Delivered,
            direction,
            file: file.map(|n| {
                Box::new(FileRef {
                    blob: [n; 32],
                    key: [0; 32],
                    name: "f.bin".into(),
                    size: 10,
                    media_type: "application/octet-stream".into(),
                    sources: Vec::new(),
                })
            }),
            link,
        }
    }

    fn why(store: &Store, blob: u8) -> Option<Gone> {
        gone(store, &store.files().get(&[blob; 32]).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_file_goes_with_its_authors_delete_a_received_one_when_hidden_and_any_when_its_message_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (me, them, stranger) = (peer(1), peer(2), peer(3));
        let kind = ConversationKind::Direct { peer_id: kith_storage::peer_text(&them) };
        store.conversations().ensure(ConversationId::from_bytes([7; 16]), kind, 0).unwrap();
        let id = |n: u128| MessageId::from_bytes(n.to_be_bytes());
        store
            .insert_incoming_batch(&[
                message(1, &them, Direction::Incoming, Some(1), None),
                message(2, &me, Direction::Outgoing, Some(2), None),
                message(3, &them, Direction::Incoming, Some(3), None),
                message(4, &them, Direction::Incoming, Some(4), None),
            ])
            .unwrap();
        assert_eq!((why(&store, 1), why(&store, 2), why(&store, 3)), (None, None, None), "kept while their messages stand");

        store
            .insert_incoming_batch(&[
                // We hide a received file and one we sent.
                message(11, &me, Direction::Outgoing, None, Some(Link::Hide(id(1)))),
                message(12, &me, Direction::Outgoing, None, Some(Link::Hide(id(2)))),
                // Its author deletes one; a stranger "deletes" another.
                message(13, &them, Direction::Incoming, None, Some(Link::Delete(id(3)))),
                message(14, &stranger, Direction::Incoming, None, Some(Link::Delete(id(4)))),
            ])
            .unwrap();
        assert_eq!(why(&store, 1), Some(Gone::Hidden));
        assert_eq!(why(&store, 2), None, "a sent file only hidden stays: its recipients may still fetch it");
        assert_eq!(why(&store, 3), Some(Gone::Deleted));
        assert_eq!(why(&store, 4), None, "only its author deletes a message");

        let mut gone_ones: Vec<(u8, Gone)> = all_gone(&store).unwrap().into_iter().map(|(r, why)| (r.blob[0], why)).collect();
        gone_ones.sort_by_key(|(blob, _)| *blob);
        assert_eq!(gone_ones, [(1, Gone::Hidden), (3, Gone::Deleted)]);

        // Someone names a blob before our message carrying it is stored (a media node
        // learns a blob's id while we upload it), then deletes their message: the
        // record is ours, so our file stays.
        store.insert_incoming_batch(&[message(5, &stranger, Direction::Incoming, Some(5), None)]).unwrap();
        store.insert_incoming_batch(&[message(6, &me, Direction::Outgoing, Some(5), None)]).unwrap();
        store.insert_incoming_batch(&[message(15, &stranger, Direction::Incoming, None, Some(Link::Delete(id(5))))]).unwrap();
        let record = store.files().get(&[5; 32]).unwrap().unwrap();
        assert_eq!((record.message, record.direction), (id(6), Direction::Outgoing), "our message owns our file");
        assert_eq!(why(&store, 5), None);

        // The conversation is deleted: every file of it goes, the sent one too.
        assert!(store.conversations().remove(ConversationId::from_bytes([7; 16]), 2_000).unwrap());
        assert_eq!(why(&store, 2), Some(Gone::NoMessage));
        assert_eq!(why(&store, 4), Some(Gone::NoMessage));
    }
}
