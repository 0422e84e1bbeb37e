//! PostgreSQL and Redis of the run's own, on [`SERVER_CORE`]: never the machine's shared
//! instances, so that a side's CPU figures hold its own database work only.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{free_port, run, run_dir, spawn, spawn_pinned, wait_port, Proc, SERVER_CORE};

/// How long a server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Where the PostgreSQL binaries are looked for (`PG_BIN` first).
const PG_BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
];
/// The OS user that runs PostgreSQL when the bench runs as root (PostgreSQL refuses root).
const PG_USER: &str = "postgres";

/// A PostgreSQL cluster on `127.0.0.1:port`, superuser `postgres`, trust authentication, its
/// data in the run dir (deleted when dropped). The settings are PostgreSQL's defaults (durable
/// commits), except those given to [`Postgres::start_with`].
///
/// With `BENCH_PG_STATEMENTS=<file>` the cluster loads `pg_stat_statements` (`track = all`), and
/// when it is dropped, before it stops, appends to that file every statement's calls, rows and
/// time, the commits and rollbacks of `pg_stat_database`, and each of its processes' CPU-seconds
/// (the counts since [`Postgres::reset_statements`] when a scenario called it).
pub struct Postgres {
    process: Proc,
    port: u16,
    /// The `BENCH_PG_STATEMENTS` file, and the counts at the last reset.
    statements: Option<(PathBuf, std::sync::Mutex<Baseline>)>,
    _data: DataDir,
}

/// What `BENCH_PG_STATEMENTS` dumps: statements by calls, then the database's transactions.
const STATEMENTS_QUERY: &str = "\
SELECT calls, rows, round(total_exec_time::numeric, 1) AS total_ms, \
       round((total_exec_time / calls)::numeric, 4) AS mean_ms, \
       regexp_replace(query, '\\s+', ' ', 'g') AS query \
FROM pg_stat_statements ORDER BY calls DESC, total_exec_time DESC";
const TRANSACTIONS_QUERY: &str = "\
SELECT datname, xact_commit, xact_rollback FROM pg_stat_database \
WHERE datname IS NOT NULL ORDER BY datname";

/// The counts `BENCH_PG_STATEMENTS` subtracts (`pg_stat_reset` resets one database only).
#[derive(Clone, Default)]
struct Baseline {
    /// CPU-seconds by PID.
    cpu: HashMap<u32, f64>,
    /// Commits and rollbacks by database.
    transactions: HashMap<String, (i64, i64)>,
}

/// `TRANSACTIONS_QUERY`'s output by database.
fn transactions(text: &str) -> HashMap<String, (i64, i64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next()?.to_owned();
            let commits = fields.next()?.parse().ok()?;
            let rollbacks = fields.next()?.parse().ok()?;
            Some((name, (commits, rollbacks)))
        })
        .collect()
}

impl Postgres {
    pub async fn start() -> anyhow::Result<Postgres> {
        Postgres::start_with(&[]).await
    }

