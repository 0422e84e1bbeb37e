//! The chat layer on namespace `/`: authentication at connect, each user's room, `send_message`
//! (relayed at once, stored in batches through the API port), the bus events turned into client
//! events. It knows nothing of HTTP framing or WebSockets: it speaks [`crate::socketio`] and the
//! typed [`RelayPort`].
//!
//! **The live path never waits on storage or Redis**: receiving a message, finding its members
//! (the [`membership`] view), emitting it to local sockets and handing it to the background bus
//! publisher are all synchronous; storing happens on the [`store`] lanes and only the ack waits
//! for it.
//!
//! # Layout
//! - `auth`: the handshake token → [`auth::Session`], or CONNECT_ERROR with a code.
//! - `membership`: the members of the local users' conversations, and misses resolved aside.
//! - `registry`: local user → sockets, and fan-out to them.
//! - `send`: `send_message`. `store`: the store lanes (batches through the port) and admission.
//! - `requests`: `ping`, `sync`, `mark_read`, `mark_delivered`, `typing`.
//! - `presence`: recording this relay's connections on the bus, announcing changes.
//! - `roster`: the other live relays; alone, this relay publishes nothing for relays.
//! - `sessions`: closing sockets whose session was revoked (checked with the API) or expired.
//! - `dispatch`: bus events → client events.
//! - `port_http`: the [`RelayPort`] over the API's internal HTTP routes (split deployment).
//! - `vocab`: the design documents' event vocabularies, mapped onto Parley's events.
//! - `cache`: the relayed-message memory. `metrics`: counters, gauges, histograms.

pub mod auth;
pub mod cache;
pub mod dispatch;
pub mod membership;
pub mod metrics;
pub mod port_http;
pub mod presence;
pub mod receipts;
pub mod registry;
pub mod requests;
pub mod roster;
pub mod send;
pub mod sessions;
pub mod store;
pub mod vocab;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Value};
use shared::auth::JwtKeys;
use shared::bus::publisher::BusPublisher;
use shared::bus::subscriber::Subscriber;
use shared::bus::Bus;
use shared::errors::{AckError, ErrorCode};
use shared::events::BusEvent;
use shared::ids::{ConversationId, UserId};
use shared::limits::RateLimiter;
use shared::port::RelayPort;
use tokio_util::task::TaskTracker;

use crate::settings::Limits;
use crate::socketio::{Ack, ConnectError, DisconnectReason, NamespaceHandler, Payload, Socket};
use auth::Session;
use membership::{Members, MembershipView, Parked, Parking};

/// Everything the chat handlers share.
pub struct ChatState {
    pub keys: JwtKeys,
    /// Presence keys (bounded calls; publishing goes through `publisher`).
    pub bus: Arc<dyn Bus>,
    /// Publishes bus events in the background: never awaited on the live path.
    pub publisher: BusPublisher,
    /// Subscribes this relay to the channels of the users connected to it.
    pub subscriber: Subscriber,
    pub registry: registry::Registry,
    /// The API: memberships, sessions, stores, receipts, sync.
    pub port: Arc<dyn RelayPort>,
    /// `relay-<uuid>`: events this relay published come back from the bus and are skipped.
    pub origin: String,
    pub view: MembershipView,
    /// Messages seen here before they were stored (relayed, or admitted and stored first).
    pub relayed: cache::RecentlyRelayed,
    /// Sessions the API confirmed at connect a moment ago (`limits.session_cache_secs`).
    pub sessions: cache::SessionCache,
    pub limits: Limits,
    pub metrics: metrics::Metrics,
    pub presence: presence::Presence,
    /// Whether other relays are live: alone, nothing is published for relays.
    pub roster: roster::Roster,
    /// `send_message` per user (`limits.sends_per_sec`, `limits.sends_burst`).
    pub sends: RateLimiter<UserId>,
    /// `typing` per user (`limits.typing_per_sec`).
    pub typing: RateLimiter<UserId>,
    /// Sends admitted and not answered yet (bounded; drained at shutdown).
    pub admission: store::Admission,
    /// The store lanes (they hold this state weakly).
    pub store: store::StoreLanes,
    /// Every task the chat layer spawns (lanes, dispatch, presence, miss resolutions, grace
    /// timers, requests); waited for at shutdown.
    pub tasks: TaskTracker,
    /// The earliest token expiry of the local sockets, for the session sweeper.
    pub expiries: Arc<sessions::Expiries>,
    /// Cancelled when the relay stops: the background loops end.
    pub stop: tokio_util::sync::CancellationToken,
    /// Delivery receipts sent for the design documents' clients ([`receipts`]).
    pub document_receipts: receipts::DocumentReceipts,
}

