//! [`SocketIo`]: the namespaces and settings, plugged into Engine.IO as its handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::connection::Connection;
use super::handler::NamespaceHandler;
use crate::engineio::{CloseReason, EngineHandler, EngineSocket, Message};

/// Socket.IO settings (Engine.IO's are in [`EngineConfig`](crate::engineio::EngineConfig)).
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// A connection that has joined no namespace this long after opening is closed
    /// (default 45 s, as the reference server).
    pub connect_timeout: Duration,
    /// Capacity of each socket's event queue; when full, the connection stops reading until the
    /// handler catches up (default 64).
    pub event_queue: usize,
    /// Most binary attachments one packet may announce (default 10, as the reference parser).
    pub max_attachments: usize,
    /// Most frames a socket may emit while its `on_connect` runs (default 64).
    pub connect_buffer: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(45),
            event_queue: 64,
            max_attachments: 10,
            connect_buffer: 64,
        }
    }
}

pub(crate) struct Shared {
    pub config: SocketIoConfig,
    pub namespaces: HashMap<String, Arc<dyn NamespaceHandler>>,
}

/// The Socket.IO server: give it to [`engineio::serve`](crate::engineio::serve) as the handler.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use socket_server::{engineio, socketio};
/// # async fn demo(listener: tokio::net::TcpListener, chat: impl socketio::NamespaceHandler) -> anyhow::Result<()> {
/// let io = socketio::SocketIo::new(socketio::SocketIoConfig::default()).namespace("/", chat);
/// engineio::serve(listener, engineio::EngineConfig::default(), Arc::new(io),
///     engineio::Hooks::default(), std::future::pending()).await
/// # }
/// ```
pub struct SocketIo {
    shared: Arc<Shared>,
}

impl SocketIo {
    pub fn new(config: SocketIoConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                namespaces: HashMap::new(),
            }),
        }
    }

    /// Serves `name` (e.g. `/` or `/admin`) with `handler`. Clients connecting to a namespace
    /// without a handler get CONNECT_ERROR `{"message":"Invalid namespace"}`.
    pub fn namespace(mut self, name: &str, handler: impl NamespaceHandler) -> Self {
        let handler: Arc<dyn NamespaceHandler> = Arc::new(handler);
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                shared.namespaces.insert(name.to_owned(), handler);
            }
            // Only reachable once serving has started; rebuild to stay correct.
            None => {
                let mut namespaces = self.shared.namespaces.clone();
                namespaces.insert(name.to_owned(), handler);
                self.shared = Arc::new(Shared {
                    config: self.shared.config.clone(),
                    namespaces,
                });
            }
        }
        self
    }
}

impl EngineHandler for SocketIo {
    async fn on_open(&self, socket: &EngineSocket) {
        let connection = Arc::new(Connection::new(self.shared.clone()));
        socket.set_data(connection.clone());
        let engine = socket.clone();
        let weak = Arc::downgrade(&connection);
        let timeout = self.shared.config.connect_timeout;
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {
                    if weak.upgrade().is_some_and(|c| !c.has_sockets()) {
                        tracing::debug!(sid = engine.sid(), "no namespace joined in time");
                        engine.close(CloseReason::Forced);
                    }
                }
                () = engine.closed() => {}
            }
        });
    }

    async fn on_message(&self, socket: &EngineSocket, message: Message) {
        if let Some(connection) = socket.data::<Connection>() {
            connection.on_message(socket, message).await;
        }
    }

    async fn on_close(&self, socket: &EngineSocket, reason: CloseReason) {
        if let Some(connection) = socket.data::<Connection>() {
            connection.close(reason).await;
        }
    }
}
