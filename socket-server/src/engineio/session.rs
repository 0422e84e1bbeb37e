//! One Engine.IO session, whatever its transport: its bounded outbox, its state, how it closes.

use std::any::Any;
use std::future::Future as _;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use futures::task::AtomicWaker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::errors::CloseReason;
use super::heartbeat::Pongs;
use super::hooks::RequestInfo;
use super::packet::{Frame, Outgoing};
use super::wire::Wire;
use crate::queue::{self, TrySendError};

/// The receiving end of a session's outbox, owned in turn by each poll and then by the
/// WebSocket writer. One item is one whole packet, whose frames are written back to back.
/// `carry` holds a packet taken out but not sent because it did not fit in a polling payload.
pub(crate) struct Outbox {
    pub rx: queue::Receiver<Outgoing>,
    pub carry: Option<Outgoing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    WebSocket,
}

/// A polling client drains its outbox once per round trip, so a burst fanned out within a
/// millisecond (a busy group) is queued whole before its next poll, however quickly it polls:
/// its outbox holds this many times the outbox capacity. A WebSocket, drained as it goes, keeps
/// the capacity itself (see [`Session::send`]). The queue allocates only what it holds.
pub(crate) const POLLING_BURST: usize = 4;

pub(crate) struct Session {
    pub sid: Arc<str>,
    pub request: Arc<RequestInfo>,
    /// The bounded outbox, counted in packets: a full outbox closes the session (slow consumer).
    /// Bounded by [`POLLING_BURST`] × the capacity; once a WebSocket serves the session, by
    /// `websocket_capacity`.
    tx: queue::Sender<Outgoing>,
    websocket_capacity: usize,
    /// Locked by the transport that currently drains the outbox.
    pub outbox: tokio::sync::Mutex<Outbox>,
    pub transport: Mutex<Transport>,
    /// Set while a WebSocket is probing an upgrade, so a second one is refused.
    pub upgrading: AtomicBool,
    /// True from the answer to an upgrade's probe until the upgrade completes or is abandoned.
    /// The client has paused polling by then: its pending poll is ended with a `noop`, and a
    /// poll that still arrives waits for the outcome (400 if the upgrade completed). Created by
    /// the first poll or probe ([`Session::probed`]): a session that is WebSocket from the start
    /// never needs it (a watch channel is ~0.4 KiB).
    probed: OnceLock<watch::Sender<bool>>,
    /// Cancelled once a poll delivered the closed session's last packet (`noop` after the
    /// client's close, `close` otherwise); until then a client-closed session stays in the
    /// table for a while, so the poll that follows its close gets that `noop`, not a 400.
    pub farewell: CancellationToken,
    /// Set while a polling GET is pending: a second one is a protocol error.
    pub poll_busy: AtomicBool,
    /// Set while a polling POST is being handled: a second one is a protocol error.
    pub post_busy: AtomicBool,
    /// When the last pong arrived (the session's opening until the first): the heartbeat's
    /// schedule, and what a request checks to find a session past its deadline.
    pub pongs: Pongs,
    /// Cancelled when the session closes (by [`Session::close`] only); every task of the
    /// session watches it.
    pub closed: CancellationToken,
    /// Set by [`Session::close`] before `closed` is cancelled: [`Session::is_closed`] reads it,
    /// one atomic load, where the token's own check takes its lock (every send checks).
    reason: OnceLock<CloseReason>,
    /// Woken by [`Session::close`]: the WebSocket connection's loop waits on it
    /// ([`Session::poll_closed`]) rather than on `closed`, whose wait takes the token's lock to
    /// check and again to enter and leave its waiter list on every turn of that loop.
    close_waker: AtomicWaker,
    /// State the handler attaches to the session (see [`EngineSocket::set_data`]).
    data: OnceLock<Arc<dyn Any + Send + Sync>>,
    /// The WebSocket's bytes to write, once a WebSocket serves the session: while it is open,
    /// [`Session::send`] writes a packet nothing is queued before itself.
    wire: OnceLock<Arc<Wire>>,
}

impl Session {
    pub fn new(
        sid: Arc<str>,
        request: Arc<RequestInfo>,
        transport: Transport,
        capacity: usize,
    ) -> Self {
        let (tx, rx) = queue::bounded(capacity.saturating_mul(POLLING_BURST));
        Self {
            sid,
            request,
            tx,
            websocket_capacity: capacity,
            outbox: tokio::sync::Mutex::new(Outbox { rx, carry: None }),
            transport: Mutex::new(transport),
            upgrading: AtomicBool::new(false),
            probed: OnceLock::new(),
            farewell: CancellationToken::new(),
            poll_busy: AtomicBool::new(false),
            post_busy: AtomicBool::new(false),
            pongs: Pongs::new(tokio::time::Instant::now()),
            closed: CancellationToken::new(),
            reason: OnceLock::new(),
            close_waker: AtomicWaker::new(),
            data: OnceLock::new(),
            wire: OnceLock::new(),
        }
    }

