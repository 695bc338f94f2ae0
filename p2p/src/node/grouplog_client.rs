//! [`GroupLogClient`]: the bookkeeping of a node's group messages on their way out
//! (gossip and the groups' relay logs) and of fetching the logs, as a state machine
//! without a swarm or a store.
//!
//! Going out: a sealed group message is queued until a relay keeping the group's log
//! holds it (or, for a group without relays, until it went out on gossip). Each relay
//! gets at most one append per group in flight, of up to
//! [`MAX_APPEND_BATCH`](grouplog::MAX_APPEND_BATCH) messages, oldest first; what no
//! relay holds yet is tried again after the retry interval.
//!
//! Coming in: at most one fetch walk per (group, relay) at a time; the actor stores each
//! page and asks for the next while the relay says there is more.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

use kith_storage::{GroupId, MessageId};
use libp2p::request_response::OutboundRequestId;
use libp2p::{Multiaddr, PeerId};

use crate::grouplog::{self, GroupLogRequest, GroupLogResponse, LogItem, Refusal};

/// An append for the actor to send, then to report with [`GroupLogClient::append_sent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Append {
    /// The relay keeping the log.
    pub(crate) relay: PeerId,
    /// Where to dial it.
    pub(crate) addr: Multiaddr,
    /// The request (the log and the sealed messages).
    pub(crate) request: GroupLogRequest,
    /// The messages it carries, in order.
    pub(crate) ids: Vec<MessageId>,
}

/// What an answer means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A relay holds these messages of `group`.
    Held(Vec<MessageId>),
    /// A relay refused an append for `group`; the messages stay queued.
    Refused {
        /// The group.
        group: GroupId,
        /// The relay.
        relay: PeerId,
        /// Why.
        refusal: Refusal,
    },
    /// A page of `group`'s log at `relay`: store it, then [`GroupLogClient::page_done`].
    Page {
        /// The group.
        group: GroupId,
        /// The relay.
        relay: PeerId,
        /// The items, in sequence order.
        items: Vec<LogItem>,
        /// Whether the relay holds more after them.
        more: bool,
    },
    /// Nothing to do (the fetch walk, if any, is over).
    Nothing,
}

/// A group message no relay holds yet.
struct Unsent {
    group: GroupId,
    sealed: Vec<u8>,
    published: bool,
}

/// Messages on their way out and log fetches in flight (requests by the swarm's id;
/// any id type in tests).
pub(crate) struct GroupLogClient<Id = OutboundRequestId> {
    unsent: BTreeMap<MessageId, Unsent>,
    appends: HashMap<Id, (GroupId, PeerId, Vec<MessageId>)>,
    /// Fetches in flight, with the sequence number each asked to read after.
    fetches: HashMap<Id, (GroupId, PeerId, u64)>,
    fetching: HashSet<(GroupId, PeerId)>,
    next_retry: Option<Instant>,
    retry: Duration,
}

impl<Id: Hash + Eq> GroupLogClient<Id> {
    /// A client that retries what no relay holds after `retry`.
    pub(crate) fn new(retry: Duration) -> Self {
        GroupLogClient {
            unsent: BTreeMap::new(),
            appends: HashMap::new(),
            fetches: HashMap::new(),
            fetching: HashSet::new(),
            next_retry: None,
            retry,
        }
    }

