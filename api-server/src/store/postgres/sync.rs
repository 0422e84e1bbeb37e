//! Sync: every change visible to a user after a cursor, gap-free under concurrent commits.
//!
//! The cursor is the `(xid, id)` of the last change handed out, where `xid` is the id of the
//! transaction that wrote the change. A page only returns changes below a *horizon*: the oldest
//! transaction of this database still running when the page's snapshot was taken (or the
//! snapshot's `xmax` when none is). Every transaction below the horizon has finished, so no
//! change can later commit behind a cursor already handed out. (A bigserial or timestamp cursor
//! can: ids are taken before commit, and transactions commit out of order.)
//!
//! Transactions of *other* databases on the same server are left out of the horizon: their xids
//! are listed from `pg_stat_activity` *before* the snapshot is taken. One that cannot be placed
//! that way (it got its xid after the listing, or the role may not see it) is counted in, which
//! only delays a change to the next sync, never loses it; and since such an xid is younger than
//! the request, everything committed before the sync began is still returned (a client sees its
//! own writes). Looking them up *after* the snapshot would not do: a short transaction of
//! another database can end in between, be counted in, and hold back older committed changes.
//! A write transaction left open in this database holds sync back until it ends; live events
//! keep flowing meanwhile.
//!
//! # Cursors the server never issued
//! A cursor is refused (`validation_failed`, field `since`) unless it parses *and* lies within
//! what this database could have handed out: its xid at most the `xmax` of the page's snapshot
//! (the next xid to be assigned; every horizon ever issued is at most the `xmax` of its own
//! snapshot, and `xmax` never goes back) and its id at most the last value of the `changes` id
//! sequence (ids are never reused, even after a delete). A forged cursor, or one kept from
//! another cluster (a restore, a re-`initdb`), would otherwise answer "nothing new" forever while
//! the client misses everything; refused, the client starts over from the beginning. The check
//! is a bound, not a signature: a made-up cursor *below* the bound is still a position in the
//! log, and sync from it answers the caller's own changes after it, so nothing is gained by
//! forging one. A MAC (HMAC of the cursor with the JWT secret) would refuse those too, but would
//! also accept a genuine cursor from before a restore, the case that loses messages; the bound
//! needs no key, no new dependency, and keeps every cursor issued before it was added working
//! (the format is unchanged).

use super::changes::{answer, Change};
use super::dialect::Conn;
use super::schema::changes;
use crate::store::{StoreError, StoreResult};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt};
use diesel_async::RunQueryDsl;
use shared::ids::UserId;
use shared::wire::SyncResponse;

#[derive(Debug, QueryableByName)]
#[diesel(table_name = changes, check_for_backend(diesel::pg::Pg))]
struct ChangeRow {
    id: i64,
    xid: i64,
    #[diesel(embed)]
    change: Change,
}

/// A page: the user's changes after the cursor `($2, $3)` and below the horizon `$4`, at most
/// `$5`, in the log's order. Each of the user's conversations gives at most `$5` of its own
/// first, read from `changes_conversation_xid` from the cursor on (the row comparison bounds
/// the index range), and only those are sorted. A plain join read every change of each of the
/// user's conversations below the horizon for every page, the cursor only a filter: with
/// 10 M changes in the log, a member of a conversation of 10⁶ messages paid ~0.5 s of
/// PostgreSQL for a sync that found nothing new, and a member of 300 conversations back after
/// a month 57 s for the catch-up.
const PAGE: &str = "SELECT c.id, c.xid, c.conversation_id, c.kind, c.message_id, c.user_id
  FROM members m
  CROSS JOIN LATERAL (
    SELECT changes.id, changes.xid, changes.conversation_id, changes.kind, changes.message_id,
           changes.user_id
      FROM changes
     WHERE changes.conversation_id = m.conversation_id
       AND (changes.xid, changes.id) > ($2, $3)
       AND changes.xid < $4
     ORDER BY changes.xid, changes.id
     LIMIT $5) c
 WHERE m.user_id = $1
 ORDER BY c.xid, c.id
 LIMIT $5";

/// The (32-bit) xids of the transactions other databases of this server are running now.
const OTHER_DATABASES_XIDS: &str = "COALESCE(
    (SELECT array_agg(backend_xid::text::bigint)
       FROM pg_stat_activity
      WHERE backend_xid IS NOT NULL
        AND datid IS NOT NULL
        AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())),
    '{}')";

