//! The event vocabularies of the two design documents Parley was built from, mapped onto
//! Parley's own events in this one place, so a client written to either document works
//! unmodified (`docs/protocol.md`, *Clients written from the design documents*).
//!
//! - **Snake** — Parley's own names, which the first document shares (`send_message`,
//!   `receive_message`, `join_user_room`). Its `send_message` payload
//!   `{messageId, senderId, recipientId, content, timestamp}` is read as Parley's
//!   (`messageId` → `clientMsgId`).
//! - **First** — Snake, for a socket that spoke the first document (`join_user_room`, or
//!   `send_message` with its `messageId`): its client de-duplicates messages by `message._id`
//!   (its store was MongoDB), so each `receive_message` it gets also carries `_id` — the stored
//!   id, or for a relayed copy its temporary id (`clientMsgId`).
//! - **Camel** — the second document: `register-user`, `sendMessage`
//!   `{receiverId, text|image|voice, tempId}`, `messagesRead`, and it receives `newMessage` /
//!   `messageError` where Parley sends `receive_message` / `message_saved` / `message_failed`.
//!
//! A socket's vocabulary is decided once and never changes, so no socket ever receives both
//! names: at connect when the handshake names a `userId` (the second document connects with
//! `userId` + token), else by the first vocabulary-specific event it emits, else Snake at the
//! first message event sent to it after [`UNDECIDED_FOR`]. Before that, an undecided socket
//! receives messages in Parley's form without being decided by them: a client of the first
//! document emits `join_user_room` on connect, and on a slow link a message can reach it before
//! that event reaches the relay; it then gets `_id` from its `join_user_room` on, instead of
//! never. Everything here is synchronous: the live path never waits.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use shared::errors::{AckError, ErrorCode};
use shared::ids::UserId;

use super::{ack_error, to_value, ChatState};
use crate::socketio::{Ack, EncodedPacket, Payload, Socket};

/// The names a socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// Parley's and the first document's: `receive_message`, `message_saved`, `message_failed`.
    Snake,
    /// Snake with `_id` on every `receive_message` (a socket that spoke the first document).
    First,
    /// The second document's: `newMessage`, `messageError`.
    Camel,
}

const UNDECIDED: u8 = 0;
const SNAKE: u8 = 1;
const CAMEL: u8 = 2;
const FIRST: u8 = 3;

/// How long after its connect an undecided socket is not decided Snake by the messages it
/// receives (see the module docs).
pub const UNDECIDED_FOR: Duration = Duration::from_secs(5);

/// A socket's vocabulary, kept in its extensions; decided once (see the module docs).
#[derive(Clone)]
pub struct SocketVocabulary {
    code: Arc<AtomicU8>,
    connected: Instant,
}

impl SocketVocabulary {
    /// Camel from the start when the handshake names a `userId` (`auth.userId` or the query's
    /// `userId`), else undecided.
    pub fn at_connect(auth: &Value, query_user: Option<&str>) -> Self {
        let named = auth.get("userId").is_some_and(|v| !v.is_null()) || query_user.is_some();
        Self::new(if named { CAMEL } else { UNDECIDED }, Instant::now())
    }

    fn new(code: u8, connected: Instant) -> Self {
        Self {
            code: Arc::new(AtomicU8::new(code)),
            connected,
        }
    }

    /// The vocabulary a message event is sent in: the one decided; Snake while undecided, and
    /// decided Snake by this call only [`UNDECIDED_FOR`] after the connect. (Parley's form, not
    /// the first document's with `_id`: that would be a second encoding of every message for
    /// every young socket.)
    pub fn for_message(&self) -> Vocabulary {
        // The clock only for an undecided socket: this runs for every socket a message goes to.
        self.for_message_at(Instant::now)
    }

    fn for_message_at(&self, now: impl FnOnce() -> Instant) -> Vocabulary {
        if self.code.load(Ordering::Acquire) == UNDECIDED
            && now().saturating_duration_since(self.connected) < UNDECIDED_FOR
        {
            return Vocabulary::Snake;
        }
        self.decide(Vocabulary::Snake)
    }

    /// The vocabulary decided so far (Snake while undecided), deciding nothing.
    pub fn decided(&self) -> Vocabulary {
        match self.code.load(Ordering::Acquire) {
            CAMEL => Vocabulary::Camel,
            FIRST => Vocabulary::First,
            _ => Vocabulary::Snake,
        }
    }

