//! The embedded SQLite store (diesel's SQLite backend behind diesel-async's
//! `SyncConnectionWrapper`): the all-in-one binary's default. Same trait, same guarantees as
//! [`super::postgres`], obtained differently:
//!
//! - SQLite has one writer at a time. Every write runs in a `BEGIN IMMEDIATE` transaction on the
//!   single *writer* connection (`dialect::write_tx`), so a send's seq allocation and insert
//!   happen under the write lock and seqs are gap-free with no seq turn to take. Requests queue
//!   for the writer in the pool instead of spinning on `database is locked`; `busy_timeout`
//!   covers another process on the same file.
//! - Reads use a pool of *reader* connections, which WAL lets run beside the writer.
//! - `:memory:` has one connection for both (a private in-memory database is per connection).
//! - Linking an upload in a message's transaction and a garbage claim run wholly one after the
//!   other (one writer): a linked upload is never collected.
//!
//! Each submodule holds the queries of one area as functions taking a connection; most are
//! written once for both backends (`store/queries/`), and only what differs is here: the
//! [`dialect`] (clock, text search, transactions) and the sync cursor ([`sync`]); opening the
//! database and its pools is [`connect`], the group commit [`batch`].

// `queries!()` loads the files of `store/queries/` here and in the other backend, on purpose.
#![allow(clippy::duplicate_mod)]

#[macro_use]
mod dialect;
mod batch;
mod connect;
mod schema;
mod sync;

// The queries written once for both backends (see `store`'s module doc).
queries!();

use super::{
    AttachmentRow, ConversationList, CreateOutcome, ListQuery, NewMessage, NewUser, PageQuery,
    SendOutcome, SessionMessage, Store, StoreError, StoreResult, UploadQuota, Watermark,
    WatermarkOutcome,
};
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use connect::{detached, establish, pool};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::RunQueryDsl;
use shared::ids::{ConversationId, UserId};
use shared::port::ConversationMembers;
use shared::wire::{Conversation, MessagePage, SyncResponse, User};
use std::time::Duration;

pub use connect::Location;
pub use dialect::Conn;

/// How long a read waits for a pooled connection before answering `service_unavailable`.
const READ_WAIT: Duration = Duration::from_secs(5);
/// How long a write waits for the writer connection: writes queue there, one at a time.
const WRITE_WAIT: Duration = Duration::from_secs(15);

pub struct SqliteStore {
    readers: Pool<Conn>,
    /// One connection: SQLite allows one writer anyway, and queuing here is fair and cheap.
    /// The same pool as `readers` for `:memory:`.
    writer: Pool<Conn>,
    /// `readers` and `writer` are one pool (`:memory:`).
    shared: bool,
}

impl SqliteStore {
    /// Open (creating the file and its directory when missing, both owner-only) and run the
    /// embedded migrations.
    pub async fn open(url: &str, pool_size: usize) -> anyhow::Result<Self> {
        match Location::parse(url)? {
            Location::Memory => {
                // One connection that migrates itself when (re)created.
                let pool = pool(":memory:", 1, true, WRITE_WAIT)?;
                drop(pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?);
                Ok(Self {
                    readers: pool.clone(),
                    writer: pool,
                    shared: true,
                })
            }
            Location::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    shared::owner_only::create_dir(dir)
                        .with_context(|| format!("creating the directory {}", dir.display()))?;
                }
                // Created owner-only before SQLite opens it: SQLite gives the `-wal` and `-shm`
                // files the database file's mode. An existing file keeps its own.
                shared::owner_only::file_options()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .with_context(|| format!("creating the SQLite database {}", path.display()))?;
                let target = path
                    .to_str()
                    .with_context(|| format!("{} is not a UTF-8 path", path.display()))?
                    .to_owned();
                let migrate = target.clone();
                tokio::task::spawn_blocking(move || establish(&migrate, true))
                    .await
                    .context("joining the migration task")?
                    .with_context(|| format!("opening the SQLite database {}", path.display()))?;
                Ok(Self {
                    readers: pool(&target, pool_size, false, READ_WAIT)?,
                    writer: pool(&target, 1, false, WRITE_WAIT)?,
                    shared: false,
                })
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        detached(&self.writer, move |mut c| async move {
            users::create(&mut c, &new).await
        })
        .await
    }

