//! Search at the scale of a long-used node: a store of 1,000,000 messages in
//! English, Russian and Japanese (words drawn from large synthetic
//! vocabularies with Zipf frequencies, as real text has, plus numbers, links
//! and emoji), then the index built from scratch, its size, queries, and the
//! cost of finding a message just stored.
//!
//! `cargo bench -p kith-search --bench search -- [--messages N] [--queries N]`
//! Results are recorded in docs/PERFORMANCE.md ("Search").

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_search::{SearchIndex, SearchQuery};
use kith_storage::{ConversationId, ConversationKind, Direction, Message, MessageId, MessageState, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CONVERSATIONS: u64 = 200;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
}

/// A vocabulary of `n` words built from `syllables`, 1 to 4 of them a word.
fn vocabulary(rng: &mut StdRng, syllables: &[&str], n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::new();
    while words.len() < n {
        let len = rng.gen_range(1..=4);
        let word: String = (0..len).map(|_| syllables[rng.gen_range(0..syllables.len())]).collect();
        if seen.insert(word.clone()) {
            words.push(word);
        }
    }
    words
}

/// Draws indexes 0..n with Zipf frequencies (s = 1).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        Zipf((1..=n).map(|k| {
            total += 1.0 / k as f64;
            total
        }).collect())
    }

    fn draw(&self, rng: &mut StdRng) -> usize {
        let x = rng.gen_range(0.0..*self.0.last().unwrap());
        self.0.partition_point(|&c| c < x)
    }
}

struct Corpus {
    english: Vec<String>,
    russian: Vec<String>,
    japanese: Vec<String>,
    zipf: Zipf,
}

impl Corpus {
    fn new(rng: &mut StdRng) -> Corpus {
        const EN: &[&str] = &["ba", "ri", "to", "men", "ka", "lo", "ver", "sta", "ne", "pro", "ing", "tion", "ed", "er", "ly", "an", "co", "de", "mi", "su", "tra", "gen", "ple", "qu", "ow", "th", "sh", "ch", "ex", "ab"];
        const RU: &[&str] = &["ва", "ро", "ст", "ми", "ка", "ло", "пре", "на", "те", "ско", "ние", "ать", "ый", "ой", "ая", "ов", "до", "за", "по", "ри", "жи", "вер", "тр", "кр", "ут", "ём", "щи", "чу", "ль", "ю"];
        let kana_kanji: Vec<String> = (0..2000u32)
            .map(|i| char::from_u32(if i < 80 { 0x3042 + i } else { 0x4E00 + (i * 7) % 0x5000 }).unwrap().to_string())
            .collect();
        let kk: Vec<&str> = kana_kanji.iter().map(String::as_str).collect();
        Corpus {
            english: vocabulary(rng, EN, 40_000),
            russian: vocabulary(rng, RU, 40_000),
            japanese: vocabulary(rng, &kk, 40_000),
            zipf: Zipf::new(40_000),
        }
    }

