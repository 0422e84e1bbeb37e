//! Cases of the official Engine.IO / Socket.IO protocol suites that used to fail, made
//! deterministic: a second WebSocket for an upgraded session, the poll that follows the client's
//! close, a poll sent after the upgrade's probe, what polling left queued when the WebSocket
//! takes over, and requests that come after the heartbeat's deadline while the server was too
//! busy to fire its timer.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use socket_server::engineio::{
    self, CloseReason, EngineConfig, EngineHandler, EngineSocket, Hooks, Message,
};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::echo;
use crate::helpers::{http, next_text, polling_handshake, spawn_echo, spawn_engine_echo, Ws};

async fn websocket(port: u16, sid: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let url = format!("ws://127.0.0.1:{port}/engine.io/?EIO=4&transport=websocket&sid={sid}");
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(ws, _)| ws)
}

/// A WebSocket for the polling session `sid`, probed: `2probe` → `3probe` (the upgrade is not
/// complete until the client sends `5`).
async fn probed(port: u16, sid: &str) -> Ws {
    let mut ws = websocket(port, sid).await.unwrap();
    ws.send(WsMessage::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws
}

/// Opens a polling session and upgrades it: `2probe` → `3probe`, then `5`.
async fn upgraded_session(port: u16) -> (String, Ws) {
    let sid = polling_handshake(port, "/engine.io/").await;
    let mut ws = probed(port, &sid).await;
    ws.send(WsMessage::text("5")).await.unwrap();
    (sid, ws)
}

#[tokio::test]
async fn a_second_websocket_for_an_upgraded_session_is_accepted_then_closed() {
    // Arrange: an upgraded session, shown complete by an echo over the WebSocket
    let server = spawn_engine_echo(None).await;
    let (sid, mut first) = upgraded_session(server.port).await;
    first.send(WsMessage::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut first).await, "4hello");

    // Act: another WebSocket with the same sid
    let second = websocket(server.port, &sid).await;

    // Assert: its handshake completes (a 400 is an error event in WebSocket clients), then it is
    // closed with 1002; the first one carries on
    let mut second = second.expect("the second WebSocket's handshake should complete");
    let closing = tokio::time::timeout(Duration::from_secs(60), second.next())
        .await
        .expect("a close frame within 5 s");
    match closing {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Protocol),
        other => panic!("expected a close frame, got {other:?}"),
    }
    first.send(WsMessage::text("4again")).await.unwrap();
    assert_eq!(next_text(&mut first).await, "4again");
    server.stop().await;
}

#[tokio::test]
async fn the_poll_after_the_clients_close_gets_a_noop_then_the_session_is_gone() {
    // Arrange
    let server = spawn_engine_echo(None).await;
    let sid = polling_handshake(server.port, "/engine.io/").await;
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");

    // Act: the client's close, answered, and only then its poll (no GET pending at the close)
    let closed = http(server.port, "POST", &path, &[], "1").await;
    let poll = http(server.port, "GET", &path, &[], "").await;
    let after = http(server.port, "GET", &path, &[], "").await;

    // Assert: as the reference server, the poll gets a noop, and the session is then forgotten
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert_eq!((poll.status, poll.body.as_str()), (200, "6"));
    assert_eq!(after.status, 400, "{}", after.body);
    server.stop().await;
}

#[tokio::test]
async fn a_poll_sent_after_the_probe_gets_a_noop_and_nothing_leaks_into_the_websocket() {
    // Arrange: a probed upgrade, no poll pending
    let server = spawn_engine_echo(None).await;
    let sid = polling_handshake(server.port, "/engine.io/").await;
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let mut ws = probed(server.port, &sid).await;

    // Act: a poll (the client expects it to end with a noop), then the upgrade completes
    let poll = http(server.port, "GET", &path, &[], "").await;
    ws.send(WsMessage::text("5")).await.unwrap();
    ws.send(WsMessage::text("4hello")).await.unwrap();
    let first_on_websocket = next_text(&mut ws).await;
    let after = http(server.port, "GET", &path, &[], "").await;

    // Assert: the first frame on the WebSocket is the echo, not a stray noop
    assert_eq!((poll.status, poll.body.as_str()), (200, "6"));
    assert_eq!(first_on_websocket, "4hello");
    assert_eq!(after.status, 400, "{}", after.body);
    server.stop().await;
}

#[tokio::test]
async fn what_polling_left_queued_comes_first_on_the_websocket_then_what_was_sent_after() {
    // Arrange: two echoes queued while polling, with no poll to take them
    let server = spawn_engine_echo(None).await;
    let sid = polling_handshake(server.port, "/engine.io/").await;
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let posted = http(server.port, "POST", &path, &[], "4a\u{1e}4b").await;
    assert_eq!(posted.status, 200);
    let mut ws = probed(server.port, &sid).await;

    // Act: the upgrade and a third message in one write, so the server reads the message
    // before it wrote the queued echoes, and its echo could be written before them
    ws.feed(WsMessage::text("5")).await.unwrap();
    ws.feed(WsMessage::text("4c")).await.unwrap();
    ws.flush().await.unwrap();

    // Assert: the queued echoes first, in order, then the new one
    assert_eq!(next_text(&mut ws).await, "4a");
    assert_eq!(next_text(&mut ws).await, "4b");
    assert_eq!(next_text(&mut ws).await, "4c");
    server.stop().await;
}

