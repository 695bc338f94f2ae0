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
//! Jumping to a message found by a search ([`Conversation::jump_to`]) makes the window
//! that message alone, pages older ones in as usual, and counts everything newer as
//! one run whose first id is not known (the node cannot page forwards): it is fetched
//! from the newest end, its length estimated from the Lamport counters, and pages
//! evicted in front of it join it rather than needing its first id.
//!
//! Merging a page costs a binary search per message and a push at either end of a
//! `VecDeque`, so it is proportional to the page, not to the window or the history.

use std::cmp::Ordering;
use std::collections::VecDeque;

use kith_p2p::views::MessageView;

use super::{Conversation, PAGE};

/// Extra messages asked for when paging a newer run back in, so the page overlaps
/// the window even if a few messages were inserted into that stretch meanwhile.
const NEWER_SLACK: usize = 8;

/// The longest first guess of how many messages follow one jumped to: the guess
/// comes from Lamport counters, which a peer can inflate, so a hostile counter costs
/// at most a page this long (a longer stretch is then found by doubling, as usual).
const JUMP_RUN_MAX: usize = 2_000;

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
    /// The oldest message's id; `None` for the messages after one jumped to, which
    /// are only ever fetched from the newest end (this run is then the only one, or
    /// the front one: see [`Conversation::evict`]).
    pub(crate) first: Option<String>,
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
                _ => self.newer.push_back(Run { first: Some(m.id), len: 1 }),
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
        let before = self.newer.get(1).and_then(|next| next.first.clone());
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
            let first = Some(self.messages[from].id.clone());
            self.messages.truncate(from);
            match self.newer.front_mut() {
                // The run after a jumped-to message has no known first id to page this
                // one in with: they become one run, fetched from the newest end.
                Some(run) if run.first.is_none() => {
                    run.first = first;
                    run.len += PAGE;
                }
                _ => self.newer.push_front(Run { first, len: PAGE }),
            }
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
        self.selected = None;
    }

    /// Go back to the newest message. If the window is far from it, drop the window
    /// and return `true`: the newest page must be loaded.
    pub(crate) fn jump_to_newest(&mut self) -> bool {
        self.scroll = Scroll::Bottom;
        self.selected = None;
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

    /// Show message `m` (found by a search), selected, at the pane's bottom row.
    /// If the window holds it, only the view moves; otherwise the window becomes
    /// `m` alone, with the messages after it one run of unknown start (none if it
    /// is the newest known), and `true` is returned: the page older than `m` must
    /// be asked for ([`Fetch::Older`], set as the fetch in flight).
    pub(crate) fn jump_to(&mut self, m: MessageView) -> bool {
        self.selected = Some(m.id.clone());
        self.scroll = Scroll::At { lamport: m.lamport, id: m.id.clone(), below: 0 };
        if self.loaded && self.messages.binary_search_by(|x| key(x).cmp(&key(&m))).is_ok() {
            return false;
        }
        self.newer.clear();
        match &self.last {
            Some(last) if key(last) <= key(&m) => {}
            last => {
                let last = last.as_ref();
                // In a conversation each message's counter is above every one its
                // author saw, so the gap counts the messages after `m`, give or take
                // those written at once (a quarter more covers them).
                let gap = last.map_or(PAGE as u64, |l| l.lamport.saturating_sub(m.lamport));
                let len = usize::try_from(gap.saturating_add(gap / 4)).unwrap_or(JUMP_RUN_MAX);
                self.newer.push_back(Run { first: None, len: len.clamp(1, JUMP_RUN_MAX) });
            }
        }
        self.loading = Some(Fetch::Older { before: m.id.clone() });
        self.messages = VecDeque::from([m]);
        self.loaded = true;
        self.has_older = true;
        self.before_window = None;
        // Where unread messages start is not known around `m`: no landing there.
        self.pending_marker = 0;
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_p2p::kith_storage::Direction;

    use super::*;

    fn message(n: u64) -> MessageView {
        crate::app::test_message(n, Direction::Incoming)
    }

    fn conversation(last: u64) -> Conversation {
        let mut conv = Conversation::new(crate::app::test_contact("peer"));
        conv.last = Some(message(last));
        conv
    }

    #[test]
    fn a_jump_guesses_the_messages_after_it_from_the_counters_within_bounds() {
        let mut conv = conversation(1_000);
        assert!(conv.jump_to(message(500)));
        assert_eq!(conv.loading, Some(Fetch::Older { before: message(500).id }));
        assert_eq!(conv.newer_request(), Some((None, 625 + NEWER_SLACK)), "500 after it, a quarter more");
        // The newest message: nothing after it.
        let mut conv = conversation(1_000);
        assert!(conv.jump_to(message(1_000)));
        assert!(!conv.detached());
        // A counter inflated by a hostile peer costs one page of at most JUMP_RUN_MAX.
        let mut conv = conversation(u64::MAX);
        assert!(conv.jump_to(message(3)));
        assert_eq!(conv.newer_request(), Some((None, JUMP_RUN_MAX + NEWER_SLACK)));
    }

    #[test]
    fn pages_evicted_after_a_jump_join_the_run_of_unknown_start() {
        let mut conv = conversation(1_000);
        conv.jump_to(message(500));
        conv.load_older((300..500).map(message).collect(), true);
        // Scrolled far up before the messages after 500 were paged in: the newer
        // end of the window is evicted, into the run after 500, whose first id
        // it now knows.
        conv.scroll = Scroll::At { lamport: 310, id: message(310).id, below: 0 };
        conv.evict(20);
        assert_eq!(conv.newer.len(), 1, "{:?}", conv.newer);
        assert_eq!(conv.newer[0], Run { first: Some(message(451).id), len: 625 + PAGE });
        assert_eq!(conv.messages.back().map(|m| m.lamport), Some(450));
        // Further evictions go in front of it as usual, fetched before its first id.
        conv.scroll = Scroll::At { lamport: 300, id: message(300).id, below: 0 };
        conv.load_older((150..300).map(message).collect(), true);
        conv.evict(20);
        assert_eq!(conv.newer.len(), 2);
        assert_eq!(conv.newer_request(), Some((Some(message(451).id), PAGE + NEWER_SLACK)));
        let (_, limit) = conv.newer_request().unwrap();
        let page: Vec<MessageView> = (451 - limit as u64..451).map(message).collect();
        assert!(!conv.load_newer(page, limit));
        // The rest, from the newest end, reaches back to the window.
        let (before, limit) = conv.newer_request().unwrap();
        assert_eq!(before, None);
        let page: Vec<MessageView> = (1_001 - limit as u64..=1_000).map(message).collect();
        assert!(!conv.load_newer(page, limit));
        assert!(!conv.detached());
        let keys: Vec<u64> = conv.messages.iter().map(|m| m.lamport).collect();
        assert!(keys.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat");
        assert_eq!(keys.last(), Some(&1_000));
    }
}
