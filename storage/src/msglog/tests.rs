//! The message log against its file: reopening rebuilds the same index, a
//! crash's torn tail is cut off, orphans are forgotten, compaction keeps what
//! is live, and damage is a typed error.

use std::collections::HashSet;
use std::fs;

use super::*;
use crate::messages::Direction;
use crate::outbox::Recipient;

thread_local! {
    /// Set by a test: the next [`MessageLog::sync`] on this thread fails.
    pub(crate) static FAIL_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by a test: the next write of zeros ahead on this thread fails, as on a
    /// full disk.
    pub(crate) static FAIL_WRITE_AHEAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// How many times [`MessageLog::sync`] made an `fdatasync` on this thread.
    pub(crate) static SYNCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

pub(crate) const CONV: ConversationId = ConversationId([1; 16]);
const OTHER: ConversationId = ConversationId([2; 16]);

pub(crate) fn message(n: u8, direction: Direction, state: MessageState) -> Message {
    Message {
        id: MessageId([n; 16]),
        conversation: CONV,
        author: format!("author-{}", n % 3),
        lamport: u64::from(n),
        sent_at_ms: 1_000 + u64::from(n),
        received_at_ms: 2_000 + u64::from(n),
        text: format!("message number {n}"),
        state,
        direction,
        file: None,
        link: None,
    }
}

fn entry(n: u8, payload: usize) -> OutboxEntry {
    OutboxEntry {
        id: MessageId([n; 16]),
        recipient: Recipient::Unreadable("someone".into()),
        payload: vec![n; payload],
        attempts: 1,
        next_attempt_ms: u64::from(n),
        created_at_ms: 0,
    }
}

fn open(dir: &Path) -> MessageLog {
    MessageLog::open(dir, &HashSet::from([CONV]), true).unwrap()
}

/// Where the last whole frame of the log at `path` ends (zeros written ahead follow).
fn frames_end(path: &Path) -> u64 {
    load(path).unwrap().end
}

/// Writes forty 10 KB messages in one batch: more than the zeros written ahead hold.
fn write_long(log: &MessageLog) {
    let mut batch = log.batch();
    for n in 0..40 {
        let mut long = message(100 + n, Direction::Incoming, MessageState::Delivered);
        long.text = "x".repeat(10_000);
        batch.add_message(&long).unwrap();
    }
    batch.commit().unwrap();
}

/// Everything a reader can see: messages in order with their states, the unread
/// set, and the outbox.
fn contents(log: &MessageLog) -> (Vec<Message>, usize, Vec<OutboxEntry>) {
    let state = log.lock();
    let (slots, unread) = match state.index.conversation(CONV) {
        Some(c) => (c.entries().iter().map(|e| e.slot).collect::<Vec<_>>(), c.unread.len()),
        None => (Vec::new(), 0),
    };
    let mut outbox: Vec<OutboxEntry> = state.index.outbox().values().cloned().collect();
    outbox.sort_by_key(|e| e.id);
    let reader = state.reader();
    drop(state);
    (slots.iter().map(|s| reader.read(s).unwrap()).collect(), unread, outbox)
}

fn write_some(log: &MessageLog) {
    let mut batch = log.batch();
    for n in 0..10 {
        let direction = if n % 2 == 0 { Direction::Incoming } else { Direction::Outgoing };
        let state = if direction == Direction::Incoming { MessageState::Delivered } else { MessageState::Pending };
        assert!(batch.add_message(&message(n, direction, state)).unwrap());
        if direction == Direction::Outgoing {
            batch.put_outbox(&entry(n, 50)).unwrap();
        }
    }
    assert!(!batch.add_message(&message(3, Direction::Outgoing, MessageState::Pending)).unwrap(), "held");
    batch.commit().unwrap();
    let mut batch = log.batch();
    let r1 = message(1, Direction::Outgoing, MessageState::Pending).ref_key();
    assert!(batch.set_state(&r1, MessageState::Delivered).unwrap());
    assert!(batch.drop_outbox(MessageId([1; 16])).unwrap());
    let r2 = message(2, Direction::Incoming, MessageState::Delivered).ref_key();
    assert!(batch.set_state(&r2, MessageState::Read).unwrap());
    assert!(!batch.set_state(&r2, MessageState::Delivered).unwrap(), "backwards");
    batch.commit().unwrap();
}

/// Garbage enough for a compaction at the next open: outbox entries queued and
/// dropped, 12 MiB in all.
fn write_garbage(log: &MessageLog) {
    for round in 0..12u8 {
        let mut batch = log.batch();
        batch.put_outbox(&entry(100 + round, 1 << 20)).unwrap();
        batch.commit().unwrap();
        let mut batch = log.batch();
        batch.drop_outbox(MessageId([100 + round; 16])).unwrap();
        batch.commit().unwrap();
    }
}

#[test]
fn reopening_rebuilds_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    log.sync().unwrap();
    let before = contents(&log);
    assert_eq!(before.0.len(), 10);
    assert_eq!(before.1, 4, "five incoming, one read");
    assert_eq!(before.2.len(), 4);
    assert_eq!(before.0[1].state, MessageState::Delivered);
    drop(log);
    assert_eq!(contents(&open(dir.path())), before);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "message history is the owner's only");
}