    /// Queues a sealed message of `group` (not published yet); returns false, and
    /// changes nothing, if `id` is queued already.
    pub(crate) fn queue(&mut self, group: GroupId, id: MessageId, sealed: Vec<u8>) -> bool {
        match self.unsent.entry(id) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(Unsent { group, sealed, published: false });
                true
            }
        }
    }

    /// The messages of `group` not yet published on gossip, oldest first.
    pub(crate) fn unpublished(&self, group: GroupId) -> Vec<(MessageId, Vec<u8>)> {
        self.unsent
            .iter()
            .filter(|(_, u)| u.group == group && !u.published)
            .map(|(id, u)| (*id, u.sealed.clone()))
            .collect()
    }

    /// `id` went out on gossip.
    pub(crate) fn published(&mut self, id: MessageId) {
        if let Some(u) = self.unsent.get_mut(&id) {
            u.published = true;
        }
    }

    /// Appends of `group`'s queued messages to each of `relays` that has none in
    /// flight for it (`log` is the group's log id); schedules a retry while anything
    /// is queued.
    pub(crate) fn appends(&mut self, group: GroupId, log: [u8; 32], relays: Vec<(PeerId, Multiaddr)>, now: Instant) -> Vec<Append> {
        let mut out = Vec::new();
        for (relay, addr) in relays {
            if self.appends.values().any(|(g, r, _)| *g == group && *r == relay) {
                continue;
            }
            let (ids, items): (Vec<MessageId>, Vec<Vec<u8>>) = self
                .unsent
                .iter()
                .filter(|(_, u)| u.group == group)
                .take(grouplog::MAX_APPEND_BATCH)
                .map(|(id, u)| (*id, u.sealed.clone()))
                .unzip();
            if ids.is_empty() {
                break;
            }
            out.push(Append { relay, addr, request: GroupLogRequest::Append { log, items }, ids });
        }
        self.schedule_retry(now);
        out
    }

    /// The actor sent the append to `relay` carrying `ids` as `id`.
    pub(crate) fn append_sent(&mut self, id: Id, group: GroupId, relay: PeerId, ids: Vec<MessageId>) {
        self.appends.insert(id, (group, relay, ids));
    }

    /// Of `ids`, those still queued.
    pub(crate) fn still_unsent(&self, ids: &[MessageId]) -> Vec<MessageId> {
        ids.iter().filter(|id| self.unsent.contains_key(id)).copied().collect()
    }

    /// `ids` are held (their states are recorded): they leave the queue; returns each
    /// with its group.
    pub(crate) fn held(&mut self, ids: &[MessageId], now: Instant) -> Vec<(MessageId, GroupId)> {
        let gone = ids.iter().filter_map(|id| Some((*id, self.unsent.remove(id)?.group))).collect();
        self.schedule_retry(now);
        gone
    }

    /// Starts a fetch walk of `group`'s log at `relay` unless one is under way.
    pub(crate) fn start_fetch(&mut self, group: GroupId, relay: PeerId) -> bool {
        self.fetching.insert((group, relay))
    }

    /// The actor sent a fetch of `group`'s log at `relay`, for items after `after`, as
    /// `id`.
    pub(crate) fn fetch_sent(&mut self, id: Id, group: GroupId, relay: PeerId, after: u64) {
        self.fetches.insert(id, (group, relay, after));
    }

    /// The fetch walk of `group` at `relay` is over (last page stored, or it failed).
    pub(crate) fn page_done(&mut self, group: GroupId, relay: PeerId) {
        self.fetching.remove(&(group, relay));
    }

    /// The relay answered `id`.
    pub(crate) fn answered(&mut self, id: Id, response: GroupLogResponse, now: Instant) -> Answer {
        if let Some((group, relay, ids)) = self.appends.remove(&id) {
            self.schedule_retry(now);
            return match response {
                GroupLogResponse::Appended { seqs } if seqs.len() == ids.len() => Answer::Held(ids),
                GroupLogResponse::Refused(refusal) => Answer::Refused { group, relay, refusal },
                other => {
                    tracing::debug!(?other, "unexpected answer to an append");
                    Answer::Nothing
                }
            };
        }
        if let Some((group, relay, after)) = self.fetches.remove(&id) {
            return match response {
                GroupLogResponse::Page { items, more }
                    if crate::node::mailbox_client::rises_after(Some(after), items.iter().map(|i| i.seq)) =>
                {
                    Answer::Page { group, relay, items, more }
                }
                other => {
                    tracing::debug!(%group, %relay, ?other, "group log fetch refused");
                    self.page_done(group, relay);
                    Answer::Nothing
                }
            };
        }
        Answer::Nothing
    }

    /// `id` could not be sent or was not answered.
    pub(crate) fn failed(&mut self, id: Id, now: Instant) {
        if let Some((group, relay, _)) = self.appends.remove(&id) {
            tracing::debug!(%group, %relay, "group append failed; will retry");
            self.schedule_retry(now);
        } else if let Some((group, relay, _)) = self.fetches.remove(&id) {
            tracing::debug!(%group, %relay, "group log fetch failed");
            self.page_done(group, relay);
        }
    }

    /// When the client next wants a [`tick`](Self::tick).
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.next_retry
    }

    /// The groups whose queued messages are due for another try at `now`.
    pub(crate) fn tick(&mut self, now: Instant) -> BTreeSet<GroupId> {
        if self.next_retry.is_none_or(|t| t > now) {
            return BTreeSet::new();
        }
        self.next_retry = None;
        self.unsent.values().map(|u| u.group).collect()
    }

    fn schedule_retry(&mut self, now: Instant) {
        if self.unsent.is_empty() {
            self.next_retry = None;
        } else if self.next_retry.is_none() {
            self.next_retry = Some(now + self.retry);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const G: GroupId = GroupId([1; 16]);
    const RETRY: Duration = Duration::from_secs(3);

    fn relay() -> (PeerId, Multiaddr) {
        let peer = PeerId::random();
        (peer, format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}").parse().unwrap())
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    fn items(append: &Append) -> usize {
        match &append.request {
            GroupLogRequest::Append { items, .. } => items.len(),
            other => panic!("not an append: {other:?}"),
        }
    }

    #[test]
    fn one_append_per_relay_in_flight_in_bounded_batches() {
        let mut client = GroupLogClient::<u32>::new(RETRY);
        let now = Instant::now();
        for n in 0..=grouplog::MAX_APPEND_BATCH as u8 {
            client.queue(G, id(n), vec![n]);
        }
        let (r1, r2) = (relay(), relay());
        let appends = client.appends(G, [7; 32], vec![r1.clone(), r2.clone()], now);
        assert_eq!(appends.len(), 2, "one per relay");
        assert!(appends.iter().all(|a| items(a) == grouplog::MAX_APPEND_BATCH), "bounded, oldest first");
        assert_eq!(appends[0].ids[0], id(0));
        for (n, append) in appends.into_iter().enumerate() {
            client.append_sent(n as u32, G, append.relay, append.ids);
        }
        assert!(client.appends(G, [7; 32], vec![r1, r2], now).is_empty(), "both still in flight");
        // The first relay holds the batch: those leave the queue; the last one stays.
        let seqs = (1..=grouplog::MAX_APPEND_BATCH as u64).collect::<Vec<_>>();
        let Answer::Held(ids) = client.answered(0, GroupLogResponse::Appended { seqs: seqs.clone() }, now) else { panic!() };
        assert_eq!(client.still_unsent(&ids).len(), ids.len());
        let gone = client.held(&ids, now);
        assert_eq!(gone.len(), grouplog::MAX_APPEND_BATCH);
        assert!(gone.iter().all(|(_, g)| *g == G));
        // The second relay's copy of the same batch: nothing left to move.
        let Answer::Held(again) = client.answered(1, GroupLogResponse::Appended { seqs }, now) else { panic!() };
        assert!(client.still_unsent(&again).is_empty());
    }

    #[test]
    fn what_no_relay_holds_is_tried_again_after_the_retry_interval() {
        let mut client = GroupLogClient::<u32>::new(RETRY);
        let now = Instant::now();
        assert_eq!(client.next_wakeup(), None);
        client.queue(G, id(1), vec![1]);
        let r = relay();
        let append = client.appends(G, [7; 32], vec![r.clone()], now).pop().unwrap();
        client.append_sent(9, G, append.relay, append.ids);
        assert_eq!(client.next_wakeup(), Some(now + RETRY));
        let refusal = Refusal::QuotaCount;
        assert_eq!(
            client.answered(9, GroupLogResponse::Refused(refusal), now),
            Answer::Refused { group: G, relay: r.0, refusal }
        );
        assert!(client.tick(now).is_empty(), "not yet");
        assert_eq!(client.tick(now + RETRY), BTreeSet::from([G]));
        assert_eq!(client.next_wakeup(), None, "until the next attempt schedules one");
        // Once everything is held, no retry is scheduled.
        client.held(&[id(1)], now);
        assert!(client.appends(G, [7; 32], vec![r], now).is_empty());
        assert_eq!(client.next_wakeup(), None);
    }

    #[test]
    fn gossip_publication_is_tracked_per_message() {
        let mut client = GroupLogClient::<u32>::new(RETRY);
        client.queue(G, id(1), vec![1]);
        client.queue(G, id(2), vec![2]);
        client.queue(GroupId([2; 16]), id(3), vec![3]);
        assert_eq!(client.unpublished(G).len(), 2);
        client.published(id(1));
        assert_eq!(client.unpublished(G), [(id(2), vec![2])]);
    }

    #[test]
    fn one_fetch_walk_per_group_and_relay() {
        let mut client = GroupLogClient::<u32>::new(RETRY);
        let now = Instant::now();
        let (r, _) = relay();
        assert!(client.start_fetch(G, r));
        assert!(!client.start_fetch(G, r), "a walk is under way");
        client.fetch_sent(5, G, r, 0);
        let page = client.answered(5, GroupLogResponse::Page { items: Vec::new(), more: false }, now);
        assert_eq!(page, Answer::Page { group: G, relay: r, items: Vec::new(), more: false });
        assert!(!client.start_fetch(G, r), "still under way until the page is stored");
        client.page_done(G, r);
        assert!(client.start_fetch(G, r));
        // A failed or refused fetch ends the walk.
        client.fetch_sent(6, G, r, 0);
        client.failed(6, now);
        assert!(client.start_fetch(G, r));
        client.fetch_sent(7, G, r, 0);
        assert_eq!(client.answered(7, GroupLogResponse::Refused(Refusal::NotMember), now), Answer::Nothing);
        assert!(client.start_fetch(G, r));
        // A page that does not move past the cursor ends the walk instead of looping.
        client.fetch_sent(8, G, r, 40);
        let stale = vec![LogItem { seq: 40, bytes: vec![1], appended_at_ms: 0 }];
        assert_eq!(client.answered(8, GroupLogResponse::Page { items: stale, more: true }, now), Answer::Nothing);
        assert!(client.start_fetch(G, r));
        // An append answer without one sequence number per item holds nothing.
        client.queue(G, id(1), vec![1]);
        let append = client.appends(G, [7; 32], vec![relay()], now).pop().unwrap();
        client.append_sent(9, G, append.relay, append.ids);
        assert_eq!(client.answered(9, GroupLogResponse::Appended { seqs: vec![1, 2] }, now), Answer::Nothing);
    }
}
