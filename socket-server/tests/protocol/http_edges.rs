//! HTTP edges of the relay's endpoint: oversized requests answered in the error shape, a polling
//! POST whose body stops arriving (answered and closed with its session), the close code of a
//! WebSocket text frame that is not UTF-8, and frames sent in the same write as the upgrade
//! request (answered, and a bad one reported after the good ones, however long their handling
//! takes).

use std::sync::Arc;
use std::time::Duration;

use socket_server::engineio::{
    self, CloseReason, EngineConfig, EngineHandler, EngineSocket, Hooks, Message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::echo;
use crate::helpers::{http, polling_handshake, spawn_echo, spawn_with};

#[tokio::test]
async fn a_request_target_past_the_limit_gets_414_in_the_error_shape() {
    let server = spawn_echo().await;
    let path = format!(
        "/socket.io/?EIO=4&transport=polling&pad={}",
        "a".repeat(10_000)
    );

    let response = http(server.port, "GET", &path, &[], "").await;

    assert_eq!(response.status, 414);
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"]["code"], "uri_too_long");
    server.stop().await;
}

#[tokio::test]
async fn a_request_with_too_many_headers_gets_431_in_the_error_shape() {
    let server = spawn_echo().await;
    let names: Vec<String> = (0..500).map(|i| format!("X-Filler-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();

    let response = http(
        server.port,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &headers,
        "",
    )
    .await;

    assert_eq!(response.status, 431);
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"]["code"], "too_many_headers");
    server.stop().await;
}

#[tokio::test]
async fn a_request_target_past_the_parsers_limit_is_refused_by_hyper_with_an_empty_414() {
    // Documents what a client sees when hyper refuses the request before our code runs.
    let server = spawn_echo().await;
    let path = format!("/socket.io/?pad={}", "a".repeat(100_000));

    let response = http(server.port, "GET", &path, &[], "").await;

    assert_eq!(response.status, 414);
    assert_eq!(response.body, "");
    server.stop().await;
}

#[tokio::test]
async fn a_polling_post_whose_body_stops_arriving_is_answered_and_closed_with_its_session() {
    // Arrange: a polling session of the echo (a ping every 300 ms, 200 ms to answer it)
    let server = spawn_echo().await;
    let sid = polling_handshake(server.port, "/engine.io/").await;
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();

    // Act: a POST that declares 100 000 bytes and sends one (its client cannot pong meanwhile)
    let request = format!(
        "POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 100000\r\n\r\n4"
    );
    stream.write_all(request.as_bytes()).await.unwrap();

    // Assert: once the heartbeat closes the session, an answer, then the connection closes
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut seen))
        .await
        .expect("the stalled POST should end with its session, not hold its connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    server.stop().await;
}

/// Upgrades a raw TCP connection on the echo's `/engine.io/` endpoint and sends `frames` (masked
/// client frames) after the upgrade request: with it in one write, so that the server's HTTP
/// parser reads them along with the request, or in a write of their own.
async fn upgrade_and_send(port: u16, frames: &[u8], one_write: bool) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                   Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if one_write {
        stream
            .write_all(&[request.as_bytes(), frames].concat())
            .await
            .unwrap();
    } else {
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(frames).await.unwrap();
    }
    stream
}

/// Reads from `stream` until what it sent so far passes `seen_enough`; `false` if the server
/// closed the connection first.
async fn read_until(stream: &mut TcpStream, seen_enough: impl Fn(&[u8]) -> bool) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen_enough(&seen) {
                return true;
            }
        }
    })
    .await
    .expect("the server should answer within 60 s")
}

/// A masked text frame "4\xff\xfe" (mask of zeros): not UTF-8.
const NOT_UTF8: [u8; 9] = [0x81, 0x83, 0, 0, 0, 0, b'4', 0xff, 0xfe];

/// Sends [`NOT_UTF8`] after a WebSocket upgrade (no client library sends invalid UTF-8), in the
/// request's own write or not, and asserts the server's close frame carries 1007 (0x03ef).
async fn a_frame_that_is_not_utf8_closes_with_1007(one_write: bool) {
    // Arrange
    let server = spawn_echo().await;

    // Act
    let mut stream = upgrade_and_send(server.port, &NOT_UTF8, one_write).await;

    // Assert
    let closed_with_1007 = |seen: &[u8]| {
        seen.windows(4)
            .any(|w| w == [0x88, w[1], 0x03, 0xef] && w[1] >= 2)
    };
    assert!(
        read_until(&mut stream, closed_with_1007).await,
        "no close frame with 1007"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_text_frame_that_is_not_utf8_closes_with_1007() {
    a_frame_that_is_not_utf8_closes_with_1007(false).await;
}

#[tokio::test]
async fn a_frame_that_is_not_utf8_in_the_upgrade_requests_write_closes_with_1007_too() {
    // The frame comes in the same write as the request: the HTTP parser reads it.
    a_frame_that_is_not_utf8_closes_with_1007(true).await;
}

#[tokio::test]
async fn a_message_in_the_upgrade_requests_write_is_answered() {
    // Arrange
    let server = spawn_echo().await;

    // Act
    let mut stream = upgrade_and_send(server.port, &masked_text(b"4hello"), true).await;

    // Assert: the echo sends it back (unmasked)
    let echoed = [0x81, 6, b'4', b'h', b'e', b'l', b'l', b'o'];
    assert!(
        read_until(&mut stream, |seen| seen.windows(8).any(|w| w == echoed)).await,
        "the message was not echoed"
    );
    server.stop().await;
}

/// A client's text frame of `payload` (under 126 bytes), masked with 0x01020304.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The raw Engine.IO echo whose handling of each message first gives the runtime a few turns,
/// as a handler awaiting I/O does: the connection is polled several times while it is pending.
struct YieldingEcho;

impl EngineHandler for YieldingEcho {
    async fn on_open(&self, _socket: &EngineSocket) {}

    async fn on_message(&self, socket: &EngineSocket, message: Message) {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        echo::EngineEcho.on_message(socket, message).await;
    }

    async fn on_close(&self, _socket: &EngineSocket, _reason: CloseReason) {}
}

#[tokio::test]
async fn a_bad_frame_after_a_good_one_in_the_upgrade_requests_write_closes_once_it_is_handled() {
    // Arrange: handling takes a turn, so the connection is polled while it is under way
    let config: EngineConfig = echo::engine_config("/engine.io/");
    let server = spawn_with(move |listener, stopped| {
        engineio::serve(
            listener,
            config,
            Arc::new(YieldingEcho),
            Hooks::default(),
            async {
                let _ = stopped.await;
            },
        )
    })
    .await;

    // Act: "4hi", then a text frame that is not UTF-8, both read with the request
    let frames = [&masked_text(b"4hi")[..], &NOT_UTF8[..]].concat();
    let mut stream = upgrade_and_send(server.port, &frames, true).await;

    // Assert: the good one answered, then the close for the bad one
    let echoed_then_1007 = |seen: &[u8]| {
        let echoed = seen.windows(4).position(|w| w == [0x81, 3, b'4', b'h']);
        echoed.is_some_and(|at| {
            seen[at..]
                .windows(4)
                .any(|w| w == [0x88, w[1], 0x03, 0xef] && w[1] >= 2)
        })
    };
    assert!(
        read_until(&mut stream, echoed_then_1007).await,
        "no echo followed by a close frame with 1007"
    );
    server.stop().await;
}
