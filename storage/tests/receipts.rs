//! Group receipts in a real store: a member's milestone only rises, a message
//! counts only the members it was meant for, records survive reopening, and they
//! go with their conversation.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kith_storage::Reached;

#[test]
fn a_members_milestone_only_rises_and_survives_reopening() {
    let (dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let receipts = store.group_receipts();
    receipts.expect(conv, mid(1), &["bob", "carol", "dave"]).unwrap();
    assert!(receipts.record(conv, mid(1), "bob", Reached::Delivered).unwrap());
    assert!(receipts.record(conv, mid(1), "bob", Reached::Read).unwrap());
    // A delivery receipt arriving after the read one changes nothing.
    assert!(!receipts.record(conv, mid(1), "bob", Reached::Delivered).unwrap());
    assert!(!receipts.record(conv, mid(1), "bob", Reached::Read).unwrap());
    assert!(receipts.record(conv, mid(1), "carol", Reached::Delivered).unwrap());
    // Someone the message was not meant for (who joined after it) is not counted.
    assert!(!receipts.record(conv, mid(1), "erin", Reached::Read).unwrap());
    let tally = receipts.of(conv, mid(1)).unwrap().unwrap();
    assert_eq!(
        ["bob", "carol", "dave", "erin"].map(|m| (tally.counts(m), tally.reached(m))),
        [(true, Some(Reached::Read)), (true, Some(Reached::Delivered)), (true, None), (false, None)]
    );
    assert_eq!(receipts.of(conv, mid(3)).unwrap(), None);

    drop((receipts, store));
    let store = open(&dir.path().join("db")).unwrap();
    let tally = store.group_receipts().of(conv, mid(1)).unwrap().unwrap();
    assert_eq!(tally.reached("bob"), Some(Reached::Read));
}

#[test]
fn a_message_sent_before_counts_existed_counts_whoever_reports() {
    let (_dir, store) = temp_store();
    let conv = conversation(&store, 1).id;
    let receipts = store.group_receipts();
    assert!(receipts.record(conv, mid(2), "carol", Reached::Read).unwrap());
    let tally = receipts.of(conv, mid(2)).unwrap().unwrap();
    assert!(!tally.expecting());
    assert!(tally.counts("anyone"));
    assert_eq!((tally.reached("carol"), tally.reached("bob")), (Some(Reached::Read), None));
}

#[test]
fn removing_a_conversation_forgets_its_receipts_only() {
    let (_dir, store) = temp_store();
    let (gone, kept) = (conversation(&store, 1).id, conversation(&store, 2).id);
    let receipts = store.group_receipts();
    for n in 0..3000 {
        receipts.record(gone, mid(n), "bob", Reached::Read).unwrap();
    }
    receipts.record(kept, mid(1), "bob", Reached::Delivered).unwrap();
    store.conversations().remove(gone, 1_700_000_000_000).unwrap();
    assert_eq!(receipts.of(gone, mid(1)).unwrap(), None);
    assert_eq!(receipts.of(gone, mid(2999)).unwrap(), None);
    assert_eq!(receipts.of(kept, mid(1)).unwrap().unwrap().reached("bob"), Some(Reached::Delivered));
}
