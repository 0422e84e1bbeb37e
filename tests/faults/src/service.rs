//! One Parley service (`api-server` or `socket-server`) as an OS process of the test's own, on a
//! fixed loopback port so that a restart comes back where its clients look for it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// How long a service may take to answer its readiness route after a (re)start. Generous: only
/// a service that does not come up at all reaches it, never a slow one on a loaded machine.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// What a service is started from and how it is known to be ready.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// `api`, `relay0`, … (names the log file).
    pub name: String,
    pub binary: PathBuf,
    pub port: u16,
    /// The route answering 200 once it serves (`/ready`, `/health`).
    pub ready_path: &'static str,
    pub env: Vec<(String, String)>,
    /// Its stdout and stderr, appended across restarts.
    pub log: PathBuf,
}

/// A running (or killed) service; killed on drop, panicking test or not.
#[derive(Debug)]
pub struct Service {
    spec: ServiceSpec,
    child: Option<Child>,
}

impl Service {
    /// Start the service and return once its readiness route answers 200.
    pub fn start(spec: ServiceSpec) -> Service {
        let mut service = Service { spec, child: None };
        service.restart();
        service
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.port)
    }

    /// SIGKILL (`kill -9`): no drain, no goodbye to its clients. Returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port (killing it first if it runs); returns once ready.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = self.spawn();
        let deadline = Instant::now() + START_LIMIT;
        let url = format!("{}{}", self.url(), self.spec.ready_path);
        while http::status(&url) != Some(200) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited while starting ({status}); its log:\n{}",
                    self.spec.name,
                    tail(&self.spec.log)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not answer {url} with 200 within {START_LIMIT:?}; its log:\n{}",
                    self.spec.name,
                    tail(&self.spec.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    fn spawn(&self) -> Child {
        let log = open_log(&self.spec.log);
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning {}: {e}", self.spec.log.display()));
        let log_dir = self.spec.log.parent().unwrap_or(Path::new("."));
        Command::new(&self.spec.binary)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            // No config/ folder of the working tree may change what the test configured.
            .env("PARLEY_CONFIG_DIR", log_dir.join("no-config"))
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.spec.binary.display()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// The last lines of a log, for a failure message.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The binary `name` of this workspace, built next to the test executable
/// (`target/debug/deps/faults-…` → `target/debug/<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} has no target directory", exe.display()));
    let binary = dir.join(name);
    if !binary.exists() {
        panic!(
            "{} is missing: run `cargo build --workspace` first",
            binary.display()
        );
    }
    binary
}
