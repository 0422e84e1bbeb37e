//! Conversations: create (or find the direct one), list the caller's, read one.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use shared::errors::{ErrorCode, ErrorEnvelope};
use shared::events::BusEvent;
use shared::ids::{ConversationId, UserId};
use shared::wire::{Conversation, ConversationSummary, CreateConversationRequest};

/// Most members a conversation may be created with, besides its creator.
pub const MAX_OTHER_MEMBERS: usize = 100;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;

/// Create a conversation with `memberIds` (the caller is added). One other member and no title:
/// the direct conversation of the pair, answered with 200 when it already exists.
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
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id, conversation_id = tracing::field::Empty))]
pub async fn create(
    user: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<CreateConversationRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let others = other_members(user.user_id, &body.member_ids)?;
    let title = parse_title(body.title.as_deref())?;
    let outcome = state
        .store
        .create_conversation(user.user_id, &others, title)
        .await?;
    let conversation = outcome.conversation;
    tracing::Span::current().record("conversation_id", tracing::field::display(conversation.id));
    if !outcome.created {
        return Ok(HttpResponse::Ok().json(conversation));
    }
    let members: Vec<UserId> = conversation.members.iter().map(|m| m.user.id).collect();
    state
        .publisher
        .publish(
            &members,
            BusEvent::ConversationChanged {
                conversation: conversation.clone(),
            },
        )
        .await;
    Ok(HttpResponse::Created().json(conversation))
}

/// The caller's conversations, most recently active first, with their last message and unread
/// count.
#[utoipa::path(
    get, path = "/api/conversations", tag = "conversations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's conversations", body = Vec<ConversationSummary>),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn list(
    user: AuthUser,
    state: web::Data<AppState>,
) -> ApiResult<web::Json<Vec<ConversationSummary>>> {
    Ok(web::Json(
        state.store.list_conversations(user.user_id).await?,
    ))
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

/// The requested members without the creator and without repeats: 1 to 100 of them.
fn other_members(creator: UserId, requested: &[UserId]) -> ApiResult<Vec<UserId>> {
    let mut others: Vec<UserId> = Vec::with_capacity(requested.len().min(MAX_OTHER_MEMBERS + 1));
    for &id in requested {
        if id != creator && !others.contains(&id) {
            if others.len() == MAX_OTHER_MEMBERS {
                return Err(ApiError::invalid(
                    "memberIds",
                    format!("at most {MAX_OTHER_MEMBERS} other members"),
                ));
            }
            others.push(id);
        }
    }
    if others.is_empty() {
        return Err(ApiError::invalid(
            "memberIds",
            "must name at least one user other than yourself",
        ));
    }
    Ok(others)
}

/// A title is trimmed, 1 to 100 characters without control characters; blank means none.
fn parse_title(raw: Option<&str>) -> ApiResult<Option<String>> {
    let Some(title) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::invalid(
            "title",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "title",
            "must not contain control characters",
        ));
    }
    Ok(Some(title.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_drop_the_creator_and_repeats() {
        let others = other_members(UserId(1), &[UserId(2), UserId(1), UserId(2), UserId(3)]);
        assert_eq!(others.ok(), Some(vec![UserId(2), UserId(3)]));
    }

    #[test]
    fn members_must_name_someone_else_and_at_most_a_hundred() {
        assert!(other_members(UserId(1), &[]).is_err());
        assert!(other_members(UserId(1), &[UserId(1)]).is_err());
        let hundred: Vec<UserId> = (2..102).map(UserId).collect();
        assert_eq!(
            other_members(UserId(1), &hundred).map(|v| v.len()).ok(),
            Some(100)
        );
        let too_many: Vec<UserId> = (2..103).map(UserId).collect();
        assert!(other_members(UserId(1), &too_many).is_err());
    }

    #[test]
    fn titles_are_trimmed_bounded_and_blank_means_none() {
        assert_eq!(
            parse_title(Some("  Team  ")).ok(),
            Some(Some("Team".to_owned()))
        );
        assert_eq!(parse_title(Some("   ")).ok(), Some(None));
        assert!(parse_title(Some(&"x".repeat(101))).is_err());
        assert!(parse_title(Some("a\0b")).is_err());
    }
}
