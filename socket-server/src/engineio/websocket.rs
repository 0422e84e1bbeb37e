//! The WebSocket transport: the HTTP upgrade on the hyper connection, the probe of an upgrade from
//! polling, then one task per connection that reads, writes and closes it.
//!
//! STYLE rule 17 asks for a reader task and a writer task per connection. This transport departs
//! from it on purpose: each task costs its header and its largest state for as long as the
//! connection lives, and a relay holds tens of thousands of mostly idle connections (issue 12,
//! memory per connection). One `select!` loop reads, runs the handler for what was read and
//! writes the outbox at the same time, so a slow handler still does not hold the writes back.
//! A message the handler takes at once ([`EngineHandler::on_message_now`], as Socket.IO events
//! whose handler never waits) is handled in place, with no future; what is left of a handler
//! that waits, and the close path, are boxed, so the task's own state stays a few hundred bytes
//! while the connection is idle. A session that is WebSocket from the start also
//! runs its heartbeat and close ([`drive`]) in the same task.
//!
//! Most packets do not wait for that task: while it serves the socket, a sender that finds
//! nothing queued before its packet writes it itself ([`Wire`]), and the task writes only what
//! the socket did not take at once and what was queued.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{header, HeaderMap, Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::either::Either;

use super::engine::{drive, Engine, EngineHandler, Pending};
use super::errors::{Body, CloseReason, HttpError};
use super::hooks::RequestInfo;
use super::packet::{decode_text, decode_text_owned, Frame, Message, Outgoing, Packet, PONG_PROBE};
use super::session::{Outbox, Session, Transport};
use super::wire::{cork, corked, Corked, Wire};
use super::ws_frame::{
    encode, encode_close, FrameError, FrameReader, Incoming, OP_CLOSE, OP_PONG, READ_CHUNK,
};

/// How long the connection may spend flushing queued frames and the close frame once the session
/// is closed, so a stalled client cannot hold shutdown.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

fn asks_for_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a request on the WebSocket transport is a GET without `Upgrade: websocket`: what a
/// proxy that drops hop-by-hop headers forwards of a client's upgrade.
pub(crate) fn upgrade_dropped(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::GET && !asks_for_websocket(headers)
}

/// Checks a WebSocket upgrade request and builds the 101 answer (RFC 6455 section 4.2.2).
pub(crate) fn accept_response(
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>, HttpError> {
    if *method != Method::GET || !asks_for_websocket(headers) {
        return Err(HttpError::BadRequest);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(HttpError::BadRequest);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HttpError::BadRequest)?;
    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        header::HeaderValue::from_str(&accept).map_err(|_| HttpError::BadRequest)?,
    );
    Ok(response)
}

/// The upgraded connection's stream: the TCP stream itself, taken back from hyper, or hyper's
/// `Upgraded` where the connection was served over anything else. `Upgraded` reads and writes
/// through a boxed, dynamically dispatched stream behind two adapters (tokio's I/O traits to
/// hyper's and back), a cost on every read and write of the connection's life. Of a TCP stream
/// the connection keeps the reading half; the writing half is in the [`Wire`], through which
/// the session's senders write it themselves.
type Io = Either<OwnedReadHalf, TokioIo<Upgraded>>;

/// The stream, the writing half of a TCP stream, and the bytes hyper read past the upgrade
/// request (the client's first frames if it sent them at once), which come before anything
/// read from it.
fn take_stream(upgraded: Upgraded) -> (Io, Option<OwnedWriteHalf>, Bytes) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            (Either::Left(read), Some(write), parts.read_buf)
        }
        Err(upgraded) => (Either::Right(TokioIo::new(upgraded)), None, Bytes::new()),
    }
}

/// One upgraded connection: the socket, the frame reader, what was read and not handled yet,
/// and (in the [`Wire`]) what is to be written. Every buffer is empty (no allocation) on an
/// idle connection.
struct Conn {
    io: Io,
    reader: FrameReader,
    /// Messages read and not handled yet (several can come in one read).
    inbound: VecDeque<Incoming>,
    /// The bytes to write, shared with the session's senders while [`serve`] runs.
    wire: Arc<Wire>,
    /// What was wrong with the frames hyper read past the upgrade request: the first read
    /// reports it, once the frames before it were handled, as if it had read them.
    read_ahead_failed: Option<FrameError>,
}

