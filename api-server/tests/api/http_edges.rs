//! The API's connections at the edges: a client that announces a body and does not send it
//! whole gets 408 `request_timeout` once `api.body_timeout_ms` has passed, instead of holding the
//! connection (over 60 s before); an idle keep-alive connection lives `api.keep_alive_secs`.

use crate::helpers::spawn_app_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_408_request_timeout() {
    // Arrange: a short deadline; raw TCP, as no HTTP client sends a short body on purpose
    let app = spawn_app_with(|settings| settings.api.body_timeout_ms = 300).await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connecting");

    // Act: 100 bytes announced, 12 sent
    stream
        .write_all(
            b"POST /api/auth/register HTTP/1.1\r\nHost: parley\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !String::from_utf8_lossy(&answer).contains("request_timeout") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("no answer within 30 s: the connection is still held");

    // Assert
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":{"code":"request_timeout""#),
        "{answer}"
    );
}

#[tokio::test]
async fn a_multipart_upload_shorter_than_its_content_length_gets_408_request_timeout() {
    // Arrange: an upload deadline of 1 s; a form of 1 000 bytes announced, its first part sent
    let app = spawn_app_with(|settings| settings.attachments.upload_timeout_secs = 1).await;
    let (token, _) = app.register("alice").await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connecting");
    let head = format!(
        "POST /api/attachments HTTP/1.1\r\nHost: parley\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 1000\r\n\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n\
         the first bytes"
    );

    // Act
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream).await;

    // Assert
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_idle_connection_stays_open_for_api_keep_alive_secs() {
    // Arrange: a keep-alive far above actix's own default of 5 s, as behind a balancer that
    // keeps idle connections 60 s
    let app = spawn_app_with(|settings| settings.api.keep_alive_secs = 600).await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connecting");
    let request = b"GET /health HTTP/1.1\r\nHost: parley\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let first = read_answer(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // Act: idle past the default, then a second request on the same connection. The wait is
    // the behaviour under test (a connection that stays idle), not a synchronisation.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    stream.write_all(request).await.unwrap();
    let second = read_answer(&mut stream).await;

    // Assert
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "the API closed the idle connection: {second:?}"
    );
}

/// One answer's head and body as far as read until the body of `/health` ends (or the
/// connection closes), at most 30 s.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !answer.ends_with(b"}") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("no answer within 30 s");
    String::from_utf8_lossy(&answer).into_owned()
}