    async fn credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let username = username.to_owned();
        detached(&self.readers, move |mut c| async move {
            users::credentials(&mut c, &username).await
        })
        .await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        detached(&self.readers, move |mut c| async move {
            users::by_id(&mut c, id).await
        })
        .await
    }

    async fn search_users(&self, query: &str, limit: i64) -> StoreResult<Vec<User>> {
        let query = query.to_owned();
        detached(&self.readers, move |mut c| async move {
            users::search(&mut c, &query, limit).await
        })
        .await
    }

    async fn contacts(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        detached(&self.readers, move |mut c| async move {
            users::contacts(&mut c, user).await
        })
        .await
    }

    async fn create_session(
        &self,
        jti: &str,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let jti = jti.to_owned();
        detached(&self.writer, move |mut c| async move {
            users::create_session(&mut c, &jti, user, expires_at).await
        })
        .await
    }

    async fn revoke_session(&self, jti: &str) -> StoreResult<()> {
        let jti = jti.to_owned();
        detached(&self.writer, move |mut c| async move {
            users::revoke_session(&mut c, &jti).await
        })
        .await
    }

    async fn prune_sessions(
        &self,
        expired_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<usize> {
        detached(&self.writer, move |mut c| async move {
            users::prune_sessions(&mut c, expired_before, limit).await
        })
        .await
    }

    async fn session_active(&self, jti: &str) -> StoreResult<bool> {
        let jti = jti.to_owned();
        detached(&self.readers, move |mut c| async move {
            users::session_active(&mut c, &jti).await
        })
        .await
    }

    async fn active_sessions(&self, jtis: &[String]) -> StoreResult<Vec<(String, UserId)>> {
        let jtis = jtis.to_vec();
        detached(&self.readers, move |mut c| async move {
            users::active_sessions(&mut c, &jtis).await
        })
        .await
    }

    async fn memberships(&self, user: UserId) -> StoreResult<Vec<ConversationMembers>> {
        detached(&self.readers, move |mut c| async move {
            users::memberships(&mut c, user).await
        })
        .await
    }

    async fn create_conversation(
        &self,
        creator: UserId,
        members: &[UserId],
        title: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        let members = members.to_vec();
        detached(&self.writer, move |mut c| async move {
            conversations::create(&mut c, creator, &members, title).await
        })
        .await
    }

    async fn list_conversations(
        &self,
        user: UserId,
        page: ListQuery,
    ) -> StoreResult<ConversationList> {
        detached(&self.readers, move |mut c| async move {
            conversations::list(&mut c, user, page).await
        })
        .await
    }

    async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        detached(&self.readers, move |mut c| async move {
            conversations::for_member(&mut c, user, id).await
        })
        .await
    }

    async fn send_message(&self, new: NewMessage) -> StoreResult<SendOutcome> {
        detached(&self.writer, move |mut c| async move {
            messages::send(&mut c, &new).await
        })
        .await
    }

    async fn send_batch(
        &self,
        batch: Vec<SessionMessage>,
    ) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
        detached(&self.writer, move |mut c| async move {
            batch::send(&mut c, batch).await
        })
        .await
    }

    async fn messages(
        &self,
        user: UserId,
        conversation: ConversationId,
        page: PageQuery,
    ) -> StoreResult<MessagePage> {
        detached(&self.readers, move |mut c| async move {
            messages::page(&mut c, user, conversation, page).await
        })
        .await
    }

    async fn move_watermark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Watermark,
        up_to_seq: i64,
    ) -> StoreResult<WatermarkOutcome> {
        detached(&self.writer, move |mut c| async move {
            receipts::move_watermark(&mut c, user, conversation, which, up_to_seq).await
        })
        .await
    }

    async fn sync(
        &self,
        user: UserId,
        cursor: Option<&str>,
        limit: i64,
    ) -> StoreResult<SyncResponse> {
        let cursor = cursor.map(str::to_owned);
        detached(&self.readers, move |mut c| async move {
            sync::since(&mut c, user, cursor.as_deref(), limit).await
        })
        .await
    }

    async fn sync_position(&self) -> StoreResult<String> {
        detached(&self.readers, move |mut c| async move {
            sync::position(&mut c).await
        })
        .await
    }

    async fn create_attachment(&self, row: AttachmentRow, quota: UploadQuota) -> StoreResult<()> {
        detached(&self.writer, move |mut c| async move {
            attachments::create(&mut c, &row, quota).await
        })
        .await
    }

    async fn attachment_for(&self, user: UserId, id: &str) -> StoreResult<Option<AttachmentRow>> {
        let id = id.to_owned();
        detached(&self.readers, move |mut c| async move {
            attachments::for_user(&mut c, user, &id).await
        })
        .await
    }

    async fn attachments(&self, ids: &[String]) -> StoreResult<Vec<AttachmentRow>> {
        let ids = ids.to_vec();
        detached(&self.readers, move |mut c| async move {
            attachments::by_ids(&mut c, &ids).await
        })
        .await
    }

    async fn attachment_bytes_of(&self, user: UserId, since: DateTime<Utc>) -> StoreResult<i64> {
        detached(&self.readers, move |mut c| async move {
            attachments::bytes_of(&mut c, user, since).await
        })
        .await
    }

    async fn claim_unattached(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<AttachmentRow>> {
        detached(&self.writer, move |mut c| async move {
            attachments::claim_unattached(&mut c, before, limit).await
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        detached(&self.readers, move |mut c| async move {
            diesel::sql_query("SELECT 1")
                .execute(&mut *c)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::Unavailable(e.into()))
        })
        .await
    }

    fn pool_status(&self) -> (usize, usize, usize) {
        let count = |p: &Pool<Conn>| {
            let s = p.status();
            (s.size.saturating_sub(s.available), s.available, s.max_size)
        };
        let (busy, idle, max) = count(&self.readers);
        if self.shared {
            return (busy, idle, max);
        }
        let (w_busy, w_idle, w_max) = count(&self.writer);
        (busy + w_busy, idle + w_idle, max + w_max)
    }
}
