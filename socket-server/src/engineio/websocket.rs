//! The WebSocket transport: the HTTP upgrade on the hyper connection, the probe of an upgrade from
//! polling, then one reader and one writer task per connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{header, HeaderMap, Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument as _;

use super::config::EngineConfig;
use super::engine::{Engine, EngineHandler};
use super::errors::{Body, CloseReason, HttpError};
use super::hooks::RequestInfo;
use super::packet::{decode_text, Frame, Message, Outgoing, Packet, PONG_PROBE};
use super::session::{Session, Transport};

type Ws = WebSocketStream<TokioIo<Upgraded>>;
type WsSink = SplitSink<Ws, WsMessage>;
type WsStream = SplitStream<Ws>;

/// How long the writer may spend flushing queued frames and the close frame once the session is
/// closed, so a stalled client cannot hold shutdown.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// tungstenite's buffers, chosen for many mostly idle connections. Its defaults (128 KiB read
/// buffer, allocated eagerly, and 128 KiB of write coalescing) cost a quarter of a megabyte per
/// connection, i.e. 2.5 GB for 10 000 clients that mostly send short chat frames. A few KiB read
/// buffer only costs extra reads for large messages; messages and frames are capped at
/// `max_payload`, as announced in the handshake, so one client cannot make us buffer more.
pub(crate) fn websocket_config(config: &EngineConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.ws_read_buffer)
        .write_buffer_size(config.ws_write_buffer)
        // Only grows past write_buffer_size while writes fail; one message of slack.
        .max_write_buffer_size(config.ws_write_buffer + config.max_payload + 1024)
        .max_message_size(Some(config.max_payload))
        .max_frame_size(Some(config.max_payload))
}

/// Checks a WebSocket upgrade request and builds the 101 answer (RFC 6455 section 4.2.2).
pub(crate) fn accept_response(
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>, HttpError> {
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if *method != Method::GET || !is_upgrade {
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

async fn into_websocket(on_upgrade: OnUpgrade, config: &EngineConfig) -> Option<Ws> {
    match on_upgrade.await {
        Ok(upgraded) => Some(
            WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(websocket_config(config)),
            )
            .await,
        ),
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade failed");
            None
        }
    }
}

/// `transport=websocket` without `sid`: a session that is WebSocket from the start.
pub(crate) async fn run_direct<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    on_upgrade: OnUpgrade,
    request: RequestInfo,
) {
    let Some(ws) = into_websocket(on_upgrade, &engine.config).await else {
        return;
    };
    let (mut sink, stream) = ws.split();
    let session = engine.create_session(request, Transport::WebSocket).await;
    let open = engine.open_frame(&session.sid, &[]);
    if let Err(error) = send_frame(&mut sink, open).await {
        tracing::debug!(sid = %session.sid, %error, "sending the handshake failed");
        session.close(CloseReason::TransportError);
        return;
    }
    serve(engine, session, sink, stream).await;
}

/// `transport=websocket&sid=...`: probes, then takes the session over from polling.
pub(crate) async fn run_upgrade<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    on_upgrade: OnUpgrade,
    session: Arc<Session>,
) {
    let Some(ws) = into_websocket(on_upgrade, &engine.config).await else {
        session.upgrading.store(false, Ordering::Release);
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let probed = tokio::select! {
        result = tokio::time::timeout(
            engine.config.upgrade_timeout,
            probe(&session, &mut sink, &mut stream),
        ) => matches!(result, Ok(Ok(()))),
        () = session.closed.cancelled() => false,
    };
    if !probed {
        tracing::debug!(sid = %session.sid, "websocket upgrade abandoned");
        session.probed.send_replace(false);
        session.upgrading.store(false, Ordering::Release);
        let _ = sink.close().await;
        return;
    }
    // The transport first: a poll waiting on `probed` then sees the upgrade done.
    session.set_transport(Transport::WebSocket);
    session.probed.send_replace(false);
    session.upgrading.store(false, Ordering::Release);
    tracing::debug!(sid = %session.sid, "upgraded to websocket");
    serve(engine, session, sink, stream).await;
}

/// A second WebSocket for a session that already has one (or is getting one): its handshake was
/// answered; close it at once with 1002 (protocol error) without touching the session.
pub(crate) async fn refuse(config: EngineConfig, on_upgrade: OnUpgrade) {
    let Some(mut ws) = into_websocket(on_upgrade, &config).await else {
        return;
    };
    let frame = CloseFrame {
        code: CloseCode::Protocol,
        reason: Utf8Bytes::from_static("session already upgraded"),
    };
    let _ = tokio::time::timeout(FINAL_FLUSH, ws.close(Some(frame))).await;
}

/// `2probe` → `3probe` (and a noop to end the pending poll), then `5` completes the upgrade.
async fn probe(session: &Session, sink: &mut WsSink, stream: &mut WsStream) -> Result<(), ()> {
    while let Some(message) = stream.next().await {
        let WsMessage::Text(text) = message.map_err(|_| ())? else {
            continue;
        };
        match decode_text(&text) {
            Ok(Packet::Ping(data)) if data == "probe" => {
                send_frame(sink, PONG_PROBE).await.map_err(|_| ())?;
                // Ends the pending poll (with a noop), if any.
                session.probed.send_replace(true);
            }
            Ok(Packet::Upgrade) => return Ok(()),
            _ => return Err(()),
        }
    }
    Err(())
}

/// Runs the reader here and the writer in its own task; when either ends the session is closed,
/// which stops the other.
async fn serve<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    session: Arc<Session>,
    sink: WsSink,
    stream: WsStream,
) {
    let span = tracing::debug_span!("websocket_writer", conn_id = %session.sid);
    let writer = engine
        .tasks
        .spawn(write_loop(session.clone(), sink).instrument(span));
    let reason = read_loop(&engine, &session, stream).await;
    if let Some(reason) = reason {
        session.close(reason);
    }
    let _ = writer.await;
}

