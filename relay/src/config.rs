//! The relay's configuration: one TOML file, `kith-relay.toml`.
//!
//! Every key is optional and takes the default documented on its field (and shown in
//! [`EXAMPLE_CONFIG`]); unknown keys are errors, so a typo never silently does nothing.
//! [`RelayConfig::from_toml_str`] deserializes with serde and then runs
//! [`RelayConfig::validate`]; both kinds of failure become [`ConfigError::Invalid`]
//! naming the dotted key (`mailbox.ttl_days`) and, when the key is in the text, its
//! 1-based line. Lines are found in a second, span-keeping parse of the document
//! (`toml::de::DeTable`), so the public types stay plain data.
//!
//! Listen and external addresses are kept as strings but parsed as multiaddrs when
//! validated, and listen addresses checked against the transports the relay has
//! (TCP, QUIC), so `kith-relay check-config` finds every mistake a start would.
//! An error names the key, its line and the bad value once each
//! (``relay config line 3: `listen[1]` = "ip4/x": not a multiaddr: …``).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_p2p::config::{line_of, span_contains};
use kith_p2p::conn_limits::{ConnectionLimits, MemoryLimit};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use crate::grouplog::GroupLogLimits;
use crate::mailbox::MailboxLimits;
use crate::media::MediaLimits;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Largest accepted `mailbox.max_envelope_bytes`: the largest envelope that still fits,
/// alone, in one drain page of `/kith/mailbox/1` (a page is at most
/// [`MAX_RESPONSE_LEN`](kith_p2p::mailbox::MAX_RESPONSE_LEN) bytes including the
/// per-page and per-item framing). A larger one could be deposited but never drained.
pub const MAX_ENVELOPE_BYTES_LIMIT: u64 = (kith_p2p::mailbox::MAX_RESPONSE_LEN
    - kith_p2p::mailbox::MAX_PAGE_OVERHEAD
    - kith_p2p::mailbox::MAX_ITEM_OVERHEAD) as u64;

/// Longest accepted `mailbox.ttl_days` (ten years); longer is surely a typo.
pub const MAX_TTL_DAYS: u32 = 3650;

/// Longest accepted `mailbox.ttl_secs` and `grouplog.ttl_secs`: [`MAX_TTL_DAYS`].
pub const MAX_TTL_SECS: u64 = MAX_TTL_DAYS as u64 * SECS_PER_DAY;

/// Most accepted `mailbox.max_jobs` and `grouplog.max_jobs`: tokio's default number of
/// blocking threads, which run the jobs; more would only wait in tokio's queue.
pub const MAX_JOBS_LIMIT: u32 = 512;

const SECS_PER_DAY: u64 = 24 * 3600;

/// A fully commented configuration listing every key with its default value.
/// Parsing it gives exactly [`RelayConfig::default`].
pub const EXAMPLE_CONFIG: &str = include_str!("../kith-relay.example.toml");

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key has an invalid value or type, or is not a known key.
    ///
    /// Displayed as ``relay config line 2: `mailbox.ttl_days` = 0: must be between 1
    /// and 3650``: the key, the line and the value each once, the message naming
    /// neither again.
    #[error("relay config{}: `{key}`{}: {message}", at_line(*.line), shown_value(.value.as_deref()))]
    Invalid {
        /// The dotted path of the offending key, e.g. `mailbox.ttl_days`.
        key: String,
        /// 1-based line of the offending key or value, when it is in the text
        /// (`None` for a key left at its default, or a config built in code).
        line: Option<usize>,
        /// The offending value as TOML (`0`, `"ip4/x"`), followed by ` (default)`
        /// when the file does not set the key; `None` for a whole table.
        value: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The file is not valid TOML. Displayed with the text of the line, which
    /// holds the key and the value that could not be read:
    /// ``relay config line 2: duplicate key: `enabled = false` ``.
    #[error("relay config line {line}: {message}{}", quoted_line(.text))]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// That line of the file, trimmed and cut to one short line (empty if the
        /// line is blank).
        text: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read. The reason is the source, not repeated in the
    /// message (`{:#}` would print it twice).
    #[error("cannot read the relay config {}", path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

fn quoted_line(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": `{text}`")
    }
}

fn shown_value(value: Option<&str>) -> String {
    value.map(|v| format!(" = {v}")).unwrap_or_default()
}

/// Longest value shown in an error; a long array is cut, so one line stays one line.
const MAX_SHOWN_VALUE_CHARS: usize = 80;

/// `text` on one line (runs of whitespace, newlines included, become one space) and
/// at most [`MAX_SHOWN_VALUE_CHARS`] long.
fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_SHOWN_VALUE_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(MAX_SHOWN_VALUE_CHARS - 1).collect();
    format!("{cut}…")
}

