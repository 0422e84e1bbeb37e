//! `spawn_*` helpers: servers on port 0, stopped through their shutdown parameter; clients of
//! them (`http`, `polling_handshake`, `open_websocket`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use socket_server::engineio::{self, EngineConfig, Hooks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

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
    let request = request_text(method, path, headers, body, "close");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    response(head, body)
}

fn request_text(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    connection: &str,
) -> String {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    request
}

fn response(head: &str, body: &str) -> HttpResponse {
    HttpResponse {
        status: head[9..12].parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// An HTTP/1.1 connection kept open for one request after another: for a request that must go
/// out on a connection the server accepted earlier (during a drain, new ones are refused).
pub struct KeepAlive {
    stream: TcpStream,
}

impl KeepAlive {
    pub async fn open(port: u16) -> Self {
        Self {
            stream: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        }
    }

    /// One request and its whole response (the body as long as its `Content-Length`).
    pub async fn request(&mut self, method: &str, path: &str, body: &str) -> HttpResponse {
        let request = request_text(method, path, &[], body, "keep-alive");
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = self.stream.read_buf(&mut raw).await.unwrap();
            assert!(n > 0, "the connection closed before a whole response");
        };
        let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
        let length: usize = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .expect("a response with a Content-Length")
            .trim()
            .parse()
            .unwrap();
        let body_start = head_end + 4;
        while raw.len() < body_start + length {
            let n = self.stream.read_buf(&mut raw).await.unwrap();
            assert!(n > 0, "the connection closed before a whole response");
        }
        response(&head, std::str::from_utf8(&raw[body_start..]).unwrap())
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

/// A client's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// A WebSocket session from the start on `/engine.io/`, its open packet read.
pub async fn open_websocket(port: u16) -> Ws {
    open_websocket_at(port, "/engine.io/").await
}

/// A WebSocket session from the start on `path`, its open packet read.
pub async fn open_websocket_at(port: u16, path: &str) -> Ws {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let url = format!("ws://127.0.0.1:{port}{path}?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = next_frame(&mut ws).await;
    assert!(
        matches!(&open, Some(WsMessage::Text(t)) if t.starts_with("0{")),
        "{open:?}"
    );
    ws
}

/// The next frame, within 60 s; `None` once the connection ended.
pub async fn next_frame(ws: &mut Ws) -> Option<WsMessage> {
    tokio::time::timeout(Duration::from_secs(60), ws.next())
        .await
        .expect("a frame within 60 s")
        .map(|frame| frame.expect("a frame"))
}

/// The next frame of a connection that must still be open.
pub async fn next_message(ws: &mut Ws) -> WsMessage {
    next_frame(ws).await.expect("the connection is open")
}

/// The next frame, which must be text.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_message(ws).await {
        WsMessage::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}
