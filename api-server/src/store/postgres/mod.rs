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
    AttachmentRow, ConversationList, CreateOutcome, ListQuery, NewMessage, NewUser, PageQuery,
    SendOutcome, SessionMessage, Store, StoreError, StoreResult, UploadQuota, Watermark,
    WatermarkOutcome,
};
use crate::settings::DatabaseSettings;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::{ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use shared::ids::{ConversationId, UserId};
use shared::port::ConversationMembers;
use shared::wire::{Conversation, MessagePage, SyncResponse, User};
use std::time::Duration;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// How long a request waits for a pooled connection before answering `service_unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long start-up waits for PostgreSQL to answer a connection: a server that accepts it and
/// never answers (hung, or something else on that port) fails start-up instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    /// `database.query_timeout_secs`: see [`on_conn!`].
    query_timeout: Duration,
}

/// Run `$query`, an expression using the connection `$conn`, on a pooled connection within the
/// store's query timeout. Past it the request gets `StoreError::Unavailable` (503, retryable)
/// and the connection is closed instead of going back to the pool: its query may still be
/// running, or a transaction may be open on it, so it is not safe to use again. Closing it makes
/// PostgreSQL roll back whatever it had open once it notices. A store operation that committed
/// just before its timeout is answered as failed; clients retry with the same `clientMsgId` and
/// get the stored message, as after any lost answer.
macro_rules! on_conn {
    ($store:expr, |$conn:ident| $query:expr) => {{
        let mut pooled = $store.conn().await?;
        let $conn: &mut AsyncPgConnection = &mut pooled;
        match tokio::time::timeout($store.query_timeout, $query).await {
            Ok(result) => result,
            Err(_) => Err($store.abandon(pooled)),
        }
    }};
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
        Ok(Self {
            pool,
            query_timeout: Duration::from_secs(settings.query_timeout_secs),
        })
    }

    async fn conn(&self) -> StoreResult<Object<AsyncPgConnection>> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(anyhow::anyhow!("PostgreSQL pool: {e}")))
    }

    /// Close a connection whose operation outlived the query timeout (see [`on_conn!`]).
    fn abandon(&self, conn: Object<AsyncPgConnection>) -> StoreError {
        drop(Object::take(conn));
        StoreError::Unavailable(anyhow::anyhow!(
            "PostgreSQL did not answer within {} s (database.query_timeout_secs); \
             its connection was closed",
            self.query_timeout.as_secs()
        ))
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
                // Another replica created it at the same time: PostgreSQL says so, or (when
                // both got past its own check) fails the catalog's unique index.
                Err(DieselError::DatabaseError(kind, info))
                    if info.message().contains("already exists")
                        || matches!(kind, DatabaseErrorKind::UniqueViolation) =>
                {
                    Ok(())
                }
                Err(e) => Err(e).context("creating the database"),
            }
        }
        Err(e) => Err(e).context("connecting to PostgreSQL (DATABASE_URL)"),
    }
}

/// The advisory lock key migrations hold (`'parley'` in ASCII): another replica's wait.
const MIGRATION_LOCK: i64 = 0x7061_726c_6579;

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
            // One replica at a time (replicas starting together on a new database raced to
            // create the same tables); the lock goes with the connection.
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .context("waiting for another replica's migrations")?;
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
        on_conn!(self, |c| users::create(c, &new))
    }

    async fn credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        on_conn!(self, |c| users::credentials(c, username))
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        on_conn!(self, |c| users::by_id(c, id))
    }

    async fn search_users(&self, query: &str, limit: i64) -> StoreResult<Vec<User>> {
        on_conn!(self, |c| users::search(c, query, limit))
    }

    async fn contacts(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        on_conn!(self, |c| users::contacts(c, user))
    }

    async fn create_session(
        &self,
        jti: &str,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        on_conn!(self, |c| users::create_session(c, jti, user, expires_at))
    }

    async fn revoke_session(&self, jti: &str) -> StoreResult<()> {
        on_conn!(self, |c| users::revoke_session(c, jti))
    }

    async fn prune_sessions(
        &self,
        expired_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<usize> {
        on_conn!(self, |c| users::prune_sessions(c, expired_before, limit))
    }

    async fn session_active(&self, jti: &str) -> StoreResult<bool> {
        on_conn!(self, |c| users::session_active(c, jti))
    }

    async fn active_sessions(&self, jtis: &[String]) -> StoreResult<Vec<(String, UserId)>> {
        on_conn!(self, |c| users::active_sessions(c, jtis))
    }

    async fn memberships(&self, user: UserId) -> StoreResult<Vec<ConversationMembers>> {
        on_conn!(self, |c| users::memberships(c, user))
    }

    async fn create_conversation(
        &self,
        creator: UserId,
        members: &[UserId],
        title: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        on_conn!(self, |c| conversations::create(c, creator, members, title))
    }

    async fn list_conversations(
        &self,
        user: UserId,
        page: ListQuery,
    ) -> StoreResult<ConversationList> {
        on_conn!(self, |c| conversations::list(c, user, page))
    }

    async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        on_conn!(self, |c| conversations::for_member(c, user, id))
    }

    async fn send_message(&self, new: NewMessage) -> StoreResult<SendOutcome> {
        on_conn!(self, |c| messages::send(c, &new))
    }

    async fn send_batch(
        &self,
        batch: Vec<SessionMessage>,
    ) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
        on_conn!(self, |c| batch::send(c, batch))
    }

    async fn messages(
        &self,
        user: UserId,
        conversation: ConversationId,
        page: PageQuery,
    ) -> StoreResult<MessagePage> {
        on_conn!(self, |c| messages::page(c, user, conversation, page))
    }

    async fn move_watermark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Watermark,
        up_to_seq: i64,
    ) -> StoreResult<WatermarkOutcome> {
        on_conn!(self, |c| receipts::move_watermark(
            c,
            user,
            conversation,
            which,
            up_to_seq,
        ))
    }

    async fn sync(
        &self,
        user: UserId,
        cursor: Option<&str>,
        limit: i64,
    ) -> StoreResult<SyncResponse> {
        on_conn!(self, |c| sync::since(c, user, cursor, limit))
    }

    async fn sync_position(&self) -> StoreResult<String> {
        on_conn!(self, |c| sync::position(c))
    }

    async fn create_attachment(&self, row: AttachmentRow, quota: UploadQuota) -> StoreResult<()> {
        on_conn!(self, |c| attachments::create(c, &row, quota))
    }

    async fn attachment_for(&self, user: UserId, id: &str) -> StoreResult<Option<AttachmentRow>> {
        on_conn!(self, |c| attachments::for_user(c, user, id))
    }

    async fn attachments(&self, ids: &[String]) -> StoreResult<Vec<AttachmentRow>> {
        on_conn!(self, |c| attachments::by_ids(c, ids))
    }

    async fn attachment_bytes_of(&self, user: UserId, since: DateTime<Utc>) -> StoreResult<i64> {
        on_conn!(self, |c| attachments::bytes_of(c, user, since))
    }

    async fn claim_unattached(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<AttachmentRow>> {
        on_conn!(self, |c| attachments::claim_unattached(c, before, limit))
    }

    async fn ping(&self) -> StoreResult<()> {
        on_conn!(self, |c| async {
            diesel::sql_query("SELECT 1")
                .execute(c)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::Unavailable(e.into()))
        })
    }

    fn close_idle(&self, idle_for: Duration) -> usize {
        // Only idle connections are in the pool's slots; dropping one closes it.
        self.pool
            .retain(|_, metrics| metrics.last_used() < idle_for)
            .removed
            .len()
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
