//! The index against a real store in a temporary directory: what is found in
//! several scripts, ranking, filters, following the log across reopening,
//! conversation removal, the log compacted under it and an index that does not
//! open.

#![allow(clippy::unwrap_used)]

use kith_search::{SearchError, SearchIndex, SearchQuery};
use kith_storage::{ConversationId, ConversationKind, Direction, Link, Message, MessageId, MessageState, Store};

const ALICE: &str = "12D3KooWAlice";
const BOB: &str = "12D3KooWBob";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    index: SearchIndex,
    index_dir: std::path::PathBuf,
    next: u8,
}

fn conv(n: u8) -> ConversationId {
    ConversationId::from_bytes([n; 16])
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        for (n, peer) in [(1, ALICE), (2, BOB)] {
            store.conversations().get_or_create(conv(n), ConversationKind::Direct { peer_id: peer.into() }, 1).unwrap();
        }
        let index_dir = dir.path().join("db").join("search");
        let index = SearchIndex::open(&index_dir).unwrap();
        Fixture { _dir: dir, store, index, index_dir, next: 0 }
    }

    /// Stores a message from `author` in conversation `n`; returns its id.
    fn say(&mut self, n: u8, author: &str, text: &str) -> MessageId {
        self.say_linked(n, author, text, None, Direction::Incoming)
    }

    /// Stores a message with `link` (a change or a reply); returns its id.
    fn say_linked(&mut self, n: u8, author: &str, text: &str, link: Option<Link>, direction: Direction) -> MessageId {
        self.next += 1;
        let id = MessageId::from_bytes([self.next; 16]);
        let at = 1_700_000_000_000 + u64::from(self.next) * 1000;
        let msg = Message {
            id,
            conversation: conv(n),
            author: author.into(),
            lamport: u64::from(self.next),
            sent_at_ms: at,
            received_at_ms: at,
            text: text.into(),
            state: MessageState::Delivered,
            direction,
            file: None,
            link,
        };
        self.store.insert_incoming_batch(&[msg]).unwrap();
        id
    }

    fn find(&self, text: &str) -> Vec<String> {
        self.find_with(SearchQuery { text: text.into(), conversation: None, author: None, limit: 20 })
    }

    fn find_with(&self, query: SearchQuery) -> Vec<String> {
        self.index.search(&self.store, &query).unwrap().into_iter().map(|h| h.message.text).collect()
    }
}

#[test]
fn words_in_russian_english_japanese_and_emoji_are_found_folded_and_by_stem() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "Встреча в пятницу");
    f.say(1, ALICE, "Let's meet at the café");
    f.say(2, BOB, "明日の会議は金曜日です");
    f.say(2, BOB, "Party tonight 🎉");
    f.say(2, BOB, "nothing to see here");

    assert_eq!(f.find("встреча"), ["Встреча в пятницу"]);
    assert_eq!(f.find("ВСТРЕЧИ"), ["Встреча в пятницу"], "by the stem встреч");
    assert_eq!(f.find("пятница"), ["Встреча в пятницу"]);
    assert_eq!(f.find("café"), ["Let's meet at the café"]);
    assert_eq!(f.find("cafe"), ["Let's meet at the café"]);
    assert_eq!(f.find("CAF"), ["Let's meet at the café"], "a word typed half-way");
    assert_eq!(f.find("会議"), ["明日の会議は金曜日です"]);
    assert_eq!(f.find("金曜日"), ["明日の会議は金曜日です"]);
    assert_eq!(f.find("曜"), ["明日の会議は金曜日です"], "one character, inside a run");
    assert!(f.find("金日").is_empty(), "pairs must be neighbours");
    assert_eq!(f.find("🎉"), ["Party tonight 🎉"]);
    assert_eq!(f.find("party 🎉"), ["Party tonight 🎉"]);
    assert!(f.find("party café").is_empty(), "every word must match");
    assert!(f.find("zebra").is_empty());
    assert!(matches!(
        f.index.search(&f.store, &SearchQuery { text: " ?! ".into(), conversation: None, author: None, limit: 5 }),
        Err(SearchError::EmptyQuery)
    ));
}

