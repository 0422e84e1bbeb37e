//! From the bus to the local sockets: every event published on the channel of a user connected
//! here is turned into Socket.IO events on that user's devices.

use std::sync::Weak;
use std::time::Instant;

use shared::bus::BusMessage;
use shared::events::{BusEvent, Envelope};
use shared::ids::UserId;
use shared::wire::{MessageFailed, MessageSaved, Presence, Typing};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::Session;
use super::cache::Seen;
use super::vocab::{Outgoing, Vocabulary};
use super::{to_value, ChatState};

/// Deliver what the subscriber receives until the relay stops (or is dropped).
pub async fn run(
    state: Weak<ChatState>,
    mut received: mpsc::Receiver<BusMessage>,
    stop: CancellationToken,
) {
    // What this relay's own envelopes begin with (`origin` is serialised first): those come
    // back from the bus and are skipped before any parsing.
    let own = match state.upgrade() {
        Some(state) => format!(
            "{{\"origin\":{}",
            serde_json::Value::from(state.origin.as_str())
        ),
        None => return,
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = received.recv() => message,
        };
        let (Some(message), Some(state)) = (message, state.upgrade()) else {
            return;
        };
        if message.payload.starts_with(&own) {
            continue;
        }
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

/// Emit what `event` means for `user`'s local devices.
pub fn deliver(state: &ChatState, user: UserId, event: BusEvent) {
    let users = [user];
    match event {
        BusEvent::MessageStored { message } => {
            let seen = state
                .relayed
                .seen(message.sender_id, &message.client_msg_id);
            let relayed = seen == Some(Seen::Relayed);
            if seen.is_none() && message.sender_id == user {
                // Sent by REST (or through another relay unseen): it draws from the budget of
                // the sender's sockets here.
                state.sends.charge(user);
            }
            // Not shown yet: `receive_message`. Shown relayed: the second design document's
            // sockets get the stored one, with its id, as `newMessage` too (it replaces the copy).
            let stored = Outgoing {
                event: "receive_message",
                arg: to_value(&message),
                receiver: state.receiver_of(user, message.conversation_id, message.sender_id),
                only: relayed.then_some(Vocabulary::Camel),
            };
            state.emit(&users, stored, None);
            state.emit_to(&users, "message_saved", &MessageSaved::from(&message), None);
        }
        BusEvent::MessageRelayed { message } => {
            state
                .relayed
                .insert(message.sender_id, &message.client_msg_id);
            if message.sender_id == user {
                // Sent through another relay: one budget per user on every relay.
                state.sends.charge(user);
            }
            let shown = Outgoing {
                event: "receive_message",
                arg: to_value(&message),
                receiver: state.receiver_of(user, message.conversation_id, message.sender_id),
                only: None,
            };
            state.emit(&users, shown, None);
        }
        BusEvent::MessageFailed {
            client_msg_id,
            conversation_id,
            error,
            ..
        } => state.emit_to(
            &users,
            "message_failed",
            &MessageFailed {
                client_msg_id,
                conversation_id,
                error,
            },
            None,
        ),
        BusEvent::ReceiptsMoved { state: member } => {
            state.emit_to(&users, "message_status", &member, None)
        }
        BusEvent::Typing {
            conversation_id,
            user_id,
            is_typing,
        } => state.emit_to(
            &users,
            "typing",
            &Typing {
                conversation_id,
                user_id,
                is_typing,
            },
            None,
        ),
        BusEvent::ConversationChanged { conversation } => {
            let members: Vec<UserId> = conversation.members.iter().map(|m| m.user.id).collect();
            state.view.update(conversation.id, &members);
            state.emit_to(&users, "conversation_changed", &conversation, None);
        }
        BusEvent::UserLoggedOut { jti, .. } => {
            state.sessions.forget(&jti);
            for socket in state.registry.sockets_of(user) {
                if socket
                    .extensions()
                    .get::<Session>()
                    .is_some_and(|s| s.jti == jti)
                {
                    super::auth::revoke(&socket, "logout");
                }
            }
        }
        BusEvent::Presence {
            user_id,
            online,
            last_seen,
        } => state.emit_to(
            &users,
            "presence",
            &Presence {
                user_id,
                online,
                last_seen,
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_serialises_its_origin_first_so_own_events_are_skipped_unparsed() {
        let envelope = Envelope {
            origin: "relay-1".into(),
            event: BusEvent::UserLoggedOut {
                user_id: UserId(1),
                jti: "j".into(),
            },
        };
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(json.starts_with(r#"{"origin":"relay-1""#), "{json}");
    }
}
