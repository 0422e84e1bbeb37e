//! HTTP edges of the relay's endpoint: oversized requests answered in the error shape, and the
//! close code of a WebSocket text frame that is not UTF-8.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{http, spawn_echo};

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
async fn a_websocket_text_frame_that_is_not_utf8_closes_with_1007() {
    // Arrange: a WebSocket session by hand (no client library sends invalid UTF-8)
    let server = spawn_echo().await;
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let request = "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                   Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();

    // Act: a masked text frame "4\xff\xfe" (mask of zeros)
    stream
        .write_all(&[0x81, 0x83, 0, 0, 0, 0, b'4', 0xff, 0xfe])
        .await
        .unwrap();

    // Assert: the server's close frame carries 1007 (0x03ef)
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen
                .windows(4)
                .any(|w| w == [0x88, w[1], 0x03, 0xef] && w[1] >= 2)
            {
                return true;
            }
        }
    })
    .await
    .expect("the server should close within 5 s");
    assert!(found, "no close frame with 1007 in {seen:?}");
    server.stop().await;
}
