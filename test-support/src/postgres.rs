//! A PostgreSQL cluster of the test's own: `initdb` into a temporary directory, served by
//! `pg_ctl` on a free loopback port with trust authentication, removed on drop.

use super::port::{accepts, free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the server binaries are looked for (`PG_BIN` first, then the first of these that holds
/// `initdb`, then `PATH`).
const BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/14/bin",
];
const INSTALL_HINT: &str =
    "install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql), or set PG_BIN to the directory holding initdb and pg_ctl";
/// The OS user that runs the cluster when the tests run as root (PostgreSQL refuses root).
const SERVICE_USER: &str = "postgres";

/// A PostgreSQL cluster on `127.0.0.1:port()`, superuser `postgres`, no password.
#[derive(Debug)]
pub struct PgCluster {
    port: u16,
    /// The temporary directory: `data/` (the cluster), `server.log`, the Unix socket.
    dir: PathBuf,
    bin: PathBuf,
    /// Run the binaries as [`SERVICE_USER`] (the tests run as root).
    as_service_user: bool,
    running: bool,
    /// Its processes are stopped with SIGSTOP ([`PgCluster::freeze`]).
    frozen: bool,
}

impl PgCluster {
    /// Create a cluster in a new temporary directory and start it on a free port. Panics when
    /// the binaries are missing (saying what to install) or the cluster does not come up.
    pub fn start() -> PgCluster {
        let bin = find_bin();
        let dir = std::env::temp_dir().join(format!("parley-pg-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let as_service_user = is_root();
        if as_service_user {
            expect_ok(
                Command::new("chown").arg(SERVICE_USER).arg(&dir).output(),
                "chown of the cluster directory",
            );
        }
        let mut cluster = PgCluster {
            port: free_port(),
            dir,
            bin,
            as_service_user,
            running: false,
            frozen: false,
        };
        let data = cluster.data_dir();
        let initdb = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output();
        expect_ok(initdb, "initdb");
        cluster.restart();
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log (read it when a test fails).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Run `sql` with `psql` (from the same binaries) in `database`; the rows, one line each,
    /// columns separated by `|`. Panics when psql fails, with its error.
    pub fn query(&self, database: &str, sql: &str) -> Vec<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-q", "-F", "|", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", database, "-c", sql])
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => panic!(
                "psql `{sql}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("psql: {e}: {INSTALL_HINT}"),
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Stop the server (`pg_ctl stop -m fast`: clients are disconnected), waiting until it is
    /// down. The data stays for [`PgCluster::restart`].
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    /// Crash the server (`pg_ctl stop -m immediate`: every process quits at once, no
    /// checkpoint; the next start runs crash recovery from the WAL), waiting until it is down.
    pub fn crash(&mut self) {
        self.stop_with("immediate");
    }

    fn stop_with(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        self.thaw();
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "30", "stop"])
            .output();
        expect_ok(out, "pg_ctl stop");
        self.running = false;
    }

    /// Freeze the server: SIGSTOP to the postmaster, then to every process it started. Its
    /// port and connections stay open and nothing answers on them — a database that hangs, as
    /// its clients see it. [`PgCluster::thaw`] resumes it; dropping the cluster thaws it first.
    pub fn freeze(&mut self) {
        assert!(
            self.running && !self.frozen,
            "freeze needs a running, unfrozen server"
        );
        let postmaster = self.postmaster_pid();
        // The postmaster first: stopped, it starts no process after the list below is read.
        crate::signal::send("STOP", &[postmaster]);
        crate::signal::send("STOP", &children_of(postmaster));
        self.frozen = true;
    }

    /// Resume a frozen server (SIGCONT, the postmaster last).
    pub fn thaw(&mut self) {
        if !self.frozen {
            return;
        }
        let postmaster = self.postmaster_pid();
        crate::signal::send("CONT", &children_of(postmaster));
        crate::signal::send("CONT", &[postmaster]);
        self.frozen = false;
    }

    /// The postmaster's PID: the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> u32 {
        let file = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} holds no PID", file.display()))
    }

    /// Start the server again on the same port (stopping it first if it runs); returns once it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .output();
        expect_ok(out, "pg_ctl start");
        self.running = true;
        if !wait_until(Duration::from_secs(10), || accepts(self.port)) {
            panic!(
                "PostgreSQL did not accept connections on port {}; see {}",
                self.port,
                self.log_file().display()
            );
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `name` from the server binaries, run as the service user when we are root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_service_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", SERVICE_USER, "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            self.thaw();
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The PIDs whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses, so read after
            // the last `)`.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn find_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").exists() {
            return dir;
        }
        panic!("PG_BIN={} holds no initdb: {INSTALL_HINT}", dir.display());
    }
    if let Some(dir) = BIN_DIRS
        .iter()
        .map(Path::new)
        .find(|d| d.join("initdb").exists())
    {
        return dir.to_path_buf();
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    on_path.unwrap_or_else(|| panic!("initdb and pg_ctl not found: {INSTALL_HINT}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A name no other cluster of this or another test process uses.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

#[track_caller]
fn expect_ok(out: std::io::Result<Output>, what: &str) {
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what}: a binary is missing ({e}): {INSTALL_HINT}")
        }
        Err(e) => panic!("{what}: {e}"),
    }
}
