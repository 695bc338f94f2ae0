//! The server side of `/kith/mailbox/1`, without the network: a request and the
//! authenticated peer that sent it go in, an [`Action`] comes out — an answer to send
//! at once, or a [`Job`] of disk work to run on the blocking pool whose result is the
//! answer.
//!
//! Everything cheap and in memory happens in [`Service::handle`], on the event loop:
//! the access policy, the per-peer rate limits (deposits per envelope, challenges per
//! request: a drain or an ack needs a fresh challenge, so the challenge limit bounds
//! them too), issuing and consuming drain challenges and checking the owner's
//! signature. Everything that touches the disk
//! (deposit with its flush, listing a page, deleting acked envelopes, expiry) is a
//! [`Job`], because sled blocks. A deposit's answer is produced only after the store
//! has flushed, so a `Stored` result is a promise that survives `kill -9`.
//!
//! The mailbox owner is always the requesting peer, authenticated by its libp2p
//! connection: a peer can only ever ask for a challenge for, drain, or ack its own
//! mailbox. The signature over the nonce (naming this relay and the owner) is checked
//! on top, as the protocol requires (see [`kith_p2p::mailbox`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kith_p2p::mailbox::{
    self as wire, DepositResult, MAX_DRAIN_ITEMS, MAX_ITEM_OVERHEAD, MAX_PAGE_OVERHEAD,
    MAX_RESPONSE_LEN, MailItem, MailboxRequest, MailboxResponse, Refusal,
};
use libp2p::PeerId;

use super::rate::PeerLimiter;
use crate::limits::RateLimiter;
use crate::mailbox::{self as store, DepositOutcome, MailboxStore, Share, StoredEnvelope};
use crate::metrics::{LimitedRequest, Metrics, RefusalReason};

/// What to do with a request.
pub(crate) type Action = super::jobs::Action<MailboxResponse, Job>;

/// Disk work for one request (or the expiry sweep), with what it needs to run on any
/// thread.
pub(crate) struct Job {
    store: MailboxStore,
    metrics: Metrics,
    kind: JobKind,
}

/// A deposit ticket to check: whether it lets `depositor` fill `owner`'s mailbox.
#[derive(Debug)]
struct TicketCheck {
    owner: PeerId,
    depositor: PeerId,
    ticket: wire::DepositTicket,
}

#[derive(Debug)]
enum JobKind {
    Deposit {
        mailbox: Vec<u8>,
        envelopes: Vec<Vec<u8>>,
        now_ms: u64,
        /// The ticket the depositor showed, checked in the job (a signature costs
        /// more than the loop's other work per request).
        ticket: Option<Box<TicketCheck>>,
    },
    Drain {
        mailbox: Vec<u8>,
        after: Option<u64>,
        max_items: usize,
    },
    Ack {
        mailbox: Vec<u8>,
        seqs: Vec<u64>,
    },
    Expire {
        now_ms: u64,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            JobKind::Deposit { envelopes, .. } => format!("deposit of {}", envelopes.len()),
            JobKind::Drain { max_items, .. } => format!("drain of up to {max_items}"),
            JobKind::Ack { seqs, .. } => format!("ack of {}", seqs.len()),
            JobKind::Expire { .. } => "expiry sweep".into(),
        };
        f.debug_struct("Job").field("kind", &kind).finish()
    }
}

/// Who may use the mailbox service (and append to group logs, see
/// `grouplog_service`).
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// Anyone may deposit into any mailbox and drain their own.
    Open,
    /// Deposits only into members' mailboxes; only members drain.
    Members(Arc<HashSet<PeerId>>),
}

impl Access {
    /// Whether the policy admits `peer`.
    pub(crate) fn admits(&self, peer: &PeerId) -> bool {
        match self {
            Access::Open => true,
            Access::Members(members) => members.contains(peer),
        }
    }
}

/// The mailbox service's state on the event loop.
#[derive(Debug)]
pub(crate) struct Service {
    /// `None` when the mailbox role is off: every request is refused as `Disabled`.
    store: Option<MailboxStore>,
    relay: PeerId,
    access: Access,
    /// Envelopes deposited per sending peer.
    deposits: PeerLimiter,
    /// Drain challenges asked for per peer.
    challenges: PeerLimiter,
    metrics: Metrics,
}

