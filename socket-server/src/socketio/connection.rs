//! One Engine.IO session seen by Socket.IO: its packet decoder and its sockets, one per namespace,
//! each with an ordered event queue and a task that runs the namespace handler. An event that
//! finds its socket's queue empty and its task idle is offered to the handler at once, in the
//! connection's task ([`NamespaceHandler::on_event_now`]).

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::task::JoinHandle;

use super::ack::Ack;
use super::decoder::Decoder;
use super::handler::{DisconnectReason, NamespaceHandler};
use super::packet::{self, ClientPacket};
use super::payload::Payload;
use super::server::Shared;
use super::socket::Socket;
use crate::engineio::{CloseReason, EngineSocket, Message, Now};
use crate::queue;

/// An item of a socket's event queue.
enum Inbound {
    Event {
        event: String,
        payload: Payload,
        ack: Option<Ack>,
    },
    /// The client left the namespace (after the events queued before).
    Disconnect,
}

struct Entry {
    socket: Socket,
    handler: Arc<dyn NamespaceHandler>,
    /// Bounded: when the handler lags, the connection's reader waits here.
    inbox: queue::Sender<Inbound>,
    task: JoinHandle<()>,
}

pub(crate) struct Connection {
    shared: Arc<Shared>,
    decoder: Mutex<Decoder>,
    /// One entry per namespace joined; a `Vec` since a client joins one or two (a map costs
    /// its table even for one).
    sockets: Mutex<Vec<Entry>>,
}

impl Connection {
    pub fn new(shared: Arc<Shared>) -> Self {
        let decoder = Decoder::new(shared.config.max_attachments);
        Self {
            shared,
            decoder: Mutex::new(decoder),
            sockets: Mutex::new(Vec::new()),
        }
    }

