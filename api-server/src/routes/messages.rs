//! Messages: send (stored exactly once per `clientMsgId`) and read a conversation's history.

use super::page_limit;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{NewMessage, PageQuery};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::domain::OutgoingMessage;
use shared::errors::ErrorEnvelope;
use shared::events::BusEvent;
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
    let new = parse_send(user.user_id, body.into_inner(), state.limits.text_chars)?;
    let span = tracing::Span::current();
    span.record("client_msg_id", new.client_msg_id.as_str());
    let outcome = state.store.send_message(new).await?;
    span.record(
        "conversation_id",
        tracing::field::display(outcome.message.conversation_id),
    );
    if !outcome.created {
        return Ok(HttpResponse::Ok().json(outcome.message));
    }
    state.metrics.messages_stored.inc();
    if let Some(conversation) = outcome.new_conversation {
        state
            .publisher
            .publish(
                &outcome.members,
                BusEvent::ConversationChanged { conversation },
            )
            .await;
    }
    state
        .publisher
        .publish(
            &outcome.members,
            BusEvent::MessageStored {
                message: outcome.message.clone(),
            },
        )
        .await;
    Ok(HttpResponse::Created().json(outcome.message))
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
    query: web::Query<HistoryQuery>,
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
    let page = state
        .store
        .messages(user.user_id, id.into_inner(), page)
        .await?;
    Ok(web::Json(page))
}

fn non_negative(field: &str, value: Option<i64>) -> ApiResult<Option<i64>> {
    match value {
        Some(v) if v < 0 => Err(ApiError::invalid(field, "must not be negative")),
        other => Ok(other),
    }
}

/// Turn a send request into a [`NewMessage`] from `sender`, checking every field.
fn parse_send(
    sender: shared::ids::UserId,
    body: SendMessageRequest,
    max_chars: usize,
) -> ApiResult<NewMessage> {
    let message = OutgoingMessage::parse(&body, max_chars)?;
    Ok(NewMessage {
        sender,
        client_msg_id: message.client_msg_id,
        target: message.target,
        kind: message.kind,
        content: message.content,
        attachment_id: message.attachment_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Target;
    use shared::domain::MessageKind;
    use shared::ids::UserId;

    fn request(json: serde_json::Value) -> SendMessageRequest {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(result: ApiResult<NewMessage>) -> Option<String> {
        match result {
            Err(ApiError::Known { field, .. }) => field,
            _ => None,
        }
    }

    #[test]
    fn the_sender_is_the_caller_whatever_the_body_says() {
        let body = request(serde_json::json!({
            "clientMsgId": "c1", "conversationId": "7", "content": "hi", "senderId": "99"
        }));
        let new = parse_send(UserId(1), body, 100).unwrap();
        assert_eq!(new.sender, UserId(1));
        assert_eq!(new.target, Target::Conversation(ConversationId(7)));
        assert_eq!(new.kind, MessageKind::Text);
    }

    #[test]
    fn exactly_one_target_is_required() {
        let none = request(serde_json::json!({"clientMsgId": "c1", "content": "hi"}));
        assert_eq!(
            field_of(parse_send(UserId(1), none, 100)).as_deref(),
            Some("conversationId")
        );
        let both = request(serde_json::json!({
            "clientMsgId": "c1", "content": "hi", "conversationId": "1", "recipientId": "2"
        }));
        assert_eq!(
            field_of(parse_send(UserId(1), both, 100)).as_deref(),
            Some("recipientId")
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                serde_json::json!({"clientMsgId": "", "recipientId": "2", "content": "hi"}),
                "clientMsgId",
            ),
            (
                serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "hi", "kind": "gif"}),
                "kind",
            ),
            (
                serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "   "}),
                "content",
            ),
            (
                serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "hello!"}),
                "content",
            ),
            (
                serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "hi", "attachmentId": "a".repeat(257)}),
                "attachmentId",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(
                field_of(parse_send(UserId(1), request(json), 5)).as_deref(),
                Some(field)
            );
        }
    }

    #[test]
    fn negative_seqs_are_refused() {
        assert!(non_negative("afterSeq", Some(-1)).is_err());
        assert_eq!(non_negative("afterSeq", Some(0)).ok(), Some(Some(0)));
    }
}
