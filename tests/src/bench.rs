//! Small helpers shared by the benchmark programs in `src/bin/`.

use std::path::Path;
use std::time::Duration;

use kith_p2p::control::{Client, ClientError, ErrorCode};

/// The `p` quantile (0.0–1.0) of `sorted` samples, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A duration in milliseconds with the precision its size deserves.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.3} ms")
    }
}

/// `p50 / p99 / max (n)` of `samples`.
pub fn summary(samples: &[Duration]) -> String {
    let mut s = samples.to_vec();
    s.sort();
    match s.last() {
        None => "no samples".to_owned(),
        Some(max) => format!(
            "p50 {} / p99 {} / max {} (n={})",
            ms(percentile(&s, 0.5)),
            ms(percentile(&s, 0.99)),
            ms(*max),
            s.len()
        ),
    }
}

/// A `kB` field (e.g. `VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`; 0 if unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system, all threads) process `pid` has used, from
/// `/proc/<pid>/stat`; zero if unreadable.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields of the whole line, in clock ticks (USER_HZ, 100 on Linux).
    let Some(rest) = stat.rfind(')').and_then(|at| stat.get(at + 2..)) else { return Duration::ZERO };
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    clock_ticks(ticks)
}

/// `ticks` of `/proc`'s clock (USER_HZ, 100 on Linux) as a duration.
fn clock_ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

/// The whole machine's CPU time so far, all cores, as (busy, total), from the
/// first line of `/proc/stat` (idle and iowait count as not busy).
pub fn machine_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (clock_ticks(total.saturating_sub(idle)), clock_ticks(total))
}

/// Resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// A control connection the node took. Past its 64 clients it answers
/// `too_many_clients` and closes, so with more senders than that the later ones try
/// again until earlier ones have sent their share and gone (as they waited in the
/// listen queue before). Gives up after a minute.
pub async fn taken_connection(socket: &Path) -> Client {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut client = Client::connect(socket).await.unwrap();
        match client.call("status", serde_json::json!({})).await {
            Ok(_) => return client,
            Err(ClientError::Api(e)) if e.code == ErrorCode::TooManyClients && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("connecting to {}: {e}", socket.display()),
        }
    }
}