/// The whole relay configuration. `RelayConfig::default()` is what an empty file gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// `listen`: multiaddrs to listen on.
    ///
    /// Default: `["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]`. Must not
    /// be empty; each entry must start with `/`.
    pub listen: Vec<String>,
    /// `data_dir`: directory holding the relay's state (identity key, mailbox and
    /// group log databases). Created with mode 0700. A relative path is relative to the working
    /// directory.
    ///
    /// Default: `"./kith-relay-data"`.
    pub data_dir: PathBuf,
    /// `identity_file`: the relay's Ed25519 identity key; a relative path is relative
    /// to `data_dir`. See [`RelayConfig::identity_path`].
    ///
    /// Default: none, meaning `<data_dir>/identity.key`.
    pub identity_file: Option<PathBuf>,
    /// `external_addresses`: multiaddrs at which peers can reach this relay from
    /// outside (e.g. `/ip4/203.0.113.7/tcp/4001`), announced to peers and put into
    /// circuit reservations. Set it when the relay is behind NAT, in a container, or
    /// listens on `0.0.0.0`.
    ///
    /// Default: `[]`, meaning every concrete listen address (as printed on the
    /// `ready` line) is announced.
    pub external_addresses: Vec<String>,
    /// `[dht]`: the Kademlia DHT server role.
    pub dht: DhtConfig,
    /// `[circuit]`: the circuit relay v2 role.
    pub circuit: CircuitConfig,
    /// `[autonat]`: the AutoNAT server role.
    pub autonat: AutonatConfig,
    /// `[mailbox]`: the store-and-forward mailbox role.
    pub mailbox: MailboxConfig,
    /// `[grouplog]`: the group log role (`/kith/grouplog/1`).
    pub grouplog: GroupLogConfig,
    /// `[media]`: the media role (`/kith/media/1` uploads, `/kith/blob/1` downloads).
    pub media: MediaConfig,
    /// `[access]`: who may use the relay.
    pub access: AccessConfig,
    /// `[connections]`: how many connections the relay accepts.
    pub connections: ConnectionsConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[log]`: log output.
    pub log: LogConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            data_dir: PathBuf::from("./kith-relay-data"),
            identity_file: None,
            external_addresses: Vec::new(),
            dht: DhtConfig::default(),
            circuit: CircuitConfig::default(),
            autonat: AutonatConfig::default(),
            mailbox: MailboxConfig::default(),
            grouplog: GroupLogConfig::default(),
            media: MediaConfig::default(),
            access: AccessConfig::default(),
            connections: ConnectionsConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `[dht]`: serve the Kademlia DHT (bootstrap node for kith peers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhtConfig {
    /// `dht.enabled`: act as a DHT server. Default: `true`.
    pub enabled: bool,
    /// `dht.max_records`: DHT records (kith peer records) held in memory at once;
    /// beyond it new records are refused until old ones expire. Default: `16384`.
    pub max_records: u32,
    /// `dht.max_record_bytes`: largest accepted DHT record value. Default: `8192`,
    /// the size limit of a kith peer record
    /// ([`MAX_RECORD_LEN`](kith_p2p::peer_record::MAX_RECORD_LEN)).
    pub max_record_bytes: u32,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            enabled: true,
            max_records: 16_384,
            max_record_bytes: kith_p2p::peer_record::MAX_RECORD_LEN as u32,
        }
    }
}

/// `[circuit]`: circuit relay v2, letting peers behind NAT be reached (and hole
/// punch). Circuits are deliberately small: bulk data uses its own protocols.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitConfig {
    /// `circuit.enabled`: accept reservations and relay circuits. Default: `true`.
    pub enabled: bool,
    /// `circuit.max_reservations`: reservations held at once. Default: `1024`.
    pub max_reservations: u32,
    /// `circuit.max_reservations_per_peer`: reservations one peer may hold.
    /// Default: `4`.
    pub max_reservations_per_peer: u32,
    /// `circuit.reservation_duration_secs`: lifetime of a reservation before the
    /// client must renew it. Default: `3600` (one hour).
    pub reservation_duration_secs: u64,
    /// `circuit.max_circuits`: circuits relayed at once. Default: `256`.
    pub max_circuits: u32,
    /// `circuit.max_circuits_per_peer`: circuits one peer may have at once.
    /// Default: `4`.
    pub max_circuits_per_peer: u32,
    /// `circuit.max_circuit_duration_secs`: a circuit is closed after this long.
    /// Default: `120`.
    pub max_circuit_duration_secs: u64,
    /// `circuit.max_circuit_bytes`: a circuit is closed after relaying this many bytes
    /// (each direction). Default: `131072` (128 KiB).
    pub max_circuit_bytes: u64,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            enabled: true,
            max_reservations: 1024,
            max_reservations_per_peer: 4,
            reservation_duration_secs: 3600,
            max_circuits: 256,
            max_circuits_per_peer: 4,
            max_circuit_duration_secs: 120,
            max_circuit_bytes: 128 * KIB,
        }
    }
}

impl CircuitConfig {
    /// `reservation_duration_secs` as a [`Duration`].
    pub fn reservation_duration(&self) -> Duration {
        Duration::from_secs(self.reservation_duration_secs)
    }

    /// `max_circuit_duration_secs` as a [`Duration`].
    pub fn max_circuit_duration(&self) -> Duration {
        Duration::from_secs(self.max_circuit_duration_secs)
    }
}

/// `[autonat]`: tell peers whether they are reachable from outside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutonatConfig {
    /// `autonat.enabled`: serve AutoNAT dial-back probes. Default: `true`.
    pub enabled: bool,
    /// `autonat.only_global_ips`: refuse probes from peers seen at private or
    /// loopback addresses (a dial-back there proves nothing about the Internet).
    /// Turn off only for LAN or loopback test setups. Default: `true`.
    pub only_global_ips: bool,
}

impl Default for AutonatConfig {
    fn default() -> Self {
        AutonatConfig {
            enabled: true,
            only_global_ips: true,
        }
    }
}

/// `[mailbox]`: hold sealed envelopes for offline users until their owner drains them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// `mailbox.enabled`: accept deposits and drains. Default: `true`.
    pub enabled: bool,
    /// `mailbox.ttl_days`: envelopes not drained within this many days are deleted.
    /// 1 to [`MAX_TTL_DAYS`]. Default: `30`.
    pub ttl_days: u32,
    /// `mailbox.ttl_secs`: the same lifetime in seconds, for one under a day (or a
    /// test); when set it replaces `ttl_days`. 1 to [`MAX_TTL_SECS`].
    /// Default: none (`ttl_days` applies).
    pub ttl_secs: Option<u64>,
    /// `mailbox.max_jobs`: mailbox requests doing disk work at once (deposits, drains,
    /// acks; the expiry sweep takes a slot too). Beyond it a request is refused at
    /// once as `rate_limited` (retry after 250 ms) and counted as
    /// `refusals{reason="busy"}`, so a flood queues no work. 1 to [`MAX_JOBS_LIMIT`].
    /// Default: `64`.
    pub max_jobs: u32,
    /// `mailbox.max_messages_per_mailbox`: envelopes one mailbox may hold.
    /// Default: `10000`.
    pub max_messages_per_mailbox: u64,
    /// `mailbox.max_bytes_per_mailbox`: total envelope bytes one mailbox may hold;
    /// at least `max_envelope_bytes`. Default: `67108864` (64 MiB).
    pub max_bytes_per_mailbox: u64,
    /// `mailbox.open_share_percent`: how much of a mailbox's quotas (envelopes and
    /// bytes) deposits without the owner's deposit ticket may fill: strangers'
    /// contact requests, and senders on kith before tickets. Past it only ticket
    /// holders (the owner's contacts) deposit, so one stranger cannot fill a mailbox
    /// and shut the owner's contacts out. 1 to 100; the share's bytes must hold
    /// `max_envelope_bytes`. Default: `25`.
    pub open_share_percent: u8,
    /// `mailbox.max_total_bytes`: total envelope bytes over all mailboxes, so many
    /// mailboxes cannot fill the disk; at least `max_bytes_per_mailbox`.
    /// Default: `8589934592` (8 GiB).
    pub max_total_bytes: u64,
    /// `mailbox.max_total_envelopes`: envelopes held over all mailboxes, so many
    /// tiny envelopes cannot pile up in the memory index (19–39 bytes each) and the
    /// start-up scan (about 1 s per 400000); at least `max_messages_per_mailbox`.
    /// `max_total_bytes` binds first for envelopes averaging over 2 KiB, this for
    /// smaller ones. Default: `4000000`.
    pub max_total_envelopes: u64,
    /// `mailbox.max_envelope_bytes`: largest accepted envelope; at most
    /// [`MAX_ENVELOPE_BYTES_LIMIT`]. Default: `262144` (256 KiB).
    pub max_envelope_bytes: u64,
    /// `mailbox.sender_rate_per_sec`: envelopes per second one sending peer may
    /// deposit, sustained. Default: `200`.
    pub sender_rate_per_sec: u32,
    /// `mailbox.sender_burst`: envelopes one sending peer may deposit at once
    /// after being idle. Default: `2000`.
    pub sender_burst: u32,
    /// `mailbox.max_tracked_senders`: senders whose rate is tracked at once; beyond
    /// it the closest-to-idle are forgotten. Bounds the group log's rate limiter
    /// too (each limiter tracks at most this many). Default: `65536`.
    pub max_tracked_senders: u32,
    /// `mailbox.expire_interval_secs`: how often expired envelopes are deleted.
    /// Default: `600`.
    pub expire_interval_secs: u64,
    /// `mailbox.challenge_ttl_secs`: how long a drain challenge may be answered.
    /// Default: `60`.
    pub challenge_ttl_secs: u64,
    /// `mailbox.max_pending_challenges`: drain challenges outstanding at once; beyond
    /// it the oldest is dropped. Default: `4096`.
    pub max_pending_challenges: u32,
    /// `mailbox.max_challenges_per_peer`: drain challenges one peer may have
    /// outstanding; beyond it that peer's own oldest is dropped, never another
    /// peer's. A node asks for one at a time. At most `max_pending_challenges`.
    /// Default: `4`.
    pub max_challenges_per_peer: u32,
    /// `mailbox.challenge_rate_per_sec`: drain challenges per second one peer may
    /// ask for, sustained (every drain page and every ack needs one). Default: `10`.
    pub challenge_rate_per_sec: u32,
    /// `mailbox.challenge_burst`: drain challenges one peer may ask for at once after
    /// being idle; enough to drain a full mailbox (40 pages of 256, each paged and
    /// acked) without waiting. Default: `100`.
    pub challenge_burst: u32,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            enabled: true,
            ttl_days: 30,
            ttl_secs: None,
            max_jobs: 64,
            max_messages_per_mailbox: 10_000,
            max_bytes_per_mailbox: 64 * MIB,
            open_share_percent: 25,
            max_total_bytes: 8 * GIB,
            max_total_envelopes: 4_000_000,
            max_envelope_bytes: 256 * KIB,
            sender_rate_per_sec: 200,
            sender_burst: 2000,
            max_tracked_senders: 65_536,
            expire_interval_secs: 600,
            challenge_ttl_secs: 60,
            max_pending_challenges: 4096,
            max_challenges_per_peer: 4,
            challenge_rate_per_sec: 10,
            challenge_burst: 100,
        }
    }
}

impl MailboxConfig {
    /// How long an envelope is held: `ttl_secs` if set, else `ttl_days`.
    pub fn ttl(&self) -> Duration {
        ttl(self.ttl_secs, self.ttl_days)
    }

    /// `expire_interval_secs` as a [`Duration`].
    pub fn expire_interval(&self) -> Duration {
        Duration::from_secs(self.expire_interval_secs)
    }

    /// The store limits these settings describe.
    pub fn limits(&self) -> MailboxLimits {
        MailboxLimits {
            ttl: self.ttl(),
            max_messages_per_mailbox: self.max_messages_per_mailbox,
            max_bytes_per_mailbox: self.max_bytes_per_mailbox,
            open_share_percent: self.open_share_percent,
            max_total_bytes: self.max_total_bytes,
            max_total_envelopes: self.max_total_envelopes,
            max_envelope_bytes: self.max_envelope_bytes,
            challenge_ttl: Duration::from_secs(self.challenge_ttl_secs),
            max_pending_challenges: self.max_pending_challenges as usize,
            max_challenges_per_mailbox: self.max_challenges_per_peer as usize,
        }
    }
}

/// `[grouplog]`: hold groups' logs of sealed messages for members to fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupLogConfig {
    /// `grouplog.enabled`: accept appends and fetches. Default: `true`.
    pub enabled: bool,
    /// `grouplog.ttl_days`: items older than this many days are deleted, fetched or
    /// not. 1 to [`MAX_TTL_DAYS`]. Default: `30`.
    pub ttl_days: u32,
    /// `grouplog.ttl_secs`: the same lifetime in seconds, for one under a day (or a
    /// test); when set it replaces `ttl_days`. 1 to [`MAX_TTL_SECS`].
    /// Default: none (`ttl_days` applies).
    pub ttl_secs: Option<u64>,
    /// `grouplog.max_jobs`: group log requests doing disk work at once (appends,
    /// fetches; the expiry sweep takes a slot too), apart from the mailbox's. Beyond
    /// it a request is refused at once as `rate_limited` (retry after 250 ms) and
    /// counted as `grouplog_refusals{reason="busy"}`. 1 to [`MAX_JOBS_LIMIT`].
    /// Default: `64`.
    pub max_jobs: u32,
    /// `grouplog.max_items_per_log`: items one log may hold. Default: `100000`.
    pub max_items_per_log: u64,
    /// `grouplog.max_bytes_per_log`: total item bytes one log may hold; at least
    /// [`MAX_ITEM_LEN`](kith_p2p::grouplog::MAX_ITEM_LEN) (102400).
    /// Default: `268435456` (256 MiB).
    pub max_bytes_per_log: u64,
    /// `grouplog.max_total_bytes`: total item bytes over all logs, so many logs
    /// cannot fill the disk; at least `max_bytes_per_log`.
    /// Default: `8589934592` (8 GiB).
    pub max_total_bytes: u64,
    /// `grouplog.max_total_items`: items held over all logs, so many tiny items
    /// cannot pile up in the memory index (19–39 bytes each) and the start-up scan
    /// (about 1 s per 400000); at least `max_items_per_log`. `max_total_bytes` binds
    /// first for items averaging over 2 KiB, this for smaller ones.
    /// Default: `4000000`.
    pub max_total_items: u64,
    /// `grouplog.sender_rate_per_sec`: items per second one peer may append,
    /// sustained. Default: `200`.
    pub sender_rate_per_sec: u32,
    /// `grouplog.sender_burst`: items one peer may append at once after being idle.
    /// Default: `2000`.
    pub sender_burst: u32,
    /// `grouplog.expire_interval_secs`: how often expired items are deleted.
    /// Default: `600`.
    pub expire_interval_secs: u64,
    /// `grouplog.fetch_rate_per_sec`: fetches (pages of up to 256 items, read from
    /// disk) per second one peer may make, sustained. Default: `20`.
    pub fetch_rate_per_sec: u32,
    /// `grouplog.fetch_burst`: fetches one peer may make at once after being idle;
    /// enough to catch up on a full log (100000 items in pages of 256) nearly at
    /// once. Default: `400`.
    pub fetch_burst: u32,
}

impl Default for GroupLogConfig {
    fn default() -> Self {
        GroupLogConfig {
            enabled: true,
            ttl_days: 30,
            ttl_secs: None,
            max_jobs: 64,
            max_items_per_log: 100_000,
            max_bytes_per_log: 256 * MIB,
            max_total_bytes: 8 * GIB,
            max_total_items: 4_000_000,
            sender_rate_per_sec: 200,
            sender_burst: 2000,
            expire_interval_secs: 600,
            fetch_rate_per_sec: 20,
            fetch_burst: 400,
        }
    }
}

impl GroupLogConfig {
    /// How long an item is held: `ttl_secs` if set, else `ttl_days`.
    pub fn ttl(&self) -> Duration {
        ttl(self.ttl_secs, self.ttl_days)
    }

    /// `expire_interval_secs` as a [`Duration`].
    pub fn expire_interval(&self) -> Duration {
        Duration::from_secs(self.expire_interval_secs)
    }

    /// The store limits these settings describe.
    pub fn limits(&self) -> GroupLogLimits {
        GroupLogLimits {
            ttl: self.ttl(),
            max_items_per_log: self.max_items_per_log,
            max_bytes_per_log: self.max_bytes_per_log,
            max_total_bytes: self.max_total_bytes,
            max_total_items: self.max_total_items,
        }
    }
}

/// `[media]`: hold encrypted files (blobs) that members upload once, for recipients
/// to download while the sender is offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// `media.enabled`: take uploads (`/kith/media/1`) and serve the blobs held
    /// (`/kith/blob/1`). Off by default: files take disk space an operator chooses to
    /// give. Default: `false`.
    pub enabled: bool,
    /// `media.dir`: directory of the blobs (files) and their records, created with
    /// mode 0700; a relative path is relative to `data_dir`. See
    /// [`RelayConfig::media_dir`]. Default: none, meaning `<data_dir>/media`.
    pub dir: Option<PathBuf>,
    /// `media.ttl_days`: a blob is deleted this many days after its last upload,
    /// downloaded or not. 1 to [`MAX_TTL_DAYS`]. Default: `7`.
    pub ttl_days: u32,
    /// `media.ttl_secs`: the same lifetime in seconds, for one under a day (or a
    /// test); when set it replaces `ttl_days`. 1 to [`MAX_TTL_SECS`].
    /// Default: none (`ttl_days` applies).
    pub ttl_secs: Option<u64>,
    /// `media.max_total_bytes`: sealed bytes all blobs together may hold; at least
    /// `max_bytes_per_uploader`. Default: `34359738368` (32 GiB).
    pub max_total_bytes: u64,
    /// `media.max_bytes_per_uploader`: sealed bytes of the blobs one peer uploaded
    /// first may hold; at least `max_blob_bytes`. Default: `8589934592` (8 GiB).
    pub max_bytes_per_uploader: u64,
    /// `media.max_blob_bytes`: the largest sealed blob taken (a file plus 16 bytes
    /// per 256 KiB chunk). Default: `4311744512` (4 GiB + 16 MiB: a 4 GiB file, sealed, with room).
    pub max_blob_bytes: u64,
    /// `media.max_uploads`: uploads pulled at once; beyond it an upload is refused
    /// as busy. 1 to [`MAX_JOBS_LIMIT`]. Default: `16`.
    pub max_uploads: u32,
    /// `media.expire_interval_secs`: how often expired blobs are deleted.
    /// Default: `600`.
    pub expire_interval_secs: u64,
    /// `media.turn_port`: UDP port of the TURN server that carries calls whose two
    /// ends cannot reach each other (on the relay's first concrete listen or external
    /// IP; relayed addresses take ephemeral ports there). 0 takes any free port: nodes
    /// learn it with their grant. Default: `0`.
    pub turn_port: u16,
    /// `media.turn_max_allocations`: TURN allocations (one per call end) held at
    /// once. Default: `128`.
    pub turn_max_allocations: u32,
    /// `media.turn_max_allocations_per_peer`: TURN allocations one peer may hold.
    /// Default: `4`.
    pub turn_max_allocations_per_peer: u32,
    /// `media.turn_max_bytes_per_second`: bytes one allocation may relay per second,
    /// both ways together; beyond it packets are dropped. Default: `262144` (an
    /// Opus call takes about 16 KiB/s).
    pub turn_max_bytes_per_second: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: false,
            dir: None,
            ttl_days: 7,
            ttl_secs: None,
            max_total_bytes: 32 * GIB,
            max_bytes_per_uploader: 8 * GIB,
            max_blob_bytes: 4 * GIB + 16 * MIB,
            max_uploads: 16,
            expire_interval_secs: 600,
            turn_port: 0,
            turn_max_allocations: 128,
            turn_max_allocations_per_peer: 4,
            turn_max_bytes_per_second: 256 * 1024,
        }
    }
}

impl MediaConfig {
    /// How long a blob is held: `ttl_secs` if set, else `ttl_days`.
    pub fn ttl(&self) -> Duration {
        ttl(self.ttl_secs, self.ttl_days)
    }

    /// `expire_interval_secs` as a [`Duration`].
    pub fn expire_interval(&self) -> Duration {
        Duration::from_secs(self.expire_interval_secs)
    }

    /// The store limits these settings describe.
    pub fn limits(&self) -> MediaLimits {
        MediaLimits {
            ttl: self.ttl(),
            max_total_bytes: self.max_total_bytes,
            max_bytes_per_uploader: self.max_bytes_per_uploader,
            max_blob_bytes: self.max_blob_bytes,
        }
    }
}

/// A lifetime given in seconds (if set) or else in days.
fn ttl(secs: Option<u64>, days: u32) -> Duration {
    Duration::from_secs(secs.unwrap_or(u64::from(days) * SECS_PER_DAY))
}

/// `[access]`: who may reserve circuits, drain a mailbox, have mail deposited and
/// append to group logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// `access.policy`: `"open"` (anyone) or `"members"` (only `members`, and
    /// holders of operator tokens if `operator_tokens`). Default: `"open"`.
    pub policy: AccessPolicy,
    /// `access.members`: peer ids (base58, `12D3KooW…`) admitted under the
    /// `"members"` policy. Default: `[]`.
    pub members: Vec<String>,
    /// `access.operator_tokens`: also admit peers presenting a membership token
    /// signed by this relay's identity. Reserved: not implemented yet (the relay
    /// logs a warning and admits only `members`). Default: `false`.
    pub operator_tokens: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            policy: AccessPolicy::Open,
            members: Vec::new(),
            operator_tokens: false,
        }
    }
}

/// Who may use the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AccessPolicy {
    /// Anyone.
    Open,
    /// Listed members and (optionally) token holders only.
    Members,
}

impl AccessPolicy {
    /// The policy as written in the config (`open`, `members`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessPolicy::Open => "open",
            AccessPolicy::Members => "members",
        }
    }
}

/// Smallest accepted `connections.max_memory_bytes`: below it even an idle relay is
/// over the limit, and every connection would be refused.
pub const MIN_MAX_MEMORY_BYTES: u64 = MIB;

/// `[connections]`: how many connections the relay accepts, so no peer, address or
/// flood can take all of them. A refused connection is closed at once (before the
/// handshake when the limit allows it) and counted in
/// `kith_relay_connections_refused_total{limit=…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// `connections.max_established`: connections open at once, in total. Above
    /// `circuit.max_reservations`, since each reservation holds one; at ~50 KiB per
    /// idle connection (docs/PERFORMANCE.md) the default is ~200 MiB.
    /// Default: `4096`.
    pub max_established: u32,
    /// `connections.max_pending_incoming`: incoming connections still in their
    /// handshake (each costs Noise key agreement). Default: `256`.
    pub max_pending_incoming: u32,
    /// `connections.max_per_peer`: connections one peer may have open. A node uses
    /// one or two (TCP, QUIC). Default: `8`.
    pub max_per_peer: u32,
    /// `connections.max_per_ip`: incoming connections, in their handshake or open,
    /// from one IPv4 address or IPv6 /64. Peers behind one NAT share it: raise it for
    /// a community behind one address. Default: `64`.
    pub max_per_ip: u32,
    /// `connections.max_memory_percent`: new connections are refused while the relay
    /// process uses more than this percentage of the machine's physical memory. 1 to
    /// 100; ignored when `max_memory_bytes` is set. Default: `80`.
    pub max_memory_percent: u8,
    /// `connections.max_memory_bytes`: new connections are refused while the relay
    /// process uses more than this many bytes of physical memory; set it in a
    /// container whose memory limit is below the machine's. At least
    /// [`MIN_MAX_MEMORY_BYTES`]. Default: none (`max_memory_percent` applies).
    pub max_memory_bytes: Option<u64>,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max_established: 4096,
            max_pending_incoming: 256,
            max_per_peer: 8,
            max_per_ip: 64,
            max_memory_percent: 80,
            max_memory_bytes: None,
        }
    }
}

