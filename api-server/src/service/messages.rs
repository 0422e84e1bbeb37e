//! Messages: send one (stored exactly once per `clientMsgId`), or store a batch of the relay's
//! (group commit, one answer per message).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{NewMessage, SendOutcome, SessionMessage, StoreError};
use shared::domain::OutgoingMessage;
use shared::errors::{AckError, ErrorCode};
use shared::events::BusEvent;
use shared::ids::UserId;
use shared::port::{Announce, StoreItem, StoreOutcome};
use shared::wire::{Message, SendMessageRequest};
use std::collections::{BTreeSet, HashMap};

/// A send's answer: the stored message, and whether this call stored it (`false`: a retry
/// answered with the original).
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

/// Turn a send request into a [`NewMessage`] from `sender`, checking every field.
pub fn parse_send(
    sender: UserId,
    body: &SendMessageRequest,
    max_chars: usize,
) -> ApiResult<NewMessage> {
    let message = OutgoingMessage::parse(body, max_chars)?;
    Ok(NewMessage {
        sender,
        client_msg_id: message.client_msg_id,
        target: message.target,
        kind: message.kind,
        content: message.content,
        attachment_id: message.attachment_id,
    })
}

/// Store one message exactly once; a new one is published to the members after commit (with
/// its direct conversation first when the send created it).
#[tracing::instrument(
    skip_all,
    fields(user_id = %new.sender, client_msg_id = %new.client_msg_id.as_str())
)]
pub async fn send(state: &AppState, new: NewMessage) -> ApiResult<Sent> {
    let mut outcome = {
        let _writing = writing(state).await?;
        state.store.send_message(new).await?
    };
    describe_attachments(state, std::slice::from_mut(&mut outcome)).await;
    Ok(announce(state, outcome, Announce::Bus))
}

/// Describe the uploads of stored messages (metadata and signed URLs) before they are answered
/// and published. The messages are stored already: a failure to describe is logged, and they
/// go out with their `attachmentId` alone (history and sync describe them later).
async fn describe_attachments(state: &AppState, outcomes: &mut [SendOutcome]) {
    if outcomes.iter().all(|o| o.message.attachment_id.is_none()) {
        return;
    }
    let mut messages: Vec<Message> = outcomes.iter().map(|o| o.message.clone()).collect();
    match super::attachments::decorate(state, &mut messages).await {
        Ok(()) => {
            for (outcome, message) in outcomes.iter_mut().zip(messages) {
                outcome.message = message;
            }
        }
        Err(e) => tracing::warn!(error = ?e, "describing the attachments of stored messages"),
    }
}

/// A permit to store: stores never take the connections reads need.
async fn writing(state: &AppState) -> ApiResult<tokio::sync::SemaphorePermit<'_>> {
    state
        .writers
        .acquire()
        .await
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("the writers' semaphore is closed")))
}

