//! Opening the SQLite database: where it is (`DATABASE_URL`), connections set up alike (pragmas,
//! the registered `parley_lower`, migrations), their pools, and running a query off the request.

use super::dialect::{self, Conn};
use crate::store::{StoreError, StoreResult};
use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, ConnectionResult, SqliteConnection};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures::FutureExt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Set on every connection. `busy_timeout` first, so that switching to WAL waits for a lock too.
const PRAGMAS: &str = "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; \
                       PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;";

/// Where the database lives, from `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Memory,
    File(PathBuf),
}

impl Location {
    /// `:memory:`, `sqlite::memory:`, `sqlite://path`, `sqlite:path` or a plain path.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = rest.split_once('?').map_or(rest, |(path, _)| path);
        match path {
            "" => anyhow::bail!("DATABASE_URL names no SQLite file"),
            ":memory:" => Ok(Self::Memory),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

pub async fn get(pool: &Pool<Conn>) -> StoreResult<Object<Conn>> {
    pool.get()
        .await
        .map_err(|e| StoreError::Unavailable(anyhow::anyhow!("SQLite pool: {e}")))
}

/// A connection set up as every one of ours is (see [`PRAGMAS`]), migrated when asked.
pub fn establish(target: &str, migrate: bool) -> ConnectionResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(target)?;
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ConnectionError::BadConnection(format!("{what} on {target}: {e}"))
    };
    conn.batch_execute(PRAGMAS)
        .map_err(|e| failed("setting the pragmas", &e))?;
    dialect::parley_lower_utils::register_impl(&mut conn, |text: String| text.to_lowercase())
        .map_err(|e| failed("registering parley_lower", &e))?;
    if migrate {
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| failed("running migrations", &e))?;
        if !applied.is_empty() {
            tracing::info!(applied = applied.len(), "database migrations applied");
        }
    }
    Ok(conn)
}

pub fn pool(
    target: &str,
    size: usize,
    migrate: bool,
    wait: Duration,
) -> anyhow::Result<Pool<Conn>> {
    let mut config = ManagerConfig::<Conn>::default();
    config.custom_setup = Box::new(move |target: &str| {
        let target = target.to_owned();
        async move {
            let conn = tokio::task::spawn_blocking(move || establish(&target, migrate))
                .await
                .map_err(|e| ConnectionError::BadConnection(e.to_string()))??;
            Ok(SyncConnectionWrapper::new(conn))
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(target, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the SQLite pool")
}

/// Check a connection out of `pool` and run `op` on it, in a task of its own, so that both run
/// to the end even when the request is dropped: a cancelled query of the sync wrapper (also the
/// pool's recycle ping during the checkout) blocks in place, which panics on actix's
/// current-thread workers, and a cancelled transaction would stay open.
pub async fn detached<T, Fut>(
    pool: &Pool<Conn>,
    op: impl FnOnce(Object<Conn>) -> Fut + Send + 'static,
) -> StoreResult<T>
where
    Fut: Future<Output = StoreResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    tokio::spawn(async move { op(get(&pool).await?).await })
        .await
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("the SQLite task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::Location;
    use std::path::PathBuf;

    #[test]
    fn urls_name_a_file_or_memory() {
        let file = |p: &str| Location::File(PathBuf::from(p));
        assert_eq!(Location::parse(":memory:").unwrap(), Location::Memory);
        assert_eq!(
            Location::parse("sqlite::memory:").unwrap(),
            Location::Memory
        );
        assert_eq!(
            Location::parse("sqlite:///var/x.db").unwrap(),
            file("/var/x.db")
        );
        assert_eq!(
            Location::parse("sqlite://data/x.db?mode=rwc").unwrap(),
            file("data/x.db")
        );
        assert_eq!(
            Location::parse("data/parley.db").unwrap(),
            file("data/parley.db")
        );
        assert!(Location::parse("sqlite://").is_err());
    }
}
