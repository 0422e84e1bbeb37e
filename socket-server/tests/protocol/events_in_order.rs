//! A socket's events are handled in the order they were sent, whichever way each is handled:
//! at once in the connection's task (`NamespaceHandler::on_event_now`), or queued for the
//! socket's task (`on_event`). An event never overtakes an earlier one still queued or being
//! handled there. Checked with a real client (tungstenite) speaking Socket.IO over WebSocket.

use std::sync::Arc;

use async_trait::async_trait;
use futures::SinkExt;
use serde_json::{json, Value};
use socket_server::engineio::{self, EngineConfig, Hooks};
use socket_server::socketio::{Ack, NamespaceHandler, Payload, Socket, SocketIo, SocketIoConfig};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{next_frame, next_message, open_websocket_at, spawn_with, TestServer, Ws};

/// Handles every event at once except `slow`, which goes to the socket's task and waits there
/// for a permit of `gate`. Each event is answered `handled [event, "at once" | "queued"]` and
/// logged (what a closed session no longer sends is still logged).
struct Gated {
    gate: Arc<Semaphore>,
    log: Log,
}

type Log = Arc<std::sync::Mutex<Vec<String>>>;

#[async_trait]
impl NamespaceHandler for Gated {
    async fn on_event(&self, socket: &Socket, event: &str, _payload: Payload, _ack: Option<Ack>) {
        if event == "slow" {
            let _permit = self.gate.acquire().await;
        }
        self.log.lock().unwrap().push(event.to_owned());
        let _ = socket.emit("handled", json!([event, "queued"]));
    }

    fn on_event_now(
        &self,
        socket: &Socket,
        event: &str,
        payload: Payload,
        ack: Option<Ack>,
    ) -> Result<(), (Payload, Option<Ack>)> {
        if event == "slow" {
            return Err((payload, ack));
        }
        self.log.lock().unwrap().push(event.to_owned());
        let _ = socket.emit("handled", json!([event, "at once"]));
        Ok(())
    }
}

/// The next text frame that is not the server's ping.
async fn next_answer(ws: &mut Ws) -> String {
    loop {
        match next_message(ws).await {
            WsMessage::Text(text) if text.as_str() != "2" => return text.as_str().to_owned(),
            _ => {}
        }
    }
}

/// `[event, how]` of a `handled` event.
async fn next_handled(ws: &mut Ws) -> (String, String) {
    let text = next_answer(ws).await;
    let body = text
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("an event expected, got {text}"));
    let args: Value = serde_json::from_str(body).unwrap();
    assert_eq!(args[0], "handled", "{text}");
    let answer = |i: usize| args[1][i].as_str().unwrap().to_owned();
    (answer(0), answer(1))
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(WsMessage::text(text)).await.unwrap();
}

/// A server whose `/` namespace is [`Gated`] by `gate`, and a socket connected to it.
async fn connected(gate: Arc<Semaphore>, log: Log) -> (TestServer, Ws) {
    let io = SocketIo::new(SocketIoConfig::default()).namespace("/", Gated { gate, log });
    let server = spawn_with(move |listener, stopped| {
        engineio::serve(
            listener,
            EngineConfig::default(),
            Arc::new(io),
            Hooks::default(),
            async {
                let _ = stopped.await;
            },
        )
    })
    .await;
    let mut ws = open_websocket_at(server.port, "/socket.io/").await;
    send(&mut ws, "40").await;
    let connected = next_answer(&mut ws).await;
    assert!(connected.starts_with("40{"), "{connected}");
    (server, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_handled_at_once_never_overtakes_one_queued_before_it() {
    // Arrange: a connected socket
    let gate = Arc::new(Semaphore::new(0));
    let (server, mut ws) = connected(gate.clone(), Log::default()).await;

    // Act: `slow` waits in the socket's task; two events that could be handled at once follow,
    // then an Engine.IO ping, whose pong says the connection has read (and routed) both
    send(&mut ws, r#"42["slow"]"#).await;
    send(&mut ws, r#"42["now-1"]"#).await;
    send(&mut ws, r#"42["now-2"]"#).await;
    send(&mut ws, "2").await;
    let pong = next_answer(&mut ws).await;

    // Assert: nothing was handled before `slow`, which has not run yet
    assert_eq!(
        pong, "3",
        "an event was handled before the one queued ahead of it"
    );
    gate.add_permits(1);
    for expected in ["slow", "now-1", "now-2"] {
        let (event, how) = next_handled(&mut ws).await;
        assert_eq!((event.as_str(), how.as_str()), (expected, "queued"));
    }
    // Once the socket's task has caught up, events are handled at once again, still in order
    // (the first ones may still find it finishing `now-2`)
    let mut at_once = false;
    for n in 3..1000 {
        let event = format!("now-{n}");
        send(&mut ws, &format!(r#"42["{event}"]"#)).await;
        let (handled, how) = next_handled(&mut ws).await;
        assert_eq!(handled, event);
        if how == "at once" {
            at_once = true;
            break;
        }
    }
    assert!(
        at_once,
        "no event was handled at once after the queue emptied"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_after_a_malformed_packet_are_not_handled() {
    // Arrange
    let log = Log::default();
    let (server, mut ws) = connected(Arc::new(Semaphore::new(0)), log.clone()).await;

    // Act: an event, a malformed packet and another event in one write (one read, most
    // likely: the connection handles them one after the other without a turn in between)
    for text in [r#"42["before"]"#, "42[not json", r#"42["after"]"#] {
        ws.feed(WsMessage::text(text)).await.unwrap();
    }
    ws.flush().await.unwrap();

    // Assert: the connection closes as a parse error, having handled the first event only (at
    // once: nothing is counted for the socket once the CONNECT answer was sent)
    let mut handled = Vec::new();
    let close = loop {
        match next_frame(&mut ws).await {
            Some(WsMessage::Text(text)) if text.starts_with("42") => {
                handled.push(text.as_str().to_owned());
            }
            Some(WsMessage::Close(close)) => break close,
            Some(_) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(handled, [r#"42["handled",["before","at once"]]"#]);
    let close = close.expect("a close frame with a reason");
    assert_eq!(close.reason.as_str(), "parse error");
    server.stop().await;
    assert_eq!(*log.lock().unwrap(), ["before"]);
}