impl ConnectionsConfig {
    /// The limits these settings describe. Incoming connections may take every slot:
    /// a relay is there to be connected to.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_established: self.max_established,
            max_established_incoming: self.max_established,
            max_pending_incoming: self.max_pending_incoming,
            max_per_peer: self.max_per_peer,
            max_per_ip: self.max_per_ip,
            max_memory: match self.max_memory_bytes {
                Some(bytes) => MemoryLimit::Bytes(bytes),
                None => MemoryLimit::Percent(self.max_memory_percent),
            },
        }
    }
}

/// `[metrics]`: the Prometheus scrape endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `metrics.listen`: socket address serving `GET /metrics` and `GET /health`,
    /// e.g. `"127.0.0.1:9090"`. Default: none (no endpoint).
    pub listen: Option<SocketAddr>,
}

/// `[log]`: how logs are written (to stderr; `RUST_LOG` sets verbosity).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `log.format`: `"text"` for people or `"json"` for log collectors.
    /// Default: `"text"`.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl RelayConfig {
    /// Reads and parses the config file at `path` (see [`RelayConfig::from_toml_str`]).
    /// A missing file is an error: the operator named it.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        RelayConfig::from_toml_str(&text)
    }

    /// Parses and validates the text of a config file; missing keys take their
    /// defaults.
    pub fn from_toml_str(text: &str) -> Result<RelayConfig, ConfigError> {
        let document = DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |span| line_of(text, span.start));
            ConfigError::Syntax {
                line,
                text: line
                    .checked_sub(1)
                    .and_then(|i| text.lines().nth(i))
                    .map(|l| one_line(l.trim()))
                    .unwrap_or_default(),
                message: e.message().trim_end_matches('.').to_owned(),
            }
        })?;
        let document = document.get_ref();
        let written = |key: &str| value_span(document, key).map(|span| one_line(&text[span]));
        let config: RelayConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let mut path = Vec::new();
            key_path_at(document, span.start, &mut path);
            let key = path.join(".");
            ConfigError::Invalid {
                value: written(&key),
                key,
                line: Some(line_of(text, span.start)),
                message: serde_message(e.message()),
            }
        })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid {
                key,
                line: None,
                value,
                message,
            } => {
                let line = locate(document, &key).map(|span| line_of(text, span.start));
                // What the operator wrote, or else the default the key was left at.
                let value = written(&key).or_else(|| value.map(|v| format!("{v} (default)")));
                ConfigError::Invalid {
                    key,
                    line,
                    value,
                    message,
                }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Checks the values serde cannot: ranges, non-empty strings, multiaddr and peer
    /// id syntax and relations between keys. Errors are [`ConfigError::Invalid`]
    /// with the offending value but without a line (`from_toml_str` adds it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| match e {
            ConfigError::Invalid {
                key,
                line,
                value: None,
                message,
            } => ConfigError::Invalid {
                value: value_of(self, &key),
                key,
                line,
                message,
            },
            other => other,
        })
    }

    /// The checks of [`RelayConfig::validate`], before the offending value is added.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            key,
            line: None,
            value: None,
            message,
        };
        if self.listen.is_empty() {
            return Err(invalid(
                "listen".into(),
                "must list at least one address".into(),
            ));
        }
        for (i, addr) in self.listen.iter().enumerate() {
            check_listen_addr(addr).map_err(|message| invalid(format!("listen[{i}]"), message))?;
        }
        for (i, addr) in self.external_addresses.iter().enumerate() {
            parse_multiaddr(addr)
                .map_err(|message| invalid(format!("external_addresses[{i}]"), message))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir".into(), "must not be empty".into()));
        }
        if self
            .identity_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("identity_file".into(), "must not be empty".into()));
        }

        at_least_one("dht.max_records", self.dht.max_records.into())?;
        at_least_one("dht.max_record_bytes", self.dht.max_record_bytes.into())?;

        let c = &self.circuit;
        at_least_one("circuit.max_reservations", c.max_reservations.into())?;
        at_least_one(
            "circuit.max_reservations_per_peer",
            c.max_reservations_per_peer.into(),
        )?;
        at_least_one(
            "circuit.reservation_duration_secs",
            c.reservation_duration_secs,
        )?;
        at_least_one("circuit.max_circuits", c.max_circuits.into())?;
        at_least_one(
            "circuit.max_circuits_per_peer",
            c.max_circuits_per_peer.into(),
        )?;
        at_least_one(
            "circuit.max_circuit_duration_secs",
            c.max_circuit_duration_secs,
        )?;
        at_least_one("circuit.max_circuit_bytes", c.max_circuit_bytes)?;

        let m = &self.mailbox;
        if !(1..=MAX_TTL_DAYS).contains(&m.ttl_days) {
            return Err(invalid(
                "mailbox.ttl_days".into(),
                format!("must be between 1 and {MAX_TTL_DAYS}"),
            ));
        }
        check_ttl_secs("mailbox.ttl_secs", m.ttl_secs)?;
        check_max_jobs("mailbox.max_jobs", m.max_jobs)?;
        at_least_one(
            "mailbox.max_messages_per_mailbox",
            m.max_messages_per_mailbox,
        )?;
        at_least_one("mailbox.max_envelope_bytes", m.max_envelope_bytes)?;
        at_least_one("mailbox.sender_rate_per_sec", m.sender_rate_per_sec.into())?;
        at_least_one("mailbox.sender_burst", m.sender_burst.into())?;
        at_least_one("mailbox.max_tracked_senders", m.max_tracked_senders.into())?;
        at_least_one("mailbox.expire_interval_secs", m.expire_interval_secs)?;
        at_least_one("mailbox.challenge_ttl_secs", m.challenge_ttl_secs)?;
        at_least_one(
            "mailbox.max_pending_challenges",
            m.max_pending_challenges.into(),
        )?;
        at_least_one(
            "mailbox.max_challenges_per_peer",
            m.max_challenges_per_peer.into(),
        )?;
        at_least_one(
            "mailbox.challenge_rate_per_sec",
            m.challenge_rate_per_sec.into(),
        )?;
        at_least_one("mailbox.challenge_burst", m.challenge_burst.into())?;
        if m.max_challenges_per_peer > m.max_pending_challenges {
            return Err(invalid(
                "mailbox.max_challenges_per_peer".into(),
                format!(
                    "must be at most max_pending_challenges ({})",
                    m.max_pending_challenges
                ),
            ));
        }
        if m.max_envelope_bytes > MAX_ENVELOPE_BYTES_LIMIT {
            return Err(invalid(
                "mailbox.max_envelope_bytes".into(),
                format!("must be at most {MAX_ENVELOPE_BYTES_LIMIT}"),
            ));
        }
        if m.max_bytes_per_mailbox < m.max_envelope_bytes {
            return Err(invalid(
                "mailbox.max_bytes_per_mailbox".into(),
                format!(
                    "must be at least max_envelope_bytes ({})",
                    m.max_envelope_bytes
                ),
            ));
        }
        if !(1..=100).contains(&m.open_share_percent) {
            return Err(invalid("mailbox.open_share_percent".into(), "must be between 1 and 100".into()));
        }
        let (_, open_bytes) = m.limits().quota(crate::mailbox::Share::Open);
        if open_bytes < m.max_envelope_bytes {
            return Err(invalid(
                "mailbox.open_share_percent".into(),
                format!(
                    "its share of max_bytes_per_mailbox ({open_bytes} bytes) must hold max_envelope_bytes ({})",
                    m.max_envelope_bytes
                ),
            ));
        }
        if m.max_total_bytes < m.max_bytes_per_mailbox {
            return Err(invalid(
                "mailbox.max_total_bytes".into(),
                format!(
                    "must be at least max_bytes_per_mailbox ({})",
                    m.max_bytes_per_mailbox
                ),
            ));
        }
        at_least_one("mailbox.max_total_envelopes", m.max_total_envelopes)?;
        // One full mailbox must fit.
        if m.max_total_envelopes < m.max_messages_per_mailbox {
            return Err(invalid(
                "mailbox.max_total_envelopes".into(),
                format!(
                    "must be at least max_messages_per_mailbox ({})",
                    m.max_messages_per_mailbox
                ),
            ));
        }

        let g = &self.grouplog;
        if !(1..=MAX_TTL_DAYS).contains(&g.ttl_days) {
            return Err(invalid(
                "grouplog.ttl_days".into(),
                format!("must be between 1 and {MAX_TTL_DAYS}"),
            ));
        }
        check_ttl_secs("grouplog.ttl_secs", g.ttl_secs)?;
        check_max_jobs("grouplog.max_jobs", g.max_jobs)?;
        at_least_one("grouplog.max_items_per_log", g.max_items_per_log)?;
        at_least_one("grouplog.sender_rate_per_sec", g.sender_rate_per_sec.into())?;
        at_least_one("grouplog.sender_burst", g.sender_burst.into())?;
        at_least_one("grouplog.expire_interval_secs", g.expire_interval_secs)?;
        at_least_one("grouplog.fetch_rate_per_sec", g.fetch_rate_per_sec.into())?;
        at_least_one("grouplog.fetch_burst", g.fetch_burst.into())?;
        // A log must hold at least one item of the largest size the protocol allows.
        let max_item = kith_p2p::grouplog::MAX_ITEM_LEN as u64;
        if g.max_bytes_per_log < max_item {
            return Err(invalid(
                "grouplog.max_bytes_per_log".into(),
                format!("must be at least {max_item} (the largest group log item)"),
            ));
        }
        if g.max_total_bytes < g.max_bytes_per_log {
            return Err(invalid(
                "grouplog.max_total_bytes".into(),
                format!(
                    "must be at least max_bytes_per_log ({})",
                    g.max_bytes_per_log
                ),
            ));
        }
        at_least_one("grouplog.max_total_items", g.max_total_items)?;
        // One full log must fit.
        if g.max_total_items < g.max_items_per_log {
            return Err(invalid(
                "grouplog.max_total_items".into(),
                format!(
                    "must be at least max_items_per_log ({})",
                    g.max_items_per_log
                ),
            ));
        }

        let d = &self.media;
        if d.dir.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid("media.dir".into(), "must not be empty".into()));
        }
        if !(1..=MAX_TTL_DAYS).contains(&d.ttl_days) {
            return Err(invalid(
                "media.ttl_days".into(),
                format!("must be between 1 and {MAX_TTL_DAYS}"),
            ));
        }
        check_ttl_secs("media.ttl_secs", d.ttl_secs)?;
        check_max_jobs("media.max_uploads", d.max_uploads)?;
        at_least_one("media.max_blob_bytes", d.max_blob_bytes)?;
        at_least_one("media.expire_interval_secs", d.expire_interval_secs)?;
        at_least_one("media.turn_max_allocations", d.turn_max_allocations.into())?;
        at_least_one("media.turn_max_allocations_per_peer", d.turn_max_allocations_per_peer.into())?;
        at_least_one("media.turn_max_bytes_per_second", d.turn_max_bytes_per_second)?;
        if d.max_bytes_per_uploader < d.max_blob_bytes {
            return Err(invalid(
                "media.max_bytes_per_uploader".into(),
                format!("must be at least max_blob_bytes ({})", d.max_blob_bytes),
            ));
        }
        // Every blob counts at least this much: a smaller quota would refuse all.
        if d.max_bytes_per_uploader < crate::media::MIN_BLOB_CHARGE {
            return Err(invalid(
                "media.max_bytes_per_uploader".into(),
                format!(
                    "must be at least {} (the least a blob counts)",
                    crate::media::MIN_BLOB_CHARGE
                ),
            ));
        }
        if d.max_total_bytes < d.max_bytes_per_uploader {
            return Err(invalid(
                "media.max_total_bytes".into(),
                format!(
                    "must be at least max_bytes_per_uploader ({})",
                    d.max_bytes_per_uploader
                ),
            ));
        }

        let n = &self.connections;
        at_least_one("connections.max_established", n.max_established.into())?;
        at_least_one(
            "connections.max_pending_incoming",
            n.max_pending_incoming.into(),
        )?;
        at_least_one("connections.max_per_peer", n.max_per_peer.into())?;
        at_least_one("connections.max_per_ip", n.max_per_ip.into())?;
        if !(1..=100).contains(&n.max_memory_percent) {
            return Err(invalid(
                "connections.max_memory_percent".into(),
                "must be between 1 and 100".into(),
            ));
        }
        if n.max_memory_bytes.is_some_and(|b| b < MIN_MAX_MEMORY_BYTES) {
            return Err(invalid(
                "connections.max_memory_bytes".into(),
                format!("must be at least {MIN_MAX_MEMORY_BYTES}"),
            ));
        }

        for (i, member) in self.access.members.iter().enumerate() {
            check_peer_id(member)
                .map_err(|message| invalid(format!("access.members[{i}]"), message))?;
        }
        if self.access.policy == AccessPolicy::Members
            && self.access.members.is_empty()
            && !self.access.operator_tokens
        {
            return Err(invalid(
                "access.members".into(),
                "policy \"members\" admits no one: list members or set operator_tokens = true"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Where the identity key lives: `identity_file` (relative to `data_dir` unless
    /// absolute), or `<data_dir>/identity.key`.
    pub fn identity_path(&self) -> PathBuf {
        match &self.identity_file {
            Some(path) => self.data_dir.join(path),
            None => self.data_dir.join("identity.key"),
        }
    }

    /// The mailbox database directory: `<data_dir>/mailbox`.
    pub fn mailbox_dir(&self) -> PathBuf {
        self.data_dir.join("mailbox")
    }

    /// The group log database directory: `<data_dir>/grouplog`.
    pub fn grouplog_dir(&self) -> PathBuf {
        self.data_dir.join("grouplog")
    }

    /// The media role's directory: `media.dir` (relative to `data_dir` unless
    /// absolute), or `<data_dir>/media`.
    pub fn media_dir(&self) -> PathBuf {
        match &self.media.dir {
            Some(dir) => self.data_dir.join(dir),
            None => self.data_dir.join("media"),
        }
    }
}

fn at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            line: None,
            value: None,
            message: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Checks an optional `ttl_secs`: 1 to [`MAX_TTL_SECS`] when set.
fn check_ttl_secs(key: &str, value: Option<u64>) -> Result<(), ConfigError> {
    match value {
        Some(secs) if !(1..=MAX_TTL_SECS).contains(&secs) => Err(ConfigError::Invalid {
            key: key.to_owned(),
            line: None,
            value: None,
            message: format!("must be between 1 and {MAX_TTL_SECS}"),
        }),
        _ => Ok(()),
    }
}

/// Checks a `max_jobs`: 1 to [`MAX_JOBS_LIMIT`].
fn check_max_jobs(key: &str, value: u32) -> Result<(), ConfigError> {
    if (1..=MAX_JOBS_LIMIT).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        line: None,
        value: None,
        message: format!("must be between 1 and {MAX_JOBS_LIMIT}"),
    })
}

/// Checks that `text` looks like a libp2p peer id: base58btc of a multihash that is
/// either an identity hash (inlined Ed25519 key, `12D3KooW…`) or SHA2-256 (`Qm…`).
fn check_peer_id(text: &str) -> Result<(), String> {
    const IDENTITY: u8 = 0x00;
    const SHA2_256: u8 = 0x12;
    /// Longest public key libp2p inlines with the identity hash.
    const MAX_INLINE_KEY: usize = 42;
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|e| format!("not a peer id (not base58: {e})"))?;
    let ok = match bytes.as_slice() {
        [IDENTITY, len, rest @ ..] => {
            usize::from(*len) == rest.len() && rest.len() <= MAX_INLINE_KEY
        }
        [SHA2_256, 32, rest @ ..] => rest.len() == 32,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("not a peer id (not a multihash)".to_owned())
    }
}

