//! [`Socket`]: one client in one namespace, as the chat layer sees it.

use std::any::{Any, TypeId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use super::ack::{AckReceiver, AckTable};
use super::connection::Connection;
use super::handler::DisconnectReason;
use super::packet;
use super::payload::Payload;
use crate::engineio::{EngineSocket, Outgoing, RequestInfo, SendError};

/// Why an emit failed. The socket is unusable after either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("the socket is disconnected")]
    Disconnected,
    /// The client reads too slowly; its connection was closed ("slow consumer").
    #[error("the socket's outbox is full; the connection was closed")]
    Full,
    /// [`Socket::send_encoded`] with a packet encoded for another namespace.
    #[error("the packet was encoded for another namespace")]
    WrongNamespace,
}

impl From<SendError> for EmitError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Closed => EmitError::Disconnected,
            SendError::Full => EmitError::Full,
        }
    }
}

/// An event encoded once, to be sent as is to many sockets of its namespace
/// ([`Socket::send_encoded`]). Cloning shares the bytes, so sending it to one more socket costs a
/// reference count.
#[derive(Debug, Clone)]
pub struct EncodedPacket {
    namespace: Arc<str>,
    packet: Outgoing,
}

impl EncodedPacket {
    /// Encodes an EVENT with one JSON argument and no attachment (no ack id, since each socket
    /// would need its own).
    pub fn event_json(namespace: &str, event: &str, arg: &impl serde::Serialize) -> Self {
        Self {
            namespace: namespace.into(),
            packet: packet::event_json(namespace, event, arg),
        }
    }
}

/// What is known of the client when it joined: the HTTP request that opened its connection. The
/// CONNECT payload (auth) is given to [`NamespaceHandler::on_connect`](super::NamespaceHandler)
/// and not kept: a token held by every socket for its whole life is memory (and a secret) that
/// nothing reads again.
#[derive(Debug)]
pub struct Handshake {
    pub(crate) request: Arc<RequestInfo>,
    pub(crate) issued_at: SystemTime,
}

impl Handshake {
    /// The peer's address (of the TCP connection: a proxy's, behind one).
    pub fn remote_addr(&self) -> SocketAddr {
        self.request.remote_addr
    }

    /// A header of the opening request, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }

    /// A query parameter of the opening request (decoded).
    pub fn query(&self, name: &str) -> Option<String> {
        self.request.query().remove(name)
    }

    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }
}

/// Typed per-socket storage: one value per type.
///
/// A list searched by `TypeId`, not a hash map: a socket holds a handful of values, and the chat
/// layer reads one on every event, where hashing the `TypeId` (SipHash) cost more than comparing
/// it with each entry.
#[derive(Default)]
pub struct Extensions(Mutex<Vec<(TypeId, Box<dyn Any + Send + Sync>)>>);

impl Extensions {
    fn list(&self) -> MutexGuard<'_, Vec<(TypeId, Box<dyn Any + Send + Sync>)>> {
        // Each operation is a single list change, so a poisoned list is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value`, returning the previous value of that type.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        let mut list = self.list();
        let value: Box<dyn Any + Send + Sync> = Box::new(value);
        let old = match list.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
            Some((_, slot)) => std::mem::replace(slot, value),
            None => {
                list.push((TypeId::of::<T>(), value));
                return None;
            }
        };
        old.downcast().ok().map(|b| *b)
    }

    /// A clone of the value of type `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.list()
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())?
            .1
            .downcast_ref::<T>()
            .cloned()
    }

    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        let mut list = self.list();
        let at = list.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
        let (_, old) = list.swap_remove(at);
        if list.is_empty() {
            *list = Vec::new();
        }
        old.downcast().ok().map(|b| *b)
    }
}

#[derive(Debug)]
enum State {
    /// `on_connect` is running: emits wait here (bounded) until the CONNECT answer is sent.
    Connecting(Vec<Outgoing>),
    Connected,
    Disconnected,
}