#[test]
fn an_index_with_nothing_to_index_runs_no_writer_until_the_first_message() {
    let mut f = Fixture::new();
    assert!(f.find("anything").is_empty());
    assert!(!f.index.is_writing(), "nothing to index, yet the writer and its threads were made");
    f.say(1, ALICE, "hello there");
    assert_eq!(f.find("hello"), ["hello there"]);
    assert!(f.index.is_writing());
    // Closing waits for the writer's merges; one that never wrote closes as well.
    let Fixture { index, index_dir, .. } = f;
    index.close().unwrap();
    let reopened = SearchIndex::open(&index_dir).unwrap();
    assert!(!reopened.is_writing());
    reopened.close().unwrap();
}

#[test]
fn hits_rank_whole_words_first_then_newest_and_carry_a_marked_snippet() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "the meetings are long");
    f.say(1, ALICE, "meet me there");
    f.say(1, ALICE, "meet me later");
    let hits = f.index.search(&f.store, &SearchQuery { text: "meet".into(), conversation: None, author: None, limit: 10 }).unwrap();
    let texts: Vec<&str> = hits.iter().map(|h| h.message.text.as_str()).collect();
    assert_eq!(texts, ["meet me later", "meet me there", "the meetings are long"]);
    let s = &hits[2].snippet;
    assert_eq!(&s.text[s.marks[0].clone()], "meetings");
}

#[test]
fn filters_by_conversation_and_author_and_limits() {
    let mut f = Fixture::new();
    for _ in 0..5 {
        f.say(1, ALICE, "lunch?");
        f.say(2, BOB, "lunch!");
    }
    let q = |conversation, author: Option<&str>, limit| SearchQuery {
        text: "lunch".into(),
        conversation,
        author: author.map(str::to_owned),
        limit,
    };
    assert_eq!(f.find_with(q(None, None, 20)).len(), 10);
    assert_eq!(f.find_with(q(None, None, 3)).len(), 3);
    assert!(f.find_with(q(Some(conv(1)), None, 20)).iter().all(|t| t == "lunch?"));
    assert_eq!(f.find_with(q(Some(conv(1)), None, 20)).len(), 5);
    assert!(f.find_with(q(None, Some(BOB), 20)).iter().all(|t| t == "lunch!"));
    assert!(f.find_with(q(Some(conv(1)), Some(BOB), 20)).is_empty());
}

#[test]
fn a_message_is_found_as_soon_as_it_is_stored_and_the_index_goes_on_after_reopening() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "first words");
    assert_eq!(f.find("words"), ["first words"]);
    f.say(1, ALICE, "more words");
    assert_eq!(f.find("words").len(), 2, "no catch-up called in between");

    drop(f.index);
    f.index = SearchIndex::open(&f.index_dir).unwrap();
    assert_eq!(f.index.len(), 2, "the committed documents");
    assert_eq!(f.index.catch_up(&f.store).unwrap().added, 0, "the commit's cursor: nothing indexed twice");
    f.say(2, BOB, "words after reopening");
    assert_eq!(f.index.catch_up(&f.store).unwrap().added, 1);
    assert_eq!(f.find("words").len(), 3);

    let progress = f.index.rebuild(&f.store).unwrap();
    assert!(progress.reset);
    assert_eq!(progress.added, 3);
    assert_eq!(f.find("words").len(), 3, "a rebuild holds the same");
}

#[test]
fn a_removed_conversations_messages_are_not_found() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "secret plan");
    f.say(2, BOB, "public plan");
    assert_eq!(f.find("plan").len(), 2);
    assert!(f.store.conversations().remove(conv(1), 2).unwrap());
    assert_eq!(f.find("plan"), ["public plan"]);
    assert_eq!(f.index.len(), 1, "dropped from the index, not only hidden");
}

#[test]
fn after_the_log_is_compacted_under_it_the_same_messages_are_found() {
    let mut f = Fixture::new();
    for i in 0..20 {
        f.say(1, ALICE, &format!("gone soon {i}"));
    }
    f.say(2, BOB, "kept plan one");
    f.say(2, BOB, "kept plan two");
    assert_eq!(f.find("plan").len(), 2);
    // Every message moves to another place in the rewritten file.
    assert!(f.store.conversations().remove(conv(1), 2).unwrap());
    let generation = f.store.log_generation();
    f.store.compact_log().unwrap();
    assert_eq!(f.store.log_generation(), generation + 1);
    let mut found = f.find("plan");
    found.sort();
    assert_eq!(found, ["kept plan one", "kept plan two"]);
    assert!(f.find("gone").is_empty());
    assert_eq!(f.index.len(), 2, "built again from the rewritten log, nothing twice");
}

