//! The relay's routes, `/internal/relay/…`: the HTTP side of the relay port
//! (`shared::port::RelayPort`) for the split deployment, calling the same service functions as
//! the public routes. JSON with the `shared::port` and `shared::wire` types; errors in the usual
//! `{"error":{"code","message"}}` shape. Not in the OpenAPI document: they are not for clients.
//!
//! Every route requires a **service token** (`Authorization: Bearer`, minted by the relay with
//! `JwtKeys::issue_service` from the shared `JWT_SECRET`); a user token is refused with 401
//! `invalid_token`, as a service token is on the public routes. The user a route names is taken
//! as authenticated: the relay verified their token at connect.
//!
//! | route | body → answer |
//! |---|---|
//! | `POST /internal/relay/messages` | `StoreBatch` (`announce`: who announces the new messages, `shared::port::Announce`; `answers`: whole messages, or `saved` for those the caller rebuilds, `shared::port::Answers`) → `StoreBatchAnswer` (at most [`MAX_STORE_BATCH`] items, [`MAX_STORE_BATCH_BYTES`]) |
//! | `GET /internal/relay/users/{id}/memberships` | → `[ConversationMembers]` |
//! | `GET /internal/relay/users/{id}/conversations/{cid}/members` | → `ConversationMembers`, 404 `conversation_not_found` |
//! | `GET /internal/relay/users/{id}/sessions/{jti}` | → `{"active": bool}` |
//! | `POST /internal/relay/sessions` | `{"sessions":[{"user","jti"}…]}` → `{"active":[bool…]}` (≤ 1000) |
//! | `POST /internal/relay/users/{id}/conversations/{cid}/read` (and `/delivered`) | `{"upToSeq"}` → `MemberState` |
//! | `GET /internal/relay/users/{id}/sync?since=&limit=` | → `SyncResponse` |

use super::{json_config, resource};
use crate::auth::extractor::AuthError;
use crate::error::{ApiError, ApiResult};
use crate::service;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::{ready, Ready};
use serde::Deserialize;
use shared::auth::TokenError;
use shared::errors::ErrorCode;
use shared::ids::{ConversationId, UserId};
use shared::port::{
    ConversationMembers, Receipt, SessionCheck, SessionCheckAnswer, SessionState, StoreAnswer,
    StoreBatch, StoreBatchAnswer, MAX_SESSION_CHECKS, MAX_STORE_BATCH, MAX_STORE_BATCH_BYTES,
};
use shared::wire::{MemberState, SyncResponse, WatermarkRequest};

/// Register the internal routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/internal/relay/messages")
            .app_data(json_config(MAX_STORE_BATCH_BYTES))
            .route(web::post().to(store)),
    )
    .service(resource("/internal/relay/users/{id}/memberships").route(web::get().to(memberships)))
    .service(
        resource("/internal/relay/users/{id}/conversations/{cid}/members")
            .route(web::get().to(members)),
    )
    .service(
        resource("/internal/relay/users/{id}/conversations/{cid}/{receipt:read|delivered}")
            .route(web::post().to(mark)),
    )
    .service(resource("/internal/relay/users/{id}/sessions/{jti}").route(web::get().to(session)))
    .service(resource("/internal/relay/sessions").route(web::post().to(sessions)))
    .service(resource("/internal/relay/users/{id}/sync").route(web::get().to(sync)));
}

/// A caller holding a valid service token.
#[derive(Debug, Clone, Copy)]
pub struct RelayService;

impl FromRequest for RelayService {
    type Error = AuthError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(verify(req).map_err(AuthError))
    }
}

fn verify(req: &HttpRequest) -> Result<RelayService, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("AppState is not registered")))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::code(ErrorCode::MissingToken))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidToken,
                "the Authorization header must be `Bearer <service token>`",
            )
        })?;
    match state.keys.verify_service(token) {
        Ok(_) => Ok(RelayService),
        Err(TokenError::Expired) => Err(ApiError::code(ErrorCode::TokenExpired)),
        Err(TokenError::Invalid) => Err(ApiError::new(
            ErrorCode::InvalidToken,
            "a service token is required",
        )),
    }
}

/// Store a batch: one answer per item, in order.
#[tracing::instrument(skip_all, fields(items = body.items.len()))]
async fn store(
    _: RelayService,
    state: web::Data<AppState>,
    body: web::Json<StoreBatch>,
) -> ApiResult<web::Json<StoreBatchAnswer>> {
    let StoreBatch {
        items,
        announce,
        answers,
    } = body.into_inner();
    if items.len() > MAX_STORE_BATCH {
        return Err(ApiError::invalid(
            "items",
            format!("at most {MAX_STORE_BATCH} per batch"),
        ));
    }
    let outcomes = service::messages::store_batch(&state, &items, announce).await?;
    let outcomes = outcomes
        .into_iter()
        .zip(&items)
        .map(|(outcome, item)| StoreAnswer::new(outcome, item, answers))
        .collect();
    Ok(web::Json(StoreBatchAnswer { outcomes }))
}

async fn memberships(
    _: RelayService,
    state: web::Data<AppState>,
    user: web::Path<UserId>,
) -> ApiResult<web::Json<Vec<ConversationMembers>>> {
    let found = service::conversations::memberships(&state, user.into_inner()).await?;
    Ok(web::Json(found))
}

async fn members(
    _: RelayService,
    state: web::Data<AppState>,
    path: web::Path<(UserId, ConversationId)>,
) -> ApiResult<web::Json<ConversationMembers>> {
    let (user, conversation_id) = path.into_inner();
    let members = service::conversations::members(&state, user, conversation_id)
        .await?
        .ok_or_else(|| ApiError::code(ErrorCode::ConversationNotFound))?;
    Ok(web::Json(members))
}

async fn session(
    _: RelayService,
    state: web::Data<AppState>,
    path: web::Path<(UserId, String)>,
) -> ApiResult<web::Json<SessionState>> {
    let (user, jti) = path.into_inner();
    let active = service::sessions::session_active(&state, user, &jti).await?;
    Ok(web::Json(SessionState { active }))
}

async fn sessions(
    _: RelayService,
    state: web::Data<AppState>,
    body: web::Json<SessionCheck>,
) -> ApiResult<web::Json<SessionCheckAnswer>> {
    if body.sessions.len() > MAX_SESSION_CHECKS {
        return Err(ApiError::invalid(
            "sessions",
            format!("at most {MAX_SESSION_CHECKS} per call"),
        ));
    }
    let active = service::sessions::sessions_active(&state, &body.sessions).await?;
    Ok(web::Json(SessionCheckAnswer { active }))
}

async fn mark(
    _: RelayService,
    state: web::Data<AppState>,
    path: web::Path<(UserId, ConversationId, Receipt)>,
    body: web::Json<WatermarkRequest>,
) -> ApiResult<web::Json<MemberState>> {
    let (user, conversation, which) = path.into_inner();
    let moved =
        service::receipts::mark(&state, user, conversation, which.into(), body.up_to_seq).await?;
    Ok(web::Json(moved))
}

/// `GET /internal/relay/users/{id}/sync` query.
#[derive(Debug, Deserialize)]
struct SyncQuery {
    since: Option<String>,
    limit: Option<i64>,
}

async fn sync(
    _: RelayService,
    state: web::Data<AppState>,
    user: web::Path<UserId>,
    query: super::Query<SyncQuery>,
) -> ApiResult<web::Json<SyncResponse>> {
    let SyncQuery { since, limit } = query.into_inner();
    let answer = service::sync::sync(&state, user.into_inner(), since.as_deref(), limit).await?;
    Ok(web::Json(answer))
}
