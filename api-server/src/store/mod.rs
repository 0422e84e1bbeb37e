//! Storage behind one narrow interface. The route handlers only see [`Store`]; the PostgreSQL
//! backend ([`postgres`]) is the system of record of the split deployment, and the embedded SQLite
//! backend implements the same trait for the all-in-one binary.
//!
//! Guarantees every backend gives (and the integration suite checks on each):
//! - a send is idempotent on `(sender, clientMsgId)`: one row, whatever the number of retries;
//! - `seq` is 1, 2, 3… per conversation, allocated inside the insert transaction, no gap;
//! - watermarks only grow, and never pass the conversation's last `seq`;
//! - [`Store::sync`] never skips a change that commits after a cursor was handed out.

pub mod attachments;
pub mod batch;
pub mod postgres;
pub mod rows;

pub use rows::AttachmentRow;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod status;

pub use status::message_status;

use crate::settings::DatabaseSettings;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::domain::{ClientMsgId, MessageContent, MessageKind};
use shared::ids::{ConversationId, UserId};
use shared::wire::{
    Conversation, ConversationSummary, MemberState, Message, MessagePage, SyncResponse, User,
};
use std::sync::Arc;

/// Open the store `DATABASE_URL` names: PostgreSQL for `postgres://` and `postgresql://` URLs,
/// the embedded SQLite store for `sqlite:` URLs, file paths and `:memory:`.
pub async fn open(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.url.trim();
    anyhow::ensure!(
        !url.is_empty(),
        "DATABASE_URL is empty: set it to a postgres:// URL, a SQLite file path or :memory:"
    );
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::connect(settings)
            .await
            .context("opening the PostgreSQL store (DATABASE_URL)")?;
        return Ok(Arc::new(store));
    }
    if let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| *s != "sqlite") {
        // Only the scheme: the rest may hold a password.
        anyhow::bail!(
            "DATABASE_URL has the unsupported scheme {scheme:?}: use postgres://, sqlite:// \
             or a file path"
        );
    }
    open_sqlite(url, settings.pool_size).await
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, pool_size: usize) -> anyhow::Result<Arc<dyn Store>> {
    let store = sqlite::SqliteStore::open(url, pool_size)
        .await
        .context("opening the SQLite store (DATABASE_URL)")?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_url: &str, _pool_size: usize) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("DATABASE_URL names a SQLite database, but this build has no `sqlite` feature")
}

/// What can go wrong in storage, as the handlers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username taken")]
    UsernameTaken,
    /// The conversation does not exist or the caller is not a member (indistinguishable).
    #[error("conversation not found")]
    ConversationNotFound,
    /// A user named in the request does not exist.
    #[error("user not found")]
    UserNotFound,
    /// The same `clientMsgId` was used for a message with other content.
    #[error("clientMsgId reused for a different message")]
    IdempotencyMismatch,
    /// The request is well-formed but not acceptable (field, reason).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// The database cannot be reached; retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// A sync cursor past anything this server's change log could have issued (both backends
    /// bound-check cursors; see their `sync` modules).
    pub fn cursor_beyond_the_log() -> Self {
        StoreError::Invalid(
            "since",
            "is beyond the end of this server's change log (not a cursor it issued, or one from \
             a replaced database): sync again without it"
                .into(),
        )
    }
}

impl StoreError {
    /// Whether this refuses one request (its own answer) rather than telling that storage
    /// failed (the database is unreachable or answered something unexpected).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, StoreError::Unavailable(_) | StoreError::Unexpected(_))
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                StoreError::Unavailable(anyhow::Error::new(e))
            }
            other => StoreError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

/// A user to create. The password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
}

/// Where a message goes (the parsed request's target).
pub use shared::domain::SendTarget as Target;

/// A message to store. The sender comes from the token.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: UserId,
    pub client_msg_id: ClientMsgId,
    pub target: Target,
    pub kind: MessageKind,
    pub content: MessageContent,
    pub attachment_id: Option<String>,
}

/// The result of a send.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub message: Message,
    /// `false` when this was a retry answered with the stored original.
    pub created: bool,
    /// The direct conversation created for a `recipientId` send, if one was.
    pub new_conversation: Option<Conversation>,
    /// Every member of the conversation (to publish the event to).
    pub members: Vec<UserId>,
}

/// The result of creating a conversation.
#[derive(Debug, Clone)]
pub struct CreateOutcome {
    pub conversation: Conversation,
    /// `false` when an existing direct conversation was returned.
    pub created: bool,
}

/// Which watermark to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    Delivered,
    Read,
}

impl From<shared::port::Receipt> for Watermark {
    fn from(r: shared::port::Receipt) -> Self {
        match r {
            shared::port::Receipt::Delivered => Watermark::Delivered,
            shared::port::Receipt::Read => Watermark::Read,
        }
    }
}

/// The result of moving a watermark.
#[derive(Debug, Clone)]
pub struct WatermarkOutcome {
    pub state: MemberState,
    /// `false` when nothing changed (the request was at or below the current value).
    pub moved: bool,
    pub members: Vec<UserId>,
}