/// What one poll of the connection's socket did.
enum IoEvent {
    /// Bytes arrived (what they complete is in `inbound`).
    Read,
    /// The client closed the TCP connection.
    Eof,
    ReadFailed(ReadError),
    /// What was waiting in the wire was written whole.
    Written,
    WriteFailed(io::Error),
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ReadError {
    fn close_reason(&self) -> CloseReason {
        match self {
            ReadError::Frame(FrameError::TooLarge) => CloseReason::PayloadTooLarge,
            ReadError::Frame(FrameError::Utf8) => CloseReason::InvalidUtf8,
            ReadError::Frame(FrameError::Protocol) | ReadError::Io(_) => {
                CloseReason::TransportError
            }
        }
    }
}

impl Conn {
    fn new(io: Io, tcp: Option<OwnedWriteHalf>, engine_config: &super::EngineConfig) -> Self {
        Self {
            io,
            reader: FrameReader::new(engine_config.max_payload),
            inbound: VecDeque::new(),
            wire: Arc::new(Wire::new(engine_config.ws_write_buffer, tcp)),
            read_ahead_failed: None,
        }
    }

    /// Encodes one frame at the end of what is to be written.
    fn push_frame(&self, frame: &Frame) {
        self.wire.lock().push_frame(frame);
    }

    /// Encodes one packet's frames, back to back.
    fn push(&self, packet: &Outgoing) {
        self.wire.lock().push(packet);
    }

    /// Answers a ping from the client.
    fn pong(&self, data: &[u8]) {
        encode(OP_PONG, data, &mut self.wire.lock().out);
    }

    /// The next message read and not handled yet; the queue's buffer is given back once empty.
    fn next_inbound(&mut self) -> Option<Incoming> {
        let next = self.inbound.pop_front();
        if next.is_some() && self.inbound.is_empty() {
            self.inbound = VecDeque::new();
        }
        next
    }

    /// Writes what waits in the wire, and reads once if `read`. The read goes through a buffer
    /// on this function's stack: a waiting connection holds none. The buffer is left
    /// uninitialised (the socket writes it, [`ReadBuf`] tracks what was written): zeroing its
    /// 8 KiB on every poll was more than half the echo's instructions per message.
    fn poll_io(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<IoEvent> {
        match self.poll_write_out(cx) {
            Poll::Ready(Ok(true)) => return Poll::Ready(IoEvent::Written),
            Poll::Ready(Err(error)) => return Poll::Ready(IoEvent::WriteFailed(error)),
            Poll::Ready(Ok(false)) | Poll::Pending => {}
        }
        if read {
            if let Some(error) = self.read_ahead_failed.take() {
                return Poll::Ready(IoEvent::ReadFailed(error.into()));
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            if let Poll::Ready(result) = Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                let event = match result {
                    Err(error) => IoEvent::ReadFailed(error.into()),
                    Ok(()) if buf.filled().is_empty() => IoEvent::Eof,
                    Ok(()) => match self.reader.feed(buf.filled(), &mut self.inbound) {
                        Ok(()) => IoEvent::Read,
                        Err(error) => IoEvent::ReadFailed(error.into()),
                    },
                };
                return Poll::Ready(event);
            }
        }
        Poll::Pending
    }

    /// Writes what waits in the wire until all of it is written (then its buffer is given
    /// back): ready with whether there was anything to write.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        match &mut self.io {
            Either::Left(_) => loop {
                let mut state = self.wire.lock();
                if state.out.is_empty() {
                    return Poll::Ready(Ok(false));
                }
                if state.try_write()? {
                    return Poll::Ready(Ok(true));
                }
                // The socket took no more: wait until it is writable.
                ready!(state.poll_write_ready(cx))?;
            },
            Either::Right(upgraded) => {
                let mut state = self.wire.lock();
                if state.out.is_empty() {
                    return Poll::Ready(Ok(false));
                }
                while state.written < state.out.len() {
                    let n = ready!(
                        Pin::new(&mut *upgraded).poll_write(cx, &state.out[state.written..])
                    )?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    state.written += n;
                }
                ready!(Pin::new(upgraded).poll_flush(cx))?;
                state.written_all();
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Writes what waits in the wire, reading nothing meanwhile.
    async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_out(cx).map_ok(|_| ())).await
    }