/// Parses a multiaddr, saying why not in words for the operator.
fn parse_multiaddr(text: &str) -> Result<Multiaddr, String> {
    if !text.starts_with('/') {
        return Err("not a multiaddr: must start with `/`, e.g. /ip4/0.0.0.0/tcp/4001".into());
    }
    text.parse::<Multiaddr>()
        .map_err(|e| format!("not a multiaddr ({e})"))
}

/// Checks that `text` is an address the relay's transports can listen on: an IP
/// address then TCP, or UDP with QUIC v1. DNS names and WebSocket would parse yet
/// fail only when the relay starts. A `/p2p/<id>` suffix would work, but it is
/// refused too: `id` adds the relay's own, and a listen address has no business
/// naming a peer (releases before the first-hour fixes accepted it).
fn check_listen_addr(text: &str) -> Result<(), String> {
    let addr = parse_multiaddr(text)?;
    let mut parts = addr.iter();
    let ip = matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)));
    let transport = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(Protocol::Tcp(_)), None, None)
            | (Some(Protocol::Udp(_)), Some(Protocol::QuicV1), None)
    );
    if ip && transport {
        Ok(())
    } else {
        Err("not an address the relay can listen on: use /ip4/ADDR/tcp/PORT or \
             /ip4/ADDR/udp/PORT/quic-v1 (or /ip6/...)"
            .into())
    }
}

