//! The relay's Prometheus metrics: a typed group registered under the `kith_relay_`
//! prefix, every metric with help text.
//!
//! [`Metrics::new`] registers into a caller's [`Registry`], so the same registry can
//! also carry libp2p's metrics; [`encode`] renders a registry in the OpenMetrics text
//! format served at `/metrics` (see [`crate::http`]). Counters get the `_total`
//! suffix (and byte metrics a `_bytes` unit) from prometheus-client.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use kith_relay::metrics::{encode, Metrics};
//!
//! let mut registry = Registry::default();
//! let metrics = Metrics::new(&mut registry);
//! metrics.deposits.inc();
//! assert!(encode(&registry)?.contains("kith_relay_deposits_total 1"));
//! # Ok::<(), std::fmt::Error>(())
//! ```

use std::fmt::{self, Write};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use kith_p2p::conn_limits::Limit;

use crate::grouplog::GroupLogStats;
use crate::mailbox::{MailboxStats, Refusal};

/// The prefix of every relay metric name.
pub const PREFIX: &str = "kith_relay";

/// The relay's metrics. Cheap to clone (every metric is an `Arc`); update from any
/// thread.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Metrics {
    /// Open connections.
    pub connections: Gauge,
    /// Circuit relay reservations currently held.
    pub reservations_active: Gauge,
    /// Circuit relay reservations accepted.
    pub reservations_accepted: Counter,
    /// Circuits relayed.
    pub circuits: Counter,
    /// Circuits open now.
    pub circuits_active: Gauge,
    /// Envelopes stored by deposits.
    pub deposits: Counter,
    /// Bytes of envelopes stored by deposits.
    pub deposited_bytes: Counter,
    /// Deposited envelopes that were already held (not stored again).
    pub deposit_duplicates: Counter,
    /// Drains started (challenges answered correctly).
    pub drains: Counter,
    /// Envelopes handed to mailbox owners.
    pub drained_envelopes: Counter,
    /// Envelopes acknowledged (and deleted) by mailbox owners.
    pub acks: Counter,
    /// Envelopes deleted unread after the TTL.
    pub expired: Counter,
    /// Mailboxes holding at least one envelope.
    pub mailboxes: Gauge,
    /// Envelopes held in all mailboxes (queue depth).
    pub mailbox_envelopes: Gauge,
    /// Bytes of envelopes held in all mailboxes.
    pub mailbox_bytes: Gauge,
    /// Records held in the DHT record store.
    pub dht_records: Gauge,
    /// Mailbox requests refused, by reason.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Items stored by group log appends.
    pub grouplog_appends: Counter,
    /// Bytes of items stored by group log appends.
    pub grouplog_appended_bytes: Counter,
    /// Appended items the log already held (not stored again).
    pub grouplog_duplicates: Counter,
    /// Group log fetches answered with a page.
    pub grouplog_fetches: Counter,
    /// Items handed out by group log fetches.
    pub grouplog_fetched_items: Counter,
    /// Group log items deleted after the TTL.
    pub grouplog_expired: Counter,
    /// Group logs holding at least one item.
    pub grouplog_logs: Gauge,
    /// Items held in all group logs.
    pub grouplog_items: Gauge,
    /// Bytes of items held in all group logs.
    pub grouplog_bytes: Gauge,
    /// Group log requests refused, by reason (the same reasons as [`Metrics::refusals`]).
    pub grouplog_refusals: Family<RefusalLabels, Counter>,
    /// Incoming connections refused, by the limit that refused them.
    pub connections_refused: Family<LimitLabels, Counter>,
    /// Requests refused by a per-peer rate limit, by kind of request (also counted
    /// as `rate_limited` in [`Metrics::refusals`] or [`Metrics::grouplog_refusals`]).
    pub rate_limited: Family<RequestLabels, Counter>,
}

/// Labels of [`Metrics::connections_refused`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The limit that refused the connection.
    pub limit: LimitLabel,
}

/// A connection limit as the `limit` label of `kith_relay_connections_refused_total`:
/// `pending_incoming`, `incoming`, `total`, `per_peer`, `per_ip` or `memory`
/// ([`Limit::as_str`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct LimitLabel(pub Limit);

impl EncodeLabelValue for LimitLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// Labels of [`Metrics::rate_limited`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The kind of request.
    pub request: LimitedRequest,
}

