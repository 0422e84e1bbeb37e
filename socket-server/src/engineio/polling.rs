//! The HTTP long-polling transport: the handshake GET, the pending GET that carries server
//! packets, and the POST that carries client packets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};

use super::engine::{Engine, EngineHandler};
use super::errors::{error_response, Body, CloseReason, HttpError};
use super::hooks::RequestInfo;
use super::packet::{decode_payload, encode_payload, Frame, Outgoing, CLOSE, NOOP};
use super::session::{Session, Transport};
use super::wire::corked;

/// How long a poll that arrives after an upgrade's probe waits for the upgrade to complete
/// before it is answered with a noop (the reference server's fast-upgrade check interval).
const UPGRADE_POLL_WAIT: Duration = Duration::from_millis(100);

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

/// A GET with `sid`: waits for outgoing packets and returns them as one payload. A closed
/// session answers one last poll (its remaining packets, then `noop` if the client closed it,
/// nothing more on a shutdown or a slow consumer, `close` otherwise) and is then forgotten.
pub(crate) async fn poll<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Arc<Session>,
) -> Response<Body> {
    engine.expire_overdue(session);
    // Only a session the client closed answers a poll once closed (with the noop it is owed).
    if session.farewell.is_cancelled()
        || (session.is_closed() && session.close_reason() != CloseReason::TransportClose)
    {
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
    let mut probed = session.probed().subscribe();
    if *probed.borrow_and_update() {
        // A poll after the probe: the client either waits for this noop before sending `5`, or
        // sent `5` already (then the poll is refused once the upgrade completed).
        tokio::select! {
            _ = tokio::time::timeout(UPGRADE_POLL_WAIT, probed.wait_for(|probed| !*probed)) => {}
            () = session.closed.cancelled() => {}
        }
        if session.transport() != Transport::Polling {
            return HttpError::BadRequest.response();
        }
        if *probed.borrow_and_update() && !session.is_closed() {
            return ok(encode_payload(&[NOOP]), "text/plain; charset=UTF-8");
        }
    }
    // Held by the WebSocket writer once an upgrade completed.
    let Ok(mut outbox) = session.outbox.try_lock() else {
        return HttpError::BadRequest.response();
    };

    // Whole packets only: a packet that does not fit waits for the next poll, so its frames
    // stay together (a payload may exceed `max_payload` only to carry one packet that does).
    // A probe ends the poll at once (with a noop), so the client can complete the upgrade.
    let first = match outbox.carry.take() {
        Some(packet) => Some(packet),
        None => tokio::select! {
            biased;
            packet = outbox.rx.recv() => packet,
            () = session.closed.cancelled() => None,
            _ = probed.wait_for(|probed| *probed) => None,
        },
    };
    let mut frames = Vec::new();
    let mut size = 0;
    if let Some(packet) = first {
        size += packet.polling_len();
        push_frames(&mut frames, packet);
    }
    let max = engine.config.max_payload;
    while let Ok(packet) = outbox.rx.try_recv() {
        size += packet.polling_len();
        if size > max && !frames.is_empty() {
            outbox.carry = Some(packet);
            break;
        }
        push_frames(&mut frames, packet);
    }
    if session.is_closed() && outbox.carry.is_none() {
        // A client that closed gets a noop to end its pending poll; otherwise tell it we close,
        // except where it should come back at once: python-engineio reads a close packet as a
        // deliberate disconnect and never reconnects, while a poll answered without one, then a
        // next poll refused, makes every client reconnect (to another relay on a shutdown).
        match session.close_reason() {
            CloseReason::TransportClose => frames.push(NOOP),
            CloseReason::ServerShutdown | CloseReason::SlowConsumer => {}
            _ => frames.push(CLOSE),
        }
        if frames.is_empty() {
            frames.push(NOOP);
        }
        session.farewell.cancel();
        engine.forget(session);
    } else if frames.is_empty() {
        frames.push(NOOP);
    }
    ok(encode_payload(&frames), "text/plain; charset=UTF-8")
}

fn push_frames(frames: &mut Vec<Frame>, packet: Outgoing) {
    match packet {
        Outgoing::One(frame) => frames.push(frame),
        Outgoing::Many(many) => frames.extend(many.iter().cloned()),
    }
}

/// A POST with `sid`: decodes the payload and handles its packets in order.
pub(crate) async fn post<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Arc<Session>,
    request: Request<Incoming>,
) -> Response<Body> {
    // A pong that comes after the deadline does not save the session.
    engine.expire_overdue(session);
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
    // A body that stops arriving ends with the session: its client cannot answer pings while
    // its POST is pending, so the heartbeat closes it within `ping_interval + ping_timeout`,
    // and the connection goes with this answer instead of waiting for the rest for ever.
    let read = tokio::select! {
        read = Limited::new(request.into_body(), max).collect() => read,
        () = session.closed.cancelled() => {
            tracing::debug!(sid = %session.sid, "the session closed while its POST body was incomplete");
            return HttpError::BadRequest.response();
        }
    };
    let body = match read {
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
            tracing::info!(sid = %session.sid, %error, "malformed polling payload");
            session.close(CloseReason::ParseError);
            return HttpError::BadRequest.response();
        }
    };
    for packet in packets {
        if session.is_closed() {
            break;
        }
        // Corked, as on a WebSocket: what the handler sends to one socket in a turn leaves in
        // one write (it may handle the packet here, in this request's task).
        corked(engine.on_packet(session, packet)).await;
    }
    ok(Bytes::from_static(b"ok"), "text/html")
}

fn too_large(session: &Session) -> Response<Body> {
    session.close(CloseReason::PayloadTooLarge);
    error_response(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;

    use super::*;
    use crate::engineio::config::EngineConfig;
    use crate::engineio::hooks::Hooks;
    use crate::engineio::packet::{Frame, Message, Outgoing};
    use crate::engineio::session::EngineSocket;

    struct Silent;

    impl EngineHandler for Silent {
        async fn on_open(&self, _socket: &EngineSocket) {}
        async fn on_message(&self, _socket: &EngineSocket, _message: Message) {}
        async fn on_close(&self, _socket: &EngineSocket, _reason: CloseReason) {}
    }

    async fn body(response: Response<Body>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_packet_that_does_not_fit_a_payload_waits_whole_for_the_next_poll() {
        // Arrange: payloads of at most 10 bytes
        let config = EngineConfig {
            max_payload: 10,
            ..EngineConfig::default()
        };
        let engine = Arc::new(Engine::new(config, Arc::new(Silent), Hooks::default()));
        let session = engine
            .create_session(RequestInfo::for_test(), Transport::Polling)
            .await;
        // 7 bytes, then a 9-byte packet of a text frame (3) and its binary attachment (6)
        session.send(Frame::message("abcde").into()).unwrap();
        let pair = Outgoing::Many(Arc::from([
            Frame::message("x"),
            Frame::binary(Bytes::from_static(&[1])),
        ]));
        session.send(pair).unwrap();

        // Act
        let first = body(poll(&engine, &session).await).await;
        let second = body(poll(&engine, &session).await).await;

        // Assert: the text frame would fit the first payload, but not with its attachment
        assert_eq!(&first[..], b"4abcde");
        assert_eq!(&second[..], b"4x\x1ebAQ==");
        session.close(CloseReason::Forced);
    }
}
