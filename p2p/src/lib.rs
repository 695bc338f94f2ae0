//! The kith node library.
//!
//! Everything a kith peer needs below the user interface: the user's identity and its
//! encrypted keystore, the kith home directory and `config.toml`, invite URIs,
//! end-to-end sealing of messages (snow, Noise `X`), signed peer records, the wire
//! codecs of the kith protocols, the [`node`] actor that owns the libp2p swarm and the
//! store, and the local control socket through which the CLI and the TUI drive it.

pub mod blob;
pub mod call;
pub mod config;
pub mod conn_limits;
pub mod control;
pub mod data;
pub mod display;
pub mod dm;
pub mod envelope;
pub mod files;
#[cfg(any(test, feature = "test-support"))]
pub mod fuzzing;
pub mod group;
pub mod grouplog;
pub mod home;
pub mod identity;
pub mod invite;
pub mod keyring;
pub mod keystore;
pub mod mailbox;
pub mod node;
pub mod ops;
pub mod payload;
pub mod profile;
pub mod ratchet;
pub mod peer_record;
pub mod requests;
pub mod search;
pub mod streams;
pub mod tcp;
pub mod views;
pub mod wire;

/// The libp2p version kith is built on, for callers that name its types.
pub use libp2p;
/// The storage crate, for callers that name its types.
pub use kith_storage;
