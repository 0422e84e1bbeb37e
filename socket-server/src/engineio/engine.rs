//! The shared state of an Engine.IO endpoint: its sessions, and what happens to a session from
//! creation (heartbeat, handler callbacks) to removal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::config::EngineConfig;
use super::errors::CloseReason;
use super::heartbeat::{self, HeartbeatEnd};
use super::hooks::{Hooks, RequestInfo};
use super::packet::{Frame, Message, Packet, PING};
use super::server::Occurrences;
use super::session::{EngineSocket, Session, Transport};

/// What the layer above Engine.IO (Socket.IO) implements. Calls for one session never overlap:
/// `on_open` first, then each message in arrival order (the next is read only once the previous
/// call returned, which is how back-pressure reaches the client), then `on_close` once.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened. Messages sent from here are delivered after the handshake.
    fn on_open(&self, socket: &EngineSocket) -> impl Future<Output = ()> + Send;
    /// A message arrived. Keep it short: the session's reader waits for it.
    fn on_message(
        &self,
        socket: &EngineSocket,
        message: Message,
    ) -> impl Future<Output = ()> + Send;
    /// A message, offered first for handling without waiting, in the task that read it (a
    /// WebSocket's connection, a polling POST); what is sent meanwhile leaves at the end of
    /// the turn. By default it is declined and goes to [`Self::on_message`]; a handler that
    /// takes it saves the message a future of its own.
    fn on_message_now(&self, socket: &EngineSocket, message: Message) -> Now {
        let _ = socket;
        Now::Declined(message)
    }
    /// The session closed; it can no longer send.
    fn on_close(
        &self,
        socket: &EngineSocket,
        reason: CloseReason,
    ) -> impl Future<Output = ()> + Send;
}

/// What [`EngineHandler::on_message_now`] made of a message.
pub enum Now {
    /// Handled.
    Handled,
    /// Not looked at: [`EngineHandler::on_message`] handles it.
    Declined(Message),
    /// Begun; the rest is this future, awaited before the next message is read.
    Later(Pending<'static>),
}

/// What is left of handling a packet.
pub type Pending<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub(crate) struct Engine<H> {
    pub config: EngineConfig,
    pub handler: Arc<H>,
    pub hooks: Hooks,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    /// Every task the endpoint spawns (connections, sessions), awaited at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled when shutdown begins: handshakes are refused, open sessions carry on.
    pub draining: CancellationToken,
    /// Cancelled when every session is closed for shutdown.
    pub shutdown: CancellationToken,
    /// WebSocket requests that came without their upgrade headers (see `router`).
    pub upgrades_dropped: Mutex<Occurrences>,
}

impl<H: EngineHandler> Engine<H> {
    pub fn new(config: EngineConfig, handler: Arc<H>, hooks: Hooks) -> Self {
        Self {
            config,
            handler,
            hooks,
            sessions: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            draining: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            upgrades_dropped: Mutex::new(Occurrences::default()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn session(&self, sid: &str) -> Option<Arc<Session>> {
        self.sessions().get(sid).cloned()
    }

    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Removes `session` from the table (if it is still the one under its sid).
    pub fn forget(&self, session: &Arc<Session>) {
        let mut sessions = self.sessions();
        if sessions
            .get(&session.sid)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.sid);
            crate::memory::shrink_sparse(&mut *sessions);
        }
    }

    /// Creates and registers a session, starts its driver task (heartbeat, close; for polling
    /// only: the caller runs [`drive`] for a WebSocket session) and runs the handler's
    /// `on_open`, so that no message of the session is handled before it.
    pub async fn create_session(
        self: &Arc<Self>,
        request: RequestInfo,
        transport: Transport,
    ) -> Arc<Session> {
        let sid = new_sid();
        let session = Arc::new(Session::new(
            sid.clone(),
            Arc::new(request),
            transport,
            self.config.outbox_capacity,
        ));
        self.sessions().insert(sid, session.clone());
        // A handshake that passed the router's shutdown check can get here after `close_all`
        // took its snapshot of the table; the shutdown flag is set before that snapshot, so it
        // is seen here and the session does not outlive shutdown.
        if self.shutdown.is_cancelled() {
            session.close(CloseReason::ServerShutdown);
        }
        tracing::debug!(sid = %session.sid, ?transport, "engine.io session opened");
        // A WebSocket session's connection task runs `drive` itself (one task per connection).
        if transport == Transport::Polling {
            let span = tracing::debug_span!("engine_session", conn_id = %session.sid);
            self.tasks
                .spawn(drive(self.clone(), session.clone()).instrument(span));
        }
        let socket = EngineSocket {
            session: session.clone(),
        };
        self.handler.on_open(&socket).await;
        session
    }

    /// The handshake packet for this session.
    pub fn open_frame(&self, sid: &str, upgrades: &[&str]) -> Frame {
        super::packet::open_packet(
            sid,
            upgrades,
            millis(self.config.ping_interval),
            millis(self.config.ping_timeout),
            self.config.max_payload,
        )
    }

    /// Closes every session (at shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        let sessions: Vec<_> = self.sessions().values().cloned().collect();
        for session in sessions {
            session.close(reason);
        }
    }