/// Bounds of a page of messages.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery {
    /// Only messages with `seq > after`.
    pub after_seq: Option<i64>,
    /// Only messages with `seq < before`.
    pub before_seq: Option<i64>,
    /// At most this many (already capped by the caller).
    pub limit: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- users and sessions
    /// Create a user; [`StoreError::UsernameTaken`] if the name exists.
    async fn create_user(&self, new: NewUser) -> StoreResult<User>;
    /// The user and their password hash, by (lower-case) username.
    async fn credentials(&self, username: &str) -> StoreResult<Option<(User, String)>>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Users whose username or display name contains `query` (case-insensitive), by username.
    async fn search_users(&self, query: &str, limit: i64) -> StoreResult<Vec<User>>;
    /// Users who share a conversation with `user` (their contacts), without `user`.
    async fn contacts(&self, user: UserId) -> StoreResult<Vec<UserId>>;
    /// Record an issued token so that it can be revoked.
    async fn create_session(
        &self,
        jti: &str,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Revoke a token. Idempotent.
    async fn revoke_session(&self, jti: &str) -> StoreResult<()>;
    /// Whether the token exists and is not revoked.
    async fn session_active(&self, jti: &str) -> StoreResult<bool>;
    /// Of `jtis`, the sessions that are active (issued, not revoked, not expired), each with its
    /// user, in one query.
    async fn active_sessions(&self, jtis: &[String]) -> StoreResult<Vec<(String, UserId)>>;
    /// Whether `jti` is an active session **of `user`**.
    async fn session_active_for(&self, user: UserId, jti: &str) -> StoreResult<bool> {
        let active = self.active_sessions(&[jti.to_owned()]).await?;
        Ok(active.iter().any(|(j, u)| j == jti && *u == user))
    }

    // --- conversations
    /// Create a conversation of `creator` and `members` (the creator is added if missing). One
    /// other member and no title: the direct conversation of the pair, returned if it exists.
    async fn create_conversation(
        &self,
        creator: UserId,
        members: &[UserId],
        title: Option<String>,
    ) -> StoreResult<CreateOutcome>;
    /// The caller's conversations, most recently active first.
    async fn list_conversations(&self, user: UserId) -> StoreResult<Vec<ConversationSummary>>;
    /// Every conversation `user` is a member of, with all its members (ascending ids), in
    /// conversation id order.
    async fn memberships(&self, user: UserId) -> StoreResult<Vec<(ConversationId, Vec<UserId>)>>;
    /// One conversation, if `user` is a member.
    async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>>;

    // --- messages
    /// Store a message exactly once (see [`SendOutcome`]).
    async fn send_message(&self, new: NewMessage) -> StoreResult<SendOutcome>;
    /// Store a batch of messages in order (group commit), with the guarantees of
    /// [`Store::send_message`] for each: the answer has one result per message, in order, and a
    /// refused message ([`StoreError::is_refusal`]) never fails the others. `Err` when the batch
    /// as a whole could not be stored (nothing of it is then committed but the direct
    /// conversations its `recipientId` sends created, as a single send would leave them).
    async fn send_batch(
        &self,
        batch: Vec<NewMessage>,
    ) -> StoreResult<Vec<StoreResult<SendOutcome>>>;
    /// A page of a conversation the caller is a member of, in `seq` order.
    async fn messages(
        &self,
        user: UserId,
        conversation: ConversationId,
        page: PageQuery,
    ) -> StoreResult<MessagePage>;

    // --- receipts
    /// Move the caller's watermark forward to `up_to_seq` (clamped to the last `seq`; moving
    /// `read` moves `delivered` along).
    async fn move_watermark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Watermark,
        up_to_seq: i64,
    ) -> StoreResult<WatermarkOutcome>;

    // --- sync
    /// Every change visible to `user` after `cursor` (`None`: from the beginning), at most
    /// `limit` changes. [`StoreError::Invalid`] for a cursor this backend did not issue.
    async fn sync(
        &self,
        user: UserId,
        cursor: Option<&str>,
        limit: i64,
    ) -> StoreResult<SyncResponse>;

    // --- attachments
    /// Record an upload (its bytes are stored already).
    async fn create_attachment(&self, row: AttachmentRow) -> StoreResult<()>;
    /// The upload `id` if `user` may read it: its uploader, or a member of the conversation of
    /// the message that references it. `None` for everyone else (indistinguishable from none).
    async fn attachment_for(&self, user: UserId, id: &str) -> StoreResult<Option<AttachmentRow>>;
    /// The uploads of `ids` that exist (to describe messages' attachments).
    async fn attachments(&self, ids: &[String]) -> StoreResult<Vec<AttachmentRow>>;
    /// The bytes of all `user`'s uploads (the quota).
    async fn attachment_bytes_of(&self, user: UserId) -> StoreResult<i64>;
    /// Delete and return at most `limit` uploads created before `before` that no message
    /// references. Each is returned to one caller only, whatever the number of replicas.
    async fn claim_unattached(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<AttachmentRow>>;

    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Pool statistics for `/metrics`: (connections in use, idle connections, max size).
    fn pool_status(&self) -> (usize, usize, usize);
}
