//! What the shared queries (`store/queries/`) need from PostgreSQL and is not the same on SQLite:
//! the connection, the clock, text search, `GREATEST`, the transactions, and the seq turn a
//! send takes before it writes.

use super::schema::users;
use crate::store::rows::like_pattern;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

pub type Conn = diesel_async::AsyncPgConnection;
pub type Backend = Pg;
/// The SQL type of the timestamp columns.
pub type Instant = diesel::sql_types::Timestamptz;

/// The database's clock: the transaction's start time, as the columns' `DEFAULT now()`.
pub fn now() -> diesel::dsl::now {
    diesel::dsl::now
}

/// The SQL of the sum of a user's upload `bytes`, as a BIGINT (`SUM(bigint)` is a NUMERIC here).
pub const SUM_BYTES: &str = "COALESCE(SUM(bytes), 0)::BIGINT";

diesel::define_sql_function! {
    /// The greater of two bigints.
    fn greatest(a: BigInt, b: BigInt) -> BigInt;
}

/// Users whose username or display name contains `query`, case-insensitively (ILIKE).
pub fn user_matches(query: &str) -> Box<dyn BoxableExpression<users::table, Pg, SqlType = Bool>> {
    let pattern = like_pattern(query.trim());
    Box::new(
        users::username
            .ilike(pattern.clone())
            .or(users::display_name.ilike(pattern)),
    )
}

/// Hold `user`'s row until the transaction ends, so that the quota check and insert of one of
/// their uploads are not interleaved with another's.
pub async fn lock_user(conn: &mut Conn, user: i64) -> QueryResult<()> {
    let locked = users::table.find(user).select(users::id).for_update();
    diesel_async::RunQueryDsl::execute(locked, conn)
        .await
        .map(drop)
}

/// Take `conversation`'s seq turn at the start of a send's write transaction, before it writes
/// anything (see `batch::take_seq_turns`).
pub async fn take_seq_turn(conn: &mut Conn, conversation: i64) -> QueryResult<()> {
    super::batch::take_seq_turns(conn, &[conversation]).await
}

/// `write_tx!(conn, async |conn| …)`: a read-committed transaction (a savepoint when nested).
/// Row locks and `ON CONFLICT` make the writes safe against concurrent ones.
macro_rules! write_tx {
    ($conn:expr, $f:expr) => {
        diesel_async::AsyncConnection::transaction($conn, $f)
    };
}

/// `read_tx!(conn, async |conn| …)`: a read-only snapshot (REPEATABLE READ), so the queries of
/// one answer agree with each other.
macro_rules! read_tx {
    ($conn:expr, $f:expr) => {
        $conn
            .build_transaction()
            .repeatable_read()
            .read_only()
            .run($f)
    };
}
