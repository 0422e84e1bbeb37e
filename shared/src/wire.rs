//! JSON shapes shared by the REST API, the Socket.IO events and the bus (camelCase, ids as strings).

use crate::domain::MessageKind;
use crate::ids::{ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

/// A user with live presence, as `GET /api/users` returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct UserWithPresence {
    #[serde(flatten)]
    pub user: User,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

/// `{token, user}` answered by register and login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub token: String,
    pub user: User,
}

/// Direct (exactly two members, unique per pair) or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        }
    }
}

/// A member's receipt watermarks in a conversation; also the `message_status` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MemberState {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    #[cfg_attr(test, ts(type = "number"))]
    pub delivered_up_to_seq: i64,
    #[cfg_attr(test, ts(type = "number"))]
    pub read_up_to_seq: i64,
    /// When the watermarks last moved.
    pub at: DateTime<Utc>,
}

/// A conversation with its members' watermarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    #[cfg_attr(test, ts(type = "number"))]
    pub last_seq: i64,
    pub members: Vec<ConversationMember>,
}

/// A member of a conversation: the user and their watermarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationMember {
    pub user: User,
    #[cfg_attr(test, ts(type = "number"))]
    pub delivered_up_to_seq: i64,
    #[cfg_attr(test, ts(type = "number"))]
    pub read_up_to_seq: i64,
    pub joined_at: DateTime<Utc>,
}

/// A conversation as the caller's list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    /// Messages from others with `seq` above the caller's `readUpToSeq`.
    #[cfg_attr(test, ts(type = "number"))]
    pub unread_count: i64,
}

/// Delivery status of a message, from its sender's point of view: `delivered` once every other
/// member's `deliveredUpToSeq` reaches it, `read` once every other member's `readUpToSeq` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub client_msg_id: String,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: i64,
    pub kind: MessageKind,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attachment_id: Option<String>,
    /// The upload an image or voice message carries, with signed URLs (valid for
    /// `attachments.signed_url_ttl_secs`; read the message again for fresh ones).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attachment: Option<Box<Attachment>>,
    #[serde(
        serialize_with = "crate::rfc3339::serialize",
        deserialize_with = "crate::rfc3339::deserialize"
    )]
    pub created_at: DateTime<Utc>,
    pub status: MessageStatus,
}

/// What an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum AttachmentKind {
    Image,
    Voice,
}

impl AttachmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Image => "image",
            AttachmentKind::Voice => "voice",
        }
    }
}

/// An upload as a message carries it: enough to render a placeholder of the right size at
/// once, and where to fetch it. `url` and `thumbnailUrl` are signed, relative to the API's
/// base, and usable without a token (in `<img>` and `<audio>`) until they expire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    pub kind: AttachmentKind,
    pub mime: String,
    #[cfg_attr(test, ts(type = "number"))]
    pub bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "number"))]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "number"))]
    pub height: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "number"))]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

/// `201` of `POST /api/attachments`: the stored upload. Send it with a message by its `id`
/// (`attachmentId`); on the relay, pass this object as `attachment` too, so that recipients
/// see its size before the message is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct UploadedAttachment {
    /// What a message with it carries (its signed URLs included).
    #[serde(flatten)]
    pub attachment: Attachment,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// The body of `POST /api/messages` and of the `send_message` event. Exactly one of
/// `conversationId` and `recipientId`. Any `senderId` a client adds is ignored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SendMessageRequest {
    /// A string; an integer is read as its decimal digits (`tempId: Date.now()`), and the
    /// first design document's `messageId` (its temporary id) is read as this.
    #[serde(alias = "messageId", deserialize_with = "string_or_integer")]
    pub client_msg_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<UserId>,
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<MessageKind>", optional))]
    pub kind: Option<String>,
    /// The text; for `image` and `voice`, an optional caption (absent or empty).
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<String>", optional))]
    pub content: String,
    /// The upload an `image` or `voice` message carries (required for them, refused on text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    /// The relay only: the upload's metadata as `POST /api/attachments` answered it, relayed
    /// as given (shape-checked) so that recipients render it before it is stored. The API
    /// ignores it and describes the upload from its own record. One that does not read as an
    /// attachment is dropped, not refused: it only decorates the live copy.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_attachment"
    )]
    pub attachment: Option<Box<Attachment>>,
}

/// A string, or an integer as its decimal digits (JavaScript clients often make temporary ids
/// with `Date.now()`); anything else is refused.
fn string_or_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Visitor)
}

fn lenient_attachment<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Box<Attachment>>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// A page of a conversation's messages in `seq` order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// `{upToSeq}` for `/delivered` and `/read`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct WatermarkRequest {
    #[cfg_attr(test, ts(type = "number"))]
    pub up_to_seq: i64,
}

/// What `GET /api/sync` and the `sync` event answer: every change since the cursor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    /// New messages, in the order they became visible (per conversation: `seq` order).
    pub messages: Vec<Message>,
    /// Watermark changes, latest state of each member that moved.
    pub receipts: Vec<MemberState>,
    /// Conversations created or whose membership changed.
    pub conversations: Vec<Conversation>,
    /// Pass as `since` next time. Opaque.
    pub next_cursor: String,
    /// More changes are waiting: call again at once with `nextCursor`.
    pub has_more: bool,
}

/// `POST /api/conversations` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct CreateConversationRequest {
    pub member_ids: Vec<UserId>,
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub title: Option<String>,
}

/// The ack of a stored `send_message` and the `message_saved` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MessageSaved {
    pub client_msg_id: String,
    pub id: MessageId,
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: i64,
    pub conversation_id: ConversationId,
    #[serde(
        serialize_with = "crate::rfc3339::serialize",
        deserialize_with = "crate::rfc3339::deserialize"
    )]
    pub created_at: DateTime<Utc>,
    /// The stored message's upload, as the API describes it (the relayed copy had the
    /// sender's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Box<Attachment>>,
}

impl From<&Message> for MessageSaved {
    fn from(m: &Message) -> Self {
        Self {
            client_msg_id: m.client_msg_id.clone(),
            id: m.id,
            seq: m.seq,
            conversation_id: m.conversation_id,
            created_at: m.created_at,
            attachment: m.attachment.clone(),
        }
    }
}

/// `message_failed`: a relayed message could not be stored (the sender's ack carries the same
/// error); devices showing its optimistic copy mark it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MessageFailed {
    pub client_msg_id: String,
    pub conversation_id: ConversationId,
    pub error: crate::errors::AckError,
}

/// `typing`: a member started or stopped typing in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub is_typing: bool,
}

/// `presence`: a contact came online or went offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

/// `online_users`: the contacts online when a socket connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct OnlineUsers {
    pub users: Vec<UserId>,
}

/// `session_revoked`: the token this socket connected with was revoked; the socket is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    pub reason: String,
}

/// The ack of a stored `send_message`: [`MessageSaved`] with `success` and `status`, and
/// `messageId` (= `id`), the field the first design document's clients read the real id from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SendAck {
    pub success: bool,
    #[serde(flatten)]
    pub saved: MessageSaved,
    pub message_id: MessageId,
    pub status: MessageStatus,
}

/// A failed Socket.IO ack: `{"success":false,"error":{"code","message","retryable"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AckFailure {
    pub success: bool,
    pub error: crate::errors::AckError,
}

impl From<crate::errors::AckError> for AckFailure {
    fn from(error: crate::errors::AckError) -> Self {
        Self {
            success: false,
            error,
        }
    }
}

/// The answer to `ping`: the server's clock, for latency and skew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    pub server_time: DateTime<Utc>,
}
