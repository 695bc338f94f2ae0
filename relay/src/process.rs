//! Process metrics read from `/proc/self` at each scrape: CPU time, resident memory,
//! open and allowed file descriptors, start time, and the memory limit above which
//! the relay refuses connections.
//!
//! The names are the ones every Prometheus client library exports
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`), so stock dashboards work. They
//! are read by hand rather than through a crate: a few lines of `/proc` parsing.
//! On a system without `/proc` (not Linux) a family whose source cannot be read is
//! left out of the scrape rather than exported as a misleading 0.

use std::fs;
use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use kith_p2p::conn_limits::MemoryLimit;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`). Fixed at 100 by the
/// kernel's user-space ABI on every architecture Linux ships for; the Prometheus
/// `procfs` library assumes the same.
const USER_HZ: f64 = 100.0;

/// One reading of the process's resource use. Each field is `None` when its source
/// could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Open file descriptors (sockets included).
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`LimitNOFILE=` under systemd).
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// The machine's physical memory, in bytes (`MemTotal`).
    pub total_memory_bytes: Option<u64>,
}

impl ProcessStats {
    /// Reads the current process's statistics from `/proc`.
    pub fn read() -> ProcessStats {
        ProcessStats::read_from(Path::new("/proc"), Path::new("/proc/self"))
    }

    /// Reads them from `proc` (the procfs root, for `stat` and `meminfo`) and `me`
    /// (a process directory in it).
    fn read_from(proc: &Path, me: &Path) -> ProcessStats {
        let read = |path: &Path| fs::read_to_string(path).ok();
        let stat = read(&me.join("stat")).and_then(|text| parse_stat(&text));
        let boot_time = read(&proc.join("stat")).and_then(|text| parse_boot_time(&text));
        ProcessStats {
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            resident_memory_bytes: read(&me.join("status"))
                .and_then(|text| kib_field(&text, "VmRSS:")),
            open_fds: fs::read_dir(me.join("fd"))
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: read(&me.join("limits")).and_then(|text| parse_max_fds(&text)),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / USER_HZ),
            total_memory_bytes: read(&proc.join("meminfo"))
                .and_then(|text| kib_field(&text, "MemTotal:")),
        }
    }
}

/// The fields of `/proc/<pid>/stat` that are used, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state); utime is field 14, stime 15, starttime 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status` or `/proc/meminfo`, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find_map(|line| line.strip_prefix(name))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of the `Max open files` line of `/proc/<pid>/limits`; `None` for
/// `unlimited`.
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The Prometheus collector of [`ProcessStats`], read at each scrape, plus
/// `kith_relay_memory_limit_bytes`: the memory above which new connections are
/// refused (`[connections]`), next to `process_resident_memory_bytes`.
#[derive(Debug)]
pub struct ProcessCollector {
    /// The limit in bytes, resolved once, as the connection limiter resolves it.
    memory_limit: Option<u64>,
}

impl ProcessCollector {
    /// A collector for this process; `memory_limit` is the configured connection
    /// memory limit. A percentage is turned into bytes now, against the machine's
    /// memory, the way the connection limiter does when the relay starts, so the
    /// gauge shows the limit in force even if the machine's memory changes later.
    pub fn new(memory_limit: MemoryLimit) -> ProcessCollector {
        let memory_limit = match memory_limit {
            MemoryLimit::Bytes(bytes) => Some(bytes),
            MemoryLimit::Percent(percent) => ProcessStats::read()
                .total_memory_bytes
                .map(|total| (total as f64 * (f64::from(percent.clamp(1, 100)) / 100.0)) as u64),
            // A kind of limit this version does not know: leave the gauge out rather
            // than export a wrong number.
            _ => None,
        };
        ProcessCollector { memory_limit }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(seconds) = stats.cpu_seconds {
            let metric = ConstCounter::new(seconds);
            let e = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                metric.metric_type(),
            )?;
            metric.encode(e)?;
        }
        let mut gauge = |name: &str, help: &str, unit: Option<&Unit>, value: Option<f64>| {
            let Some(value) = value else {
                return Ok(());
            };
            let metric = ConstGauge::new(value);
            let e = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            metric.encode(e)
        };
        let bytes = Unit::Bytes;
        gauge(
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(&bytes),
            stats.resident_memory_bytes.map(|b| b as f64),
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            stats.open_fds.map(|n| n as f64),
        )?;
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors",
            None,
            stats.max_fds.map(|n| n as f64),
        )?;
        gauge(
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            stats.start_time_seconds,
        )?;
        let memory_limit = self.memory_limit;
        gauge(
            "kith_relay_memory_limit",
            "Resident memory above which new connections are refused (connections.max_memory_*)",
            Some(&bytes),
            memory_limit.map(|b| b as f64),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let line = "4242 (kith relay) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 8 0 123456 100000000 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456
            })
        );
        assert_eq!(parse_stat("4242 (trunc"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_stat_lines_parse() {
        let status = "Name:\tkith-relay\nVmPeak:\t  9000 kB\nVmRSS:\t  5120 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(5 * 1024 * 1024));
        assert_eq!(kib_field(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63405                63405                processes\n\
                      Max open files            65536                524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(65536));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    /// On Linux the real `/proc/self` gives a plausible reading of this test process.
    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        // Other tests open and close files meanwhile: only "some" can be asserted.
        let open = stats.open_fds.unwrap();
        assert!(stats.cpu_seconds.is_some(), "{stats:?}");
        assert!(
            stats.resident_memory_bytes.unwrap() > 1024 * 1024,
            "{stats:?}"
        );
        assert!(stats.max_fds.is_none_or(|max| max >= open), "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = stats.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{stats:?}"
        );
        assert!(stats.total_memory_bytes.unwrap() >= stats.resident_memory_bytes.unwrap());
    }

    #[test]
    fn missing_sources_leave_fields_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ProcessStats::read_from(dir.path(), &dir.path().join("self")),
            ProcessStats::default()
        );
    }
}
