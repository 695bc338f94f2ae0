//! `kith-relay`: the library behind the kith relay and media node.
//!
//! A relay is a volunteer node that helps kith peers: it serves the DHT, relays
//! circuits for peers behind NAT and holds sealed mail for offline users. This crate
//! holds the parts that do not touch the network:
//!
//! - [`config`]: the TOML configuration, validated at load, every key with a
//!   documented default ([`config::EXAMPLE_CONFIG`]).
//! - [`mailbox`]: the durable mailbox store over sled (deposit with group commit,
//!   paginated drain, ack, TTL expiry, quotas, de-duplication) and the single-use
//!   drain challenges.
//! - [`limits`]: per-sender token-bucket rate limiting with bounded memory.
//! - [`metrics`]: the typed Prometheus metrics group, and [`http`]: the `/metrics`
//!   and `/health` endpoint.
//!
//! The relay sees only ciphertext: envelopes are opaque bytes, mailbox ids opaque
//! owner ids.

pub mod config;
mod fs;
pub mod http;
pub mod limits;
pub mod mailbox;
pub mod metrics;

pub use config::{ConfigError, RelayConfig};
