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

use super::conversations::members_of;
use super::rows::{ConversationRow, MemberRow, MessageRow};
use super::schema::{changes, conversations, members, messages};
use super::Conn;
use crate::store::{StoreError, StoreResult};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use diesel_async::{AsyncConnection, RunQueryDsl};
use shared::ids::UserId;
use shared::wire::{Message, SyncResponse};
use std::collections::BTreeSet;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = changes, check_for_backend(diesel::sqlite::Sqlite))]
struct ChangeRow {
    id: i64,
    conversation_id: i64,
    kind: String,
    message_id: Option<i64>,
    user_id: Option<i64>,
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

pub async fn since(
    conn: &mut Conn,
    user: UserId,
    cursor: Option<&str>,
    limit: i64,
) -> StoreResult<SyncResponse> {
    let after = cursor.map(parse_cursor).transpose()?.unwrap_or(0);
    conn.transaction(async |conn| page(conn, user, after, limit).await)
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

    let message_ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.kind == "message")
        .filter_map(|r| r.message_id)
        .collect();
    let receipt_keys: BTreeSet<(i64, i64)> = rows
        .iter()
        .filter(|r| r.kind == "receipt")
        .filter_map(|r| r.user_id.map(|u| (r.conversation_id, u)))
        .collect();
    let conversation_ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.kind == "conversation")
        .map(|r| r.conversation_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut message_rows: Vec<MessageRow> = if message_ids.is_empty() {
        Vec::new()
    } else {
        messages::table
            .filter(messages::id.eq_any(&message_ids))
            .select(MessageRow::as_select())
            .load(conn)
            .await?
    };
    message_rows.sort_by_key(|m| (m.conversation_id, m.seq));
    let touched: Vec<i64> = message_rows
        .iter()
        .map(|m| m.conversation_id)
        .chain(receipt_keys.iter().map(|(c, _)| *c))
        .chain(conversation_ids.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let all_members = members_of(conn, &touched).await?;
    let member_rows: Vec<MemberRow> = all_members.iter().map(|(m, _)| m.clone()).collect();
    let messages = message_rows
        .into_iter()
        .map(|m| m.into_wire(&member_rows))
        .collect::<anyhow::Result<Vec<Message>>>()?;
    let receipts = member_rows
        .iter()
        .filter(|m| receipt_keys.contains(&(m.conversation_id, m.user_id)))
        .map(MemberRow::state)
        .collect();
    let conversations = conversations::table
        .filter(conversations::id.eq_any(&conversation_ids))
        .order(conversations::id)
        .select(ConversationRow::as_select())
        .load::<ConversationRow>(conn)
        .await?
        .into_iter()
        .map(|c| c.into_wire(&all_members))
        .collect();
    Ok(SyncResponse {
        messages,
        receipts,
        conversations,
        next_cursor: format_cursor(next),
        has_more,
    })
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
