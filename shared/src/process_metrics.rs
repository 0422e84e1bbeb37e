//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! …, as the Prometheus client libraries name them), read from `/proc` on Linux and rendered in
//! the Prometheus text format, for both services' `/metrics`. Elsewhere, or when `/proc` cannot be
//! read, the metrics are absent (never reported as zero).
//!
//! Standard library only: shared pulls in no Prometheus client, each service appends
//! [`ProcessMetrics::render`] to its own registry's text.

use std::fmt::Write as _;
use std::path::Path;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux
/// architecture Parley builds for (the kernel converts to it for user space).
const USER_HZ: f64 = 100.0;

/// One reading of a process's resources; `None` where it could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessMetrics {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessMetrics {
    /// The current process (`/proc/self`).
    pub fn read() -> Self {
        Self::read_at(Path::new("/proc/self"))
    }

    /// The process whose `/proc` directory is `dir` (e.g. `/proc/1234`, for a test watching a
    /// child process). Whatever cannot be read is `None`.
    pub fn read_at(dir: &Path) -> Self {
        let stat = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| Stat::parse(&s));
        let status = std::fs::read_to_string(dir.join("status")).ok();
        let status_kb = |key: &str| status.as_deref().and_then(|s| status_kib(s, key));
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        Self {
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            resident_memory_bytes: status_kb("VmRSS:").map(|kb| kb * 1024),
            virtual_memory_bytes: stat.map(|s| s.vsize),
            open_fds: std::fs::read_dir(dir.join("fd"))
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: std::fs::read_to_string(dir.join("limits"))
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / USER_HZ),
        }
    }

    /// The Prometheus text exposition (`# HELP`, `# TYPE`, the sample) of each metric read.
    pub fn render(&self) -> String {
        let text = |v: Option<u64>| v.map(|v| v.to_string());
        let metrics = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds.map(|v| v.to_string()),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                text(self.resident_memory_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                text(self.virtual_memory_bytes),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                text(self.open_fds),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                text(self.max_fds),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds.map(|v| v.to_string()),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in metrics {
            if let Some(value) = value {
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            }
        }
        out
    }
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

impl Stat {
    /// `pid (comm) state ppid …`: the command name may hold spaces and parentheses, so fields
    /// are counted from the last `)`; field 3 (`state`) is the first after it.
    fn parse(stat: &str) -> Option<Self> {
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // proc(5) numbers fields from 1: utime is field 14, i.e. index 14 - 3 here.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
        })
    }
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (`unlimited` counts as absent).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the Unix epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 \
                    7000 123456789 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let parsed = Stat::parse(stat).unwrap();
        assert_eq!(parsed.utime, 250);
        assert_eq!(parsed.stime, 50);
        assert_eq!(parsed.starttime, 7000);
        assert_eq!(parsed.vsize, 123_456_789);
    }

    #[test]
    fn status_limits_and_boot_time_lines_are_parsed() {
        let status = "Name:\tx\nVmSize:\t   3892 kB\nVmRSS:\t    2092 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2092));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit  Soft Limit  Hard Limit  Units\n\
                      Max open files            1024                 4096                 files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1796182519\n"),
            Some(1_796_182_519)
        );
    }

    #[test]
    fn metrics_not_read_are_absent_from_the_text() {
        let partial = ProcessMetrics {
            open_fds: Some(7),
            ..ProcessMetrics::default()
        };
        let text = partial.render();
        assert!(text.contains("# TYPE process_open_fds gauge\nprocess_open_fds 7\n"));
        assert!(!text.contains("process_resident_memory_bytes"));
        assert_eq!(ProcessMetrics::default().render(), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausible_values() {
        let metrics = ProcessMetrics::read();
        assert!(metrics.resident_memory_bytes.unwrap() > 1024 * 1024);
        assert!(metrics.virtual_memory_bytes.unwrap() >= metrics.resident_memory_bytes.unwrap());
        assert!(metrics.open_fds.unwrap() >= 3);
        assert!(metrics.max_fds.unwrap() >= metrics.open_fds.unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = metrics.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(metrics.cpu_seconds.unwrap() >= 0.0);
    }
}