impl Service {
    /// A service limiting each peer's deposits (per envelope) with `deposits` and its
    /// challenge requests with `challenges`.
    pub(crate) fn new(
        store: Option<MailboxStore>,
        relay: PeerId,
        access: Access,
        deposits: RateLimiter,
        challenges: RateLimiter,
        metrics: Metrics,
    ) -> Service {
        if let Some(store) = &store {
            metrics.set_mailbox_stats(store.stats());
        }
        Service {
            store,
            relay,
            access,
            deposits: PeerLimiter::new(LimitedRequest::Deposit, deposits, metrics.clone()),
            challenges: PeerLimiter::new(LimitedRequest::Challenge, challenges, metrics.clone()),
            metrics,
        }
    }

    /// The store, if the mailbox role is on.
    pub(crate) fn store(&self) -> Option<&MailboxStore> {
        self.store.as_ref()
    }

    fn decide(&mut self, peer: &PeerId, request: MailboxRequest) -> Result<Action, Refusal> {
        let Some(store) = self.store.clone() else {
            return Err(Refusal::Disabled);
        };
        let metrics = self.metrics.clone();
        let job = |store, kind| {
            Ok(Action::Job(Box::new(Job {
                store,
                metrics,
                kind,
            })))
        };
        match request {
            MailboxRequest::Deposit { mailbox, envelopes, ticket } => {
                let owner = wire::mailbox_owner(&mailbox)?;
                if !self.access.admits(&owner) {
                    return Err(Refusal::NotMember);
                }
                let cost = u32::try_from(envelopes.len()).unwrap_or(u32::MAX);
                self.deposits.check(peer, cost)?;
                if envelopes.is_empty() {
                    return Ok(Action::Respond(MailboxResponse::Deposited {
                        results: Vec::new(),
                    }));
                }
                tracing::debug!(%peer, %owner, envelopes = envelopes.len(), ticket = ticket.is_some(), "deposit");
                job(
                    store,
                    JobKind::Deposit {
                        mailbox,
                        envelopes,
                        now_ms: now_ms(),
                        ticket: ticket.map(|ticket| Box::new(TicketCheck { owner, depositor: *peer, ticket })),
                    },
                )
            }
            MailboxRequest::Challenge => {
                if !self.access.admits(peer) {
                    return Err(Refusal::NotMember);
                }
                // Issuing costs a slot in the challenge table and, later, a signature
                // check: limited per peer, and the table keeps at most
                // `max_challenges_per_peer` of one peer's, so a flood replaces only
                // the flooder's own.
                self.challenges.check(peer, 1)?;
                let nonce = store
                    .issue_challenge(&wire::mailbox_id(peer), now_ms())
                    .map_err(|_| Refusal::BadRequest)?;
                Ok(Action::Respond(MailboxResponse::Challenge { nonce }))
            }
            MailboxRequest::Drain {
                nonce,
                signature,
                after,
                max_items,
            } => {
                let mailbox = self.authorize(&store, peer, &nonce)?;
                wire::verify_drain(peer, &self.relay, &nonce, &signature)?;
                self.metrics.drains.inc();
                tracing::debug!(%peer, after, max_items, "drain");
                job(
                    store,
                    JobKind::Drain {
                        mailbox,
                        after,
                        max_items: usize::try_from(max_items)
                            .unwrap_or(usize::MAX)
                            .clamp(1, MAX_DRAIN_ITEMS),
                    },
                )
            }
            MailboxRequest::Ack {
                nonce,
                signature,
                seqs,
            } => {
                let mailbox = self.authorize(&store, peer, &nonce)?;
                wire::verify_ack(peer, &self.relay, &nonce, &seqs, &signature)?;
                tracing::debug!(%peer, seqs = seqs.len(), "ack");
                job(store, JobKind::Ack { mailbox, seqs })
            }
        }
    }

    /// Checks that `peer` may drain and consumes `nonce` (whatever happens next, so a
    /// nonce is never usable twice); returns the peer's mailbox id.
    fn authorize(
        &self,
        store: &MailboxStore,
        peer: &PeerId,
        nonce: &[u8; wire::NONCE_LEN],
    ) -> Result<Vec<u8>, Refusal> {
        if !self.access.admits(peer) {
            return Err(Refusal::NotMember);
        }
        let mailbox = wire::mailbox_id(peer);
        store
            .take_challenge(&mailbox, nonce, now_ms())
            .map_err(|_| Refusal::BadChallenge)?;
        Ok(mailbox)
    }

    /// The periodic expiry sweep, or `None` when the mailbox role is off.
    pub(crate) fn expire_job(&self) -> Option<Job> {
        Some(Job {
            store: self.store.clone()?,
            metrics: self.metrics.clone(),
            kind: JobKind::Expire { now_ms: now_ms() },
        })
    }