/// The stalling server's heartbeat: a session that never answers is over 1 s after it opened.
const PING_INTERVAL: Duration = Duration::from_millis(600);
const PING_TIMEOUT: Duration = Duration::from_millis(400);

/// How long the stalling server's only thread is blocked: well past the heartbeat's deadline,
/// so its timer fires late.
const STALL: Duration = Duration::from_millis(1500);

/// Blocks its runtime's thread for [`STALL`] on the message `stall`, saying so first: a server
/// too busy to fire its timers on time.
struct Stall {
    began: Arc<Notify>,
}

impl EngineHandler for Stall {
    async fn on_open(&self, _socket: &EngineSocket) {}

    async fn on_message(&self, _socket: &EngineSocket, message: Message) {
        if matches!(&message, Message::Text(text) if text == "stall") {
            self.began.notify_one();
            std::thread::sleep(STALL);
        }
    }

    async fn on_close(&self, _socket: &EngineSocket, _reason: CloseReason) {}
}

/// A raw Engine.IO server alone on a thread of its own with a single-threaded runtime, so that
/// [`Stall`] holds its timers too.
struct StallingServer {
    port: u16,
    stall_began: Arc<Notify>,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl StallingServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stall_began = Arc::new(Notify::new());
        let handler = Arc::new(Stall {
            began: stall_began.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let config = EngineConfig {
                    ping_interval: PING_INTERVAL,
                    ping_timeout: PING_TIMEOUT,
                    ..echo::engine_config("/engine.io/")
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                let hooks = Hooks::default();
                let serve = engineio::serve(listener, config, handler, hooks, shutdown);
                serve.await.unwrap();
            });
        });
        Self {
            port,
            stall_began,
            stop,
            thread,
        }
    }

    /// Opens a polling session and stalls the server with a message, then sends `method` with
    /// `body` for the session during the stall. Returns the stall's status and the request's.
    async fn after_a_stall(&self, method: &str, body: &str) -> (u16, u16) {
        let sid = polling_handshake(self.port, "/engine.io/").await;
        let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
        let (port, stalling) = (self.port, path.clone());
        let stall = tokio::spawn(async move { http(port, "POST", &stalling, &[], "4stall").await });
        // Sent once the server is stalled: handled after the stall, past the deadline.
        self.stall_began.notified().await;
        let request = http(self.port, method, &path, &[], body).await;
        let stall = stall.await.unwrap();
        (stall.status, request.status)
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }
}

#[tokio::test]
async fn a_poll_after_the_heartbeat_deadline_gets_400_though_the_timer_fired_late() {
    // Arrange: a silent polling session on a server stalled past its ping's deadline
    let server = StallingServer::start();

    // Act: a poll sent during the stall (as the suite's ping-timeout case polls just after it)
    let (stall, poll) = server.after_a_stall("GET", "").await;

    // Assert: the session is over (not a late ping answered with 200 "2")
    assert_eq!(stall, 200);
    assert_eq!(poll, 400);
    server.stop();
}

#[tokio::test]
async fn a_pong_after_the_heartbeat_deadline_gets_400_though_the_timer_fired_late() {
    // Arrange
    let server = StallingServer::start();

    // Act: a pong sent during the stall, handled after the deadline
    let (stall, pong) = server.after_a_stall("POST", "3").await;

    // Assert: too late to keep the session
    assert_eq!(stall, 200);
    assert_eq!(pong, 400);
    server.stop();
}

#[tokio::test]
async fn three_slow_heartbeat_rounds_on_the_socket_io_path_end_before_the_connect_timeout() {
    // Arrange: the echo's Socket.IO endpoint, a polling session that joins no namespace (the
    // official suite's ping/pong case, whose three rounds take 900 ms plus six round trips)
    let server = spawn_echo().await;
    let sid = polling_handshake(server.port, "/socket.io/").await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let slow_client = Duration::from_millis(40);

    // Act: each ping polled and answered by a client that takes 40 ms per step
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let ping = http(server.port, "GET", &path, &[], "").await;
        tokio::time::sleep(slow_client).await;
        let pong = http(server.port, "POST", &path, &[], "3").await;
        tokio::time::sleep(slow_client).await;
        rounds.push((ping.status, ping.body, pong.status));
    }

    // Assert: the connect timeout leaves room for all three
    let expected = (200, "2".to_owned(), 200);
    assert_eq!(rounds, vec![expected.clone(), expected.clone(), expected]);
    server.stop().await;
}
