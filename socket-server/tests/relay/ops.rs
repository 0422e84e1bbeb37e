//! `/health` and `/metrics` on the relay's port.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::device::{Device, PATIENCE};
use crate::helpers::{spawn_stack, REDIS_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_on_the_relay_port() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let _device = Device::connect(&stack, 0, &alice).await;

    // Act
    let health = stack
        .http
        .get(format!("{}/health", stack.relay_url(0)))
        .send()
        .await
        .unwrap();
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.relay_url(0)))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(health.status(), 200);
    let health = health.json::<serde_json::Value>().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["api"], "ok",
        "the API answered the connect: {health}"
    );
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("relay_api_up 1"), "{text}");
    assert!(text.contains("relay_sockets 1"), "{text}");
    assert!(text.contains("relay_users 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_include_the_standard_process_metrics_with_plausible_values() {
    // Arrange
    let stack = spawn_stack(1).await;

    // Act
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.relay_url(0)))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(metrics.status(), 200);
    test_support::metrics::assert_process_metrics(&metrics.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_request_id_given_or_a_new_one() {
    // Arrange
    let stack = spawn_stack(1).await;
    let url = stack.relay_url(0);

    // Act
    let given = stack
        .http
        .get(format!("{url}/health"))
        .header("x-request-id", "edge-1234")
        .send()
        .await
        .unwrap();
    let handshake = stack
        .http
        .get(format!("{url}/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(given.headers()["x-request-id"], "edge-1234");
    assert_eq!(handshake.status(), 200);
    let id = handshake.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

/// A relay process, killed on drop.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A relay binary for `api_url`, logging JSON at INFO, and the lines it logs; `more` adds to
/// its environment.
fn relay_for(api_url: &str, more: &[(&str, &str)]) -> (Relay, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .envs([
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("API_URL", api_url),
            ("REDIS_URL", REDIS_URL),
            ("SOCKET_HOST", "127.0.0.1"),
            ("SOCKET_PORT", "0"),
            (
                "PARLEY__REDIS__PREFIX",
                &format!("parley-test-{}", uuid::Uuid::new_v4()),
            ),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ])
        .envs(more.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the socket-server binary");
    let stderr = child.stderr.take().unwrap();
    let (lines, logged) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    (Relay(child), logged)
}

/// Read the relay's log until it listens and has said what it found of the API: its `/health`
/// URL and that line.
fn listening_and_api_check(logged: &mpsc::Receiver<String>) -> (String, serde_json::Value) {
    let (mut port, mut said) = (None, None);
    while port.is_none() || said.is_none() {
        let line = logged
            .recv_timeout(Duration::from_secs(60))
            .expect("the relay logged neither its port nor the API check within 60 s");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        match json["fields"]["message"].as_str() {
            Some("socket-server listening") => port = json["fields"]["port"].as_u64(),
            Some(m) if m.contains("the API") => said = Some(json),
            _ => {}
        }
    }
    let health_url = format!("http://127.0.0.1:{}/health", port.unwrap());
    (health_url, said.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_api_does_not_answer_says_so_at_start_and_in_health_until_it_does() {
    // Arrange: an API URL nobody listens on
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let (_relay, logged) = relay_for(&format!("http://127.0.0.1:{nobody}"), &[]);

    // Act
    let (health_url, said) = listening_and_api_check(&logged);
    let health = reqwest::get(&health_url).await.unwrap();

    // Assert: an error line naming the URL; /health 200 (it relays live) saying so
    assert_eq!(said["level"], "ERROR", "{said}");
    assert!(
        said["fields"]["api_url"]
            .as_str()
            .unwrap_or_default()
            .contains(&nobody.to_string()),
        "{said}"
    );
    assert_eq!(health.status(), 200);
    let health = health.json::<serde_json::Value>().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["api"], "unreachable", "{health}");

    // Then an API answers on that port: the idle relay finds it by itself
    let api = std::net::TcpListener::bind(("127.0.0.1", nobody)).expect("the API's port again");
    std::thread::spawn(move || answer(&api, HEALTHY));
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let health = health_of(&health_url).await;
        if health["api"] == "ok" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay still reports {health} {PATIENCE:?} after the API answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_api_url_is_not_the_apis_base_url_says_the_api_is_unreachable() {
    // Arrange: something that answers 404 at that URL (a path prefix, another service)
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api", other.local_addr().unwrap());
    std::thread::spawn(move || answer(&other, NOT_FOUND));
    let (_relay, logged) = relay_for(&url, &[]);

    // Act
    let (health_url, said) = listening_and_api_check(&logged);
    let health = health_of(&health_url).await;
    let metrics = reqwest::get(health_url.replace("/health", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert: not "ok", which every user refused `service_unavailable` would contradict
    assert_eq!(said["level"], "ERROR", "{said}");
    assert_eq!(health["api"], "unreachable", "{health}");
    assert!(metrics.contains("relay_api_up 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_another_jwt_secret_than_its_apis_says_so_at_start_and_in_health() {
    // Arrange: a real API, and a relay given another secret than the API's
    let stack = spawn_stack(0).await;
    let (_relay, logged) = relay_for(&stack.api_url, &[]);

    // Act
    let (health_url, said) = listening_and_api_check(&logged);
    let health = health_of(&health_url).await;

    // Assert
    assert_eq!(said["level"], "ERROR", "{said}");
    assert!(
        said["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("JWT_SECRET")),
        "{said}"
    );
    assert_eq!(health["api"], "unreachable", "{health}");
}

/// The relay's `/health` answer.
#[test]
fn a_misspelt_setting_is_named_at_start_in_a_warning_with_the_setting_it_resembles() {
    // Arrange: `ttl_sec` for `ttl_secs`
    let (_relay, logged) = relay_for("http://127.0.0.1:9", &[("PARLEY__PRESENCE__TTL_SEC", "5")]);

    // Act: what it logs until it listens
    let mut warned = Vec::new();
    loop {
        let line = logged
            .recv_timeout(Duration::from_secs(60))
            .expect("the relay did not log that it listens within 60 s");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if json["fields"]["message"] == "socket-server listening" {
            break;
        }
        if json["fields"]["setting"].is_string() {
            warned.push(json);
        }
    }

    // Assert
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["level"], "WARN", "{}", warned[0]);
    assert_eq!(warned[0]["fields"]["setting"], "presence.ttl_sec");
    assert_eq!(warned[0]["fields"]["suggestion"], "presence.ttl_secs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_drops_the_websocket_upgrade_is_named_in_a_warning() {
    // Arrange: a relay, and a long-polling session on it
    let (_relay, logged) = relay_for("http://127.0.0.1:9", &[]);
    let (health_url, _) = listening_and_api_check(&logged);
    let engine_io = health_url.replace("/health", "/socket.io/?EIO=4");
    let open = reqwest::get(format!("{engine_io}&transport=polling"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();

    // Act: the session's upgrade as a proxy that drops `Upgrade` and `Connection` forwards it
    let reply = reqwest::get(format!("{engine_io}&transport=websocket&sid={sid}"))
        .await
        .unwrap();

    // Assert
    assert_eq!(reply.status(), 400);
    let warned = loop {
        let line = logged
            .recv_timeout(Duration::from_secs(60))
            .expect("the relay did not warn within 60 s");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let message = json["fields"]["message"].as_str().unwrap_or_default();
        if message.contains("drops the upgrade headers") {
            break json;
        }
    };
    assert_eq!(warned["level"], "WARN", "{warned}");
    assert!(
        warned["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("proxy_set_header Upgrade")),
        "{warned}"
    );
    assert_eq!(warned["fields"]["dropped_since_last_said"], 1, "{warned}");
}

async fn health_of(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// `200 {"status":"ok"}`, as the API's `/health` answers.
const HEALTHY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
    content-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}";
/// A 404 that is not the API's.
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\n\
    content-length: 9\r\nconnection: close\r\n\r\nnot found";

/// Answer every request on `listener` with `answer`.
fn answer(listener: &std::net::TcpListener, answer: &[u8]) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(answer);
    }
}
