//! Graceful shutdown: sessions are closed cleanly and `serve` returns promptly; with a drain,
//! new connections are refused while work in flight is finished on the open sessions first.

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
use tokio::sync::{mpsc, oneshot, watch};

use crate::helpers::{http, polling_handshake, spawn_with, KeepAlive};

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
    // Arrange: a long ping interval, so that only the shutdown answers the pending poll, and a
    // bound well short of it
    let (tx, mut reasons) = mpsc::unbounded_channel();
    let bound = Duration::from_secs(10);
    let config = EngineConfig {
        ping_interval: Duration::from_secs(25),
        shutdown_timeout: bound,
        ..EngineConfig::default()
    };
    let io = SocketIo::new(SocketIoConfig::default()).namespace("/", Recorder(tx));
    let endpoint = engineio::Endpoint::new(config, Arc::new(io), Hooks::default());
    let server = spawn_with({
        let endpoint = endpoint.clone();
        move |listener, stopped| {
            engineio::serve_endpoint(listener, endpoint, async {
                let _ = stopped.await;
            })
        }
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
    // The shutdown is to end a poll the server holds (one it has not read yet would be refused
    // with its connection): wait until it holds it.
    while !endpoint.poll_pending(&sid) {
        assert!(
            !pending.is_finished(),
            "the poll was answered before the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // Act
    let took = server.stop().await;

    // Assert: within the bound, so every task (on_disconnect's included) ended before serve
    // returned
    assert!(took < bound, "shutdown took {took:?}, bound {bound:?}");
    // A noop, not a close packet: python-engineio never reconnects after one, and a client
    // should come back (to another relay) from a shutdown
    let last = pending.await.unwrap();
    assert_eq!((last.status, last.body.as_str()), (200, "6"));
    let reason = reasons
        .try_recv()
        .expect("on_disconnect had not been called when serve returned");
    assert_eq!(
        reason,
        DisconnectReason::Closed(CloseReason::ServerShutdown)
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the listener should be closed"
    );
}

/// Acknowledges `store` only after `delay`, like the relay's store worker, counting the acks not
/// sent yet in `pending`; reports disconnects like [`Recorder`].
struct SlowStore {
    delay: Duration,
    pending: Arc<watch::Sender<usize>>,
    reasons: mpsc::UnboundedSender<DisconnectReason>,
    /// What happened, in order: `acked` when an ack is sent, `disconnected` at the close.
    log: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

#[async_trait]
impl NamespaceHandler for SlowStore {
    async fn on_connect(&self, _socket: &Socket, _auth: &Value) -> Result<(), ConnectError> {
        Ok(())
    }

    async fn on_event(&self, _socket: &Socket, event: &str, payload: Payload, ack: Option<Ack>) {
        let (Some(ack), "store") = (ack, event) else {
            return;
        };
        self.pending.send_modify(|pending| *pending += 1);
        let (delay, pending, log) = (self.delay, self.pending.clone(), self.log.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = ack.send(payload);
            log.lock().unwrap().push("acked");
            pending.send_modify(|pending| *pending -= 1);
        });
    }

    async fn on_disconnect(&self, _socket: &Socket, reason: DisconnectReason) {
        self.log.lock().unwrap().push("disconnected");
        let _ = self.reasons.send(reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_connections_acks_the_queued_send_then_closes_within_the_bound() {
    // Arrange: a send whose ack comes 500 ms later, queued just before shutdown
    let bound = Duration::from_secs(5);
    let delay = Duration::from_millis(500);
    let pending = Arc::new(watch::Sender::new(0_usize));
    let mut stored = pending.subscribe();
    let (tx, mut reasons) = mpsc::unbounded_channel();
    let config = EngineConfig {
        ping_interval: Duration::from_secs(25),
        shutdown_timeout: bound,
        ..EngineConfig::default()
    };
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (drain_began, began) = oneshot::channel();
    let handler = SlowStore {
        delay,
        pending: pending.clone(),
        reasons: tx,
        log: log.clone(),
    };
    let io = SocketIo::new(SocketIoConfig::default()).namespace("/", handler);
    let server = spawn_with(move |listener, stopped| {
        let endpoint = engineio::Endpoint::new(config, Arc::new(io), Hooks::default());
        let drain = move |_budget| async move {
            let _ = drain_began.send(());
            let _ = pending.subscribe().wait_for(|pending| *pending == 0).await;
        };
        engineio::serve_draining(
            listener,
            endpoint,
            async {
                let _ = stopped.await;
            },
            drain,
        )
    })
    .await;
    let port = server.port;
    let sid = polling_handshake(port, "/socket.io/").await;
    let session = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(port, "POST", &session, &[], "40").await.status, 200);
    // The polls go on a connection opened now: the drain refuses new ones.
    let mut polls = KeepAlive::open(port).await;
    let connected = polls.request("GET", &session, "").await;
    assert!(connected.body.starts_with("40{"), "{}", connected.body);
    let sent = http(port, "POST", &session, &[], r#"421["store","hello"]"#).await;
    assert_eq!(sent.status, 200);
    // The POST is answered once the packet is queued for the socket: wait until it is handled.
    let _ = stored.wait_for(|pending| *pending == 1).await;

    // Act: shut down; once the drain began (the listener is closed by then), connect
    let stopping = tokio::spawn(server.stop());
    tokio::time::timeout(bound, began)
        .await
        .expect("the drain did not begin")
        .unwrap();
    let late = TcpStream::connect(("127.0.0.1", port)).await;

    // Assert: refused, while the open session still gets its ack (alone: a shutdown sends no
    // close packet to a polling client, which then reconnects), then the close
    assert!(
        late.is_err(),
        "a connection made during the drain was accepted"
    );
    let acked = tokio::time::timeout(bound, polls.request("GET", &session, ""))
        .await
        .expect("the queued send was not acked during the drain");
    assert_eq!(acked.status, 200);
    let packets: Vec<&str> = acked.body.split('\x1e').collect();
    assert!(
        matches!(packets[..], [r#"431["hello"]"#]),
        "{:?}",
        acked.body
    );
    let took = stopping.await.unwrap();
    assert!(
        took >= delay - Duration::from_millis(100),
        "did not wait for the ack: {took:?}"
    );
    assert!(took < bound, "shutdown took {took:?}, bound {bound:?}");
    let reason = reasons
        .try_recv()
        .expect("on_disconnect had not been called when serve returned");
    assert_eq!(
        reason,
        DisconnectReason::Closed(CloseReason::ServerShutdown)
    );
    assert_eq!(
        *log.lock().unwrap(),
        ["acked", "disconnected"],
        "the socket was closed before its ack"
    );
}
