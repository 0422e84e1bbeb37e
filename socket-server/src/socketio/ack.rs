//! Acknowledgements in both directions: [`Ack`] answers a client's event, [`AckReceiver`] waits
//! for the client's answer to [`Socket::emit_with_ack`](super::Socket::emit_with_ack).

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::oneshot;

use super::packet;
use super::payload::Payload;
use super::socket::{EmitError, Socket};

/// The client waits for an answer to its event: call [`Ack::send`] once. Dropping it without
/// answering leaves the client to its own timeout.
#[derive(Debug)]
pub struct Ack {
    pub(crate) socket: Socket,
    pub(crate) id: u64,
}

impl Ack {
    /// Sends the answer (binary attachments allowed).
    pub fn send(self, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let packet = packet::ack(self.socket.namespace(), self.id, &payload.into());
        self.socket.send_packet(packet)
    }

    /// Sends an answer of one JSON argument, written straight from `arg` (no [`Payload`] or
    /// `serde_json::Value` to build).
    pub fn send_json(self, arg: &impl serde::Serialize) -> Result<(), EmitError> {
        let packet = packet::ack_json(self.socket.namespace(), self.id, arg);
        self.socket.send_packet(packet)
    }

    /// The ack id chosen by the client.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Why no answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no acknowledgement within the timeout")]
    Timeout,
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
}

/// The pending acks of one socket: ids we chose, and where to deliver the answer.
#[derive(Debug, Default)]
pub(crate) struct AckTable {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Payload>>,
}

impl AckTable {
    pub fn register(&mut self) -> (u64, oneshot::Receiver<Payload>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(id, tx);
        (id, rx)
    }

    /// Delivers a client's answer; unknown (or timed-out) ids are ignored.
    pub fn resolve(&mut self, id: u64, payload: Payload) {
        if let Some(tx) = self.waiting.remove(&id) {
            let _ = tx.send(payload);
        }
    }

    pub fn forget(&mut self, id: u64) {
        self.waiting.remove(&id);
    }

    /// Fails every pending ack (the receivers see [`AckError::Disconnected`]).
    pub fn clear(&mut self) {
        self.waiting.clear();
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }
}

/// The client's answer to an emit, to be awaited (`.await` directly or [`AckReceiver::recv`]).
/// However it ends (answered, timed out, or dropped without being awaited), its id leaves the
/// socket's table of pending acks, so a late answer is ignored and the table does not grow.
#[derive(Debug)]
pub struct AckReceiver {
    pub(crate) socket: Socket,
    pub(crate) id: u64,
    pub(crate) rx: oneshot::Receiver<Payload>,
    pub(crate) timeout: Duration,
}

impl AckReceiver {
    pub async fn recv(mut self) -> Result<Payload, AckError> {
        // On timeout, dropping `self` forgets the id.
        match tokio::time::timeout(self.timeout, &mut self.rx).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => Err(AckError::Timeout),
        }
    }
}

impl Drop for AckReceiver {
    fn drop(&mut self) {
        // A no-op when the answer came (resolving removed the id) or the socket left.
        self.socket.forget_ack(self.id);
    }
}

impl IntoFuture for AckReceiver {
    type Output = Result<Payload, AckError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.recv())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn answers_reach_the_waiter_of_their_id_only() {
        let mut table = AckTable::default();
        let (a, rx_a) = table.register();
        let (b, rx_b) = table.register();
        assert_ne!(a, b);
        table.resolve(b, Payload::new(vec![json!("b")]));
        table.resolve(999, Payload::default());
        assert_eq!(rx_b.await.unwrap().args, vec![json!("b")]);
        table.clear();
        assert!(rx_a.await.is_err());
    }

    fn connected_socket() -> Socket {
        let socket = Socket::new(
            "/",
            crate::engineio::EngineSocket::for_test(8),
            8,
            std::sync::Weak::new(),
        );
        socket.mark_connected().unwrap();
        socket
    }

    #[tokio::test]
    async fn a_receiver_dropped_unawaited_leaves_the_ack_table() {
        // Arrange
        let socket = connected_socket();
        let receiver = socket
            .emit_with_ack("ping", Payload::default(), Duration::from_secs(5))
            .unwrap();
        assert_eq!(socket.pending_acks(), 1);

        // Act
        drop(receiver);

        // Assert
        assert_eq!(socket.pending_acks(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_timed_out_or_was_answered_leaves_the_ack_table() {
        let socket = connected_socket();
        let timed_out = socket
            .emit_with_ack("ping", Payload::default(), Duration::from_millis(10))
            .unwrap();
        assert_eq!(timed_out.await, Err(AckError::Timeout));
        assert_eq!(socket.pending_acks(), 0);

        let answered = socket
            .emit_with_ack("ping", Payload::default(), Duration::from_secs(5))
            .unwrap();
        socket.resolve_ack(answered.id, Payload::new(vec![json!("pong")]));
        assert_eq!(answered.await.unwrap().args, vec![json!("pong")]);
        assert_eq!(socket.pending_acks(), 0);
    }
}