#[test]
fn a_torn_last_frame_is_dropped_whole_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    let kept = contents(&log);
    let mut batch = log.batch();
    batch.add_message(&message(50, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.add_message(&message(51, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    drop(log);
    let path = dir.path().join(FILE_NAME);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(frames_end(&path) - 7).unwrap();
    drop(file);

    let log = open(dir.path());
    assert_eq!(contents(&log), kept, "both messages of the torn frame are gone, nothing else");
    let mut batch = log.batch();
    batch.add_message(&message(60, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(contents(&log).0.len(), kept.0.len() + 1, "a frame written after the cut reads back");
}

#[test]
fn messages_of_a_conversation_that_does_not_exist_are_forgotten_for_good() {
    let dir = tempfile::tempdir().unwrap();
    write_some(&open(dir.path()));
    let log = MessageLog::open(dir.path(), &HashSet::new(), true).unwrap();
    assert!(log.lock().index.conversation(CONV).is_none());
    drop(log);
    // Made again later, the conversation starts empty.
    assert!(contents(&open(dir.path())).0.is_empty());
}

#[test]
fn compaction_keeps_every_live_record_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    write_garbage(&log);
    let before = contents(&log);
    drop(log);
    let path = dir.path().join(FILE_NAME);
    let big = fs::metadata(&path).unwrap().len();
    assert!(big > COMPACT_MIN);
    let log = open(dir.path());
    let small = fs::metadata(&path).unwrap().len();
    assert!(small < 64 << 10, "{big} bytes compacted to {small}");
    assert_eq!(contents(&log), before);
    drop(log);
    assert_eq!(contents(&open(dir.path())), before, "and it stays so");
}

#[test]
fn a_damaged_record_inside_a_whole_frame_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // A frame that passes its checksum but whose message CBOR is not a message.
    let mut frame = Frame::new();
    let msg = message(1, Direction::Incoming, MessageState::Delivered);
    push_message(&mut frame, record::MESSAGE, &MessageHeader::of(&msg), b"\xff\xff not cbor").unwrap();
    let end = log.lock().end;
    log.lock().file.write_all_at(&frame.finish().unwrap(), end).unwrap();
    drop(log);
    let log = open(dir.path());
    let slot = log.lock().index.find(&msg.ref_key()).unwrap().slot;
    assert!(matches!(log.lock().reader().read(&slot), Err(StoreError::Corrupt { .. })));

    // And a frame whose record lengths run past it refuses to open, typed.
    let mut payload = vec![record::STATE, 0xff, 0xff, 0, 0];
    payload.extend_from_slice(&[0; 8]);
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&blake3::hash(&payload).as_bytes()[..8]);
    bytes.extend_from_slice(&payload);
    let end = log.lock().end;
    log.lock().file.write_all_at(&bytes, end).unwrap();
    drop(log);
    let reopened = MessageLog::open(dir.path(), &HashSet::from([CONV]), true);
    assert!(matches!(reopened, Err(StoreError::Io(_))), "{reopened:?}");
}

#[test]
fn a_batch_abandoned_half_way_stops_all_writes_but_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    {
        let mut batch = log.batch();
        batch.add_message(&message(70, Direction::Incoming, MessageState::Delivered)).unwrap();
    }
    let mut batch = log.batch();
    assert!(matches!(batch.put_outbox(&entry(71, 1)), Err(StoreError::Io(_))));
    drop(batch);
    let written = message(0, Direction::Incoming, MessageState::Delivered);
    let slot = log.lock().index.find(&written.ref_key()).unwrap().slot;
    assert_eq!(log.lock().reader().read(&slot).unwrap(), written, "reads of what was written go on");
}

#[test]
fn a_missing_log_is_damage_once_it_was_created() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(MessageLog::open(dir.path(), &HashSet::new(), false), Err(StoreError::Corrupt { .. })));
    fs::write(dir.path().join(FILE_NAME), b"something else").unwrap();
    assert!(matches!(MessageLog::open(dir.path(), &HashSet::new(), true), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_batch_past_the_frame_limit_is_written_as_several_frames() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let big = |n: u8| Message { text: "x".repeat(1 << 20), ..message(n, Direction::Incoming, MessageState::Delivered) };
    let mut batch = log.batch();
    for n in 0..40 {
        assert!(batch.add_message(&big(n)).unwrap());
    }
    batch.commit().unwrap();
    let written = contents(&log).0;
    assert_eq!(written.len(), 40);
    drop(log);
    assert_eq!(contents(&open(dir.path())).0, written, "every frame reads back");

    // Cut inside the last frame: the frames before it are whole and stay.
    let path = dir.path().join(FILE_NAME);
    OpenOptions::new().write(true).open(&path).unwrap().set_len(frames_end(&path) - 100).unwrap();
    let kept = contents(&open(dir.path())).0;
    assert!(kept.len() >= 16 && kept.len() < 40, "{} messages kept", kept.len());
    assert_eq!(kept, written[..kept.len()], "a prefix of the batch");
}

/// What following from `from` yields: (reset seen, texts added, conversations forgotten, cursor).
fn follow_all(log: &MessageLog, from: Option<&LogCursor>) -> (bool, Vec<String>, usize, LogCursor) {
    let (mut reset, mut added, mut forgotten) = (false, Vec::new(), 0);
    let cursor = log
        .follow(from, |event| {
            match event {
                LogEvent::Reset => reset = true,
                LogEvent::Added { message, place } => {
                    let held = log.message_at(place).unwrap();
                    assert!(held.is_none_or(|m| m.id == message.id), "read back at its place");
                    added.push(message.text);
                }
                LogEvent::Forgotten(conv) => {
                    assert!(conv == CONV || conv == OTHER, "{conv:?}");
                    forgotten += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    (reset, added, forgotten, cursor)
}

#[test]
fn a_follower_sees_each_message_once_in_order_across_reopening_and_starts_again_after_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    let (reset, added, _, cursor) = follow_all(&log, None);
    assert!(!reset);
    let places: Vec<u64> = log.lock().index.conversation(CONV).unwrap().entries().iter().map(|e| e.slot.at).collect();
    assert!(places.iter().all(|&at| log.message_at(MessagePlace(at)).unwrap().is_some()));
    assert_eq!(added, (0..10).map(|n| format!("message number {n}")).collect::<Vec<_>>());
    let (_, none, _, same) = follow_all(&log, Some(&cursor));
    assert!(none.is_empty(), "nothing new: {none:?}");
    assert_eq!(same, cursor);

    let mut batch = log.batch();
    batch.add_message(&message(40, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    drop(log);
    let log = open(dir.path());
    let (reset, added, _, cursor) = follow_all(&log, Some(&cursor));
    assert!(!reset, "the same file after reopening");
    assert_eq!(added, ["message number 40"]);

    let place_of_first = {
        let state = log.lock();
        state.index.conversation(CONV).unwrap().entries()[0].slot.at
    };
    assert!(log.message_at(MessagePlace(place_of_first)).unwrap().is_some());
    assert!(log.message_at(MessagePlace(place_of_first + 1)).unwrap().is_none(), "inside a record");
    assert!(log.message_at(MessagePlace(3)).unwrap().is_none());
    assert!(log.message_at(MessagePlace(u64::MAX)).unwrap().is_none());
    let mut batch = log.batch();
    batch.forget(CONV).unwrap();
    batch.commit().unwrap();
    assert!(log.message_at(MessagePlace(place_of_first)).unwrap().is_none(), "forgotten");
    let (_, added, forgotten, cursor) = follow_all(&log, Some(&cursor));
    assert_eq!((added.len(), forgotten), (0, 1));

    // A cursor that does not fit the file (here: bytes changed under it) starts over.
    let forged = LogCursor { offset: cursor.offset, check: [7; CHECK_LEN] };
    let (reset, added, forgotten, _) = follow_all(&log, Some(&forged));
    assert!(reset);
    assert_eq!((added.len(), forgotten), (11, 1), "the whole log again");
    let beyond = LogCursor { offset: cursor.offset + 1, check: cursor.check };
    assert!(follow_all(&log, Some(&beyond)).0, "past the end");

    // A compaction rewrites the file: the old cursor no longer fits.
    write_garbage(&log);
    let (_, _, _, cursor) = follow_all(&log, Some(&cursor));
    drop(log);
    let log = open(dir.path());
    let (reset, added, forgotten, _) = follow_all(&log, Some(&cursor));
    assert!(reset, "compacted");
    assert_eq!((added.len(), forgotten), (0, 0), "the conversation was forgotten, so the compacted log holds none of it");
    assert_eq!(LogCursor::from_bytes(&cursor.to_bytes()), Some(cursor));
}

#[test]
fn compaction_keeps_changes_as_changes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let target = message(1, Direction::Incoming, MessageState::Delivered);
    let mut edit = message(2, Direction::Incoming, MessageState::Delivered);
    edit.link = Some(crate::messages::Link::Edit(target.id));
    let mut batch = log.batch();
    batch.add_message(&target).unwrap();
    batch.add_message(&edit).unwrap();
    batch.commit().unwrap();
    write_garbage(&log);
    drop(log);
    let log = open(dir.path());
    assert!(fs::metadata(dir.path().join(FILE_NAME)).unwrap().len() < 64 << 10, "compacted");
    let state = log.lock();
    let conv = state.index.conversation(CONV).unwrap();
    assert_eq!(conv.len(), 1, "the edit is not a message shown");
    let changes: Vec<_> = conv.changes_to(target.id).collect();
    assert_eq!(changes.len(), 1);
    let slot = changes[0].slot;
    drop(state);
    assert_eq!(log.lock().reader().read(&slot).unwrap().link, edit.link);
}

/// Every key/value record, in key order.
fn kv_all(log: &MessageLog) -> Vec<crate::ratchet::Record> {
    log.scan_kv(b"").unwrap()
}

fn file_holds(dir: &Path, needle: &[u8]) -> bool {
    fs::read(dir.join(FILE_NAME)).unwrap().windows(needle.len()).any(|w| w == needle)
}

#[test]
fn key_value_records_put_replace_drop_and_scan_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    let mut batch = log.batch();
    batch.put_kv(b"account", b"first account").unwrap();
    batch.put_kv(b"p/bob", b"bob's sessions").unwrap();
    batch.put_kv(b"p/alice", b"alice's sessions").unwrap();
    batch.put_kv(b"d/1", b"").unwrap();
    // Values of up to eight bytes are held in the index itself; nine are read
    // from the file.
    batch.put_kv(b"d/2", b"8 bytes!").unwrap();
    batch.put_kv(b"d/3", b"9 bytes!!").unwrap();
    batch.commit().unwrap();
    let mut batch = log.batch();
    batch.put_kv(b"account", b"second account").unwrap();
    assert!(batch.drop_kv(b"p/bob").unwrap());
    assert!(!batch.drop_kv(b"p/bob").unwrap(), "gone already: no record");
    assert!(!batch.drop_kv(b"p/nobody").unwrap());
    batch.commit().unwrap();
    let expect = |log: &MessageLog| {
        assert_eq!(log.get_kv(b"account").unwrap().as_deref(), Some(&b"second account"[..]));
        assert_eq!(log.get_kv(b"p/bob").unwrap(), None);
        assert_eq!(log.get_kv(b"d/1").unwrap(), Some(Vec::new()), "an empty value is a value");
        assert_eq!(log.get_kv(b"d/2").unwrap().as_deref(), Some(&b"8 bytes!"[..]));
        let peers = log.scan_kv(b"p/").unwrap();
        assert_eq!(peers, [(b"p/alice".to_vec(), b"alice's sessions".to_vec())]);
        let digests = log.scan_kv(b"d/").unwrap();
        assert_eq!(digests, [(b"d/1".to_vec(), Vec::new()), (b"d/2".to_vec(), b"8 bytes!".to_vec()), (b"d/3".to_vec(), b"9 bytes!!".to_vec())]);
        let mut chosen = log.kv_keys_where(b"d/", |value| value.len() >= 8).unwrap();
        chosen.sort();
        assert_eq!(chosen, [b"d/2".to_vec(), b"d/3".to_vec()], "chosen by value, held in the index or read from the file");
        let keys: Vec<Vec<u8>> = kv_all(log).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"account"[..], b"d/1", b"d/2", b"d/3", b"p/alice"], "in key order");
    };
    expect(&log);
    let messages = contents(&log);
    drop(log);
    let log = open(dir.path());
    expect(&log);
    assert_eq!(contents(&log), messages, "messages beside them are untouched");
    let (_, added, _, _) = follow_all(&log, None);
    assert_eq!(added.len(), 10, "a follower sees messages only");

    // Too long a key is refused before the batch changes anything.
    let mut batch = log.batch();
    assert!(matches!(batch.put_kv(&vec![0; record::MAX_KV_KEY + 1], b"v"), Err(StoreError::Encode { .. })));
    batch.put_kv(b"after", b"a refusal").unwrap();
    batch.commit().unwrap();
    assert_eq!(log.get_kv(b"after").unwrap().as_deref(), Some(&b"a refusal"[..]));
}

#[test]
fn a_torn_last_frame_drops_only_the_key_value_changes_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut batch = log.batch();
    batch.put_kv(b"account", b"synced account").unwrap();
    batch.put_kv(b"p/bob", b"synced bob").unwrap();
    batch.commit().unwrap();
    log.sync().unwrap();
    let kept = kv_all(&log);
    let mut batch = log.batch();
    batch.put_kv(b"account", b"torn account").unwrap();
    batch.drop_kv(b"p/bob").unwrap();
    batch.put_kv(b"p/carol", b"torn carol").unwrap();
    batch.commit().unwrap();
    drop(log);
    let path = dir.path().join(FILE_NAME);
    OpenOptions::new().write(true).open(&path).unwrap().set_len(frames_end(&path) - 3).unwrap();

    let log = open(dir.path());
    assert_eq!(kv_all(&log), kept, "the whole torn frame is gone, nothing before it");
    let mut batch = log.batch();
    batch.put_kv(b"p/dave", b"after the cut").unwrap();
    batch.commit().unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.get_kv(b"p/dave").unwrap().as_deref(), Some(&b"after the cut"[..]));
    assert_eq!(log.get_kv(b"account").unwrap().as_deref(), Some(&b"synced account"[..]));
}

