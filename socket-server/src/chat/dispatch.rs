//! From the bus to the local sockets: every event published on the channel of a user connected
//! here is turned into Socket.IO events on that user's devices.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use shared::bus::BusMessage;
use shared::events::{BusEvent, Envelope};
use shared::ids::UserId;
use shared::wire::MessageSaved;
use tokio::sync::mpsc;

use super::auth::Session;
use super::ChatState;

/// Deliver what the subscriber receives until it stops.
pub async fn run(state: Arc<ChatState>, mut received: mpsc::Receiver<BusMessage>) {
    while let Some(message) = received.recv().await {
        match serde_json::from_str::<Envelope>(&message.payload) {
            Ok(envelope) if envelope.origin == state.origin => {}
            Ok(envelope) => {
                tracing::debug!(user_id = %message.user, event = ?envelope.event, "bus event");
                let received = Instant::now();
                deliver(&state, message.user, envelope.event);
                state
                    .metrics
                    .bus_fanout
                    .observe(received.elapsed().as_secs_f64());
            }
            Err(error) => tracing::warn!(%error, "unreadable bus event"),
        }
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Emit what `event` means for `user`'s local devices.
pub fn deliver(state: &ChatState, user: UserId, event: BusEvent) {
    let users = [user];
    let emit = |name: &str, value: &Value| {
        let sent = state.registry.emit_to(&users, name, value, None);
        state.metrics.messages_out.add(sent);
    };
    match event {
        BusEvent::MessageStored { message } => {
            if !state
                .relayed
                .contains(message.sender_id, &message.client_msg_id)
            {
                emit("receive_message", &to_value(&message));
            }
            emit("message_saved", &to_value(&MessageSaved::from(&message)));
        }
        BusEvent::MessageRelayed { message } => {
            state
                .relayed
                .insert(message.sender_id, &message.client_msg_id);
            emit("receive_message", &to_value(&message));
        }
        BusEvent::MessageFailed {
            client_msg_id,
            conversation_id,
            error,
            ..
        } => emit(
            "message_failed",
            &json!({ "clientMsgId": client_msg_id, "conversationId": conversation_id, "error": error }),
        ),
        BusEvent::ReceiptsMoved { state: member } => emit("message_status", &to_value(&member)),
        BusEvent::Typing {
            conversation_id,
            user_id,
            is_typing,
        } => emit(
            "typing",
            &json!({ "conversationId": conversation_id, "userId": user_id, "isTyping": is_typing }),
        ),
        BusEvent::ConversationChanged { conversation } => {
            state.members.invalidate(conversation.id);
            let members: Vec<UserId> = conversation.members.iter().map(|m| m.user.id).collect();
            state.presence.add_contacts(user, &members);
            emit("conversation_changed", &to_value(&conversation));
        }
        BusEvent::UserLoggedOut { jti, .. } => {
            for socket in state.registry.sockets_of(user) {
                if socket
                    .extensions()
                    .get::<Session>()
                    .is_some_and(|s| s.jti == jti)
                {
                    let _ = socket.emit("session_revoked", json!({ "reason": "logout" }));
                    socket.disconnect();
                }
            }
        }
        BusEvent::Presence {
            user_id,
            online,
            last_seen,
        } => emit(
            "presence",
            &json!({ "userId": user_id, "online": online, "lastSeen": last_seen }),
        ),
    }
}
