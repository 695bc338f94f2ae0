//! `kith-relay`: the library behind the kith relay and media node.
//!
//! A relay is a volunteer node that helps kith peers: it serves the DHT, relays
//! circuits for peers behind NAT, answers AutoNAT probes, holds sealed mail for
//! offline users, keeps groups' logs of sealed messages and (as a media node) holds
//! encrypted files. The network side:
//!
//! - [`server`]: the running relay — the libp2p swarm with every role, the
//!   `/kith/mailbox/1` and `/kith/grouplog/1` services (disk work on the blocking
//!   pool), the media role's `/kith/media/1` uploads and `/kith/blob/1` downloads,
//!   metrics recording and graceful shutdown.
//! - [`identity`]: the relay's host key, created on first start.
//! - [`cli`]: the `kith-relay` command line (`run`, `check-config`, `init-config`,
//!   `id`) and its exit codes.
//!
//! The parts that do not touch the network:
//!
//! - [`config`]: the TOML configuration, validated at load, every key with a
//!   documented default ([`config::EXAMPLE_CONFIG`]).
//! - [`mailbox`]: the durable mailbox store over sled (deposit with group commit,
//!   paginated drain, ack, TTL expiry, quotas, de-duplication) and the single-use
//!   drain challenges.
//! - [`grouplog`]: the durable group log store (all-or-nothing appends with
//!   de-duplication, cursor fetches, TTL expiry, quotas), built from the mailbox
//!   store's parts.
//! - [`media`]: the media role's store: sealed blobs as files, a durable record per
//!   blob (uploader, size, expiry), quotas per uploader and in total.
//! - [`limits`]: per-sender token-bucket rate limiting with bounded memory.
//! - [`metrics`]: the typed Prometheus metrics group, [`process`]: the process
//!   metrics read from `/proc/self`, and [`http`]: the `/metrics` and `/health`
//!   endpoint.
//!
//! The relay sees only ciphertext: envelopes and group log items are opaque bytes,
//! mailbox ids opaque owner ids, log ids hashes of group ids it never learns, blobs
//! sealed chunks under keys it never has.

pub mod cli;
pub mod config;
#[cfg(any(test, feature = "test-support"))]
pub mod fuzzing;
pub mod grouplog;
pub mod http;
pub mod identity;
pub mod limits;
pub mod mailbox;
pub mod media;
pub mod metrics;
pub mod process;
pub mod server;

pub use config::{ConfigError, RelayConfig};
pub use server::{Relay, RunError, StartError};