    /// Decide `wanted` unless already decided; the vocabulary in force afterwards.
    pub fn decide(&self, wanted: Vocabulary) -> Vocabulary {
        self.decide_now(wanted).0
    }

    /// As [`Self::decide`], and whether this call decided it.
    fn decide_now(&self, wanted: Vocabulary) -> (Vocabulary, bool) {
        let code = match wanted {
            Vocabulary::Snake => SNAKE,
            Vocabulary::Camel => CAMEL,
            Vocabulary::First => FIRST,
        };
        match self
            .code
            .compare_exchange(UNDECIDED, code, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => (wanted, true),
            Err(CAMEL) => (Vocabulary::Camel, false),
            Err(FIRST) => (Vocabulary::First, false),
            Err(_) => (Vocabulary::Snake, false),
        }
    }
}

/// The vocabulary `socket` speaks so far (Snake while undecided), deciding nothing.
pub fn of(socket: &Socket) -> Vocabulary {
    socket
        .extensions()
        .get::<SocketVocabulary>()
        .map_or(Vocabulary::Snake, |v| v.decided())
}

/// A `userId` named in the handshake that is not the token's user: the connection is refused.
pub fn handshake_mismatch(auth: &Value, query_user: Option<&str>, user: UserId) -> bool {
    let named = auth.get("userId").filter(|v| !v.is_null()).cloned();
    let named = named.or_else(|| query_user.map(|q| Value::String(q.to_owned())));
    named.is_some_and(|v| !is_user(&v, user))
}

/// A client event in Parley's terms.
#[derive(Debug)]
struct Incoming {
    /// Parley's event name.
    event: String,
    payload: Payload,
    /// The vocabulary the event marks its socket as speaking (`None`: either).
    speaks: Option<Vocabulary>,
}

/// A client event as Parley's event name, payload and ack, the socket's vocabulary decided by
/// it; `None` when it was refused (and answered: `messageError` for a `sendMessage`).
pub fn translate(
    state: &ChatState,
    socket: &Socket,
    user: UserId,
    event: &str,
    payload: Payload,
    ack: Option<Ack>,
) -> Option<(String, Payload, Option<Ack>)> {
    // What a refused `sendMessage` was (its client has no callback: `messageError`).
    let sent = (event == "sendMessage").then(|| payload.args.first().cloned());
    let mut incoming = match incoming(event, payload, user) {
        Ok(incoming) => incoming,
        Err(error) => {
            match sent {
                Some(sent) => refuse_send(socket, &sent.unwrap_or_default(), ack, error),
                None => ack_error(ack, error),
            }
            return None;
        }
    };
    if let (Some(speaks), Some(vocabulary)) = (
        incoming.speaks,
        socket.extensions().get::<SocketVocabulary>(),
    ) {
        if let (decided, true) = vocabulary.decide_now(speaks) {
            state.registry.decided(decided);
        }
    }
    // Only the second document's own event carries a `tempId` it may compare as a number (and
    // a Parley send, the hot path, does not look into the socket's extensions for it).
    if event == "sendMessage" && of(socket) == Vocabulary::Camel {
        if let Some(arg) = incoming.payload.args.first() {
            NumericTempIds::remember(socket, arg);
        }
    }
    if let Some(author) = read_from(event, &incoming.payload) {
        // `messagesRead {senderId}`: the direct conversation with that user, if the view has
        // one (else the missing `conversationId` is refused).
        if let (Some(conversation), Some(Value::Object(arg))) = (
            state.view.pair(user, author),
            incoming.payload.args.first_mut(),
        ) {
            arg.insert("conversationId".into(), to_value(&conversation));
        }
    }
    Some((incoming.event, incoming.payload, ack))
}

