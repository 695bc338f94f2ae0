//! The server side of `/kith/grouplog/1`, without the network: a request and the
//! authenticated peer that sent it go in, an [`Action`] comes out — an answer to send
//! at once, or a [`Job`] of disk work for the blocking pool whose result is the
//! answer. The same split as the mailbox service (`mailbox_service`), whose access
//! policy, rate limiting and refusal mapping it reuses.
//!
//! On the event loop ([`Service::handle`]): the access policy for appends (under
//! `members` only listed peers append), the item size check and the per-peer rate
//! limits: appends charged one token per item, fetches one per request (each reads a
//! page from disk). Fetches are open to anyone who names the log: the id is a hash of
//! a secret group id and the items are end-to-end encrypted, so naming it is proof
//! enough. On the blocking pool ([`Job::run`]): the append with
//! its flush — its sequence numbers are sent only once the items are durable — the
//! page read, and the expiry sweep.

use kith_p2p::grouplog::{
    GroupLogRequest, GroupLogResponse, LOG_ID_LEN, LogItem, MAX_FETCH_ITEMS, MAX_ITEM_LEN,
    MAX_ITEM_OVERHEAD, MAX_PAGE_OVERHEAD, MAX_RESPONSE_LEN, Refusal,
};
use libp2p::PeerId;

use super::mailbox_service::{Access, now_ms, reason, wire_refusal};
use super::rate::PeerLimiter;
use crate::grouplog::{AppendOutcome, Appended, GroupLogError, GroupLogStore, StoredItem};
use crate::limits::RateLimiter;
use crate::metrics::{LimitedRequest, Metrics, RefusalReason};

/// What to do with a request.
pub(crate) type Action = super::jobs::Action<GroupLogResponse, Job>;

/// Disk work for one request (or the expiry sweep), with what it needs to run on any
/// thread.
pub(crate) struct Job {
    store: GroupLogStore,
    metrics: Metrics,
    kind: JobKind,
}

enum JobKind {
    Append {
        log: [u8; LOG_ID_LEN],
        items: Vec<Vec<u8>>,
        now_ms: u64,
    },
    Fetch {
        log: [u8; LOG_ID_LEN],
        after: u64,
        limit: usize,
    },
    Expire {
        now_ms: u64,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            JobKind::Append { items, .. } => format!("append of {}", items.len()),
            JobKind::Fetch { limit, .. } => format!("fetch of up to {limit}"),
            JobKind::Expire { .. } => "expiry sweep".into(),
        };
        f.debug_struct("Job").field("kind", &kind).finish()
    }
}

/// The group log service's state on the event loop.
#[derive(Debug)]
pub(crate) struct Service {
    /// `None` when the group log role is off: every request is refused as `Disabled`.
    store: Option<GroupLogStore>,
    access: Access,
    /// Items appended per peer.
    appends: PeerLimiter,
    /// Fetches per peer.
    fetches: PeerLimiter,
    metrics: Metrics,
}

impl Service {
    /// A service limiting each peer's appends (per item) with `appends` and its
    /// fetches (per request) with `fetches`.
    pub(crate) fn new(
        store: Option<GroupLogStore>,
        access: Access,
        appends: RateLimiter,
        fetches: RateLimiter,
        metrics: Metrics,
    ) -> Service {
        if let Some(store) = &store {
            metrics.set_grouplog_stats(store.stats());
        }
        Service {
            store,
            access,
            appends: PeerLimiter::new(LimitedRequest::Append, appends, metrics.clone()),
            fetches: PeerLimiter::new(LimitedRequest::Fetch, fetches, metrics.clone()),
            metrics,
        }
    }

    /// The store, if the group log role is on.
    pub(crate) fn store(&self) -> Option<&GroupLogStore> {
        self.store.as_ref()
    }

    fn decide(&mut self, peer: &PeerId, request: GroupLogRequest) -> Result<Action, Refusal> {
        let Some(store) = self.store.clone() else {
            return Err(Refusal::Disabled);
        };
        let kind = match request {
            GroupLogRequest::Append { log, items } => {
                if !self.access.admits(peer) {
                    return Err(Refusal::NotMember);
                }
                // Before the rate limit, so a request refused anyway costs no tokens.
                if items.iter().any(|item| item.len() > MAX_ITEM_LEN) {
                    return Err(Refusal::TooLarge);
                }
                let cost = u32::try_from(items.len()).unwrap_or(u32::MAX);
                self.appends.check(peer, cost)?;
                if items.is_empty() {
                    return Ok(Action::Respond(GroupLogResponse::Appended {
                        seqs: Vec::new(),
                    }));
                }
                tracing::debug!(%peer, items = items.len(), "group log append");
                JobKind::Append {
                    log,
                    items,
                    now_ms: now_ms(),
                }
            }
            GroupLogRequest::Fetch { log, after, limit } => {
                // One token per page: a page is read from disk whatever it holds.
                self.fetches.check(peer, 1)?;
                tracing::debug!(%peer, after, limit, "group log fetch");
                JobKind::Fetch {
                    log,
                    after,
                    limit: usize::try_from(limit)
                        .unwrap_or(usize::MAX)
                        .clamp(1, MAX_FETCH_ITEMS),
                }
            }
        };
        Ok(Action::Job(Box::new(Job {
            store,
            metrics: self.metrics.clone(),
            kind,
        })))
    }