    /// A WebSocket serves the session from now on, writing through `wire`: senders write to it
    /// themselves while it is open ([`Wire::open`]). A session is served by one WebSocket at
    /// most (a second is refused).
    pub fn serve_wire(&self, wire: &Arc<Wire>) {
        if self.wire.set(wire.clone()).is_ok() {
            wire.open(self.tx.clone());
        }
    }

    pub fn transport(&self) -> Transport {
        // A poisoned lock still holds a valid enum: read through it.
        *self.transport.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_transport(&self, transport: Transport) {
        *self.transport.lock().unwrap_or_else(|e| e.into_inner()) = transport;
    }

    /// Closes the session; the first reason given is kept.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.closed.cancel();
        self.close_waker.wake();
    }

    /// Ready once the session is closed; until then the waker of `cx` is woken when it closes.
    /// For one waiter at a time (the WebSocket connection's loop, which calls
    /// [`Session::forget_close_waker`] when it ends); other tasks wait on `closed`. The loop polls
    /// it on every turn, several per message: `registered` keeps the waker registered, and while
    /// the same task polls again only the close is looked at, one atomic load where a
    /// registration is two atomic exchanges.
    pub fn poll_closed(
        &self,
        cx: &mut std::task::Context<'_>,
        registered: &mut Option<std::task::Waker>,
    ) -> std::task::Poll<()> {
        if !polled_before(registered, cx) {
            // Registered before looking: a close between the look and the wait wakes us.
            self.close_waker.register(cx.waker());
        }
        if self.is_closed() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    /// Resolves when the session closes, as `closed.cancelled()`; but polled again with the
    /// waker it already registered (the session's driver, polled whenever its connection task
    /// wakes), it costs one atomic load where the token's wait takes its lock twice.
    pub async fn wait_closed(&self) {
        let cancelled = self.closed.cancelled();
        tokio::pin!(cancelled);
        let mut registered: Option<std::task::Waker> = None;
        std::future::poll_fn(|cx| {
            // `reason` is set before `closed` is cancelled, so a wake-up for the close sees it.
            if self.is_closed() {
                return std::task::Poll::Ready(());
            }
            if polled_before(&mut registered, cx) {
                return std::task::Poll::Pending;
            }
            cancelled.as_mut().poll(cx)
        })
        .await
    }

    /// Drops the waker [`Session::poll_closed`] registered.
    pub fn forget_close_waker(&self) {
        drop(self.close_waker.take());
    }

    pub fn is_closed(&self) -> bool {
        self.reason.get().is_some()
    }

    pub fn close_reason(&self) -> CloseReason {
        self.reason
            .get()
            .copied()
            .unwrap_or(CloseReason::TransportClose)
    }

    pub fn record_pong(&self) {
        self.pongs.record(tokio::time::Instant::now());
    }

    /// Whether an upgrade's probe was answered and the upgrade is not over yet (see `probed`).
    pub fn probed(&self) -> &watch::Sender<bool> {
        self.probed.get_or_init(|| watch::Sender::new(false))
    }

    /// Queues one packet without waiting, as one outbox item: its frames cannot be interleaved
    /// with another sender's. A full outbox closes the session as a slow consumer.
    pub fn send(&self, packet: Outgoing) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if packet.frames().is_empty() {
            return Ok(());
        }
        if let Some(wire) = self.wire.get() {
            if wire.send(&packet, &self.tx) {
                return Ok(());
            }
            if self.tx.queued() >= self.websocket_capacity {
                self.close(CloseReason::SlowConsumer);
                return Err(SendError::Full);
            }
        }
        match self.tx.try_send(packet) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.close(CloseReason::SlowConsumer);
                Err(SendError::Full)
            }
            Err(TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }
}

/// Whether the task of `cx` polled before with `registered` (its waker is still registered where
/// the caller registered it): then only the state needs looking at. Otherwise its waker is kept
/// in `registered`, and the caller registers it.
fn polled_before(registered: &mut Option<std::task::Waker>, cx: &std::task::Context<'_>) -> bool {
    if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        return true;
    }
    *registered = Some(cx.waker().clone());
    false
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the session is closed")]
    Closed,
    #[error("the outbox is full: session closed as a slow consumer")]
    Full,
}

/// A cheap, clonable handle on a session, given to the [`EngineHandler`](super::EngineHandler).
#[derive(Clone)]
pub struct EngineSocket {
    pub(crate) session: Arc<Session>,
}

impl std::fmt::Debug for EngineSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSocket")
            .field("sid", &self.sid())
            .finish()
    }
}

/// A handle on a session that does not keep it alive (for timers that outlive it).
#[derive(Clone)]
pub struct WeakEngineSocket {
    session: Weak<Session>,
}

