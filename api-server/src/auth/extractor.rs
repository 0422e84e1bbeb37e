//! [`AuthUser`]: the caller of a protected route, from `Authorization: Bearer <jwt>`.
//!
//! The token must verify (signature, algorithm, `exp`, `nbf`, `iss`, `aud`, an `iat` not in the
//! future and a lifetime within the configured one) and its session must still be active in the
//! store (logout revokes it) and belong to the token's subject. Every refusal is a 401 with the shared JSON error
//! shape and a `WWW-Authenticate: Bearer` header.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures::future::LocalBoxFuture;
use shared::auth::{Claims, TokenError};
use shared::errors::ErrorCode;
use shared::ids::UserId;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: UserId,
    pub claims: Claims,
}

/// A refused token: the API error, answered with `WWW-Authenticate` when it is a 401.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AuthError(#[from] pub ApiError);

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.0.error_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl FromRequest for AuthUser {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::Unexpected(anyhow::anyhow!("AppState is not registered"))
            })?;
            let token = token?;
            let claims = state.keys.verify(&token).map_err(|e| match e {
                TokenError::Expired => ApiError::code(ErrorCode::TokenExpired),
                TokenError::Invalid => ApiError::code(ErrorCode::InvalidToken),
            })?;
            let user_id = claims
                .user_id()
                .map_err(|_| ApiError::code(ErrorCode::InvalidToken))?;
            // The session must be active *and* the token's subject's: a re-signed token naming
            // another user than the one the session was issued to is refused.
            let active = state
                .store
                .session_active_for(user_id, &claims.jti)
                .await
                .map_err(ApiError::from)?;
            if !active {
                return Err(ApiError::code(ErrorCode::TokenRevoked).into());
            }
            Ok(AuthUser { user_id, claims })
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::code(ErrorCode::MissingToken));
    };
    let malformed = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "the Authorization header must be `Bearer <token>`",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn code_of(result: Result<String, ApiError>) -> Option<ErrorCode> {
        match result {
            Err(ApiError::Known { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn a_bearer_header_yields_its_token() {
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer  abc.def.ghi "))
            .to_http_request();
        assert_eq!(bearer_token(&req).ok().as_deref(), Some("abc.def.ghi"));
    }

    #[test]
    fn no_header_is_a_missing_token_and_another_scheme_an_invalid_one() {
        let none = TestRequest::default().to_http_request();
        assert_eq!(code_of(bearer_token(&none)), Some(ErrorCode::MissingToken));
        for bad in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer   ", "abc.def.ghi"] {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, bad))
                .to_http_request();
            assert_eq!(
                code_of(bearer_token(&req)),
                Some(ErrorCode::InvalidToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_refusal_answers_401_json_with_www_authenticate() {
        let response = AuthError(ApiError::code(ErrorCode::TokenRevoked)).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer"))
        );
    }
}
