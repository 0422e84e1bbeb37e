//! Start the `parley` binary, read its ready line, stop it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Variables a developer's shell may have set that would change the configuration under test.
const CLEARED: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET",
    "API_PORT",
    "SOCKET_PORT",
    "API_URL",
    "PARLEY_EPHEMERAL",
    "PARLEY_DATA_DIR",
    "PARLEY_CONFIG_DIR",
    "CORS_ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "ATTACHMENTS_URL",
    "ATTACHMENTS_S3_ENDPOINT",
];

pub struct Parley {
    pub child: Child,
    /// Held open: an ephemeral Parley exits when it closes.
    pub stdin: Option<ChildStdin>,
    pub api: String,
    pub socket: String,
    pub ready: Value,
}

/// Start `parley` with `args` and `envs` and wait for its ready line (at most 60 s).
pub async fn start(args: &[&str], envs: &[(&str, String)]) -> Parley {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parley"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .env("RUST_LOG", "warn");
    for var in CLEARED {
        command.env_remove(var);
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("starting the parley binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("parley printed no ready line within 60 s")
        .expect("reading parley's stdout")
        .expect("parley exited before it was ready (its log is above)");
    let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
    assert_eq!(ready["event"], "ready", "{line}");
    let api = ready["addresses"]["api"]
        .as_str()
        .expect("api address")
        .to_owned();
    let socket = ready["addresses"]["socket"]
        .as_str()
        .expect("socket address")
        .to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stdin = child.stdin.take();
    Parley {
        child,
        stdin,
        api,
        socket,
        ready,
    }
}

impl Parley {
    /// Send SIGTERM and wait (at most 60 s) for a clean exit.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("parley is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("parley did not exit within 60 s of SIGTERM")
            .expect("waiting for parley");
        assert!(exit.success(), "parley exited with {exit:?} after SIGTERM");
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parley-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// Run the node contract suite against `parley`; fails with node's output.
pub async fn run_node_contract(parley: &Parley) {
    run_node_suite(parley, "tests/node/allinone").await;
}

/// Run the node suite in `dir` (relative to the workspace) against `parley`; fails with node's
/// output.
pub async fn run_node_suite(parley: &Parley, dir: &str) {
    let root = workspace_root();
    let node_dir = root.join("tests/node");
    assert!(
        node_dir.join("node_modules").exists(),
        "tests/node/node_modules is missing: run `npm ci` in tests/node (./scripts/test does it)"
    );
    run_node(parley, &root, &["--test".to_owned(), dir.to_owned()], dir).await;
}

/// Run `node args` in `cwd` with `PARLEY_API` / `PARLEY_SOCKET` naming `parley`; fails with
/// node's output, naming `what`.
pub async fn run_node(parley: &Parley, cwd: &Path, args: &[String], what: &str) {
    let output = Command::new("node")
        .args(args)
        .current_dir(cwd)
        .env("PARLEY_API", &parley.api)
        .env("PARLEY_SOCKET", &parley.socket)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (Node.js 20+)");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the node suite {what} failed (exit {:?}); its output is above",
        output.status.code()
    );
}

/// Start `parley --ephemeral` on a fresh PostgreSQL database (the API creates it; drop it with
/// [`drop_database`]) and Redis under a prefix of its own, with `more` in its environment;
/// returns the database's name too.
pub async fn start_on_postgres_and_redis(more: &[(&str, String)]) -> (Parley, String) {
    let name = format!("parley_test_{}", uuid::Uuid::new_v4().simple());
    let mut envs = vec![
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{name}"),
        ),
        ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
        (
            "PARLEY__REDIS__PREFIX",
            format!("parley-test-{}", uuid::Uuid::new_v4()),
        ),
    ];
    envs.extend(more.iter().cloned());
    let parley = start(&["--ephemeral"], &envs).await;
    assert_eq!(parley.ready["addresses"]["bus"], "redis");
    assert_eq!(parley.ready["addresses"]["database"], "postgresql");
    (parley, name)
}

/// Drop the database `name` (best effort: a leftover only costs disk).
pub fn drop_database(name: &str) {
    let _ = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
        .arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .status();
}