impl ChatState {
    /// Queue `job` on its store lane.
    pub fn push_store(&self, job: store::StoreJob) {
        self.store.push(job);
    }

    /// Emit `event` with `arg` to every local socket of `users` but `except`, in each socket's
    /// vocabulary ([`vocab`]); counted.
    pub fn emit_to<T: Serialize>(
        &self,
        users: &[UserId],
        event: &str,
        arg: &T,
        except: Option<&str>,
    ) {
        self.emit(
            users,
            vocab::Outgoing {
                event,
                arg,
                receiver: None,
                only: None,
            },
            except,
        );
    }

    /// Emit `outgoing` to every local socket of `users` but `except`; counted. Called under
    /// the view's lock too (parked work): it must not read the view.
    pub fn emit<T: Serialize>(
        &self,
        users: &[UserId],
        outgoing: vocab::Outgoing<'_, T>,
        except: Option<&str>,
    ) {
        let sent = self.registry.emit_to(users, &outgoing, except);
        self.metrics.messages_out.add(sent);
    }

    /// The other member of `user`'s two-member `conversation` with `sender`, from the view
    /// (the `receiverId` of the second design document's `newMessage`). Not under its lock.
    pub fn receiver_of(
        &self,
        user: UserId,
        conversation: ConversationId,
        sender: UserId,
    ) -> Option<UserId> {
        store::receiver(&self.view.members(user, conversation)?, sender)
    }

    /// Publish `event` on the channels of `users` for the other relays, in the background
    /// (dropped and counted while the bus is down: clients recover through sync). Alone on the
    /// bus, nothing: only relays read what a relay publishes, and this one delivered it already.
    pub fn publish(&self, users: &[UserId], event: BusEvent) {
        if self.roster.alone() {
            return;
        }
        self.publisher.publish(users, event);
    }
}

/// Run `work` with the members of `conversation` as `user`'s view knows them, or once a miss
/// is resolved through the port in a task of its own (the socket goes on reading meanwhile).
pub fn resolve_members(
    state: &Arc<ChatState>,
    user: UserId,
    conversation: ConversationId,
    work: Parked,
) {
    if state.view.run_or_park(user, conversation, work) != Parking::Resolve {
        return;
    }
    state.metrics.membership_misses.inc();
    let resolving = state.clone();
    state.tasks.spawn(async move {
        let members = match resolving.port.members(user, conversation).await {
            Ok(members) => members.map(Members::from),
            Err(error) => {
                tracing::warn!(user_id = %user, conversation_id = %conversation, code = %error.code, "resolving a conversation's members failed");
                None
            }
        };
        resolving.view.resolved(user, conversation, members);
    });
}