#[test]
fn an_index_that_does_not_open_is_built_again_from_the_log() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "remember this");
    assert_eq!(f.find("remember").len(), 1);
    drop(f.index);
    std::fs::write(f.index_dir.join("meta.json"), b"{ not json").unwrap();
    f.index = SearchIndex::open(&f.index_dir).unwrap();
    assert!(f.index.is_empty());
    assert_eq!(f.find("remember"), ["remember this"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&f.index_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the index holds the words of every message");
}

#[test]
fn an_edited_message_is_found_by_what_it_says_now_and_a_deleted_or_hidden_one_not_at_all() {
    let mut f = Fixture::new();
    let id = f.say(1, ALICE, "see you at noon");
    f.say_linked(1, ALICE, "see you at dusk", Some(Link::Edit(id)), Direction::Incoming);
    f.say_linked(1, BOB, "forged by bob", Some(Link::Edit(id)), Direction::Incoming);
    assert_eq!(f.find("dusk"), ["see you at noon"], "the message (its stored text is the original)");
    let hits = f.index.search(&f.store, &SearchQuery { text: "dusk".into(), conversation: None, author: None, limit: 5 }).unwrap();
    assert_eq!(hits[0].snippet.text, "see you at dusk", "shown as it reads now");
    assert!(f.find("noon").is_empty(), "an earlier version does not match");
    assert!(f.find("forged").is_empty(), "another author's edit is no version");
    assert_eq!(f.find("see").len(), 1, "found once, not once per version");

    let gone = f.say(2, BOB, "delete this later");
    f.say_linked(2, BOB, "", Some(Link::Delete(gone)), Direction::Incoming);
    assert!(f.find("delete").is_empty(), "deleted for everyone");
    let hidden = f.say(2, BOB, "hide this one");
    f.say_linked(2, "me", "", Some(Link::Hide(hidden)), Direction::Outgoing);
    assert!(f.find("hide").is_empty(), "hidden here");
}

#[test]
fn old_versions_of_edited_messages_do_not_crowd_out_the_hits() {
    let mut f = Fixture::new();
    let kept: Vec<String> = (0..3).map(|n| format!("apple pie number {n}")).collect();
    for text in &kept {
        f.say(1, ALICE, text);
    }
    // Forty newer messages that said "apple" and say something else now: their
    // documents rank first (newest among equals) but are no hits.
    for n in 0..40 {
        let id = f.say(2, BOB, &format!("apple crumble {n}"));
        f.say_linked(2, BOB, &format!("pear crumble {n}"), Some(Link::Edit(id)), Direction::Incoming);
    }
    let found = f.find_with(SearchQuery { text: "apple".into(), conversation: None, author: None, limit: 3 });
    let mut found = found;
    found.sort();
    assert_eq!(found, kept, "the three messages that still say it");
}

#[test]
fn an_index_whose_directory_vanished_fails_each_catch_up_with_an_error_and_never_panics() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "before the directory went");
    assert_eq!(f.find("directory"), ["before the directory went"]);
    // The home is deleted under a running node (tantivy's writer holds its lock
    // file in there): every catch-up after it must report, not panic.
    std::fs::remove_dir_all(&f.index_dir).unwrap();
    for n in 0..6 {
        f.say(1, ALICE, &format!("after the directory went {n}"));
        let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.index.catch_up(&f.store)));
        let result = caught_up.unwrap_or_else(|_| panic!("catch-up {n} panicked"));
        assert!(result.is_err(), "catch-up {n} into a vanished directory cannot succeed");
    }
}

#[test]
fn a_rebuild_that_fails_leaves_the_index_as_it_was_and_the_next_catch_up_adds_nothing_twice() {
    let mut f = Fixture::new();
    f.say(1, ALICE, "one");
    f.say(1, ALICE, "two");
    f.index.catch_up(&f.store).unwrap();
    assert_eq!(f.index.len(), 2);
    // The index's directory is away while a rebuild tries to commit.
    let aside = f.index_dir.with_extension("aside");
    std::fs::rename(&f.index_dir, &aside).unwrap();
    f.say(1, ALICE, "three");
    assert!(f.index.rebuild(&f.store).is_err(), "nowhere to commit to");
    std::fs::rename(&aside, &f.index_dir).unwrap();
    // The rebuild's deletion was undone with the rest: the index is as of its last
    // commit, and catching up from that commit's cursor adds only the new message.
    f.index.catch_up(&f.store).unwrap();
    assert_eq!(f.index.len(), 3, "every message once");
    assert_eq!(f.find("two"), ["two"]);
    assert_eq!(f.find("three"), ["three"]);
}