/// Read a client event of either document (or Parley's) as Parley's; a `senderId` / `userId`
/// that is not the token's user, or inline media, is refused.
fn incoming(event: &str, mut payload: Payload, user: UserId) -> Result<Incoming, AckError> {
    let (parley, mut speaks) = match event {
        "sendMessage" => ("send_message", Some(Vocabulary::Camel)),
        "messagesRead" => ("mark_read", Some(Vocabulary::Camel)),
        "register-user" => (event, Some(Vocabulary::Camel)),
        // The first document's own room call (its send, below, when it carries `messageId`).
        "join_user_room" => (event, Some(Vocabulary::First)),
        "send_message" | "mark_read" | "mark_delivered" | "sync" | "typing" => {
            (event, Some(Vocabulary::Snake))
        }
        other => (other, None),
    };
    if let Some(arg) = payload.args.first_mut() {
        // In `messagesRead`, `senderId` is the author of the messages read (see `read_from`).
        if event != "messagesRead" {
            check_user(event, arg, user)?;
        }
        if event == "send_message" && first_document_send(arg) {
            speaks = Some(Vocabulary::First);
        }
        match event {
            "sendMessage" => second_document_send(arg)?,
            "messagesRead" => read_everything_by_default(arg),
            _ => {}
        }
    }
    Ok(Incoming {
        event: parley.to_owned(),
        payload,
        speaks,
    })
}

fn is_user(value: &Value, user: UserId) -> bool {
    match value {
        Value::String(s) => s.trim() == user.to_string(),
        Value::Number(n) => n.to_string() == user.to_string(),
        _ => false,
    }
}

/// `senderId` / `userId` (or a bare id, as `register-user` and `join_user_room` may carry)
/// must be the token's user.
fn check_user(event: &str, arg: &Value, user: UserId) -> Result<(), AckError> {
    let named = match arg {
        Value::Object(map) => ["senderId", "userId"]
            .into_iter()
            .filter_map(|field| map.get(field).filter(|v| !v.is_null()).map(|v| (field, v)))
            .collect(),
        Value::String(_) | Value::Number(_)
            if matches!(event, "register-user" | "join_user_room") =>
        {
            vec![("userId", arg)]
        }
        _ => Vec::new(),
    };
    match named.into_iter().find(|(_, v)| !is_user(v, user)) {
        None => Ok(()),
        Some((field, _)) => Err(AckError::new(
            ErrorCode::ValidationFailed,
            format!("{event}: {field} is not the user of the token (the sender is always the token's user)"),
        )),
    }
}

/// Move `from` to `to` unless `to` is present.
fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    if !map.contains_key(to) {
        if let Some(value) = map.remove(from) {
            map.insert(to.to_owned(), value);
        }
    }
}

/// The first document's `{messageId: <temp id>, senderId, recipientId, content, timestamp}`;
/// whether the send was the first document's (it carried `messageId`).
fn first_document_send(arg: &mut Value) -> bool {
    let Value::Object(map) = arg else {
        return false;
    };
    let first = map.contains_key("messageId");
    rename(map, "messageId", "clientMsgId");
    first
}

/// The second document's `{receiverId, text | image | voice, tempId}`. An `image` or `voice` is
/// an upload made first (`POST /api/attachments`): its id, or the upload's answer (relayed as
/// given when its shape fits, see `shared::domain::relayable_attachment`); `text` is then its
/// caption. Inline media (a `data:` or other URL) would have to be stored before the message
/// could be relayed, which the live path never waits for: refused, naming the upload route.
fn second_document_send(arg: &mut Value) -> Result<(), AckError> {
    let Value::Object(map) = arg else {
        return Ok(());
    };
    let media: Vec<&str> = ["image", "voice"]
        .into_iter()
        .filter(|k| map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let refused = |message: String| Err(AckError::new(ErrorCode::ValidationFailed, message));
    match media.as_slice() {
        [] => {}
        [kind] => {
            let given = map.remove(*kind).unwrap_or_default();
            let (id, described) = match given {
                Value::String(id) if !id.contains(':') && !id.contains('/') => (id, None),
                Value::Object(upload) => match upload.get("id").and_then(Value::as_str) {
                    Some(id) => (id.to_owned(), Some(Value::Object(upload.clone()))),
                    None => return refused(format!("sendMessage: {kind}: the upload has no id")),
                },
                _ => {
                    return refused(format!(
                        "sendMessage: {kind}: upload the file with POST /api/attachments first, \
                         then send its id (or its answer) as {kind}"
                    ))
                }
            };
            map.insert("kind".into(), Value::from(*kind));
            map.entry("attachmentId").or_insert(Value::String(id));
            if let Some(described) = described {
                map.entry("attachment").or_insert(described);
            }
        }
        _ => return refused("sendMessage: one image or one voice note per message".into()),
    }
    rename(map, "tempId", "clientMsgId");
    rename(map, "receiverId", "recipientId");
    rename(map, "text", "content");
    Ok(())
}

/// `messagesRead` without `upToSeq` reads everything so far (the API clamps to the last seq).
fn read_everything_by_default(arg: &mut Value) {
    if let Value::Object(map) = arg {
        rename(map, "seq", "upToSeq");
        map.entry("upToSeq").or_insert(Value::from(i64::MAX));
    }
}

/// The other user a `messagesRead` names without a `conversationId` (`senderId`, the author
/// of the messages read): their direct conversation is meant.
fn read_from(event: &str, payload: &Payload) -> Option<UserId> {
    if event != "messagesRead" {
        return None;
    }
    let arg = payload.args.first()?;
    if arg.get("conversationId").is_some_and(|v| !v.is_null()) {
        return None;
    }
    serde_json::from_value(arg.get("senderId")?.clone()).ok()
}

/// A Parley event for local sockets, with what each vocabulary makes of it.
pub struct Outgoing<'a, T> {
    pub event: &'a str,
    /// Written as it is for Parley's own vocabulary (no `Value` is built on the hot path); the
    /// second document's reads it as a `Value` to add its fields.
    pub arg: &'a T,
    /// The other member of a two-member conversation (`receiverId` of `newMessage`).
    pub receiver: Option<UserId>,
    /// Only for sockets of this vocabulary.
    pub only: Option<Vocabulary>,
}