#[test]
fn compaction_keeps_the_live_values_and_the_bytes_of_replaced_ones_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    let old = b"superseded value: an old chain key".to_vec();
    let dropped = b"dropped value: another old key".to_vec();
    let mut batch = log.batch();
    batch.put_kv(b"p/bob", &old).unwrap();
    batch.put_kv(b"p/carol", &dropped).unwrap();
    batch.put_kv(b"account", b"the account").unwrap();
    batch.put_kv(b"d/held", b"8 bytes!").unwrap();
    batch.commit().unwrap();
    let mut batch = log.batch();
    batch.put_kv(b"p/bob", b"the current value").unwrap();
    batch.drop_kv(b"p/carol").unwrap();
    batch.commit().unwrap();
    // Replaced values count as garbage: 12 MiB of them make a compaction due.
    for round in 0..12u8 {
        let mut batch = log.batch();
        batch.put_kv(b"big", &vec![round; 1 << 20]).unwrap();
        batch.commit().unwrap();
    }
    let mut batch = log.batch();
    batch.drop_kv(b"big").unwrap();
    batch.commit().unwrap();
    let before = (contents(&log), kv_all(&log));
    assert_eq!(before.1.len(), 3);
    assert!(before.1.contains(&(b"d/held".to_vec(), b"8 bytes!".to_vec())), "a value held in the index is copied too");
    drop(log);
    assert!(file_holds(dir.path(), &old) && file_holds(dir.path(), &dropped), "the log keeps them until a compaction");

    let log = open(dir.path());
    let size = fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
    assert!(size < 64 << 10, "compacted to {size} bytes");
    assert_eq!((contents(&log), kv_all(&log)), before);
    assert!(!file_holds(dir.path(), &old), "a replaced value's bytes are gone from the file");
    assert!(!file_holds(dir.path(), &dropped), "a dropped value's bytes are gone from the file");
    assert!(file_holds(dir.path(), b"the current value"));
    drop(log);
    let log = open(dir.path());
    assert_eq!((contents(&log), kv_all(&log)), before, "and it stays so");
}

