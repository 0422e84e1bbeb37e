//! `send_message`: relay at once, store through the API in the background, ack when stored.
//!
//! Each socket has one store worker fed by a bounded queue, so one socket's messages are stored
//! in the order they were sent, while its other events (typing, ping) are not held up.

use std::sync::Arc;

use serde_json::{json, Value};
use shared::domain::{OutgoingMessage, SendTarget};
use shared::errors::{AckError, ErrorCode};
use shared::events::{BusEvent, RelayedMessage};
use shared::ids::{ConversationId, UserId};
use shared::wire::{MessageSaved, MessageStatus, SendMessageRequest};
use tokio::sync::mpsc;

use super::auth::Session;
use super::{ack_error, ack_ok, ChatState};
use crate::socketio::{Ack, Payload, Socket};

/// One message waiting to be stored.
pub struct StoreJob {
    request: SendMessageRequest,
    ack: Option<Ack>,
    /// The members whose devices were shown the relayed copy (they get `message_failed` if it
    /// cannot be stored); `None` when it was not relayed (`recipientId` sends).
    relayed_to: Option<Vec<UserId>>,
    socket_id: String,
}

/// The sending side of a socket's store queue, kept in the socket's extensions.
#[derive(Clone)]
pub struct StoreQueue(mpsc::Sender<StoreJob>);

/// Start the store worker of one socket. It stops once the queue's sender is dropped and the
/// queue is drained, so messages a client emitted just before leaving are still stored.
pub fn start_worker(state: Arc<ChatState>, session: Session) -> StoreQueue {
    let (tx, mut rx) = mpsc::channel::<StoreJob>(state.limits.sends_queued_per_socket);
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            store(&state, &session, job).await;
        }
    });
    StoreQueue(tx)
}

/// Handle one `send_message` event.
#[tracing::instrument(skip_all, fields(user_id = %session.user, conn_id = %socket.id()))]
pub async fn send_message(
    state: &Arc<ChatState>,
    socket: &Socket,
    session: &Session,
    payload: Payload,
    ack: Option<Ack>,
) {
    state.metrics.messages_in.inc();
    let (request, message) = match parse(state, &payload) {
        Ok(parsed) => parsed,
        Err(error) => return ack_error(ack, error),
    };
    let Some(queue) = socket.extensions().get::<StoreQueue>() else {
        return ack_error(
            ack,
            AckError::new(ErrorCode::InternalError, "socket not ready"),
        );
    };
    // Reserve the queue slot first: a message is relayed only if it will be stored.
    let Ok(permit) = queue.0.try_reserve() else {
        return ack_error(
            ack,
            AckError::new(
                ErrorCode::RateLimited,
                "too many messages waiting to be stored",
            ),
        );
    };
    let relayed_to = match message.target {
        SendTarget::Conversation(conversation) => {
            match state.members(session, conversation).await {
                Ok(members) => {
                    relay(state, socket, session, conversation, message, &members).await;
                    Some(members)
                }
                Err(error) => return ack_error(ack, error),
            }
        }
        // Direct by recipient: the API finds or creates the conversation; its `message_stored`
        // delivers the message.
        SendTarget::Recipient(_) => None,
    };
    permit.send(StoreJob {
        request,
        ack,
        relayed_to,
        socket_id: socket.id().to_owned(),
    });
}

/// The request as the API will receive it, and what it parses to under the API's own rules
/// ([`OutgoingMessage::parse`]), so a message relayed at once is one the API will accept.
fn parse(
    state: &ChatState,
    payload: &Payload,
) -> Result<(SendMessageRequest, OutgoingMessage), AckError> {
    let arg = payload.args.first().cloned().unwrap_or(Value::Null);
    let request: SendMessageRequest = serde_json::from_value(arg)
        .map_err(|e| AckError::new(ErrorCode::InvalidJson, format!("send_message: {e}")))?;
    let message = OutgoingMessage::parse(&request, state.limits.text_chars)
        .map_err(|e| AckError::new(ErrorCode::ValidationFailed, e.to_string()))?;
    Ok((request, message))
}

/// Show the message at once on every member's devices but the sending one, here and through
/// the bus on every other relay.
async fn relay(
    state: &ChatState,
    socket: &Socket,
    session: &Session,
    conversation: ConversationId,
    parsed: OutgoingMessage,
    members: &[UserId],
) {
    let message = RelayedMessage {
        client_msg_id: parsed.client_msg_id.into_inner(),
        conversation_id: conversation,
        sender_id: session.user,
        kind: parsed.kind,
        content: parsed.content.into_inner(),
        attachment_id: parsed.attachment_id,
        sent_at: chrono::Utc::now(),
        status: MessageStatus::Sent,
    };
    state.relayed.insert(session.user, &message.client_msg_id);
    let value = serde_json::to_value(&message).unwrap_or(Value::Null);
    let sent = state
        .registry
        .emit_to(members, "receive_message", &value, Some(socket.id()));
    state.metrics.messages_out.add(sent);
    state
        .publish(members, BusEvent::MessageRelayed { message })
        .await;
}

async fn store(state: &ChatState, session: &Session, job: StoreJob) {
    let conversation = job.request.conversation_id;
    match state.api.store(&session.token, &job.request).await {
        Ok(message) => {
            let mut answer =
                serde_json::to_value(MessageSaved::from(&message)).unwrap_or(json!({}));
            answer["status"] = json!("sent");
            ack_ok(job.ack, answer);
        }
        Err(error) => {
            tracing::warn!(code = %error.code, client_msg_id = %job.request.client_msg_id, "message not stored");
            if let (Some(members), Some(conversation)) = (&job.relayed_to, conversation) {
                let failed = json!({
                    "clientMsgId": job.request.client_msg_id,
                    "conversationId": conversation,
                    "error": error,
                });
                state
                    .registry
                    .emit_to(members, "message_failed", &failed, Some(&job.socket_id));
                state
                    .publish(
                        members,
                        BusEvent::MessageFailed {
                            sender_id: session.user,
                            client_msg_id: job.request.client_msg_id.clone(),
                            conversation_id: conversation,
                            error: error.clone(),
                        },
                    )
                    .await;
            }
            ack_error(job.ack, error);
        }
    }
}
