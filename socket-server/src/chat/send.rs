//! `send_message`: relay at once, store through the API in the background, ack when stored.
//!
//! Each socket has one store worker fed by a bounded queue, so one socket's messages are stored
//! in the order they were sent, while its other events (typing, ping) are not held up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::domain::{OutgoingMessage, SendTarget};
use shared::errors::{AckError, ErrorCode};
use shared::events::{BusEvent, RelayedMessage};
use shared::ids::{ConversationId, UserId};
use shared::wire::{MessageSaved, MessageStatus, SendMessageRequest};
use tokio::sync::{mpsc, Notify};

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

/// Sends queued on every socket and not answered yet, so shutdown can wait for their acks.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    /// Set at shutdown: new sends are refused (`service_unavailable`, retryable).
    closing: AtomicBool,
    /// Woken when `count` reaches zero.
    idle: Notify,
}

impl InFlight {
    fn start(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn finish(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Refuse new sends, then wait (at most `timeout`) until every queued send is answered.
    /// Returns how many were still unanswered at the deadline.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.count.load(Ordering::SeqCst)
    }
}

/// Start the store worker of one socket. It stops once the queue's sender is dropped and the
/// queue is drained, so messages a client emitted just before leaving are still stored.
pub fn start_worker(state: Arc<ChatState>, session: Session) -> StoreQueue {
    let (tx, mut rx) = mpsc::channel::<StoreJob>(state.limits.sends_queued_per_socket);
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            store(&state, &session, job).await;
            state.in_flight.finish();
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
    let received = Instant::now();
    state.metrics.messages_in.inc();
    if state.in_flight.closing() {
        return ack_error(
            ack,
            AckError::new(ErrorCode::ServiceUnavailable, "the relay is shutting down"),
        );
    }
    if !state.sends.allow(session.user) {
        return ack_error(
            ack,
            AckError::new(ErrorCode::RateLimited, "too many messages, slow down"),
        );
    }
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
                    relay(
                        state,
                        socket,
                        session,
                        conversation,
                        message,
                        &members,
                        received,
                    )
                    .await;
                    Some(members)
                }
                Err(error) => return ack_error(ack, error),
            }
        }
        // Direct by recipient: the API finds or creates the conversation; its `message_stored`
        // delivers the message.
        SendTarget::Recipient(_) => None,
    };
    state.in_flight.start();
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
    received: Instant,
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
    state
        .metrics
        .send_fanout
        .observe(received.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_refuses_new_sends_and_waits_for_the_queued_ones() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.start();
        let worker = in_flight.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            worker.finish();
        });
        assert_eq!(in_flight.drain(Duration::from_secs(5)).await, 0);
        assert!(in_flight.closing());
        in_flight.start();
        assert_eq!(in_flight.drain(Duration::from_millis(20)).await, 1);
    }
}