/// A serde error message without the value it quotes (the error shows it once,
/// beside the key) and in the operator's words rather than Rust's type names.
fn serde_message(message: &str) -> String {
    let expected = message
        .split_once(", expected ")
        .map(|(_, rest)| rest.trim_end_matches('.'));
    let plain = |expected: &str| {
        let range = match expected {
            "u8" => Some(u64::from(u8::MAX)),
            "u16" => Some(u64::from(u16::MAX)),
            "u32" => Some(u64::from(u32::MAX)),
            "u64" => Some(u64::MAX),
            _ => None,
        };
        match range {
            Some(max) => format!("a whole number from 0 to {max}"),
            None => expected.to_owned(),
        }
    };
    if message.starts_with("unknown field") {
        return match expected {
            Some(expected) => format!("unknown key, expected {expected}"),
            None => "unknown key".to_owned(),
        };
    }
    let quotes_value = ["unknown variant", "invalid type", "invalid value"]
        .iter()
        .any(|p| message.starts_with(p));
    match expected {
        Some(expected) if quotes_value => format!("expected {}", plain(expected)),
        _ => message.trim_end_matches('.').to_owned(),
    }
}

/// The TOML text of the value at dotted `key` in `config` (defaults included).
fn value_of(config: &RelayConfig, key: &str) -> Option<String> {
    let table = toml::Table::try_from(config).ok()?;
    let mut value: Option<&toml::Value> = None;
    let mut current = &table;
    for segment in key.split('.') {
        let (name, index) = split_index(segment);
        let found = current.get(name)?;
        let found = match (found, index) {
            (toml::Value::Array(items), Some(i)) => items.get(i)?,
            (other, _) => other,
        };
        value = Some(found);
        if let toml::Value::Table(inner) = found {
            current = inner;
        }
    }
    match value? {
        toml::Value::Table(_) => None,
        other => Some(one_line(&other.to_string())),
    }
}

