//! The port between the relay and the API: exactly the operations the relay needs, with typed
//! arguments and answers. Two implementations run the same contract tests:
//! - in process (`api_server::port::InProcessPort`): the all-in-one binary calls the API's own
//!   logic directly, with no loopback HTTP, no JSON round trip and no second token check;
//! - over HTTP (`socket_server::chat::port_http::HttpPort`): the split deployment, calling the
//!   API's internal routes (`/internal/relay/…`, `docs/protocol.md`), authenticated with a
//!   service token signed with the shared `JWT_SECRET`. Stores are **batched**: one request,
//!   one transaction (group commit), one answer per message.
//!
//! The relay has authenticated every user it names here (their token verified at connect), so
//! the port takes user ids, not bearer tokens. Membership and idempotency rules are the API's,
//! exactly as on the REST routes.

use crate::domain::MessageKind;
use crate::errors::AckError;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::wire::{MemberState, Message, MessageStatus, SendMessageRequest, SyncResponse};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One conversation of the relay's membership view: its id and every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMembers {
    pub conversation_id: ConversationId,
    pub members: Vec<UserId>,
    /// The two members' direct conversation (one per pair): where the API stores a
    /// `recipientId` send between them, so a relay that knows it relays such a send at once.
    /// `false` from an API older than the field.
    #[serde(default)]
    pub direct: bool,
}

/// One message of a store batch: who sends it (the socket's authenticated user and the token
/// id of the session it connected with) and what they sent, exactly as the client sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreItem {
    pub sender: UserId,
    /// The `jti` of the sender's token: a revoked session's messages are refused
    /// (`token_revoked`), as on `POST /api/messages`.
    pub jti: String,
    pub message: SendMessageRequest,
}

/// The answer to one [`StoreItem`]: the stored message (new, or the original of a retry with
/// the same `clientMsgId`), or why this one message was refused. On the wire:
/// `{"message": {…}}` or `{"error": {"code","message","retryable"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoreOutcome {
    Message(Message),
    Error(AckError),
}

impl From<StoreOutcome> for Result<Message, AckError> {
    fn from(outcome: StoreOutcome) -> Self {
        match outcome {
            StoreOutcome::Message(m) => Ok(m),
            StoreOutcome::Error(e) => Err(e),
        }
    }
}

/// What storing gave a message: with the [`StoreItem`] it was sent as, all of the stored
/// message for a text message (see [`StoreItem::stored_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assigned {
    pub id: MessageId,
    pub seq: i64,
    #[serde(
        serialize_with = "crate::rfc3339::serialize",
        deserialize_with = "crate::rfc3339::deserialize"
    )]
    pub created_at: DateTime<Utc>,
}

impl Assigned {
    pub fn of(message: &Message) -> Self {
        Self {
            id: message.id,
            seq: message.seq,
            created_at: message.created_at,
        }
    }
}

impl StoreItem {
    /// The message the API stores for this item, given what storing assigned it, when the item
    /// alone says the rest: a text message to a conversation it names, as sent, `sent`. `None`
    /// for the others (an upload the API describes, a `recipientId` whose conversation the API
    /// finds or creates). The API answers [`StoreAnswer::Saved`] only where this rebuilds the
    /// stored message exactly, so a caller never holds a message other than the stored one;
    /// a change to what this rebuilds must rename [`Answers::Saved`] on the wire, or an API and
    /// a relay of different versions could rebuild differently.
    pub fn stored_as(&self, assigned: Assigned) -> Option<Message> {
        let message = &self.message;
        let kind = MessageKind::parse(message.kind.as_deref().unwrap_or("text")).ok()?;
        let bare = message.recipient_id.is_none()
            && message.attachment_id.is_none()
            && message.attachment.is_none();
        if kind != MessageKind::Text || !bare {
            return None;
        }
        Some(Message {
            id: assigned.id,
            client_msg_id: message.client_msg_id.clone(),
            conversation_id: message.conversation_id?,
            sender_id: self.sender,
            seq: assigned.seq,
            kind: MessageKind::Text,
            content: message.content.clone(),
            attachment_id: None,
            attachment: None,
            created_at: assigned.created_at,
            status: MessageStatus::Sent,
        })
    }
}