impl<T: Serialize> Outgoing<'_, T> {
    /// What the second document's vocabulary makes of the event: its name and argument;
    /// `None`: it has no such event.
    fn camel(&self) -> Option<(&str, Value)> {
        match self.event {
            "receive_message" => {
                Some(("newMessage", new_message(to_value(self.arg), self.receiver)))
            }
            // Camel sockets get the whole stored message as `newMessage` instead.
            "message_saved" => None,
            "message_failed" => Some(("messageError", with_temp_id(to_value(self.arg)))),
            other => Some((other, to_value(self.arg))),
        }
    }

    /// The packet for sockets speaking `vocabulary` (encoded once per vocabulary), Parley's own
    /// straight from the argument; `None`: nothing for them.
    pub fn packet(&self, vocabulary: Vocabulary) -> Option<EncodedPacket> {
        if self.only.is_some_and(|only| only != vocabulary) {
            return None;
        }
        match vocabulary {
            Vocabulary::First if self.event == "receive_message" => Some(
                EncodedPacket::event_json("/", self.event, &with_underscore_id(to_value(self.arg))),
            ),
            Vocabulary::Snake | Vocabulary::First => {
                Some(EncodedPacket::event_json("/", self.event, self.arg))
            }
            Vocabulary::Camel => {
                let (event, arg) = self.camel()?;
                Some(EncodedPacket::event_json("/", event, &arg))
            }
        }
    }
}

/// Parley's fields plus the second document's: `tempId`, `text`, `receiverId`, and
/// `createdAt` on a relayed copy ([`with_created_at`]).
fn new_message(arg: Value, receiver: Option<UserId>) -> Value {
    let mut value = with_created_at(with_temp_id(arg));
    if let Value::Object(map) = &mut value {
        if let Some(content) = map.get("content").cloned() {
            map.insert("text".into(), content);
        }
        if let Some(receiver) = receiver {
            map.insert("receiverId".into(), to_value(&receiver));
        }
    }
    value
}

/// A relayed copy (not stored yet: it has `sentAt`, the relay's time) with `createdAt` too, the
/// time the design documents' clients show; the stored message's replaces it.
fn with_created_at(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        if let (false, Some(sent_at)) = (map.contains_key("createdAt"), map.get("sentAt")) {
            let sent_at = sent_at.clone();
            map.insert("createdAt".into(), sent_at);
        }
    }
    value
}

/// A message as the first document's client reads it: Parley's fields plus `_id`, the stored
/// `id` or, for a relayed copy not stored yet, its temporary id (`clientMsgId`), and
/// `createdAt` ([`with_created_at`]).
fn with_underscore_id(value: Value) -> Value {
    let mut value = with_created_at(value);
    if let Value::Object(map) = &mut value {
        let id = map.get("id").or_else(|| map.get("clientMsgId")).cloned();
        if let Some(id) = id {
            map.insert("_id".into(), id);
        }
    }
    value
}

fn with_temp_id(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        if let Some(id) = map.get("clientMsgId").cloned() {
            map.insert("tempId".into(), id);
        }
    }
    value
}

