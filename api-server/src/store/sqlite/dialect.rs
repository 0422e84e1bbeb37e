//! What the shared queries (`store/queries/`) need from SQLite and is not the same on
//! PostgreSQL: the connection, the clock, text search, `GREATEST` (`max`), the transactions, and
//! the seq turn (none: writes are serialized).

use super::schema::users;
use crate::store::rows::like_pattern;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::sqlite::Sqlite;
use diesel::SqliteConnection;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

pub type Conn = SyncConnectionWrapper<SqliteConnection>;
pub type Backend = Sqlite;
/// The SQL type of the timestamp columns (UTC text).
pub type Instant = diesel::sql_types::TimestamptzSqlite;

/// The application clock at PostgreSQL's precision (microseconds): timestamps are written by the
/// store rather than by SQLite's `CURRENT_TIMESTAMP`, which only has seconds.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The SQL of the sum of a user's upload `bytes`.
pub const SUM_BYTES: &str = "COALESCE(SUM(bytes), 0)";

diesel::define_sql_function! {
    /// The greater of two integers (SQLite's scalar `max`).
    #[sql_name = "max"]
    fn greatest(a: BigInt, b: BigInt) -> BigInt;
}

diesel::define_sql_function! {
    /// Unicode lower-casing (SQLite's own `lower` only folds ASCII), registered per connection,
    /// so that search is case-insensitive as PostgreSQL's ILIKE is.
    fn parley_lower(text: Text) -> Text;
}

/// Users whose username or display name contains `query`, case-insensitively as PostgreSQL's
/// ILIKE: both sides lower-cased with Unicode rules.
pub fn user_matches(
    query: &str,
) -> Box<dyn BoxableExpression<users::table, Sqlite, SqlType = Bool>> {
    let pattern = like_pattern(&query.trim().to_lowercase());
    Box::new(
        parley_lower(users::username)
            .like(pattern.clone())
            .escape('\\')
            .or(parley_lower(users::display_name).like(pattern).escape('\\')),
    )
}

/// Nothing to hold: a write transaction holds SQLite's write lock, so the quota check and
/// insert of an upload run alone.
pub async fn lock_user(_conn: &mut Conn, _user: i64) -> QueryResult<()> {
    Ok(())
}

/// Nothing to take: a send's write transaction holds SQLite's write lock, so seqs are allocated
/// and committed one send at a time.
pub async fn take_seq_turn(_conn: &mut Conn, _conversation: i64) -> QueryResult<()> {
    Ok(())
}

/// Whether `conn` is inside a transaction (a nested one is a savepoint).
pub fn in_transaction(conn: &mut Conn) -> bool {
    use diesel_async::{AsyncConnection, TransactionManager};
    let status =
        <Conn as AsyncConnection>::TransactionManager::transaction_manager_status_mut(conn);
    matches!(status.transaction_depth(), Ok(Some(_)))
}

/// `write_tx!(conn, async |conn| …)`: `BEGIN IMMEDIATE`, which takes the write lock at once (a
/// deferred transaction that reads first could fail to upgrade), or a savepoint when nested.
macro_rules! write_tx {
    ($conn:expr, $f:expr) => {
        async {
            let conn: &mut $crate::store::sqlite::dialect::Conn = $conn;
            let f = $f;
            if $crate::store::sqlite::dialect::in_transaction(conn) {
                diesel_async::AsyncConnection::transaction(conn, f).await
            } else {
                conn.immediate_transaction(f).await
            }
        }
    };
}

/// `read_tx!(conn, async |conn| …)`: a read transaction, one snapshot for its queries (WAL).
macro_rules! read_tx {
    ($conn:expr, $f:expr) => {
        diesel_async::AsyncConnection::transaction($conn, $f)
    };
}
