//! What the node's integration tests share.

use std::path::PathBuf;

use kith_p2p::identity::Identity;
use kith_p2p::node::{FilesConfig, NodeConfig, Timers};

/// A node with a new identity on 127.0.0.1 (an ephemeral port), no DHT, relays or
/// mDNS: only what a test gives it.
pub(crate) fn loopback_config(timers: Timers, blob_dir: Option<PathBuf>) -> NodeConfig {
    NodeConfig {
        identity: Identity::generate(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
        bootstrap: Vec::new(),
        relays: Vec::new(),
        mdns: false,
        display_name: None,
        read_receipts: true,
        presence: true,
        timers,
        files: blob_dir.map(|dir| FilesConfig {
            download_dir: dir.with_extension("saved"),
            blob_dir: dir,
            auto_download_max: kith_p2p::files::DEFAULT_AUTO_DOWNLOAD_MAX,
        }),
        key_ring: None,
    }
}