/// Everything a reader can see, key/value records included.
type Everything = ((Vec<Message>, usize, Vec<OutboxEntry>), Vec<crate::ratchet::Record>);

fn everything(log: &MessageLog) -> Everything {
    (contents(log), kv_all(log))
}

fn compacting_file(dir: &Path) -> PathBuf {
    dir.join(format!("{FILE_NAME}.compacting"))
}

#[test]
fn a_compaction_while_in_use_keeps_what_is_live_and_what_was_written_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.compact_if_due().unwrap(), None, "a small log is left alone");
    write_some(&log);
    let mut batch = log.batch();
    batch.put_kv(b"ratchet/a", b"first").unwrap();
    batch.put_kv(b"ratchet/b", b"second").unwrap();
    // A second conversation, removed while the compaction runs.
    batch.add_message(&Message { conversation: OTHER, ..message(90, Direction::Incoming, MessageState::Delivered) }).unwrap();
    batch.commit().unwrap();
    write_garbage(&log);
    assert!(log.compaction_due());
    let (_, _, _, cursor) = follow_all(&log, None);
    let path = dir.path().join(FILE_NAME);
    let big = fs::metadata(&path).unwrap().len();
    let four = message(4, Direction::Incoming, MessageState::Delivered);
    let (reader, slot) = log.lookup(|index| index.find(&four.ref_key()).unwrap().slot);

    let compaction = log
        .compact_then(|step| {
            if step == Step::Copied {
                // Enough to be caught up with before the lock is taken.
                let mut batch = log.batch();
                for n in 0..40 {
                    let mut msg = message(120 + n, Direction::Incoming, MessageState::Delivered);
                    msg.text = "y".repeat(10_000);
                    assert!(batch.add_message(&msg).unwrap());
                }
                batch.commit().unwrap();
                return;
            }
            // Every kind of record, written after that and copied under the lock.
            let mut batch = log.batch();
            assert!(batch.add_message(&message(70, Direction::Outgoing, MessageState::Pending)).unwrap());
            batch.put_outbox(&entry(70, 30)).unwrap();
            let three = message(3, Direction::Outgoing, MessageState::Pending).ref_key();
            assert!(batch.set_state(&three, MessageState::Delivered).unwrap());
            assert!(batch.drop_outbox(MessageId([3; 16])).unwrap());
            batch.put_kv(b"ratchet/a", b"replaced").unwrap();
            batch.commit().unwrap();
            let mut batch = log.batch();
            assert!(batch.add_message(&message(71, Direction::Incoming, MessageState::Delivered)).unwrap());
            assert!(batch.drop_kv(b"ratchet/b").unwrap());
            let mut edit = message(72, Direction::Incoming, MessageState::Delivered);
            edit.link = Some(crate::messages::Link::Edit(MessageId([4; 16])));
            assert!(batch.add_message(&edit).unwrap());
            assert!(batch.forget(OTHER).unwrap().is_some());
            batch.commit().unwrap();
        })
        .unwrap();
    assert!(compaction.before_bytes > big, "the frames written meanwhile count");
    let small = fs::metadata(&path).unwrap().len();
    assert_eq!(compaction.after_bytes, small);
    assert!(small < 512 << 10, "{big} bytes compacted to {small}");
    assert_eq!(log.generation(), 1);
    assert!(!compacting_file(dir.path()).exists());

    let ((messages, _, outbox), kv) = everything(&log);
    // Shortened: the 40 long texts are 10,000 bytes each.
    let short = |text: &str| text.chars().take(20).collect::<String>();
    let texts: Vec<String> = messages.iter().map(|m| short(&m.text)).collect();
    let mut expected: Vec<String> = (0..10).map(|n| format!("message number {n}")).collect();
    expected.extend(["message number 70".to_owned(), "message number 71".to_owned()]);
    expected.extend(std::iter::repeat_n("y".repeat(20), 40));
    assert_eq!(texts, expected);
    assert_eq!(messages[3].state, MessageState::Delivered, "a state written meanwhile");
    assert_eq!(outbox.iter().map(|e| e.id.0[0]).collect::<Vec<_>>(), [5, 7, 9, 70]);
    assert_eq!(kv, [(b"ratchet/a".to_vec(), b"replaced".to_vec())]);
    {
        let state = log.lock();
        assert!(state.index.conversation(OTHER).is_none(), "forgotten meanwhile");
        let edits: Vec<_> = state.index.conversation(CONV).unwrap().changes_to(MessageId([4; 16])).collect();
        assert_eq!(edits.len(), 1, "a change written meanwhile is still a change");
    }

    // A slot taken before reads through the reader taken with it.
    assert_eq!(reader.read(&slot).unwrap(), four);
    drop(reader);
    // A follower starts again, and reads every message from the new file.
    let (reset, added, _, _) = follow_all(&log, Some(&cursor));
    assert!(reset);
    // The follower reads the log as written: the edit and the removed conversation's
    // message too (its removal follows them).
    let (mut added, mut expected): (Vec<String>, _) = (added.iter().map(|t| short(t)).collect(), expected);
    expected.extend(["message number 72".to_owned(), "message number 90".to_owned()]);
    added.sort();
    expected.sort();
    assert_eq!(added, expected);

    // Writing goes on in the new file; all of it reads back after reopening.
    let mut batch = log.batch();
    assert!(batch.add_message(&message(73, Direction::Incoming, MessageState::Delivered)).unwrap());
    batch.commit().unwrap();
    log.sync().unwrap();
    let now = everything(&log);
    assert_eq!(now.0.0.len(), 53);
    drop(log);
    assert_eq!(everything(&open(dir.path())), now);
}

