//! The traffic: `tests/node/faults/driver.mjs`, socket.io-client users on the relays, run by
//! node. It reports JSON lines on stdout (read by a thread into a channel) and takes commands as
//! JSON lines on stdin; see the script's header for both.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::report::Report;
use crate::stack::Stack;

/// Users of the traffic (user `i` on relay `i % 2`).
pub const USERS: usize = 6;
/// Each user sends one message this often: 6 users × 5/s = 30 messages per second in all.
const INTERVAL_MS: u64 = 200;
/// How long an answer of the driver may take. Only a hang reaches it, never a busy machine.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(60);
const NODE_HINT: &str = "install Node.js 20+ and npm (Debian/Ubuntu: apt-get install nodejs npm)";

/// The node process; killed on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Value>,
    /// Messages acknowledged so far, from the last progress line.
    acked: u64,
    /// The `ready` event: users and conversations.
    pub ready: Value,
}

impl Driver {
    /// Start the users against `stack` and return once they are all connected.
    pub fn start(stack: &Stack) -> Driver {
        let node_dir = workspace_root().join("tests/node");
        ensure_node_modules(&node_dir);
        let scenario = json!({
            "api": stack.api.url(),
            "relays": stack.relay_urls(),
            "users": USERS,
            "intervalMs": INTERVAL_MS,
        });
        let mut child = Command::new("node")
            .arg(node_dir.join("faults/driver.mjs"))
            .env("PARLEY_FAULT_SCENARIO", scenario.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting node ({e}): {NODE_HINT}"));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("node was started with piped stdin and stdout");
        };
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => {
                        if tx.send(event).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let start: String = line.chars().take(300).collect();
                        println!("driver (not JSON: {e}): {start}…");
                    }
                }
            }
        });
        let mut driver = Driver {
            child,
            stdin,
            events,
            acked: 0,
            ready: Value::Null,
        };
        driver.ready = driver.expect("ready");
        driver
    }

    /// Send one command (`{"cmd": …}`).
    pub fn command(&mut self, command: Value) {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("writing {command} to the driver: {e}"));
    }

    /// The next event named `name` (progress lines are absorbed on the way). Panics on a driver
    /// error, its exit, or after [`ANSWER_LIMIT`].
    pub fn expect(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + ANSWER_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.events.recv_timeout(left) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the driver sent no {name} within {ANSWER_LIMIT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the driver exited ({:?}) before {name}",
                        self.child.try_wait()
                    )
                }
            };
            match event["event"].as_str() {
                Some(n) if n == name => return event,
                Some("progress") => self.acked = event["acked"].as_u64().unwrap_or(self.acked),
                Some("error") => panic!("the driver failed: {}", event["message"]),
                _ => println!("driver: {event}"),
            }
        }
    }

    /// Return once `more` messages were acknowledged after this call (the traffic flows).
    pub fn wait_for_acks(&mut self, more: u64) {
        let target = self.acked + more;
        let deadline = Instant::now() + ANSWER_LIMIT;
        while self.acked < target {
            let progress = self.expect("progress");
            self.acked = progress["acked"].as_u64().unwrap_or(self.acked);
            assert!(
                Instant::now() < deadline,
                "fewer than {more} acks within {ANSWER_LIMIT:?} (last progress {progress})"
            );
        }
    }

    /// A new message from `user`; returns once it is acknowledged.
    pub fn probe(&mut self, user: usize) {
        self.command(json!({ "cmd": "probe", "user": user }));
        self.expect("probe_acked");
    }

    /// Messages from `from` until `to` receives one live (`receive_message`); how many it took.
    pub fn live(&mut self, from: usize, to: usize) -> u64 {
        self.command(json!({ "cmd": "live", "from": from, "to": to }));
        self.expect("live_received")["probes"]
            .as_u64()
            .unwrap_or_default()
    }

    /// Wait until `user` is told (`presence`) that `of` is offline; the driver's answer
    /// (`{"user","of","lastSeen"}`, `lastSeen` null when it was not told within its drain time).
    pub fn offline(&mut self, user: usize, of: usize) -> Value {
        self.command(json!({ "cmd": "offline", "user": user, "of": of }));
        self.expect("offline_seen")
    }

    /// `GET path` on the API by every user at once; their answers
    /// (`{"user","path","status","code","ms"}`), in the order they came.
    pub fn rest_by_everyone(&mut self, path: &str) -> Vec<Value> {
        let users = self.ready["users"].as_array().map_or(0, Vec::len);
        for user in 0..users {
            self.command(json!({ "cmd": "rest", "user": user, "path": path }));
        }
        (0..users).map(|_| self.expect("rest_answered")).collect()
    }

    /// Stop the traffic, let every send settle, sync every user and return what they report.
    pub fn stop(mut self) -> Report {
        self.command(json!({ "cmd": "stop" }));
        let report = self.expect("report");
        Report::parse(&self.ready, report)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("tests/faults sits two levels below the workspace root"))
}

/// `npm ci` in `node_dir` unless socket.io-client is installed. Tests run as separate
/// processes: one installs (holding a lock directory), the others wait for it.
fn ensure_node_modules(node_dir: &Path) {
    let installed = node_dir.join("node_modules/socket.io-client/package.json");
    if installed.exists() {
        return;
    }
    let lock = node_dir.join(".faults-npm-install.lock");
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::create_dir(&lock).is_err() {
        if installed.exists() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited 300 s for another test's `npm ci` in {}; remove {} if no install runs",
            node_dir.display(),
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(node_dir)
        .status();
    let _ = std::fs::remove_dir(&lock);
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`npm ci` in {} failed ({status})", node_dir.display()),
        Err(e) => panic!("running npm ({e}): {NODE_HINT}"),
    }
}
