//! Parley's bench peer on socketioxide 0.18 (axum): the relay and protocol echo of
//! `bench/peers/node/relay.mjs`, written the way socketioxide's own examples are.
//!
//! Environment: `PORT` (listen on 127.0.0.1:PORT), `JWT_SECRET` (HS256; required), `REDIS_URL`
//! (when set, `socketioxide-redis` links the relays sharing this Redis; RESP3 is asked for).
//!
//! Namespace `/` on `/socket.io/` (socketioxide's defaults: polling and websocket):
//! - CONNECT `{"token"}`: signature and `exp` verified, `sub` is the user; the socket joins room
//!   `user:<sub>`; otherwise CONNECT_ERROR `{"message":"unauthorized"}`.
//! - `send_message` `{conversationId?, recipientId, content, clientMsgId}` with an ack:
//!   `receive_message` to room `user:<recipientId>` and the sender's other sockets, then ack
//!   `{"success":true,"clientMsgId"}`; nothing is stored.
//! - `message`: echoed back as `message-back` (one argument).

use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use chrono::{SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::extract::{AckSender, Data, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

/// Longest message content accepted, in characters (Parley's limit).
const MAX_CONTENT: usize = 10_000;

/// How tokens are checked: HS256 with the secret, `exp` required and verified.
#[derive(Clone)]
struct Keys(Arc<(DecodingKey, Validation)>);

#[derive(Deserialize)]
struct Auth {
    token: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// The authenticated user of a socket (set by [`authenticate`]).
#[derive(Clone)]
struct UserId(String);

#[derive(Debug)]
struct Unauthorized;

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unauthorized")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendMessage {
    conversation_id: Option<String>,
    recipient_id: String,
    content: String,
    client_msg_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiveMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<&'a str>,
    sender_id: &'a str,
    recipient_id: &'a str,
    content: &'a str,
    client_msg_id: &'a str,
    created_at: String,
}

async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Auth>,
    State(keys): State<Keys>,
) -> Result<(), Unauthorized> {
    let token = auth.map_err(|_| Unauthorized)?.token;
    let (key, validation) = &*keys.0;
    let claims = jsonwebtoken::decode::<Claims>(&token, key, validation)
        .map_err(|_| Unauthorized)?
        .claims;
    if claims.sub.is_empty() {
        return Err(Unauthorized);
    }
    socket.extensions.insert(UserId(claims.sub));
    Ok(())
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, Extension(UserId(user)): Extension<UserId>) {
    socket.join(format!("user:{user}"));
    socket.on("send_message", send_message);
    socket.on(
        "message",
        async |socket: SocketRef<A>, Data(data): Data<Value>| {
            let _ = socket.emit("message-back", &data);
        },
    );
}

fn invalid(message: &str) -> Value {
    json!({
        "success": false,
        "error": { "code": "invalid_payload", "message": message, "retryable": false }
    })
}

/// Why a well-typed `send_message` is refused, if it is.
fn refusal(message: &SendMessage) -> Option<&'static str> {
    if message.recipient_id.is_empty() || message.client_msg_id.is_empty() {
        Some("recipientId and clientMsgId must not be empty")
    } else if message.content.chars().count() > MAX_CONTENT {
        Some("content must be at most 10000 characters")
    } else {
        None
    }
}

async fn send_message<A: Adapter>(
    socket: SocketRef<A>,
    Extension(UserId(user)): Extension<UserId>,
    TryData(payload): TryData<SendMessage>,
    ack: AckSender<A>,
) {
    let message = match payload {
        Ok(message) => message,
        Err(error) => {
            let _ = ack.send(&invalid(&format!("invalid send_message payload: {error}")));
            return;
        }
    };
    if let Some(reason) = refusal(&message) {
        let _ = ack.send(&invalid(reason));
        return;
    }
    let relayed = ReceiveMessage {
        conversation_id: message.conversation_id.as_deref(),
        sender_id: &user,
        recipient_id: &message.recipient_id,
        content: &message.content,
        client_msg_id: &message.client_msg_id,
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    // One broadcast to both rooms: each socket once, never this one.
    let rooms = [
        format!("user:{}", message.recipient_id),
        format!("user:{user}"),
    ];
    let _ = socket.to(rooms).emit("receive_message", &relayed).await;
    let _ = ack.send(&json!({ "success": true, "clientMsgId": message.client_msg_id }));
}

fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .with_context(|| format!("{name} must be set (see bench/README.md, \"Peers\")"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = required("PORT")?
        .parse()
        .context("PORT must be a TCP port")?;
    let secret = required("JWT_SECRET")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // Parley's tokens carry `aud` (and `iss`): the contract checks signature and `exp` only,
    // and jsonwebtoken refuses a token with an `aud` when no audience is expected.
    validation.validate_aud = false;
    let keys = Keys(Arc::new((
        DecodingKey::from_secret(secret.as_bytes()),
        validation,
    )));

    let layer = match std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(url) => {
            let url = if url.contains("protocol=") {
                url
            } else {
                format!(
                    "{url}{}protocol=resp3",
                    if url.contains('?') { '&' } else { '?' }
                )
            };
            let client = redis::Client::open(url.as_str()).context("REDIS_URL")?;
            let adapter = RedisAdapterCtr::new_with_redis(&client)
                .await
                .with_context(|| format!("connecting to Redis at {url}"))?;
            let (layer, io) = SocketIo::builder()
                .with_state(keys)
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            io.ns("/", on_connect.with(authenticate))
                .await
                .context("joining the Redis adapter")?;
            axum::Router::new().layer(layer)
        }
        None => {
            let (layer, io) = SocketIo::builder().with_state(keys).build_layer();
            io.ns("/", on_connect::<LocalAdapter>.with(authenticate));
            axum::Router::new().layer(layer)
        }
    };

    // TCP_NODELAY on every connection, as Node's `ws` and Parley's relay set it: with Nagle a
    // small frame waits for the ACK of the previous one, which a reader that only receives
    // delays by up to 40 ms (axum's `serve` leaves Nagle on unless told).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?
        .tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
    axum::serve(listener, layer)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}