    fn sockets(&self) -> MutexGuard<'_, Vec<Entry>> {
        // Every use is a single operation: a poisoned list is still consistent.
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `namespace`, if joined.
    fn find<'a>(sockets: &'a [Entry], namespace: &str) -> Option<&'a Entry> {
        sockets.iter().find(|e| e.socket.namespace() == namespace)
    }

    /// Removes and returns the entry of `namespace` for which `keep` is false.
    fn take(&self, namespace: &str, matches: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let mut sockets = self.sockets();
        let at = sockets
            .iter()
            .position(|e| e.socket.namespace() == namespace && matches(e))?;
        let entry = sockets.swap_remove(at);
        if sockets.is_empty() {
            *sockets = Vec::new();
        }
        Some(entry)
    }

    pub fn has_sockets(&self) -> bool {
        !self.sockets().is_empty()
    }

    /// Decodes a message and routes the packet it completes, if any, without waiting where it
    /// can; what is left (an event for a socket whose queue is full) is returned. A malformed
    /// packet closes the connection, except an event whose arguments alone do not parse (its
    /// handler answers it).
    pub fn on_message_now(self: &Arc<Self>, engine: &EngineSocket, message: Message) -> Now {
        let decoded = {
            let mut decoder = self.decoder.lock().unwrap_or_else(|e| e.into_inner());
            match message {
                Message::Text(text) => decoder.feed_text(&text),
                Message::Binary(data) => decoder.feed_binary(data),
            }
        };
        match decoded {
            Ok(Some(packet)) => self.dispatch(engine, packet),
            Ok(None) => Now::Handled,
            Err(error) => {
                // One line per connection at most (it closes): a client whose packets do not parse
                // (another parser, such as msgpack) is seen without debug logging.
                tracing::info!(sid = engine.sid(), %error, "malformed socket.io packet");
                engine.close(CloseReason::ParseError);
                Now::Handled
            }
        }
    }

    fn dispatch(self: &Arc<Self>, engine: &EngineSocket, packet: ClientPacket) -> Now {
        match packet {
            ClientPacket::Connect { namespace, auth } => self.connect(engine, &namespace, auth),
            ClientPacket::Disconnect { namespace } => {
                if let Some(entry) = self.take(&namespace, |_| true) {
                    return queue(entry.inbox, Inbound::Disconnect);
                }
            }
            ClientPacket::Event {
                namespace,
                event,
                payload,
                ack,
            } => {
                let joined = Self::find(&self.sockets(), &namespace)
                    .map(|e| (e.socket.clone(), e.handler.clone(), e.inbox.clone()));
                let Some((socket, handler, inbox)) = joined else {
                    tracing::debug!(sid = engine.sid(), %namespace, "event for a namespace not joined");
                    return Now::Handled;
                };
                let ack = ack.map(|id| Ack {
                    socket: socket.clone(),
                    id,
                });
                // Handled here when the handler can and nothing of the socket's is ahead of it.
                let (payload, ack) = if socket.idle() {
                    match handler.on_event_now(&socket, &event, payload, ack) {
                        Ok(()) => return Now::Handled,
                        Err(back) => back,
                    }
                } else {
                    (payload, ack)
                };
                socket.event_queued();
                return queue(
                    inbox,
                    Inbound::Event {
                        event,
                        payload,
                        ack,
                    },
                );
            }
            ClientPacket::Ack {
                namespace,
                id,
                payload,
            } => {
                let socket = Self::find(&self.sockets(), &namespace).map(|e| e.socket.clone());
                if let Some(socket) = socket {
                    socket.resolve_ack(id, payload);
                }
            }
            ClientPacket::Undecodable {
                namespace,
                event,
                ack,
                error,
            } => {
                let joined = Self::find(&self.sockets(), &namespace)
                    .map(|e| (e.socket.clone(), e.handler.clone()));
                let Some((socket, handler)) = joined else {
                    tracing::debug!(sid = engine.sid(), %namespace, "event for a namespace not joined");
                    return Now::Handled;
                };
                let ack = ack.map(|id| Ack {
                    socket: socket.clone(),
                    id,
                });
                handler.on_undecodable(&socket, &event, ack, &error);
            }
        }
        Now::Handled
    }

    fn connect(self: &Arc<Self>, engine: &EngineSocket, namespace: &str, auth: Value) {
        let Some(handler) = self.shared.namespaces.get(namespace).cloned() else {
            let refusal = packet::connect_error(namespace, "Invalid namespace", None);
            let _ = engine.send_packet(refusal);
            return;
        };
        let mut sockets = self.sockets();
        if Self::find(&sockets, namespace).is_some() {
            drop(sockets);
            tracing::debug!(sid = engine.sid(), %namespace, "second CONNECT to a joined namespace");
            engine.close(CloseReason::ProtocolError);
            return;
        }
        let config = &self.shared.config;
        let socket = Socket::new(
            namespace,
            engine.clone(),
            config.connect_buffer,
            Arc::downgrade(self),
        );
        let (inbox, rx) = queue::bounded(config.event_queue);
        // Spawned under the lock, so the task cannot detach before it is registered. Corked:
        // what a turn of the handler sends to one socket leaves in one write.
        let task = tokio::spawn(crate::engineio::corked(run_socket(
            handler.clone(),
            socket.clone(),
            auth,
            rx,
        )));
        // Room for this one only: most clients join one namespace (a first push would make
        // room for four, ~120 bytes more per connection).
        sockets.reserve_exact(1);
        sockets.push(Entry {
            socket,
            handler,
            inbox,
            task,
        });
    }

    /// Removes `socket`'s entry (if still the registered one), ending its event queue.
    pub fn detach(&self, socket: &Socket) {
        // Dropped outside the lock (its inbox sender ends the socket's queue).
        let entry = self.take(socket.namespace(), |e| e.socket.same(socket));
        drop(entry);
    }

    /// The session closed: every socket leaves with `reason`, after its queued events; waits for
    /// the handlers' `on_disconnect`.
    pub async fn close(&self, reason: CloseReason) {
        let entries: Vec<Entry> = std::mem::take(&mut *self.sockets());
        let mut tasks = Vec::with_capacity(entries.len());
        for Entry { socket, task, .. } in entries {
            socket.set_disconnected(reason.into());
            tasks.push(task);
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Queues `inbound` for a socket's task; when the queue is full, what is left is waiting for
/// room (the connection reads nothing meanwhile: back-pressure on a client whose handler lags).
fn queue(inbox: queue::Sender<Inbound>, inbound: Inbound) -> Now {
    match inbox.try_send(inbound) {
        Ok(()) | Err(queue::TrySendError::Closed(_)) => Now::Handled,
        Err(queue::TrySendError::Full(inbound)) => Now::Later(Box::pin(async move {
            let _ = inbox.send(inbound).await;
        })),
    }
}

/// Runs one socket: `on_connect` (with the CONNECT payload, `auth`, which is not kept after
/// it), then its events in order, then `on_disconnect`.
async fn run_socket(
    handler: Arc<dyn NamespaceHandler>,
    socket: Socket,
    auth: Value,
    mut inbox: queue::Receiver<Inbound>,
) {
    let connected = handler.on_connect(&socket, &auth).await;
    drop(auth);
    if let Err(refusal) = connected {
        let frame =
            packet::connect_error(socket.namespace(), &refusal.message, refusal.data.as_ref());
        socket.set_disconnected(DisconnectReason::ServerNamespaceDisconnect);
        let _ = socket.engine().send_packet(frame);
        socket.detach();
        return;
    }
    if socket.mark_connected().is_ok() {
        while let Some(inbound) = inbox.recv().await {
            match inbound {
                Inbound::Event {
                    event,
                    payload,
                    ack,
                } => {
                    handler.on_event(&socket, &event, payload, ack).await;
                    socket.event_handled();
                }
                Inbound::Disconnect => {
                    socket.set_disconnected(DisconnectReason::ClientNamespaceDisconnect);
                    break;
                }
            }
        }
    }
    // Whoever ended the queue set the reason; this only covers a closed channel without one.
    socket.set_disconnected(CloseReason::TransportClose.into());
    socket.detach();
    let reason = socket
        .disconnect_reason()
        .unwrap_or(CloseReason::TransportClose.into());
    handler.on_disconnect(&socket, reason).await;
}
