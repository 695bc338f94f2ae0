//! The index on disk: one tantivy document per message, kept up to date by
//! following the store's message log.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use kith_storage::{ConversationId, Link, LogCursor, LogEvent, Message, MessageId, MessagePlace, Store};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{BytesOptions, FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentReader, TantivyDocument, Term};

use crate::SearchError;
use crate::query::{Need, needs};
use crate::snippet::{Snippet, snippet};
use crate::tokens::{KithTokenizer, TOKENIZER};

/// What the index's commits are marked with, before the log cursor: a change
/// to the schema or the tokenizer changes it, and an index marked otherwise is
/// rebuilt.
const FORMAT: &str = "kith-search 2";

/// Indexing threads (tantivy's), and the memory they share before a segment
/// is written out.
const WRITER_THREADS: usize = 2;
/// Most documents one search looks through for its hits (when old versions of
/// edited messages crowd the best-ranked ones).
const MAX_FETCH: usize = 64 * MAX_LIMIT;
const WRITER_BUDGET: usize = 64 << 20;

/// Most index terms a word's prefix expands to. Only prefixes of one or two
/// letters reach it; the terms kept are the first in alphabetical order.
pub const MAX_PREFIX_TERMS: usize = 1024;

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 1000;

/// The schema's fields. Nothing is stored: a hit is the message's place in the
/// log (a fast field, which compresses to a byte or two a message because
/// places grow with every message), and the store reads the message there.
#[derive(Debug, Clone, Copy)]
struct Fields {
    /// The text and a file's name, tokenized (term frequencies, no positions).
    text: Field,
    /// The conversation id, raw: filters and conversation removal.
    conversation: Field,
    /// The author's peer id, raw: filters.
    author: Field,
    /// The message's [`MessagePlace`]: finds it, and orders equal scores newest first.
    place: Field,
}

/// The fast field of [`Fields::place`].
const PLACE: &str = "place";

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let indexing = TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqs);
    let raw = || TextFieldIndexing::default().set_tokenizer("raw").set_index_option(IndexRecordOption::Basic).set_fieldnorms(false);
    let fields = Fields {
        text: builder.add_text_field("text", TextOptions::default().set_indexing_options(indexing)),
        conversation: builder.add_bytes_field("conversation", BytesOptions::default().set_indexed()),
        author: builder.add_text_field("author", TextOptions::default().set_indexing_options(raw())),
        place: builder.add_u64_field(PLACE, FAST),
    };
    (builder.build(), fields)
}

/// A query: words, and optionally where and from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// What to look for (see the crate docs for how words match).
    pub text: String,
    /// Only this conversation.
    pub conversation: Option<ConversationId>,
    /// Only messages by this author (a peer id).
    pub author: Option<String>,
    /// Most hits to return (at most [`MAX_LIMIT`]).
    pub limit: usize,
}

/// One message found.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The message as the store holds it now.
    pub message: Message,
    /// Its relevance (higher is better; only comparable within one search).
    pub score: f32,
    /// Its text around the match, with the matching words marked.
    pub snippet: Snippet,
}

/// What one catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Messages indexed.
    pub added: usize,
    /// Conversations whose messages were dropped from the index.
    pub forgotten: usize,
    /// Whether the index was cleared first (its log was rewritten, or a rebuild).
    pub reset: bool,
}

/// The writer and how far it has read the log.
struct Writing {
    /// Made when there is first something to write: a node that has had nothing to
    /// index since it started runs none of the writer's threads (seven of them)
    /// and holds none of its memory.
    writer: Option<IndexWriter>,
    /// Where the next catch-up reads from (`None`: the start).
    cursor: Option<LogCursor>,
    /// A commit the reader has not reloaded yet.
    stale_reader: bool,
}

/// The writer in `slot`, made first if there is none yet (see [`Writing`]).
fn writer_of<'a>(index: &Index, slot: &'a mut Option<IndexWriter>) -> tantivy::Result<&'a mut IndexWriter> {
    match slot {
        Some(writer) => Ok(writer),
        None => Ok(slot.insert(index.writer_with_num_threads(WRITER_THREADS, WRITER_BUDGET)?)),
    }
}

/// Drops what the writer in `slot` has not committed (nothing if there is none),
/// so that the next catch-up adds it again from the committed cursor. A writer
/// that cannot roll back (its directory gone, say) is dropped, and the next
/// catch-up opens a new one: tantivy's rollback hands the writer's lock to the
/// writer it builds, so a second rollback after one that failed would panic.
fn discard_uncommitted(slot: &mut Option<IndexWriter>) {
    if let Some(writer) = slot
        && let Err(e) = writer.rollback()
    {
        tracing::warn!(error = %e, "the search index's writer could not roll back; a new one is opened next time");
        *slot = None;
    }
}

