//! What the storage layer alone can do per message (issue 13): the node's store (since
//! schema 3 its message log: one frame per batch, indexes in memory) for a send, its
//! delivery state and a receipt; an append-only layout on sled (one log tree written with atomic single-tree
//! batches, state changes as small records beside it), and the disk's floor (append to
//! a plain file and `fdatasync` it). Every variant writes batches of `--batch`
//! messages and makes each batch durable before the next, as group commit does.
//!
//! With `--history N` it measures instead what a history of N messages costs when the
//! store opens: the time to open it and the memory its indexes take (in a fresh
//! process, so nothing of the writing is counted).
//!
//! With `--compact N` it writes such a history, then compacts the message log while a
//! writer goes on storing batches and making each durable: how long the compaction
//! takes, and how long the writer's batches took before, during and after it.
//!
//! Run: `cargo run --release -p kith-tests --bin storage-bench -- [--messages N]
//! [--batch N]`, `-- --history N` or `-- --compact N`. Numbers go to docs/PERFORMANCE.md; nothing here is a pass/fail test.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use kith_storage::{
    ConversationId, ConversationKind, Direction, Message, MessageId, MessageState, OutboxEntry, Recipient, Store,
};

struct Args {
    messages: usize,
    batch: usize,
    history: Option<usize>,
    compact: Option<usize>,
}