/// The horizon of the current snapshot (see the module doc), as a bigint, leaving out the xids
/// bound after it (those of other databases).
const HORIZON_BEFORE: &str = "(SELECT COALESCE(
    (SELECT min(x::text::bigint)
       FROM pg_snapshot_xip(snap.s) AS x
      WHERE NOT (xid(x)::text::bigint = ANY(";
const HORIZON_AFTER: &str = "))),
    pg_snapshot_xmax(snap.s)::text::bigint)
  FROM (SELECT pg_current_snapshot() AS s) AS snap)";

/// The bound of the cursors this database could have issued: the `xmax` of the current
/// snapshot, and the last id the `changes` sequence handed out (0 before the first).
const ISSUED_XID_BOUND: &str = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint";
const ISSUED_ID_BOUND: &str =
    "COALESCE(pg_sequence_last_value(pg_get_serial_sequence('changes', 'id')::regclass), 0)";

/// Refuse a cursor past `(max_xid, max_id)` (see the module doc).
fn check_issued((xid, id): (i64, i64), (max_xid, max_id): (i64, i64)) -> StoreResult<()> {
    if xid > max_xid || id > max_id {
        return Err(StoreError::cursor_beyond_the_log());
    }
    Ok(())
}

/// `p<xid>.<id>`.
fn parse_cursor(raw: &str) -> StoreResult<(i64, i64)> {
    let invalid = || StoreError::Invalid("since", "is not a cursor this server issued".into());
    let (xid, id) = raw
        .strip_prefix('p')
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(invalid)?;
    let xid = xid.parse::<i64>().map_err(|_| invalid())?;
    let id = id.parse::<i64>().map_err(|_| invalid())?;
    if xid < 0 || id < 0 {
        return Err(invalid());
    }
    Ok((xid, id))
}

fn format_cursor((xid, id): (i64, i64)) -> String {
    format!("p{xid}.{id}")
}

pub async fn since(
    conn: &mut Conn,
    user: UserId,
    cursor: Option<&str>,
    limit: i64,
) -> StoreResult<SyncResponse> {
    let cursor = cursor.map(parse_cursor).transpose()?;
    let others = other_databases_xids(conn).await?;
    // One snapshot for the horizon, the page and its answer.
    read_tx!(conn, async |conn: &mut Conn| page(
        conn, user, cursor, &others, limit
    )
    .await)
    .await
}

/// The log's position now: every change below the horizon has committed, and what commits
/// later is at or above it, whatever a list read afterwards shows.
pub async fn position(conn: &mut Conn) -> StoreResult<String> {
    let others = other_databases_xids(conn).await?;
    read_tx!(conn, async |conn: &mut Conn| {
        Ok(format_cursor((horizon(conn, &others).await?, 0)))
    })
    .await
}

/// Taken before the snapshot: see the module doc.
async fn other_databases_xids(conn: &mut Conn) -> StoreResult<Vec<i64>> {
    Ok(diesel::select(sql::<Array<BigInt>>(OTHER_DATABASES_XIDS))
        .get_result(conn)
        .await?)
}

/// The horizon of the current snapshot (see the module doc).
async fn horizon(conn: &mut Conn, others: &[i64]) -> StoreResult<i64> {
    Ok(diesel::select(
        sql::<BigInt>(HORIZON_BEFORE)
            .bind::<Array<BigInt>, _>(others)
            .sql(HORIZON_AFTER),
    )
    .get_result(conn)
    .await?)
}

async fn page(
    conn: &mut Conn,
    user: UserId,
    cursor: Option<(i64, i64)>,
    others: &[i64],
    limit: i64,
) -> StoreResult<SyncResponse> {
    let (cx, ci) = cursor.unwrap_or((0, 0));
    let horizon = horizon(conn, others).await?;
    if let Some(cursor) = cursor {
        let bound: (i64, i64) = diesel::select((
            sql::<BigInt>(ISSUED_XID_BOUND),
            sql::<BigInt>(ISSUED_ID_BOUND),
        ))
        .get_result(conn)
        .await?;
        check_issued(cursor, bound)?;
    }
    let mut rows: Vec<ChangeRow> = diesel::sql_query(PAGE)
        .bind::<BigInt, _>(user.get())
        .bind::<BigInt, _>(cx)
        .bind::<BigInt, _>(ci)
        .bind::<BigInt, _>(horizon)
        .bind::<BigInt, _>(limit + 1)
        .load(conn)
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match (has_more, rows.last()) {
        (true, Some(last)) => (last.xid, last.id),
        // Everything below the horizon has been seen: later changes all have xid >= it.
        _ => (cx, ci).max((horizon, 0)),
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
        assert_eq!(parse_cursor(&format_cursor((12, 34))).unwrap(), (12, 34));
        for bad in ["", "12.34", "p12", "p-1.2", "px.y", "s5"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_past_the_bound_are_refused() {
        let bound = (100, 7);
        for ok in [(0, 0), (99, 7), (100, 0), (100, 7)] {
            assert!(check_issued(ok, bound).is_ok(), "{ok:?}");
        }
        for past in [(101, 0), (5, 8), (999_999_999, 0)] {
            assert!(
                matches!(
                    check_issued(past, bound),
                    Err(StoreError::Invalid("since", _))
                ),
                "{past:?}"
            );
        }
    }
}
