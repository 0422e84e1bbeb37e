//! The small request/answer events: `ping`, `sync`, `mark_read`, `mark_delivered`, and the
//! fire-and-forget `typing` (a socket that goes while typing is said to have stopped:
//! [`stopped_typing`]).
//!
//! `sync` and the receipts go to the API, so they are answered from a task of their own: a
//! socket never stops reading while the database works. Each socket may have
//! `limits.requests_per_socket` of them outstanding; beyond, the ack is `rate_limited`.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Value};
use shared::errors::{AckError, ErrorCode};
use shared::events::BusEvent;
use shared::ids::{ConversationId, UserId};
use shared::port::Receipt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Session;
use super::membership::Members;
use super::{ack_error, ack_ok, to_value, ChatState};
use crate::socketio::{Ack, Payload, Socket};

/// A socket's budget of outstanding `sync` / receipt requests, kept in its extensions.
#[derive(Clone)]
pub struct SocketRequests(Arc<Semaphore>);

impl SocketRequests {
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Semaphore::new(limit.max(1))))
    }
}

/// The event's argument as `T`; none, or `null` (what a client calling `emit("sync", null, cb)`
/// or python's `call("sync", None)` sends), reads as `{}`.
fn first<T: serde::de::DeserializeOwned>(event: &str, payload: &Payload) -> Result<T, AckError> {
    let arg = match payload.args.first() {
        None | Some(Value::Null) => json!({}),
        Some(arg) => arg.clone(),
    };
    serde_json::from_value(arg)
        .map_err(|e| AckError::new(ErrorCode::InvalidJson, format!("{event}: {e}")))
}

/// A place in the socket's request budget, or the ack answered `rate_limited`.
fn permit(socket: &Socket, ack: &mut Option<Ack>) -> Option<OwnedSemaphorePermit> {
    let permit = socket
        .extensions()
        .get::<SocketRequests>()
        .and_then(|budget| budget.0.try_acquire_owned().ok());
    if permit.is_none() {
        ack_error(
            ack.take(),
            AckError::new(
                ErrorCode::RateLimited,
                "too many requests waiting for an answer",
            ),
        );
    }
    permit
}

/// `ping` → `{serverTime}` through the callback, or as a `pong` event when the client gave
/// none (the second design document measures its latency from the answer).
pub fn ping(socket: &Socket, ack: Option<Ack>) {
    let pong = to_value(&shared::wire::Pong {
        server_time: chrono::Utc::now(),
    });
    match ack {
        Some(ack) => {
            let _ = ack.send(pong);
        }
        None => {
            let _ = socket.emit("pong", pong);
        }
    }
}

#[derive(Deserialize)]
struct SyncArgs {
    #[serde(default)]
    since: Option<String>,
}

