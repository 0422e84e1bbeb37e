//! The protocol echo server, shared by the `protocol_echo` binary and socket-server's protocol
//! tests (which include this file with `#[path]`).
//!
//! Like the Socket.IO reference test server: pingInterval 300 ms, pingTimeout 200 ms, maxPayload
//! 1 000 000; connectTimeout [`CONNECT_TIMEOUT`] (1000 ms there).
//! - `/socket.io/`, namespaces `/` and `/custom`: on connect, emits `auth` with the CONNECT
//!   payload, [`AUTH_DELAY`] after the CONNECT answer and before answering any event;
//!   `message` → `message-back` with the same arguments (binary included);
//!   `message-with-ack` is acknowledged with its arguments. Extras for our tests:
//!   `request-ack` makes the server emit `ack-request` with an ack and report the client's answer
//!   as `ack-result`; `disconnect-me` disconnects the socket from the namespace.
//! - `/refuse`: every connection is refused with `{"message":"refused","data":{"reason":"test"}}`.
//! - `/engine.io/`: raw Engine.IO echo, every message (text or binary) sent back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use socket_server::engineio::{
    self, Endpoint, EngineConfig, EngineHandler, EngineSocket, FallbackFuture, Hooks, Message,
};
use socket_server::socketio::{
    Ack, ConnectError, NamespaceHandler, Payload, Socket, SocketIo, SocketIoConfig,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long after the CONNECT answer the echo emits `auth`. The official Socket.IO suite adds a
/// listener for each packet only once it awaits it, and `ws` emits every message of one read
/// before that: an `auth` read together with the CONNECT answer is lost to it
/// (socketio/socket.io-protocol#32). The reference server writes the two a tick apart, too close
/// for a busy client (it failed some of the suite's connect cases in each of 5 runs on a loaded
/// 2-core machine); this pause lets the client read the CONNECT answer alone, and is short
/// against the 200 ms the suite leaves after a ping. Real clients take both from one read.
pub const AUTH_DELAY: Duration = Duration::from_millis(50);

/// How long a connection may go without joining a namespace. The reference server's 1000 ms leave
/// the official suite's polling ping/pong case (three heartbeat rounds on `/socket.io/`, 900 ms and
/// six round trips, no namespace joined) 100 ms of slack, which a loaded machine runs out of. The
/// suite's case of a client that never joins is closed by the ping timeout first either way.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

pub fn engine_config(path: &str) -> EngineConfig {
    EngineConfig {
        path: path.into(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        shutdown_timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    }
}

pub fn socketio() -> SocketIo {
    let config = SocketIoConfig {
        connect_timeout: CONNECT_TIMEOUT,
        ..SocketIoConfig::default()
    };
    SocketIo::new(config)
        .namespace("/", Echo)
        .namespace("/custom", Echo)
        .namespace("/refuse", Refuse)
}

/// Serves both endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let raw = Endpoint::new(
        engine_config("/engine.io/"),
        Arc::new(EngineEcho),
        Hooks::default(),
    );
    let mounted = raw.clone();
    let hooks = Hooks::default().with_fallback(move |request, remote_addr| -> FallbackFuture {
        Box::pin(mounted.handle(request, remote_addr))
    });
    let main = Endpoint::new(engine_config("/socket.io/"), Arc::new(socketio()), hooks);
    engineio::serve_endpoint(listener, main, async move {
        shutdown.await;
        tokio::spawn(async move { raw.shutdown().await });
    })
    .await
}

/// Raw Engine.IO echo.
pub struct EngineEcho;

impl EngineHandler for EngineEcho {
    async fn on_open(&self, _socket: &EngineSocket) {}

    async fn on_message(&self, socket: &EngineSocket, message: Message) {
        let _ = match message {
            Message::Text(text) => socket.send_text(&text),
            Message::Binary(data) => socket.send_binary(data),
        };
    }

    async fn on_close(&self, _socket: &EngineSocket, _reason: engineio::CloseReason) {}
}

/// Socket.IO echo for `/` and `/custom`.
pub struct Echo;

/// Becomes true once the socket's `auth` is sent: events wait for it, as `auth` comes first.
#[derive(Clone)]
struct AuthSent(watch::Receiver<bool>);

#[async_trait]
impl NamespaceHandler for Echo {
    async fn on_connect(&self, socket: &Socket, auth: &Value) -> Result<(), ConnectError> {
        let (sent, receiver) = watch::channel(false);
        socket.extensions().insert(AuthSent(receiver));
        let (socket, auth) = (socket.clone(), auth.clone());
        // The CONNECT answer goes once this returns; `auth` follows it after the pause.
        tokio::spawn(async move {
            tokio::time::sleep(AUTH_DELAY).await;
            let _ = socket.emit("auth", auth);
            sent.send_replace(true);
        });
        Ok(())
    }

    async fn on_event(&self, socket: &Socket, event: &str, payload: Payload, ack: Option<Ack>) {
        if let Some(AuthSent(mut sent)) = socket.extensions().get::<AuthSent>() {
            let _ = sent.wait_for(|sent| *sent).await;
        }
        match event {
            "message" => {
                let _ = socket.emit("message-back", payload);
            }
            "message-with-ack" => {
                if let Some(ack) = ack {
                    let _ = ack.send(payload);
                }
            }
            "request-ack" => {
                let Ok(answer) =
                    socket.emit_with_ack("ack-request", payload, Duration::from_secs(2))
                else {
                    return;
                };
                // Waiting here would hold this socket's event queue: spawn.
                let socket = socket.clone();
                tokio::spawn(async move {
                    let result = match answer.await {
                        Ok(payload) => payload,
                        Err(error) => Payload::from(json!({ "error": error.to_string() })),
                    };
                    let _ = socket.emit("ack-result", result);
                });
            }
            "disconnect-me" => socket.disconnect(),
            _ => {}
        }
    }
}

/// Refuses every connection.
pub struct Refuse;

#[async_trait]
impl NamespaceHandler for Refuse {
    async fn on_connect(&self, _socket: &Socket, _auth: &Value) -> Result<(), ConnectError> {
        Err(ConnectError::new("refused").with_data(json!({ "reason": "test" })))
    }

    async fn on_event(&self, _socket: &Socket, _event: &str, _payload: Payload, _ack: Option<Ack>) {
    }
}