/// A node's full-text index of its messages (see the crate docs).
///
/// `Send + Sync`: searches run in parallel; catching up takes a lock.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writing: Mutex<Writing>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("documents", &self.len()).finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in directory `dir` (made owner-only), creating it if
    /// missing. An index of another format, or one that does not open, is
    /// deleted and started again empty: it holds nothing the message log does
    /// not, and the next catch-up fills it.
    pub fn open(dir: &Path) -> Result<SearchIndex, SearchError> {
        make_private_dir(dir)?;
        let (schema, fields) = schema();
        let index = match open_existing(dir, &schema) {
            Ok(Some(index)) => index,
            Ok(None) => Index::create_in_dir(dir, schema.clone())?,
            Err(why) => {
                tracing::warn!(%why, "the search index does not fit this version; building it again");
                std::fs::remove_dir_all(dir)?;
                make_private_dir(dir)?;
                Index::create_in_dir(dir, schema.clone())?
            }
        };
        index.tokenizers().register(TOKENIZER, TextAnalyzer::from(KithTokenizer));
        let cursor = index.load_metas()?.payload.as_deref().and_then(cursor_of);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(SearchIndex { index, reader, fields, writing: Mutex::new(Writing { writer: None, cursor, stale_reader: false }) })
    }

    /// Number of messages indexed (as of the last catch-up).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether no message is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indexes what the store's message log gained since the last catch-up
    /// (everything, the first time) and commits it, with the log cursor, as
    /// one tantivy commit: after a crash the index is as of a commit and the
    /// next catch-up goes on from that commit's cursor, so no message is
    /// indexed twice or skipped.
    pub fn catch_up(&self, store: &Store) -> Result<Progress, SearchError> {
        let mut writing = self.lock();
        self.follow(&mut writing, store, false)
    }

    /// Drops everything and indexes the whole message log again, then merges
    /// what it wrote into one segment (the smallest and fastest form; later
    /// catch-ups add small segments that tantivy merges as they pile up).
    pub fn rebuild(&self, store: &Store) -> Result<Progress, SearchError> {
        let mut writing = self.lock();
        let progress = self.follow(&mut writing, store, true)?;
        let segments = self.index.searchable_segment_ids()?;
        if segments.len() > 1 {
            // A background merge may hold some of them already; the index is whole
            // either way, only less compact until tantivy merges it.
            let writer = writer_of(&self.index, &mut writing.writer)?;
            match writer.merge(&segments).wait() {
                Ok(_) => {
                    self.reader.reload()?;
                    // The merged segments' files go now, not at some later commit.
                    writer.garbage_collect_files().wait()?;
                }
                Err(e) => tracing::debug!(error = %e, "the rebuilt index stays in several segments"),
            }
        }
        Ok(progress)
    }

    /// Finds messages: catches up first, so a message stored before the call is
    /// found. Hits come best first (the latest stored first among equal scores); a
    /// message the index holds but the store no longer does is left out.
    pub fn search(&self, store: &Store, query: &SearchQuery) -> Result<Vec<Hit>, SearchError> {
        let needs = needs(&query.text);
        if needs.is_empty() {
            return Err(SearchError::EmptyQuery);
        }
        // A compaction of the log between catching up and reading the hits back
        // would move messages away from the places the index holds: then again,
        // from the rebuilt index (a compaction is rare; three in a row, unheard of).
        let mut tries = 0;
        loop {
            let generation = store.log_generation();
            self.catch_up(store)?;
            let hits = self.search_caught_up(store, query, &needs)?;
            tries += 1;
            if store.log_generation() == generation {
                return Ok(hits);
            }
            if tries == 3 {
                tracing::warn!("the message log was compacted during each of three searches; some hits may be missing");
                return Ok(hits);
            }
        }
    }

    /// [`search`](Self::search) once the index has caught up with the log.
    fn search_caught_up(&self, store: &Store, query: &SearchQuery, needs: &[Need]) -> Result<Vec<Hit>, SearchError> {
        let searcher = self.reader.searcher();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for need in needs {
            clauses.push((Occur::Must, self.need_query(&searcher, need)?));
        }
        if let Some(conversation) = query.conversation {
            let term = Term::from_field_bytes(self.fields.conversation, &conversation.0);
            clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        if let Some(author) = &query.author {
            let term = Term::from_field_text(self.fields.author, author);
            clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        let limit = query.limit.clamp(1, MAX_LIMIT);
        let query = BooleanQuery::new(clauses);
        // A few more documents than hits asked for, for those whose message is gone or
        // says something else now; when those still crowd out the hits, look deeper.
        // Each deeper look reads only the documents after those already judged.
        let (mut hits, mut shown) = (Vec::new(), HashSet::new());
        let (mut seen, mut fetch) = (0, limit + limit / 4 + 4);
        loop {
            let collector = TopDocs::with_limit(fetch - seen).and_offset(seen).tweak_score(move |segment: &SegmentReader| {
                let place = segment.fast_fields().u64(PLACE).ok().map(|c| c.first_or_default_col(0));
                move |doc: DocId, score: Score| (score, place.as_ref().map_or(0, |c| c.get_val(doc)))
            });
            let top = searcher.search(&query, &collector)?;
            let exhausted = top.len() < fetch - seen;
            add_shown_hits(store, top, needs, limit, &mut hits, &mut shown)?;
            if hits.len() == limit || exhausted || fetch >= MAX_FETCH {
                return Ok(hits);
            }
            seen = fetch;
            fetch = (fetch * 4).min(MAX_FETCH);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writing> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the log into the writer and commits; `reset` starts from scratch. A
    /// failure leaves the index and the cursor as of the last commit (a reset's
    /// deletion undone with the rest), so the next catch-up adds the same messages
    /// again, not twice.
    fn follow(&self, writing: &mut Writing, store: &Store, reset: bool) -> Result<Progress, SearchError> {
        let committed = writing.cursor;
        match self.follow_and_commit(writing, store, reset) {
            Ok(progress) => {
                if writing.stale_reader {
                    self.reader.reload()?;
                    writing.stale_reader = false;
                }
                Ok(progress)
            }
            Err(e) => {
                discard_uncommitted(&mut writing.writer);
                writing.cursor = committed;
                Err(e)
            }
        }
    }

    /// [`follow`](Self::follow) up to its commit, leaving what a failure undoes to it.
    fn follow_and_commit(&self, writing: &mut Writing, store: &Store, reset: bool) -> Result<Progress, SearchError> {
        let mut progress = Progress::default();
        if reset {
            writer_of(&self.index, &mut writing.writer)?.delete_all_documents()?;
            writing.cursor = None;
            progress.reset = true;
        }
        let mut failed: Option<tantivy::TantivyError> = None;
        let slot = &mut writing.writer;
        let cursor = store.follow_log(writing.cursor.as_ref(), |event| {
            if failed.is_some() {
                return Ok(());
            }
            let done = match event {
                LogEvent::Reset => {
                    progress.reset = true;
                    writer_of(&self.index, slot).and_then(|w| w.delete_all_documents()).map(drop)
                }
                // Deletes, reactions and hides carry no text to find.
                LogEvent::Added { message, .. } if !carries_text(message.link.as_ref()) => {
                    Ok(())
                }
                LogEvent::Added { message, place } => {
                    progress.added += 1;
                    writer_of(&self.index, slot).and_then(|w| w.add_document(self.document(&message, place))).map(drop)
                }
                LogEvent::Forgotten(conversation) => {
                    progress.forgotten += 1;
                    writer_of(&self.index, slot).map(|w| {
                        w.delete_term(Term::from_field_bytes(self.fields.conversation, &conversation.0));
                    })
                }
            };
            failed = done.err();
            Ok(())
        });
        let cursor = cursor?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        if progress != Progress::default() {
            self.commit(&mut writing.writer, &cursor)?;
            // Committed: searches see it once the reader reloads, which `follow`
            // tries again after a failure until it succeeds.
            writing.stale_reader = true;
        }
        writing.cursor = Some(cursor);
        Ok(progress)
    }

    /// Commits what the writer in `slot` holds, with `cursor` as the commit's payload.
    fn commit(&self, slot: &mut Option<IndexWriter>, cursor: &LogCursor) -> Result<(), SearchError> {
        let mut commit = writer_of(&self.index, slot)?.prepare_commit()?;
        commit.set_payload(&payload_of(cursor));
        commit.commit()?;
        Ok(())
    }

    /// The document of a message.
    fn document(&self, message: &Message, place: MessagePlace) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.fields.text, &message.text);
        if let Some(file) = &message.file {
            doc.add_text(self.fields.text, &file.name);
        }
        doc.add_bytes(self.fields.conversation, &message.conversation.0);
        doc.add_text(self.fields.author, &message.author);
        doc.add_u64(self.fields.place, place.0);
        doc
    }

    /// The query for one need: its exact term, or for a word the whole word
    /// (ranked higher) or any term its prefix begins.
    fn need_query(&self, searcher: &Searcher, need: &Need) -> Result<Box<dyn Query>, SearchError> {
        let text = self.fields.text;
        let exact = |t: &str| Box::new(TermQuery::new(Term::from_field_text(text, t), IndexRecordOption::WithFreqs));
        Ok(match need {
            Need::Term(t) => exact(t),
            Need::Word { whole, prefix } => {
                let mut terms = Vec::new();
                for segment in searcher.segment_readers() {
                    let inverted = segment.inverted_index(text)?;
                    let mut stream = inverted.terms().range().ge(prefix.as_bytes()).into_stream()?;
                    while terms.len() < MAX_PREFIX_TERMS && stream.advance() {
                        let key = stream.key();
                        if !key.starts_with(prefix.as_bytes()) {
                            break;
                        }
                        if let Ok(key) = std::str::from_utf8(key) {
                            terms.push(Term::from_field_text(text, key));
                        }
                    }
                }
                terms.sort();
                terms.dedup();
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, Box::new(BoostQuery::new(exact(whole), 2.0)) as Box<dyn Query>),
                    (Occur::Should, Box::new(TermSetQuery::new(terms))),
                ]))
            }
        })
    }

    /// Closes the index, waiting for tantivy's background merges of segments to
    /// finish (dropping it abandons them; they start again later).
    pub fn close(self) -> Result<(), SearchError> {
        let writing = self.writing.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = writing.writer {
            writer.wait_merging_threads()?;
        }
        Ok(())
    }

    /// Whether the writer (and its threads) has been made: only once there was
    /// something to index. For tests.
    #[doc(hidden)]
    pub fn is_writing(&self) -> bool {
        self.lock().writer.is_some()
    }

    /// The directory's tantivy index, for tests and benchmarks that measure it.
    #[doc(hidden)]
    pub fn tantivy(&self) -> &Index {
        &self.index
    }
}

