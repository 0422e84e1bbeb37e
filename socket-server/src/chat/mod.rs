//! The chat layer on namespace `/`: authentication at connect, each user's room, `send_message`
//! (relayed at once, stored through the API), the bus events turned into client events.
//! It knows nothing of HTTP framing or WebSockets: it speaks [`crate::socketio`] and the API's
//! JSON.
//!
//! # Layout
//! - `auth`: the handshake token → [`auth::Session`], or CONNECT_ERROR with a code.
//! - `registry`: local user → sockets, and fan-out to them.
//! - `send`: `send_message` and the per-socket store queue.
//! - `requests`: `ping`, `sync`, `mark_read`, `mark_delivered`, `typing`.
//! - `presence`: recording this relay's connections on the bus, announcing changes.
//! - `limits`: token buckets (sends, typing, connects per IP).
//! - `dispatch`: bus events → client events.
//! - `api`: the REST client. `cache`: membership and relayed-message memories.
//! - `metrics`: counters, gauges and fan-out histograms for `/metrics`.

pub mod api;
pub mod auth;
pub mod cache;
pub mod dispatch;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod registry;
pub mod requests;
pub mod send;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use shared::auth::JwtKeys;
use shared::bus::subscriber::Subscriber;
use shared::bus::Bus;
use shared::errors::{AckError, ErrorCode};
use shared::events::{BusEvent, Envelope};
use shared::ids::{ConversationId, UserId};

use crate::settings::Limits;
use crate::socketio::{Ack, ConnectError, DisconnectReason, NamespaceHandler, Payload, Socket};
use auth::Session;

/// Everything the chat handlers share.
pub struct ChatState {
    pub keys: JwtKeys,
    pub bus: Arc<dyn Bus>,
    /// Subscribes this relay to the channels of the users connected to it.
    pub subscriber: Subscriber,
    pub registry: registry::Registry,
    pub api: api::ApiClient,
    /// `relay-<uuid>`: events this relay published come back from the bus and are skipped.
    pub origin: String,
    pub members: cache::MembershipCache,
    pub relayed: cache::RecentlyRelayed,
    pub limits: Limits,
    pub metrics: metrics::Metrics,
    pub presence: presence::Presence,
    /// `send_message` per user (`limits.sends_per_sec`, `limits.sends_burst`).
    pub sends: limits::RateLimiter<UserId>,
    /// `typing` per user (`limits.typing_per_sec`).
    pub typing: limits::RateLimiter<UserId>,
    /// Sends queued and not answered yet (drained at shutdown).
    pub in_flight: send::InFlight,
}

impl ChatState {
    /// The members of `conversation`, if `session`'s user is one (asked to the API, cached).
    pub async fn members(
        &self,
        session: &Session,
        conversation: ConversationId,
    ) -> Result<Vec<UserId>, AckError> {
        if let Some(members) = self.members.get(session.user, conversation) {
            return Ok(members);
        }
        let found = self.api.conversation(&session.token, conversation).await?;
        let members: Vec<UserId> = found.members.iter().map(|m| m.user.id).collect();
        if !members.contains(&session.user) {
            return Err(AckError::new(
                ErrorCode::ConversationNotFound,
                "no such conversation",
            ));
        }
        self.members
            .put(session.user, conversation, members.clone());
        Ok(members)
    }

    /// Publish `event` on the channels of `users` (best effort: logged and counted).
    pub async fn publish(&self, users: &[UserId], event: BusEvent) {
        let envelope = Envelope {
            origin: self.origin.clone(),
            event,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        if let Err(error) = self.bus.publish(users, &payload).await {
            self.metrics.bus_errors.inc();
            tracing::warn!(%error, "publishing on the bus failed");
        }
    }
}

/// Answer an ack with `{success:false, error:{code,message,retryable}}`.
pub fn ack_error(ack: Option<Ack>, error: AckError) {
    if let Some(ack) = ack {
        let _ = ack.send(json!({ "success": false, "error": error }));
    }
}

/// Answer an ack with `answer` plus `success: true` (objects), or `{success, data}`.
pub fn ack_ok(ack: Option<Ack>, answer: Value) {
    if let Some(ack) = ack {
        let body = match answer {
            Value::Object(mut map) => {
                map.insert("success".into(), Value::Bool(true));
                Value::Object(map)
            }
            other => json!({ "success": true, "data": other }),
        };
        let _ = ack.send(body);
    }
}

/// The handler of namespace `/`.
pub struct ChatHandler {
    state: Arc<ChatState>,
}

impl ChatHandler {
    pub fn new(state: Arc<ChatState>) -> Self {
        Self { state }
    }
}

#[async_trait]
impl NamespaceHandler for ChatHandler {
    async fn on_connect(&self, socket: &Socket, auth: &Value) -> Result<(), ConnectError> {
        let state = &self.state;
        let session = match auth::authenticate(auth, &state.keys, state.bus.as_ref()).await {
            Ok(session) => session,
            Err(refusal) => {
                state.metrics.connects_refused.inc();
                return Err(refusal);
            }
        };
        let user = session.user;
        if state.registry.sockets_of(user).len() >= state.limits.connections_per_user {
            state.metrics.connects_refused.inc();
            return Err(auth::refusal(ErrorCode::TooManyConnections));
        }
        let token = session.token.clone();
        socket.extensions().insert(session.clone());
        socket
            .extensions()
            .insert(send::start_worker(state.clone(), session));
        // Subscribed (counted per connection) before the CONNECT answer: nothing published
        // afterwards is missed.
        state.subscriber.subscribe(user).await;
        state.registry.join(user, socket);
        presence::connected(state, socket, user, &token).await;
        state.metrics.connects.inc();
        tracing::info!(user_id = %user, conn_id = %socket.id(), "socket connected");
        Ok(())
    }

    async fn on_event(&self, socket: &Socket, event: &str, payload: Payload, ack: Option<Ack>) {
        let Some(session) = socket.extensions().get::<Session>() else {
            return;
        };
        let state = &self.state;
        match event {
            "send_message" => send::send_message(state, socket, &session, payload, ack).await,
            "ping" => requests::ping(ack),
            "sync" => requests::sync(state, &session, payload, ack).await,
            "mark_read" | "mark_delivered" => {
                requests::mark(state, &session, event, payload, ack).await
            }
            "typing" => requests::typing(state, socket, &session, payload, ack).await,
            // Older clients join their room explicitly; the socket is in it already.
            "join_user_room" | "register-user" => ack_ok(ack, json!({})),
            other => {
                tracing::debug!(event = other, "unknown event");
                ack_error(
                    ack,
                    AckError::new(ErrorCode::NotFound, format!("unknown event {other:?}")),
                );
            }
        }
    }

    async fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        // Dropping the queue's sender lets the store worker finish what is queued and stop.
        socket.extensions().remove::<send::StoreQueue>();
        let Some(session) = socket.extensions().get::<Session>() else {
            return;
        };
        let state = &self.state;
        state.registry.leave(session.user, socket);
        state.subscriber.unsubscribe(session.user);
        if state.registry.sockets_of(session.user).is_empty() {
            state.sends.forget(session.user);
            state.typing.forget(session.user);
        }
        presence::disconnected(state, socket, session.user).await;
        tracing::info!(user_id = %session.user, conn_id = %socket.id(), reason = reason.as_str(), "socket disconnected");
    }
}