    /// Start with extra `-c name=value` settings (e.g. `("max_connections", "200")`).
    pub async fn start_with(settings: &[(&str, &str)]) -> anyhow::Result<Postgres> {
        let bin = pg_bin()?;
        let port = free_port()?;
        let dir = run_dir().join(format!("postgres-{port}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let data = DataDir(dir.clone());
        let owner = service_user()?;
        if let Some((uid, _)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), None)
                .with_context(|| format!("chown {} to {PG_USER}", dir.display()))?;
        }
        let as_owner = |command: &mut Command| {
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        as_owner(&mut initdb);
        run(&mut initdb).context("initdb")?;
        let mut server = Command::new("taskset");
        server
            .args(["-c", &SERVER_CORE.to_string()])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for (name, value) in settings {
            server.args(["-c", &format!("{name}={value}")]);
        }
        let statements = std::env::var_os("BENCH_PG_STATEMENTS").map(PathBuf::from);
        if statements.is_some() {
            server.args([
                "-c",
                "shared_preload_libraries=pg_stat_statements",
                "-c",
                "pg_stat_statements.track=all",
            ]);
        }
        as_owner(&mut server);
        let mut process = spawn_pinned(&format!("postgres-{port}"), server)?;
        process.stop_signal = "INT";
        wait_port(&mut process, port, START_LIMIT).await?;
        let postgres = Postgres {
            process,
            port,
            statements: statements.map(|file| (file, Default::default())),
            _data: data,
        };
        postgres.wait_ready().await?;
        if postgres.statements.is_some() {
            postgres
                .psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .context("BENCH_PG_STATEMENTS: creating pg_stat_statements")?;
        }
        Ok(postgres)
    }

    /// With `BENCH_PG_STATEMENTS`: count from now on (statements, transactions, CPU), e.g. once a
    /// scenario's set-up is done. Nothing otherwise.
    pub fn reset_statements(&self) -> anyhow::Result<()> {
        let Some((_, baseline)) = &self.statements else {
            return Ok(());
        };
        self.psql("SELECT pg_stat_statements_reset()")
            .context("resetting pg_stat_statements")?;
        let now = Baseline {
            cpu: processes(self.pid())
                .into_iter()
                .map(|(pid, _, cpu)| (pid, cpu))
                .collect(),
            transactions: transactions(&self.psql(TRANSACTIONS_QUERY)?),
        };
        *baseline.lock().unwrap_or_else(|e| e.into_inner()) = now;
        Ok(())
    }

    /// Append what `BENCH_PG_STATEMENTS` asks for to its file (see [`Postgres`]).
    fn dump_statements(&self) -> anyhow::Result<()> {
        let Some((file, baseline)) = &self.statements else {
            return Ok(());
        };
        let baseline = baseline.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut text = format!(
            "# PostgreSQL on port {}: pg_stat_statements (calls, rows, total ms, mean ms, query)\n",
            self.port
        );
        text += &self.psql(STATEMENTS_QUERY)?;
        text += "# pg_stat_database (database, commits, rollbacks; since the reset)\n";
        let mut now: Vec<_> = transactions(&self.psql(TRANSACTIONS_QUERY)?)
            .into_iter()
            .collect();
        now.sort();
        for (name, (commits, rollbacks)) in now {
            let (c0, r0) = baseline.transactions.get(&name).copied().unwrap_or((0, 0));
            if commits + rollbacks > c0 + r0 {
                text += &format!("{name}\t{}\t{}\n", commits - c0, rollbacks - r0);
            }
        }
        text += "# CPU-seconds by process (since the reset; pid, seconds, process)\n";
        let mut total = 0.0;
        for (pid, title, cpu) in processes(self.pid()) {
            let cpu = cpu - baseline.cpu.get(&pid).copied().unwrap_or(0.0);
            total += cpu;
            text += &format!("{pid}\t{cpu:.2}\t{title}\n");
        }
        text += &format!("total\t{total:.2}\n");
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("writing {}", file.display()))
    }

    /// Run SQL with `psql` in the `postgres` database; its unaligned, tab-separated output.
    fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(pg_bin()?.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", PG_USER, "-d", "postgres", "-c", sql])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Until a session can start (the port accepts before recovery has finished).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).context("PostgreSQL did not accept a session")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID (its backends are its descendants: pass it to [`super::usage`]).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Before the fields drop: the server still runs.
        if let Err(e) = self.dump_statements() {
            eprintln!("BENCH_PG_STATEMENTS: {e:#}");
        }
    }
}

/// The postmaster `pid` and its descendants: pid, process title, CPU-seconds (reaped children
/// included).
fn processes(pid: u32) -> Vec<(u32, String, f64)> {
    super::tree(&[pid])
        .into_iter()
        .map(|pid| {
            let title = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .replace('\0', " ")
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            (pid, title, super::cpu_seconds_of(pid))
        })
        .collect()
}

/// A cluster's directory, removed once the server is down (drop order: after the process).
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on `127.0.0.1:port`, nothing persisted.
pub struct Redis {
    process: Proc,
    port: u16,
}

impl Redis {
    pub async fn start() -> anyhow::Result<Redis> {
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
        let mut process = spawn(&format!("redis-{port}"), command)
            .context("starting redis-server (install it: apt-get install redis-server)")?;
        wait_port(&mut process, port, START_LIMIT).await?;
        Ok(Redis { process, port })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The directory of `initdb` and `postgres`.
fn pg_bin() -> anyhow::Result<PathBuf> {
    let hint = "install the PostgreSQL server binaries (apt-get install postgresql) or set PG_BIN";
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").exists() {
            bail!("PG_BIN={} holds no initdb: {hint}", dir.display());
        }
        return Ok(dir);
    }
    PG_BIN_DIRS
        .iter()
        .map(Path::new)
        .find(|dir| dir.join("initdb").exists())
        .map(Path::to_path_buf)
        .with_context(|| format!("initdb not found in {PG_BIN_DIRS:?}: {hint}"))
}

/// `(uid, gid)` of [`PG_USER`] when this process is root, from `/etc/passwd`.
fn service_user() -> anyhow::Result<Option<(u32, u32)>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&PG_USER) && fields.len() > 3)
        .with_context(|| format!("running as root, and no user {PG_USER} to run PostgreSQL"))?;
    Ok(Some((entry[2].parse()?, entry[3].parse()?)))
}
