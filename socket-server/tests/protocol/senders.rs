//! Packets sent to one WebSocket by several tasks at once, on several threads: each sender
//! writes to the socket itself while nothing is queued before its packet, and queues behind
//! what is when the socket is full. Checked against a real client (tungstenite) that reads
//! nothing until every send was made, so the socket fills and both ways are taken.

use std::sync::Arc;
use std::time::Duration;

use socket_server::engineio::{
    self, CloseReason, EngineConfig, EngineHandler, EngineSocket, Hooks, Message,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{next_frame, open_websocket, spawn_with, TestServer, Ws};

const SENDERS: usize = 4;
/// Each sender's packets: `SENDERS × PER_SENDER × FRAME` (25 MiB) is several times what this
/// machine's socket buffers hold for a client that does not read (a send buffer of at most
/// 4 MiB, `net.ipv4.tcp_wmem`; a receive buffer that grows only as its reader reads).
const PER_SENDER: usize = 100;
const FRAME: usize = 64 * 1024;

/// On any message: `SENDERS` tasks send `PER_SENDER` numbered packets each ("<sender> <n>
/// <padding>"), yielding now and then so they interleave; then reports how many sends were
/// refused. Reports how the session closes.
struct Burst {
    refused: mpsc::UnboundedSender<usize>,
    closed: mpsc::UnboundedSender<CloseReason>,
}

impl EngineHandler for Burst {
    async fn on_open(&self, _socket: &EngineSocket) {}

    async fn on_message(&self, socket: &EngineSocket, _message: Message) {
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let padding = "x".repeat(FRAME);
                    let mut refused = 0;
                    for n in 0..PER_SENDER {
                        if socket
                            .send_text(&format!("{sender} {n} {padding}"))
                            .is_err()
                        {
                            refused += 1;
                        }
                        if n % 4 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for sender in senders {
            refused += sender.await.unwrap();
        }
        let _ = self.refused.send(refused);
    }

    async fn on_close(&self, _socket: &EngineSocket, reason: CloseReason) {
        let _ = self.closed.send(reason);
    }
}

struct Started {
    server: TestServer,
    refused: mpsc::UnboundedReceiver<usize>,
    closed: mpsc::UnboundedReceiver<CloseReason>,
}

async fn spawn_burst(outbox_capacity: usize) -> Started {
    let (refused_tx, refused) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    // The default heartbeat: a client not reading for a while on a busy machine is the test.
    let config = EngineConfig {
        path: "/engine.io/".into(),
        outbox_capacity,
        ..EngineConfig::default()
    };
    let handler = Arc::new(Burst {
        refused: refused_tx,
        closed: closed_tx,
    });
    let server = spawn_with(move |listener, stopped| {
        engineio::serve(listener, config, handler, Hooks::default(), async {
            let _ = stopped.await;
        })
    })
    .await;
    Started {
        server,
        refused,
        closed,
    }
}

/// A WebSocket session from the start, its open packet read, and "go" sent.
async fn go(port: u16) -> Ws {
    let mut ws = open_websocket(port).await;
    futures::SinkExt::send(&mut ws, WsMessage::text("4go"))
        .await
        .unwrap();
    ws
}

async fn recv<T>(channel: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(60), channel.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} within 60 s"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_senders_packets_arrive_whole_and_in_order_when_the_socket_was_full() {
    // Arrange: room in the outbox for every packet, so the full socket closes nothing
    let mut started = spawn_burst(SENDERS * PER_SENDER).await;
    let mut ws = go(started.server.port).await;

    // Act: read nothing until every send was made, then everything
    let refused = recv(&mut started.refused, "the senders' report").await;
    let mut next_of = [0usize; SENDERS];
    while next_of.iter().sum::<usize>() < SENDERS * PER_SENDER {
        let text = match next_frame(&mut ws).await {
            // A heartbeat, if the machine was slow enough.
            Some(WsMessage::Text(text)) if text == "2" => continue,
            Some(WsMessage::Text(text)) => text,
            other => panic!("expected a numbered packet, got {other:?}"),
        };
        let mut fields = text.splitn(3, ' ');
        let sender: usize = fields.next().unwrap()[1..].parse().unwrap();
        let n: usize = fields.next().unwrap().parse().unwrap();
        let padding = fields.next().unwrap();

        // Assert: each sender's packets whole, in the order sent, none missing
        assert_eq!(
            n, next_of[sender],
            "sender {sender}: packet {n} where {} was due",
            next_of[sender]
        );
        assert_eq!(padding.len(), FRAME, "packet {n} of sender {sender} cut");
        next_of[sender] += 1;
    }
    assert_eq!(refused, 0);
    assert_eq!(next_of, [PER_SENDER; SENDERS]);
    started.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_client_that_does_not_read_is_closed_as_a_slow_consumer() {
    // Arrange: an outbox of 8 packets
    let mut started = spawn_burst(8).await;
    let _ws = go(started.server.port).await;

    // Act: the client reads nothing
    let refused = recv(&mut started.refused, "the senders' report").await;

    // Assert: once the socket and the outbox were full, sends were refused and the session
    // closed as a slow consumer
    assert!(refused > 0, "every one of the 25 MiB was taken");
    assert_eq!(
        recv(&mut started.closed, "the close").await,
        CloseReason::SlowConsumer
    );
    started.server.stop().await;
}
