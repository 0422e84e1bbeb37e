//! The servers of a side-by-side run as separate processes: the bench process is the load
//! generator on core [`CLIENT_CORE`]; every server it starts runs on core [`SERVER_CORE`], and
//! what a side costs is read from `/proc` for its processes only, never the generator's.
//!
//! - [`prepare`] (in `main`, before the runtime exists): pin this process to [`CLIENT_CORE`]
//!   (threads created later inherit it) and raise the soft open-files limit to the hard one
//!   (children inherit it too: the servers hold as many sockets as the generator).
//! - [`spawn`]`(name, command)`: runs `command` under `taskset -c SERVER_CORE`, stdout and stderr
//!   to `<run dir>/<name>.log`; the [`Proc`] stops it by PID on drop (SIGTERM, SIGKILL after
//!   [`STOP_LIMIT`]). [`wait_port`] returns once a loopback port accepts (or the process died,
//!   with its log's tail). [`free_port`] picks a port to hand to a server.
//! - [`usage`]`(pids)`: CPU-seconds (user + system, reaped children included), RSS and PSS of
//!   those processes and all their descendants; subtract two readings with [`Usage::since`].
//!   A process's own CPU time is read from its kernel CPU clock, to the nanosecond
//!   ([`cpu_seconds_of`]); `/proc` gives the process tree, the memory and the reaped children.
//! - [`Postgres::start`] / [`Redis::start`]: a PostgreSQL cluster (`initdb` in the run dir) and a
//!   `redis-server` of the run's own, on SERVER_CORE (`services.rs`).
//! - [`ParleyStack::start`]`(relays)`: the release `api-server` and `relays` × `socket-server`
//!   binaries next to the bench executable, on the run's own PostgreSQL and Redis, the relay's
//!   rate limits raised as in `stack.rs`; [`ParleyStack::users`]`(n)`: n users in its database
//!   with live sessions and tokens signed with [`JWT_SECRET`], inserted in bulk (`parley.rs`).
//!
//! The run dir is `$BENCH_RUN_DIR` or `<tmp>/parley-bench-<pid>`, left in place for its logs.

// Shared by the scenarios, none of which uses every item.
#![allow(dead_code, unused_imports)]

mod parley;
mod services;

pub use parley::{jwt_settings, sign, BenchUser, ParleyStack};
pub use services::{Postgres, Redis};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The core of the load generator (this process).
pub const CLIENT_CORE: usize = 0;
/// The core of every server a run starts.
pub const SERVER_CORE: usize = 1;
/// The HS256 secret of every side's tokens (`JWT_SECRET` of each server): a bench on loopback.
pub const JWT_SECRET: &str = "parley-bench-secret-loopback-only-0123456789abcdef";
/// How long a stopped process gets between SIGTERM and SIGKILL.
pub const STOP_LIMIT: Duration = Duration::from_secs(5);
/// `/proc` counts CPU time in `USER_HZ` ticks: 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// Pin this process (all its threads) to [`CLIENT_CORE`] and raise its soft `RLIMIT_NOFILE` to
/// the hard limit. Call before any thread is started.
pub fn prepare() -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    run(Command::new("taskset").args(["-a", "-cp", &CLIENT_CORE.to_string(), &pid]))
        .context("pinning the bench to its core (taskset, from util-linux)")?;
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let hard = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(4))
        .context("no `Max open files` in /proc/self/limits")?;
    run(Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={hard}:{hard}")]))
        .context("raising the open-files limit (prlimit, from util-linux)")
}

/// The directory of this run's logs and data.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os("BENCH_RUN_DIR").map_or_else(
            || std::env::temp_dir().join(format!("parley-bench-{}", std::process::id())),
            PathBuf::from,
        )
    })
}

/// A server process of the run, stopped by PID when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// The signal that asks it to stop (`TERM`; PostgreSQL's fast shutdown is `INT`).
    stop_signal: &'static str,
}

/// Start `command` on [`SERVER_CORE`] (through `taskset`, which execs it: the PID is the
/// server's), its output to `<run dir>/<name>.log`. Its program, arguments, environment and
/// working directory are kept.
pub fn spawn(name: &str, command: Command) -> anyhow::Result<Proc> {
    let mut pinned = Command::new("taskset");
    pinned
        .args(["-c", &SERVER_CORE.to_string()])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => pinned.env(key, value),
            None => pinned.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        pinned.current_dir(dir);
    }
    spawn_pinned(name, pinned)
}