/// Any serialisable value as JSON (our wire types always serialise).
pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Answer an ack with `{success:false, error:{code,message,retryable}}`.
pub fn ack_error(ack: Option<Ack>, error: AckError) {
    if let Some(ack) = ack {
        let _ = ack.send(to_value(&shared::wire::AckFailure::from(error)));
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
        let bus_epoch = state.subscriber.epoch();
        let session = auth::verify(auth, &state.keys).inspect_err(|_| {
            state.metrics.connects_refused.inc();
        })?;
        let user = session.user;
        let query_user = socket.handshake().query("userId");
        if vocab::handshake_mismatch(auth, query_user.as_deref(), user) {
            state.metrics.connects_refused.inc();
            return Err(ConnectError::new("userId is not the user of the token")
                .with_data(json!({ "code": ErrorCode::ValidationFailed.as_str() })));
        }
        if state.registry.connections_of(user) >= state.limits.connections_per_user {
            state.metrics.connects_refused.inc();
            return Err(auth::refusal(ErrorCode::TooManyConnections));
        }
        // Subscribed (counted per connection) before the session is checked: a logout after the
        // check is heard. Before the CONNECT answer: nothing published afterwards is missed.
        state.subscriber.subscribe(user).await;
        let asked_the_api =
            match auth::check_session(&session, state.port.as_ref(), &state.sessions, bus_epoch)
                .await
            {
                Ok(asked) => asked,
                Err(refusal) => {
                    state.subscriber.unsubscribe(user);
                    state.metrics.connects_refused.inc();
                    return Err(refusal);
                }
            };
        // Behind an `Arc`: every event reads it, and a clone is then a count, not two strings.
        socket.extensions().insert(Arc::new(session.clone()));
        let vocabulary = vocab::SocketVocabulary::at_connect(auth, query_user.as_deref());
        socket.extensions().insert(vocabulary.clone());
        socket.extensions().insert(store::SocketSends::default());
        socket.extensions().insert(requests::SocketRequests::new(
            state.limits.requests_per_socket,
        ));
        if asked_the_api {
            // Only now: a refusal above leaves nothing behind to trust, and from here on the
            // user's logouts reach this relay until their last socket leaves.
            state.sessions.confirm(user, &session.jti, bus_epoch);
        }
        let loaded = match state.port.memberships(user).await {
            Ok(conversations) => Some(conversations),
            Err(error) => {
                // Connect anyway: each conversation is then resolved on first use, and the view
                // is loaded again in the background (`load_view_later`).
                tracing::warn!(user_id = %user, code = %error.code, "loading the membership view failed; trying again in the background");
                None
            }
        };
        let view_missing = loaded.is_none();
        // The view, so events about new conversations update it.
        state.view.load(user, loaded.unwrap_or_default());
        state.registry.join(user, socket, vocabulary);
        // A logout heard since the check found no socket to close in the registry: in it now,
        // this one is refused (a logout heard from here on finds it). So is one past the limit
        // after all, when connects of the user passed its check above at the same time.
        let refused = if state.sessions.logged_out_lately(user, &session.jti) {
            // Confirmed above, maybe after the logout forgot it.
            state.sessions.forget(user, &session.jti);
            Some(ErrorCode::TokenRevoked)
        } else if state.registry.connections_of(user) > state.limits.connections_per_user {
            Some(ErrorCode::TooManyConnections)
        } else {
            None
        };
        if let Some(code) = refused {
            release(state, socket, user);
            state.metrics.connects_refused.inc();
            return Err(auth::refusal(code));
        }
        state.expiries.add(session.exp);
        presence::connected(state, socket, user).await;
        if view_missing {
            load_view_later(state, socket, user);
        }
        state.metrics.connects.inc();
        tracing::info!(user_id = %user, conn_id = %socket.id(), "socket connected");
        Ok(())
    }

    async fn on_event(&self, socket: &Socket, event: &str, payload: Payload, ack: Option<Ack>) {
        self.handle(socket, event, payload, ack);
    }

    /// Every event is handled without waiting (the live path never waits: sends are relayed
    /// and queued for storage, requests to the API run in tasks of their own).
    fn on_event_now(
        &self,
        socket: &Socket,
        event: &str,
        payload: Payload,
        ack: Option<Ack>,
    ) -> Result<(), (Payload, Option<Ack>)> {
        self.handle(socket, event, payload, ack);
        Ok(())
    }

    /// `invalid_json`, the connection kept: a client's string cut in the middle of an emoji
    /// (`JSON.stringify` writes the lone surrogate) must not cost it its connection, nor put a
    /// client that retries it into a reconnect loop. A send without a callback of the second
    /// design document hears `messageError`, as for any refused send.
    fn on_undecodable(&self, socket: &Socket, event: &str, ack: Option<Ack>, error: &str) {
        if socket.extensions().get::<Arc<Session>>().is_none() {
            return;
        }
        let refusal = AckError::new(
            ErrorCode::InvalidJson,
            format!(
                "{event}: the arguments are not JSON the server reads ({error}); strings must be \
                 well-formed UTF-16, without a lone surrogate, and nesting at most 128 deep"
            ),
        );
        match event {
            "send_message" | "sendMessage" => {
                vocab::refuse_send(socket, &Value::Null, ack, refusal)
            }
            _ => ack_error(ack, refusal),
        }
    }

    async fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        let Some(session) = socket.extensions().get::<Arc<Session>>() else {
            return;
        };
        let state = &self.state;
        requests::stopped_typing(state, socket, session.user);
        let contacts = release(state, socket, session.user);
        presence::disconnected(state, socket, session.user, contacts).await;
        tracing::info!(user_id = %session.user, conn_id = %socket.id(), reason = reason.as_str(), "socket disconnected");
    }
}

