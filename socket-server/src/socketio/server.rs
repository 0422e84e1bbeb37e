//! [`SocketIo`]: the namespaces and settings, plugged into Engine.IO as its handler.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::connection::Connection;
use super::handler::NamespaceHandler;
use crate::engineio::{CloseReason, EngineHandler, EngineSocket, Message, Now, WeakEngineSocket};

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
    connect_timeouts: Arc<ConnectTimeouts>,
}

/// The connect timeout of every connection of a server: one queue and one task, instead of a
/// timer task per connection (~0.5 KiB each, for as long as the connection lives). Every
/// connection gets the same timeout, so the queue is in deadline order: the task sleeps until
/// the front's deadline, checks the connections due, and ends when the queue is empty (the next
/// connection starts it again).
struct ConnectTimeouts {
    timeout: Duration,
    state: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<(Instant, WeakEngineSocket)>,
    /// Whether the task is running (it empties the queue before it ends).
    running: bool,
}

impl ConnectTimeouts {
    fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            state: Mutex::new(Pending::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Each use is a few queue operations that leave it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes `socket` if it has joined no namespace `timeout` from now.
    fn watch(self: &Arc<Self>, socket: &EngineSocket) {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.state();
        state.queue.push_back((deadline, socket.downgrade()));
        if !state.running {
            state.running = true;
            tokio::spawn(self.clone().run());
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let next = {
                let mut state = self.state();
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some((deadline, _)) = state.queue.front() {
                    if *deadline > now {
                        break;
                    }
                    if let Some((_, socket)) = state.queue.pop_front() {
                        due.push(socket);
                    }
                }
                let next = state.queue.front().map(|(deadline, _)| *deadline);
                if next.is_none() {
                    state.running = false;
                    state.queue = VecDeque::new();
                }
                drop(state);
                for socket in due.iter().filter_map(WeakEngineSocket::upgrade) {
                    expire(&socket);
                }
                next
            };
            match next {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => return,
            }
        }
    }
}

/// A connection's connect timeout passed: closed unless it joined a namespace.
fn expire(socket: &EngineSocket) {
    let joined = socket.data::<Connection>().is_some_and(|c| c.has_sockets());
    if !joined && !socket.is_closed() {
        tracing::debug!(sid = socket.sid(), "no namespace joined in time");
        socket.close(CloseReason::Forced);
    }
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
                connect_timeouts: ConnectTimeouts::new(config.connect_timeout),
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
                    connect_timeouts: self.shared.connect_timeouts.clone(),
                });
            }
        }
        self
    }
}

impl EngineHandler for SocketIo {
    async fn on_open(&self, socket: &EngineSocket) {
        let connection = Arc::new(Connection::new(self.shared.clone()));
        socket.set_data(connection);
        self.shared.connect_timeouts.watch(socket);
    }

    async fn on_message(&self, socket: &EngineSocket, message: Message) {
        if let Now::Later(rest) = self.on_message_now(socket, message) {
            rest.await;
        }
    }

    fn on_message_now(&self, socket: &EngineSocket, message: Message) -> Now {
        match socket.data::<Connection>() {
            Some(connection) => connection.on_message_now(socket, message),
            None => Now::Handled,
        }
    }

    async fn on_close(&self, socket: &EngineSocket, reason: CloseReason) {
        if let Some(connection) = socket.data::<Connection>() {
            connection.close(reason).await;
        }
    }
}
