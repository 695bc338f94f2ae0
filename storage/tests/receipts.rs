//! Group receipts in a real store: a member's milestone only rises, each message
//! keeps its own, they survive reopening, and they go with their conversation.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kith_storage::Reached;

#[test]
fn a_members_milestone_only_rises_and_survives_reopening() {
    let (dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let receipts = store.group_receipts();
    assert!(receipts.record(conv, mid(1), "bob", Reached::Delivered).unwrap());
    assert!(receipts.record(conv, mid(1), "bob", Reached::Read).unwrap());
    // A delivery receipt arriving after the read one changes nothing.
    assert!(!receipts.record(conv, mid(1), "bob", Reached::Delivered).unwrap());
    assert!(!receipts.record(conv, mid(1), "bob", Reached::Read).unwrap());
    assert!(receipts.record(conv, mid(1), "carol", Reached::Delivered).unwrap());
    assert!(receipts.record(conv, mid(2), "carol", Reached::Read).unwrap());
    let mut first = receipts.of(conv, mid(1)).unwrap();
    first.sort();
    assert_eq!(first, [("bob".to_owned(), Reached::Read), ("carol".to_owned(), Reached::Delivered)]);
    assert_eq!(receipts.of(conv, mid(3)).unwrap(), []);

    drop((receipts, store));
    let store = open(&dir.path().join("db")).unwrap();
    assert_eq!(store.group_receipts().of(conv, mid(2)).unwrap(), [("carol".to_owned(), Reached::Read)]);
}

#[test]
fn removing_a_conversation_forgets_its_receipts_only() {
    let (_dir, store) = temp_store();
    let (gone, kept) = (conversation(&store, 1).id, conversation(&store, 2).id);
    let receipts = store.group_receipts();
    receipts.record(gone, mid(1), "bob", Reached::Read).unwrap();
    receipts.record(kept, mid(1), "bob", Reached::Delivered).unwrap();
    store.conversations().remove(gone, 1_700_000_000_000).unwrap();
    assert_eq!(receipts.of(gone, mid(1)).unwrap(), []);
    assert_eq!(receipts.of(kept, mid(1)).unwrap(), [("bob".to_owned(), Reached::Delivered)]);
}