/// `name[3]` as (`name`, `Some(3)`); `name` as (`name`, `None`).
fn split_index(segment: &str) -> (&str, Option<usize>) {
    match segment.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (segment, None),
    }
}

/// The span of the value at dotted `key` if the document sets exactly that key to
/// something other than a table.
fn value_span(document: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let mut table = document;
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (name, index) = split_index(segment);
        let (_, v) = table.iter().find(|(k, _)| k.get_ref() == name)?;
        match (v.get_ref(), index) {
            (DeValue::Table(inner), None) if segments.peek().is_some() => table = inner,
            (DeValue::Table(_), _) => return None,
            (DeValue::Array(items), Some(i)) if segments.peek().is_none() => {
                return items.get(i).map(|item| item.span());
            }
            (_, None) if segments.peek().is_none() => return Some(v.span()),
            _ => return None,
        }
    }
    None
}

/// The span of the value at dotted `key` (an index suffix `[i]` selects an array
/// element); if the key is absent, the span of its closest present ancestor.
fn locate(document: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let mut table = document;
    let mut found = None;
    for segment in key.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            break;
        };
        found = Some(match (v.get_ref(), index) {
            (DeValue::Table(_), _) => k.span(),
            (DeValue::Array(items), Some(i)) => items.get(i).map_or(v.span(), |item| item.span()),
            _ => v.span(),
        });
        match v.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found
}

