//! The loaded window of a conversation: a bounded run of consecutive messages around
//! the scroll anchor, and what is needed to page either end back in.
//!
//! The node pages history only backwards (`history` with `before`), so paging older
//! messages in is one request with the oldest loaded id. Paging newer ones back in
//! after they were evicted needs an id *after* them: every evicted run of newer
//! messages is remembered as its first id and length ([`Run`]), and run `k` is
//! fetched with `before` = the first id of run `k + 1` (or no `before` for the newest
//! run). Messages that arrive while the window is away from the newest end only bump
//! the newest run's length. A run is fetched with a few messages of slack so the page
//! overlaps the window; a page that does not reach back to the window (more messages
//! were inserted into that stretch of history than the slack covers) is asked again,
//! twice as long.
//!
//! Merging a page costs a binary search per message and a push at either end of a
//! `VecDeque`, so it is proportional to the page, not to the window or the history.

use std::cmp::Ordering;

use kith_p2p::views::MessageView;

use super::{Conversation, PAGE};

/// Extra messages asked for when paging a newer run back in, so the page overlaps
/// the window even if a few messages were inserted into that stretch meanwhile.
const NEWER_SLACK: usize = 8;

/// Where the message pane is scrolled to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scroll {
    /// At the newest message, following new ones as they arrive.
    #[default]
    Bottom,
    /// Held at a message: the pane's bottom row is `below` rows above the bottom of
    /// the message's block (its day separator, "new messages" line and rows). Nothing
    /// arriving above or below moves the view, and a frame lays out only the messages
    /// from here up to the top of the pane.
    At {
        /// The message's Lamport counter (with the id, its place in the order).
        lamport: u64,
        /// The message id.
        id: String,
        /// Rows of the message's block hidden below the pane (more than the block
        /// has reaches into the blocks above).
        below: usize,
    },
}

/// A page request in flight, so its answer can be told apart from stale ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The newest page.
    Newest,
    /// Messages older than the window (`before` its oldest).
    Older {
        /// The id asked with.
        before: String,
    },
    /// The evicted run just newer than the window.
    Newer {
        /// The id asked with (`None`: the newest run, fetched from the end).
        before: Option<String>,
    },
}

/// A stretch of messages newer than the window that is not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    /// The oldest message's id.
    pub(crate) first: String,
    /// How many messages (an estimate: arrivals and inserts can make it short).
    pub(crate) len: usize,
}

/// The order of the conversation: the node's (Lamport counter, id).
pub(crate) fn key(m: &MessageView) -> (u64, &str) {
    (m.lamport, m.id.as_str())
}

impl Conversation {
    /// Whether messages newer than the window exist (evicted or arrived meanwhile).
    pub fn detached(&self) -> bool {
        !self.newer.is_empty()
    }

    /// Messages from the oldest loaded one to the newest known: the loaded window
    /// plus the newer ones evicted from it. How deep into the history the window is.
    pub fn depth(&self) -> usize {
        self.messages.len() + self.newer.iter().map(|r| r.len).sum::<usize>()
    }

    /// Index of the anchor message (the newest for [`Scroll::Bottom`], or where the
    /// anchor would be if it is not loaded).
    pub(crate) fn anchor_index(&self) -> usize {
        let last = self.messages.len().saturating_sub(1);
        match &self.scroll {
            Scroll::Bottom => last,
            Scroll::At { lamport, id, .. } => {
                match self.messages.binary_search_by(|m| key(m).cmp(&(*lamport, id.as_str()))) {
                    Ok(i) | Err(i) => i.min(last),
                }
            }
        }
    }

    /// Merge `page` (oldest first, as the node sends it) into the window:
    /// de-duplicated by id, kept in node order.
    pub(crate) fn merge(&mut self, page: Vec<MessageView>) {
        // A page of older messages goes in front as a whole.
        if let (Some(newest), Some(front)) = (page.last(), self.messages.front())
            && key(newest).cmp(&key(front)) == Ordering::Less
        {
            for m in page.into_iter().rev() {
                self.messages.push_front(m);
            }
            return;
        }
        for m in page {
            self.insert(m);
        }
    }

    /// Insert or replace one message: at the end in O(1) (the usual case: it is the
    /// newest), elsewhere after a binary search.
    fn insert(&mut self, m: MessageView) {
        if self.messages.back().is_none_or(|b| key(b) < key(&m)) {
            self.messages.push_back(m);
            return;
        }
        match self.messages.binary_search_by(|x| key(x).cmp(&key(&m))) {
            Ok(i) => self.messages[i] = m,
            Err(i) => self.messages.insert(i, m),
        }
    }

    /// A message that was just written or received: into the window if it belongs
    /// there, else counted in the newest unloaded run. The view does not move: an
    /// anchored view stays on its message, and only [`Scroll::Bottom`] follows.
    pub(crate) fn arrive(&mut self, m: MessageView) {
        if !self.loaded && self.loading.is_none() {
            return;
        }
        let newer_than_window = self.messages.back().is_some_and(|b| key(&m) > key(b));
        if self.detached() && newer_than_window {
            // Not loaded: it joins the newest run. If that run is being fetched right
            // now the answer may predate the message, so it starts a run of its own.
            let fetching_newest = self.loading == Some(Fetch::Newer { before: None }) && self.newer.len() == 1;
            match self.newer.back_mut() {
                Some(run) if run.len < PAGE && !fetching_newest => run.len += 1,
                _ => self.newer.push_back(Run { first: m.id, len: 1 }),
            }
            return;
        }
        self.insert(m);
    }

