//! Conversations: create (or find the direct one), list the caller's, read one.

use super::page_limit;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::service;
use crate::state::AppState;
use crate::store::{ListCursor, ListQuery};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::errors::{ErrorCode, ErrorEnvelope};
use shared::ids::ConversationId;
use shared::wire::{Conversation, ConversationSummary, CreateConversationRequest};
use utoipa::IntoParams;

/// Create a conversation with `memberIds` (the caller is added). One other member and no title:
/// the direct conversation of the pair, answered with 200 when it already exists. Creations are
/// limited per user (`limits.conversations_per_minute`, `conversations_burst`): each one
/// lengthens every member's conversation list. Finding the existing direct conversation gives
/// its token back.
#[utoipa::path(
    post, path = "/api/conversations", tag = "conversations",
    security(("bearer" = [])),
    request_body = CreateConversationRequest,
    responses(
        (status = 201, description = "Created", body = Conversation),
        (status = 200, description = "The existing direct conversation", body = Conversation),
        (status = 400, description = "`validation_failed` naming `memberIds` or `title`", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`user_not_found`: a member does not exist", body = ErrorEnvelope),
        (status = 429, description = "`rate_limited`: over the per-user rate of new conversations; `Retry-After` in seconds", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn create(
    user: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<CreateConversationRequest>,
) -> ApiResult<HttpResponse> {
    if let Err(wait) = state.conversations.check(user.user_id) {
        return Ok(super::rate_limited(wait, "too many new conversations"));
    }
    let created = service::conversations::create(&state, user.user_id, body.into_inner()).await?;
    Ok(if created.created {
        HttpResponse::Created().json(created.conversation)
    } else {
        state.conversations.refund(user.user_id);
        HttpResponse::Ok().json(created.conversation)
    })
}

/// `GET /api/conversations` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// At most this many (default and cap set by the server).
    pub limit: Option<i64>,
    /// Where the page starts: the cursor in the previous page's `Link` header.
    pub before: Option<String>,
}

/// A page of the caller's conversations, most recently active first, with their last message
/// and unread count. When more follow, the `Link` header names the next page
/// (`<…>; rel="next"`).
#[utoipa::path(
    get, path = "/api/conversations", tag = "conversations",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of the caller's conversations", body = Vec<ConversationSummary>,
         headers(("Link" = String, description = "`</api/conversations?limit=…&before=…>; rel=\"next\"` when more follow"))),
        (status = 400, description = "`validation_failed` (`limit`, `before`)", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn list(
    user: AuthUser,
    state: web::Data<AppState>,
    params: super::Query<ListParams>,
) -> ApiResult<HttpResponse> {
    let ListParams { limit, before } = params.into_inner();
    let before = before
        .map(|text| {
            ListCursor::parse(&text).ok_or_else(|| {
                ApiError::invalid("before", "is not a cursor from a Link header of this list")
            })
        })
        .transpose()?;
    let limit = page_limit(limit, state.limits.page_default, state.limits.page_max)?;
    let page = state
        .store
        .list_conversations(user.user_id, ListQuery { before, limit })
        .await?;
    let mut answer = HttpResponse::Ok();
    if let Some(next) = page.next {
        answer.insert_header((
            header::LINK,
            format!("</api/conversations?limit={limit}&before={next}>; rel=\"next\""),
        ));
    }
    Ok(answer.json(page.conversations))
}

/// One conversation of the caller's, with its members' watermarks.
#[utoipa::path(
    get, path = "/api/conversations/{id}", tag = "conversations",
    security(("bearer" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation", body = Conversation),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`conversation_not_found` (also when the caller is not a member)", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id, conversation_id = %id))]
pub async fn get(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<ConversationId>,
) -> ApiResult<web::Json<Conversation>> {
    state
        .store
        .conversation(user.user_id, id.into_inner())
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::code(ErrorCode::ConversationNotFound))
}