    /// Writes what is left and a close frame, then ends the sending side (within FINAL_FLUSH).
    async fn finish(mut self, code: u16, reason: &str) {
        {
            let mut state = self.wire.lock();
            if code == 0 {
                encode(OP_CLOSE, &[], &mut state.out);
            } else {
                encode_close(code, reason, &mut state.out);
            }
        }
        let _ = tokio::time::timeout(FINAL_FLUSH, async {
            self.flush().await?;
            match &mut self.io {
                Either::Left(_) => {
                    self.wire.lock().release();
                    Ok(())
                }
                Either::Right(upgraded) => upgraded.shutdown().await,
            }
        })
        .await;
    }
}

impl Drop for Conn {
    /// The session keeps the wire: the socket's writing half goes with the connection.
    fn drop(&mut self) {
        self.wire.lock().release();
    }
}

/// Moves packets from the outbox to `wire` while it has room: ready once at least one was moved,
/// pending (the waker of `cx` registered for the next) if none is queued. Under the wire's lock,
/// so a sender cannot write past a packet taken out and not encoded yet. A full wire takes
/// nothing (no waker registered): only its write makes room, and the connection's wait for the
/// socket to be writable wakes it for that.
fn poll_outbox(wire: &Wire, cx: &mut Context<'_>, outbox: &mut Outbox) -> Poll<()> {
    let mut state = wire.lock();
    if !state.has_room() {
        return Poll::Pending;
    }
    let Poll::Ready(packet) = outbox.rx.poll_recv(cx) else {
        return Poll::Pending;
    };
    // The session holds a sender: `None` cannot come while it lives.
    if let Some(packet) = packet {
        state.push(&packet);
        while state.has_room() {
            let Ok(packet) = outbox.rx.try_recv() else {
                break;
            };
            state.push(&packet);
        }
    }
    Poll::Ready(())
}

async fn upgrade(on_upgrade: OnUpgrade, config: &super::EngineConfig) -> Option<Conn> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade failed");
            return None;
        }
    };
    let (io, tcp, read_ahead) = take_stream(upgraded);
    let mut conn = Conn::new(io, tcp, config);
    conn.read_ahead_failed = conn.reader.feed(&read_ahead, &mut conn.inbound).err();
    Some(conn)
}

/// `transport=websocket` without `sid`: a session that is WebSocket from the start.
///
/// The connection's task lives as long as the connection, and a future reserves room for its
/// arguments and for its largest state for its whole life. So the opening (the upgrade, the
/// handler's `on_open`, the request's copy) runs boxed and is freed once done; what stays is
/// the connection loop and the heartbeat.
pub(crate) fn run_direct<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    on_upgrade: OnUpgrade,
    request: RequestInfo,
) -> impl Future<Output = &'static str> {
    let opening = Box::pin(open_direct(engine, on_upgrade, request));
    async move {
        let Some((engine, session, conn)) = opening.await else {
            return "upgrade failed";
        };
        // The session's heartbeat and close run here too, not in a task of their own.
        tokio::join!(
            serve(engine.clone(), session.clone(), conn),
            drive(engine, session.clone())
        );
        session.close_reason().as_str()
    }
}

async fn open_direct<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    on_upgrade: OnUpgrade,
    request: RequestInfo,
) -> Option<(Arc<Engine<H>>, Arc<Session>, Conn)> {
    let conn = upgrade(on_upgrade, &engine.config).await?;
    let session = engine.create_session(request, Transport::WebSocket).await;
    // The handshake goes first, before whatever `on_open` queued.
    conn.push_frame(&engine.open_frame(&session.sid, &[]));
    Some((engine, session, conn))
}

/// `transport=websocket&sid=...`: probes, then takes the session over from polling. The
/// probing runs boxed, freed once done (as [`run_direct`]'s opening).
pub(crate) fn run_upgrade<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    on_upgrade: OnUpgrade,
    session: Arc<Session>,
) -> impl Future<Output = &'static str> {
    let opening = Box::pin(open_upgrade(engine, on_upgrade, session));
    async move {
        let Some((engine, session, conn)) = opening.await else {
            return "upgrade abandoned";
        };
        serve(engine, session.clone(), conn).await;
        session.close_reason().as_str()
    }
}

async fn open_upgrade<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    on_upgrade: OnUpgrade,
    session: Arc<Session>,
) -> Option<(Arc<Engine<H>>, Arc<Session>, Conn)> {
    let Some(mut conn) = upgrade(on_upgrade, &engine.config).await else {
        session.upgrading.store(false, Ordering::Release);
        return None;
    };
    let probed = tokio::select! {
        result = tokio::time::timeout(engine.config.upgrade_timeout, probe(&session, &mut conn)) => {
            matches!(result, Ok(Ok(())))
        }
        () = session.closed.cancelled() => false,
    };
    if !probed {
        tracing::debug!(sid = %session.sid, "websocket upgrade abandoned");
        session.probed().send_replace(false);
        session.upgrading.store(false, Ordering::Release);
        conn.finish(0, "").await;
        return None;
    }
    // The transport first: a poll waiting on `probed` then sees the upgrade done.
    session.set_transport(Transport::WebSocket);
    session.probed().send_replace(false);
    session.upgrading.store(false, Ordering::Release);
    tracing::debug!(sid = %session.sid, "upgraded to websocket");
    Some((engine, session, conn))
}

/// A second WebSocket for a session that already has one (or is getting one): its handshake was
/// answered; close it at once with 1002 (protocol error) without touching the session.
pub(crate) async fn refuse(config: super::EngineConfig, on_upgrade: OnUpgrade) {
    let Some(conn) = upgrade(on_upgrade, &config).await else {
        return;
    };
    conn.finish(1002, "session already upgraded").await;
}