/// A kind of request with its own per-peer rate limit, as the `request` label of
/// `kith_relay_rate_limited_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitedRequest {
    /// `deposit`: mailbox deposits (one token per envelope).
    Deposit,
    /// `challenge`: mailbox drain challenges (each drain page and ack needs one).
    Challenge,
    /// `append`: group log appends (one token per item).
    Append,
    /// `fetch`: group log fetches (one token per page asked for).
    Fetch,
}

impl LimitedRequest {
    /// Every kind, in label order.
    pub const ALL: [LimitedRequest; 4] = [
        LimitedRequest::Deposit,
        LimitedRequest::Challenge,
        LimitedRequest::Append,
        LimitedRequest::Fetch,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedRequest::Deposit => "deposit",
            LimitedRequest::Challenge => "challenge",
            LimitedRequest::Append => "append",
            LimitedRequest::Fetch => "fetch",
        }
    }
}

impl EncodeLabelValue for LimitedRequest {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Labels of [`Metrics::refusals`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why the request was refused.
    pub reason: RefusalReason,
}

/// Why a request was refused, as the `reason` label of `kith_relay_refusals_total`
/// (mailbox) and `kith_relay_grouplog_refusals_total` (group log).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// `quota_count`: the mailbox holds its maximum number of envelopes.
    QuotaCount,
    /// `quota_bytes`: the mailbox holds its maximum number of bytes.
    QuotaBytes,
    /// `too_large`: the envelope exceeds the size limit.
    TooLarge,
    /// `store_full`: the relay's total mailbox space is used up.
    StoreFull,
    /// `rate_limited`: the sender exceeded its rate.
    RateLimited,
    /// `not_member`: the access policy does not admit the peer.
    NotMember,
    /// `bad_challenge`: a drain with an unknown, used or expired challenge, or a bad
    /// signature.
    BadChallenge,
    /// `bad_request`: a malformed request.
    BadRequest,
    /// `disabled`: a request while its role (mailbox or group log) is off.
    Disabled,
    /// `storage`: the store failed.
    Storage,
    /// `busy`: too many requests of the role in progress (answered as rate limited).
    Busy,
}

impl RefusalReason {
    /// Every reason, in label order.
    pub const ALL: [RefusalReason; 11] = [
        RefusalReason::QuotaCount,
        RefusalReason::QuotaBytes,
        RefusalReason::TooLarge,
        RefusalReason::StoreFull,
        RefusalReason::RateLimited,
        RefusalReason::NotMember,
        RefusalReason::BadChallenge,
        RefusalReason::BadRequest,
        RefusalReason::Disabled,
        RefusalReason::Storage,
        RefusalReason::Busy,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::QuotaCount => "quota_count",
            RefusalReason::QuotaBytes => "quota_bytes",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::StoreFull => "store_full",
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::NotMember => "not_member",
            RefusalReason::BadChallenge => "bad_challenge",
            RefusalReason::BadRequest => "bad_request",
            RefusalReason::Disabled => "disabled",
            RefusalReason::Storage => "storage",
            RefusalReason::Busy => "busy",
        }
    }
}