/// `sync` `{since}` → the answer of `GET /api/sync?since=` with `success: true`.
pub fn sync(
    state: &Arc<ChatState>,
    socket: &Socket,
    session: &Session,
    payload: Payload,
    mut ack: Option<Ack>,
) {
    let args: SyncArgs = match first("sync", &payload) {
        Ok(args) => args,
        Err(error) => return ack_error(ack, error),
    };
    let Some(permit) = permit(socket, &mut ack) else {
        return;
    };
    let (port, user) = (state.port.clone(), session.user);
    state.tasks.spawn(async move {
        match port.sync(user, args.since).await {
            Ok(answer) => ack_ok(ack, to_value(&answer)),
            Err(error) => ack_error(ack, error),
        }
        drop(permit);
    });
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkArgs {
    conversation_id: ConversationId,
    up_to_seq: i64,
}

/// `mark_read` / `mark_delivered` `{conversationId, upToSeq}` → the member's new state; the API
/// publishes `receipts_moved`, which reaches the devices of the member and of the senders of
/// the messages the move passes as `message_status`.
pub fn mark(
    state: &Arc<ChatState>,
    socket: &Socket,
    session: &Session,
    which: &str,
    payload: Payload,
    mut ack: Option<Ack>,
) {
    let args: MarkArgs = match first(which, &payload) {
        Ok(args) => args,
        Err(error) => return ack_error(ack, error),
    };
    let receipt = if which == "mark_read" {
        Receipt::Read
    } else {
        Receipt::Delivered
    };
    let Some(permit) = permit(socket, &mut ack) else {
        return;
    };
    let (port, user) = (state.port.clone(), session.user);
    state.tasks.spawn(async move {
        let moved = port
            .mark(user, args.conversation_id, receipt, args.up_to_seq)
            .await;
        match moved {
            Ok(answer) => ack_ok(ack, to_value(&answer)),
            Err(error) => ack_error(ack, error),
        }
        drop(permit);
    });
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingArgs {
    conversation_id: ConversationId,
    #[serde(default = "yes")]
    is_typing: bool,
}

fn yes() -> bool {
    true
}

/// `typing` `{conversationId, isTyping}` → `typing` `{conversationId, userId, isTyping}` on the
/// other members' devices (never the typist's own). Non-members are refused; beyond
/// `limits.typing_per_sec` the event is dropped, without error for a conversation the view
/// knows the user in, `rate_limited` otherwise (no look-up with the API is spent on it, and a
/// non-member is never told `success`).
pub fn typing(
    state: &Arc<ChatState>,
    socket: &Socket,
    session: &Session,
    payload: Payload,
    ack: Option<Ack>,
) {
    let args: TypingArgs = match first("typing", &payload) {
        Ok(args) => args,
        Err(error) => return ack_error(ack, error),
    };
    // Over the rate: dropped (typing indicators are advisory), silently for a member.
    if let Err(wait) = state.typing.check(session.user) {
        return match state.view.members(session.user, args.conversation_id) {
            Some(_) => ack_ok(ack, Value::Object(Default::default())),
            None => ack_error(
                ack,
                AckError::new(ErrorCode::RateLimited, "too many typing events").retry_after(wait),
            ),
        };
    }
    let typing = shared::wire::Typing {
        conversation_id: args.conversation_id,
        user_id: session.user,
        is_typing: args.is_typing,
    };
    let socket_id = socket.id().to_owned();
    // Made at the socket's first `typing`: most sockets never type, and each costs memory.
    let typing_in = socket
        .extensions()
        .get::<SocketTyping>()
        .unwrap_or_else(|| {
            let typing_in = SocketTyping::default();
            socket.extensions().insert(typing_in.clone());
            typing_in
        });
    let work_state = state.clone();
    let work = Box::new(move |members: Option<Members>| {
        let Some(members) = members else {
            return ack_error(
                ack,
                AckError::new(ErrorCode::ConversationNotFound, "no such conversation"),
            );
        };
        tell_typing(&work_state, &members, &typing, Some(&socket_id));
        typing_in.mark(typing.conversation_id, typing.is_typing);
        ack_ok(ack, Value::Object(Default::default()));
    });
    super::resolve_members(state, session.user, args.conversation_id, work);
}

/// `typing` to the devices of the conversation's other `members`, here (but `except`) and on
/// the other relays.
fn tell_typing(
    state: &ChatState,
    members: &[UserId],
    typing: &shared::wire::Typing,
    except: Option<&str>,
) {
    let others: Vec<UserId> = members
        .iter()
        .copied()
        .filter(|&m| m != typing.user_id)
        .collect();
    state.emit_to(&others, "typing", typing, except);
    state.publish(
        &others,
        BusEvent::Typing {
            conversation_id: typing.conversation_id,
            user_id: typing.user_id,
            is_typing: typing.is_typing,
        },
    );
}

/// The conversations a socket last said it was typing in, kept in its extensions from its first
/// `typing` (events of one socket are handled one at a time).
#[derive(Clone, Default)]
pub struct SocketTyping(Arc<Mutex<Vec<ConversationId>>>);

impl SocketTyping {
    /// Most conversations remembered: a person types in one or two.
    const MAX: usize = 8;

    fn mark(&self, conversation: ConversationId, typing: bool) {
        let mut typing_in = self.0.lock().unwrap_or_else(|e| e.into_inner());
        typing_in.retain(|&c| c != conversation);
        if typing && typing_in.len() < Self::MAX {
            typing_in.push(conversation);
        }
    }
}

/// A socket of `user` is going: the members of each conversation it was typing in are told it
/// stopped (clients without a timeout of their own would show "typing…" for ever).
pub fn stopped_typing(state: &ChatState, socket: &Socket, user: UserId) {
    let Some(typing_in) = socket.extensions().get::<SocketTyping>() else {
        return;
    };
    let conversations = std::mem::take(&mut *typing_in.0.lock().unwrap_or_else(|e| e.into_inner()));
    for conversation_id in conversations {
        let Some(members) = state.view.members(user, conversation_id) else {
            continue;
        };
        let stopped = shared::wire::Typing {
            conversation_id,
            user_id: user,
            is_typing: false,
        };
        tell_typing(state, &members, &stopped, None);
    }
}