    /// The periodic expiry sweep, or `None` when the group log role is off.
    pub(crate) fn expire_job(&self) -> Option<Job> {
        Some(Job {
            store: self.store.clone()?,
            metrics: self.metrics.clone(),
            kind: JobKind::Expire { now_ms: now_ms() },
        })
    }

    /// Forgets idle peers in the rate limiters (memory only; no decision changes).
    pub(crate) fn prune(&mut self) {
        self.appends.prune();
        self.fetches.prune();
    }
}

impl super::jobs::Service for Service {
    type Request = GroupLogRequest;
    type Response = GroupLogResponse;
    type Job = Job;

    /// Cheap and non-blocking: a refusal is answered at once, disk work becomes a job.
    fn handle(&mut self, peer: &PeerId, request: GroupLogRequest) -> Action {
        match self.decide(peer, request) {
            Ok(action) => action,
            Err(refusal) => {
                tracing::debug!(%peer, refusal = refusal.as_str(), "group log request refused");
                self.metrics.grouplog_refused(reason(&refusal));
                Action::Respond(GroupLogResponse::Refused(refusal))
            }
        }
    }

    fn run(job: Job) -> GroupLogResponse {
        job.run()
    }

    fn busy(&self) -> GroupLogResponse {
        self.metrics.grouplog_refused(RefusalReason::Busy);
        GroupLogResponse::Refused(super::jobs::busy())
    }
}

impl Job {
    /// Runs the job. Blocks on disk I/O: call it on the blocking pool. Storage errors
    /// become `Refused(Storage)` (and an error log), never a panic.
    pub(crate) fn run(self) -> GroupLogResponse {
        let Job {
            store,
            metrics,
            kind,
        } = self;
        let response = match kind {
            JobKind::Append { log, items, now_ms } => {
                append(&store, &metrics, &log, &items, now_ms)
            }
            JobKind::Fetch { log, after, limit } => fetch(&store, &metrics, &log, after, limit),
            JobKind::Expire { now_ms } => {
                let expired = store.expire(now_ms).unwrap_or_else(|e| {
                    // Retried at the next sweep; not a refusal of anyone's request.
                    tracing::error!(error = %e, "group log expiry sweep failed");
                    metrics.grouplog_store_failed.set(i64::from(store.failed_for_good()));
                    0
                });
                metrics.grouplog_expired.inc_by(expired as u64);
                if expired > 0 {
                    tracing::info!(expired, "expired group log items");
                }
                metrics.set_grouplog_stats(store.stats());
                // Nobody receives this answer; the loop only learns the sweep ended.
                return GroupLogResponse::Appended { seqs: Vec::new() };
            }
        };
        metrics.set_grouplog_stats(store.stats());
        response.unwrap_or_else(|e| {
            tracing::error!(error = %e, "group log store failed");
            metrics.grouplog_store_failed.set(i64::from(store.failed_for_good()));
            metrics.grouplog_refused(RefusalReason::Storage);
            GroupLogResponse::Refused(Refusal::Storage)
        })
    }
}

fn append(
    store: &GroupLogStore,
    metrics: &Metrics,
    log: &[u8; LOG_ID_LEN],
    items: &[Vec<u8>],
    now_ms: u64,
) -> Result<GroupLogResponse, GroupLogError> {
    // `append` commits and flushes before it returns: the sequence numbers are only
    // ever sent for durable items.
    match store.append(log, items, now_ms)? {
        AppendOutcome::Appended(appended) => {
            for (outcome, item) in appended.iter().zip(items) {
                match outcome {
                    Appended::Stored { .. } => {
                        metrics.grouplog_appends.inc();
                        metrics.grouplog_appended_bytes.inc_by(item.len() as u64);
                    }
                    Appended::Duplicate { .. } => {
                        metrics.grouplog_duplicates.inc();
                    }
                }
            }
            Ok(GroupLogResponse::Appended {
                seqs: appended.iter().map(Appended::seq).collect(),
            })
        }
        AppendOutcome::Refused(refusal) => {
            metrics.grouplog_refused(refusal);
            Ok(GroupLogResponse::Refused(wire_refusal(refusal)))
        }
    }
}

