//! The API's error type: every failure becomes `{"error":{"code","message"}}` with the status of
//! its code. Unexpected errors log their whole cause chain and tell the client nothing more.

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

    pub(crate) fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::Known { code, .. } => *code,
            ApiError::Unexpected(_) => ErrorCode::InternalError,
        }
    }
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
                tracing::error!(error = %format_args!("{cause:#}"), "unexpected error");
                ErrorBody {
                    code: ErrorCode::InternalError,
                    message: ErrorCode::InternalError.default_message().to_owned(),
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
                tracing::error!(error = %format_args!("{cause:#}"), "unexpected error");
                AckError::new(
                    ErrorCode::InternalError,
                    ErrorCode::InternalError.default_message(),
                )
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
