//! Accounts and sessions: register, login (throttled), logout (revokes the token everywhere), me.

use crate::auth::{password, AuthUser};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::NewUser;
use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::domain::{DisplayName, Password, Username};
use shared::errors::{ErrorCode, ErrorEnvelope};
use shared::events::BusEvent;
use shared::wire::{AuthResponse, User};
use std::time::Duration;
use utoipa::ToSchema;

/// Longest logout waits for the bus to record a revocation.
const BUS_TIMEOUT: Duration = Duration::from_millis(500);

/// `POST /api/auth/register` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// 3 to 32 characters of `a-z 0-9 _ . -` (stored lower-case).
    pub username: String,
    /// 8 to 256 characters.
    pub password: String,
    /// 1 to 64 characters; defaults to the username.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `POST /api/auth/login` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Create an account and sign it in.
#[utoipa::path(
    post, path = "/api/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered and signed in", body = AuthResponse),
        (status = 400, description = "`validation_failed` naming the field, or `invalid_json`", body = ErrorEnvelope),
        (status = 409, description = "`username_taken`", body = ErrorEnvelope),
        (status = 429, description = "`rate_limited`: too many registrations from this address; see the `Retry-After` header", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let username = Username::parse(&body.username)?;
    let password = Password::parse(&body.password)?;
    let display_name = match body.display_name.as_deref() {
        Some(raw) => DisplayName::parse(raw)?,
        None => DisplayName::parse(username.as_str())?,
    };
    // Every attempt that gets as far as hashing counts (a taken name too).
    let ip = client_ip(&req, &state);
    if let Err(retry_after) = state.registrations.check_address(ip) {
        tracing::info!(
            retry_after_secs = retry_after.as_secs(),
            "registration throttled"
        );
        return Ok(super::rate_limited(
            retry_after,
            "too many registrations from this address",
        ));
    }
    state.registrations.record_address(ip);
    let password_hash = password::hash(password).await?;
    let user = state
        .store
        .create_user(NewUser {
            username: username.as_str().to_owned(),
            display_name: display_name.as_str().to_owned(),
            password_hash,
        })
        .await?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    let auth = start_session(&state, user).await?;
    Ok(HttpResponse::Created().json(auth))
}

/// Sign in. Repeated failures for a username or from an address answer 429 for a while.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 401, description = "`invalid_credentials` (unknown user or wrong password alike)", body = ErrorEnvelope),
        (status = 429, description = "`rate_limited`; see the `Retry-After` header", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let LoginRequest { username, password } = body.into_inner();
    let ip = client_ip(&req, &state);
    if let Err(retry_after) = state.login_throttle.check(&username, ip) {
        tracing::info!(retry_after_secs = retry_after.as_secs(), "login throttled");
        return Ok(super::rate_limited(retry_after, "too many failed logins"));
    }
    // A name that cannot exist is answered like an unknown user (same error, same timing).
    let found = match Username::parse(&username) {
        Ok(name) => state.store.credentials(name.as_str()).await?,
        Err(_) => None,
    };
    let (user, stored_hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = password::verify(password, stored_hash).await?;
    match user {
        Some(user) if matches => {
            state.login_throttle.record_success(&username, ip);
            tracing::Span::current().record("user_id", tracing::field::display(user.id));
            let auth = start_session(&state, user).await?;
            Ok(HttpResponse::Ok().json(auth))
        }
        _ => {
            state.login_throttle.record_failure(&username, ip);
            Err(ApiError::code(ErrorCode::InvalidCredentials))
        }
    }
}

/// Revoke the caller's token: this API refuses it from now on and the relays disconnect the
/// sockets opened with it.
#[utoipa::path(
    post, path = "/api/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired` or `token_revoked`", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn logout(user: AuthUser, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let jti = user.claims.jti.clone();
    state.store.revoke_session(&jti).await?;
    // Relays check revocations on the bus; keep the mark as long as the token could verify.
    let leeway = state.keys.settings().leeway_secs;
    let remaining = (user.claims.exp - Utc::now().timestamp()).max(0) as u64 + leeway;
    // Bounded: during a bus outage logout still answers at once (the database has the
    // revocation, so this API refuses the token either way).
    let recorded = tokio::time::timeout(
        BUS_TIMEOUT,
        state.bus.revoke_token(&jti, Duration::from_secs(remaining)),
    )
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "recording the revocation on the bus failed; the relays learn it from the logout event or at token expiry");
        }
        Err(_) => {
            tracing::warn!("recording the revocation on the bus timed out; the relays learn it from the logout event or at token expiry");
        }
    }
    state.publisher.publish(
        &[user.user_id],
        BusEvent::UserLoggedOut {
            user_id: user.user_id,
            jti,
        },
    );
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's account.
#[utoipa::path(
    get, path = "/api/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`user_not_found`: the account is gone", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn me(user: AuthUser, state: web::Data<AppState>) -> ApiResult<web::Json<User>> {
    let found = state.store.user(user.user_id).await?;
    found
        .map(web::Json)
        .ok_or_else(|| ApiError::code(ErrorCode::UserNotFound))
}

/// Issue a token for `user` and record its session (so that logout can revoke it).
async fn start_session(state: &AppState, user: User) -> ApiResult<AuthResponse> {
    let (token, claims) = state.keys.issue(user.id).context("signing a token")?;
    let expires_at = DateTime::<Utc>::from_timestamp(claims.exp, 0)
        .context("the token expiry is out of range")?;
    state
        .store
        .create_session(&claims.jti, user.id, expires_at)
        .await?;
    Ok(AuthResponse { token, user })
}

/// The client's address: the TCP peer, or behind trusted proxies the address they forwarded.
fn client_ip(req: &HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let headers = req.headers();
    let values = |name: &str| {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    Some(
        state
            .trusted_proxies
            .client_ip(peer, values("forwarded"), values("x-forwarded-for")),
    )
}