/// How `POST /internal/relay/messages` answers a batch's stored messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answers {
    /// Each one whole: `{"message": {…}}`.
    #[default]
    Messages,
    /// `{"saved": {"id","seq","createdAt"}}` for each one the caller rebuilds from its item
    /// ([`StoreItem::stored_as`]), the others whole. The relay asks for it: reading a whole
    /// message back was most of what a stored message cost it to read (issue 12).
    Saved,
}

/// One item's outcome as `POST /internal/relay/messages` answers it: [`StoreOutcome`]'s
/// `{"message": {…}}` and `{"error": {…}}`, or `{"saved": {…}}` when the caller asked for
/// [`Answers::Saved`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoreAnswer {
    Message(Message),
    Saved(Assigned),
    Error(AckError),
}

impl StoreAnswer {
    /// `outcome` of `item` as answered to a caller that asked for `answers`.
    pub fn new(outcome: StoreOutcome, item: &StoreItem, answers: Answers) -> Self {
        match outcome {
            StoreOutcome::Message(message) => {
                let assigned = Assigned::of(&message);
                let rebuilt = answers == Answers::Saved
                    && item.stored_as(assigned).is_some_and(|m| m == message);
                if rebuilt {
                    StoreAnswer::Saved(assigned)
                } else {
                    StoreAnswer::Message(message)
                }
            }
            StoreOutcome::Error(error) => StoreAnswer::Error(error),
        }
    }

    /// The outcome this answers for `item`; `None` for `saved` where `item` does not say the
    /// rest of the message (the answer is not to this item).
    pub fn into_outcome(self, item: &StoreItem) -> Option<StoreOutcome> {
        match self {
            StoreAnswer::Message(message) => Some(StoreOutcome::Message(message)),
            StoreAnswer::Saved(assigned) => item.stored_as(assigned).map(StoreOutcome::Message),
            StoreAnswer::Error(error) => Some(StoreOutcome::Error(error)),
        }
    }
}

/// A session to check: the user and the `jti` of the token their socket connected with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionRef {
    pub user: UserId,
    pub jti: String,
}

/// `POST /internal/relay/sessions` body (at most [`MAX_SESSION_CHECKS`] sessions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionCheck {
    pub sessions: Vec<SessionRef>,
}

/// `POST /internal/relay/sessions` answer: one flag per session, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionCheckAnswer {
    pub active: Vec<bool>,
}

/// Most sessions checked in one call.
pub const MAX_SESSION_CHECKS: usize = 1000;

/// Which receipt watermark to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Receipt {
    Delivered,
    Read,
}

/// Most items one [`StoreBatch`] may carry: a larger batch is refused whole (400
/// `validation_failed` naming `items`) and should be split by the caller.
pub const MAX_STORE_BATCH: usize = 256;

/// Largest `POST /internal/relay/messages` body accepted, in bytes (413 `payload_too_large`
/// above): room for [`MAX_STORE_BATCH`] messages of 4,000 characters each, even escaped.
pub const MAX_STORE_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// How long the API waits for the first request on a new connection (actix-web's
/// `client_request_timeout`). A connection that sends nothing for this long is answered `408`
/// and closed — also one that an HTTP client opened ahead of need for its pool (hyper does,
/// when a request finds no idle connection and one comes back while it connects).
pub const API_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client of the API should keep a pooled connection unused: well under
/// [`API_REQUEST_HEAD_TIMEOUT`] and under the API's default keep-alive (`api.keep_alive_secs`,
/// 5 s). A client that waits longer can send a request on a connection the API is closing, and
/// read the unasked `408` written on it as the answer (or find it cut). The relay's
/// `HttpPort` keeps its connections this long; so do the clients of the API's and the relay's
/// test suites and the bench's.
pub const API_CLIENT_IDLE: Duration = Duration::from_secs(2);