    /// Forgets idle peers in the rate limiters (memory only; no decision changes).
    pub(crate) fn prune(&mut self) {
        self.deposits.prune();
        self.challenges.prune();
    }
}

impl super::jobs::Service for Service {
    type Request = MailboxRequest;
    type Response = MailboxResponse;
    type Job = Job;

    /// Cheap and non-blocking: a refusal is answered at once, disk work becomes a job.
    fn handle(&mut self, peer: &PeerId, request: MailboxRequest) -> Action {
        match self.decide(peer, request) {
            Ok(action) => action,
            Err(refusal) => {
                tracing::debug!(%peer, refusal = refusal.as_str(), "mailbox request refused");
                self.metrics.refused(reason(&refusal));
                Action::Respond(MailboxResponse::Refused(refusal))
            }
        }
    }

    fn run(job: Job) -> MailboxResponse {
        job.run()
    }

    fn busy(&self) -> MailboxResponse {
        self.metrics.refused(RefusalReason::Busy);
        MailboxResponse::Refused(super::jobs::busy())
    }
}

impl Job {
    /// Runs the job. Blocks on disk I/O: call it on the blocking pool. Storage errors
    /// become `Refused(Storage)` (and an error log), never a panic.
    pub(crate) fn run(self) -> MailboxResponse {
        let Job {
            store,
            metrics,
            kind,
        } = self;
        let response = match kind {
            JobKind::Deposit {
                mailbox,
                envelopes,
                now_ms,
                ticket,
            } => {
                let share = ticket.map_or(Share::Open, |check| check.share(now_ms));
                deposit(&store, &metrics, &mailbox, &envelopes, now_ms, share)
            }
            JobKind::Drain {
                mailbox,
                after,
                max_items,
            } => drain(&store, &metrics, &mailbox, after, max_items),
            JobKind::Ack { mailbox, seqs } => match store.ack(&mailbox, &seqs) {
                Ok(removed) => {
                    metrics.acks.inc_by(removed as u64);
                    Ok(MailboxResponse::Acked {
                        removed: u32::try_from(removed).unwrap_or(u32::MAX),
                    })
                }
                Err(e) => Err(e),
            },
            JobKind::Expire { now_ms } => {
                let expired = match store.expire(now_ms) {
                    Ok(expired) => expired,
                    Err(e) => {
                        // Retried at the next sweep; not a refusal of anyone's request.
                        tracing::error!(error = %e, "mailbox expiry sweep failed");
                        metrics.mailbox_store_failed.set(i64::from(store.failed_for_good()));
                        0
                    }
                };
                metrics.expired.inc_by(expired as u64);
                if expired > 0 {
                    tracing::info!(expired, "expired undrained envelopes");
                }
                metrics.set_mailbox_stats(store.stats());
                // Nobody receives this answer; the loop only learns the sweep ended.
                return MailboxResponse::Acked {
                    removed: u32::try_from(expired).unwrap_or(u32::MAX),
                };
            }
        };
        metrics.set_mailbox_stats(store.stats());
        response.unwrap_or_else(|e| {
            tracing::error!(error = %e, "mailbox store failed");
            metrics.mailbox_store_failed.set(i64::from(store.failed_for_good()));
            metrics.refused(RefusalReason::Storage);
            MailboxResponse::Refused(Refusal::Storage)
        })
    }
}

impl TicketCheck {
    /// What the deposit may fill: the whole quota if the ticket admits its bearer,
    /// else the share open to anyone.
    fn share(&self, now_ms: u64) -> Share {
        if wire::ticket_admits(&self.ticket, &self.owner, &self.depositor, now_ms) {
            return Share::Whole;
        }
        tracing::debug!(depositor = %self.depositor, owner = %self.owner, "a deposit ticket that does not admit its bearer");
        Share::Open
    }
}

fn deposit(
    store: &MailboxStore,
    metrics: &Metrics,
    mailbox: &[u8],
    envelopes: &[Vec<u8>],
    now_ms: u64,
    share: Share,
) -> Result<MailboxResponse, store::MailboxError> {
    // `deposit_in` commits and flushes before it returns: the answer built from its
    // outcomes is only ever sent for durable envelopes.
    let outcomes = store.deposit_in(mailbox, envelopes, now_ms, share)?;
    let results = outcomes
        .iter()
        .zip(envelopes)
        .map(|(outcome, envelope)| match *outcome {
            DepositOutcome::Stored { .. } => {
                metrics.deposits.inc();
                metrics.deposited_bytes.inc_by(envelope.len() as u64);
                DepositResult::Stored
            }
            DepositOutcome::Duplicate { .. } => {
                metrics.deposit_duplicates.inc();
                DepositResult::Duplicate
            }
            DepositOutcome::Refused(refusal) => {
                metrics.refused(refusal);
                DepositResult::Refused(wire_refusal(refusal))
            }
        })
        .collect();
    Ok(MailboxResponse::Deposited { results })
}

