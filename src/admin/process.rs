//! The standard `process_*` series (the names every Prometheus client library
//! exports, so existing dashboards and alerts read them): CPU time, resident
//! and virtual memory, open and maximum file descriptors, start time. Read
//! from `/proc/self` at scrape time — nothing is kept between scrapes. Open
//! file descriptors matter most at the edge: a proxy out of descriptors
//! refuses connections, and `process_open_fds / process_max_fds` warns first.
//! On a system without `/proc` the series are left out.

use std::time::SystemTime;

/// One reading of the process' own counters.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Process {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    /// The soft limit (`ulimit -n`): what `accept` runs into.
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

/// Clock ticks per second of `/proc/*/stat`'s times: USER_HZ, fixed at 100 in the
/// kernel's user ABI on every architecture porter builds for.
const USER_HZ: f64 = 100.0;

impl Process {
    /// Reads `/proc/self`; `None` where it is not there (or not Linux's).
    pub(super) fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: split after it.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        // fields[0] is field 3 (state); utime is field 14, stime 15, starttime 22, vsize 23.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_ticks = field(14)? + field(15)?;
        let start_ticks = field(22)?;
        let virtual_memory_bytes = field(23)?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let resident_memory_bytes = kib_line(&status, "VmRSS:")? * 1024;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| soft_limit(&l, "Max open files"));
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok()));
        let start_time_seconds = match boot {
            Some(boot) => boot as f64 + start_ticks as f64 / USER_HZ,
            None => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        };
        Some(Process {
            cpu_seconds: cpu_ticks as f64 / USER_HZ,
            resident_memory_bytes,
            virtual_memory_bytes,
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }
}

/// The number of a `Name:   1234 kB` line of `/proc/self/status`.
fn kib_line(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The soft limit of a `/proc/self/limits` row ("unlimited" is left out).
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    limits.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits_and_status_lines() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(soft_limit(limits, "Max cpu time"), None);
        assert_eq!(kib_line("Name:\tporter\nVmRSS:\t   5120 kB\n", "VmRSS:"), Some(5120));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let after = Process::read().expect("/proc/self");
        // stdin, stdout, stderr at least, and the test harness' own.
        assert!(after.open_fds >= 3, "{after:?}");
        assert!(after.cpu_seconds >= 0.0);
        assert!(after.resident_memory_bytes > 1024 * 1024, "{after:?}");
        assert!(after.virtual_memory_bytes >= after.resident_memory_bytes);
        assert!(after.max_fds.unwrap_or(u64::MAX) >= after.open_fds);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(after.start_time_seconds <= now + 1.0 && after.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
