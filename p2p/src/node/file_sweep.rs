//! Which files a node stops keeping: the blob (and record) of a file whose message
//! its author deleted for everyone, of a received file whose message the user hid,
//! and of a file whose message is no longer stored at all (its conversation was
//! deleted, with the contact). The download task removes them
//! (docs/PROTOCOL.md, *Files*, *When a file goes*).
//!
//! A file we sent and then only hid stays: hiding is for our eyes, and the
//! recipients may still fetch it from us. A received file already saved to the
//! files folder stays there too: that copy is the user's, not the node's.
//!
//! A received file's record names the first message that named its blob, and
//! remembers the others that did ([`FileRecord::claims`]): when its message goes,
//! or its key does not open the blob, the record passes to the next of those still
//! kept ([`successor`]) rather than going, so a message someone else sent naming
//! our blob first can neither take the file with it nor leave it unopenable.

use kith_storage::{Direction, FileClaim, FileRecord, MessageId, PeerId, Store, StoreError};

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
    Ok(record_message(store, record)?.err())
}

/// The message `record` names, if it still keeps the file, else why the file goes
/// (see [`gone`]).
pub(crate) fn record_message(store: &Store, record: &FileRecord) -> Result<Result<kith_storage::Message, Gone>, StoreError> {
    message_keeps(store, &record.author, record.message, record.direction)
}

/// The message `author`'s `id` if it still keeps its file, else why not.
fn message_keeps(
    store: &Store,
    author: &PeerId,
    id: MessageId,
    direction: Direction,
) -> Result<Result<kith_storage::Message, Gone>, StoreError> {
    let messages = store.messages();
    let Some(message) = messages.get_from(&kith_storage::peer_text(author), id)? else {
        return Ok(Err(Gone::NoMessage));
    };
    let annotations = messages.annotations(&message)?;
    Ok(if annotations.deleted {
        Err(Gone::Deleted)
    } else if annotations.hidden && direction == Direction::Incoming {
        Err(Gone::Hidden)
    } else {
        Ok(message)
    })
}

/// The message of `claim` if it still keeps the file (stored, neither deleted by
/// its author nor hidden).
pub(crate) fn claim_kept(store: &Store, claim: &FileClaim) -> Result<Option<kith_storage::Message>, StoreError> {
    Ok(message_keeps(store, &claim.author, claim.message, Direction::Incoming)?.ok())
}

/// The record a received file would pass to (see [`successor`]).
#[derive(Debug, PartialEq)]
pub(crate) struct Successor {
    /// The new record: its message's, with the claims left.
    pub(crate) record: FileRecord,
    /// Its message gives the same key and size as the record's: what the blob
    /// store holds of the file stays good.
    pub(crate) same_file: bool,
    /// Its message is vouched for ([`kith_storage::Files::vouched`]).
    pub(crate) vouched: bool,
}

