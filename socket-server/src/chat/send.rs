//! `send_message`: relay at once, store in the background, ack when stored.
//!
//! Nothing here awaits: the members come from the relay's [`MembershipView`], the relayed copy
//! is queued on the local sockets and handed to the background bus publisher, and the message
//! is queued on its sender's store lane. A conversation the view does not know yet is resolved
//! in a task of its own while the socket keeps reading; the sends behind it wait for the answer
//! in order. Storage lagging shows as late acks, never as late `receive_message`. A send by
//! `recipientId` goes the same way to the pair's direct conversation when the view knows it; a
//! first message to a new contact is stored first (the API creates the conversation).
//!
//! [`MembershipView`]: super::membership::MembershipView

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use shared::domain::{OutgoingMessage, SendTarget};
use shared::errors::{AckError, ErrorCode};
use shared::events::{BusEvent, RelayedMessage};
use shared::port::StoreItem;
use shared::wire::{MessageStatus, SendMessageRequest};

use super::auth::Session;
use super::membership::Members;
use super::store::{Refused, SocketSends, StoreJob};
use super::ChatState;
use crate::socketio::{Ack, Payload, Socket};

/// Handle one `send_message` event.
#[tracing::instrument(skip_all, fields(user_id = %session.user, conn_id = %socket.id()))]
pub fn send_message(
    state: &Arc<ChatState>,
    socket: &Socket,
    session: &Session,
    payload: Payload,
    ack: Option<Ack>,
) {
    let received = Instant::now();
    state.metrics.messages_in.inc();
    // A refusal; a client of the second design document (no callback) hears `messageError`.
    let request = payload.args.first().unwrap_or(&Value::Null);
    let ack_error = |ack, error| super::vocab::refuse_send(socket, request, ack, error);
    // A refusal by a limit: counted by it; `wait`, when the limit knows when to try again.
    let refuse = |ack, refused: Refused, wait: Option<Duration>| {
        state.metrics.refused(refused);
        let error = refused.error();
        ack_error(
            ack,
            match wait {
                Some(wait) => error.retry_after(wait),
                None => error,
            },
        )
    };
    if state.admission.closing() {
        return refuse(ack, Refused::Closing, None);
    }
    if let Err(wait) = state.sends.check(session.user) {
        return refuse(ack, Refused::UserRate, Some(wait));
    }
    let (request, message) = match parse(state, &payload) {
        Ok(parsed) => parsed,
        Err(error) => return ack_error(ack, error),
    };
    let Some(counter) = socket.extensions().get::<SocketSends>() else {
        return ack_error(
            ack,
            AckError::new(ErrorCode::InternalError, "socket not ready"),
        );
    };
    let limits = &state.limits;
    let ticket = match state.admission.admit(
        &counter,
        limits.sends_queued_per_socket,
        limits.sends_in_flight,
    ) {
        Ok(ticket) => ticket,
        Err(refused) => return refuse(ack, refused, None),
    };
    let mut job = StoreJob {
        item: StoreItem {
            sender: session.user,
            jti: session.jti.clone(),
            message: request,
        },
        ack,
        relayed_to: None,
        socket_id: socket.id().to_owned(),
        ticket,
    };
    let conversation = match message.target {
        SendTarget::Conversation(conversation) => conversation,
        SendTarget::Recipient(recipient) => match state.view.direct(session.user, recipient) {
            // The pair's direct conversation, which the API would store it in: relayed at once
            // and stored as addressed to it, like any other send.
            Some(conversation) => {
                job.item.message.recipient_id = None;
                job.item.message.conversation_id = Some(conversation);
                conversation
            }
            // A first message to this user (or one the view cannot place): the API finds or
            // creates the conversation, and its `message_stored` delivers the message.
            None => {
                state
                    .relayed
                    .insert_stored_first(session.user, job.item.message.client_msg_id.as_str());
                return state.push_store(job);
            }
        },
    };
    let relayed = relayed_copy(session, conversation, message);
    let work_state = state.clone();
    let work: super::membership::Parked = Box::new(move |members: Option<Members>| {
        let mut job = job;
        if let Some(members) = members {
            relay(&work_state, &job.socket_id, relayed, &members, received);
            job.relayed_to = Some(members);
        } else {
            // Not a member (or unknown): not relayed; the API refuses it and the ack says why.
            work_state
                .relayed
                .insert_stored_first(job.item.sender, job.item.message.client_msg_id.as_str());
        }
        work_state.push_store(job);
    });
    super::resolve_members(state, session.user, conversation, work);
}

/// The request as the API will receive it, and what it parses to under the API's own rules
/// ([`OutgoingMessage::parse`]), so a message relayed at once is one the API will accept.
fn parse(
    state: &ChatState,
    payload: &Payload,
) -> Result<(SendMessageRequest, OutgoingMessage), AckError> {
    let arg = payload.args.first().unwrap_or(&Value::Null);
    // Read from the borrowed value: no copy of the payload.
    let request = SendMessageRequest::deserialize(arg)
        .map_err(|e| AckError::new(ErrorCode::InvalidJson, format!("send_message: {e}")))?;
    let message = OutgoingMessage::parse(&request, state.limits.text_chars)
        .map_err(|e| AckError::new(ErrorCode::ValidationFailed, e.to_string()))?;
    Ok((request, message))
}

fn relayed_copy(
    session: &Session,
    conversation: shared::ids::ConversationId,
    parsed: OutgoingMessage,
) -> RelayedMessage {
    RelayedMessage {
        client_msg_id: parsed.client_msg_id.into_inner(),
        conversation_id: conversation,
        sender_id: session.user,
        kind: parsed.kind,
        content: parsed.content.into_inner(),
        attachment_id: parsed.attachment_id,
        attachment: parsed.attachment,
        sent_at: chrono::Utc::now(),
        status: MessageStatus::Sent,
    }
}

/// Show the message at once on every member's devices but the sending one, here and through
/// the bus on every other relay.
fn relay(
    state: &ChatState,
    socket_id: &str,
    message: RelayedMessage,
    members: &[shared::ids::UserId],
    received: Instant,
) {
    state
        .relayed
        .insert(message.sender_id, &message.client_msg_id);
    let shown = super::vocab::Outgoing {
        event: "receive_message",
        arg: &message,
        receiver: super::store::receiver(members, message.sender_id),
        only: None,
    };
    state.emit(members, shown, Some(socket_id));
    state
        .metrics
        .send_fanout
        .observe(received.elapsed().as_secs_f64());
    state.publish(members, BusEvent::MessageRelayed { message });
}