/// Bytes of a page available to items: the response cap minus the page's own framing.
const PAGE_BUDGET: usize = MAX_RESPONSE_LEN - MAX_PAGE_OVERHEAD;

fn drain(
    store: &MailboxStore,
    metrics: &Metrics,
    mailbox: &[u8],
    after: Option<u64>,
    max_items: usize,
) -> Result<MailboxResponse, store::MailboxError> {
    // With at most `max_items` items, an envelope budget of PAGE_BUDGET minus
    // `max_items` item overheads keeps Σ(len + MAX_ITEM_OVERHEAD) within PAGE_BUDGET.
    let max_bytes = PAGE_BUDGET.saturating_sub(max_items * MAX_ITEM_OVERHEAD);
    // One item more than wanted tells, when it comes, that more follow.
    let mut items = store.list(mailbox, after, max_items + 1, max_bytes)?;
    let mut more = items.len() > max_items;
    items.truncate(max_items);
    if let (false, Some(last)) = (more, items.last()) {
        // The page may have been cut by bytes: look for one more.
        more = !store.list(mailbox, Some(last.seq), 1, 0)?.is_empty();
    }
    let fitting = fitting_prefix(&items);
    if fitting < items.len() {
        // Only envelopes stored under an older, larger size limit can get here.
        if fitting == 0 {
            return Err(store::MailboxError::Corrupt {
                detail: format!(
                    "envelope {} is too large for a drain page",
                    items.first().map_or(0, |i| i.seq)
                ),
            });
        }
        items.truncate(fitting);
        more = true;
    }
    metrics.drained_envelopes.inc_by(items.len() as u64);
    Ok(MailboxResponse::Envelopes {
        items: items
            .into_iter()
            .map(
                |StoredEnvelope {
                     seq,
                     envelope,
                     deposited_at_ms,
                 }| MailItem {
                    seq,
                    envelope,
                    deposited_at_ms,
                },
            )
            .collect(),
        more,
    })
}

/// How many leading items fit in one page.
fn fitting_prefix(items: &[StoredEnvelope]) -> usize {
    let mut used = 0usize;
    items
        .iter()
        .take_while(|item| {
            used = used.saturating_add(item.envelope.len() + MAX_ITEM_OVERHEAD);
            used <= PAGE_BUDGET
        })
        .count()
}

/// The wire form of a store refusal.
pub(crate) fn wire_refusal(refusal: store::Refusal) -> Refusal {
    match refusal {
        store::Refusal::QuotaCount => Refusal::QuotaCount,
        store::Refusal::QuotaBytes => Refusal::QuotaBytes,
        store::Refusal::TooLarge => Refusal::TooLarge,
        store::Refusal::StoreFull => Refusal::StoreFull,
    }
}

