//! The API's error type: every failure becomes `{"error":{"code","message"}}` with the status of
//! its code. Unexpected errors log their whole cause chain and tell the client nothing more,
//! except a full disk: that is `503 service_unavailable`, retryable once space is freed.

use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::domain::FieldError;
use shared::errors::{AckError, ErrorBody, ErrorCode, ErrorEnvelope};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A known failure with its code and a message safe to show.
    #[error("{code}: {message}")]
    Known {
        code: ErrorCode,
        message: String,
        field: Option<String>,
    },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Known {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn code(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError::Known {
            code: ErrorCode::ValidationFailed,
            message: format!("{field}: {reason}"),
            field: Some(field.to_owned()),
        }
    }

    fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::Known { code, .. } => *code,
            ApiError::Unexpected(cause) => unexpected(cause).0,
        }
    }
}

/// What an unexpected error tells the client: a full disk anywhere among its causes (an
/// upload's spool or store, SQLite's file) is `503 service_unavailable`; anything else `500
/// internal_error`.
fn unexpected(cause: &anyhow::Error) -> (ErrorCode, &'static str) {
    let full = cause.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    });
    if full {
        let message = "the server's storage is full; try again later";
        return (ErrorCode::ServiceUnavailable, message);
    }
    let code = ErrorCode::InternalError;
    (code, code.default_message())
}

/// [`unexpected`], with the whole cause chain logged once, as the answer is made.
fn report(cause: &anyhow::Error) -> (ErrorCode, &'static str) {
    let (code, message) = unexpected(cause);
    let error = format_args!("{cause:#}");
    match code {
        ErrorCode::ServiceUnavailable => tracing::error!(%error, "the disk is full: free space"),
        _ => tracing::error!(%error, "unexpected error"),
    }
    (code, message)
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::invalid(e.field, e.reason)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => ApiError::code(ErrorCode::UsernameTaken),
            StoreError::ConversationNotFound => ApiError::code(ErrorCode::ConversationNotFound),
            StoreError::UserNotFound => ApiError::code(ErrorCode::UserNotFound),
            StoreError::IdempotencyMismatch => ApiError::code(ErrorCode::IdempotencyMismatch),
            StoreError::QuotaExceeded => ApiError::code(ErrorCode::QuotaExceeded),
            StoreError::SessionInactive => ApiError::code(ErrorCode::TokenRevoked),
            StoreError::Invalid(field, reason) => ApiError::invalid(field, reason),
            StoreError::Unavailable(cause) => {
                // The chain of causes, one line (`{:#}`): the Debug form carries a whole stack
                // backtrace when RUST_BACKTRACE is set, 175 KB a line.
                tracing::error!(error = %format_args!("{cause:#}"), "database unavailable");
                ApiError::code(ErrorCode::ServiceUnavailable)
            }
            StoreError::Unexpected(cause) => ApiError::Unexpected(cause),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.error_code().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Known {
                code,
                message,
                field,
            } => ErrorBody {
                code: *code,
                message: message.clone(),
                field: field.clone(),
            },
            ApiError::Unexpected(cause) => {
                let (code, message) = report(cause);
                ErrorBody {
                    code,
                    message: message.to_owned(),
                    field: None,
                }
            }
        };
        HttpResponse::build(self.status_code()).json(ErrorEnvelope { error: body })
    }
}

/// The same refusal as the relay port answers it (`{"code","message","retryable"}`); an
/// unexpected error logs its cause and tells nothing more, as on HTTP.
impl From<ApiError> for AckError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Known { code, message, .. } => AckError::new(code, message),
            ApiError::Unexpected(cause) => {
                let (code, message) = report(&cause);
                AckError::new(code, message)
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_anywhere_in_the_causes_is_a_retryable_503_and_other_failures_a_500() {
        let disk_full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context("writing the object")
            .context("storing abc");
        let other = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            .context("storing abc");

        let full = ApiError::Unexpected(disk_full);
        let denied = ApiError::Unexpected(other);

        assert_eq!(full.error_code(), ErrorCode::ServiceUnavailable);
        assert!(full.error_code().retryable());
        assert_eq!(denied.error_code(), ErrorCode::InternalError);
    }
}
