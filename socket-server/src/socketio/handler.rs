//! What the application (the chat layer) implements per namespace.

use async_trait::async_trait;
use serde_json::Value;

use super::ack::Ack;
use super::payload::Payload;
use super::socket::Socket;
use crate::engineio::CloseReason;

/// The handler of one namespace.
///
/// For one socket, calls are sequential and in order: `on_connect`, then `on_event` for each event
/// in arrival order (the next one waits until the previous returned), then `on_disconnect` once if
/// `on_connect` succeeded. A handler that wants concurrency spawns. While a handler is busy, the
/// socket's events queue up (bounded, see [`SocketIoConfig`](super::SocketIoConfig)); once the
/// queue is full the connection stops reading, so a handler that blocks for longer than the ping
/// timeout loses the client.
#[async_trait]
pub trait NamespaceHandler: Send + Sync + 'static {
    /// A client asks to join the namespace with `auth` (the CONNECT payload, `{}` if none).
    /// `Err` refuses it with a CONNECT_ERROR. Emits made here are buffered and delivered right
    /// after the connection is accepted (dropped if refused).
    async fn on_connect(&self, socket: &Socket, auth: &Value) -> Result<(), ConnectError> {
        let _ = (socket, auth);
        Ok(())
    }

    /// An event from the client. `ack` is `Some` when the client waits for an answer.
    async fn on_event(&self, socket: &Socket, event: &str, payload: Payload, ack: Option<Ack>);

    /// An event from the client, offered to a handler that can handle it without waiting:
    /// `Ok` when handled, `Err` gives it back and it goes to [`Self::on_event`]. Called in the
    /// connection's own task, and only while none of the socket's events is queued or being
    /// handled, so the order above holds; the connection reads nothing meanwhile, so it must
    /// not block. It saves the event a trip through the socket's queue and task (a queue push,
    /// a wake-up and a turn of that task: ~13 % of an echoed message's instructions). By
    /// default, nothing is handled here.
    fn on_event_now(
        &self,
        socket: &Socket,
        event: &str,
        payload: Payload,
        ack: Option<Ack>,
    ) -> Result<(), (Payload, Option<Ack>)> {
        let _ = (socket, event);
        Err((payload, ack))
    }

    /// An event whose name was read but whose arguments are not JSON this server decodes
    /// (`packet::Undecodable`: a string holding a lone UTF-16 surrogate, nesting deeper than
    /// 128 levels, or no JSON at all); `error` says why. The connection stays open. Called in
    /// the connection's task, so it must not block. By default the event is dropped and its ack,
    /// if any, left unanswered: this layer does not know the application's error shape.
    fn on_undecodable(&self, socket: &Socket, event: &str, ack: Option<Ack>, error: &str) {
        let _ = (socket, ack);
        tracing::debug!(event, error, "event arguments that do not parse, dropped");
    }

    /// The socket left the namespace; it can no longer emit.
    async fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        let _ = (socket, reason);
    }
}

/// Refusal of a connection: sent to the client as `{"message":...,"data":...}`, which
/// `socket.io-client` surfaces as the `connect_error` event (`err.message`, `err.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Why a socket left its namespace: its connection closed, or it left that namespace alone.
/// [`DisconnectReason::as_str`] gives the reference server's wording (what `socket.io-client`
/// reports) where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The whole connection closed (every namespace of the client); see [`CloseReason`] for each
    /// reason and whether the client reconnects.
    Closed(CloseReason),
    /// [`Socket::disconnect`] was called. `socket.io-client` does not reconnect by itself.
    ServerNamespaceDisconnect,
    /// The client left the namespace (`socket.disconnect()` on its side).
    ClientNamespaceDisconnect,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Closed(reason) => reason.as_str(),
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
        }
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(reason: CloseReason) -> Self {
        DisconnectReason::Closed(reason)
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_reasons_keep_the_reference_wording() {
        let cases = [
            (CloseReason::TransportClose, "transport close"),
            (CloseReason::TransportError, "transport error"),
            (CloseReason::PingTimeout, "ping timeout"),
            (CloseReason::ParseError, "parse error"),
            (CloseReason::ProtocolError, "protocol error"),
            (CloseReason::PayloadTooLarge, "payload too large"),
            (CloseReason::SlowConsumer, "slow consumer"),
            (CloseReason::ServerShutdown, "server shutting down"),
            (CloseReason::Forced, "forced close"),
        ];
        for (reason, wording) in cases {
            assert_eq!(DisconnectReason::from(reason).as_str(), wording);
        }
        assert_eq!(
            DisconnectReason::ServerNamespaceDisconnect.to_string(),
            "server namespace disconnect"
        );
        assert_eq!(
            DisconnectReason::ClientNamespaceDisconnect.to_string(),
            "client namespace disconnect"
        );
    }
}