/// Bytes of a page available to items: the response cap minus the page's own framing.
const PAGE_BUDGET: usize = MAX_RESPONSE_LEN - MAX_PAGE_OVERHEAD;

fn fetch(
    store: &GroupLogStore,
    metrics: &Metrics,
    log: &[u8; LOG_ID_LEN],
    after: u64,
    limit: usize,
) -> Result<GroupLogResponse, GroupLogError> {
    // With at most `limit` items, an item budget of PAGE_BUDGET minus `limit` item
    // overheads keeps Σ(len + MAX_ITEM_OVERHEAD) within PAGE_BUDGET. The store lets a
    // first item past the budget, but none is larger than MAX_ITEM_LEN, far below it.
    let max_bytes = PAGE_BUDGET.saturating_sub(limit * MAX_ITEM_OVERHEAD);
    // One item more than wanted tells, when it comes, that more follow.
    let mut items = store.fetch(log, after, limit + 1, max_bytes)?;
    let mut more = items.len() > limit;
    items.truncate(limit);
    if let (false, Some(last)) = (more, items.last()) {
        // The page may have been cut by bytes: look for one more.
        more = !store.fetch(log, last.seq, 1, 0)?.is_empty();
    }
    metrics.grouplog_fetches.inc();
    metrics.grouplog_fetched_items.inc_by(items.len() as u64);
    Ok(GroupLogResponse::Page {
        items: items
            .into_iter()
            .map(
                |StoredItem {
                     seq,
                     bytes,
                     appended_at_ms,
                 }| LogItem {
                    seq,
                    bytes,
                    appended_at_ms,
                },
            )
            .collect(),
        more,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::grouplog::GroupLogLimits;
    use crate::server::jobs::Service as _;

    struct Fixture {
        _dir: tempfile::TempDir,
        service: Service,
        metrics: Metrics,
        registry: Registry,
    }

    fn fixture(access: Access, limits: GroupLogLimits, rate: u32, burst: u32) -> Fixture {
        fixture_with(
            access,
            limits,
            RateLimiter::new(rate, burst),
            RateLimiter::new(1000, 10_000),
        )
    }

    fn fixture_with(
        access: Access,
        limits: GroupLogLimits,
        appends: RateLimiter,
        fetches: RateLimiter,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = GroupLogStore::open(dir.path(), limits).unwrap();
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let service = Service::new(Some(store), access, appends, fetches, metrics.clone());
        Fixture {
            _dir: dir,
            service,
            metrics,
            registry,
        }
    }

    fn open() -> Fixture {
        fixture(Access::Open, GroupLogLimits::default(), 1000, 10_000)
    }

    /// Handles a request, running any job inline.
    fn exec(service: &mut Service, peer: &PeerId, request: GroupLogRequest) -> GroupLogResponse {
        match service.handle(peer, request) {
            Action::Respond(response) => response,
            Action::Job(job) => job.run(),
        }
    }

    fn append(f: &mut Fixture, log: [u8; 32], items: Vec<Vec<u8>>) -> GroupLogResponse {
        exec(
            &mut f.service,
            &PeerId::random(),
            GroupLogRequest::Append { log, items },
        )
    }

    fn fetch(f: &mut Fixture, log: [u8; 32], after: u64, limit: u32) -> (Vec<LogItem>, bool) {
        let request = GroupLogRequest::Fetch { log, after, limit };
        match exec(&mut f.service, &PeerId::random(), request) {
            GroupLogResponse::Page { items, more } => (items, more),
            other => panic!("no page: {other:?}"),
        }
    }

    #[test]
    fn append_then_fetch_with_a_cursor() {
        let mut f = open();
        let log = [1; 32];
        let items: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
        assert_eq!(
            append(&mut f, log, items.clone()),
            GroupLogResponse::Appended {
                seqs: (1..=10).collect()
            }
        );
        // A retry of the same batch stores nothing and gets the same numbers.
        assert_eq!(
            append(&mut f, log, items[2..5].to_vec()),
            GroupLogResponse::Appended {
                seqs: vec![3, 4, 5]
            }
        );
        let (page, more) = fetch(&mut f, log, 0, 4);
        assert_eq!((page.len(), more), (4, true));
        let (page2, more) = fetch(&mut f, log, 4, 4);
        assert_eq!((page2.len(), more), (4, true));
        let (page3, more) = fetch(&mut f, log, 8, 4);
        assert_eq!((page3.len(), more), (2, false));
        let got: Vec<Vec<u8>> = [page, page2, page3]
            .concat()
            .into_iter()
            .map(|i| i.bytes)
            .collect();
        assert_eq!(got, items);
        // Limit 0 is taken as 1; past the end is empty.
        assert_eq!(fetch(&mut f, log, 0, 0).0.len(), 1);
        assert_eq!(fetch(&mut f, log, 10, 10), (vec![], false));
        assert_eq!(fetch(&mut f, [2; 32], 0, 10), (vec![], false));

        let text = crate::metrics::encode(&f.registry).unwrap();
        assert!(
            text.contains("kith_relay_grouplog_appends_total 10"),
            "{text}"
        );
        assert!(
            text.contains("kith_relay_grouplog_duplicates_total 3"),
            "{text}"
        );
        assert!(text.contains("kith_relay_grouplog_items 10"), "{text}");
        assert!(text.contains("kith_relay_grouplog_logs 1"), "{text}");
        assert_eq!(f.metrics.grouplog_fetches.get(), 6);
    }

    #[test]
    fn members_policy_gates_appends_only() {
        let member = PeerId::random();
        let stranger = PeerId::random();
        let members = Arc::new(HashSet::from([member]));
        let mut f = fixture(
            Access::Members(members),
            GroupLogLimits::default(),
            1000,
            1000,
        );
        let request = |items| GroupLogRequest::Append {
            log: [7; 32],
            items,
        };
        assert_eq!(
            exec(&mut f.service, &stranger, request(vec![b"x".to_vec()])),
            GroupLogResponse::Refused(Refusal::NotMember)
        );
        assert_eq!(
            exec(&mut f.service, &member, request(vec![b"x".to_vec()])),
            GroupLogResponse::Appended { seqs: vec![1] }
        );
        // Anyone who names the log reads it.
        let fetch = GroupLogRequest::Fetch {
            log: [7; 32],
            after: 0,
            limit: 10,
        };
        assert!(matches!(
            exec(&mut f.service, &stranger, fetch),
            GroupLogResponse::Page { items, .. } if items.len() == 1
        ));
        assert_eq!(
            f.metrics
                .grouplog_refusals
                .get_or_create(&crate::metrics::RefusalLabels {
                    reason: RefusalReason::NotMember
                })
                .get(),
            1
        );
    }

    /// The store-wide item count reaches the member as `store_full`, for the whole
    /// batch, whichever log it is for, and is counted under that reason.
    #[test]
    fn a_store_full_of_small_items_refuses_other_logs_as_store_full() {
        let limits = GroupLogLimits {
            max_total_items: 2,
            ..GroupLogLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        assert_eq!(
            append(&mut f, [5; 32], vec![vec![1], vec![2]]),
            GroupLogResponse::Appended { seqs: vec![1, 2] }
        );
        assert_eq!(
            append(&mut f, [6; 32], vec![vec![3]]),
            GroupLogResponse::Refused(Refusal::StoreFull)
        );
        assert!(fetch(&mut f, [6; 32], 0, 10).0.is_empty());
        let text = crate::metrics::encode(&f.registry).unwrap();
        crate::metrics::assert_lines(&text, [
            "kith_relay_grouplog_refusals_total{reason=\"store_full\"} 1",
            "kith_relay_grouplog_items 2",
        ]);
    }

    #[test]
    fn size_quota_and_rate_limit_refusals() {
        let limits = GroupLogLimits {
            max_items_per_log: 3,
            ..GroupLogLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1, 5);
        let peer = PeerId::random();
        let request = |items: Vec<Vec<u8>>| GroupLogRequest::Append {
            log: [3; 32],
            items,
        };
        // Too large: refused before costing tokens.
        assert_eq!(
            exec(
                &mut f.service,
                &peer,
                request(vec![b"ok".to_vec(), vec![0; MAX_ITEM_LEN + 1]])
            ),
            GroupLogResponse::Refused(Refusal::TooLarge)
        );
        assert_eq!(
            exec(&mut f.service, &peer, request(vec![vec![1], vec![2]])),
            GroupLogResponse::Appended { seqs: vec![1, 2] }
        );
        // Over the count quota: nothing of the batch is stored.
        assert_eq!(
            exec(&mut f.service, &peer, request(vec![vec![3], vec![4]])),
            GroupLogResponse::Refused(Refusal::QuotaCount)
        );
        assert_eq!(fetch(&mut f, [3; 32], 0, 10).0.len(), 2);
        // 4 of 5 tokens used; the next two items exceed the burst.
        assert!(matches!(
            exec(&mut f.service, &peer, request(vec![vec![5], vec![6]])),
            GroupLogResponse::Refused(Refusal::RateLimited { retry_after_ms }) if retry_after_ms > 0
        ));
        // Another peer has its own budget.
        assert_eq!(
            exec(
                &mut f.service,
                &PeerId::random(),
                GroupLogRequest::Append {
                    log: [4; 32],
                    items: vec![vec![1]],
                }
            ),
            GroupLogResponse::Appended { seqs: vec![1] }
        );
    }

    #[test]
    fn fetches_are_rate_limited_per_peer() {
        let mut f = fixture_with(
            Access::Open,
            GroupLogLimits::default(),
            RateLimiter::new(1000, 1000),
            RateLimiter::new(1, 3),
        );
        append(&mut f, [5; 32], vec![b"x".to_vec()]);
        let mallory = PeerId::random();
        let request = GroupLogRequest::Fetch {
            log: [5; 32],
            after: 0,
            limit: 256,
        };
        let answers: Vec<GroupLogResponse> = (0..10)
            .map(|_| exec(&mut f.service, &mallory, request.clone()))
            .collect();
        assert!(
            answers[..3]
                .iter()
                .all(|a| matches!(a, GroupLogResponse::Page { items, .. } if items.len() == 1))
        );
        assert!(answers[3..].iter().all(|a| matches!(
            a,
            GroupLogResponse::Refused(Refusal::RateLimited { retry_after_ms }) if *retry_after_ms > 0
        )));
        assert_eq!(f.metrics.grouplog_fetches.get(), 3);
        let text = crate::metrics::encode(&f.registry).unwrap();
        assert!(
            text.contains("kith_relay_rate_limited_total{request=\"fetch\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("kith_relay_grouplog_refusals_total{reason=\"rate_limited\"} 7"),
            "{text}"
        );
        // Another peer has its own budget.
        assert_eq!(fetch(&mut f, [5; 32], 0, 10).0.len(), 1);
    }

    #[test]
    fn pages_fit_the_response_cap() {
        let mut f = open();
        let log = [9; 32];
        // 160 items of 100 KiB = 16 MiB: more than one 8 MiB page.
        for chunk in 0..5u8 {
            let items = (0..32u8)
                .map(|i| vec![chunk * 32 + i; MAX_ITEM_LEN])
                .collect();
            assert!(matches!(
                append(&mut f, log, items),
                GroupLogResponse::Appended { .. }
            ));
        }
        let (page, more) = fetch(&mut f, log, 0, 256);
        assert!(more);
        assert!(page.len() < 160 && !page.is_empty());
        let used: usize = page.iter().map(|i| i.bytes.len() + MAX_ITEM_OVERHEAD).sum();
        assert!(MAX_PAGE_OVERHEAD + used <= MAX_RESPONSE_LEN);
        let (rest, more) = fetch(&mut f, log, page.last().unwrap().seq, 256);
        assert_eq!((page.len() + rest.len(), more), (160, false));
    }

    #[test]
    fn expiry_sweep_counts_and_updates_gauges() {
        let limits = GroupLogLimits {
            ttl: std::time::Duration::ZERO,
            ..GroupLogLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        append(&mut f, [1; 32], vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(f.metrics.grouplog_items.get(), 2);
        f.service.expire_job().unwrap().run();
        assert_eq!(f.metrics.grouplog_expired.get(), 2);
        assert_eq!(f.metrics.grouplog_items.get(), 0);
        assert_eq!(f.metrics.grouplog_logs.get(), 0);
        // Numbering goes on after the log emptied.
        assert_eq!(
            append(&mut f, [1; 32], vec![b"a".to_vec()]),
            GroupLogResponse::Appended { seqs: vec![3] }
        );
    }

    #[test]
    fn disabled_refuses_everything() {
        let mut registry = Registry::default();
        let mut service = Service::new(
            None,
            Access::Open,
            RateLimiter::new(1, 1),
            RateLimiter::new(1, 1),
            Metrics::new(&mut registry),
        );
        assert!(service.expire_job().is_none());
        assert!(matches!(
            service.handle(
                &PeerId::random(),
                GroupLogRequest::Fetch {
                    log: [0; 32],
                    after: 0,
                    limit: 1
                }
            ),
            Action::Respond(GroupLogResponse::Refused(Refusal::Disabled))
        ));
    }
}
