//! HTTP errors of the Engine.IO endpoint (`{"code":N,"message":"..."}`, as the protocol's
//! reference server sends them) and the session close reasons.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};

/// The body type of every response this server writes.
pub type Body = Full<Bytes>;

/// Error codes of the Engine.IO HTTP endpoint. A client should not retry the same request:
/// each means the request itself is wrong (or refused), except [`HttpError::UnknownSid`] after
/// which a client opens a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 0: `transport` is neither `polling` nor `websocket`.
    TransportUnknown,
    /// 1: no session with this `sid` (never existed, closed, or timed out).
    UnknownSid,
    /// 2: a handshake (no `sid`) with another method than GET.
    BadHandshakeMethod,
    /// 3: anything else wrong with the request (wrong transport for the session, concurrent
    /// polls, malformed payload...).
    BadRequest,
    /// 4: refused by the Origin allowlist or the request gate.
    Forbidden,
    /// 5: `EIO` missing or not `4`.
    UnsupportedProtocolVersion,
}

impl HttpError {
    pub fn code(self) -> u8 {
        match self {
            HttpError::TransportUnknown => 0,
            HttpError::UnknownSid => 1,
            HttpError::BadHandshakeMethod => 2,
            HttpError::BadRequest => 3,
            HttpError::Forbidden => 4,
            HttpError::UnsupportedProtocolVersion => 5,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HttpError::TransportUnknown => "Transport unknown",
            HttpError::UnknownSid => "Session ID unknown",
            HttpError::BadHandshakeMethod => "Bad handshake method",
            HttpError::BadRequest => "Bad request",
            HttpError::Forbidden => "Forbidden",
            HttpError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// 403 for [`HttpError::Forbidden`] (as the reference server), 400 otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn response(self) -> Response<Body> {
        error_response(self.status(), self.code(), self.message())
    }
}

/// A JSON error body `{"code":N,"message":"..."}` with the given status.
pub fn error_response(status: StatusCode, code: u8, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Why a session ended. Handed to [`EngineHandler::on_close`](super::EngineHandler::on_close);
/// [`CloseReason::as_str`] gives the reference server's wording where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet, or its WebSocket closed cleanly. A client may reconnect.
    TransportClose,
    /// The connection failed (I/O error, WebSocket protocol error). A client may reconnect.
    TransportError,
    /// No pong within `ping_timeout` after a ping. A client may reconnect.
    PingTimeout,
    /// The client sent something that is not a valid packet. Retrying the same bytes won't help.
    ParseError,
    /// A WebSocket text frame that is not valid UTF-8. Retrying the same bytes won't help.
    InvalidUtf8,
    /// The client broke the protocol (two concurrent polls, two concurrent POSTs).
    ProtocolError,
    /// A packet or payload larger than `max_payload`.
    PayloadTooLarge,
    /// The outbox was full: the client did not read fast enough. It may reconnect, and should
    /// expect to resynchronise what it missed.
    SlowConsumer,
    /// The server is shutting down. A client may reconnect (to another instance).
    ServerShutdown,
    /// Closed by the application through [`EngineSocket::close`](super::EngineSocket::close).
    Forced,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::InvalidUtf8 => "invalid utf-8",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::PayloadTooLarge => "payload too large",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::Forced => "forced close",
        }
    }

    /// The WebSocket close code (RFC 6455 section 7.4.1) sent when a WebSocket session closes
    /// for this reason: 1000 (normal) for the client's own close or the application's, 1001
    /// (going away) for shutdown, a missed pong or a failed connection, 1009 (too big), 1002
    /// (protocol error) for malformed packets and protocol violations, 1007 (invalid frame
    /// payload data) for a text frame that is not UTF-8, 1008 (policy) for a slow consumer.
    pub fn ws_close_code(self) -> u16 {
        match self {
            CloseReason::TransportClose | CloseReason::Forced => 1000,
            CloseReason::ServerShutdown => 1001,
            CloseReason::PayloadTooLarge => 1009,
            CloseReason::ParseError | CloseReason::ProtocolError => 1002,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::SlowConsumer => 1008,
            CloseReason::PingTimeout | CloseReason::TransportError => 1001,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn http_errors_carry_the_protocol_code_and_message() {
        let response = HttpError::UnsupportedProtocolVersion.response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"code":5,"message":"Unsupported protocol version"}"#
        );
        assert_eq!(
            HttpError::Forbidden.response().status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn websocket_close_codes_follow_rfc_6455() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let cases = [
            (CloseReason::TransportClose, CloseCode::Normal),
            (CloseReason::Forced, CloseCode::Normal),
            (CloseReason::ServerShutdown, CloseCode::Away),
            (CloseReason::PayloadTooLarge, CloseCode::Size),
            (CloseReason::ParseError, CloseCode::Protocol),
            (CloseReason::ProtocolError, CloseCode::Protocol),
            (CloseReason::InvalidUtf8, CloseCode::Invalid),
            (CloseReason::SlowConsumer, CloseCode::Policy),
            (CloseReason::PingTimeout, CloseCode::Away),
            (CloseReason::TransportError, CloseCode::Away),
        ];
        for (reason, code) in cases {
            assert_eq!(CloseCode::from(reason.ws_close_code()), code, "{reason}");
        }
    }
}