/// Try again, in the background, to load the membership view of `socket`, whose load failed
/// at connect (the API overloaded or restarting): after 0.5 s, then doubling to 8 s, for about a
/// minute, while the socket stays. Until then its contacts are not known: nobody is told it
/// came online and it was told nobody is; once loaded, both are told (`presence::view_loaded`).
fn load_view_later(state: &Arc<ChatState>, socket: &Socket, user: UserId) {
    const FIRST: Duration = Duration::from_millis(500);
    const LONGEST: Duration = Duration::from_secs(8);
    const ATTEMPTS: u32 = 10;
    let (state, socket) = (state.clone(), socket.clone());
    state.clone().tasks.spawn(async move {
        let mut wait = FIRST;
        for _ in 0..ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.stop.cancelled() => return,
            }
            if !socket.connected() {
                return;
            }
            match state.port.memberships(user).await {
                Ok(conversations) => {
                    state.view.fill(user, conversations);
                    presence::view_loaded(&state, &socket, user).await;
                    tracing::info!(user_id = %user, conn_id = %socket.id(), "membership view loaded");
                    return;
                }
                Err(error) => {
                    tracing::debug!(user_id = %user, code = %error.code, "loading the membership view failed again");
                }
            }
            wait = (wait * 2).min(LONGEST);
        }
        tracing::warn!(user_id = %user, conn_id = %socket.id(), "gave up loading the membership view: the socket's contacts stay unknown until it reconnects");
    });
}

/// What a socket of `user` held here, given back as it leaves (or is refused once in the
/// registry); `user`'s contacts, as the view had them.
fn release(state: &ChatState, socket: &Socket, user: UserId) -> Vec<UserId> {
    state.registry.leave(user, socket);
    state.subscriber.unsubscribe(user);
    let contacts = state.view.contacts(user);
    state.view.release(user);
    if state.registry.connections_of(user) == 0 {
        state.sends.release(user);
        state.typing.release(user);
        state.sessions.forget_user(user);
    }
    contacts
}

impl ChatHandler {
    /// One client event, in either design document's vocabulary or Parley's.
    fn handle(&self, socket: &Socket, event: &str, payload: Payload, ack: Option<Ack>) {
        let Some(session) = socket.extensions().get::<Arc<Session>>() else {
            return;
        };
        let state = &self.state;
        // Either design document's events, as Parley's (answered here if refused).
        let Some((event, payload, ack)) =
            vocab::translate(state, socket, session.user, event, payload, ack)
        else {
            return;
        };
        let event = event.as_str();
        match event {
            "send_message" => send::send_message(state, socket, &session, payload, ack),
            "ping" => requests::ping(socket, ack),
            "sync" => requests::sync(state, socket, &session, payload, ack),
            "mark_read" | "mark_delivered" => {
                requests::mark(state, socket, &session, event, payload, ack)
            }
            "typing" => requests::typing(state, socket, &session, payload, ack),
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
}