/// `2probe` → `3probe` (and a noop to end the pending poll), then `5` completes the upgrade.
/// What the client sent after the `5` stays in `conn.inbound` for [`serve`].
async fn probe(session: &Session, conn: &mut Conn) -> Result<(), ()> {
    loop {
        while let Some(incoming) = conn.inbound.pop_front() {
            match incoming {
                Incoming::Text(text) => match decode_text(&text) {
                    Ok(Packet::Ping(data)) if data == "probe" => {
                        conn.push_frame(&PONG_PROBE);
                        conn.flush().await.map_err(|_| ())?;
                        // Ends the pending poll (with a noop), if any.
                        session.probed().send_replace(true);
                    }
                    Ok(Packet::Upgrade) => return Ok(()),
                    _ => return Err(()),
                },
                Incoming::Ping(data) => conn.pong(&data),
                Incoming::Binary(_) => {}
                Incoming::Close(_) => return Err(()),
            }
        }
        match poll_fn(|cx| conn.poll_io(cx, true)).await {
            IoEvent::Read | IoEvent::Written => {}
            IoEvent::Eof | IoEvent::ReadFailed(_) | IoEvent::WriteFailed(_) => return Err(()),
        }
    }
}

/// Runs the connection until the session closes: reads and hands each message to the engine
/// (one at a time, in order: the next is read once the handler returned), and meanwhile writes
/// what the session's senders left in the wire and what they queued in the outbox, coalescing
/// what is queued into one write. On close, writes what is left and a close frame.
///
/// The handler runs corked ([`cork`], [`corked`]): what it sends in one turn leaves in one
/// write per socket at the end of that turn, its own answers included. It is first offered the
/// message to handle at once ([`Engine::on_packet_now`]); only what is left is a future.
async fn serve<H: EngineHandler>(engine: Arc<Engine<H>>, session: Arc<Session>, mut conn: Conn) {
    let mut outbox = session.outbox.lock().await;
    if let Some(packet) = outbox.carry.take() {
        conn.push(&packet);
    }
    // A handle of its own: the loop below borrows `conn` for its reads and writes.
    let wire = conn.wire.clone();
    session.serve_wire(&wire);
    let mut handling: Option<Corked<Pending<'_>>> = None;
    let mut close_registered = None;
    let ended = loop {
        // Messages handled at once follow each other here without a turn of the `select!`
        // below: one that closed the session stops the ones read with it, as the `select!`
        // would have.
        if handling.is_none() && !session.is_closed() {
            if let Some(incoming) = conn.next_inbound() {
                let packet = match incoming {
                    Incoming::Text(text) => match decode_text_owned(text) {
                        Ok(packet) => packet,
                        Err(error) => {
                            tracing::info!(sid = %session.sid, %error, "malformed packet");
                            break Some(CloseReason::ParseError);
                        }
                    },
                    Incoming::Binary(data) => Packet::Message(Message::Binary(data)),
                    Incoming::Ping(data) => {
                        conn.pong(&data);
                        continue;
                    }
                    Incoming::Close(_) => break Some(CloseReason::TransportClose),
                };
                // What can be handled at once is, corked; what is left is awaited below,
                // corked too, before the next message is read.
                let rest = {
                    let _cork = cork();
                    engine.on_packet_now(&session, packet)
                };
                handling = rest.map(corked);
                continue;
            }
        }
        let read = handling.is_none();
        tokio::select! {
            biased;
            () = poll_fn(|cx| session.poll_closed(cx, &mut close_registered)) => break None,
            () = async {
                match handling.as_mut() {
                    Some(handling) => handling.await,
                    None => std::future::pending().await,
                }
            }, if handling.is_some() => handling = None,
            event = poll_fn(|cx| conn.poll_io(cx, read)) => match event {
                IoEvent::Read | IoEvent::Written => {}
                IoEvent::Eof => break Some(CloseReason::TransportClose),
                IoEvent::ReadFailed(error) => {
                    tracing::debug!(sid = %session.sid, %error, "websocket read failed");
                    break Some(error.close_reason());
                }
                IoEvent::WriteFailed(error) => {
                    tracing::debug!(sid = %session.sid, %error, "websocket write failed");
                    break Some(CloseReason::TransportError);
                }
            },
            () = poll_fn(|cx| poll_outbox(&wire, cx, &mut outbox)) => {}
        }
    };
    // Senders queue from now on (and find the session closed): what is left goes out below.
    wire.close();
    session.forget_close_waker();
    if let Some(reason) = ended {
        session.close(reason);
    }
    // A message being handled is handled to the end, as if read before the close.
    if let Some(handling) = handling.take() {
        handling.await;
    }
    let reason = session.close_reason();
    while let Ok(packet) = outbox.rx.try_recv() {
        conn.push(&packet);
    }
    Box::pin(conn.finish(reason.ws_close_code(), reason.as_str())).await;
}
