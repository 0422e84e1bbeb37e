//! The relay gives memory back: after thousands of sockets connect and go, its resident set
//! returns close to where it started. Run on the real `socket-server` binary, as a process of
//! its own, so that the allocator and its settings are the production ones and RSS is its own.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use secrecy::ExposeSecret;
use shared::process_metrics::ProcessMetrics;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::helpers::{spawn_stack, Stack};

/// Sockets connected at once, as in the report (issue 8, item 7).
const SOCKETS: usize = 3000;
/// Users they belong to (each user's sockets share a room).
const USERS: usize = 30;
/// Sockets of the warm-up cycle, before the baseline.
const WARM_UP: usize = 100;
/// Handshakes in flight at once.
const CONCURRENCY: usize = 64;
/// How far above its baseline the relay's RSS may stay once the sockets are gone.
const TOLERANCE: f64 = 1.25;
/// How long it may take to get there.
const RETURN_WITHIN: Duration = Duration::from_secs(60);

pub type Ws = WebSocketStream<TcpStream>;

/// The relay binary on a free port, using the stack's API, stopped when dropped.
pub struct RelayProcess {
    child: Child,
    pub port: u16,
}

impl RelayProcess {
    async fn start(stack: &Stack) -> Self {
        Self::spawn(stack, Command::new(env!("CARGO_BIN_EXE_socket-server"))).await
    }

    /// The binary pinned to one of the CPUs this test may use (`taskset`, from util-linux,
    /// which execs it: the child is the relay).
    pub async fn start_on_one_cpu(stack: &Stack) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let allowed = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in /proc/self/status");
        let first = allowed.trim().split([',', '-']).next().unwrap_or("0");
        let mut command = Command::new("taskset");
        command.args(["-c", first, env!("CARGO_BIN_EXE_socket-server")]);
        Self::spawn(stack, command).await
    }

    async fn spawn(stack: &Stack, mut command: Command) -> Self {
        let mut child = command
            .env("PARLEY_CONFIG_DIR", "/nonexistent")
            .env("SOCKET_HOST", "127.0.0.1")
            .env("SOCKET_PORT", "0")
            .env("API_URL", &stack.api_url)
            .env("REDIS_URL", crate::helpers::REDIS_URL)
            .env("JWT_SECRET", stack.jwt.secret.expose_secret())
            .env("PARLEY__JWT__ISSUER", &stack.jwt.issuer)
            .env("PARLEY__JWT__AUDIENCE", &stack.jwt.audience)
            .env(
                "PARLEY__REDIS__PREFIX",
                format!("parley-memory-test-{}", uuid::Uuid::new_v4().simple()),
            )
            // Thousands of sockets from one address and a few users.
            .env("PARLEY__LIMITS__CONNECTS_PER_IP_PER_SEC", "1000000")
            .env("PARLEY__LIMITS__CONNECTIONS_PER_USER", "1000000")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,socket_server::startup=info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the socket-server binary (on one CPU: through taskset, util-linux)");
        let stderr = child.stderr.take().unwrap();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // Read the port from the start-up line, then keep draining stderr.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut port_tx = Some(port_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if json["fields"]["message"] == "socket-server listening" {
                    if let (Some(tx), Some(port)) =
                        (port_tx.take(), json["fields"]["port"].as_u64())
                    {
                        let _ = tx.send(port as u16);
                    }
                } else if json["level"] != "INFO" {
                    eprintln!("relay: {line}");
                }
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
            .await
            .expect("the relay started within 30 s")
            .expect("the relay printed its port");
        Self { child, port }
    }

    /// The names of the relay's threads.
    pub fn threads(&self) -> Vec<String> {
        let pid = self.child.id().expect("the relay is running");
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the relay's threads");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    fn rss(&self) -> u64 {
        let pid = self.child.id().expect("the relay is running");
        ProcessMetrics::read_at(std::path::Path::new(&format!("/proc/{pid}")))
            .resident_memory_bytes
            .expect("the relay's RSS")
    }

    async fn engine_sessions(&self) -> u64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        test_support::metrics::sample(&text, "relay_engine_sessions").unwrap() as u64
    }

    /// Polls until the relay has no Engine.IO session left.
    async fn wait_for_no_sessions(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.engine_sessions().await > 0 {
            assert!(
                Instant::now() < deadline,
                "sessions still open after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A Socket.IO client over a WebSocket, authenticated (CONNECT acknowledged) with `token`.
pub async fn connect(port: u16, token: &str) -> Ws {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "the Engine.IO open packet: {open}");
    let connect = format!("40{}", serde_json::json!({ "token": token }));
    ws.send(Message::text(connect)).await.unwrap();
    loop {
        let packet = next_text(&mut ws).await;
        if packet.starts_with("40") {
            return ws;
        }
        assert!(!packet.starts_with("44"), "CONNECT refused: {packet}");
    }
}

pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s")
            .expect("the connection is open")
            .unwrap();
        if let Message::Text(text) = message {
            return text.to_string();
        }
    }
}

/// `count` authenticated sockets spread over `tokens`.
async fn connect_many(port: u16, tokens: &[String], count: usize) -> Vec<Ws> {
    futures::stream::iter(0..count)
        .map(|i| connect(port, &tokens[i % tokens.len()]))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_gives_memory_back_after_thousands_of_sockets_disconnect() {
    // Arrange: the relay binary, warmed up by a small cycle (lazy statics, the API's and
    // Redis's connections, the allocator's per-thread caches and the runtime's tables at their
    // working size: with 20 sockets instead of 100 these came on top of the baseline, some
    // 4-7 MiB that stay after the drop), then its baseline
    let stack = spawn_stack(0).await;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        tokens.push(stack.register(&format!("mem{i}")).await.0);
    }
    let relay = RelayProcess::start(&stack).await;
    drop(connect_many(relay.port, &tokens, WARM_UP).await);
    relay.wait_for_no_sessions(Duration::from_secs(30)).await;
    let baseline = relay.rss();

    // Act: thousands of sockets connect, then all go at once
    let started = Instant::now();
    let sockets = connect_many(relay.port, &tokens, SOCKETS).await;
    let connected = started.elapsed();
    assert_eq!(relay.engine_sessions().await, SOCKETS as u64);
    let peak = relay.rss();
    drop(sockets);
    let dropped = Instant::now();

    // Assert: RSS comes back within the tolerance of the baseline, in time
    let limit = (baseline as f64 * TOLERANCE) as u64;
    let mut rss = relay.rss();
    while rss > limit && dropped.elapsed() < RETURN_WITHIN {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss = relay.rss();
    }
    eprintln!(
        "relay RSS: baseline {:.1} MiB, {SOCKETS} sockets {:.1} MiB (connected in {connected:.1?}), \
         after they left {:.1} MiB ({:.1?} after the drop)",
        mib(baseline),
        mib(peak),
        mib(rss),
        dropped.elapsed(),
    );
    assert!(
        rss <= limit,
        "RSS {:.1} MiB is still above {TOLERANCE} × the baseline {:.1} MiB {RETURN_WITHIN:?} after \
         the sockets left (peak {:.1} MiB; {} Engine.IO sessions open)",
        mib(rss),
        mib(baseline),
        mib(peak),
        relay.engine_sessions().await
    );
}
