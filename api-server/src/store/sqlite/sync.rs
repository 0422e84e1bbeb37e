//! Sync: every change visible to a user after a cursor.
//!
//! The cursor is `s<id>`, the id of the last change handed out (or the newest one seen). Writes
//! are serialized and a change's id is assigned inside the write transaction that commits it, so
//! a change committed later always has a larger id than every change visible now: `id > cursor`
//! never skips one. (PostgreSQL needs transaction ids for this, `postgres::sync`.) The page and
//! the newest id are read in one transaction, so they come from one snapshot.
//!
//! A cursor past the last id the table ever handed out (`sqlite_sequence`: AUTOINCREMENT never
//! reuses an id, even after a delete) was not issued by this database — forged, or kept from a
//! database file since replaced — and is refused (`validation_failed`, field `since`) rather
//! than answering "nothing new" forever; why a bound rather than a MAC is in `postgres::sync`.

use super::changes::{answer, Change};
use super::dialect::Conn;
use super::schema::{changes, members};
use crate::store::{StoreError, StoreResult};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use diesel_async::RunQueryDsl;
use shared::ids::UserId;
use shared::wire::SyncResponse;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = changes, check_for_backend(diesel::sqlite::Sqlite))]
struct ChangeRow {
    id: i64,
    #[diesel(embed)]
    change: Change,
}

/// `s<id>`; PostgreSQL's `p<xid>.<id>` and anything else are refused.
fn parse_cursor(raw: &str) -> StoreResult<i64> {
    let invalid = || StoreError::Invalid("since", "is not a cursor this server issued".into());
    let id = raw.strip_prefix('s').ok_or_else(invalid)?;
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    id.parse::<i64>().map_err(|_| invalid())
}

/// The last id `changes` handed out (`None` before the first).
const LAST_ISSUED_ID: &str = "(SELECT seq FROM sqlite_sequence WHERE name = 'changes')";

/// Refuse a cursor past the last id handed out (see the module doc).
fn check_issued(after: i64, last_id: Option<i64>) -> StoreResult<()> {
    if after > last_id.unwrap_or(0) {
        return Err(StoreError::cursor_beyond_the_log());
    }
    Ok(())
}

fn format_cursor(id: i64) -> String {
    format!("s{id}")
}

/// The log's position now: ids are taken in commit order (one writer at a time), so every
/// later change is above the newest.
pub async fn position(conn: &mut Conn) -> StoreResult<String> {
    let newest: Option<i64> = changes::table
        .select(diesel::dsl::max(changes::id))
        .get_result(conn)
        .await?;
    Ok(format_cursor(newest.unwrap_or(0)))
}

pub async fn since(
    conn: &mut Conn,
    user: UserId,
    cursor: Option<&str>,
    limit: i64,
) -> StoreResult<SyncResponse> {
    let after = cursor.map(parse_cursor).transpose()?.unwrap_or(0);
    read_tx!(conn, async |conn: &mut Conn| page(conn, user, after, limit)
        .await)
    .await
}

async fn page(conn: &mut Conn, user: UserId, after: i64, limit: i64) -> StoreResult<SyncResponse> {
    if after > 0 {
        let last_id: Option<i64> = diesel::select(sql::<Nullable<BigInt>>(LAST_ISSUED_ID))
            .get_result(conn)
            .await?;
        check_issued(after, last_id)?;
    }
    let newest: Option<i64> = changes::table
        .select(diesel::dsl::max(changes::id))
        .get_result(conn)
        .await?;
    let mut rows: Vec<ChangeRow> = changes::table
        .inner_join(
            members::table.on(members::conversation_id
                .eq(changes::conversation_id)
                .and(members::user_id.eq(user.get()))),
        )
        .filter(changes::id.gt(after))
        .order(changes::id.asc())
        .limit(limit + 1)
        .select(ChangeRow::as_select())
        .load(conn)
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match (has_more, rows.last()) {
        (true, Some(last)) => last.id,
        // Everything up to the newest change of this snapshot has been seen.
        _ => after.max(newest.unwrap_or(0)),
    };
    answer(
        conn,
        rows.iter().map(|r| &r.change),
        format_cursor(next),
        has_more,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_cursor(&format_cursor(34)).unwrap(), 34);
        for bad in ["", "34", "s", "s-1", "s+1", "sx", "p12.34"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_past_the_last_id_are_refused() {
        assert!(check_issued(0, None).is_ok());
        assert!(check_issued(7, Some(7)).is_ok());
        assert!(matches!(
            check_issued(8, Some(7)),
            Err(StoreError::Invalid("since", _))
        ));
        assert!(check_issued(1, None).is_err());
    }
}
