//! Whether others can dial us: the settings of the node's AutoNAT (v1) client and
//! how its verdict reads in `status`.
//!
//! The node asks connected peers (pinned relays serve AutoNAT) to dial it back at its
//! listen addresses. A successful dial-back makes the node `public <address>`; a
//! failed one `private` (reachable only through relays and hole punching). libp2p's
//! defaults wait 15 s before the first probe and 90 s between retries; tests shorten
//! them through [`AutonatProbes`], and tests on private addresses turn off
//! [`AutonatProbes::only_global_ips`].

use std::time::Duration;

use libp2p::autonat;

/// How the node probes its own reachability. Defaults are libp2p's (for real use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutonatProbes {
    /// Delay after start before the first probe (default 15 s).
    pub boot_delay: Duration,
    /// Delay before the next probe while the verdict is unsure or no peer could be
    /// asked (default 90 s).
    pub retry_interval: Duration,
    /// Delay before re-checking a confident verdict (default 15 min).
    pub refresh_interval: Duration,
    /// How long a peer that answered a probe is not asked again (default 90 s).
    pub server_throttle: Duration,
    /// How long a probe may take, the peer's dial-back included (default 30 s).
    pub timeout: Duration,
    /// Ask only peers seen at global IP addresses, and answer only such peers' probes
    /// (default `true`: a dial-back over a LAN or loopback says nothing about the
    /// Internet). Off only for test networks on private addresses.
    pub only_global_ips: bool,
}

impl Default for AutonatProbes {
    fn default() -> AutonatProbes {
        let libp2p = autonat::Config::default();
        AutonatProbes {
            boot_delay: libp2p.boot_delay,
            retry_interval: libp2p.retry_interval,
            refresh_interval: libp2p.refresh_interval,
            server_throttle: libp2p.throttle_server_period,
            timeout: libp2p.timeout,
            only_global_ips: libp2p.only_global_ips,
        }
    }
}

impl AutonatProbes {
    /// The libp2p AutoNAT configuration with these settings (the rest: libp2p's).
    pub(crate) fn config(&self) -> autonat::Config {
        autonat::Config {
            boot_delay: self.boot_delay,
            retry_interval: self.retry_interval,
            refresh_interval: self.refresh_interval,
            throttle_server_period: self.server_throttle,
            timeout: self.timeout,
            only_global_ips: self.only_global_ips,
            ..autonat::Config::default()
        }
    }
}

/// The verdict as `status` reports it: `unknown`, `public <address>` or `private`.
pub(crate) fn verdict(status: &autonat::NatStatus) -> String {
    match status {
        autonat::NatStatus::Public(addr) => format!("public {addr}"),
        autonat::NatStatus::Private => "private".into(),
        autonat::NatStatus::Unknown => "unknown".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_libp2ps_and_every_field_reaches_the_config() {
        assert_eq!(AutonatProbes::default().config(), autonat::Config::default());
        let probes = AutonatProbes {
            boot_delay: Duration::from_millis(1),
            retry_interval: Duration::from_millis(2),
            refresh_interval: Duration::from_millis(3),
            server_throttle: Duration::from_millis(4),
            timeout: Duration::from_millis(5),
            only_global_ips: false,
        };
        let config = probes.config();
        assert_eq!(config.boot_delay, Duration::from_millis(1));
        assert_eq!(config.retry_interval, Duration::from_millis(2));
        assert_eq!(config.refresh_interval, Duration::from_millis(3));
        assert_eq!(config.throttle_server_period, Duration::from_millis(4));
        assert_eq!(config.timeout, Duration::from_millis(5));
        assert!(!config.only_global_ips);
        assert!(config.use_connected, "connected peers (our relays) are asked");
    }

    #[test]
    fn verdicts_read_as_status_documents_them() {
        let addr: libp2p::Multiaddr = "/ip4/10.0.0.4/tcp/4001".parse().unwrap();
        assert_eq!(verdict(&autonat::NatStatus::Public(addr)), "public /ip4/10.0.0.4/tcp/4001");
        assert_eq!(verdict(&autonat::NatStatus::Private), "private");
        assert_eq!(verdict(&autonat::NatStatus::Unknown), "unknown");
    }
}