/// The temporary ids a socket of the second document sent as JSON numbers (`tempId:
/// Date.now()`): its client finds its message by comparing them with `===`, so they go back to
/// it as numbers (Parley keeps every `clientMsgId` as a string). Bounded: an id leaves when its
/// message is confirmed or refused, and the set is emptied past `NumericTempIds::MAX`.
#[derive(Clone, Default)]
struct NumericTempIds(Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl NumericTempIds {
    const MAX: usize = 1024;

    /// Note the send's `clientMsgId` (renamed from `tempId`) if it is an integer.
    fn remember(socket: &Socket, send: &Value) {
        let Some(Value::Number(id)) = send.get("clientMsgId") else {
            return;
        };
        if !(id.is_u64() || id.is_i64()) {
            return;
        }
        let ids = socket.extensions().get::<Self>().unwrap_or_else(|| {
            let ids = Self::default();
            socket.extensions().insert(ids.clone());
            ids
        });
        let mut ids = ids.0.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= Self::MAX {
            ids.clear();
        }
        ids.insert(id.to_string());
    }

    /// `id` as `socket` sent it: a number if it was one (forgotten now), else the string.
    fn take(socket: &Socket, id: &str) -> Value {
        let numeric = socket
            .extensions()
            .get::<Self>()
            .is_some_and(|ids| ids.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id));
        numeric
            .then(|| serde_json::from_str::<serde_json::Number>(id).ok())
            .flatten()
            .map_or_else(|| Value::String(id.to_owned()), Value::Number)
    }
}

/// `messageError`: a message of the second document's client that will not be stored.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageError<'a> {
    /// As the client sent it (a number stays one).
    temp_id: Option<Value>,
    client_msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receiver_id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<&'a Value>,
    error: &'a AckError,
}

/// Tell a Camel sending socket its message failed (it sends without a callback), then answer
/// the ack if there is one. `request` is the send as Parley reads it.
pub fn refuse_send(socket: &Socket, request: &Value, ack: Option<Ack>, error: AckError) {
    if of(socket) == Vocabulary::Camel {
        let field = |ours: &str, theirs: &str| request.get(ours).or_else(|| request.get(theirs));
        let id = field("clientMsgId", "tempId");
        let failed = MessageError {
            temp_id: id.map(|id| match id {
                Value::String(id) => NumericTempIds::take(socket, id),
                other => other.clone(),
            }),
            client_msg_id: id.map(|id| match id {
                Value::String(id) => id.clone(),
                other => other.to_string(),
            }),
            receiver_id: field("recipientId", "receiverId"),
            conversation_id: request.get("conversationId"),
            error: &error,
        };
        let _ = socket.emit("messageError", to_value(&failed));
    }
    ack_error(ack, error);
}