/// `GET /internal/relay/users/{id}/sessions/{jti}` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    pub active: bool,
}

/// Who tells the members' devices that a batch's new messages are stored (`message_stored`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Announce {
    /// The API publishes `message_stored` on the bus, to every member's channel (as for a
    /// REST send).
    #[default]
    Bus,
    /// The caller does: a relay that knows every member of each message's conversation
    /// delivers the answer to its own devices at once, with no trip through Redis, and
    /// publishes it on the bus for the other relays, if any. The API publishes no
    /// `message_stored` for the batch (a conversation it creates is still announced).
    Caller,
}

/// `POST /internal/relay/messages` body: `{"items": […], "announce": "bus"|"caller",
/// "answers": "messages"|"saved"}` (`announce` may be left out: `bus`; `answers` too:
/// `messages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreBatch {
    pub items: Vec<StoreItem>,
    #[serde(default)]
    pub announce: Announce,
    #[serde(default)]
    pub answers: Answers,
}

/// [`StoreBatch`] as a sender writes it, borrowing the items (same JSON).
#[derive(Debug, Clone, Serialize)]
pub struct StoreBatchRef<'a> {
    pub items: &'a [StoreItem],
    pub announce: Announce,
    pub answers: Answers,
}

/// `POST /internal/relay/messages` answer: one outcome per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreBatchAnswer {
    pub outcomes: Vec<StoreAnswer>,
}

