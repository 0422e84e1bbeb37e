//! The one table of error codes. HTTP answers `{"error":{"code","message"}}` with
//! [`ErrorCode::http_status`]; Socket.IO acks answer
//! `{"success":false,"error":{"code","message","retryable"}}`. `docs/protocol.md` lists them all.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($( $variant:ident => ($code:literal, $status:literal, $retry:literal, $msg:literal) ),* $(,)?) => {
        /// Every error code Parley can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[cfg_attr(test, derive(ts_rs::TS))]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $variant, )*
        }

        impl ErrorCode {
            /// All codes, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The snake_case code written on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status the API answers with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// Whether the same request may succeed if retried unchanged later.
            pub fn retryable(self) -> bool {
                match self { $( ErrorCode::$variant => $retry, )* }
            }

            /// A default human-readable message.
            pub fn default_message(self) -> &'static str {
                match self { $( ErrorCode::$variant => $msg, )* }
            }
        }
    };
}

codes! {
    ValidationFailed => ("validation_failed", 400, false, "the request is not valid"),
    InvalidJson => ("invalid_json", 400, false, "the body is not valid JSON of the expected shape"),
    MissingToken => ("missing_token", 401, false, "an Authorization: Bearer token is required"),
    InvalidToken => ("invalid_token", 401, false, "the token is not valid"),
    TokenExpired => ("token_expired", 401, false, "the token has expired"),
    TokenRevoked => ("token_revoked", 401, false, "the token was revoked by logout"),
    InvalidCredentials => ("invalid_credentials", 401, false, "wrong username or password"),
    UsernameTaken => ("username_taken", 409, false, "that username is taken"),
    NotFound => ("not_found", 404, false, "no such resource"),
    ConversationNotFound => ("conversation_not_found", 404, false, "no such conversation"),
    UserNotFound => ("user_not_found", 404, false, "no such user"),
    MethodNotAllowed => ("method_not_allowed", 405, false, "method not allowed"),
    OriginNotAllowed => ("origin_not_allowed", 403, false, "this origin may not call Parley from a browser (CORS_ALLOWED_ORIGINS)"),
    IdempotencyMismatch => ("idempotency_mismatch", 422, false, "this clientMsgId was already used for a different message"),
    PayloadTooLarge => ("payload_too_large", 413, false, "the request body is too large"),
    QuotaExceeded => ("quota_exceeded", 413, false, "you have uploaded all you may for now"),
    UnsupportedMediaType => ("unsupported_media_type", 415, false, "the file is not a supported image or voice format"),
    RangeNotSatisfiable => ("range_not_satisfiable", 416, false, "the requested range lies outside the file"),
    InvalidSignature => ("invalid_signature", 403, false, "the signed URL is invalid or has expired"),
    RequestTimeout => ("request_timeout", 408, true, "the request body did not arrive in time"),
    RateLimited => ("rate_limited", 429, true, "too many requests, slow down"),
    TooManyConnections => ("too_many_connections", 429, true, "too many connections"),
    StorageFailed => ("storage_failed", 503, true, "the message could not be stored"),
    ServiceUnavailable => ("service_unavailable", 503, true, "a dependency is unavailable"),
    InternalError => ("internal_error", 500, true, "internal error"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an error: `{"code","message"}` plus, for validation errors, the failing field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

/// The HTTP error envelope `{"error":{…}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The error inside a failed Socket.IO ack: `{"code","message","retryable"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AckError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    /// When the server knows it (`rate_limited` by a rate): how long to wait before trying
    /// again, in milliseconds, as HTTP's `Retry-After` says in seconds.
    #[serde(
        rename = "retryAfterMs",
        skip_serializing_if = "Option::is_none",
        default
    )]
    #[cfg_attr(test, ts(type = "number"))]
    pub retry_after_ms: Option<u64>,
}

impl AckError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.retryable(),
            retry_after_ms: None,
        }
    }

    /// The same error, saying to wait `wait` (rounded up to a millisecond) before trying again.
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after_ms = Some(wait.as_micros().div_ceil(1000) as u64);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_snake_case_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