/// The message shown for a document at `place`: the message itself, or for an
/// edit the message it edits (the same author's, in the same conversation).
/// `None` when it is gone, or is a change without text of its own.
fn shown_message(store: &Store, place: MessagePlace) -> Result<Option<Message>, SearchError> {
    let Some(found) = store.messages().at(place)? else { return Ok(None) };
    Ok(match &found.link {
        Some(Link::Edit(target)) => {
            store.messages().get_from(&found.author, *target)?.filter(|t| t.conversation == found.conversation)
        }
        link if !carries_text(link.as_ref()) => None,
        _ => Some(found),
    })
}

/// Whether a message with `link` has text of its own to find: a message, a reply,
/// an edit (its new version); not a delete, a reaction or a hide.
fn carries_text(link: Option<&Link>) -> bool {
    link.is_none_or(|l| l.changed().is_none() || matches!(l, Link::Edit(_)))
}

/// Adds to `hits`, up to `limit`, those of the `top` documents (best first) whose
/// messages are shown and say the words now: each message once (`shown`), however
/// many of its versions matched.
fn add_shown_hits(
    store: &Store,
    top: Vec<((Score, u64), tantivy::DocAddress)>,
    needs: &[Need],
    limit: usize,
    hits: &mut Vec<Hit>,
    shown: &mut HashSet<(String, MessageId)>,
) -> Result<(), SearchError> {
    for ((score, place), _) in top {
        let Some(message) = shown_message(store, MessagePlace(place))? else { continue };
        if !shown.insert((message.author.clone(), message.id)) {
            continue; // found again through one of its edits
        }
        let annotations = store.messages().annotations(&message)?;
        if annotations.deleted || annotations.hidden {
            continue;
        }
        // The words must be in what the message says now, not only in an
        // earlier version; a file message is also found by its file's name.
        let texts = [Some(annotations.text(&message)), message.file.as_ref().map(|f| f.name.as_str())];
        let Some(snippet) = texts.into_iter().flatten().map(|t| snippet(t, needs)).find(|s| !s.marks.is_empty()) else {
            continue;
        };
        hits.push(Hit { snippet, message, score });
        if hits.len() == limit {
            break;
        }
    }
    Ok(())
}

/// The existing index in `dir` if it has our format; `Ok(None)` if there is
/// none; `Err` (why) if there is one we cannot use.
fn open_existing(dir: &Path, schema: &Schema) -> Result<Option<Index>, String> {
    let directory = MmapDirectory::open(dir).map_err(|e| e.to_string())?;
    if !Index::exists(&directory).map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let index = Index::open(directory).map_err(|e| e.to_string())?;
    if index.schema() != *schema {
        return Err("another schema".into());
    }
    let metas = index.load_metas().map_err(|e| e.to_string())?;
    match metas.payload.as_deref() {
        None => Ok(Some(index)),
        Some(p) if cursor_of(p).is_some() => Ok(Some(index)),
        Some(_) => Err("another format".into()),
    }
}

fn payload_of(cursor: &LogCursor) -> String {
    format!("{FORMAT} {}", hex::encode(cursor.to_bytes()))
}

fn cursor_of(payload: &str) -> Option<LogCursor> {
    let bytes = hex::decode(payload.strip_prefix(FORMAT)?.strip_prefix(' ')?).ok()?;
    LogCursor::from_bytes(&bytes)
}

fn make_private_dir(dir: &Path) -> Result<(), SearchError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}