#[test]
fn a_compaction_that_fails_leaves_the_old_file_in_use_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    write_garbage(&log);
    let failed = log.compact_then(|step| {
        if step == Step::Copied {
            return;
        }
        // The new file vanishes before it can take the old one's place.
        fs::remove_file(compacting_file(dir.path())).unwrap();
        let mut batch = log.batch();
        batch.add_message(&message(80, Direction::Incoming, MessageState::Delivered)).unwrap();
        batch.commit().unwrap();
    });
    assert!(matches!(failed, Err(StoreError::Io(_))), "{failed:?}");
    assert_eq!(log.generation(), 0);
    let mut batch = log.batch();
    batch.add_message(&message(81, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    log.sync().unwrap();
    let now = everything(&log);
    assert_eq!(now.0.0.len(), 12, "what was written during and after it is there");
    drop(log);
    assert_eq!(everything(&open(dir.path())), now);
}

#[test]
fn a_compaction_a_crash_cut_short_is_cleared_away_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    write_some(&log);
    log.sync().unwrap();
    let before = everything(&log);
    drop(log);
    // What a crash during the copy leaves: part of a new file beside the log.
    fs::write(compacting_file(dir.path()), b"kithlog1 and then nothing whole").unwrap();
    let log = open(dir.path());
    assert!(!compacting_file(dir.path()).exists());
    assert_eq!(everything(&log), before);
}

