//! `spawn_*` helpers: servers on port 0, stopped through their shutdown parameter.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket_server::engineio::{self, EngineConfig, Hooks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::echo;

pub struct TestServer {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Asks the server to stop and returns how long it took to return.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .expect("the server did not stop within 60 s")
            .expect("the server task panicked")
            .expect("the server returned an error");
        started.elapsed()
    }
}

/// Starts a server built by `serve` (given the listener and the shutdown future) on port 0.
pub async fn spawn_with<F, Fut>(serve: F) -> TestServer
where
    F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, stopped));
    TestServer {
        port,
        stop: Some(stop),
        task,
    }
}

/// The protocol echo server (both endpoints), as the example serves it.
pub async fn spawn_echo() -> TestServer {
    spawn_with(|listener, stopped| {
        echo::serve(listener, async {
            let _ = stopped.await;
        })
    })
    .await
}

/// The raw Engine.IO echo on `/engine.io/`, with no ping during a test; `max_payload` as given
/// (`None`: the echo's default).
pub async fn spawn_engine_echo(max_payload: Option<usize>) -> TestServer {
    let defaults = echo::engine_config("/engine.io/");
    let config = EngineConfig {
        ping_interval: Duration::from_secs(30),
        ping_timeout: Duration::from_secs(5),
        max_payload: max_payload.unwrap_or(defaults.max_payload),
        ..defaults
    };
    spawn_with(move |listener, stopped| {
        engineio::serve(
            listener,
            config,
            Arc::new(echo::EngineEcho),
            Hooks::default(),
            async {
                let _ = stopped.await;
            },
        )
    })
    .await
}

/// A minimal HTTP/1.1 exchange over a fresh connection (`Connection: close`).
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    let status = head[9..12].parse().unwrap();
    HttpResponse {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// Opens a polling session on `path` and returns its sid.
pub async fn polling_handshake(port: u16, path: &str) -> String {
    let response = http(
        port,
        "GET",
        &format!("{path}?EIO=4&transport=polling"),
        &[],
        "",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let open: serde_json::Value = serde_json::from_str(&response.body[1..]).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}
