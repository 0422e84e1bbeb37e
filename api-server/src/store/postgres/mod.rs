//! The PostgreSQL store (diesel + diesel-async over a deadpool pool): the system of record of the
//! split deployment. Each submodule holds the queries of one area as functions taking a
//! connection, so they compose inside one transaction; most are written once for both backends
//! (`store/queries/`), and only what differs is here: the [`dialect`] (clock, text search,
//! transactions, the seq turn), the sync horizon ([`sync`]), and the group commit ([`batch`]).

// `queries!()` loads the files of `store/queries/` here and in the other backend, on purpose.
#![allow(clippy::duplicate_mod)]

#[macro_use]
mod dialect;
mod batch;
mod schema;
mod sync;
mod uploads;

// The queries written once for both backends (see `store`'s module doc).
queries!();

use super::{
    AttachmentRow, CreateOutcome, NewMessage, NewUser, PageQuery, SendOutcome, SessionMessage,
    Store, StoreError, StoreResult, Watermark, WatermarkOutcome,
};
use crate::settings::DatabaseSettings;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::result::Error as DieselError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::{ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use shared::ids::{ConversationId, UserId};
use shared::port::ConversationMembers;
use shared::wire::{Conversation, ConversationSummary, MessagePage, SyncResponse, User};
use std::time::Duration;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// How long a request waits for a pooled connection before answering `service_unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long start-up waits for PostgreSQL to answer a connection: a server that accepts it and
/// never answers (hung, or something else on that port) fails start-up instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
}

impl PgStore {
    /// Open the pool, creating the database first when allowed and missing, and run the
    /// embedded migrations.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let url = settings.url.clone();
        reach(&url, settings.create_if_missing).await?;
        run_migrations(&url).await?;
        // A pooled connection is handed out again without a `SELECT 1` round trip first (the
        // default `Verified` recycling cost a statement — a transaction in PostgreSQL's own
        // counts — per checkout, 3–4 per stored message at low rates). A connection whose
        // server went away is closed, and `Fast` drops closed connections; one broken in
        // between fails its statement with a retryable error, like a mid-query failure.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .context("building the PostgreSQL pool")?;
        Ok(Self { pool })
    }

    async fn conn(&self) -> StoreResult<Object<AsyncPgConnection>> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(anyhow::anyhow!("PostgreSQL pool: {e}")))
    }
}

/// The database name of a `postgres://…/name?…` URL, and the same URL pointing at `postgres`.
fn split_database_url(url: &str) -> Option<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://")? + 3;
    let slash = base[scheme_end..].rfind('/')? + scheme_end;
    let name = &base[slash + 1..];
    if name.is_empty() {
        return None;
    }
    let admin = match query {
        Some(q) => format!("{}/postgres?{q}", &base[..slash]),
        None => format!("{}/postgres", &base[..slash]),
    };
    Some((name.to_owned(), admin))
}

/// A connection to `url` within [`CONNECT_TIMEOUT`].
async fn establish(url: &str) -> anyhow::Result<diesel::ConnectionResult<AsyncPgConnection>> {
    tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "connecting to PostgreSQL (DATABASE_URL): no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })
}

/// Check that PostgreSQL answers at `url`, creating its database first when `create` allows
/// and it is missing.
async fn reach(url: &str, create: bool) -> anyhow::Result<()> {
    match establish(url).await? {
        Ok(_) => Ok(()),
        Err(e) if create && e.to_string().contains("does not exist") => {
            let (name, admin_url) =
                split_database_url(url).context("DATABASE_URL names no database to create")?;
            anyhow::ensure!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "refusing to create a database named {name:?}: use letters, digits, '_' or '-'"
            );
            let mut admin = establish(&admin_url)
                .await?
                .context("connecting to the `postgres` database to create ours")?;
            let created = diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await;
            match created {
                Ok(_) => {
                    tracing::info!(database = %name, "created the database");
                    Ok(())
                }
                // Another replica created it at the same time.
                Err(DieselError::DatabaseError(_, info))
                    if info.message().contains("already exists") =>
                {
                    Ok(())
                }
                Err(e) => Err(e).context("creating the database"),
            }
        }
        Err(e) => Err(e).context("connecting to PostgreSQL (DATABASE_URL)"),
    }
}