fn parse_args() -> Args {
    let mut args = Args { messages: 50_000, batch: 32, history: None, compact: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--reopen" {
            // The child process of `--history`: open the store at this path and report.
            reopen(std::path::Path::new(&it.next().expect("--reopen needs a path")));
            std::process::exit(0);
        }
        let value: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--messages" => args.messages = value.max(1),
            "--batch" => args.batch = value.max(1),
            "--history" => args.history = Some(value.max(1)),
            "--compact" => args.compact = Some(value.max(1)),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Conversations a `--history` is spread over.
const HISTORY_CONVERSATIONS: usize = 50;

/// Writes a history of `n` messages (half incoming, half outgoing and delivered, over
/// [`HISTORY_CONVERSATIONS`] conversations), then measures opening it in a fresh process.
fn history(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    write_history(&path, n);
    let size = std::fs::metadata(path.join("messages.log")).unwrap().len();
    println!("history of {n} messages over {HISTORY_CONVERSATIONS} conversations: log {:.1} MiB", size as f64 / 1048576.0);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--reopen")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Writes a history of `n` messages to a new store at `path`.
fn write_history(path: &std::path::Path, n: usize) {
    {
        let store = Store::open(path).unwrap();
        let convs: Vec<ConversationId> = (0..HISTORY_CONVERSATIONS)
            .map(|c| {
                let id = ConversationId::from_bytes([c as u8 + 1; 16]);
                let kind = ConversationKind::Direct { peer_id: format!("12D3KooWBenchPeer{c}") };
                store.conversations().get_or_create(id, kind, 0).unwrap();
                id
            })
            .collect();
        for first in (0..n).step_by(1000) {
            let batch: Vec<Message> = (first..(first + 1000).min(n))
                .map(|i| {
                    let direction = if i % 2 == 0 { Direction::Incoming } else { Direction::Outgoing };
                    Message { conversation: convs[i % HISTORY_CONVERSATIONS], ..message(i, direction) }
                })
                .collect();
            store.stage_incoming(&batch).unwrap();
        }
        store.flush().unwrap();
    }
}

/// Compacts a history of `n` messages (all of it live: the most a compaction copies)
/// while a writer stores batches of 8 messages, each made durable before the next.
fn compact_under_load(n: usize) {
    use std::sync::atomic::{AtomicU8, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    write_history(&path, n);
    let store = Store::open(&path).unwrap();
    // 0: before the compaction, 1: during it, 2: after it, 3: stop.
    let phase = AtomicU8::new(0);
    let (took, compaction, mut latencies) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut latencies: [Vec<Duration>; 3] = Default::default();
            let mut next = n;
            loop {
                let now = phase.load(Ordering::Acquire);
                if now == 3 {
                    return latencies;
                }
                let batch: Vec<Message> = (next..next + 8).map(|i| message(i, Direction::Incoming)).collect();
                next += 8;
                let started = Instant::now();
                store.stage_incoming(&batch).unwrap();
                store.flush().unwrap();
                latencies[usize::from(now)].push(started.elapsed());
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        phase.store(1, Ordering::Release);
        let started = Instant::now();
        let compaction = store.compact_log().unwrap();
        let took = started.elapsed();
        phase.store(2, Ordering::Release);
        std::thread::sleep(Duration::from_secs(2));
        phase.store(3, Ordering::Release);
        (took, compaction, writer.join().unwrap())
    });
    println!(
        "compacting a log of {n} live messages ({:.1} MiB -> {:.1} MiB) while a writer stores durable batches of 8: \
         {:.0} ms, of which the log's lock was held {:.1} ms",
        compaction.before_bytes as f64 / 1048576.0,
        compaction.after_bytes as f64 / 1048576.0,
        took.as_secs_f64() * 1e3,
        compaction.writers_waited.as_secs_f64() * 1e3
    );
    for (name, times) in ["before", "during", "after"].iter().zip(latencies.iter_mut()) {
        times.sort();
        println!(
            "  writer's batches {name}: {} batches, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            times.len(),
            kith_tests::bench::percentile(times, 0.5).as_secs_f64() * 1e3,
            kith_tests::bench::percentile(times, 0.99).as_secs_f64() * 1e3,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
}

/// Opens the store at `path`, reporting the time and the resident memory it took.
fn reopen(path: &std::path::Path) {
    let before = rss_kib();
    let started = Instant::now();
    let store = Store::open(path).unwrap();
    let took = started.elapsed();
    let after = rss_kib();
    let convs = store.conversations().list().unwrap();
    let messages: usize = convs.iter().map(|c| store.messages().count(c.id).unwrap()).sum();
    println!(
        "  open: {:.1} ms; resident memory {} -> {} KiB (+{} KiB, {:.0} bytes per message); {} messages indexed",
        took.as_secs_f64() * 1e3,
        before,
        after,
        after - before,
        (after - before) as f64 * 1024.0 / messages.max(1) as f64,
        messages
    );
}

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const CONVERSATION: ConversationId = ConversationId::from_bytes([1; 16]);
const TEXT_BYTES: usize = 100;

fn message(n: usize, direction: Direction) -> Message {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    id[8] = 0xa5;
    Message {
        id: MessageId::from_bytes(id),
        conversation: CONVERSATION,
        author: "12D3KooWBenchAuthorBenchAuthorBenchAuthorBenchAuthor".into(),
        lamport: n as u64 + 1,
        sent_at_ms: 1_800_000_000_000 + n as u64,
        received_at_ms: 1_800_000_000_000 + n as u64,
        text: "x".repeat(TEXT_BYTES),
        state: if direction == Direction::Outgoing { MessageState::Pending } else { MessageState::Delivered },
        direction,
        file: None,
        link: None,
    }
}

fn entry(m: &Message) -> OutboxEntry {
    OutboxEntry {
        id: m.id,
        recipient: Recipient::Peer(kith_storage::PeerId::from_bytes(&[&[0x12, 0x20][..], &[7; 32]].concat()).unwrap()),
        // What the node queues: the text again, inside the encoded payload.
        payload: vec![7; TEXT_BYTES + 40],
        attempts: 0,
        next_attempt_ms: 0,
        created_at_ms: m.sent_at_ms,
    }
}

fn fresh_store(dir: &tempfile::TempDir) -> Store {
    let store = Store::open(&dir.path().join("db")).unwrap();
    let kind = ConversationKind::Direct { peer_id: "12D3KooWBenchPeer".into() };
    store.conversations().get_or_create(CONVERSATION, kind, 0).unwrap();
    store
}

fn report(what: &str, messages: usize, took: Duration) {
    let per = took.as_secs_f64() * 1e6 / messages as f64;
    println!("{what:<58} {:>9.0} msg/s  {per:>6.1} µs/msg", messages as f64 / took.as_secs_f64());
}

/// The sender: stage a batch (messages and their outbox entries in one frame), flush,
/// then record the answer (state records, entries dropped), flush.
fn store_sender(args: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(&dir);
    let started = Instant::now();
    for first in (0..args.messages).step_by(args.batch) {
        let batch: Vec<(Message, OutboxEntry)> = (first..(first + args.batch).min(args.messages))
            .map(|n| {
                let m = message(n, Direction::Outgoing);
                let e = entry(&m);
                (m, e)
            })
            .collect();
        store.stage_outgoing(&batch).unwrap();
        store.flush().unwrap();
        let answers: Vec<(MessageId, MessageState)> = batch.iter().map(|(m, _)| (m.id, MessageState::Delivered)).collect();
        store.set_message_states(&answers, true).unwrap();
        store.flush().unwrap();
    }
    report("store (message log), sender (stage + answer, 2 flushes/batch)", args.messages, started.elapsed());
}

/// The receiver: one frame per batch (after the duplicate and tombstone checks), flush.
fn store_receiver(args: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(&dir);
    let started = Instant::now();
    for first in (0..args.messages).step_by(args.batch) {
        let batch: Vec<Message> =
            (first..(first + args.batch).min(args.messages)).map(|n| message(n, Direction::Incoming)).collect();
        store.insert_incoming_batch(&batch).unwrap();
    }
    report("store (message log), receiver (insert batch, 1 flush/batch)", args.messages, started.elapsed());
}

fn cbor(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    ciborium::into_writer(m, &mut out).unwrap();
    out
}

fn log_key(seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(CONVERSATION.as_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Append-only on sled, sender: the message (which is also its outbox entry while its
/// state is pending) is one log record; the answer is a one-byte state record.
fn append_only_sender(args: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let log = db.open_tree("log").unwrap();
    let states = db.open_tree("states").unwrap();
    let started = Instant::now();
    for first in (0..args.messages).step_by(args.batch) {
        let range = first..(first + args.batch).min(args.messages);
        let mut records = sled::Batch::default();
        for n in range.clone() {
            records.insert(&log_key(n as u64)[..], cbor(&message(n, Direction::Outgoing)));
        }
        log.apply_batch(records).unwrap();
        db.flush().unwrap();
        let mut answers = sled::Batch::default();
        for n in range {
            answers.insert(&log_key(n as u64)[..], &[MessageState::Delivered as u8][..]);
        }
        states.apply_batch(answers).unwrap();
        db.flush().unwrap();
    }
    report("append-only on sled, sender (log + state record, 2 flushes)", args.messages, started.elapsed());
}

/// Append-only on sled, receiver: a duplicate check against an (author, id) index,
/// then the log record and its index entry (two single-tree batches; the index can be
/// rebuilt from the log at open, so they need not be one transaction).
fn append_only_receiver(args: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let log = db.open_tree("log").unwrap();
    let index = db.open_tree("index").unwrap();
    let started = Instant::now();
    for first in (0..args.messages).step_by(args.batch) {
        let mut records = sled::Batch::default();
        let mut refs = sled::Batch::default();
        for n in first..(first + args.batch).min(args.messages) {
            let m = message(n, Direction::Incoming);
            if index.contains_key(m.id.as_bytes()).unwrap() {
                continue;
            }
            let key = log_key(n as u64);
            records.insert(&key[..], cbor(&m));
            refs.insert(&m.id.as_bytes()[..], &key[..]);
        }
        log.apply_batch(records).unwrap();
        index.apply_batch(refs).unwrap();
        db.flush().unwrap();
    }
    report("append-only on sled, receiver (dedup + log + index, 1 flush)", args.messages, started.elapsed());
}

/// The floor: the same records appended to a plain file, `fdatasync` per batch.
fn file_floor(args: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("log")).unwrap();
    let started = Instant::now();
    let mut syncs = 0u32;
    for first in (0..args.messages).step_by(args.batch) {
        let mut buf = Vec::with_capacity(args.batch * 256);
        for n in first..(first + args.batch).min(args.messages) {
            let record = cbor(&message(n, Direction::Outgoing));
            buf.extend_from_slice(&(record.len() as u32).to_be_bytes());
            buf.extend_from_slice(&record);
        }
        file.write_all(&buf).unwrap();
        file.sync_data().unwrap();
        syncs += 1;
    }
    let took = started.elapsed();
    report("plain file, append + fdatasync per batch", args.messages, took);
    println!("  one fdatasync here: {:.3} ms on average", took.as_secs_f64() * 1e3 / f64::from(syncs));
}

/// What a flush costs when nothing was written since the last one, and when one
/// message was: the floor under every durable answer.
fn flush_floor() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(&dir);
    store.flush().unwrap();
    let started = Instant::now();
    for _ in 0..1000 {
        store.flush().unwrap();
    }
    let idle = started.elapsed() / 1000;
    let started = Instant::now();
    for n in 0..1000 {
        store.stage_incoming(&[message(n, Direction::Incoming)]).unwrap();
        store.flush().unwrap();
    }
    let one = started.elapsed() / 1000;
    println!("flush with nothing written: {:.3} ms; one message stored and flushed: {:.3} ms", idle.as_secs_f64() * 1e3, one.as_secs_f64() * 1e3);
}

fn main() {
    let args = parse_args();
    if let Some(n) = args.history {
        history(n);
        return;
    }
    if let Some(n) = args.compact {
        compact_under_load(n);
        return;
    }
    flush_floor();
    println!("{} messages of {TEXT_BYTES} bytes of text, {} per durable batch", args.messages, args.batch);
    store_sender(&args);
    store_receiver(&args);
    append_only_sender(&args);
    append_only_receiver(&args);
    file_floor(&args);
}
