//! Receipts: move the caller's `delivered` or `read` watermark in a conversation.

use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::service;
use crate::state::AppState;
use crate::store::Watermark;
use actix_web::web;
use shared::errors::ErrorEnvelope;
use shared::ids::ConversationId;
use shared::wire::{MemberState, WatermarkRequest};

/// Mark every message up to `upToSeq` delivered to the caller's devices.
#[utoipa::path(
    post, path = "/api/conversations/{id}/delivered", tag = "receipts",
    security(("bearer" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = WatermarkRequest,
    responses(
        (status = 200, description = "The caller's watermarks after the move", body = MemberState),
        (status = 400, description = "`validation_failed`: negative upToSeq", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`conversation_not_found`", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id, conversation_id = %id))]
pub async fn delivered(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<ConversationId>,
    body: web::Json<WatermarkRequest>,
) -> ApiResult<web::Json<MemberState>> {
    move_watermark(&state, &user, id.into_inner(), Watermark::Delivered, &body).await
}

/// Mark every message up to `upToSeq` read by the caller (and so delivered too).
#[utoipa::path(
    post, path = "/api/conversations/{id}/read", tag = "receipts",
    security(("bearer" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = WatermarkRequest,
    responses(
        (status = 200, description = "The caller's watermarks after the move", body = MemberState),
        (status = 400, description = "`validation_failed`: negative upToSeq", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`conversation_not_found`", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id, conversation_id = %id))]
pub async fn read(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<ConversationId>,
    body: web::Json<WatermarkRequest>,
) -> ApiResult<web::Json<MemberState>> {
    move_watermark(&state, &user, id.into_inner(), Watermark::Read, &body).await
}

async fn move_watermark(
    state: &AppState,
    user: &AuthUser,
    conversation: ConversationId,
    which: Watermark,
    body: &WatermarkRequest,
) -> ApiResult<web::Json<MemberState>> {
    let state =
        service::receipts::mark(state, user.user_id, conversation, which, body.up_to_seq).await?;
    Ok(web::Json(state))
}
