//! The relay's Prometheus metrics: a typed group registered under the `kith_relay_`
//! prefix, every metric with help text.
//!
//! [`Metrics::for_config`] registers into a caller's [`Registry`] what a relay run
//! with that config has: `kith_relay_build_info`, the process metrics
//! ([`crate::process`]), and for each role that is on its families and a `_limit`
//! gauge for each configured capacity beside the usage it bounds (a role that is
//! off has no families, so it shows as absent, not idle). [`Exposition`] is what
//! `/metrics` serves (see [`crate::http`]): that registry plus libp2p's, trimmed to
//! the roles that are on and with its label values in snake case like ours.
//! [`encode`] renders one registry in the OpenMetrics text format. Counters get the
//! `_total` suffix (and byte metrics a `_bytes` unit) from prometheus-client.
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

use crate::config::RelayConfig;
use crate::grouplog::GroupLogStats;
use crate::mailbox::{MailboxStats, Refusal};
use crate::media::MediaStats;
use crate::process::ProcessCollector;

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
    /// Mailbox jobs (disk work) in flight, beside `mailbox.max_jobs`.
    pub mailbox_jobs: Gauge,
    /// 1 once the mailbox store has failed for good (it refuses every request
    /// with `storage` until the relay restarts), else 0.
    pub mailbox_store_failed: Gauge,
    /// The same for the group log store.
    pub grouplog_store_failed: Gauge,
    /// Group log jobs (disk work) in flight, beside `grouplog.max_jobs`.
    pub grouplog_jobs: Gauge,
    /// Blobs the media role holds.
    pub media_blobs: Gauge,
    /// Sealed bytes the media role holds.
    pub media_bytes: Gauge,
    /// Uploads pulled and stored.
    pub media_uploads: Counter,
    /// Sealed bytes stored by uploads.
    pub media_uploaded_bytes: Counter,
    /// Uploads of blobs already held (lifetime renewed, nothing stored).
    pub media_upload_duplicates: Counter,
    /// Uploads being pulled now, beside `media.max_uploads`.
    pub media_uploads_active: Gauge,
    /// Uploads refused, by reason.
    pub media_refusals: Family<MediaRefusalLabels, Counter>,
    /// Sealed bytes served over `/kith/blob/1`.
    pub media_served_bytes: Counter,
    /// Blobs deleted after the TTL.
    pub media_expired: Counter,
    /// TURN allocations held now (one per call end relayed).
    pub turn_allocations: Gauge,
    /// Payload bytes the TURN server relayed, both ways.
    pub turn_relayed_bytes: Counter,
    /// Packets the TURN server dropped: over an allocation's rate, or without permission.
    pub turn_dropped_packets: Counter,
    /// TURN allocations refused for a quota.
    pub turn_refused_allocations: Counter,
    /// Voice rooms held now.
    pub rooms: Gauge,
    /// Participants in all voice rooms now.
    pub room_participants: Gauge,
}

/// Labels of [`Metrics::media_refusals`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaRefusalLabels {
    /// Why the upload was refused.
    pub reason: MediaRefusalReason,
}

/// Why an upload was refused, as the `reason` label of
/// `kith_relay_media_refusals_total` (the mailbox's words where they mean the same).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaRefusalReason {
    /// `not_member`: the access policy does not admit the uploader.
    NotMember,
    /// `too_large`: the blob exceeds `media.max_blob_bytes`.
    TooLarge,
    /// `quota_bytes`: the uploader's quota (`media.max_bytes_per_uploader`) is full.
    QuotaBytes,
    /// `store_full`: `media.max_total_bytes` is used up.
    StoreFull,
    /// `fetch_failed`: the blob could not be pulled from the uploader (or did not
    /// match what it declared).
    FetchFailed,
    /// `busy`: `media.max_uploads` uploads in progress, or this blob is.
    Busy,
    /// `bad_request`: a malformed request or an unknown version.
    BadRequest,
    /// `storage`: the store failed.
    Storage,
}

