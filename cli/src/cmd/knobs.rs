//! Test and tuning knobs: environment variables that override the node's
//! [`Timers`] for `kith daemon` and the node `kith tui` runs, and the daemon's worker
//! threads (docs/CLI.md lists them).
//!
//! Tests shorten timers this way instead of waiting for production values. A value
//! that does not parse is ignored (the default stays), as an unset variable is.

use std::time::Duration;

use kith_p2p::node::Timers;

/// The retry backoff ceiling in ms (default 30 000).
const RETRY_MAX: &str = "KITH_RETRY_MAX_MS";
/// How often relays are drained and group logs fetched, in ms (default 60 000).
const DRAIN_INTERVAL: &str = "KITH_DRAIN_INTERVAL_MS";
/// How long a new invite stays redeemable, in ms (default 7 days).
const INVITE_TTL: &str = "KITH_INVITE_TTL_MS";
/// How often expired invites are deleted, in ms (default 1 h).
const INVITE_PURGE: &str = "KITH_INVITE_PURGE_MS";
/// Events buffered per control subscriber before it is told it lagged (default 4096).
const EVENT_BUFFER: &str = "KITH_EVENT_BUFFER";
/// Delay before the first AutoNAT probe, in ms (default 15 000).
const AUTONAT_BOOT_DELAY: &str = "KITH_AUTONAT_BOOT_DELAY_MS";
/// Delay between AutoNAT retries, and before a peer is asked again, in ms
/// (default 90 000).
const AUTONAT_RETRY: &str = "KITH_AUTONAT_RETRY_MS";
/// How long an AutoNAT probe may take, the peer's dial-back included, in ms
/// (default 30 000).
const AUTONAT_TIMEOUT: &str = "KITH_AUTONAT_TIMEOUT_MS";
/// How long a contact's payloads sealed without the ratchet are still taken after
/// its first ratcheted one, in ms (default 30 days).
const RATCHET_LEGACY_GRACE: &str = "KITH_RATCHET_LEGACY_GRACE_MS";
/// How often the key sealing the ratchet state on disk is replaced while that state
/// is written, in ms (default 10 min).
const RATCHET_STATE_ROLL: &str = "KITH_RATCHET_STATE_ROLL_MS";
/// How often the search index catches up with the message log, in ms (default
/// 2 000).
const SEARCH_CATCH_UP: &str = "KITH_SEARCH_CATCH_UP_MS";
/// How often the node looks whether its message log is worth compacting, in ms
/// (default 60 000).
const LOG_COMPACTION_CHECK: &str = "KITH_LOG_COMPACTION_CHECK_MS";
/// How long a request to a peer (a delivery, a mailbox's, a group log's) may take
/// before it counts as failed, in ms (default 10 000).
const REQUEST_TIMEOUT: &str = "KITH_REQUEST_TIMEOUT_MS";
/// Least time between two progress events of one file, in ms (default 250).
const FILE_PROGRESS: &str = "KITH_FILE_PROGRESS_MS";
/// How long mail one relay held waits before it goes again to a relay that missed
/// it, in ms (default 30 000; doubling per try).
const REDEPOSIT: &str = "KITH_REDEPOSIT_MS";
/// `0` lets AutoNAT ask and answer peers at private addresses (default `1`).
const AUTONAT_ONLY_GLOBAL_IPS: &str = "KITH_AUTONAT_ONLY_GLOBAL_IPS";
/// Worker threads of `kith daemon`'s runtime; unset or `0`: the node runs on one
/// thread (see [`daemon_workers`]).
const DAEMON_WORKERS: &str = "KITH_DAEMON_WORKERS";

/// How many worker threads `kith daemon`'s runtime gets from the environment:
/// `None` (the default) for tokio's one-thread runtime.
pub(crate) fn daemon_workers() -> Option<usize> {
    workers_from(std::env::var(DAEMON_WORKERS).ok())
}

fn workers_from(value: Option<String>) -> Option<usize> {
    value?.trim().parse::<usize>().ok().filter(|n| *n > 0)
}

/// The default timers with every knob set in the environment applied.
pub(crate) fn timers() -> Timers {
    timers_from(|name| std::env::var(name).ok())
}