/// Confirm a stored message to a Camel sending socket: `newMessage` with the real message
/// (retries included: the broadcast is only sent for a new message).
pub fn confirm_send(socket: &Socket, message: &shared::wire::Message, receiver: Option<UserId>) {
    if of(socket) == Vocabulary::Camel {
        let mut confirmed = new_message(to_value(message), receiver);
        if let Value::Object(map) = &mut confirmed {
            map.insert(
                "tempId".into(),
                NumericTempIds::take(socket, &message.client_msg_id),
            );
        }
        let _ = socket.emit("newMessage", confirmed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: UserId = UserId(1);

    fn read(event: &str, arg: Value) -> Result<Incoming, AckError> {
        incoming(event, Payload::from(arg), ALICE)
    }

    #[test]
    fn the_first_documents_send_message_is_read_with_its_temp_id_as_client_msg_id() {
        let sent = json!({"messageId": "temp-1706743280123", "senderId": "1", "recipientId": "2",
                          "content": "Hello!", "timestamp": "2024-02-01"});
        let read = read("send_message", sent).unwrap();
        assert_eq!(read.event, "send_message");
        assert_eq!(read.speaks, Some(Vocabulary::First));
        let arg = &read.payload.args[0];
        assert_eq!(arg["clientMsgId"], "temp-1706743280123");
        assert_eq!(arg["recipientId"], "2");
        assert_eq!(arg["content"], "Hello!");
    }

    #[test]
    fn the_second_documents_send_message_maps_temp_id_receiver_and_text() {
        let read = read(
            "sendMessage",
            json!({"receiverId": "2", "text": "hi", "tempId": "t-1"}),
        )
        .unwrap();
        assert_eq!(read.event, "send_message");
        assert_eq!(read.speaks, Some(Vocabulary::Camel));
        let arg = &read.payload.args[0];
        assert_eq!(
            (&arg["clientMsgId"], &arg["recipientId"], &arg["content"]),
            (&json!("t-1"), &json!("2"), &json!("hi"))
        );
    }

    #[test]
    fn a_sender_id_or_user_id_that_is_not_the_tokens_user_is_refused() {
        for (event, arg) in [
            (
                "send_message",
                json!({"messageId": "t", "senderId": "2", "content": "x"}),
            ),
            (
                "sendMessage",
                json!({"tempId": "t", "userId": 2, "text": "x"}),
            ),
            ("register-user", json!("2")),
            ("join_user_room", json!({"userId": "2"})),
        ] {
            let error = read(event, arg).unwrap_err();
            assert_eq!(error.code, ErrorCode::ValidationFailed, "{event}");
        }
        assert!(read("register-user", json!("1")).is_ok());
        let shapeless = read("send_message", json!("hello")).unwrap();
        assert_eq!(
            shapeless.payload.args[0], "hello",
            "left for send_message to refuse"
        );
        assert!(read("send_message", json!({"senderId": 1, "content": "x"})).is_ok());
    }

    #[test]
    fn an_image_or_voice_names_an_upload_and_its_text_is_the_caption() {
        let by_id = read(
            "sendMessage",
            json!({"tempId": "t", "receiverId": "2", "image": "9f0c", "text": "look"}),
        )
        .unwrap();
        let arg = &by_id.payload.args[0];
        assert_eq!(
            (&arg["kind"], &arg["attachmentId"], &arg["content"]),
            (&json!("image"), &json!("9f0c"), &json!("look"))
        );
        let upload = json!({"id": "77ab", "kind": "voice", "mime": "audio/ogg", "bytes": 9});
        let by_answer = read("sendMessage", json!({"tempId": "t", "voice": upload})).unwrap();
        let arg = &by_answer.payload.args[0];
        assert_eq!(
            (&arg["kind"], &arg["attachmentId"]),
            (&json!("voice"), &json!("77ab"))
        );
        assert_eq!(arg["attachment"], upload);
    }

    #[test]
    fn inline_media_or_two_attachments_are_refused_naming_the_upload_route() {
        for given in [
            json!("data:image/png;base64,iVBO"),
            json!("https://x.example/a.png"),
        ] {
            let error = read("sendMessage", json!({"tempId": "t", "image": given})).unwrap_err();
            assert_eq!(error.code, ErrorCode::ValidationFailed);
            assert!(
                error.message.contains("POST /api/attachments"),
                "{}",
                error.message
            );
        }
        let both = read(
            "sendMessage",
            json!({"tempId": "t", "image": "a", "voice": "b"}),
        );
        assert_eq!(both.unwrap_err().code, ErrorCode::ValidationFailed);
    }

    #[test]
    fn messages_read_is_mark_read_of_everything_so_far_unless_told() {
        let read_all = read("messagesRead", json!({"conversationId": "4"})).unwrap();
        assert_eq!(read_all.event, "mark_read");
        assert_eq!(read_all.payload.args[0]["upToSeq"], i64::MAX);
        let up_to = read("messagesRead", json!({"conversationId": "4", "seq": 3})).unwrap();
        assert_eq!(up_to.payload.args[0]["upToSeq"], 3);
    }

    #[test]
    fn messages_read_by_sender_names_the_author_not_the_reader() {
        let by_sender = read("messagesRead", json!({"senderId": "2", "receiverId": "1"})).unwrap();
        assert_eq!(
            read_from("messagesRead", &by_sender.payload),
            Some(UserId(2))
        );
        let by_conversation = read("messagesRead", json!({"conversationId": "4"})).unwrap();
        assert_eq!(read_from("messagesRead", &by_conversation.payload), None);
        let send = read("send_message", json!({"senderId": "1", "recipientId": "2"})).unwrap();
        assert_eq!(read_from("send_message", &send.payload), None);
    }

    #[test]
    fn a_socket_is_decided_once_and_never_changes() {
        let hinted = SocketVocabulary::at_connect(&json!({"token": "t", "userId": "1"}), None);
        assert_eq!(hinted.decide(Vocabulary::Snake), Vocabulary::Camel);
        let plain = SocketVocabulary::at_connect(&json!({"token": "t"}), None);
        assert_eq!(plain.decide(Vocabulary::Snake), Vocabulary::Snake);
        assert_eq!(plain.decide(Vocabulary::Camel), Vocabulary::Snake);
        let queried = SocketVocabulary::at_connect(&json!({}), Some("1"));
        assert_eq!(queried.decide(Vocabulary::Snake), Vocabulary::Camel);
    }

    #[test]
    fn an_undecided_socket_is_not_decided_by_messages_for_a_while_then_is_decided_snake() {
        let connected = Instant::now();
        let fresh = SocketVocabulary::new(UNDECIDED, connected);
        assert_eq!(fresh.for_message_at(|| connected), Vocabulary::Snake);
        assert_eq!(
            fresh.decide(Vocabulary::First),
            Vocabulary::First,
            "join_user_room"
        );

        let quiet = SocketVocabulary::new(UNDECIDED, connected);
        let later = connected + UNDECIDED_FOR;
        assert_eq!(quiet.for_message_at(|| later), Vocabulary::Snake);
        assert_eq!(
            quiet.decide(Vocabulary::First),
            Vocabulary::Snake,
            "decided"
        );

        let camel = SocketVocabulary::new(CAMEL, connected);
        assert_eq!(camel.for_message_at(|| connected), Vocabulary::Camel);
    }

    #[test]
    fn a_handshake_user_id_must_be_the_tokens_user() {
        assert!(handshake_mismatch(&json!({"userId": "2"}), None, ALICE));
        assert!(handshake_mismatch(&json!({}), Some("2"), ALICE));
        assert!(!handshake_mismatch(&json!({"userId": 1}), None, ALICE));
        assert!(!handshake_mismatch(&json!({"token": "t"}), None, ALICE));
    }

    #[test]
    fn first_document_sockets_get_messages_with_an_underscore_id() {
        // Decided by the document's own events; Parley's send decides Snake.
        assert_eq!(
            read("join_user_room", json!({})).unwrap().speaks,
            Some(Vocabulary::First)
        );
        let parleys = json!({"clientMsgId": "c-1", "conversationId": "4", "content": "hi"});
        assert_eq!(
            read("send_message", parleys).unwrap().speaks,
            Some(Vocabulary::Snake)
        );
        // A relayed copy: its temporary id; a stored message: its id.
        let relayed = with_underscore_id(json!({"clientMsgId": "temp-1", "content": "hi"}));
        assert_eq!(relayed["_id"], "temp-1");
        let stored = with_underscore_id(json!({"clientMsgId": "temp-1", "id": "91", "seq": 3}));
        assert_eq!(stored["_id"], "91");
        let decided = SocketVocabulary::new(UNDECIDED, Instant::now());
        assert_eq!(decided.decide(Vocabulary::First), Vocabulary::First);
        assert_eq!(decided.decide(Vocabulary::Snake), Vocabulary::First);
    }

    #[test]
    fn camel_sockets_get_new_message_and_message_error_in_their_documents_fields() {
        let relayed = Outgoing {
            event: "receive_message",
            arg: &json!({"clientMsgId": "t-1", "content": "hi", "senderId": "1"}),
            receiver: Some(UserId(2)),
            only: None,
        };
        let (event, arg) = relayed.camel().unwrap();
        assert_eq!(event, "newMessage");
        assert_eq!(
            (&arg["tempId"], &arg["text"]),
            (&json!("t-1"), &json!("hi"))
        );
        assert_eq!(arg["receiverId"], "2");
        assert!(relayed.packet(Vocabulary::Snake).is_some());
        let saved = Outgoing {
            event: "message_saved",
            arg: &json!({}),
            receiver: None,
            only: None,
        };
        assert!(saved.camel().is_none());
        let failed = Outgoing {
            event: "message_failed",
            arg: &json!({"clientMsgId": "t-1", "error": {}}),
            receiver: None,
            only: None,
        };
        let (event, arg) = failed.camel().unwrap();
        assert_eq!((event, &arg["tempId"]), ("messageError", &json!("t-1")));
        let camel_only = Outgoing {
            only: Some(Vocabulary::Camel),
            ..relayed
        };
        assert!(camel_only.packet(Vocabulary::Snake).is_none());
    }
}