pub(crate) struct SocketInner {
    id: Arc<str>,
    namespace: Arc<str>,
    engine: EngineSocket,
    handshake: Handshake,
    state: Mutex<State>,
    reason: OnceLock<DisconnectReason>,
    acks: Mutex<AckTable>,
    extensions: Extensions,
    /// Most frames buffered while connecting.
    connect_buffer: usize,
    connection: Weak<Connection>,
    /// Events queued for the socket's task or being handled there, plus one until the socket is
    /// marked connected (`on_connect` succeeded): the connection's task hands an event to the
    /// handler itself ([`NamespaceHandler::on_event_now`](super::NamespaceHandler::on_event_now))
    /// only at zero, so no event overtakes an earlier one.
    events: AtomicUsize,
}

/// A client connected to one namespace. Cheap to clone; every method is non-blocking.
#[derive(Clone)]
pub struct Socket(Arc<SocketInner>);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("namespace", &self.namespace())
            .finish()
    }
}

impl Socket {
    pub(crate) fn new(
        namespace: &str,
        engine: EngineSocket,
        connect_buffer: usize,
        connection: Weak<Connection>,
    ) -> Self {
        let handshake = Handshake {
            request: engine.request().clone(),
            issued_at: SystemTime::now(),
        };
        Socket(Arc::new(SocketInner {
            id: new_id(),
            namespace: namespace.into(),
            engine,
            handshake,
            state: Mutex::new(State::Connecting(Vec::new())),
            reason: OnceLock::new(),
            acks: Mutex::new(AckTable::default()),
            extensions: Extensions::default(),
            connect_buffer,
            connection,
            events: AtomicUsize::new(1),
        }))
    }

    /// This socket's id (the `sid` of its CONNECT answer; `socket.id` on the client).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    /// The Engine.IO session id, shared by the client's sockets in every namespace.
    pub fn connection_id(&self) -> &str {
        self.0.engine.sid()
    }

    pub fn handshake(&self) -> &Handshake {
        &self.0.handshake
    }

    pub fn extensions(&self) -> &Extensions {
        &self.0.extensions
    }

    pub fn connected(&self) -> bool {
        matches!(*self.state(), State::Connected)
    }