/// Start a command that already pins itself (`taskset -c SERVER_CORE …`), logging as [`spawn`].
fn spawn_pinned(name: &str, mut command: Command) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(run_dir())
        .with_context(|| format!("creating {}", run_dir().display()))?;
    let log = run_dir().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {name} ({:?})", command.get_args()))?;
    Ok(Proc {
        name: name.to_owned(),
        child,
        log,
        stop_signal: "TERM",
    })
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// An error when the process has exited, with the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            ),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args([&format!("-{}", self.stop_signal), &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + STOP_LIMIT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Run a short helper command; an error with its output when it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            command.get_program(),
            command.get_args(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A loopback port nobody listens on now (another process could take it before the server
/// binds it: a start then fails and says so).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Wait until `127.0.0.1:port` accepts a connection; an error, with the log's tail, when
/// `process` exits first or `limit` passes.
pub async fn wait_port(process: &mut Proc, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        process.check_running()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not accept connections on port {port} within {limit:?}; the end of {}:\n{}",
                process.name,
                process.log.display(),
                tail(&process.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU time and memory of a set of processes and their descendants at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU-seconds, children already reaped included.
    pub cpu_seconds: f64,
    /// Resident set size, summed over the processes (memory they share, e.g. PostgreSQL's
    /// shared buffers, is counted once per process).
    pub rss_bytes: u64,
    /// Proportional set size: shared pages divided among the processes sharing them, so the
    /// sum over several processes counts them once.
    pub pss_bytes: u64,
}

impl Usage {
    /// CPU spent since `earlier`, with the RSS of now.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            cpu_seconds: self.cpu_seconds - earlier.cpu_seconds,
            ..*self
        }
    }
}

/// The usage of `pids` and every descendant of theirs (each process counted once).
pub fn usage(pids: &[u32]) -> Usage {
    tree(pids)
        .into_iter()
        .map(usage_of)
        .fold(Usage::default(), |sum, one| Usage {
            cpu_seconds: sum.cpu_seconds + one.cpu_seconds,
            rss_bytes: sum.rss_bytes + one.rss_bytes,
            pss_bytes: sum.pss_bytes + one.pss_bytes,
        })
}

/// The CPU-seconds of `pids` and every descendant of theirs: [`usage`] without the memory.
/// A CPU sample has no use for it, and its `smaps_rollup` walk is the slow part (during a chat
/// run, ~26 ms for the machine's 31 relay, API, PostgreSQL and Redis processes, against ~3 ms
/// for their `stat` and `status`).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    tree(pids).into_iter().map(cpu_seconds_of).sum()
}

/// The CPU-seconds of one process (zero when it has ended): its own, threads that ended
/// included, from the kernel's CPU clock of the process ([`process_clock`]), plus its reaped
/// children's from `/proc/<pid>/stat` (a PostgreSQL backend that exits mid-run lands there).
///
/// `stat` alone rounds user and system time down to 10 ms each: a relay that spends 0.14 s on a
/// 6 s run at 200 msg/s read ±7 % from the rounding alone. The clock is exact to the nanosecond;
/// `stat`'s own times stand in only where it cannot be read.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields = stat_fields(&stat);
    let own = if fields.is_empty() {
        0.0
    } else {
        process_clock(pid).unwrap_or_else(|| stat_seconds(&fields, OWN))
    };
    own + stat_seconds(&fields, REAPED_CHILDREN)
}

/// `utime`, `stime` (fields 14-15 of proc(5)), counted after the command name.
const OWN: std::ops::Range<usize> = 11..13;
/// `cutime`, `cstime` (fields 16-17 of proc(5)), counted after the command name.
const REAPED_CHILDREN: std::ops::Range<usize> = 13..15;

/// The seconds of the tick fields `at` of a `stat` line's [`stat_fields`].
fn stat_seconds(fields: &[&str], at: std::ops::Range<usize>) -> f64 {
    let ticks: u64 = at
        .filter_map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / TICKS_PER_SEC
}

/// The CPU time of every thread of process `pid`, those that ended included (the kernel's
/// `sum_exec_runtime`, what `stat`'s user and system times are rounded from), in seconds.
fn process_clock(pid: u32) -> Option<f64> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
    let clock = nix::time::clock_getcpuclockid(pid).ok()?;
    let time = nix::time::clock_gettime(clock).ok()?;
    Some(time.tv_sec() as f64 + time.tv_nsec() as f64 / 1e9)
}

/// The usage of one process (zero when it has ended).
pub fn usage_of(pid: u32) -> Usage {
    Usage {
        cpu_seconds: cpu_seconds_of(pid),
        rss_bytes: kib_field(&format!("/proc/{pid}/status"), "VmRSS:") * 1024,
        pss_bytes: kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:") * 1024,
    }
}

/// The value of the `<name> <n> kB` line of a `/proc` file (0 when absent).
fn kib_field(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// `pids` and all their live descendants (from every process's parent in `/proc`).
pub fn tree(pids: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(parent) = stat_fields(&stat).get(1).and_then(|p| p.parse().ok()) {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut seen = HashSet::new();
    let mut todo: Vec<u32> = pids.to_vec();
    let mut all = Vec::new();
    while let Some(pid) = todo.pop() {
        if seen.insert(pid) {
            all.push(pid);
            todo.extend(children.get(&pid).into_iter().flatten());
        }
    }
    all
}

/// The fields of `/proc/<pid>/stat` after the command name (`state` is index 0, `ppid` 1).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_clock_is_what_stat_rounds_down_to_ticks() {
        // Arrange: `stat` read first, so the clock read after can only have moved on
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let rounded = stat_seconds(&stat_fields(&stat), OWN);

        // Act
        let clock = process_clock(std::process::id()).expect("the clock of this process");

        // Assert: user and system time are each rounded down to a tick (another test thread of
        // this process may have run in between: a generous bound above)
        assert!(
            clock >= rounded && clock < rounded + 0.5,
            "clock {clock} s, stat {rounded} s"
        );
    }

    #[test]
    fn a_process_that_has_ended_costs_nothing() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(cpu_seconds_of(pid), 0.0);
    }
}
