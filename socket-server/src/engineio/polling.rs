//! The HTTP long-polling transport: the handshake GET, the pending GET that carries server
//! packets, and the POST that carries client packets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};

use super::engine::{Engine, EngineHandler};
use super::errors::{error_response, Body, CloseReason, HttpError};
use super::hooks::RequestInfo;
use super::packet::{decode_payload, encode_payload, CLOSE, NOOP};
use super::session::{Session, Transport};

/// Clears a busy flag when a request ends, however it ends.
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn ok(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// A GET without `sid`: opens a session and answers with the handshake packet.
pub(crate) async fn handshake<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    request: RequestInfo,
) -> Response<Body> {
    let session = engine.create_session(request, Transport::Polling).await;
    let open = engine.open_frame(&session.sid, &["websocket"]);
    ok(encode_payload(&[open]), "text/plain; charset=UTF-8")
}

/// A GET with `sid`: waits for outgoing packets and returns them as one payload.
pub(crate) async fn poll<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Arc<Session>,
) -> Response<Body> {
    if session.is_closed() {
        return HttpError::UnknownSid.response();
    }
    if session.transport() != Transport::Polling {
        return HttpError::BadRequest.response();
    }
    if session.poll_busy.swap(true, Ordering::AcqRel) {
        tracing::debug!(sid = %session.sid, "concurrent polls: closing the session");
        session.close(CloseReason::ProtocolError);
        return HttpError::BadRequest.response();
    }
    let _busy = BusyGuard(&session.poll_busy);
    // Held by the WebSocket writer once an upgrade completed.
    let Ok(mut outbox) = session.outbox.try_lock() else {
        return HttpError::BadRequest.response();
    };

    let mut frames = Vec::new();
    match outbox.carry.take() {
        Some(frame) => frames.push(frame),
        None => tokio::select! {
            biased;
            frame = outbox.rx.recv() => frames.extend(frame),
            () = session.closed.cancelled() => {}
        },
    }
    let max = engine.config.max_payload;
    let mut size: usize = frames.iter().map(|f| f.polling_len() + 1).sum();
    while let Ok(frame) = outbox.rx.try_recv() {
        size += frame.polling_len() + 1;
        if size > max && !frames.is_empty() {
            outbox.carry = Some(frame);
            break;
        }
        frames.push(frame);
    }
    if session.is_closed() && outbox.carry.is_none() {
        // A client that closed gets a noop to end its pending poll; otherwise tell it we close.
        let last = match session.close_reason() {
            CloseReason::TransportClose => NOOP,
            _ => CLOSE,
        };
        frames.push(last);
    }
    ok(encode_payload(&frames), "text/plain; charset=UTF-8")
}

/// A POST with `sid`: decodes the payload and handles its packets in order.
pub(crate) async fn post<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Arc<Session>,
    request: Request<Incoming>,
) -> Response<Body> {
    if session.is_closed() {
        return HttpError::UnknownSid.response();
    }
    if session.transport() != Transport::Polling {
        return HttpError::BadRequest.response();
    }
    if session.post_busy.swap(true, Ordering::AcqRel) {
        tracing::debug!(sid = %session.sid, "concurrent posts: closing the session");
        session.close(CloseReason::ProtocolError);
        return HttpError::BadRequest.response();
    }
    let _busy = BusyGuard(&session.post_busy);

    let max = engine.config.max_payload;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return too_large(session);
    }
    let body = match Limited::new(request.into_body(), max).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(session),
        Err(error) => {
            tracing::debug!(sid = %session.sid, %error, "reading a polling body failed");
            session.close(CloseReason::TransportError);
            return HttpError::BadRequest.response();
        }
    };
    let packets = match decode_payload(&body) {
        Ok(packets) => packets,
        Err(error) => {
            tracing::debug!(sid = %session.sid, %error, "malformed polling payload");
            session.close(CloseReason::ParseError);
            return HttpError::BadRequest.response();
        }
    };
    for packet in packets {
        if session.is_closed() {
            break;
        }
        engine.on_packet(session, packet).await;
    }
    ok(Bytes::from_static(b"ok"), "text/html")
}

fn too_large(session: &Session) -> Response<Body> {
    session.close(CloseReason::PayloadTooLarge);
    error_response(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large")
}