/// The default timers with the knobs `var` knows applied (`var`: a variable's value
/// by name, if set).
fn timers_from(var: impl Fn(&str) -> Option<String>) -> Timers {
    // A whole number, if set and valid.
    let number = |name: &str| var(name)?.trim().parse::<u64>().ok();
    // Milliseconds, at least `min_ms`.
    let millis = |name: &str, min_ms: u64| number(name).map(|ms| Duration::from_millis(ms.max(min_ms)));
    let mut timers = Timers::default();
    if let Some(max) = millis(RETRY_MAX, 1) {
        timers.retry_max = max;
        timers.retry_initial = timers.retry_initial.min(max);
    }
    if let Some(interval) = millis(DRAIN_INTERVAL, 100) {
        timers.drain_interval = interval;
    }
    if let Some(after) = millis(REDEPOSIT, 10) {
        timers.redeposit_after = after;
    }
    if let Some(ttl) = millis(INVITE_TTL, 1) {
        timers.invite_ttl = ttl;
    }
    if let Some(interval) = millis(INVITE_PURGE, 10) {
        timers.invite_purge_interval = interval;
    }
    if let Some(events) = number(EVENT_BUFFER) {
        timers.event_buffer = usize::try_from(events).unwrap_or(usize::MAX).max(1);
    }
    if let Some(delay) = millis(AUTONAT_BOOT_DELAY, 0) {
        timers.autonat.boot_delay = delay;
    }
    if let Some(retry) = millis(AUTONAT_RETRY, 100) {
        timers.autonat.retry_interval = retry;
        timers.autonat.server_throttle = retry;
    }
    if let Some(timeout) = millis(AUTONAT_TIMEOUT, 100) {
        timers.autonat.timeout = timeout;
    }
    if let Some(grace) = millis(RATCHET_LEGACY_GRACE, 0) {
        timers.ratchet_legacy_grace = grace;
    }
    if let Some(roll) = millis(RATCHET_STATE_ROLL, 10) {
        timers.ratchet_state_roll = roll;
    }
    if let Some(every) = millis(SEARCH_CATCH_UP, 100) {
        timers.search_catch_up = every;
    }
    if let Some(every) = millis(LOG_COMPACTION_CHECK, 50) {
        timers.log_compaction_check = every;
    }
    if let Some(timeout) = millis(REQUEST_TIMEOUT, 100) {
        timers.request_timeout = timeout;
    }
    if let Some(every) = millis(FILE_PROGRESS, 1) {
        timers.file_progress_every = every;
    }
    if let Some(only_global) = number(AUTONAT_ONLY_GLOBAL_IPS) {
        timers.autonat.only_global_ips = only_global != 0;
    }
    timers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_runs_on_one_thread_unless_told_how_many_workers() {
        for one_thread in [None, Some("0"), Some("many"), Some("")] {
            assert_eq!(workers_from(one_thread.map(str::to_owned)), None, "{one_thread:?}");
        }
        assert_eq!(workers_from(Some(" 4".into())), Some(4));
    }

    #[test]
    fn unset_or_invalid_knobs_keep_the_defaults() {
        let defaults = Timers::default();
        let none = timers_from(|_| None);
        let junk = timers_from(|_| Some("soon".into()));
        for timers in [none, junk] {
            assert_eq!(timers.retry_max, defaults.retry_max);
            assert_eq!(timers.invite_ttl, defaults.invite_ttl);
            assert_eq!(timers.invite_purge_interval, defaults.invite_purge_interval);
            assert_eq!(timers.event_buffer, defaults.event_buffer);
            assert_eq!(timers.autonat, defaults.autonat);
            assert_eq!(timers.ratchet_state_roll, defaults.ratchet_state_roll);
            assert_eq!(timers.search_catch_up, defaults.search_catch_up);
            assert_eq!(timers.log_compaction_check, defaults.log_compaction_check);
            assert_eq!(timers.request_timeout, defaults.request_timeout);
            assert_eq!(timers.file_progress_every, defaults.file_progress_every);
        }
    }

    #[test]
    fn every_knob_reaches_its_timer() {
        let timers = timers_from(|name| {
            Some(
                match name {
                    RETRY_MAX => "200",
                    DRAIN_INTERVAL => "1000",
                    INVITE_TTL => "1",
                    INVITE_PURGE => "50",
                    EVENT_BUFFER => "0",
                    AUTONAT_BOOT_DELAY => "250",
                    AUTONAT_RETRY => "2000",
                    AUTONAT_TIMEOUT => "60000",
                    AUTONAT_ONLY_GLOBAL_IPS => "0",
                    RATCHET_STATE_ROLL => "5000",
                    SEARCH_CATCH_UP => "50",
                    LOG_COMPACTION_CHECK => "10",
                    REQUEST_TIMEOUT => "3000",
                    FILE_PROGRESS => "0",
                    REDEPOSIT => "5",
                    _ => return None,
                }
                .into(),
            )
        });
        assert_eq!(timers.retry_max, Duration::from_millis(200));
        assert_eq!(timers.retry_initial, Duration::from_millis(200), "never above the ceiling");
        assert_eq!(timers.drain_interval, Duration::from_secs(1));
        assert_eq!(timers.redeposit_after, Duration::from_millis(10), "at least 10 ms");
        assert_eq!(timers.invite_ttl, Duration::from_millis(1));
        assert_eq!(timers.invite_purge_interval, Duration::from_millis(50));
        assert_eq!(timers.event_buffer, 1, "at least one event");
        assert_eq!(timers.autonat.boot_delay, Duration::from_millis(250));
        assert_eq!(timers.autonat.retry_interval, Duration::from_secs(2));
        assert_eq!(timers.autonat.server_throttle, Duration::from_secs(2));
        assert_eq!(timers.autonat.timeout, Duration::from_secs(60));
        assert!(!timers.autonat.only_global_ips);
        assert_eq!(timers.ratchet_state_roll, Duration::from_secs(5));
        assert_eq!(timers.search_catch_up, Duration::from_millis(100), "at least 100 ms");
        assert_eq!(timers.log_compaction_check, Duration::from_millis(50), "at least 50 ms");
        assert_eq!(timers.request_timeout, Duration::from_secs(3));
        assert_eq!(timers.file_progress_every, Duration::from_millis(1), "at least 1 ms");
    }
}