#[async_trait]
pub trait RelayPort: Send + Sync + 'static {
    /// Whether `jti` is an active (issued, not revoked, not expired) session of `user`, as the
    /// system of record says.
    async fn session_active(&self, user: UserId, jti: &str) -> Result<bool, AckError>;

    /// For each `(user, jti)`, whether it is an active session of that user, in order: one call
    /// for a relay's periodic revalidation of its long-lived sockets.
    async fn sessions_active(&self, sessions: &[SessionRef]) -> Result<Vec<bool>, AckError>;

    /// Every conversation `user` is a member of, each with all its members, in one call: the
    /// relay's membership view of a user, loaded at connect.
    async fn memberships(&self, user: UserId) -> Result<Vec<ConversationMembers>, AckError>;

    /// The members of `conversation` when `user` is one of them; `None` when the conversation
    /// does not exist or `user` is not a member (indistinguishable, as on REST).
    async fn members(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<Vec<UserId>>, AckError>;

    /// Store a batch of messages, in order, in as few transactions as the backend allows. The
    /// answer has one outcome per item, in order; one refused message never fails the others.
    /// `Err` only when the whole batch could not be attempted or its outcome is unknown (the API
    /// or the database unreachable): retrying the same batch is then safe, since every send is
    /// idempotent on `(sender, clientMsgId)`. `announce` says who announces the new messages
    /// ([`Announce`]).
    async fn store(
        &self,
        batch: &[StoreItem],
        announce: Announce,
    ) -> Result<Vec<StoreOutcome>, AckError>;

    /// Move `user`'s `which` watermark in `conversation` up to `up_to_seq` (as
    /// `POST /api/conversations/{id}/read|delivered`); the member's state afterwards.
    async fn mark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Receipt,
        up_to_seq: i64,
    ) -> Result<MemberState, AckError>;

    /// Every change visible to `user` since `since` (as `GET /api/sync`).
    async fn sync(&self, user: UserId, since: Option<String>) -> Result<SyncResponse, AckError>;

    /// Whether the API answered the last call (`None`: not known yet, or the API is in this
    /// process): what the relay's `/health` and `relay_api_up` report.
    fn reachable(&self) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorCode;
    use serde_json::json;

    fn item(message: serde_json::Value) -> StoreItem {
        StoreItem {
            sender: UserId(7),
            jti: "j".into(),
            message: serde_json::from_value(message).unwrap(),
        }
    }

    fn assigned() -> Assigned {
        Assigned {
            id: MessageId(91),
            seq: 12,
            created_at: "2026-12-06T10:00:00.123456Z".parse().unwrap(),
        }
    }

    /// What the API stores for `item` (a text message to conversation 4), as it answers it.
    fn stored(status: MessageStatus) -> Message {
        Message {
            id: MessageId(91),
            client_msg_id: "c-1".into(),
            conversation_id: ConversationId(4),
            sender_id: UserId(7),
            seq: 12,
            kind: MessageKind::Text,
            content: "hi".into(),
            attachment_id: None,
            attachment: None,
            created_at: assigned().created_at,
            status,
        }
    }

    #[test]
    fn a_text_message_to_a_conversation_is_answered_saved_and_rebuilt_as_stored() {
        let text = item(json!({"clientMsgId": "c-1", "conversationId": "4", "content": "hi"}));
        let outcome = StoreOutcome::Message(stored(MessageStatus::Sent));

        let answer = StoreAnswer::new(outcome.clone(), &text, Answers::Saved);

        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"saved": {"id": "91", "seq": 12, "createdAt": "2026-12-06T10:00:00.123456Z"}})
        );
        let read: StoreAnswer =
            serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
        assert_eq!(read.into_outcome(&text), Some(outcome));
    }

    #[test]
    fn what_the_item_does_not_say_is_answered_whole() {
        let outcome = |status| StoreOutcome::Message(stored(status));
        let text = item(json!({"clientMsgId": "c-1", "conversationId": "4", "content": "hi"}));
        let whole = |answer: StoreAnswer| matches!(answer, StoreAnswer::Message(_));

        // Not asked for.
        assert!(whole(StoreAnswer::new(
            outcome(MessageStatus::Sent),
            &text,
            Answers::Messages
        )));
        // A retry of a message read meanwhile: its status is not the item's.
        assert!(whole(StoreAnswer::new(
            outcome(MessageStatus::Read),
            &text,
            Answers::Saved
        )));
        // Not what the item says (another answer's message).
        let other = item(json!({"clientMsgId": "c-1", "conversationId": "4", "content": "bye"}));
        assert!(whole(StoreAnswer::new(
            outcome(MessageStatus::Sent),
            &other,
            Answers::Saved
        )));
        // The conversation is the API's to find, the upload the API's to describe.
        for message in [
            json!({"clientMsgId": "c-1", "recipientId": "8", "content": "hi"}),
            json!({"clientMsgId": "c-1", "conversationId": "4", "kind": "image", "attachmentId": "a1"}),
        ] {
            let it = item(message);
            assert_eq!(it.stored_as(assigned()), None, "{:?}", it.message);
            assert!(whole(StoreAnswer::new(
                outcome(MessageStatus::Sent),
                &it,
                Answers::Saved
            )));
        }
        // `saved` for an item that does not say the rest is no outcome.
        let to_user = item(json!({"clientMsgId": "c-1", "recipientId": "8", "content": "hi"}));
        assert_eq!(StoreAnswer::Saved(assigned()).into_outcome(&to_user), None);
        let refused = StoreOutcome::Error(AckError::new(ErrorCode::ValidationFailed, "no"));
        assert_eq!(
            StoreAnswer::new(refused.clone(), &text, Answers::Saved).into_outcome(&text),
            Some(refused)
        );
    }

    #[test]
    fn a_batch_without_answers_asks_for_whole_messages() {
        let batch: StoreBatch = serde_json::from_value(json!({"items": []})).unwrap();
        assert_eq!(batch.answers, Answers::Messages);
        assert_eq!(batch.announce, Announce::Bus);
    }
}