#[test]
fn writers_syncs_and_readers_go_on_through_repeated_compactions() {
    use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let id_of = |n: u16| {
        let mut id = [7; 16];
        id[..2].copy_from_slice(&n.to_be_bytes());
        MessageId(id)
    };
    // Until the compactions are done (bounded: at most this many batches).
    let (done, written) = (AtomicBool::new(false), AtomicU16::new(0));
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for b in 0..4_000u16 {
                if done.load(Ordering::Acquire) {
                    break;
                }
                let mut batch = log.batch();
                for i in 0..5u16 {
                    let n = b * 5 + i;
                    let mut msg = message(0, Direction::Outgoing, MessageState::Pending);
                    msg.id = id_of(n);
                    msg.lamport = u64::from(n) + 1;
                    msg.text = format!("message {n}");
                    assert!(batch.add_message(&msg).unwrap());
                    batch.put_outbox(&OutboxEntry { id: msg.id, ..entry(0, 2_000) }).unwrap();
                }
                batch.commit().unwrap();
                log.sync().unwrap();
                // Delivered: the outbox entries become garbage.
                let mut batch = log.batch();
                for i in 0..5u16 {
                    assert!(batch.drop_outbox(id_of(b * 5 + i)).unwrap());
                }
                batch.commit().unwrap();
                written.store((b + 1) * 5, Ordering::Release);
            }
        });
        let reader = scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let (messages, _, _) = contents(&log);
                assert!(messages.windows(2).all(|w| w[0].lamport < w[1].lamport), "in order, each once");
                std::thread::yield_now();
            }
        });
        let mut during = 0;
        for round in 1..=5u16 {
            // Each compaction starts once the writer is well under way.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while written.load(Ordering::Acquire) < round * 100 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            let before = written.load(Ordering::Acquire);
            log.compact().unwrap();
            if written.load(Ordering::Acquire) > before {
                during += 1;
            }
        }
        done.store(true, Ordering::Release);
        writer.join().unwrap();
        reader.join().unwrap();
        assert!(during >= 1, "the writer wrote during at least one compaction");
    });
    assert_eq!(log.generation(), 5);
    log.sync().unwrap();
    let now = everything(&log);
    assert_eq!(now.0.0.len(), usize::from(written.load(Ordering::Acquire)));
    assert!(now.0.2.is_empty(), "every outbox entry was dropped");
    drop(log);
    assert_eq!(everything(&open(dir.path())), now);
}

