//! Full-text search over a node's messages.
//!
//! A [`SearchIndex`] is a tantivy index in a directory of its own beside the
//! database. It stores no text — the message log has it — only the terms of
//! each message (with their frequencies, for ranking), and the message's
//! conversation, author, id and send time. It follows the store's message log
//! ([`Store::follow_log`](kith_storage::Store::follow_log)): each
//! [`catch_up`](SearchIndex::catch_up) indexes what was written since the
//! last and commits with the log cursor, so the index never needs the store
//! to tell it anything and survives a crash at any point. Every search
//! catches up first, so a message is found as soon as it is stored; a node
//! also catches up in the background, so searches rarely have to.
//!
//! Text is read by [`tokens`] (case and diacritics folded, CJK by character
//! pairs, emoji as terms) and queries by the rule in [`query`]'s docs (every
//! word must match; a word also matches the words that begin with its stem).
//! Hits are ranked by BM25, whole-word matches above prefix matches, newest
//! first among equals, and checked against the store, so a message deleted
//! since it was indexed is never shown.

mod index;
pub mod query;
mod snippet;
pub mod tokens;

pub use index::{Hit, MAX_LIMIT, MAX_PREFIX_TERMS, Progress, SearchIndex, SearchQuery};
pub use snippet::{SNIPPET_CHARS, Snippet};

/// Why a search or an index update failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query holds nothing to look for (only spaces or punctuation).
    #[error("the query has no words to look for")]
    EmptyQuery,
    /// The index failed (tantivy's error).
    #[error("the search index failed: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The index's directory could not be made or read.
    #[error("the search index's directory: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed while the index read it.
    #[error(transparent)]
    Store(#[from] kith_storage::StoreError),
}