    /// Why the socket left, once it has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.0.reason.get().copied()
    }

    /// Sends an event: encoded once, queued without waiting.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        self.send_packet(packet::event(
            self.namespace(),
            event,
            &payload.into(),
            None,
        ))
    }

    /// Sends an event the client acknowledges; await the returned receiver for its answer, which
    /// fails after `timeout`.
    pub fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<AckReceiver, EmitError> {
        let (id, rx) = self.lock_acks().register();
        let packet = packet::event(self.namespace(), event, &payload.into(), Some(id));
        if let Err(error) = self.send_packet(packet) {
            self.forget_ack(id);
            return Err(error);
        }
        Ok(AckReceiver {
            socket: self.clone(),
            id,
            rx,
            timeout,
        })
    }

    /// Sends a packet encoded once for many sockets (fan-out).
    pub fn send_encoded(&self, packet: &EncodedPacket) -> Result<(), EmitError> {
        if *packet.namespace != *self.0.namespace {
            return Err(EmitError::WrongNamespace);
        }
        self.send_packet(packet.packet.clone())
    }

    /// Leaves the namespace: the client gets a DISCONNECT packet, the handler `on_disconnect`
    /// (after the events already queued). The connection stays open for other namespaces.
    pub fn disconnect(&self) {
        let was_connected = self.connected();
        if self.set_disconnected(DisconnectReason::ServerNamespaceDisconnect) && was_connected {
            let _ = self
                .0
                .engine
                .send_packet(packet::disconnect(self.namespace()));
        }
        self.detach();
    }

    /// Closes the whole connection (every namespace of this client).
    pub fn close_connection(&self) {
        self.0.engine.close(crate::engineio::CloseReason::Forced);
    }

    pub(crate) fn send_packet(&self, packet: Outgoing) -> Result<(), EmitError> {
        let mut state = self.state();
        match &mut *state {
            State::Connected => Ok(self.0.engine.send_packet(packet)?),
            State::Connecting(buffer)
                if buffered_frames(buffer) + packet.frames().len() <= self.0.connect_buffer =>
            {
                buffer.push(packet);
                Ok(())
            }
            State::Connecting(_) => Err(EmitError::Full),
            State::Disconnected => Err(EmitError::Disconnected),
        }
    }

    /// Sends the CONNECT answer, then what was emitted while connecting.
    pub(crate) fn mark_connected(&self) -> Result<(), EmitError> {
        let mut state = self.state();
        let State::Connecting(buffer) = std::mem::replace(&mut *state, State::Connected) else {
            return Err(EmitError::Disconnected);
        };
        // Events may be handled at once from now on: before the CONNECT answer, so that none
        // the client sends after it finds `on_connect` still counted. What they send waits for
        // this lock, so after the frames buffered below.
        self.event_handled();
        self.0
            .engine
            .send_packet(packet::connect(self.namespace(), self.id()))?;
        for packet in buffer {
            self.0.engine.send_packet(packet)?;
        }
        Ok(())
    }

    /// Marks the socket gone and fails its pending acks; `false` if it already was.
    pub(crate) fn set_disconnected(&self, reason: DisconnectReason) -> bool {
        let mut state = self.state();
        if matches!(*state, State::Disconnected) {
            return false;
        }
        *state = State::Disconnected;
        drop(state);
        let _ = self.0.reason.set(reason);
        self.lock_acks().clear();
        true
    }

    pub(crate) fn resolve_ack(&self, id: u64, payload: Payload) {
        self.lock_acks().resolve(id, payload);
    }

    pub(crate) fn forget_ack(&self, id: u64) {
        self.lock_acks().forget(id);
    }

    #[cfg(test)]
    pub(crate) fn pending_acks(&self) -> usize {
        self.lock_acks().pending()
    }

    pub(crate) fn engine(&self) -> &EngineSocket {
        &self.0.engine
    }

    /// Unregisters from the connection, which ends the socket's event queue.
    pub(crate) fn detach(&self) {
        if let Some(connection) = self.0.connection.upgrade() {
            connection.detach(self);
        }
    }

    /// Nothing of this socket's is queued or being handled, and `on_connect` succeeded: an
    /// event may be handled at once. Acquire: what the last handled event did is visible.
    pub(crate) fn idle(&self) -> bool {
        self.0.events.load(Ordering::Acquire) == 0
    }

    /// An event was queued for the socket's task.
    pub(crate) fn event_queued(&self) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }

    /// The socket's task handled an event, or the socket is connected. Release: pairs with
    /// [`Self::idle`].
    pub(crate) fn event_handled(&self) {
        self.0.events.fetch_sub(1, Ordering::Release);
    }

    pub(crate) fn same(&self, other: &Socket) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // State changes are single assignments: a poisoned lock still holds a valid state.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_acks(&self) -> MutexGuard<'_, AckTable> {
        self.0.acks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frames held by a connecting socket's buffer (at most `connect_buffer`, so a short sum).
fn buffered_frames(buffer: &[Outgoing]) -> usize {
    buffer.iter().map(|p| p.frames().len()).sum()
}

fn new_id() -> Arc<str> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(uuid::Uuid::new_v4().as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_hold_one_value_per_type() {
        #[derive(Clone, Debug, PartialEq)]
        struct UserId(u64);
        let ext = Extensions::default();
        assert_eq!(ext.insert(UserId(1)), None);
        assert_eq!(ext.insert(UserId(2)), Some(UserId(1)));
        ext.insert(String::from("alice"));
        assert_eq!(ext.get::<UserId>(), Some(UserId(2)));
        assert_eq!(ext.remove::<String>(), Some("alice".to_owned()));
        assert_eq!(ext.get::<String>(), None);
    }
}