impl EncodeLabelValue for RefusalReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl From<Refusal> for RefusalReason {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::QuotaCount => RefusalReason::QuotaCount,
            Refusal::QuotaBytes => RefusalReason::QuotaBytes,
            Refusal::TooLarge => RefusalReason::TooLarge,
            Refusal::StoreFull => RefusalReason::StoreFull,
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` under [`PREFIX`].
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            connections: Gauge::default(),
            reservations_active: Gauge::default(),
            reservations_accepted: Counter::default(),
            circuits: Counter::default(),
            circuits_active: Gauge::default(),
            deposits: Counter::default(),
            deposited_bytes: Counter::default(),
            deposit_duplicates: Counter::default(),
            drains: Counter::default(),
            drained_envelopes: Counter::default(),
            acks: Counter::default(),
            expired: Counter::default(),
            mailboxes: Gauge::default(),
            mailbox_envelopes: Gauge::default(),
            mailbox_bytes: Gauge::default(),
            dht_records: Gauge::default(),
            refusals: Family::default(),
            grouplog_appends: Counter::default(),
            grouplog_appended_bytes: Counter::default(),
            grouplog_duplicates: Counter::default(),
            grouplog_fetches: Counter::default(),
            grouplog_fetched_items: Counter::default(),
            grouplog_expired: Counter::default(),
            grouplog_logs: Gauge::default(),
            grouplog_items: Gauge::default(),
            grouplog_bytes: Gauge::default(),
            grouplog_refusals: Family::default(),
            connections_refused: Family::default(),
            rate_limited: Family::default(),
        };
        let r = registry.sub_registry_with_prefix(PREFIX);
        let m = metrics.clone();
        r.register("connections", "Open connections", m.connections);
        r.register(
            "reservations_active",
            "Circuit relay reservations currently held",
            m.reservations_active,
        );
        r.register(
            "reservations_accepted",
            "Circuit relay reservations accepted",
            m.reservations_accepted,
        );
        r.register("circuits", "Circuits relayed", m.circuits);
        r.register("circuits_active", "Circuits open now", m.circuits_active);
        r.register("deposits", "Envelopes stored in mailboxes", m.deposits);
        r.register_with_unit(
            "deposited",
            "Bytes of envelopes stored in mailboxes",
            Unit::Bytes,
            m.deposited_bytes,
        );
        r.register(
            "deposit_duplicates",
            "Deposited envelopes already held, not stored again",
            m.deposit_duplicates,
        );
        r.register(
            "drains",
            "Mailbox drains started after a valid challenge",
            m.drains,
        );
        r.register(
            "drained_envelopes",
            "Envelopes handed to mailbox owners",
            m.drained_envelopes,
        );
        r.register(
            "acks",
            "Envelopes acknowledged and deleted by mailbox owners",
            m.acks,
        );
        r.register(
            "expired",
            "Envelopes deleted unread after the mailbox TTL",
            m.expired,
        );
        r.register(
            "mailboxes",
            "Mailboxes holding at least one envelope",
            m.mailboxes,
        );
        r.register(
            "mailbox_envelopes",
            "Envelopes held in all mailboxes (queue depth)",
            m.mailbox_envelopes,
        );
        r.register_with_unit(
            "mailbox",
            "Bytes of envelopes held in all mailboxes",
            Unit::Bytes,
            m.mailbox_bytes,
        );
        r.register(
            "dht_records",
            "Records held in the DHT record store",
            m.dht_records,
        );
        r.register(
            "refusals",
            "Mailbox requests refused, by reason",
            m.refusals,
        );
        r.register(
            "grouplog_appends",
            "Items stored in group logs",
            m.grouplog_appends,
        );
        r.register_with_unit(
            "grouplog_appended",
            "Bytes of items stored in group logs",
            Unit::Bytes,
            m.grouplog_appended_bytes,
        );
        r.register(
            "grouplog_duplicates",
            "Appended group log items already held, not stored again",
            m.grouplog_duplicates,
        );
        r.register(
            "grouplog_fetches",
            "Group log fetches answered with a page",
            m.grouplog_fetches,
        );
        r.register(
            "grouplog_fetched_items",
            "Items handed out by group log fetches",
            m.grouplog_fetched_items,
        );
        r.register(
            "grouplog_expired",
            "Group log items deleted after the TTL",
            m.grouplog_expired,
        );
        r.register(
            "grouplog_logs",
            "Group logs holding at least one item",
            m.grouplog_logs,
        );
        r.register(
            "grouplog_items",
            "Items held in all group logs",
            m.grouplog_items,
        );
        r.register_with_unit(
            "grouplog",
            "Bytes of items held in all group logs",
            Unit::Bytes,
            m.grouplog_bytes,
        );
        r.register(
            "grouplog_refusals",
            "Group log requests refused, by reason",
            m.grouplog_refusals,
        );
        r.register(
            "connections_refused",
            "Incoming connections refused, by the limit that refused them",
            m.connections_refused,
        );
        r.register(
            "rate_limited",
            "Requests refused by a per-peer rate limit, by kind of request",
            m.rate_limited,
        );
        // Every label is exported from the start (at 0), so rates and alerts work
        // before the first refusal.
        for limit in Limit::ALL {
            drop(metrics.connections_refused.get_or_create(&LimitLabels {
                limit: LimitLabel(limit),
            }));
        }
        for request in LimitedRequest::ALL {
            drop(
                metrics
                    .rate_limited
                    .get_or_create(&RequestLabels { request }),
            );
        }
        for reason in RefusalReason::ALL {
            drop(metrics.refusals.get_or_create(&RefusalLabels { reason }));
            drop(
                metrics
                    .grouplog_refusals
                    .get_or_create(&RefusalLabels { reason }),
            );
        }
        metrics
    }

    /// Counts one refusal.
    pub fn refused(&self, reason: impl Into<RefusalReason>) {
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts one incoming connection refused by `limit`.
    pub fn connection_refused(&self, limit: Limit) {
        self.connections_refused
            .get_or_create(&LimitLabels {
                limit: LimitLabel(limit),
            })
            .inc();
    }

    /// Counts one request of kind `request` refused by its rate limit.
    pub fn rate_limited(&self, request: LimitedRequest) {
        self.rate_limited
            .get_or_create(&RequestLabels { request })
            .inc();
    }

    /// Counts one refused group log request.
    pub fn grouplog_refused(&self, reason: impl Into<RefusalReason>) {
        self.grouplog_refusals
            .get_or_create(&RefusalLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Sets the group log gauges from the store's totals.
    pub fn set_grouplog_stats(&self, stats: GroupLogStats) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.grouplog_logs.set(gauge(stats.logs));
        self.grouplog_items.set(gauge(stats.items));
        self.grouplog_bytes.set(gauge(stats.bytes));
    }

    /// Sets the mailbox gauges from the store's totals.
    pub fn set_mailbox_stats(&self, stats: MailboxStats) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.mailboxes.set(gauge(stats.mailboxes));
        self.mailbox_envelopes.set(gauge(stats.envelopes));
        self.mailbox_bytes.set(gauge(stats.bytes));
    }
}

/// Renders `registry` in the OpenMetrics text format (content type
/// [`crate::http::OPENMETRICS_CONTENT_TYPE`]).
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_typed_and_documented() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.deposits.inc_by(3);
        metrics.deposited_bytes.inc_by(300);
        metrics.refused(Refusal::QuotaBytes);
        metrics.refused(RefusalReason::RateLimited);
        metrics.refused(RefusalReason::RateLimited);
        metrics.set_mailbox_stats(MailboxStats {
            mailboxes: 2,
            envelopes: 5,
            bytes: 500,
        });
        metrics.grouplog_appends.inc_by(2);
        metrics.grouplog_appended_bytes.inc_by(20);
        metrics.grouplog_refused(Refusal::QuotaCount);
        metrics.set_grouplog_stats(GroupLogStats {
            logs: 1,
            items: 4,
            bytes: 40,
        });
        metrics.connection_refused(Limit::PerIp);
        metrics.rate_limited(LimitedRequest::Challenge);
        let text = encode(&registry).unwrap();
        for line in [
            "# TYPE kith_relay_deposits counter",
            "# HELP kith_relay_deposits Envelopes stored in mailboxes.",
            "kith_relay_deposits_total 3",
            "kith_relay_deposited_bytes_total 300",
            "kith_relay_refusals_total{reason=\"quota_bytes\"} 1",
            "kith_relay_refusals_total{reason=\"rate_limited\"} 2",
            "kith_relay_refusals_total{reason=\"busy\"} 0",
            "kith_relay_mailbox_envelopes 5",
            "kith_relay_mailbox_bytes 500",
            "kith_relay_mailboxes 2",
            "kith_relay_connections 0",
            "kith_relay_dht_records 0",
            "kith_relay_grouplog_refusals_total{reason=\"quota_count\"} 1",
            "kith_relay_grouplog_refusals_total{reason=\"not_member\"} 0",
            "kith_relay_grouplog_appends_total 2",
            "kith_relay_grouplog_appended_bytes_total 20",
            "kith_relay_grouplog_items 4",
            "kith_relay_grouplog_bytes 40",
            "kith_relay_grouplog_logs 1",
            "# HELP kith_relay_connections_refused Incoming connections refused, by the limit that refused them.",
            "kith_relay_connections_refused_total{limit=\"per_ip\"} 1",
            "kith_relay_connections_refused_total{limit=\"memory\"} 0",
            "# TYPE kith_relay_rate_limited counter",
            "kith_relay_rate_limited_total{request=\"challenge\"} 1",
            "kith_relay_rate_limited_total{request=\"fetch\"} 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!((types, helps), (29, 29));
    }
}