#[test]
fn frames_land_in_zeros_written_ahead_which_a_reopen_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(dir.path());
    write_some(&log);
    log.sync().unwrap();
    let end = frames_end(&path);
    let len = fs::metadata(&path).unwrap().len();
    assert!(len > end && zeros_from(&File::open(&path).unwrap(), end, len).unwrap(), "zeros ahead of the frames: {len} bytes, frames end at {end}");
    // A frame that fits the zeros leaves the file's length as it is.
    let mut batch = log.batch();
    batch.add_message(&message(70, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    let written = contents(&log);
    drop(log);

    // Not a torn frame: the reopen keeps every message and the zeros.
    let log = open(dir.path());
    assert_eq!(contents(&log), written);
    assert_eq!(fs::metadata(&path).unwrap().len(), len, "the zeros stay written ahead");
    // Past them, more zeros are written ahead again.
    write_long(&log);
    let before = written.0.len();
    let written = contents(&log);
    assert_eq!(written.0.len(), before + 40);
    drop(log);
    assert!(fs::metadata(&path).unwrap().len() >= frames_end(&path) + PREALLOCATE);
    assert_eq!(contents(&open(dir.path())), written);
}

/// A full disk may refuse the zeros written ahead after taking the frame: the frame
/// stands, the log stops writing ahead (frames grow the file themselves) until it is
/// next opened, and nothing is lost.
#[test]
fn zeros_the_disk_refuses_cost_no_frame_and_stop_writing_ahead_until_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(dir.path());
    FAIL_WRITE_AHEAD.with(|fail| fail.set(true));
    write_some(&log);
    assert!(!FAIL_WRITE_AHEAD.with(std::cell::Cell::get), "the first frames passed the file's end");
    log.sync().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), frames_end(&path), "no zeros after the refusal");
    write_long(&log);
    log.sync().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), frames_end(&path), "none written ahead later in the run");
    let written = contents(&log);
    drop(log);

    let log = open(dir.path());
    assert_eq!(contents(&log), written, "every frame reads back");
    let mut batch = log.batch();
    batch.add_message(&message(70, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    assert!(fs::metadata(&path).unwrap().len() > frames_end(&path), "opened again, the log writes zeros ahead again");
    let written = contents(&log);
    drop(log);
    assert_eq!(contents(&open(dir.path())), written);
}

#[test]
fn a_frame_torn_inside_the_zeros_ahead_is_cut_off_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(dir.path());
    write_some(&log);
    let kept = contents(&log);
    drop(log);
    // What a crash can leave: part of the next frame written where zeros were.
    let end = frames_end(&path);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0x40, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 9, 9, 9], end).unwrap();
    drop(file);

    let log = open(dir.path());
    assert_eq!(contents(&log), kept, "the torn frame is gone, nothing before it");
    assert_eq!(fs::metadata(&path).unwrap().len(), end, "cut at the last whole frame");
    let mut batch = log.batch();
    batch.add_message(&message(60, Direction::Incoming, MessageState::Delivered)).unwrap();
    batch.commit().unwrap();
    drop(log);
    assert_eq!(contents(&open(dir.path())).0.len(), kept.0.len() + 1, "a frame written after the cut reads back");
}

#[test]
fn a_sync_with_nothing_written_since_the_last_makes_no_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let syncs = || SYNCS.with(std::cell::Cell::get);
    let before = syncs();
    log.sync().unwrap();
    assert_eq!(syncs(), before + 1, "the first sync after opening syncs");
    log.sync().unwrap();
    assert_eq!(syncs(), before + 1, "nothing was written since");
    let mut batch = log.batch();
    assert!(batch.add_message(&message(1, Direction::Incoming, MessageState::Read)).unwrap());
    batch.commit().unwrap();
    log.sync().unwrap();
    assert_eq!(syncs(), before + 2, "a written message is synced");
    log.sync().unwrap();
    assert_eq!(syncs(), before + 2, "and once only");
    // A failed sync leaves the next one to sync what it did not.
    log.write_kv(&[(b"k".to_vec(), Some(b"v".to_vec()))]).unwrap();
    FAIL_SYNC.with(|fail| fail.set(true));
    assert!(log.sync().is_err());
    assert_eq!(syncs(), before + 3);
    log.sync().unwrap();
    assert_eq!(syncs(), before + 4, "the write the failed sync left is synced by the next");
}