/// Run pending migrations on a dedicated thread (the migration harness is synchronous). The
/// thread answers through a channel rather than being joined, so a service stopped meanwhile
/// does not wait for it.
async fn run_migrations(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let migrate = || -> anyhow::Result<usize> {
            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                    .context("connecting to PostgreSQL to migrate")?;
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
            Ok(applied.len())
        };
        let _ = answer.send(migrate());
    });
    let applied = answered
        .await
        .map_err(|_| anyhow::anyhow!("the migration thread panicked"))??;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        users::create(&mut *self.conn().await?, &new).await
    }

    async fn credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        users::credentials(&mut *self.conn().await?, username).await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        users::by_id(&mut *self.conn().await?, id).await
    }

    async fn search_users(&self, query: &str, limit: i64) -> StoreResult<Vec<User>> {
        users::search(&mut *self.conn().await?, query, limit).await
    }

    async fn contacts(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        users::contacts(&mut *self.conn().await?, user).await
    }

    async fn create_session(
        &self,
        jti: &str,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        users::create_session(&mut *self.conn().await?, jti, user, expires_at).await
    }

    async fn revoke_session(&self, jti: &str) -> StoreResult<()> {
        users::revoke_session(&mut *self.conn().await?, jti).await
    }

    async fn session_active(&self, jti: &str) -> StoreResult<bool> {
        users::session_active(&mut *self.conn().await?, jti).await
    }

    async fn active_sessions(&self, jtis: &[String]) -> StoreResult<Vec<(String, UserId)>> {
        users::active_sessions(&mut *self.conn().await?, jtis).await
    }

    async fn memberships(&self, user: UserId) -> StoreResult<Vec<ConversationMembers>> {
        users::memberships(&mut *self.conn().await?, user).await
    }

    async fn create_conversation(
        &self,
        creator: UserId,
        members: &[UserId],
        title: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        conversations::create(&mut *self.conn().await?, creator, members, title).await
    }

    async fn list_conversations(&self, user: UserId) -> StoreResult<Vec<ConversationSummary>> {
        conversations::list(&mut *self.conn().await?, user).await
    }

    async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        conversations::for_member(&mut *self.conn().await?, user, id).await
    }

    async fn send_message(&self, new: NewMessage) -> StoreResult<SendOutcome> {
        messages::send(&mut *self.conn().await?, &new).await
    }

    async fn send_batch(
        &self,
        batch: Vec<SessionMessage>,
    ) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
        batch::send(&mut *self.conn().await?, batch).await
    }

    async fn messages(
        &self,
        user: UserId,
        conversation: ConversationId,
        page: PageQuery,
    ) -> StoreResult<MessagePage> {
        messages::page(&mut *self.conn().await?, user, conversation, page).await
    }

    async fn move_watermark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Watermark,
        up_to_seq: i64,
    ) -> StoreResult<WatermarkOutcome> {
        receipts::move_watermark(
            &mut *self.conn().await?,
            user,
            conversation,
            which,
            up_to_seq,
        )
        .await
    }

    async fn sync(
        &self,
        user: UserId,
        cursor: Option<&str>,
        limit: i64,
    ) -> StoreResult<SyncResponse> {
        sync::since(&mut *self.conn().await?, user, cursor, limit).await
    }

    async fn create_attachment(&self, row: AttachmentRow) -> StoreResult<()> {
        attachments::create(&mut *self.conn().await?, &row).await
    }

    async fn attachment_for(&self, user: UserId, id: &str) -> StoreResult<Option<AttachmentRow>> {
        attachments::for_user(&mut *self.conn().await?, user, id).await
    }

    async fn attachments(&self, ids: &[String]) -> StoreResult<Vec<AttachmentRow>> {
        attachments::by_ids(&mut *self.conn().await?, ids).await
    }

    async fn attachment_bytes_of(&self, user: UserId) -> StoreResult<i64> {
        attachments::bytes_of(&mut *self.conn().await?, user).await
    }

    async fn claim_unattached(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<AttachmentRow>> {
        attachments::claim_unattached(&mut *self.conn().await?, before, limit).await
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.into()))
    }

    fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        let idle = s.available;
        (s.size.saturating_sub(idle), idle, s.max_size)
    }
}

#[cfg(test)]
mod tests {
    use super::split_database_url;

    #[test]
    fn the_admin_url_keeps_host_credentials_and_options() {
        let (name, admin) =
            split_database_url("postgres://u:p@h:5432/parley?sslmode=disable").unwrap();
        assert_eq!(name, "parley");
        assert_eq!(admin, "postgres://u:p@h:5432/postgres?sslmode=disable");
        assert!(split_database_url("postgres://h:5432/").is_none());
    }
}