/// The metrics label of a wire refusal.
pub(crate) fn reason(refusal: &Refusal) -> RefusalReason {
    match refusal {
        Refusal::QuotaCount => RefusalReason::QuotaCount,
        Refusal::QuotaBytes => RefusalReason::QuotaBytes,
        Refusal::TooLarge => RefusalReason::TooLarge,
        Refusal::StoreFull => RefusalReason::StoreFull,
        Refusal::RateLimited { .. } => RefusalReason::RateLimited,
        Refusal::NotMember => RefusalReason::NotMember,
        Refusal::BadChallenge => RefusalReason::BadChallenge,
        Refusal::Disabled => RefusalReason::Disabled,
        Refusal::Storage => RefusalReason::Storage,
        _ => RefusalReason::BadRequest,
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_p2p::identity::Identity;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::mailbox::MailboxLimits;
    use crate::server::jobs::Service as _;

    struct Fixture {
        _dir: tempfile::TempDir,
        service: Service,
        relay: PeerId,
        metrics: Metrics,
        registry: Registry,
    }

    fn fixture(access: Access, limits: MailboxLimits, rate: u32, burst: u32) -> Fixture {
        fixture_with(
            access,
            limits,
            RateLimiter::new(rate, burst),
            RateLimiter::new(1000, 10_000),
        )
    }

    fn fixture_with(
        access: Access,
        limits: MailboxLimits,
        deposits: RateLimiter,
        challenges: RateLimiter,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = MailboxStore::open(dir.path(), limits).unwrap();
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let relay = Identity::generate().peer_id();
        let service = Service::new(
            Some(store),
            relay,
            access,
            deposits,
            challenges,
            metrics.clone(),
        );
        Fixture {
            _dir: dir,
            service,
            relay,
            metrics,
            registry,
        }
    }

    fn open() -> Fixture {
        fixture(Access::Open, MailboxLimits::default(), 1000, 10_000)
    }

    /// Handles a request, running any job inline.
    fn exec(service: &mut Service, peer: &PeerId, request: MailboxRequest) -> MailboxResponse {
        match service.handle(peer, request) {
            Action::Respond(response) => response,
            Action::Job(job) => job.run(),
        }
    }

    fn challenge(service: &mut Service, peer: &PeerId) -> [u8; wire::NONCE_LEN] {
        match exec(service, peer, MailboxRequest::Challenge) {
            MailboxResponse::Challenge { nonce } => nonce,
            other => panic!("no challenge: {other:?}"),
        }
    }

    fn drain_page(
        f: &mut Fixture,
        owner: &Identity,
        after: Option<u64>,
        max: u32,
    ) -> (Vec<MailItem>, bool) {
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let request = MailboxRequest::drain(owner, &f.relay, nonce, after, max);
        match exec(&mut f.service, &owner.peer_id(), request) {
            MailboxResponse::Envelopes { items, more } => (items, more),
            other => panic!("no page: {other:?}"),
        }
    }

    #[test]
    fn deposit_drain_ack_round_trip() {
        let mut f = open();
        let owner = Identity::generate();
        let sender = PeerId::random();
        let envelopes: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
        let response = exec(
            &mut f.service,
            &sender,
            MailboxRequest::deposit(&owner.peer_id(), envelopes.clone()),
        );
        assert_eq!(
            response,
            MailboxResponse::Deposited {
                results: vec![DepositResult::Stored; 10]
            }
        );
        // Paging: 4 + 4 + 2, `more` exact.
        let (page, more) = drain_page(&mut f, &owner, None, 4);
        assert_eq!((page.len(), more), (4, true));
        let (page2, more) = drain_page(&mut f, &owner, Some(page[3].seq), 4);
        assert_eq!((page2.len(), more), (4, true));
        let (page3, more) = drain_page(&mut f, &owner, Some(page2[3].seq), 4);
        assert_eq!((page3.len(), more), (2, false));
        let all: Vec<Vec<u8>> = [page, page2, page3]
            .concat()
            .into_iter()
            .map(|i| i.envelope)
            .collect();
        assert_eq!(all, envelopes);

        let (items, _) = drain_page(&mut f, &owner, None, 100);
        let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let ack = MailboxRequest::ack(&owner, &f.relay, nonce, seqs);
        assert_eq!(
            exec(&mut f.service, &owner.peer_id(), ack),
            MailboxResponse::Acked { removed: 10 }
        );
        assert_eq!(drain_page(&mut f, &owner, None, 100), (vec![], false));
        let text = crate::metrics::encode(&f.registry).unwrap();
        assert!(text.contains("kith_relay_deposits_total 10"), "{text}");
        assert!(text.contains("kith_relay_acks_total 10"), "{text}");
        assert!(text.contains("kith_relay_mailbox_envelopes 0"), "{text}");
        assert_eq!(f.metrics.drained_envelopes.get(), 20);
    }

    #[test]
    fn challenges_are_single_use_bound_and_signed() {
        let mut f = open();
        let owner = Identity::generate();
        let mallory = Identity::generate();
        exec(
            &mut f.service,
            &PeerId::random(),
            MailboxRequest::deposit(&owner.peer_id(), vec![b"secret".to_vec()]),
        );
        let bad = MailboxResponse::Refused(Refusal::BadChallenge);

        // Replay.
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let request = MailboxRequest::drain(&owner, &f.relay, nonce, None, 10);
        assert!(matches!(
            exec(&mut f.service, &owner.peer_id(), request.clone()),
            MailboxResponse::Envelopes { .. }
        ));
        assert_eq!(exec(&mut f.service, &owner.peer_id(), request), bad);

        // Signed by the wrong key (the nonce is consumed anyway).
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let forged = MailboxRequest::drain(&mallory, &f.relay, nonce, None, 10);
        assert_eq!(exec(&mut f.service, &owner.peer_id(), forged), bad);
        let honest = MailboxRequest::drain(&owner, &f.relay, nonce, None, 10);
        assert_eq!(exec(&mut f.service, &owner.peer_id(), honest), bad);

        // Mallory with the owner's nonce and signature drains only her own mailbox,
        // which the nonce is not bound to.
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let stolen = MailboxRequest::drain(&owner, &f.relay, nonce, None, 10);
        assert_eq!(exec(&mut f.service, &mallory.peer_id(), stolen), bad);
        // Her own valid drain sees an empty mailbox.
        assert_eq!(drain_page(&mut f, &mallory, None, 10), (vec![], false));

        // A signature for another relay.
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let elsewhere = MailboxRequest::drain(&owner, &PeerId::random(), nonce, None, 10);
        assert_eq!(exec(&mut f.service, &owner.peer_id(), elsewhere), bad);

        // An ack's signature covers its sequence numbers.
        let nonce = challenge(&mut f.service, &owner.peer_id());
        let MailboxRequest::Ack {
            nonce, signature, ..
        } = MailboxRequest::ack(&owner, &f.relay, nonce, vec![1])
        else {
            unreachable!()
        };
        let tampered = MailboxRequest::Ack {
            nonce,
            signature,
            seqs: vec![0],
        };
        assert_eq!(exec(&mut f.service, &owner.peer_id(), tampered), bad);
        // Still there.
        assert_eq!(drain_page(&mut f, &owner, None, 10).0.len(), 1);
        assert_eq!(
            f.metrics
                .refusals
                .get_or_create(&crate::metrics::RefusalLabels {
                    reason: RefusalReason::BadChallenge
                })
                .get(),
            6
        );
    }

    #[test]
    fn members_policy() {
        let member = Identity::generate();
        let stranger = Identity::generate();
        let members = Arc::new(HashSet::from([member.peer_id()]));
        let mut f = fixture(
            Access::Members(members),
            MailboxLimits::default(),
            1000,
            1000,
        );
        let not_member = MailboxResponse::Refused(Refusal::NotMember);
        // Anyone (even a stranger) may deposit for a member, nobody for a stranger.
        let to_member = MailboxRequest::deposit(&member.peer_id(), vec![b"x".to_vec()]);
        assert!(matches!(
            exec(&mut f.service, &stranger.peer_id(), to_member),
            MailboxResponse::Deposited { .. }
        ));
        let to_stranger = MailboxRequest::deposit(&stranger.peer_id(), vec![b"x".to_vec()]);
        assert_eq!(
            exec(&mut f.service, &member.peer_id(), to_stranger),
            not_member
        );
        assert_eq!(
            exec(
                &mut f.service,
                &stranger.peer_id(),
                MailboxRequest::Challenge
            ),
            not_member
        );
        assert_eq!(drain_page(&mut f, &member, None, 10).0.len(), 1);
    }

    #[test]
    fn rate_limit_and_bad_requests() {
        let mut f = fixture(Access::Open, MailboxLimits::default(), 1, 3);
        let owner = PeerId::random();
        let sender = PeerId::random();
        let batch = |n: u8| MailboxRequest::deposit(&owner, (0..n).map(|i| vec![i]).collect());
        assert!(matches!(
            exec(&mut f.service, &sender, batch(3)),
            MailboxResponse::Deposited { .. }
        ));
        assert!(matches!(
            exec(&mut f.service, &sender, batch(1)),
            MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms }) if retry_after_ms > 0
        ));
        // Another sender has its own budget.
        assert!(matches!(
            exec(&mut f.service, &PeerId::random(), batch(1)),
            MailboxResponse::Deposited { .. }
        ));
        let garbage = MailboxRequest::Deposit {
            mailbox: b"not a peer id".to_vec(),
            envelopes: vec![vec![1]],
            ticket: None,
        };
        assert_eq!(
            exec(&mut f.service, &sender, garbage),
            MailboxResponse::Refused(Refusal::BadRequest)
        );
    }

    #[test]
    fn challenges_are_rate_limited_per_peer_and_a_flood_keeps_others_valid() {
        let limits = MailboxLimits {
            max_pending_challenges: 16,
            max_challenges_per_mailbox: 2,
            ..MailboxLimits::default()
        };
        let mut f = fixture_with(
            Access::Open,
            limits,
            RateLimiter::new(1000, 1000),
            RateLimiter::new(1, 5),
        );
        let owner = Identity::generate();
        let mallory = PeerId::random();
        exec(
            &mut f.service,
            &mallory,
            MailboxRequest::deposit(&owner.peer_id(), vec![b"mail".to_vec()]),
        );
        let nonce = challenge(&mut f.service, &owner.peer_id());
        // The burst, then typed refusals with a wait; counted by kind and reason.
        let answers: Vec<MailboxResponse> = (0..20)
            .map(|_| exec(&mut f.service, &mallory, MailboxRequest::Challenge))
            .collect();
        let issued = answers
            .iter()
            .filter(|a| matches!(a, MailboxResponse::Challenge { .. }))
            .count();
        assert_eq!(issued, 5);
        assert!(answers[5..].iter().all(|a| matches!(
            a,
            MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms }) if *retry_after_ms > 0
        )));
        let text = crate::metrics::encode(&f.registry).unwrap();
        assert!(
            text.contains("kith_relay_rate_limited_total{request=\"challenge\"} 15"),
            "{text}"
        );
        assert!(
            text.contains("kith_relay_refusals_total{reason=\"rate_limited\"} 15"),
            "{text}"
        );
        // The owner's challenge survived Mallory's five (she holds at most two).
        let drain = MailboxRequest::drain(&owner, &f.relay, nonce, None, 10);
        assert!(matches!(
            exec(&mut f.service, &owner.peer_id(), drain),
            MailboxResponse::Envelopes { items, .. } if items.len() == 1
        ));
    }

    #[test]
    fn quotas_map_per_envelope() {
        let limits = MailboxLimits {
            max_messages_per_mailbox: 2,
            max_envelope_bytes: 10,
            max_bytes_per_mailbox: 100,
            open_share_percent: 100,
            ..MailboxLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        let owner = PeerId::random();
        let request = MailboxRequest::deposit(
            &owner,
            vec![
                b"a".to_vec(),
                vec![0; 11],
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
            ],
        );
        assert_eq!(
            exec(&mut f.service, &PeerId::random(), request),
            MailboxResponse::Deposited {
                results: vec![
                    DepositResult::Stored,
                    DepositResult::Refused(Refusal::TooLarge),
                    DepositResult::Duplicate,
                    DepositResult::Stored,
                    DepositResult::Refused(Refusal::QuotaCount),
                ]
            }
        );
    }

    /// Depositors without the owner's ticket fill only the open share of a mailbox;
    /// the ticket's holder fills the rest. A ticket borrowed by another peer, made for
    /// another mailbox, expired or not signed by the owner counts as none.
    #[test]
    fn a_deposit_ticket_opens_the_whole_quota_to_its_holder_alone() {
        let limits = MailboxLimits {
            max_messages_per_mailbox: 8,
            open_share_percent: 25,
            ..MailboxLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        let (owner, contact, stranger) = (Identity::generate(), Identity::generate(), Identity::generate());
        let deposit = |f: &mut Fixture, from: &Identity, what: &str, ticket: Option<wire::DepositTicket>| {
            let request = MailboxRequest::deposit_with(&owner.peer_id(), vec![what.as_bytes().to_vec()], ticket);
            match exec(&mut f.service, &from.peer_id(), request) {
                MailboxResponse::Deposited { results } => results[0],
                other => panic!("{other:?}"),
            }
        };
        let refused = DepositResult::Refused(Refusal::QuotaCount);
        // The stranger's requests fill the open quarter, two envelopes, and stop.
        assert_eq!(deposit(&mut f, &stranger, "request 1", None), DepositResult::Stored);
        assert_eq!(deposit(&mut f, &stranger, "request 2", None), DepositResult::Stored);
        assert_eq!(deposit(&mut f, &stranger, "request 3", None), refused);
        // The owner's contact, with its ticket, still deposits.
        let far = now_ms() + 3_600_000;
        let ticket = wire::sign_ticket(&owner, &contact.peer_id(), far);
        assert_eq!(deposit(&mut f, &contact, "mail 1", Some(ticket.clone())), DepositResult::Stored);
        assert_eq!(deposit(&mut f, &contact, "mail 2", None), refused, "not without it");
        // Tickets that do not admit their bearer count as none.
        let not_admitted = [
            (&stranger, ticket.clone()),
            (&contact, wire::sign_ticket(&owner, &contact.peer_id(), now_ms() - 1)),
            (&contact, wire::sign_ticket(&contact, &contact.peer_id(), far)),
            (&contact, wire::DepositTicket { not_after_ms: far + 1, ..ticket.clone() }),
        ];
        for (n, (bearer, bad)) in not_admitted.into_iter().enumerate() {
            assert_eq!(deposit(&mut f, bearer, &format!("bad {n}"), Some(bad)), refused, "ticket {n}");
        }
        // The contact fills the whole quota: eight with the stranger's two.
        for n in 2..=6 {
            assert_eq!(deposit(&mut f, &contact, &format!("mail {n}"), Some(ticket.clone())), DepositResult::Stored, "mail {n}");
        }
        assert_eq!(deposit(&mut f, &contact, "mail 7", Some(ticket)), refused);
        let (items, _) = drain_page(&mut f, &owner, None, 100);
        assert_eq!(items.len(), 8);
    }

    /// The store-wide envelope count reaches the sender as `store_full`, per
    /// envelope, whichever mailbox it is for, and is counted under that reason.
    #[test]
    fn a_store_full_of_tiny_envelopes_refuses_other_mailboxes_as_store_full() {
        let limits = MailboxLimits {
            max_total_envelopes: 2,
            ..MailboxLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        let sender = PeerId::random();
        let first = MailboxRequest::deposit(&PeerId::random(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(matches!(
            exec(&mut f.service, &sender, first),
            MailboxResponse::Deposited { ref results } if results == &[DepositResult::Stored; 2]
        ));
        let other = MailboxRequest::deposit(&PeerId::random(), vec![b"c".to_vec()]);
        assert_eq!(
            exec(&mut f.service, &PeerId::random(), other),
            MailboxResponse::Deposited {
                results: vec![DepositResult::Refused(Refusal::StoreFull)]
            }
        );
        let text = crate::metrics::encode(&f.registry).unwrap();
        crate::metrics::assert_lines(&text, [
            "kith_relay_refusals_total{reason=\"store_full\"} 1",
            "kith_relay_mailbox_envelopes 2",
        ]);
    }

    #[test]
    fn expiry_sweep_counts_and_updates_gauges() {
        let limits = MailboxLimits {
            ttl: std::time::Duration::ZERO,
            ..MailboxLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        let owner = PeerId::random();
        let request = MailboxRequest::deposit(&owner, vec![b"a".to_vec(), b"b".to_vec()]);
        exec(&mut f.service, &PeerId::random(), request);
        assert_eq!(f.metrics.mailbox_envelopes.get(), 2);
        let job = f.service.expire_job().unwrap();
        assert_eq!(job.run(), MailboxResponse::Acked { removed: 2 });
        assert_eq!(f.metrics.expired.get(), 2);
        assert_eq!(f.metrics.mailbox_envelopes.get(), 0);
    }

    #[test]
    fn disabled_refuses_everything() {
        let mut registry = Registry::default();
        let mut service = Service::new(
            None,
            PeerId::random(),
            Access::Open,
            RateLimiter::new(1, 1),
            RateLimiter::new(1, 1),
            Metrics::new(&mut registry),
        );
        assert!(service.expire_job().is_none());
        assert!(matches!(
            service.handle(&PeerId::random(), MailboxRequest::Challenge),
            Action::Respond(MailboxResponse::Refused(Refusal::Disabled))
        ));
    }

    #[test]
    fn pages_fit_the_response_cap() {
        let limits = MailboxLimits {
            max_envelope_bytes: 256 * 1024,
            ..MailboxLimits::default()
        };
        let mut f = fixture(Access::Open, limits, 1000, 1000);
        let owner = Identity::generate();
        // 40 envelopes of 256 KiB = 10 MiB: more than one 8 MiB page.
        for chunk in 0..5u8 {
            let envelopes = (0..8u8).map(|i| vec![chunk * 8 + i; 256 * 1024]).collect();
            let response = exec(
                &mut f.service,
                &PeerId::random(),
                MailboxRequest::deposit(&owner.peer_id(), envelopes),
            );
            assert!(matches!(response, MailboxResponse::Deposited { .. }));
        }
        let (page, more) = drain_page(&mut f, &owner, None, 256);
        assert!(more);
        assert!(page.len() < 40 && !page.is_empty());
        let used: usize = page
            .iter()
            .map(|i| i.envelope.len() + MAX_ITEM_OVERHEAD)
            .sum();
        assert!(MAX_PAGE_OVERHEAD + used <= MAX_RESPONSE_LEN);
        let (rest, more) = drain_page(&mut f, &owner, Some(page.last().unwrap().seq), 256);
        assert_eq!((page.len() + rest.len(), more), (40, false));
    }
}
