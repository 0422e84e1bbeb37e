//! PostgreSQL and Redis of the run's own, on [`SERVER_CORE`]: never the machine's shared
//! instances, so that a side's CPU figures hold its own database work only.

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
pub struct Postgres {
    process: Proc,
    port: u16,
    _data: DataDir,
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
        as_owner(&mut server);
        let mut process = spawn_pinned(&format!("postgres-{port}"), server)?;
        process.stop_signal = "INT";
        wait_port(&mut process, port, START_LIMIT).await?;
        let postgres = Postgres {
            process,
            port,
            _data: data,
        };
        postgres.wait_ready().await?;
        Ok(postgres)
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
