//! Conversations: create one (or find the direct one), a user's memberships, a conversation's
//! members.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use shared::domain::ConversationTitle;
use shared::events::BusEvent;
use shared::ids::{ConversationId, UserId};
use shared::port::ConversationMembers;
use shared::wire::{Conversation, ConversationKind, CreateConversationRequest};

/// Most members a conversation may be created with, besides its creator.
pub const MAX_OTHER_MEMBERS: usize = 100;

/// A conversation created, or the existing direct one (`created: false`).
#[derive(Debug, Clone)]
pub struct Created {
    pub conversation: Conversation,
    pub created: bool,
}

/// Create a conversation of `creator` with `memberIds`; one other member and no title: the
/// direct conversation of the pair, found if it exists. A new one is announced to its members
/// (`conversation_changed`).
#[tracing::instrument(skip_all, fields(user_id = %creator, conversation_id = tracing::field::Empty))]
pub async fn create(
    state: &AppState,
    creator: UserId,
    body: CreateConversationRequest,
) -> ApiResult<Created> {
    let others = other_members(creator, &body.member_ids)?;
    let title = ConversationTitle::parse(body.title.as_deref())?;
    let outcome = state
        .store
        .create_conversation(creator, &others, title.map(ConversationTitle::into_inner))
        .await?;
    let conversation = outcome.conversation;
    tracing::Span::current().record("conversation_id", tracing::field::display(conversation.id));
    if outcome.created {
        let members: Vec<UserId> = conversation.members.iter().map(|m| m.user.id).collect();
        state.publisher.publish(
            &members,
            BusEvent::ConversationChanged {
                conversation: conversation.clone(),
            },
        );
    }
    Ok(Created {
        conversation,
        created: outcome.created,
    })
}

/// Every conversation `user` is a member of, with all its members.
pub async fn memberships(state: &AppState, user: UserId) -> ApiResult<Vec<ConversationMembers>> {
    Ok(state.store.memberships(user).await?)
}

/// The members of `conversation` when `user` is one; `None` otherwise (or when it does not
/// exist: indistinguishable).
pub async fn members(
    state: &AppState,
    user: UserId,
    conversation: ConversationId,
) -> ApiResult<Option<ConversationMembers>> {
    Ok(state
        .store
        .conversation(user, conversation)
        .await?
        .map(|c| ConversationMembers {
            conversation_id: c.id,
            members: c.members.iter().map(|m| m.user.id).collect(),
            direct: c.kind == ConversationKind::Direct,
        }))
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
}
