//! A `redis-server` of the test's own: no persistence, loopback only, killed on drop.

use super::port::{accepts, addr, free_port, wait_until};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a start (or restart) may take before the fixture gives up.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long a stop may take before the process is killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);
const INSTALL_HINT: &str = "install Redis (Debian/Ubuntu: apt-get install redis-server)";

/// A running (or stopped, see [`RedisServer::stop`]) `redis-server` on `127.0.0.1:port()`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Where it also listens on a Unix socket, if asked to ([`RedisServer::start_with_unix_socket`]).
    unix_socket: Option<std::path::PathBuf>,
    /// The process while it runs.
    child: Option<Child>,
    /// Stopped by SIGSTOP ([`RedisServer::freeze`]).
    frozen: bool,
}

impl RedisServer {
    /// Start a server on a free loopback port and wait until it answers `PING`. Panics when
    /// `redis-server` is not installed (saying what to install) or does not come up.
    pub fn start() -> RedisServer {
        Self::start_listening(false)
    }

    /// [`RedisServer::start`], also listening on a Unix socket of its own
    /// ([`RedisServer::unix_url`]).
    pub fn start_with_unix_socket() -> RedisServer {
        Self::start_listening(true)
    }

    fn start_listening(unix: bool) -> RedisServer {
        let mut last_error = String::new();
        // A free port can be taken between choosing it and binding it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                unix_socket: unix
                    .then(|| std::env::temp_dir().join(format!("parley-test-redis-{port}.sock"))),
                child: None,
                frozen: false,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("starting redis-server: {last_error}");
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis+unix://<socket>`; panics unless started with
    /// [`RedisServer::start_with_unix_socket`].
    pub fn unix_url(&self) -> String {
        let socket = self
            .unix_socket
            .as_ref()
            .expect("started without a Unix socket");
        format!("redis+unix://{}", socket.display())
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stop it the way an operator would (`SHUTDOWN NOSAVE`: clients see their connections
    /// closed), killing the process if it has not exited within a few seconds. Returns once the
    /// process is gone. A stopped server stays stopped.
    pub fn stop(&mut self) {
        self.thaw();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = send_shutdown(self.port);
        let exited = wait_until(STOP_LIMIT, || !matches!(child.try_wait(), Ok(None)));
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Freeze the server (SIGSTOP): its port and connections stay open and nothing answers on
    /// them — a Redis that hangs, as its clients see it. [`RedisServer::thaw`] resumes it.
    pub fn freeze(&mut self) {
        let child = self.child.as_ref().expect("freeze needs a running server");
        assert!(!self.frozen, "frozen already");
        crate::signal::send("STOP", &[child.id()]);
        self.frozen = true;
    }

    /// Resume a frozen server (SIGCONT); nothing when it is not frozen.
    pub fn thaw(&mut self) {
        if let (Some(child), true) = (&self.child, self.frozen) {
            crate::signal::send("CONT", &[child.id()]);
        }
        self.frozen = false;
    }

    /// Close the connections of every client of `kind` (`normal`, `pubsub`, `replica`, …) the
    /// way an operator or a failing network would (`CLIENT KILL TYPE <kind>`); how many were
    /// closed. Panics when the server does not answer.
    pub fn kill_clients(&self, kind: &str) -> u64 {
        let reply = command(self.port, &format!("CLIENT KILL TYPE {kind}"))
            .unwrap_or_else(|e| panic!("CLIENT KILL TYPE {kind} on port {}: {e}", self.port));
        reply
            .strip_prefix(':')
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("CLIENT KILL TYPE {kind}: unexpected reply {reply:?}"))
    }

    /// Start it again on the same port (stopping it first if it runs) and wait until it
    /// answers. Its data is gone: nothing is persisted.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("restarting redis-server on port {}: {e}", self.port);
        }
    }

    /// Run `redis-server` on `self.port` and wait for `PING`.
    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"]);
        if let Some(socket) = &self.unix_socket {
            command.arg("--unixsocket").arg(socket);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not on PATH: {INSTALL_HINT}")
            }
            Err(e) => return Err(format!("spawning redis-server: {e}")),
        };
        let up = wait_until(START_LIMIT, || {
            matches!(child.try_wait(), Ok(Some(_))) || ping(self.port)
        });
        if up && matches!(child.try_wait(), Ok(None)) {
            self.child = Some(child);
            return Ok(());
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "redis-server on port {} exited or did not answer PING within {START_LIMIT:?}",
            self.port
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(socket) = &self.unix_socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    accepts(port) && command(port, "PING").is_ok_and(|line| line.starts_with("+PONG"))
}

/// Send one inline command to the Redis on `port`; the first line of its reply.
fn command(port: u16, inline: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr(port), Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(format!("{inline}\r\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// Send `SHUTDOWN NOSAVE` (the server closes the connection instead of answering).
fn send_shutdown(port: u16) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr(port), Duration::from_millis(500))?;
    stream.write_all(b"SHUTDOWN NOSAVE\r\n")
}