/// The record a received file passes to when its record's message goes, its key
/// does not open the blob, or a vouched-for message should hold it instead: that of
/// the first of [`FileRecord::claims`] whose message still keeps it and is vouched
/// for ([`kith_storage::Files::vouched`]), else of the first whose message still
/// keeps it. The other
/// claims stay with it. `None` when no claim's message keeps the file.
pub(crate) fn successor(store: &Store, record: &FileRecord) -> Result<Option<Successor>, StoreError> {
    // The claims whose message still keeps the file, in order (the others would
    // only fill the bound), each with its message.
    let mut kept = Vec::new();
    for claim in &record.claims {
        if let Some(message) = claim_kept(store, claim)?
            && message.file.as_ref().is_some_and(|f| f.blob == record.blob)
        {
            kept.push((claim, message));
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    // Unreadable counts as not vouched for: it is only not preferred.
    let vouched_at = kept.iter().position(|(claim, message)| store.files().vouched(&claim.author, message.conversation).unwrap_or(false));
    let (_, message) = kept.remove(vouched_at.unwrap_or(0));
    let Some(mut next) = FileRecord::of(&message) else { return Ok(None) };
    next.claims = kept.into_iter().map(|(claim, _)| claim.clone()).collect();
    let vouched = vouched_at.is_some();
    let same = |m: &kith_storage::Message| m.file.as_ref().map(|f| (f.key, f.size));
    let before = store.messages().get_from(&kith_storage::peer_text(&record.author), record.message)?;
    let same_file = before.as_ref().and_then(same).is_some_and(|old| Some(old) == same(&message));
    Ok(Some(Successor { record: next, same_file, vouched }))
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

    fn id(n: u128) -> MessageId {
        MessageId::from_bytes(n.to_be_bytes())
    }

    /// A store in a temporary directory (kept while the first is) holding the
    /// conversation [`message`] writes to, with peer 2.
    fn store_with_conversation() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kind = ConversationKind::Direct { peer_id: kith_storage::peer_text(&peer(2)) };
        store.conversations().ensure(ConversationId::from_bytes([7; 16]), kind, 0).unwrap();
        (dir, store)
    }

    fn why(store: &Store, blob: u8) -> Option<Gone> {
        gone(store, &store.files().get(&[blob; 32]).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_file_goes_with_its_authors_delete_a_received_one_when_hidden_and_any_when_its_message_is_gone() {
        let (_dir, store) = store_with_conversation();
        let (me, them, stranger) = (peer(1), peer(2), peer(3));
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

    #[test]
    fn a_file_named_first_by_someone_else_passes_to_the_real_message_when_theirs_goes() {
        let (_dir, store) = store_with_conversation();
        let (me, them, intruder) = (peer(1), peer(2), peer(3));
        // Someone who learned the blob's id names it first, with a wrong key; then
        // the real message comes, and a second one of the intruder's.
        let mut forged = message(20, &intruder, Direction::Incoming, Some(9), None);
        forged.file.as_mut().unwrap().key = [66; 32];
        store.insert_incoming_batch(&[forged]).unwrap();
        store.insert_incoming_batch(&[message(21, &them, Direction::Incoming, Some(9), None)]).unwrap();
        store.insert_incoming_batch(&[message(22, &intruder, Direction::Incoming, Some(9), None)]).unwrap();
        let record = store.files().get(&[9; 32]).unwrap().unwrap();
        assert_eq!(record.message, id(20), "the first message to name a blob holds its record");
        let claimed: Vec<MessageId> = record.claims.iter().map(|c| c.message).collect();
        assert_eq!(claimed, [id(21)], "one claim per author: the intruder's second message adds none");

        // Its key does not open the blob, or its message goes: the real one takes over,
        // with a key of its own (so what the blob store holds is not kept).
        let Successor { record: next, same_file, vouched } = successor(&store, &record).unwrap().unwrap();
        assert_eq!((next.message, next.author, same_file, vouched), (id(21), them, false, false));
        assert!(next.claims.is_empty());
        store.insert_incoming_batch(&[message(23, &intruder, Direction::Incoming, None, Some(Link::Delete(id(20))))]).unwrap();
        assert_eq!(why(&store, 9), Some(Gone::Deleted));
        assert!(store.files().replace(&record, &next).unwrap());
        assert_eq!(why(&store, 9), None, "the file stays with the real message");
        assert!(!store.files().replace(&record, &next).unwrap(), "a record that changed meanwhile is left as it is");
        assert_eq!(successor(&store, &next).unwrap(), None, "no one left to pass it to");

        // A claim whose message is gone is passed over.
        store.insert_incoming_batch(&[message(30, &intruder, Direction::Incoming, Some(10), None)]).unwrap();
        store.insert_incoming_batch(&[message(31, &them, Direction::Incoming, Some(10), None)]).unwrap();
        store.insert_incoming_batch(&[message(32, &peer(4), Direction::Incoming, Some(10), None)]).unwrap();
        store.insert_incoming_batch(&[message(33, &me, Direction::Outgoing, None, Some(Link::Hide(id(31))))]).unwrap();
        let record = store.files().get(&[10; 32]).unwrap().unwrap();
        let next = successor(&store, &record).unwrap().unwrap();
        assert_eq!((next.record.message, next.same_file), (id(32), true), "the hidden claim is skipped; same key, the blob stays good");
        // An accepted contact's claim goes before an earlier stranger's.
        store.contacts().put(&crate::node::test_support::accepted_contact(peer(5))).unwrap();
        store.insert_incoming_batch(&[message(34, &peer(5), Direction::Incoming, Some(10), None)]).unwrap();
        let record = store.files().get(&[10; 32]).unwrap().unwrap();
        let next = successor(&store, &record).unwrap().unwrap();
        assert_eq!((next.record.message, next.vouched), (id(34), true), "a contact's message is vouched for");
        let left: Vec<MessageId> = next.record.claims.iter().map(|c| c.message).collect();
        assert_eq!(left, [id(32)], "the stranger's claim stays; the hidden one goes");

        // At most MAX_FILE_CLAIMS, and none on a file we sent.
        for n in 0..kith_storage::MAX_FILE_CLAIMS as u8 + 4 {
            store.insert_incoming_batch(&[message(100 + u128::from(n), &peer(50 + n), Direction::Incoming, Some(10), None)]).unwrap();
        }
        let full = store.files().get(&[10; 32]).unwrap().unwrap().claims;
        assert_eq!(full.len(), kith_storage::MAX_FILE_CLAIMS);
        // Full, it still takes a contact's claim: first in place of the newest whose
        // message no longer keeps the file (Bob's, which we hid)...
        let place = |claims: &[FileClaim], id| claims.iter().position(|c| c.message == id);
        assert!(place(&full, id(31)).is_some());
        store.contacts().put(&crate::node::test_support::accepted_contact(peer(6))).unwrap();
        store.insert_incoming_batch(&[message(35, &peer(6), Direction::Incoming, Some(10), None)]).unwrap();
        let claims = store.files().get(&[10; 32]).unwrap().unwrap().claims;
        assert_eq!(claims.len(), kith_storage::MAX_FILE_CLAIMS);
        assert_eq!((place(&claims, id(31)), place(&claims, id(35))), (None, Some(claims.len() - 1)), "the hidden one made room");
        // ...then in place of the newest stranger's, never a contact's: throwaway
        // identities cannot crowd a contact out.
        let newest_stranger = claims[claims.len() - 2].message;
        store.contacts().put(&crate::node::test_support::accepted_contact(peer(7))).unwrap();
        store.insert_incoming_batch(&[message(36, &peer(7), Direction::Incoming, Some(10), None)]).unwrap();
        let claims = store.files().get(&[10; 32]).unwrap().unwrap().claims;
        assert_eq!(claims.len(), kith_storage::MAX_FILE_CLAIMS);
        assert_eq!(place(&claims, newest_stranger), None, "the newest stranger's claim made room");
        for contact in [id(34), id(35), id(36)] {
            assert!(place(&claims, contact).is_some(), "a contact's claim stays");
        }
        // A stranger's claim still finds no room.
        store.insert_incoming_batch(&[message(37, &peer(90), Direction::Incoming, Some(10), None)]).unwrap();
        assert_eq!(store.files().get(&[10; 32]).unwrap().unwrap().claims, claims);
        let record = store.files().get(&[10; 32]).unwrap().unwrap();
        assert_eq!(successor(&store, &record).unwrap().unwrap().record.message, id(34));
        store.insert_incoming_batch(&[message(40, &me, Direction::Outgoing, Some(11), None)]).unwrap();
        store.insert_incoming_batch(&[message(41, &them, Direction::Incoming, Some(11), None)]).unwrap();
        let ours = store.files().get(&[11; 32]).unwrap().unwrap();
        assert!(ours.direction == Direction::Outgoing && ours.claims.is_empty(), "our file takes no claims");
    }
}