/// Appends to `path` the keys leading to the deepest key or value containing byte
/// `offset`; returns whether one was found.
fn key_path_at(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if let DeValue::Table(inner) = value.get_ref() {
            if key_path_at(inner, offset, path) || span_contains(&key.span(), offset) {
                return true;
            }
        } else if span_contains(&key.span(), offset) || span_contains(&value.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    fn invalid(text: &str) -> (String, Option<usize>, String) {
        match RelayConfig::from_toml_str(text) {
            Err(ConfigError::Invalid {
                key, line, message, ..
            }) => (key, line, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_text_gives_defaults() {
        let config = RelayConfig::from_toml_str("").unwrap();
        assert_eq!(config, RelayConfig::default());
        config.validate().unwrap();
        assert_eq!(
            config.identity_path(),
            PathBuf::from("./kith-relay-data/identity.key")
        );
        assert_eq!(config.mailbox.ttl(), Duration::from_secs(30 * 86_400));
        assert_eq!(config.mailbox.limits().max_envelope_bytes, 262_144);
        assert_eq!(config.grouplog.limits().max_items_per_log, 100_000);
        assert_eq!(config.grouplog.limits().max_bytes_per_log, 256 * MIB);
        assert_eq!(config.grouplog.ttl(), Duration::from_secs(30 * 86_400));
        assert_eq!(
            config.grouplog_dir(),
            PathBuf::from("./kith-relay-data/grouplog")
        );
        assert_eq!(
            config.circuit.max_circuit_duration(),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn example_parses_to_defaults_and_lists_every_key() {
        assert_eq!(
            RelayConfig::from_toml_str(EXAMPLE_CONFIG).unwrap(),
            RelayConfig::default()
        );
        // Every key of the defaults is written out (not just left to default).
        let example: toml::Table = toml::from_str(EXAMPLE_CONFIG).unwrap();
        let defaults = toml::Table::try_from(RelayConfig::default()).unwrap();
        fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in table {
                let key = format!("{prefix}{k}");
                match v {
                    toml::Value::Table(t) => keys(t, &format!("{key}."), out),
                    _ => out.push(key),
                }
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys(&example, "", &mut a);
        keys(&defaults, "", &mut b);
        assert_eq!(a, b);
        // Optional keys without a default are shown commented out, and valid.
        let uncommented = EXAMPLE_CONFIG
            .replace(
                "# listen = \"127.0.0.1:9090\"",
                "listen = \"127.0.0.1:9090\"",
            )
            .replace("# identity_file = ", "identity_file = ")
            .replace("# max_memory_bytes = ", "max_memory_bytes = ")
            .replace("# ttl_secs = ", "ttl_secs = ");
        let config = RelayConfig::from_toml_str(&uncommented).unwrap();
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert!(config.identity_file.is_some());
        assert_eq!(
            config.connections.limits().max_memory,
            MemoryLimit::Bytes(GIB)
        );
        assert_eq!(config.mailbox.ttl(), Duration::from_secs(3600));
        assert_eq!(config.grouplog.ttl(), Duration::from_secs(3600));
    }

    #[test]
    fn ttl_secs_replaces_ttl_days_and_both_are_bounded() {
        let config =
            RelayConfig::from_toml_str("[mailbox]\nttl_secs = 2\n[grouplog]\nttl_secs = 3\n").unwrap();
        assert_eq!(config.mailbox.ttl(), Duration::from_secs(2));
        assert_eq!(config.mailbox.limits().ttl, Duration::from_secs(2));
        assert_eq!(config.grouplog.ttl(), Duration::from_secs(3));
        assert_eq!(config.grouplog.limits().ttl, Duration::from_secs(3));
        let (key, line, _) = invalid("[mailbox]\nttl_days = 7\nttl_secs = 0\n");
        assert_eq!((key.as_str(), line), ("mailbox.ttl_secs", Some(3)));
        let too_long = format!("[grouplog]\nttl_secs = {}\n", MAX_TTL_SECS + 1);
        assert_eq!(invalid(&too_long).0, "grouplog.ttl_secs");
        RelayConfig::from_toml_str(&format!("[grouplog]\nttl_secs = {MAX_TTL_SECS}\n")).unwrap();
    }

    #[test]
    fn max_jobs_is_bounded() {
        let config = RelayConfig::from_toml_str("[mailbox]\nmax_jobs = 1\n[grouplog]\nmax_jobs = 512\n").unwrap();
        assert_eq!((config.mailbox.max_jobs, config.grouplog.max_jobs), (1, 512));
        let (key, line, _) = invalid("\n[mailbox]\nmax_jobs = 0\n");
        assert_eq!((key.as_str(), line), ("mailbox.max_jobs", Some(3)));
        assert_eq!(invalid("[grouplog]\nmax_jobs = 513\n").0, "grouplog.max_jobs");
    }

    #[test]
    fn full_config_parses() {
        let text = format!(
            r#"
listen = ["/ip6/::/tcp/4002"]
data_dir = "/var/lib/kith-relay"
identity_file = "/etc/kith/relay.key"

[dht]
enabled = false

[circuit]
enabled = false
max_circuits = 16

[mailbox]
ttl_days = 7
max_envelope_bytes = 1024

[access]
policy = "members"
members = ["{PEER}", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"]

[metrics]
listen = "127.0.0.1:0"

[log]
format = "json"
"#
        );
        let config = RelayConfig::from_toml_str(&text).unwrap();
        assert_eq!(config.listen, ["/ip6/::/tcp/4002"]);
        assert_eq!(config.identity_path(), PathBuf::from("/etc/kith/relay.key"));
        assert_eq!(
            config.mailbox_dir(),
            PathBuf::from("/var/lib/kith-relay/mailbox")
        );
        assert!(!config.dht.enabled && !config.circuit.enabled && config.autonat.enabled);
        assert_eq!(config.circuit.max_circuits, 16);
        assert_eq!(config.circuit.max_reservations, 1024);
        assert_eq!(config.mailbox.ttl_days, 7);
        assert_eq!(config.access.policy, AccessPolicy::Members);
        assert_eq!(config.access.members.len(), 2);
        assert_eq!(config.metrics.listen.map(|a| a.port()), Some(0));
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn relative_identity_file_is_under_data_dir() {
        let config =
            RelayConfig::from_toml_str("data_dir = \"/d\"\nidentity_file = \"k/id\"\n").unwrap();
        assert_eq!(config.identity_path(), PathBuf::from("/d/k/id"));
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let (key, line, message) = invalid("data_dir = \"x\"\nlisten_on = []\n");
        assert_eq!((key.as_str(), line), ("listen_on", Some(2)));
        assert!(message.starts_with("unknown key, expected one of"), "{message}");
        let (key, line, _) = invalid("[mailbox]\nttl_days = 3\n\nttl_dayz = 4\n");
        assert_eq!((key.as_str(), line), ("mailbox.ttl_dayz", Some(4)));
        let (key, line, _) = invalid("\n[extra]\nx = 1\n");
        assert_eq!((key.as_str(), line), ("extra", Some(2)));
    }

    #[test]
    fn wrong_types_name_key_and_line() {
        let (key, line, _) = invalid("[dht]\nenabled = \"yes\"\n");
        assert_eq!((key.as_str(), line), ("dht.enabled", Some(2)));
        let (key, line, _) = invalid("\n\n[access]\npolicy = \"closed\"\n");
        assert_eq!((key.as_str(), line), ("access.policy", Some(4)));
        let (key, line, _) = invalid("[mailbox]\nttl_days = -1\n");
        assert_eq!((key.as_str(), line), ("mailbox.ttl_days", Some(2)));
        let (key, line, _) = invalid("[metrics]\nlisten = \"localhost\"\n");
        assert_eq!((key.as_str(), line), ("metrics.listen", Some(2)));
        let (key, _, _) = invalid("[log]\nformat = \"xml\"\n");
        assert_eq!(key, "log.format");
    }

    #[test]
    fn invalid_values_name_key_and_line() {
        let (key, line, _) = invalid("listen = [\n  \"/ip4/0.0.0.0/tcp/1\",\n  \"ip4/x\",\n]\n");
        assert_eq!((key.as_str(), line), ("listen[1]", Some(3)));
        assert_eq!(invalid("listen = [\"\"]").0, "listen[0]");
        assert_eq!(invalid("\nlisten = []").1, Some(2));
        let (key, line, _) = invalid("[mailbox]\nenabled = true\nttl_days = 0\n");
        assert_eq!((key.as_str(), line), ("mailbox.ttl_days", Some(3)));
        assert_eq!(
            invalid("[mailbox]\nttl_days = 4000\n").0,
            "mailbox.ttl_days"
        );
        assert_eq!(
            invalid("[circuit]\nmax_circuits = 0\n").0,
            "circuit.max_circuits"
        );
        assert_eq!(
            invalid("[mailbox]\nsender_burst = 0\n").0,
            "mailbox.sender_burst"
        );
        for key in [
            "ttl_days",
            "max_items_per_log",
            "sender_rate_per_sec",
            "sender_burst",
            "expire_interval_secs",
        ] {
            assert_eq!(
                invalid(&format!("[grouplog]\n{key} = 0\n")).0,
                format!("grouplog.{key}")
            );
        }
        assert_eq!(
            invalid("[grouplog]\nttl_days = 4000\n").0,
            "grouplog.ttl_days"
        );
        assert_eq!(invalid("data_dir = \"\"\n").0, "data_dir");
        let (key, _, _) = invalid("[mailbox]\nmax_envelope_bytes = 1073741824\n");
        assert_eq!(key, "mailbox.max_envelope_bytes");
    }

    #[test]
    fn the_media_section_is_validated_and_its_dir_is_under_data_dir() {
        let (key, line, message) = invalid("[media]\nenabled = true\nmax_blob_bytes = 9000000000\n");
        assert_eq!(
            (key.as_str(), line),
            ("media.max_bytes_per_uploader", Some(1))
        );
        assert!(message.contains("max_blob_bytes (9000000000)"), "{message}");
        assert_eq!(
            invalid("[media]\nmax_bytes_per_uploader = 40000000000\n").0,
            "media.max_total_bytes"
        );
        assert_eq!(invalid("[media]\nmax_blob_bytes = 0\n").0, "media.max_blob_bytes");
        assert_eq!(invalid("[media]\nttl_days = 0\n").0, "media.ttl_days");
        assert_eq!(invalid("[media]\nttl_secs = 0\n").0, "media.ttl_secs");
        assert_eq!(invalid("[media]\nmax_uploads = 513\n").0, "media.max_uploads");
        assert_eq!(
            invalid("[media]\nexpire_interval_secs = 0\n").0,
            "media.expire_interval_secs"
        );
        assert_eq!(invalid("[media]\ndir = \"\"\n").0, "media.dir");
        assert_eq!(invalid("[media]\nsize = 1\n").0, "media.size");

        let config = RelayConfig::from_toml_str(
            "data_dir = \"/srv/kith\"\n[media]\nenabled = true\nttl_secs = 60\n",
        )
        .unwrap();
        assert!(!RelayConfig::default().media.enabled, "off unless asked for");
        assert_eq!(config.media_dir(), PathBuf::from("/srv/kith/media"));
        assert_eq!(config.media.ttl(), Duration::from_secs(60));
        let moved = RelayConfig::from_toml_str("data_dir = \"/srv/kith\"\n[media]\ndir = \"/big/disk\"\n")
            .unwrap();
        assert_eq!(moved.media_dir(), PathBuf::from("/big/disk"));
    }

    #[test]
    fn relations_between_keys_are_checked() {
        // The key at fault is absent: the line is that of its table.
        let (key, line, message) = invalid("\n[mailbox]\nmax_bytes_per_mailbox = 17179869184\n");
        assert_eq!((key.as_str(), line), ("mailbox.max_total_bytes", Some(2)));
        assert!(message.contains("max_bytes_per_mailbox"), "{message}");
        let (key, line, _) =
            invalid("[mailbox]\nmax_bytes_per_mailbox = 1000\nmax_envelope_bytes = 2000\n");
        assert_eq!(
            (key.as_str(), line),
            ("mailbox.max_bytes_per_mailbox", Some(2))
        );
        assert_eq!(
            invalid("[mailbox]\nmax_total_bytes = 1\n").0,
            "mailbox.max_total_bytes"
        );
        let (key, line, message) = invalid("[grouplog]\n\nmax_bytes_per_log = 1000\n");
        assert_eq!(
            (key.as_str(), line),
            ("grouplog.max_bytes_per_log", Some(3))
        );
        assert!(message.contains("102400"), "{message}");
        assert_eq!(
            invalid("[grouplog]\nmax_bytes_per_log = 17179869184\n").0,
            "grouplog.max_total_bytes"
        );
        // Defaults only: no line at all.
        let mut config = RelayConfig::default();
        config.access.policy = AccessPolicy::Members;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid { ref key, line: None, .. }) if key == "access.members"
        ));
        let (key, line, _) = invalid("[access]\npolicy = \"members\"\n");
        assert_eq!((key.as_str(), line), ("access.members", Some(1)));
        let ok =
            RelayConfig::from_toml_str("[access]\npolicy = \"members\"\noperator_tokens = true\n");
        assert!(ok.is_ok());
    }

    /// The store-wide counts bound the memory index and the start-up scan; each must
    /// hold at least one full mailbox or log, and the key at fault is named.
    #[test]
    fn store_wide_counts_must_hold_one_full_mailbox_or_log() {
        let defaults = RelayConfig::default();
        assert_eq!(defaults.mailbox.limits().max_total_envelopes, 4_000_000);
        assert_eq!(defaults.grouplog.limits().max_total_items, 4_000_000);

        let (key, line, message) =
            invalid("[mailbox]\nmax_messages_per_mailbox = 100\nmax_total_envelopes = 99\n");
        assert_eq!(
            (key.as_str(), line),
            ("mailbox.max_total_envelopes", Some(3))
        );
        assert!(
            message.contains("max_messages_per_mailbox (100)"),
            "{message}"
        );
        // Raising the per-mailbox count past the default total names the total,
        // though it is not in the text.
        let (key, line, _) = invalid("[mailbox]\nmax_messages_per_mailbox = 4000001\n");
        assert_eq!(
            (key.as_str(), line),
            ("mailbox.max_total_envelopes", Some(1))
        );
        assert_eq!(
            invalid("[mailbox]\nmax_total_envelopes = 0\n").0,
            "mailbox.max_total_envelopes"
        );
        let config = RelayConfig::from_toml_str(
            "[mailbox]\nmax_messages_per_mailbox = 100\nmax_total_envelopes = 100\n",
        )
        .unwrap();
        assert_eq!(config.mailbox.limits().max_total_envelopes, 100);

        let (key, line, message) = invalid("[grouplog]\nmax_total_items = 99999\n");
        assert_eq!((key.as_str(), line), ("grouplog.max_total_items", Some(2)));
        assert!(message.contains("max_items_per_log (100000)"), "{message}");
        assert_eq!(
            invalid("[grouplog]\nmax_items_per_log = 1\nmax_total_items = 0\n").0,
            "grouplog.max_total_items"
        );
        let config =
            RelayConfig::from_toml_str("[grouplog]\nmax_items_per_log = 5\nmax_total_items = 5\n")
                .unwrap();
        assert_eq!(config.grouplog.limits().max_total_items, 5);
    }

    #[test]
    fn connection_and_request_limits_are_validated() {
        let defaults = RelayConfig::default();
        assert_eq!(
            defaults.connections.limits(),
            ConnectionLimits {
                max_established: 4096,
                max_established_incoming: 4096,
                max_pending_incoming: 256,
                max_per_peer: 8,
                max_per_ip: 64,
                max_memory: MemoryLimit::Percent(80),
            }
        );
        assert_eq!(defaults.mailbox.limits().max_challenges_per_mailbox, 4);
        for key in [
            "max_established",
            "max_pending_incoming",
            "max_per_peer",
            "max_per_ip",
            "max_memory_percent",
        ] {
            let (found, line, message) = invalid(&format!("[connections]\n{key} = 0\n"));
            assert_eq!(
                (found.as_str(), line),
                (format!("connections.{key}").as_str(), Some(2))
            );
            assert!(message.contains("1"), "{message}");
        }
        assert_eq!(
            invalid("[connections]\nmax_memory_percent = 101\n").0,
            "connections.max_memory_percent"
        );
        // At the limit and one below it.
        let config =
            RelayConfig::from_toml_str("[connections]\nmax_memory_bytes = 1048576\n").unwrap();
        assert_eq!(
            config.connections.limits().max_memory,
            MemoryLimit::Bytes(MIN_MAX_MEMORY_BYTES)
        );
        let (key, _, message) = invalid("[connections]\nmax_memory_bytes = 1048575\n");
        assert_eq!(key, "connections.max_memory_bytes");
        assert!(message.contains("1048576"), "{message}");
        for key in [
            "max_challenges_per_peer",
            "challenge_rate_per_sec",
            "challenge_burst",
        ] {
            assert_eq!(
                invalid(&format!("[mailbox]\n{key} = 0\n")).0,
                format!("mailbox.{key}")
            );
        }
        let (key, _, message) =
            invalid("[mailbox]\nmax_pending_challenges = 8\nmax_challenges_per_peer = 9\n");
        assert_eq!(key, "mailbox.max_challenges_per_peer");
        assert!(message.contains("max_pending_challenges (8)"), "{message}");
        RelayConfig::from_toml_str(
            "[mailbox]\nmax_pending_challenges = 8\nmax_challenges_per_peer = 8\n",
        )
        .unwrap();
        for key in ["fetch_rate_per_sec", "fetch_burst"] {
            assert_eq!(
                invalid(&format!("[grouplog]\n{key} = 0\n")).0,
                format!("grouplog.{key}")
            );
        }
    }

    #[test]
    fn members_must_be_peer_ids() {
        let text = format!("[access]\nmembers = [\n  \"{PEER}\",\n  \"12D3KooWnotapeerid\",\n]\n");
        let (key, line, message) = invalid(&text);
        assert_eq!((key.as_str(), line), ("access.members[1]", Some(4)));
        assert!(message.contains("not a peer id"), "{message}");
        assert_eq!(
            invalid("[access]\nmembers = [\"0OIl\"]\n").0,
            "access.members[0]"
        );
        assert!(check_peer_id(PEER).is_ok());
        assert!(check_peer_id(&PEER[..PEER.len() - 1]).is_err());
    }

    #[test]
    fn syntax_errors_show_their_line() {
        let e = RelayConfig::from_toml_str("[dht]\nenabled = true\nenabled = false\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "relay config line 3: duplicate key: `enabled = false`"
        );
        let e = RelayConfig::from_toml_str("[mailbox]\n  ttl_days = 3x  \n").unwrap_err();
        assert!(e.to_string().starts_with("relay config line 2: "), "{e}");
        assert!(e.to_string().ends_with(": `ttl_days = 3x`"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        assert!(matches!(
            RelayConfig::from_toml_str("[dht]\nenabled = true\nenabled = false\n"),
            Err(ConfigError::Syntax { line: 3, .. })
        ));
        assert!(matches!(
            RelayConfig::from_toml_str("listen = [\n"),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn load_reads_file_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        assert!(matches!(
            RelayConfig::load(&path),
            Err(ConfigError::Io { .. })
        ));
        std::fs::write(&path, "[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(
            RelayConfig::load(&path).unwrap().log.format,
            LogFormat::Json
        );
    }

    #[test]
    fn errors_display_key_and_line() {
        let e = RelayConfig::from_toml_str("[mailbox]\nttl_days = 0\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "relay config line 2: `mailbox.ttl_days` = 0: must be between 1 and 3650"
        );
    }

    /// The operator reads the key, the line and the bad value, each exactly once.
    #[test]
    fn errors_show_the_bad_value_once() {
        let shown = |text: &str| RelayConfig::from_toml_str(text).unwrap_err().to_string();
        let once = |message: &str, needle: &str| {
            assert_eq!(message.matches(needle).count(), 1, "{needle:?} in {message:?}");
        };
        // Serde errors: the value beside the key, not again inside the message.
        let e = shown("[dht]\nenabled = \"yes\"\n");
        assert_eq!(
            e,
            "relay config line 2: `dht.enabled` = \"yes\": expected a boolean"
        );
        let e = shown("[mailbox]\nttl_days = -1\n");
        assert_eq!(
            e,
            "relay config line 2: `mailbox.ttl_days` = -1: expected a whole number from 0 to 4294967295"
        );
        let e = shown("[access]\npolicy = \"closed\"\n");
        once(&e, "closed");
        assert!(e.contains("line 2") && e.contains("`open`"), "{e}");
        let e = shown("listen_on = []\n");
        once(&e, "listen_on");
        assert!(e.contains("`listen_on` = []: unknown key, expected"), "{e}");
        let e = shown("[metrics]\nlisten = \"localhost\"\n");
        once(&e, "localhost");
        // Validation errors: the value as written.
        let e = shown("listen = [\n  \"/ip4/0.0.0.0/tcp/1\",\n  \"ip4/x\",\n]\n");
        assert!(
            e.starts_with("relay config line 3: `listen[1]` = \"ip4/x\": not a multiaddr"),
            "{e}"
        );
        once(&e, "ip4/x");
        let e = shown(&format!("[access]\nmembers = [\"{PEER}\", \"12D3KooWnotapeerid\"]\n"));
        once(&e, "12D3KooWnotapeerid");
        assert!(e.contains("`access.members[1]` = \"12D3KooWnotapeerid\""), "{e}");
        // A key left at its default is shown with its default value.
        let e = shown("\n[mailbox]\nmax_bytes_per_mailbox = 17179869184\n");
        assert_eq!(
            e,
            "relay config line 2: `mailbox.max_total_bytes` = 8589934592 (default): \
             must be at least max_bytes_per_mailbox (17179869184)"
        );
        // A value spread over lines is shown on one.
        let e = shown("[access]\npolicy = \"members\"\nmembers = [\n]\n");
        assert!(e.contains("`access.members` = [ ]:"), "{e}");
        // `validate` alone (a config built in code) still names the value.
        let mut config = RelayConfig::default();
        config.circuit.max_circuits = 0;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "relay config: `circuit.max_circuits` = 0: must be at least 1"
        );
    }

    /// Every listen address is checked as the relay would use it, so check-config
    /// catches what would otherwise fail only at start.
    #[test]
    fn listen_addresses_must_be_listenable() {
        for good in [
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::/tcp/0",
            "/ip4/127.0.0.1/udp/4001/quic-v1",
        ] {
            RelayConfig::from_toml_str(&format!("listen = [\"{good}\"]\n")).unwrap();
        }
        for bad in [
            "/ip4/0.0.0.0/tcp/x",
            "/ip4/300.0.0.1/tcp/1",
            "/dns4/example.com/tcp/4001",
            "/ip4/0.0.0.0/udp/4001",
            "/ip4/0.0.0.0/tcp/4001/ws",
            "/ip4/0.0.0.0",
            " /ip4/0.0.0.0/tcp/1",
        ] {
            let (key, line, message) = invalid(&format!("\nlisten = [\"{bad}\"]\n"));
            assert_eq!((key.as_str(), line), ("listen[0]", Some(2)), "{bad}");
            assert!(!message.contains(bad.trim()), "{message}");
        }
        // External addresses may be DNS names, but must be multiaddrs.
        RelayConfig::from_toml_str("external_addresses = [\"/dns4/relay.example/tcp/4001\"]\n")
            .unwrap();
        assert_eq!(
            invalid("external_addresses = [\"/ip4/1.2.3.4/tcp/nope\"]\n").0,
            "external_addresses[0]"
        );
    }
}
