//! CPU time from `/proc`, read twice a run: this process's, the part of it spent on threads of
//! one name (the load generator's runtime), PostgreSQL's and Redis's processes, and the whole
//! machine's, so a run on a shared machine says how much of the CPU others took.

use std::collections::BTreeMap;

/// `/proc` reports CPU time in `USER_HZ` ticks, 100 per second on Linux whatever the kernel's
/// own tick rate.
const TICKS_PER_SEC: f64 = 100.0;

/// One reading; subtract two with [`Sample::since`].
#[derive(Clone)]
pub struct Sample {
    /// User + system ticks of the whole process (threads that ended included).
    process: u64,
    /// User + system ticks of the live threads called `thread_name`.
    named: u64,
    /// User + system ticks of each live thread of this process (by thread id), with its kind
    /// ([`thread_kind`]): per thread, so that threads ending in between (Tokio's blocking
    /// threads, which share the workers' name) do not make a kind's total go down.
    threads: BTreeMap<u64, (&'static str, u64)>,
    /// User + system ticks of the live `postgres` processes (every database's and client's,
    /// not only the bench's; only the cluster whose postmaster is `BENCH_POSTMASTER_PID` when
    /// that is set).
    postgres: u64,
    /// The same of the live `redis-server` processes.
    redis: u64,
    /// Busy and total ticks of all CPUs (`/proc/stat`).
    machine_busy: u64,
    machine_total: u64,
}

/// What was spent between two readings.
pub struct Usage {
    /// CPU-seconds of this process.
    pub process: f64,
    /// CPU-seconds of the named threads (the rest of the process is the stack).
    pub named: f64,
    /// CPU-seconds of the PostgreSQL and Redis processes.
    pub services: f64,
    /// CPU-seconds of the PostgreSQL processes.
    pub postgres: f64,
    /// CPU-seconds of the Redis processes.
    pub redis: f64,
    /// CPU-seconds of this process's threads by kind ([`thread_kind`]; threads alive at the
    /// end only).
    pub threads: BTreeMap<&'static str, f64>,
    /// CPU-seconds the whole machine was busy (every process).
    pub machine_busy: f64,
    /// Share of all the machine's CPUs that was busy, in percent (every process counted).
    pub machine_busy_pct: f64,
}

impl Usage {
    /// The threads' CPU-seconds per 1 000 of `units`, as `kind 0.123, …`.
    pub fn threads_per_thousand(&self, units: usize) -> String {
        let per_thousand = |s: f64| 1000.0 * s / units.max(1) as f64;
        let kinds: Vec<String> = self
            .threads
            .iter()
            .map(|(kind, s)| format!("{kind} {:.3}", per_thousand(*s)))
            .collect();
        kinds.join(", ")
    }
}

impl Sample {
    /// Read now; `None` where `/proc` is not Linux's.
    pub fn now(thread_name: &str) -> Option<Sample> {
        let process = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
        let mut named = 0;
        let mut threads = BTreeMap::new();
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            // A thread may end between the listing and the read: it is skipped.
            let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((comm, ticks)) = stat_ticks(&text) {
                if comm == thread_name {
                    named += ticks;
                }
                let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
                if let Some(tid) = tid {
                    threads.insert(tid, (thread_kind(comm, thread_name), ticks));
                }
            }
        }
        let postmaster: Option<u64> = std::env::var("BENCH_POSTMASTER_PID")
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let (mut postgres, mut redis) = (0, 0);
        for process in std::fs::read_dir("/proc").ok()?.flatten() {
            let is_pid = process
                .file_name()
                .to_str()
                .is_some_and(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(process.path().join("stat")) else {
                continue;
            };
            if let Some((comm, ticks)) = stat_ticks(&text) {
                let pid = process.file_name().to_str().and_then(|p| p.parse().ok());
                let ours = |pid: Option<u64>| {
                    postmaster.is_none_or(|m| pid == Some(m) || parent(&text) == Some(m))
                };
                match comm {
                    "postgres" if ours(pid) => postgres += ticks,
                    "redis-server" => redis += ticks,
                    _ => {}
                }
            }
        }
        let (machine_busy, machine_total) =
            machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(Sample {
            process,
            named,
            threads,
            postgres,
            redis,
            machine_busy,
            machine_total,
        })
    }

    pub fn since(&self, earlier: &Sample) -> Usage {
        let seconds =
            |later: u64, earlier: u64| later.saturating_sub(earlier) as f64 / TICKS_PER_SEC;
        let total = self
            .machine_total
            .saturating_sub(earlier.machine_total)
            .max(1);
        Usage {
            process: seconds(self.process, earlier.process),
            named: seconds(self.named, earlier.named),
            services: seconds(self.postgres + self.redis, earlier.postgres + earlier.redis),
            postgres: seconds(self.postgres, earlier.postgres),
            redis: seconds(self.redis, earlier.redis),
            threads: self.threads.iter().fold(
                BTreeMap::new(),
                |mut kinds, (tid, &(kind, ticks))| {
                    let before = earlier.threads.get(tid).map_or(0, |&(_, t)| t);
                    *kinds.entry(kind).or_default() += seconds(ticks, before);
                    kinds
                },
            ),
            machine_busy: seconds(self.machine_busy, earlier.machine_busy),
            machine_busy_pct: 100.0 * self.machine_busy.saturating_sub(earlier.machine_busy) as f64
                / total as f64,
        }
    }
}

/// What a thread of this process works for, by its name: the load generator (`thread_name`),
/// the API's HTTP workers (actix, `actix-server wo…`), the shared Tokio runtime (the relay,
/// the API's database and bus tasks), or anything else (`other`).
fn thread_kind(comm: &str, thread_name: &str) -> &'static str {
    if comm == thread_name {
        "generator"
    } else if comm.starts_with("actix") {
        "api_http"
    } else if comm.starts_with("tokio") {
        "runtime"
    } else {
        "other"
    }
}

/// `(comm, utime + stime)` of a `/proc/…/stat` line. `comm` is in parentheses and may hold
/// spaces, so fields are counted after the last `)`: state is field 3, utime 14, stime 15.
fn stat_ticks(text: &str) -> Option<(&str, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The parent's pid in a `/proc/…/stat` line (field 4).
fn parent(text: &str) -> Option<u64> {
    let close = text.rfind(')')?;
    text.get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `(busy, total)` ticks of all CPUs from `/proc/stat`'s first line
/// (`cpu user nice system idle iowait irq softirq steal …`; idle and iowait are not busy).
fn machine_ticks(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// The 1-minute load average (`/proc/loadavg`), what `uptime` prints first.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (bench client) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 3 0 100";
        assert_eq!(stat_ticks(line), Some(("bench client", 175)));
        assert_eq!(parent(line), Some(1));
    }

    #[test]
    fn idle_and_iowait_are_not_busy() {
        let text = "cpu  10 1 5 80 4 0 0 0 0 0\ncpu0 5 0 2 40 2 0 0 0 0 0\n";
        assert_eq!(machine_ticks(text), Some((16, 100)));
    }
}
