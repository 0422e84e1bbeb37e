//! Graceful shutdown: sessions are closed cleanly and `serve` returns promptly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use socket_server::engineio::{self, CloseReason, EngineConfig, Hooks};
use socket_server::socketio::{
    Ack, ConnectError, DisconnectReason, NamespaceHandler, Payload, Socket, SocketIo,
    SocketIoConfig,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::helpers::{http, polling_handshake, spawn_with};

/// Reports each socket's disconnect reason.
struct Recorder(mpsc::UnboundedSender<DisconnectReason>);

#[async_trait]
impl NamespaceHandler for Recorder {
    async fn on_connect(&self, _socket: &Socket, _auth: &Value) -> Result<(), ConnectError> {
        Ok(())
    }

    async fn on_event(&self, _socket: &Socket, _event: &str, _payload: Payload, _ack: Option<Ack>) {
    }

    async fn on_disconnect(&self, _socket: &Socket, reason: DisconnectReason) {
        let _ = self.0.send(reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_pending_polls_disconnects_sockets_and_returns_promptly() {
    // Arrange: a long ping interval, so that only the shutdown answers the pending poll
    let (tx, mut reasons) = mpsc::unbounded_channel();
    let config = EngineConfig {
        ping_interval: Duration::from_secs(25),
        shutdown_timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    };
    let io = SocketIo::new(SocketIoConfig::default()).namespace("/", Recorder(tx));
    let server = spawn_with(move |listener, stopped| {
        engineio::serve(listener, config, Arc::new(io), Hooks::default(), async {
            let _ = stopped.await;
        })
    })
    .await;
    let port = server.port;
    let sid = polling_handshake(port, "/socket.io/").await;
    let session = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(port, "POST", &session, &[], "40").await.status, 200);
    let connected = http(port, "GET", &session, &[], "").await;
    assert!(connected.body.starts_with("40{"), "{}", connected.body);
    let pending = tokio::spawn({
        let session = session.clone();
        async move { http(port, "GET", &session, &[], "").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act
    let took = server.stop().await;

    // Assert
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    let last = pending.await.unwrap();
    assert_eq!((last.status, last.body.as_str()), (200, "1"));
    let reason = tokio::time::timeout(Duration::from_secs(1), reasons.recv())
        .await
        .expect("on_disconnect was not called")
        .unwrap();
    assert_eq!(
        reason,
        DisconnectReason::Closed(CloseReason::ServerShutdown)
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the listener should be closed"
    );
}
