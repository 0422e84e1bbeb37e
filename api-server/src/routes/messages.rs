//! Messages: send (stored exactly once per `clientMsgId`) and read a conversation's history.

use super::page_limit;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::service;
use crate::service::messages::parse_send;
use crate::state::AppState;
use crate::store::PageQuery;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::errors::ErrorEnvelope;
use shared::ids::ConversationId;
use shared::wire::{Message, MessagePage, SendMessageRequest};
use utoipa::IntoParams;

/// Send a message to a conversation (`conversationId`) or to a user (`recipientId`: their direct
/// conversation, created if needed). Retrying with the same `clientMsgId` answers the stored
/// message with 200 and stores nothing new.
#[utoipa::path(
    post, path = "/api/messages", tag = "messages",
    security(("bearer" = [])),
    request_body = SendMessageRequest,
    responses(
        (status = 201, description = "Stored", body = Message),
        (status = 200, description = "A retry: the message stored the first time", body = Message),
        (status = 400, description = "`validation_failed` naming the field", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`conversation_not_found` or `user_not_found`", body = ErrorEnvelope),
        (status = 413, description = "`payload_too_large`", body = ErrorEnvelope),
        (status = 429, description = "`rate_limited`: over the per-user send rate; `Retry-After` in seconds", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_mismatch`: the clientMsgId was used for another message", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(
    skip_all,
    fields(user_id = %user.user_id, client_msg_id = tracing::field::Empty, conversation_id = tracing::field::Empty)
)]
pub async fn send(
    user: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<SendMessageRequest>,
) -> ApiResult<HttpResponse> {
    if let Err(wait) = state.sends.check(user.user_id) {
        return Ok(super::rate_limited(wait, "too many messages"));
    }
    let new = parse_send(user.user_id, &body, state.limits.text_chars)?;
    let span = tracing::Span::current();
    span.record("client_msg_id", new.client_msg_id.as_str());
    let sent = service::messages::send(&state, new).await?;
    span.record(
        "conversation_id",
        tracing::field::display(sent.message.conversation_id),
    );
    Ok(if sent.created {
        HttpResponse::Created().json(sent.message)
    } else {
        HttpResponse::Ok().json(sent.message)
    })
}

/// `GET /api/conversations/{id}/messages` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only messages with `seq` above this.
    pub after_seq: Option<i64>,
    /// Only messages with `seq` below this.
    pub before_seq: Option<i64>,
    /// At most this many (default and cap set by the server).
    pub limit: Option<i64>,
}

/// A page of a conversation's messages in `seq` order.
#[utoipa::path(
    get, path = "/api/conversations/{id}/messages", tag = "messages",
    security(("bearer" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 404, description = "`conversation_not_found` (also when the caller is not a member)", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id, conversation_id = %id))]
pub async fn history(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<ConversationId>,
    query: super::Query<HistoryQuery>,
) -> ApiResult<web::Json<MessagePage>> {
    let query = query.into_inner();
    let page = PageQuery {
        after_seq: non_negative("afterSeq", query.after_seq)?,
        before_seq: non_negative("beforeSeq", query.before_seq)?,
        limit: page_limit(
            query.limit,
            state.limits.page_default,
            state.limits.page_max,
        )?,
    };
    let mut page = state
        .store
        .messages(user.user_id, id.into_inner(), page)
        .await?;
    crate::service::attachments::decorate(&state, &mut page.messages).await?;
    Ok(web::Json(page))
}

fn non_negative(field: &str, value: Option<i64>) -> ApiResult<Option<i64>> {
    match value {
        Some(v) if v < 0 => Err(ApiError::invalid(field, "must not be negative")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_seqs_are_refused() {
        assert!(non_negative("afterSeq", Some(-1)).is_err());
        assert_eq!(non_negative("afterSeq", Some(0)).ok(), Some(Some(0)));
    }
}
