//! Full-text search as the control API offers it: a query's targets resolved
//! to a conversation and an author, hits turned into views, and the index kept
//! up to date beside a running node.

use std::sync::Arc;
use std::time::Duration;

use kith_search::{SearchError, SearchIndex, SearchQuery};
use kith_storage::Store;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::ops::{self, OpError};
use crate::views::MessageView;

/// The index's directory inside the database directory.
pub const INDEX_DIR: &str = "search";

/// Hits a search returns unless asked otherwise.
pub const DEFAULT_LIMIT: usize = 20;

/// One message found, as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHitView {
    /// The message (with its conversation, author and time).
    pub message: MessageView,
    /// Relevance: higher is better, comparable within one search only.
    pub score: f32,
    /// The text around the match, on one line (`…` where cut).
    pub snippet: String,
    /// Byte ranges `[start, end)` of `snippet` that matched, in order.
    pub marks: Vec<[usize; 2]>,
}

/// What to search: the words, and optionally a conversation (`within`: a contact
/// or group as the user names it) and an author (`from`: a contact, or `me`).
#[derive(Debug, Clone, Default)]
pub struct SearchParams<'a> {
    /// The words.
    pub query: &'a str,
    /// Only this conversation.
    pub within: Option<&'a str>,
    /// Only messages by this contact, or by us for `me`.
    pub from: Option<&'a str>,
    /// Most hits (default [`DEFAULT_LIMIT`], at most [`kith_search::MAX_LIMIT`]).
    pub limit: Option<usize>,
}

/// Opens the index of the database `store` has open.
pub fn open_index(store: &Store) -> Result<SearchIndex, OpError> {
    SearchIndex::open(&store.path().join(INDEX_DIR)).map_err(op_error)
}

/// Searches `index` (caught up with `store` first) for `params`. Blocks: call it
/// off async workers.
pub fn search(store: &Store, index: &SearchIndex, me: &PeerId, params: &SearchParams<'_>) -> Result<Vec<SearchHitView>, OpError> {
    let conversation = match params.within {
        None => None,
        Some(within) => Some(ops::conversation_of(store, me, within)?),
    };
    let author = match params.from {
        None => None,
        Some("me") => Some(me.to_base58()),
        Some(from) => Some(ops::resolve_contact(store, from)?.peer_id.to_base58()),
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > kith_search::MAX_LIMIT {
        return Err(OpError::Invalid(format!("limit must be 1 to {}", kith_search::MAX_LIMIT)));
    }
    let query = SearchQuery { text: params.query.to_owned(), conversation, author, limit };
    let hits = index.search(store, &query).map_err(op_error)?;
    hits.iter()
        .map(|hit| {
            Ok(SearchHitView {
                message: ops::message_view(store, &hit.message)?,
                score: hit.score,
                snippet: hit.snippet.text.clone(),
                marks: hit.snippet.marks.iter().map(|m| [m.start, m.end]).collect(),
            })
        })
        .collect()
}

/// Drops the index and builds it again from every stored message; returns how
/// many it holds.
pub fn rebuild(store: &Store, index: &SearchIndex) -> Result<usize, OpError> {
    index.rebuild(store).map_err(op_error)?;
    Ok(index.len() as usize)
}

fn op_error(e: SearchError) -> OpError {
    match e {
        SearchError::EmptyQuery => OpError::Invalid(e.to_string()),
        SearchError::Store(e) => OpError::Store(e),
        other => OpError::Search(other.to_string()),
    }
}

/// Keeps `index` caught up with `store` every `every` (and once at once), so
/// searches seldom have to, until `stopped` says the node stopped. The work runs
/// on the blocking pool.
pub(crate) fn keep_up(index: Arc<SearchIndex>, store: Store, every: Duration, stopped: impl Fn() -> bool + Send + 'static) {
    tokio::spawn(async move {
        loop {
            let (catching_up, store) = (index.clone(), store.clone());
            match tokio::task::spawn_blocking(move || catching_up.catch_up(&store)).await {
                Ok(Ok(progress)) if progress.added > 0 || progress.reset => {
                    tracing::debug!(added = progress.added, reset = progress.reset, "search index caught up");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the search index could not catch up"),
                Err(e) => tracing::warn!(error = %e, "the search index's catch-up panicked"),
            }
            tokio::time::sleep(every).await;
            if stopped() {
                // Dropping the last handle joins the writer's threads: not on a worker.
                let _ = tokio::task::spawn_blocking(move || drop(index)).await;
                return;
            }
        }
    });
}