    /// A message of this conversation may exist that we never saw (written by another
    /// client): make the newest run one longer so fetching it covers that.
    pub(crate) fn maybe_unseen(&mut self) {
        if let Some(run) = self.newer.back_mut() {
            run.len += 1;
        }
    }

    /// The newest page arrived (`full`: as long as asked, so older ones may exist).
    /// If it overlaps the window it is merged, so a scrolled-up view keeps its place;
    /// otherwise it replaces the window, keeping only messages that arrived since.
    pub(crate) fn load_newest(&mut self, page: Vec<MessageView>, full: bool) {
        let joins = !self.detached()
            && match (page.first(), self.messages.back()) {
                (Some(first), Some(back)) => key(first) <= key(back),
                _ => false,
            };
        if !joins {
            let newest = page.last().map(|m| (m.lamport, m.id.clone()));
            self.messages.retain(|m| newest.as_ref().is_some_and(|(l, id)| key(m) > (*l, id.as_str())));
            self.newer.clear();
            self.has_older = full;
            self.before_window = None;
        }
        self.loaded = true;
        self.merge(page);
        if let Scroll::At { lamport, id, .. } = &self.scroll
            && self.messages.binary_search_by(|m| key(m).cmp(&(*lamport, id.as_str()))).is_err()
        {
            // The anchor went with the old window.
            self.scroll = Scroll::Bottom;
        }
    }

    /// A page older than the window arrived.
    pub(crate) fn load_older(&mut self, page: Vec<MessageView>, full: bool) {
        if self.loaded {
            self.has_older = full;
        }
        // What precedes the new oldest message is not known until the next page.
        self.before_window = None;
        self.merge(page);
    }

    /// The run just newer than the window arrived, asked for with `limit`. Returns
    /// whether it must be asked again (it did not reach back to the window).
    pub(crate) fn load_newer(&mut self, page: Vec<MessageView>, limit: usize) -> bool {
        let full = page.len() >= limit;
        let joins = !full
            || match (page.first(), self.messages.back()) {
                (Some(first), Some(back)) => key(first) <= key(back),
                (_, None) => true,
                (None, Some(_)) => false,
            };
        if !joins {
            if let Some(run) = self.newer.front_mut() {
                run.len = limit.saturating_mul(2);
            }
            return true;
        }
        self.newer.pop_front();
        self.merge(page);
        false
    }

    /// The request that pages the run just newer than the window back in.
    pub(crate) fn newer_request(&self) -> Option<(Option<String>, usize)> {
        let run = self.newer.front()?;
        let before = self.newer.get(1).map(|next| next.first.clone());
        Some((before, run.len + NEWER_SLACK))
    }

    /// Keep the window bounded: drop whole pages from the end far from the anchor.
    /// `height` is the message pane's height in rows; at least twice that many
    /// messages (and two pages) stay on each side of the screen, so the margins the
    /// prefetch wants are never evicted (which would make it load them again).
    pub(crate) fn evict(&mut self, height: usize) {
        if self.messages.is_empty() {
            return;
        }
        let keep = 2 * PAGE.max(height);
        // The older end: what is above the screen and its margin.
        while self.anchor_index() >= height + keep + PAGE {
            let dropped: Vec<MessageView> = self.messages.drain(..PAGE).collect();
            self.before_window = dropped.last().map(|m| m.sent_at);
            self.has_older = true;
        }
        // The newer end: what is below the anchor and its margin.
        while self.messages.len() - 1 - self.anchor_index() >= keep + PAGE {
            let from = self.messages.len() - PAGE;
            let first = self.messages[from].id.clone();
            self.messages.truncate(from);
            self.newer.push_front(Run { first, len: PAGE });
        }
    }

    /// Forget the window when the conversation loses focus: keep only the newest
    /// page if the window is at the newest end, else everything (reloaded on focus).
    pub(crate) fn trim(&mut self) {
        if self.detached() {
            self.messages.clear();
            self.newer.clear();
            self.loaded = false;
            self.has_older = true;
            self.before_window = None;
        } else if self.messages.len() > PAGE {
            let dropped: Vec<MessageView> = self.messages.drain(..self.messages.len() - PAGE).collect();
            self.before_window = dropped.last().map(|m| m.sent_at);
            self.has_older = true;
        }
        // An older or newer page in flight no longer fits; its answer is ignored.
        if matches!(self.loading, Some(Fetch::Older { .. } | Fetch::Newer { .. })) {
            self.loading = None;
        }
        self.scroll = Scroll::Bottom;
        self.unread_marker = None;
    }

    /// Go back to the newest message. If the window is far from it, drop the window
    /// and return `true`: the newest page must be loaded.
    pub(crate) fn jump_to_newest(&mut self) -> bool {
        self.scroll = Scroll::Bottom;
        if !self.detached() {
            return false;
        }
        self.messages.clear();
        self.newer.clear();
        self.loaded = false;
        self.has_older = true;
        self.before_window = None;
        true
    }
}
