//! From the bus to the local sockets: every event published on the channel of a user connected
//! here is turned into Socket.IO events on that user's devices.

use std::sync::{Arc, Weak};
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
use super::ChatState;

/// Most bus messages taken from the subscriber at once.
const BATCH: usize = 256;

/// Deliver what the subscriber receives until the relay stops (or is dropped).
///
/// An event for several users is published once per user channel, back to back (one pipelined
/// round trip), so it arrives as a run of equal payloads: each run is parsed and encoded once for
/// all its users ([`runs`]); each user still gets their events in the order published.
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
    let mut batch = Vec::with_capacity(BATCH);
    let mut users = Vec::new();
    loop {
        let count = tokio::select! {
            () = stop.cancelled() => return,
            count = received.recv_many(&mut batch, BATCH) => count,
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        if count == 0 {
            return;
        }
        batch.retain(|message: &BusMessage| !message.payload.starts_with(&own));
        // What the batch sends to one socket leaves in one write.
        let cork = crate::engineio::cork();
        for run in runs(&batch) {
            users.clear();
            users.extend(run.iter().map(|message| message.user));
            let payload = &run[0].payload;
            match serde_json::from_str::<Envelope>(payload) {
                Ok(envelope) if envelope.origin == state.origin => {}
                Ok(envelope) => {
                    tracing::debug!(?users, event = ?envelope.event, "bus event");
                    let received = Instant::now();
                    if let BusEvent::ConversationChanged { conversation } = &envelope.event {
                        let members: Vec<UserId> =
                            conversation.members.iter().map(|m| m.user.id).collect();
                        super::presence::introduce(&state, &users, &members);
                    }
                    deliver(&state, &users, envelope.event);
                    state
                        .metrics
                        .bus_fanout
                        .observe(received.elapsed().as_secs_f64());
                }
                Err(error) => tracing::warn!(%error, "unreadable bus event"),
            }
        }
        drop(cork);
        batch.clear();
    }
}

/// `messages` cut into runs of consecutive equal payloads (the same event published to several
/// users), each user at most once per run.
fn runs(messages: &[BusMessage]) -> impl Iterator<Item = &[BusMessage]> {
    let mut rest = messages;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let len = rest
            .iter()
            .enumerate()
            .skip(1)
            .find(|(i, m)| {
                m.payload != first.payload || rest[..*i].iter().any(|o| o.user == m.user)
            })
            .map_or(rest.len(), |(i, _)| i);
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

/// Emit what `event` means for the local devices of `users` (one event published to each of
/// them: parsed once, encoded once for all).
pub fn deliver(state: &ChatState, users: &[UserId], event: BusEvent) {
    if users.is_empty() {
        return;
    }
    match event {
        BusEvent::MessageStored { message } => {
            let seen = state
                .relayed
                .stored(message.sender_id, &message.client_msg_id);
            let relayed = seen == Some(Seen::Relayed);
            if seen.is_none() && users.contains(&message.sender_id) {
                // Sent by REST (or through another relay unseen): it draws from the budget of
                // the sender's sockets here.
                state.sends.charge(message.sender_id);
            }
            // Not shown yet: `receive_message`. Shown relayed: the second design document's
            // sockets get the stored one, with its id, as `newMessage` too (it replaces the copy);
            // with none of them here, nothing to build.
            let camel = state.registry.has_camel();
            if !relayed || camel {
                let stored = Outgoing {
                    event: "receive_message",
                    arg: &message,
                    receiver: camel
                        .then(|| {
                            receiver_of(state, users, message.conversation_id, message.sender_id)
                        })
                        .flatten(),
                    only: relayed.then_some(Vocabulary::Camel),
                };
                state.emit(users, stored, None);
            }
            state.emit_to(users, "message_saved", &MessageSaved::from(&message), None);
            let readers = state.registry.speaking_a_document(users, message.sender_id);
            if !readers.is_empty() {
                state
                    .document_receipts
                    .delivered(&readers, message.conversation_id, message.seq);
            }
        }
        BusEvent::MessageRelayed { message } => {
            if !state
                .relayed
                .insert_from_bus(message.sender_id, &message.client_msg_id)
            {
                // Stored and shown already (the copy came late): not shown twice. Its send
                // was charged when `message_stored` arrived unseen.
                return;
            }
            if users.contains(&message.sender_id) {
                // Sent through another relay: one budget per user on every relay.
                state.sends.charge(message.sender_id);
            }
            let shown = Outgoing {
                event: "receive_message",
                arg: &message,
                // `receiverId`: for the second document's sockets only.
                receiver: state
                    .registry
                    .has_camel()
                    .then(|| receiver_of(state, users, message.conversation_id, message.sender_id))
                    .flatten(),
                only: None,
            };
            state.emit(users, shown, None);
        }
        BusEvent::MessageFailed {
            client_msg_id,
            conversation_id,
            error,
            ..
        } => state.emit_to(
            users,
            "message_failed",
            &MessageFailed {
                client_msg_id,
                conversation_id,
                error,
            },
            None,
        ),
        BusEvent::ReceiptsMoved { state: member } => {
            state.emit_to(users, "message_status", &member, None)
        }
        BusEvent::Typing {
            conversation_id,
            user_id,
            is_typing,
        } => state.emit_to(
            users,
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
            let direct = conversation.kind == shared::wire::ConversationKind::Direct;
            state.view.update(conversation.id, &members, direct);
            state.emit_to(users, "conversation_changed", &conversation, None);
        }
        BusEvent::UserLoggedOut { user_id, jti } => {
            state.sessions.logged_out(user_id, &jti);
            for &user in users {
                for socket in state.registry.sockets_of(user) {
                    if socket
                        .extensions()
                        .get::<Arc<Session>>()
                        .is_some_and(|s| s.jti == jti)
                    {
                        super::auth::revoke(&socket, "logout");
                    }
                }
            }
        }
        BusEvent::Presence {
            user_id,
            online,
            last_seen,
        } => state.emit_to(
            users,
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

/// The other member of the two-member `conversation` with `sender`, as the view of any of
/// `users` knows it (`receiverId` of `newMessage`).
fn receiver_of(
    state: &ChatState,
    users: &[UserId],
    conversation: shared::ids::ConversationId,
    sender: UserId,
) -> Option<UserId> {
    users
        .iter()
        .find_map(|&user| state.receiver_of(user, conversation, sender))
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

    fn message(user: i64, payload: &str) -> BusMessage {
        BusMessage {
            user: UserId(user),
            payload: payload.into(),
        }
    }

    fn cut(messages: &[BusMessage]) -> Vec<Vec<(i64, &str)>> {
        runs(messages)
            .map(|run| run.iter().map(|m| (m.user.0, m.payload.as_str())).collect())
            .collect()
    }

    #[test]
    fn one_event_published_to_several_users_is_one_run() {
        let messages = [
            message(1, "a"),
            message(2, "a"),
            message(1, "b"),
            message(2, "b"),
            message(3, "c"),
        ];
        assert_eq!(
            cut(&messages),
            vec![
                vec![(1, "a"), (2, "a")],
                vec![(1, "b"), (2, "b")],
                vec![(3, "c")]
            ]
        );
        assert!(cut(&[]).is_empty());
    }

    #[test]
    fn the_same_event_twice_for_one_user_is_delivered_twice() {
        // Two equal events in a row for the same user (e.g. two identical typing events) stay
        // two deliveries, in order.
        let messages = [message(1, "t"), message(2, "t"), message(1, "t")];
        assert_eq!(
            cut(&messages),
            vec![vec![(1, "t"), (2, "t")], vec![(1, "t")]]
        );
    }
}