    fn message(&self, rng: &mut StdRng, n: usize) -> String {
        let words = rng.gen_range(2..20);
        let language = rng.gen_range(0..10);
        let (vocab, space) = match language {
            0..=4 => (&self.english, " "),
            5..=8 => (&self.russian, " "),
            _ => (&self.japanese, ""),
        };
        let mut text = String::new();
        for w in 0..words {
            if w > 0 {
                text.push_str(space);
            }
            text.push_str(&vocab[self.zipf.draw(rng)]);
        }
        match rng.gen_range(0..100) {
            0..=4 => text.push_str(" 🎉"),
            5..=7 => text.push_str(&format!(" at {}:{:02}", rng.gen_range(0..24), rng.gen_range(0..60))),
            8 => text.push_str(&format!(" https://example.org/p/{n:x}")),
            _ => {}
        }
        text
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Bytes of the files in `dir`, by file extension (tantivy's: `idx` postings,
/// `term` dictionary, `fast` fast fields, `fieldnorm`, `store`, ...).
fn dir_sizes(dir: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let mut sizes = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ext = name.rsplit_once('.').map_or("other", |(_, e)| e).to_owned();
        *sizes.entry(ext).or_default() += entry.metadata().unwrap().len();
    }
    sizes
}

fn main() {
    let messages = arg("--messages", 1_000_000);
    let queries = arg("--queries", 2_000);
    let mut rng = StdRng::seed_from_u64(7);
    let corpus = Corpus::new(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    for c in 0..CONVERSATIONS {
        let kind = ConversationKind::Direct { peer_id: format!("12D3KooWpeer{c}") };
        store.conversations().get_or_create(conversation(c), kind, 1).unwrap();
    }
    let started = Instant::now();
    let mut text_bytes = 0;
    let mut batch = Vec::new();
    for n in 0..messages {
        let text = corpus.message(&mut rng, n);
        text_bytes += text.len();
        batch.push(message(n, text));
        if batch.len() == 10_000 || n + 1 == messages {
            store.insert_incoming_batch(&batch).unwrap();
            batch.clear();
        }
    }
    println!("stored {messages} messages ({:.1} MB of text) in {:.1?}", text_bytes as f64 / 1e6, started.elapsed());

    let index_dir = dir.path().join("db").join("search");
    let index = SearchIndex::open(&index_dir).unwrap();
    let started = Instant::now();
    let progress = index.rebuild(&store).unwrap();
    let built = started.elapsed();
    assert_eq!(progress.added, messages);
    println!(
        "indexed from scratch in {built:.2?}: {:.0} messages/s (reading the log included)",
        messages as f64 / built.as_secs_f64()
    );
    // Let tantivy's merges finish, as a node that runs a while would.
    index.close().unwrap();
    let index = SearchIndex::open(&index_dir).unwrap();
    let sizes = dir_sizes(&index_dir);
    let size: u64 = sizes.values().sum();
    println!(
        "index {:.1} MB = {:.0} % of the text ({} segments); by kind: {}",
        size as f64 / 1e6,
        size as f64 * 100.0 / text_bytes as f64,
        index.tantivy().searchable_segment_ids().unwrap().len(),
        sizes.iter().map(|(k, v)| format!("{k} {:.1} MB", *v as f64 / 1e6)).collect::<Vec<_>>().join(", ")
    );

    // Queries: a common word, a rare one, two words, a half-typed word, a
    // Russian form, a CJK pair, an emoji, with and without a conversation.
    let mut times = Vec::new();
    let mut found = 0;
    for q in 0..queries {
        let text = match q % 7 {
            0 => corpus.english[corpus.zipf.draw(&mut rng)].clone(),
            1 => corpus.russian[corpus.zipf.draw(&mut rng)].clone(),
            2 => format!("{} {}", corpus.english[rng.gen_range(0..50)], corpus.english[corpus.zipf.draw(&mut rng)]),
            3 => corpus.english[corpus.zipf.draw(&mut rng)].chars().take(3).collect(),
            4 => corpus.japanese[corpus.zipf.draw(&mut rng)].chars().take(2).collect(),
            5 => "🎉".into(),
            _ => corpus.russian[rng.gen_range(0..2000)].clone(),
        };
        let query = SearchQuery {
            text,
            conversation: (q % 2 == 0).then(|| conversation(rng.gen_range(0..CONVERSATIONS))),
            author: None,
            limit: 20,
        };
        let started = Instant::now();
        found += index.search(&store, &query).unwrap().len();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{queries} queries (top 20): p50 {:.2?}, p99 {:.2?}, max {:.2?}; {:.1} hits each",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap(),
        found as f64 / queries as f64
    );

    // A message stored, then searched: the catch-up and commit it costs.
    let mut fresh = Vec::new();
    for n in 0..50 {
        let text = format!("freshword{n} {}", corpus.message(&mut rng, n));
        store.insert_incoming_batch(&[message(messages + n, text)]).unwrap();
        let query = SearchQuery { text: format!("freshword{n}"), conversation: None, author: None, limit: 20 };
        let started = Instant::now();
        assert_eq!(index.search(&store, &query).unwrap().len(), 1);
        fresh.push(started.elapsed());
    }
    fresh.sort();
    println!("a message just stored, found: p50 {:.2?}, p99 {:.2?} (one commit each)", percentile(&fresh, 0.5), percentile(&fresh, 0.99));
}

fn conversation(c: u64) -> ConversationId {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&c.to_be_bytes());
    ConversationId::from_bytes(id)
}

fn message(n: usize, text: String) -> Message {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    let at = 1_700_000_000_000 + n as u64;
    Message {
        id: MessageId::from_bytes(id),
        conversation: conversation(n as u64 % CONVERSATIONS),
        author: format!("12D3KooWpeer{}", n as u64 % CONVERSATIONS),
        lamport: n as u64,
        sent_at_ms: at,
        received_at_ms: at,
        text,
        state: MessageState::Delivered,
        direction: Direction::Incoming,
        file: None,
        link: None,
    }
}