impl WeakEngineSocket {
    /// The session, if it still exists.
    pub fn upgrade(&self) -> Option<EngineSocket> {
        self.session
            .upgrade()
            .map(|session| EngineSocket { session })
    }
}

impl EngineSocket {
    /// A handle that does not keep the session alive.
    pub fn downgrade(&self) -> WeakEngineSocket {
        WeakEngineSocket {
            session: Arc::downgrade(&self.session),
        }
    }

    /// The session id (`sid`).
    pub fn sid(&self) -> &str {
        &self.session.sid
    }

    /// The request that opened the session.
    pub fn request(&self) -> &Arc<RequestInfo> {
        &self.session.request
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.session.send(Outgoing::One(Frame::message(text)))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: bytes::Bytes) -> Result<(), SendError> {
        self.session.send(Outgoing::One(Frame::binary(data)))
    }

    /// Queues one packet: its frames go out in order and back to back, all or none, taking one
    /// place in the outbox. A `Many` packet's frames are shared, so queuing the same packet to many
    /// sessions copies nothing.
    pub fn send_packet(&self, packet: impl Into<Outgoing>) -> Result<(), SendError> {
        self.session.send(packet.into())
    }

    /// Queues already-encoded frames as one packet (see [`send_packet`](Self::send_packet)).
    /// Copies the slice into a shared one: prefer `send_packet` with an `Arc<[Frame]>` for fan-out.
    pub fn send_frames(&self, frames: &[Frame]) -> Result<(), SendError> {
        let packet = match frames {
            [frame] => Outgoing::One(frame.clone()),
            frames => Outgoing::Many(frames.into()),
        };
        self.session.send(packet)
    }

    /// Closes the session. Idempotent; the first reason is the one reported.
    pub fn close(&self, reason: CloseReason) {
        self.session.close(reason);
    }

    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Resolves when the session is closed.
    pub async fn closed(&self) {
        self.session.closed.cancelled().await
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.is_closed().then(|| self.session.close_reason())
    }

    /// A handle on a session of its own, outside any engine, with an outbox of `capacity`.
    #[cfg(test)]
    pub(crate) fn for_test(capacity: usize) -> Self {
        let request = RequestInfo::for_test();
        let session = Session::new(
            "sid".into(),
            Arc::new(request),
            Transport::Polling,
            capacity,
        );
        Self {
            session: Arc::new(session),
        }
    }

    /// Attaches the handler's per-session state; only the first call succeeds.
    pub fn set_data<T: Send + Sync + 'static>(&self, data: Arc<T>) -> bool {
        self.session.data.set(data).is_ok()
    }

    /// The state attached with [`set_data`](Self::set_data), if it has type `T`.
    pub fn data<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.session.data.get()?.clone().downcast::<T>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::packet::PING;

    fn session(capacity: usize) -> Session {
        let request = RequestInfo::for_test();
        Session::new(
            "sid".into(),
            Arc::new(request),
            Transport::Polling,
            capacity,
        )
    }

    fn pair() -> Outgoing {
        Outgoing::Many(Arc::from([PING, PING]))
    }

    #[tokio::test]
    async fn a_full_outbox_closes_the_session_as_a_slow_consumer() {
        // A polling session's outbox: the polling burst times the capacity
        let s = session(1);
        for _ in 0..POLLING_BURST {
            s.send(PING.into()).unwrap();
        }
        assert!(!s.is_closed());
        assert_eq!(s.send(pair()), Err(SendError::Full));
        assert!(s.is_closed());
        assert_eq!(s.close_reason(), CloseReason::SlowConsumer);
        // all or none: the failed pair queued nothing
        let mut outbox = s.outbox.lock().await;
        for _ in 0..POLLING_BURST {
            assert_eq!(outbox.rx.try_recv().ok(), Some(PING.into()));
        }
        assert!(outbox.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_packet_of_several_frames_is_one_outbox_item() {
        // Arrange: room for two packets
        let s = session(2);

        // Act: a packet of two frames, then a single frame
        s.send(pair()).unwrap();
        s.send(PING.into()).unwrap();

        // Assert: both fit, and the pair comes out whole, before the single frame
        assert!(!s.is_closed());
        let mut outbox = s.outbox.lock().await;
        assert_eq!(outbox.rx.try_recv().ok(), Some(pair()));
        assert_eq!(outbox.rx.try_recv().ok(), Some(PING.into()));
    }

    #[test]
    fn the_first_close_reason_wins() {
        let s = session(1);
        s.close(CloseReason::PingTimeout);
        s.close(CloseReason::ServerShutdown);
        assert_eq!(s.close_reason(), CloseReason::PingTimeout);
        assert_eq!(s.send(PING.into()), Err(SendError::Closed));
    }
}
