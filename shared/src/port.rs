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

use crate::errors::AckError;
use crate::ids::{ConversationId, UserId};
use crate::wire::{MemberState, Message, SendMessageRequest, SyncResponse};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One conversation of the relay's membership view: its id and every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMembers {
    pub conversation_id: ConversationId,
    pub members: Vec<UserId>,
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

/// `POST /internal/relay/messages` body: `{"items": […], "announce": "bus"|"caller"}`
/// (`announce` may be left out: `bus`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreBatch {
    pub items: Vec<StoreItem>,
    #[serde(default)]
    pub announce: Announce,
}

/// [`StoreBatch`] as a sender writes it, borrowing the items (same JSON).
#[derive(Debug, Clone, Serialize)]
pub struct StoreBatchRef<'a> {
    pub items: &'a [StoreItem],
    pub announce: Announce,
}

/// `POST /internal/relay/messages` answer: one outcome per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreBatchAnswer {
    pub outcomes: Vec<StoreOutcome>,
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
}
