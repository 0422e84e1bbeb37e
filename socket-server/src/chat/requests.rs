//! The small request/answer events: `ping`, `sync`, `mark_read`, `mark_delivered`, and the
//! fire-and-forget `typing`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use shared::errors::{AckError, ErrorCode};
use shared::events::BusEvent;
use shared::ids::ConversationId;

use super::auth::Session;
use super::{ack_error, ack_ok, ChatState};
use crate::socketio::{Ack, Payload, Socket};

fn first<T: serde::de::DeserializeOwned>(event: &str, payload: &Payload) -> Result<T, AckError> {
    let arg = payload.args.first().cloned().unwrap_or(json!({}));
    serde_json::from_value(arg)
        .map_err(|e| AckError::new(ErrorCode::InvalidJson, format!("{event}: {e}")))
}

/// `ping` → `{serverTime}`.
pub fn ping(ack: Option<Ack>) {
    if let Some(ack) = ack {
        let _ = ack.send(json!({ "serverTime": chrono::Utc::now() }));
    }
}

#[derive(Deserialize)]
struct SyncArgs {
    #[serde(default)]
    since: Option<String>,
}

/// `sync` `{since}` → the answer of `GET /api/sync?since=` with `success: true`.
pub async fn sync(state: &ChatState, session: &Session, payload: Payload, ack: Option<Ack>) {
    let args: SyncArgs = match first("sync", &payload) {
        Ok(args) => args,
        Err(error) => return ack_error(ack, error),
    };
    let path = match args.since {
        Some(since) => format!("/api/sync?since={}", encode(&since)),
        None => "/api/sync".to_owned(),
    };
    match state.api.get_json(&session.token, &path).await {
        Ok(answer) => ack_ok(ack, answer),
        Err(error) => ack_error(ack, error),
    }
}

/// Percent-encode a query value (cursors are opaque strings).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkArgs {
    conversation_id: ConversationId,
    up_to_seq: i64,
}

/// `mark_read` / `mark_delivered` `{conversationId, upToSeq}` → the member's new state; the API
/// publishes `receipts_moved`, which reaches every member's devices as `message_status`.
pub async fn mark(
    state: &ChatState,
    session: &Session,
    which: &str,
    payload: Payload,
    ack: Option<Ack>,
) {
    let args: MarkArgs = match first(which, &payload) {
        Ok(args) => args,
        Err(error) => return ack_error(ack, error),
    };
    let path = format!(
        "/api/conversations/{}/{}",
        args.conversation_id,
        if which == "mark_read" {
            "read"
        } else {
            "delivered"
        }
    );
    match state
        .api
        .post_json(&session.token, &path, &json!({ "upToSeq": args.up_to_seq }))
        .await
    {
        Ok(answer) => ack_ok(ack, answer),
        Err(error) => ack_error(ack, error),
    }
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
/// `limits.typing_per_sec` the event is dropped without error.
pub async fn typing(
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
    // Over the rate: dropped silently (typing indicators are advisory).
    if !state.typing.allow(session.user) {
        return ack_ok(ack, Value::Object(Default::default()));
    }
    let members = match state.members(session, args.conversation_id).await {
        Ok(members) => members,
        Err(error) => return ack_error(ack, error),
    };
    let others: Vec<_> = members.into_iter().filter(|&m| m != session.user).collect();
    let value = json!({ "conversationId": args.conversation_id, "userId": session.user, "isTyping": args.is_typing });
    state
        .registry
        .emit_to(&others, "typing", &value, Some(socket.id()));
    state
        .publish(
            &others,
            BusEvent::Typing {
                conversation_id: args.conversation_id,
                user_id: session.user,
                is_typing: args.is_typing,
            },
        )
        .await;
    ack_ok(ack, Value::Object(Default::default()));
}