impl MediaRefusalReason {
    /// Every reason, in label order.
    pub const ALL: [MediaRefusalReason; 8] = [
        MediaRefusalReason::NotMember,
        MediaRefusalReason::TooLarge,
        MediaRefusalReason::QuotaBytes,
        MediaRefusalReason::StoreFull,
        MediaRefusalReason::FetchFailed,
        MediaRefusalReason::Busy,
        MediaRefusalReason::BadRequest,
        MediaRefusalReason::Storage,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaRefusalReason::NotMember => "not_member",
            MediaRefusalReason::TooLarge => "too_large",
            MediaRefusalReason::QuotaBytes => "quota_bytes",
            MediaRefusalReason::StoreFull => "store_full",
            MediaRefusalReason::FetchFailed => "fetch_failed",
            MediaRefusalReason::Busy => "busy",
            MediaRefusalReason::BadRequest => "bad_request",
            MediaRefusalReason::Storage => "storage",
        }
    }
}

impl EncodeLabelValue for MediaRefusalReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Labels of `kith_relay_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The crate version the relay was built from.
    version: &'static str,
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
    /// `store_full`: the store as a whole is full (its total bytes, or its total
    /// envelopes or items).
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
    /// Creates the metrics and registers them in `registry` under [`PREFIX`], as
    /// for a relay with every role on and the default limits
    /// ([`Metrics::for_config`] of [`RelayConfig::default`]).
    pub fn new(registry: &mut Registry) -> Metrics {
        Metrics::for_config(registry, &RelayConfig::default())
    }

    /// Creates the metrics for a relay run with `config` and registers them in
    /// `registry`: `kith_relay_build_info`, the process metrics, and for each role
    /// that is on its families and the gauges of its configured capacities (each
    /// named after the usage it bounds, with `_limit`: `kith_relay_circuits_limit`
    /// next to `kith_relay_circuits_active`). A role that is off has no families at
    /// all, so a dashboard shows it as absent rather than idle.
    pub fn for_config(registry: &mut Registry, config: &RelayConfig) -> Metrics {
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
            mailbox_jobs: Gauge::default(),
            mailbox_store_failed: Gauge::default(),
            grouplog_store_failed: Gauge::default(),
            grouplog_jobs: Gauge::default(),
            media_blobs: Gauge::default(),
            media_bytes: Gauge::default(),
            media_uploads: Counter::default(),
            media_uploaded_bytes: Counter::default(),
            media_upload_duplicates: Counter::default(),
            media_uploads_active: Gauge::default(),
            media_refusals: Family::default(),
            media_served_bytes: Counter::default(),
            media_expired: Counter::default(),
            turn_allocations: Gauge::default(),
            turn_relayed_bytes: Counter::default(),
            turn_dropped_packets: Counter::default(),
            turn_refused_allocations: Counter::default(),
            rooms: Gauge::default(),
            room_participants: Gauge::default(),
        };
        registry.register_collector(Box::new(ProcessCollector::new(
            config.connections.limits().max_memory,
        )));
        let r = registry.sub_registry_with_prefix(PREFIX);
        let m = metrics.clone();
        // A capacity is set once: the config does not change while the relay runs.
        let limit = |value: u64| {
            let gauge: Gauge = Gauge::default();
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            gauge
        };

        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "The relay's version, as a label; the value is always 1",
            build_info,
        );

        r.register("connections", "Open connections", m.connections);
        r.register(
            "connections_limit",
            "Connections the relay holds at most (connections.max_established)",
            limit(config.connections.max_established.into()),
        );
        r.register(
            "connections_refused",
            "Incoming connections refused, by the limit that refused them",
            m.connections_refused,
        );
        // Every label is exported from the start (at 0), so rates and alerts work
        // before the first refusal.
        for limit in Limit::ALL {
            drop(metrics.connections_refused.get_or_create(&LimitLabels {
                limit: LimitLabel(limit),
            }));
        }

        if config.circuit.enabled {
            let c = &config.circuit;
            r.register(
                "reservations_active",
                "Circuit relay reservations currently held",
                m.reservations_active,
            );
            r.register(
                "reservations_limit",
                "Circuit relay reservations held at most (circuit.max_reservations)",
                limit(c.max_reservations.into()),
            );
            r.register(
                "reservations_accepted",
                "Circuit relay reservations accepted",
                m.reservations_accepted,
            );
            r.register("circuits", "Circuits relayed", m.circuits);
            r.register("circuits_active", "Circuits open now", m.circuits_active);
            r.register(
                "circuits_limit",
                "Circuits relayed at once at most (circuit.max_circuits)",
                limit(c.max_circuits.into()),
            );
        }

        if config.dht.enabled {
            r.register(
                "dht_records",
                "Records held in the DHT record store",
                m.dht_records,
            );
            r.register(
                "dht_records_limit",
                "DHT records held at most (dht.max_records)",
                limit(config.dht.max_records.into()),
            );
        }

        if config.mailbox.enabled {
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
            r.register(
                "mailbox_envelopes_limit",
                "Envelopes all mailboxes hold at most (mailbox.max_total_envelopes)",
                limit(config.mailbox.max_total_envelopes),
            );
            r.register_with_unit(
                "mailbox",
                "Bytes of envelopes held in all mailboxes",
                Unit::Bytes,
                m.mailbox_bytes,
            );
            r.register_with_unit(
                "mailbox_limit",
                "Bytes of envelopes all mailboxes hold at most (mailbox.max_total_bytes)",
                Unit::Bytes,
                limit(config.mailbox.max_total_bytes),
            );
            r.register(
                "mailbox_jobs",
                "Mailbox requests (and expiry sweeps) doing disk work now",
                m.mailbox_jobs,
            );
            r.register(
                "mailbox_jobs_limit",
                "Mailbox jobs run at once at most; more are refused as busy (mailbox.max_jobs)",
                limit(config.mailbox.max_jobs.into()),
            );
            r.register(
                "mailbox_store_failed",
                "1 once the mailbox store has failed for good (a failed flush or disk write): \
                 it refuses every request until the relay restarts",
                m.mailbox_store_failed,
            );
            r.register(
                "refusals",
                "Mailbox requests refused, by reason",
                m.refusals,
            );
            for reason in RefusalReason::ALL {
                drop(metrics.refusals.get_or_create(&RefusalLabels { reason }));
            }
        }

        if config.grouplog.enabled {
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
            r.register(
                "grouplog_items_limit",
                "Items all group logs hold at most (grouplog.max_total_items)",
                limit(config.grouplog.max_total_items),
            );
            r.register_with_unit(
                "grouplog",
                "Bytes of items held in all group logs",
                Unit::Bytes,
                m.grouplog_bytes,
            );
            r.register_with_unit(
                "grouplog_limit",
                "Bytes of items all group logs hold at most (grouplog.max_total_bytes)",
                Unit::Bytes,
                limit(config.grouplog.max_total_bytes),
            );
            r.register(
                "grouplog_jobs",
                "Group log requests (and expiry sweeps) doing disk work now",
                m.grouplog_jobs,
            );
            r.register(
                "grouplog_jobs_limit",
                "Group log jobs run at once at most; more are refused as busy (grouplog.max_jobs)",
                limit(config.grouplog.max_jobs.into()),
            );
            r.register(
                "grouplog_store_failed",
                "1 once the group log store has failed for good (a failed flush or disk write): \
                 it refuses every request until the relay restarts",
                m.grouplog_store_failed,
            );
            r.register(
                "grouplog_refusals",
                "Group log requests refused, by reason",
                m.grouplog_refusals,
            );
            for reason in RefusalReason::ALL {
                drop(
                    metrics
                        .grouplog_refusals
                        .get_or_create(&RefusalLabels { reason }),
                );
            }
        }

        if config.media.enabled {
            let d = &config.media;
            r.register("media_blobs", "Blobs the media role holds", m.media_blobs);
            r.register_with_unit(
                "media",
                "Sealed bytes the media role holds",
                Unit::Bytes,
                m.media_bytes,
            );
            r.register_with_unit(
                "media_limit",
                "Sealed bytes the media role holds at most (media.max_total_bytes)",
                Unit::Bytes,
                limit(d.max_total_bytes),
            );
            r.register(
                "media_uploads",
                "Uploads pulled, checked and stored by the media role",
                m.media_uploads,
            );
            r.register_with_unit(
                "media_uploaded",
                "Sealed bytes stored by media uploads",
                Unit::Bytes,
                m.media_uploaded_bytes,
            );
            r.register(
                "media_upload_duplicates",
                "Uploads of blobs already held: lifetime renewed, nothing stored",
                m.media_upload_duplicates,
            );
            r.register(
                "media_uploads_active",
                "Media uploads being pulled now",
                m.media_uploads_active,
            );
            r.register(
                "media_uploads_limit",
                "Media uploads pulled at once at most; more are refused as busy (media.max_uploads)",
                limit(d.max_uploads.into()),
            );
            r.register(
                "media_refusals",
                "Media uploads refused, by reason",
                m.media_refusals,
            );
            for reason in MediaRefusalReason::ALL {
                drop(
                    metrics
                        .media_refusals
                        .get_or_create(&MediaRefusalLabels { reason }),
                );
            }
            r.register_with_unit(
                "media_served",
                "Sealed bytes of blobs served over /kith/blob/1",
                Unit::Bytes,
                m.media_served_bytes,
            );
            r.register(
                "media_expired",
                "Media blobs deleted after the TTL",
                m.media_expired,
            );
            r.register(
                "turn_allocations",
                "TURN allocations held now (one per call end relayed)",
                m.turn_allocations,
            );
            r.register(
                "turn_allocations_limit",
                "TURN allocations held at once at most (media.turn_max_allocations)",
                limit(d.turn_max_allocations.into()),
            );
            r.register_with_unit(
                "turn_relayed",
                "Payload bytes relayed by the TURN server, both ways",
                Unit::Bytes,
                m.turn_relayed_bytes,
            );
            r.register(
                "turn_dropped_packets",
                "Packets the TURN server dropped: over an allocation's rate or without permission",
                m.turn_dropped_packets,
            );
            r.register(
                "turn_refused_allocations",
                "TURN allocations refused for a quota",
                m.turn_refused_allocations,
            );
            r.register("rooms", "Voice rooms held now", m.rooms);
            r.register(
                "room_participants",
                "Participants in all voice rooms now",
                m.room_participants,
            );
        }

        // Only the kinds of request of the roles that are on.
        let limited: Vec<LimitedRequest> = LimitedRequest::ALL
            .into_iter()
            .filter(|request| match request {
                LimitedRequest::Deposit | LimitedRequest::Challenge => config.mailbox.enabled,
                LimitedRequest::Append | LimitedRequest::Fetch => config.grouplog.enabled,
            })
            .collect();
        if !limited.is_empty() {
            r.register(
                "rate_limited",
                "Requests refused by a per-peer rate limit, by kind of request",
                m.rate_limited,
            );
            for request in limited {
                drop(
                    metrics
                        .rate_limited
                        .get_or_create(&RequestLabels { request }),
                );
            }
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

    /// Counts one refused upload.
    pub fn media_refused(&self, reason: MediaRefusalReason) {
        self.media_refusals
            .get_or_create(&MediaRefusalLabels { reason })
            .inc();
    }

    /// Sets the media gauges from the store's totals.
    pub fn set_media_stats(&self, stats: MediaStats) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.media_blobs.set(gauge(stats.blobs));
        self.media_bytes.set(gauge(stats.bytes));
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

/// Everything `/metrics` answers: the relay's registry, and libp2p's tidied up.
///
/// libp2p's metrics crate registers the families of every protocol it knows
/// (gossipsub and DCUtR too, which a relay never runs) and writes label values as
/// Rust names (`role="Dialer"`). They live in a registry of their own, and at each
/// scrape the families of protocols that are off are left out and label values
/// written in snake case (`role="dialer"`), like the relay's own.
#[derive(Debug)]
pub struct Exposition {
    relay: Registry,
    libp2p: Option<Registry>,
    /// Name prefixes of the libp2p families left out.
    dropped: Vec<&'static str>,
}

impl Exposition {
    /// Serves `relay` alone.
    pub fn new(relay: Registry) -> Exposition {
        Exposition {
            relay,
            libp2p: None,
            dropped: Vec::new(),
        }
    }

    /// Adds libp2p's registry, keeping the families of the roles on in `config`.
    pub fn with_libp2p(mut self, libp2p: Registry, config: &RelayConfig) -> Exposition {
        let mut dropped = vec!["libp2p_gossipsub_", "libp2p_dcutr_"];
        if !config.dht.enabled {
            dropped.push("libp2p_kad_");
        }
        if !config.circuit.enabled {
            dropped.push("libp2p_relay_");
        }
        self.libp2p = Some(libp2p);
        self.dropped = dropped;
        self
    }

    /// Renders both registries as one OpenMetrics text document.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        encode_registry(&mut out, &self.relay)?;
        if let Some(libp2p) = &self.libp2p {
            let mut raw = String::new();
            encode_registry(&mut raw, libp2p)?;
            for line in raw.lines() {
                if self.dropped.iter().any(|p| family_of(line).starts_with(p)) {
                    continue;
                }
                out.push_str(&snake_case_label_values(line));
                out.push('\n');
            }
        }
        encode_eof(&mut out)?;
        Ok(out)
    }
}

impl From<Registry> for Exposition {
    fn from(relay: Registry) -> Exposition {
        Exposition::new(relay)
    }
}

/// The metric name a line of OpenMetrics text is about: the third word of a
/// `# TYPE`/`# HELP`/`# UNIT` line, or a sample's name.
fn family_of(line: &str) -> &str {
    match line.strip_prefix("# ") {
        Some(rest) => rest.split(' ').nth(1).unwrap_or(""),
        None => line.split(['{', ' ']).next().unwrap_or(""),
    }
}