/// Reads until the connection ends (returning why) or the session is closed (returning `None`).
async fn read_loop<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Arc<Session>,
    mut stream: WsStream,
) -> Option<CloseReason> {
    loop {
        let next = tokio::select! {
            biased;
            () = session.closed.cancelled() => return None,
            next = stream.next() => next,
        };
        let packet = match next {
            None | Some(Ok(WsMessage::Close(_))) => return Some(CloseReason::TransportClose),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                return Some(CloseReason::PayloadTooLarge)
            }
            Some(Err(WsError::Utf8(_))) => return Some(CloseReason::InvalidUtf8),
            Some(Err(error)) => {
                tracing::debug!(sid = %session.sid, %error, "websocket read failed");
                return Some(CloseReason::TransportError);
            }
            Some(Ok(WsMessage::Text(text))) => match decode_text(&text) {
                Ok(packet) => packet,
                Err(error) => {
                    tracing::debug!(sid = %session.sid, %error, "malformed packet");
                    return Some(CloseReason::ParseError);
                }
            },
            Some(Ok(WsMessage::Binary(data))) => Packet::Message(Message::Binary(data)),
            Some(Ok(_)) => continue, // WebSocket pings are answered by tungstenite
        };
        engine.on_packet(session, packet).await;
    }
}

/// Takes the outbox (once any pending poll released it) and writes its frames, coalescing what is
/// queued into one flush. On close, flushes what is left and sends a close frame.
async fn write_loop(session: Arc<Session>, mut sink: WsSink) {
    let mut outbox = session.outbox.lock().await;
    let mut pending = outbox.carry.take();
    loop {
        if pending.is_none() {
            pending = tokio::select! {
                biased;
                frame = outbox.rx.recv() => frame,
                () = session.closed.cancelled() => None,
            };
        }
        let Some(first) = pending.take() else { break };
        let mut result = feed(&mut sink, first).await;
        while result.is_ok() {
            let Ok(packet) = outbox.rx.try_recv() else {
                break;
            };
            result = feed(&mut sink, packet).await;
        }
        if let Err(error) = result.and(sink.flush().await) {
            tracing::debug!(sid = %session.sid, %error, "websocket write failed");
            session.close(CloseReason::TransportError);
            return;
        }
    }
    let reason = session.close_reason();
    let _ = tokio::time::timeout(FINAL_FLUSH, async {
        while let Ok(packet) = outbox.rx.try_recv() {
            feed(&mut sink, packet).await?;
        }
        let frame = CloseFrame {
            code: CloseCode::from(reason.ws_close_code()),
            reason: Utf8Bytes::from_static(reason.as_str()),
        };
        sink.send(WsMessage::Close(Some(frame))).await?;
        sink.close().await
    })
    .await;
}

/// Feeds one packet's frames back to back (one writer per session, so nothing comes between).
async fn feed(sink: &mut WsSink, packet: Outgoing) -> Result<(), WsError> {
    match packet {
        Outgoing::One(frame) => sink.feed(to_ws(frame)).await,
        Outgoing::Many(frames) => {
            for frame in frames.iter() {
                sink.feed(to_ws(frame.clone())).await?;
            }
            Ok(())
        }
    }
}

/// A frame's text was checked once when it was built: no check, no copy here.
fn to_ws(frame: Frame) -> WsMessage {
    match frame {
        Frame::Text(text) => WsMessage::Text(text),
        Frame::Binary(data) => WsMessage::Binary(data),
    }
}

async fn send_frame(sink: &mut WsSink, frame: Frame) -> Result<(), WsError> {
    sink.send(to_ws(frame)).await
}