/// Store a batch of the relay's messages in order (one transaction where the backend allows),
/// one answer per item, in order. An item is refused on its own (`token_revoked` when its
/// session is not an active one of its sender, `validation_failed`, `conversation_not_found`,
/// `idempotency_mismatch`, …); `Err` only when storage failed for the whole batch. The store
/// checks the sessions of the well-formed items in the batch's own transaction; only the
/// malformed ones (rare) cost a look-up of their own, so that a revoked session answers
/// `token_revoked` whatever it sent. With [`Announce::Caller`] the new messages are not
/// published on the bus: the calling relay announces them.
#[tracing::instrument(skip_all, fields(items = items.len()))]
pub async fn store_batch(
    state: &AppState,
    items: &[StoreItem],
    announce_by: Announce,
) -> ApiResult<Vec<StoreOutcome>> {
    let mut answers: Vec<Option<StoreOutcome>> = Vec::with_capacity(items.len());
    let mut batch = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    let mut malformed = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_send(item.sender, &item.message, state.limits.text_chars) {
            Ok(message) => {
                answers.push(None);
                batch.push(SessionMessage {
                    jti: item.jti.clone(),
                    message,
                });
                positions.push(i);
            }
            Err(e) => {
                answers.push(Some(StoreOutcome::Error(e.into())));
                malformed.push(i);
            }
        }
    }
    if !malformed.is_empty() {
        let jtis: Vec<String> = malformed
            .iter()
            .map(|&i| items[i].jti.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let active: HashMap<String, UserId> = state
            .store
            .active_sessions(&jtis)
            .await?
            .into_iter()
            .collect();
        for i in malformed {
            if active.get(&items[i].jti) != Some(&items[i].sender) {
                answers[i] = Some(StoreOutcome::Error(
                    ApiError::from(StoreError::SessionInactive).into(),
                ));
            }
        }
    }
    if !batch.is_empty() {
        let results = {
            let _writing = writing(state).await?;
            state.store.send_batch(batch).await?
        };
        let mut stored: Vec<SendOutcome> = Vec::new();
        let mut results: Vec<Result<usize, _>> = results
            .into_iter()
            .map(|r| {
                r.map(|outcome| {
                    stored.push(outcome);
                    stored.len() - 1
                })
            })
            .collect();
        describe_attachments(state, &mut stored).await;
        let mut stored: Vec<Option<SendOutcome>> = stored.into_iter().map(Some).collect();
        let results = results.drain(..).map(|r| {
            r.and_then(|k| {
                stored[k]
                    .take()
                    .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("answered twice")))
            })
        });
        for (i, result) in positions.into_iter().zip(results) {
            answers[i] = Some(match result {
                Ok(outcome) => {
                    if outcome.created {
                        // Admitted by the relay's budget; REST sends share this one.
                        state.sends.charge(items[i].sender);
                    }
                    StoreOutcome::Message(announce(state, outcome, announce_by).message)
                }
                Err(e) => StoreOutcome::Error(ApiError::from(e).into()),
            });
        }
    }
    Ok(answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                StoreOutcome::Error(AckError::new(
                    ErrorCode::InternalError,
                    "the store gave no answer for this message",
                ))
            })
        })
        .collect())
}

/// Publish what a send committed (nothing for a retry), and count it. A conversation it created
/// is always published; the message only when `by` is [`Announce::Bus`].
fn announce(state: &AppState, outcome: SendOutcome, by: Announce) -> Sent {
    if !outcome.created {
        return Sent {
            message: outcome.message,
            created: false,
        };
    }
    state.metrics.messages_stored.inc();
    if let Some(conversation) = outcome.new_conversation {
        state.publisher.publish(
            &outcome.members,
            BusEvent::ConversationChanged { conversation },
        );
    }
    if by == Announce::Bus {
        state.publisher.publish(
            &outcome.members,
            BusEvent::MessageStored {
                message: outcome.message.clone(),
            },
        );
    }
    Sent {
        message: outcome.message,
        created: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Target;
    use shared::domain::MessageKind;
    use shared::ids::ConversationId;

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
        let new = parse_send(UserId(1), &body, 100).unwrap();
        assert_eq!(new.sender, UserId(1));
        assert_eq!(new.target, Target::Conversation(ConversationId(7)));
        assert_eq!(new.kind, MessageKind::Text);
    }

    #[test]
    fn exactly_one_target_is_required() {
        let none = request(serde_json::json!({"clientMsgId": "c1", "content": "hi"}));
        assert_eq!(
            field_of(parse_send(UserId(1), &none, 100)).as_deref(),
            Some("conversationId")
        );
        let both = request(serde_json::json!({
            "clientMsgId": "c1", "content": "hi", "conversationId": "1", "recipientId": "2"
        }));
        assert_eq!(
            field_of(parse_send(UserId(1), &both, 100)).as_deref(),
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
                field_of(parse_send(UserId(1), &request(json), 5)).as_deref(),
                Some(field)
            );
        }
    }
}