/// A sample line with each label value that is a Rust-style name (`KeepAliveTimeout`)
/// in snake case (`keep_alive_timeout`); other values (`/ip4/tcp`) and other lines
/// are returned as they are.
fn snake_case_label_values(line: &str) -> String {
    if line.starts_with('#') {
        return line.to_owned();
    }
    let Some(open) = line.find('{') else {
        return line.to_owned();
    };
    let mut out = String::with_capacity(line.len() + 8);
    out.push_str(&line[..=open]);
    let mut rest = &line[open + 1..];
    // Label pairs: `key="value"`, separated by commas, up to `}`.
    while let Some(start) = rest.find("=\"") {
        out.push_str(&rest[..start + 2]);
        let value_and_after = &rest[start + 2..];
        // The closing quote is the first one not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in value_and_after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            out.push_str(value_and_after);
            return out;
        };
        out.push_str(&snake_case(&value_and_after[..end]));
        rest = &value_and_after[end..];
    }
    out.push_str(rest);
    out
}

/// `KeepAliveTimeout` as `keep_alive_timeout`, `IO` as `io`; anything but a plain
/// ASCII name starting with a capital is returned as is.
pub(crate) fn snake_case(value: &str) -> String {
    let is_name = value.starts_with(|c: char| c.is_ascii_uppercase())
        && value.chars().all(|c| c.is_ascii_alphanumeric());
    if !is_name {
        return value.to_owned();
    }
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Asserts that the exposition `text` has each of `lines` as a whole line.
#[cfg(test)]
pub(crate) fn assert_lines<S: AsRef<str>>(text: &str, lines: impl IntoIterator<Item = S>) {
    for line in lines {
        let line = line.as_ref();
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
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
        assert_lines(&text, [
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
        ]);
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        let relay_types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE kith_relay_"))
            .count();
        // 33 counters and gauges of use, build_info, 10 capacities, the memory limit.
        assert_eq!(relay_types, 45, "{text}");
    }

    /// Families of every role that is on, none of one that is off.
    fn families(config: &RelayConfig) -> Vec<String> {
        let mut registry = Registry::default();
        let _metrics = Metrics::for_config(&mut registry, config);
        encode(&registry)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_role_that_is_off_has_no_families() {
        let all = families(&RelayConfig::default());
        for name in [
            "kith_relay_circuits_active",
            "kith_relay_reservations_limit",
            "kith_relay_dht_records",
            "kith_relay_deposits",
            "kith_relay_refusals",
            "kith_relay_mailbox_envelopes",
            "kith_relay_mailbox_envelopes_limit",
            "kith_relay_grouplog_items",
            "kith_relay_grouplog_items_limit",
            "kith_relay_grouplog_refusals",
            "kith_relay_rate_limited",
        ] {
            assert!(all.iter().any(|f| f == name), "{name} missing in {all:?}");
        }
        let mut config = RelayConfig::default();
        config.circuit.enabled = false;
        config.dht.enabled = false;
        config.mailbox.enabled = false;
        config.grouplog.enabled = false;
        let none = families(&config);
        for prefix in [
            "kith_relay_circuit",
            "kith_relay_reservations",
            "kith_relay_dht",
            "kith_relay_deposit",
            "kith_relay_drain",
            "kith_relay_mailbox",
            "kith_relay_refusals",
            "kith_relay_grouplog",
            "kith_relay_rate_limited",
            "kith_relay_acks",
            "kith_relay_expired",
        ] {
            assert!(
                !none.iter().any(|f| f.starts_with(prefix)),
                "{prefix} present in {none:?}"
            );
        }
        // What every relay has.
        for name in [
            "kith_relay_build_info",
            "kith_relay_connections",
            "kith_relay_connections_limit",
            "kith_relay_connections_refused",
        ] {
            assert!(none.iter().any(|f| f == name), "{name} missing in {none:?}");
        }
        // One role off, its rate-limit labels go with it.
        let mut config = RelayConfig::default();
        config.grouplog.enabled = false;
        let mut registry = Registry::default();
        let _metrics = Metrics::for_config(&mut registry, &config);
        let text = encode(&registry).unwrap();
        assert!(text.contains("kith_relay_rate_limited_total{request=\"deposit\"} 0"));
        assert!(!text.contains("request=\"append\""), "{text}");
        assert!(!text.contains("kith_relay_grouplog"), "{text}");
    }

    #[test]
    fn the_media_role_has_families_only_when_on() {
        assert!(
            !families(&RelayConfig::default())
                .iter()
                .any(|f| f.starts_with("kith_relay_media")),
            "off by default"
        );
        let mut config = RelayConfig::default();
        config.media.enabled = true;
        config.media.max_total_bytes = 1 << 40;
        let mut registry = Registry::default();
        let metrics = Metrics::for_config(&mut registry, &config);
        metrics.set_media_stats(MediaStats {
            blobs: 3,
            bytes: 3000,
        });
        metrics.media_uploads.inc();
        metrics.media_uploaded_bytes.inc_by(1000);
        metrics.media_served_bytes.inc_by(2000);
        metrics.media_refused(MediaRefusalReason::QuotaBytes);
        let text = encode(&registry).unwrap();
        assert_lines(&text, [
            "kith_relay_media_blobs 3",
            "kith_relay_media_bytes 3000",
            "kith_relay_media_limit_bytes 1099511627776",
            "kith_relay_media_uploads_total 1",
            "kith_relay_media_uploaded_bytes_total 1000",
            "kith_relay_media_upload_duplicates_total 0",
            "kith_relay_media_uploads_active 0",
            "kith_relay_media_uploads_limit 16",
            "kith_relay_media_refusals_total{reason=\"quota_bytes\"} 1",
            "kith_relay_media_refusals_total{reason=\"fetch_failed\"} 0",
            "kith_relay_media_served_bytes_total 2000",
            "kith_relay_media_expired_total 0",
            "# HELP kith_relay_media_refusals Media uploads refused, by reason.",
        ]);
    }

    #[test]
    fn build_info_and_capacities_come_from_the_build_and_config() {
        let mut config = RelayConfig::default();
        config.connections.max_established = 77;
        config.circuit.max_reservations = 12;
        config.circuit.max_circuits = 34;
        config.dht.max_records = 56;
        config.mailbox.max_total_bytes = 1 << 30;
        config.grouplog.max_total_bytes = 1 << 31;
        config.mailbox.max_total_envelopes = 123_456;
        config.grouplog.max_total_items = 654_321;
        config.connections.max_memory_bytes = Some(512 << 20);
        let mut registry = Registry::default();
        let _metrics = Metrics::for_config(&mut registry, &config);
        let text = encode(&registry).unwrap();
        assert_lines(&text, [
            format!(
                "kith_relay_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "kith_relay_connections_limit 77".into(),
            "kith_relay_reservations_limit 12".into(),
            "kith_relay_circuits_limit 34".into(),
            "kith_relay_dht_records_limit 56".into(),
            "kith_relay_mailbox_limit_bytes 1073741824".into(),
            "kith_relay_grouplog_limit_bytes 2147483648".into(),
            "kith_relay_mailbox_envelopes_limit 123456".into(),
            "kith_relay_grouplog_items_limit 654321".into(),
            "kith_relay_mailbox_jobs_limit 64".into(),
            "kith_relay_grouplog_jobs 0".into(),
            "# UNIT kith_relay_mailbox_limit_bytes bytes".into(),
            "kith_relay_memory_limit_bytes 536870912.0".into(),
        ]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exported() {
        let mut registry = Registry::default();
        let _metrics = Metrics::new(&mut registry);
        let text = encode(&registry).unwrap();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            let value: f64 = value.parse().unwrap();
            assert!(value >= 0.0, "{name} {value}");
        }
        // The default memory limit is a share of the machine's memory.
        assert!(text.contains("kith_relay_memory_limit_bytes "), "{text}");
    }

    #[test]
    fn libp2p_families_follow_roles_and_label_values_are_snake_case() {
        let libp2p = || {
            let mut registry = Registry::default();
            let sub = registry.sub_registry_with_prefix("libp2p");
            let closed: Family<Vec<(String, String)>, Counter> = Family::default();
            closed
                .get_or_create(&vec![
                    ("role".into(), "Dialer".into()),
                    ("cause".into(), "KeepAliveTimeout".into()),
                    ("protocols".into(), "/ip4/tcp".into()),
                    ("error".into(), "IO".into()),
                ])
                .inc();
            sub.register("swarm_connections_closed", "Closed", closed);
            for name in [
                "kad_queries",
                "relay_events",
                "gossipsub_messages",
                "dcutr_events",
            ] {
                sub.register(name, "A protocol's counter", Counter::<u64>::default());
            }
            registry
        };
        let names = |exposition: &Exposition| -> String { exposition.encode().unwrap() };
        let all = names(
            &Exposition::new(Registry::default()).with_libp2p(libp2p(), &RelayConfig::default()),
        );
        assert!(all.contains("libp2p_kad_queries_total 0"), "{all}");
        assert!(all.contains("libp2p_relay_events_total 0"), "{all}");
        // A relay never runs gossipsub or DCUtR.
        assert!(
            !all.contains("gossipsub") && !all.contains("dcutr"),
            "{all}"
        );
        assert!(
            all.lines().any(|l| l
                == "libp2p_swarm_connections_closed_total{role=\"dialer\",cause=\"keep_alive_timeout\",protocols=\"/ip4/tcp\",error=\"io\"} 1"),
            "{all}"
        );
        assert!(all.ends_with("# EOF\n"), "{all}");
        assert_eq!(all.matches("# EOF").count(), 1);

        let mut config = RelayConfig::default();
        config.dht.enabled = false;
        config.circuit.enabled = false;
        let trimmed = names(&Exposition::new(Registry::default()).with_libp2p(libp2p(), &config));
        assert!(
            !trimmed.contains("libp2p_kad_") && !trimmed.contains("libp2p_relay_"),
            "{trimmed}"
        );
        assert!(
            trimmed.contains("libp2p_swarm_connections_closed"),
            "{trimmed}"
        );
    }

    #[test]
    fn snake_case_leaves_non_names_alone() {
        for (from, to) in [
            ("Dialer", "dialer"),
            ("KeepAliveTimeout", "keep_alive_timeout"),
            (
                "TransportErrorMultiaddrNotSupported",
                "transport_error_multiaddr_not_supported",
            ),
            ("IO", "io"),
            ("IOError", "io_error"),
            ("Ipv4Addr", "ipv4_addr"),
            ("already_lower", "already_lower"),
            ("/ip4/tcp", "/ip4/tcp"),
            ("Has Space", "Has Space"),
            ("", ""),
        ] {
            assert_eq!(snake_case(from), to);
        }
        // An escaped quote inside a value does not end it.
        assert_eq!(
            snake_case_label_values(r#"m_total{a="x\"Y",b="CamelCase"} 1"#),
            r#"m_total{a="x\"Y",b="camel_case"} 1"#
        );
        assert_eq!(
            snake_case_label_values("# HELP m Some Text."),
            "# HELP m Some Text."
        );
        assert_eq!(snake_case_label_values("m_total 3"), "m_total 3");
    }
}