    /// Closes `session` for a ping timeout if its heartbeat deadline has passed, even if the
    /// heartbeat's timer has not fired yet (a busy runtime): a request that comes after the
    /// deadline finds the session over, as the schedule says.
    pub fn expire_overdue(&self, session: &Session) {
        let last = session.pongs.last();
        let (interval, timeout) = (self.config.ping_interval, self.config.ping_timeout);
        if heartbeat::overdue(last, interval, timeout, tokio::time::Instant::now()) {
            session.close(CloseReason::PingTimeout);
        }
    }

    /// Handles one packet received on either transport.
    pub async fn on_packet(&self, session: &Arc<Session>, packet: Packet) {
        if let Some(rest) = self.on_packet_now(session, packet) {
            rest.await;
        }
    }

    /// Handles one packet as far as it can without waiting; what is left is returned, to be
    /// awaited before the next packet.
    pub fn on_packet_now(&self, session: &Arc<Session>, packet: Packet) -> Option<Pending<'_>> {
        match packet {
            Packet::Pong(_) => session.record_pong(),
            // Clients of v4 do not ping (except the upgrade probe, handled by the WebSocket
            // transport); answer anyway, as older clients expect.
            Packet::Ping(data) => {
                let pong = Frame::text(format!("3{data}"));
                let _ = session.send(pong.into());
            }
            Packet::Message(message) => {
                let socket = EngineSocket {
                    session: session.clone(),
                };
                return match self.handler.on_message_now(&socket, message) {
                    Now::Handled => None,
                    Now::Later(rest) => Some(rest),
                    Now::Declined(message) => Some(Box::pin(async move {
                        self.handler.on_message(&socket, message).await;
                    })),
                };
            }
            Packet::Close => session.close(CloseReason::TransportClose),
            Packet::Open | Packet::Upgrade | Packet::Noop => {}
        }
        None
    }
}

/// Runs a session until it closes: the heartbeat, then removal and `on_close`.
pub(crate) async fn drive<H: EngineHandler>(engine: Arc<Engine<H>>, session: Arc<Session>) {
    let socket = EngineSocket {
        session: session.clone(),
    };
    let beat = heartbeat::run(
        engine.config.ping_interval,
        engine.config.ping_timeout,
        || session.send(PING.into()).is_ok(),
        &session.pongs,
    );
    tokio::select! {
        end = beat => match end {
            HeartbeatEnd::Timeout => session.close(CloseReason::PingTimeout),
            // Already closed by `send` if the outbox was full.
            HeartbeatEnd::SendFailed => session.close(CloseReason::SlowConsumer),
        },
        () = session.wait_closed() => {}
    }
    let reason = session.close_reason();
    // The client closed a polling session with no poll pending to end with a `noop`: its next
    // poll (usually sent together with the close) gets that `noop` (see `polling::poll`), as
    // the reference server does, instead of a 400 for an unknown sid.
    let awaits_farewell = reason == CloseReason::TransportClose
        && session.transport() == Transport::Polling
        && !session.farewell.is_cancelled();
    if !awaits_farewell {
        let mut sessions = engine.sessions();
        sessions.remove(&session.sid);
        crate::memory::shrink_sparse(&mut *sessions);
    }
    tracing::debug!(sid = %session.sid, %reason, "engine.io session closed");
    // Boxed: it runs once, its state need not be part of the session's task while it waits.
    Box::pin(engine.handler.on_close(&socket, reason)).await;
    if awaits_farewell {
        // A live client polls again within a heartbeat period, or it would time out anyway.
        let linger = engine.config.ping_interval + engine.config.ping_timeout;
        tokio::select! {
            () = tokio::time::sleep(linger) => {}
            () = session.farewell.cancelled() => {}
            () = engine.shutdown.cancelled() => {}
        }
        engine.forget(&session);
    }
}

/// 16 random bytes, URL-safe base64 (22 characters).
fn new_sid() -> Arc<str> {
    URL_SAFE_NO_PAD
        .encode(uuid::Uuid::new_v4().as_bytes())
        .into()
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Silent;

    impl EngineHandler for Silent {
        async fn on_open(&self, _socket: &EngineSocket) {}
        async fn on_message(&self, _socket: &EngineSocket, _message: Message) {}
        async fn on_close(&self, _socket: &EngineSocket, _reason: CloseReason) {}
    }

    #[tokio::test]
    async fn a_session_created_after_close_all_took_its_snapshot_is_closed_for_shutdown() {
        // Arrange: shutdown began and closed every session there was
        let engine = Arc::new(Engine::new(
            EngineConfig::default(),
            Arc::new(Silent),
            Hooks::default(),
        ));
        engine.shutdown.cancel();
        engine.close_all(CloseReason::ServerShutdown);

        // Act: a handshake that passed the shutdown check before it was cancelled
        let session = engine
            .create_session(RequestInfo::for_test(), Transport::Polling)
            .await;

        // Assert
        assert!(session.is_closed());
        assert_eq!(session.close_reason(), CloseReason::ServerShutdown);
        engine.tasks.close();
        tokio::time::timeout(std::time::Duration::from_secs(1), engine.tasks.wait())
            .await
            .expect("the session's task should end at once");
        assert_eq!(engine.session_count(), 0);
    }
}
