//! The request gate, the Origin allowlist, the fallback, and the slow-consumer limit.

use std::sync::Arc;
use std::time::Duration;

use socket_server::engineio::{
    self, CloseReason, EngineConfig, EngineHandler, EngineSocket, FallbackFuture, Hooks, Message,
    Refusal, RequestInfo,
};
use tokio::sync::mpsc;

use crate::echo;
use crate::helpers::{http, polling_handshake, spawn_with, TestServer};

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

async fn spawn_socketio(config: EngineConfig, hooks: Hooks) -> TestServer {
    spawn_with(move |listener, stopped| {
        engineio::serve(listener, config, Arc::new(echo::socketio()), hooks, async {
            let _ = stopped.await;
        })
    })
    .await
}

#[tokio::test]
async fn an_origin_allowlist_refuses_other_origins_answers_cors_for_listed_ones_and_admits_no_origin(
) {
    // Arrange
    let config = EngineConfig {
        allowed_origins: shared::net::AllowedOrigins::parse(&["https://app.example"])
            .expect("an origin"),
        ..echo::engine_config("/socket.io/")
    };
    let server = spawn_socketio(config, Hooks::default()).await;

    // Act
    let evil = http(
        server.port,
        "GET",
        HANDSHAKE,
        &[("Origin", "https://evil.example")],
        "",
    )
    .await;
    let missing = http(server.port, "GET", HANDSHAKE, &[], "").await;
    let good = http(
        server.port,
        "GET",
        HANDSHAKE,
        &[("Origin", "https://app.example")],
        "",
    )
    .await;

    // Assert
    assert_eq!(evil.status, 403);
    assert_eq!(evil.body, r#"{"code":4,"message":"Forbidden"}"#);
    assert_eq!(
        missing.status, 200,
        "a client without Origin is not a browser: never refused for it"
    );
    assert_eq!(good.status, 200);
    assert!(good.body.starts_with("0{"), "{}", good.body);
    assert!(
        good.headers
            .contains("access-control-allow-origin: https://app.example"),
        "{}",
        good.headers
    );
    server.stop().await;
}

#[tokio::test]
async fn the_request_gate_can_refuse_a_handshake_before_a_session_exists() {
    let hooks = Hooks::default().with_gate(|request: &RequestInfo| {
        if request.header("x-flood").is_some() {
            Err(Refusal::too_many_requests())
        } else {
            Ok(())
        }
    });
    let server = spawn_socketio(echo::engine_config("/socket.io/"), hooks).await;

    let refused = http(server.port, "GET", HANDSHAKE, &[("X-Flood", "1")], "").await;
    let accepted = http(server.port, "GET", HANDSHAKE, &[], "").await;

    assert_eq!(refused.status, 429);
    assert_eq!(refused.body, r#"{"code":4,"message":"Too many requests"}"#);
    assert_eq!(accepted.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn requests_outside_the_engine_path_go_to_the_fallback() {
    let hooks =
        Hooks::default().with_fallback(|request: hyper::Request<_>, _addr| -> FallbackFuture {
            let path = request.uri().path().to_owned();
            Box::pin(async move {
                let status = if path == "/health" { 200 } else { 404 };
                hyper::Response::builder()
                    .status(status)
                    .body(engineio::Body::from("ok"))
                    .unwrap()
            })
        });
    let server = spawn_socketio(echo::engine_config("/socket.io/"), hooks).await;

    let health = http(server.port, "GET", "/health", &[], "").await;
    let other = http(server.port, "GET", "/metrics-nope", &[], "").await;

    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(other.status, 404);
    server.stop().await;
}

/// Answers any message with `.1` messages, and reports how sessions close.
struct Flood(mpsc::UnboundedSender<CloseReason>, usize);

impl EngineHandler for Flood {
    async fn on_open(&self, _socket: &EngineSocket) {}

    async fn on_message(&self, socket: &EngineSocket, _message: Message) {
        for i in 0..self.1 {
            if socket.send_text(&format!("flood {i}")).is_err() {
                break;
            }
        }
    }

    async fn on_close(&self, _socket: &EngineSocket, reason: CloseReason) {
        let _ = self.0.send(reason);
    }
}

/// A server whose outbox holds 4 frames and which answers any message with `flood` of them, and
/// a polling session on it: the server, the session's URL, and how its sessions close.
async fn flooding_polling_session(
    flood: usize,
) -> (TestServer, String, mpsc::UnboundedReceiver<CloseReason>) {
    let (tx, reasons) = mpsc::unbounded_channel();
    let config = EngineConfig {
        outbox_capacity: 4,
        ..echo::engine_config("/engine.io/")
    };
    let server = spawn_with(move |listener, stopped| {
        engineio::serve(
            listener,
            config,
            Arc::new(Flood(tx, flood)),
            Hooks::default(),
            async {
                let _ = stopped.await;
            },
        )
    })
    .await;
    let sid = polling_handshake(server.port, "/engine.io/").await;
    let session = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    (server, session, reasons)
}

#[tokio::test]
async fn a_polling_client_takes_a_burst_of_four_outboxes_in_its_next_poll() {
    // Arrange: an outbox of 4 frames
    let (server, session, mut reasons) = flooding_polling_session(16).await;

    // Act: sixteen frames queued at once, faster than any poll can drain them
    let posted = http(server.port, "POST", &session, &[], "4go").await;
    let polled = http(server.port, "GET", &session, &[], "").await;

    // Assert: all of them in the poll, the session open
    assert_eq!(posted.status, 200);
    assert_eq!(polled.status, 200);
    let frames: Vec<&str> = polled.body.split('\x1e').collect();
    assert_eq!(frames.len(), 16, "{}", polled.body);
    assert_eq!((frames[0], frames[15]), ("4flood 0", "4flood 15"));
    assert!(reasons.try_recv().is_err(), "the session was closed");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_as_a_slow_consumer() {
    // Arrange: an outbox of 4 frames (16 for a polling session, drained once per poll)
    let (server, session, mut reasons) = flooding_polling_session(100).await;

    // Act: one message makes the server queue a hundred frames without a poll to drain them
    let posted = http(server.port, "POST", &session, &[], "4go").await;

    // Assert
    assert_eq!(posted.status, 200);
    let reason = tokio::time::timeout(Duration::from_secs(60), reasons.recv())
        .await
        .expect("the session was not closed")
        .unwrap();
    assert_eq!(reason, CloseReason::SlowConsumer);
    assert_eq!(
        http(server.port, "GET", &session, &[], "").await.status,
        400
    );
    server.stop().await;
}
