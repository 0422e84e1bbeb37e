//! Conversations and their members.
//!
//! A pair's direct conversation is unique by `direct_key`: its insert is `ON CONFLICT DO
//! NOTHING`, and one that did nothing finds the pair's conversation the other writer committed
//! (on PostgreSQL the insert waits for that writer; on SQLite writes are serialized anyway).

use super::dialect::{now, Conn, Instant};
use super::rows::{ConversationRow, MemberRow, MessageRow, UserRow};
use super::schema::{changes, conversations, members, messages, users};
use crate::store::rows::direct_key;
use crate::store::{
    ConversationList, CreateOutcome, ListCursor, ListQuery, StoreError, StoreResult,
};
use diesel::prelude::*;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool};
use diesel_async::RunQueryDsl;
use shared::ids::{ConversationId, UserId};
use shared::wire::{Conversation, ConversationSummary};
use std::collections::HashMap;
use std::ops::Range;

/// Members (with their users) of the given conversations.
pub async fn members_of(conn: &mut Conn, ids: &[i64]) -> StoreResult<Vec<(MemberRow, UserRow)>> {
    Ok(members::table
        .inner_join(users::table)
        .filter(members::conversation_id.eq_any(ids))
        .order((members::conversation_id, members::user_id))
        .select((MemberRow::as_select(), UserRow::as_select()))
        .load(conn)
        .await?)
}

/// Where the rows of conversation `id` are among rows ordered by conversation, as
/// [`members_of`] loads them: a binary search, where picking them out of every row for each of
/// a user's thousands of conversations took seconds.
pub(super) fn rows_of(all: &[(MemberRow, UserRow)], id: i64) -> Range<usize> {
    let start = all.partition_point(|(m, _)| m.conversation_id < id);
    let len = all[start..].partition_point(|(m, _)| m.conversation_id == id);
    start..start + len
}

/// Member rows of one conversation, by user id.
pub async fn member_rows(conn: &mut Conn, id: i64) -> StoreResult<Vec<MemberRow>> {
    Ok(members::table
        .filter(members::conversation_id.eq(id))
        .order(members::user_id)
        .select(MemberRow::as_select())
        .load(conn)
        .await?)
}

/// The conversation row if `user` is a member, else [`StoreError::ConversationNotFound`].
pub async fn require_member(
    conn: &mut Conn,
    user: UserId,
    id: ConversationId,
) -> StoreResult<ConversationRow> {
    conversations::table
        .inner_join(members::table)
        .filter(conversations::id.eq(id.get()))
        .filter(members::user_id.eq(user.get()))
        .select(ConversationRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::ConversationNotFound)
}

/// One conversation with its members.
pub async fn load(conn: &mut Conn, id: i64) -> StoreResult<Conversation> {
    let row: ConversationRow = conversations::table
        .find(id)
        .select(ConversationRow::as_select())
        .first(conn)
        .await?;
    let members = members_of(conn, &[id]).await?;
    Ok(row.into_wire(&members))
}

pub async fn for_member(
    conn: &mut Conn,
    user: UserId,
    id: ConversationId,
) -> StoreResult<Option<Conversation>> {
    match require_member(conn, user, id).await {
        Ok(row) => {
            let members = members_of(conn, &[row.id]).await?;
            Ok(Some(row.into_wire(&members)))
        }
        Err(StoreError::ConversationNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn find_direct(conn: &mut Conn, key: &str) -> StoreResult<Option<i64>> {
    Ok(conversations::table
        .filter(conversations::direct_key.eq(key))
        .select(conversations::id)
        .first(conn)
        .await
        .optional()?)
}

/// Insert a conversation, its members and its change row, in the caller's write transaction.
/// `None` when the direct conversation was created concurrently (the caller looks it up).
async fn insert(
    conn: &mut Conn,
    ids: &[i64],
    title: Option<&str>,
    direct: Option<&str>,
) -> StoreResult<Option<i64>> {
    let kind = if direct.is_some() { "direct" } else { "group" };
    let at = now();
    let inserted: Option<i64> = diesel::insert_into(conversations::table)
        .values((
            conversations::kind.eq(kind),
            conversations::title.eq(title),
            conversations::direct_key.eq(direct),
            conversations::created_at.eq(at),
        ))
        .on_conflict(conversations::direct_key)
        .do_nothing()
        .returning(conversations::id)
        .get_result(conn)
        .await
        .optional()?;
    let Some(id) = inserted else {
        return Ok(None);
    };
    // One statement for any number of members (a multi-row VALUES is PostgreSQL-only here).
    let member_rows = users::table.filter(users::id.eq_any(ids)).select((
        id.into_sql::<BigInt>(),
        users::id,
        at.into_sql::<Instant>(),
        at.into_sql::<Instant>(),
    ));
    diesel::insert_into(members::table)
        .values(member_rows)
        .into_columns((
            members::conversation_id,
            members::user_id,
            members::joined_at,
            members::updated_at,
        ))
        .execute(conn)
        .await?;
    diesel::insert_into(changes::table)
        .values((
            changes::conversation_id.eq(id),
            changes::kind.eq("conversation"),
            changes::created_at.eq(at),
        ))
        .execute(conn)
        .await?;
    Ok(Some(id))
}

/// Find or create the direct conversation of a pair (both must exist). Returns its id and
/// whether it was created.
pub async fn find_or_create_direct(
    conn: &mut Conn,
    a: UserId,
    b: UserId,
) -> StoreResult<(i64, bool)> {
    let key = direct_key(a, b);
    if let Some(id) = find_direct(conn, &key).await? {
        return Ok((id, false));
    }
    let ids = [a.get(), b.get()];
    let created = write_tx!(conn, async |conn: &mut Conn| {
        insert(conn, &ids, None, Some(&key)).await
    })
    .await?;
    match created {
        Some(id) => Ok((id, true)),
        None => find_direct(conn, &key)
            .await?
            .map(|id| (id, false))
            .ok_or_else(|| anyhow::anyhow!("direct conversation {key} vanished").into()),
    }
}

async fn require_users(conn: &mut Conn, ids: &[i64]) -> StoreResult<()> {
    let found: i64 = users::table
        .filter(users::id.eq_any(ids))
        .count()
        .get_result(conn)
        .await?;
    if found as usize == ids.len() {
        Ok(())
    } else {
        Err(StoreError::UserNotFound)
    }
}

pub async fn create(
    conn: &mut Conn,
    creator: UserId,
    requested: &[UserId],
    title: Option<String>,
) -> StoreResult<CreateOutcome> {
    let mut ids: Vec<i64> = requested.iter().map(|u| u.get()).collect();
    ids.push(creator.get());
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 {
        return Err(StoreError::Invalid(
            "memberIds",
            "must name at least one other user".into(),
        ));
    }
    let title = title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    write_tx!(conn, async |conn: &mut Conn| {
        require_users(conn, &ids).await?;
        let (id, created) = if ids.len() == 2 && title.is_none() {
            find_or_create_direct(conn, UserId(ids[0]), UserId(ids[1])).await?
        } else {
            let id = insert(conn, &ids, title.as_deref(), None)
                .await?
                .ok_or_else(|| anyhow::anyhow!("a group conversation insert did nothing"))?;
            (id, true)
        };
        Ok(CreateOutcome {
            conversation: load(conn, id).await?,
            created,
        })
    })
    .await
}

pub async fn list(conn: &mut Conn, user: UserId, page: ListQuery) -> StoreResult<ConversationList> {
    // One snapshot for the four queries: read apart, a message stored between them could be
    // counted unread but not be the last message, and a client adding the live messages above
    // `lastMessage` would count it twice.
    read_tx!(conn, async |conn: &mut Conn| list_in_snapshot(conn, user, page)
        .await)
    .await
}

/// A conversation's place in the list: its last message's time, else its creation's.
const ACTIVE_AT: &str = "COALESCE(conversations.last_message_at, conversations.created_at)";

async fn list_in_snapshot(
    conn: &mut Conn,
    user: UserId,
    page: ListQuery,
) -> StoreResult<ConversationList> {
    let mut query = conversations::table
        .inner_join(members::table)
        .filter(members::user_id.eq(user.get()))
        .order((
            diesel::dsl::sql::<Instant>(ACTIVE_AT).desc(),
            conversations::id.desc(),
        ))
        .select((
            ConversationRow::as_select(),
            diesel::dsl::sql::<Instant>(ACTIVE_AT),
        ))
        // One more than the page: whether there is a next one.
        .limit(page.limit + 1)
        .into_boxed();
    if let Some(ListCursor { active_at, id }) = page.before {
        // A row comparison, on both backends: older, or as old with a lower id.
        query = query.filter(
            diesel::dsl::sql::<Bool>(&format!("({ACTIVE_AT}, conversations.id) < ("))
                .bind::<Instant, _>(active_at)
                .sql(", ")
                .bind::<BigInt, _>(id)
                .sql(")"),
        );
    }
    let mut rows: Vec<(ConversationRow, DateTime<Utc>)> = query.load(conn).await?;
    let next = if rows.len() as i64 > page.limit {
        rows.truncate(page.limit as usize);
        rows.last().map(|(row, active_at)| ListCursor {
            active_at: *active_at,
            id: row.id,
        })
    } else {
        None
    };
    let rows: Vec<ConversationRow> = rows.into_iter().map(|(row, _)| row).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let all_members = members_of(conn, &ids).await?;
    let last: Vec<MessageRow> = messages::table
        .inner_join(
            conversations::table.on(conversations::id
                .eq(messages::conversation_id)
                .and(conversations::last_seq.eq(messages::seq))),
        )
        .filter(conversations::id.eq_any(&ids))
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    // A count per membership, over the messages above its read watermark: the range read from
    // the `(conversation_id, seq)` index starts there. Joined to the members and filtered, every
    // message of each conversation was read: 1.5 s of PostgreSQL for a member of a conversation
    // of 10⁶ messages, also one who had read them all.
    let unread: Vec<(i64, i64)> = members::table
        .filter(members::user_id.eq(user.get()))
        .filter(members::conversation_id.eq_any(&ids))
        .select((
            members::conversation_id,
            diesel::dsl::sql::<BigInt>(
                "(SELECT count(*) FROM messages \
                   WHERE messages.conversation_id = members.conversation_id \
                     AND messages.seq > members.read_up_to_seq \
                     AND messages.sender_id <> ",
            )
            .bind::<BigInt, _>(user.get())
            .sql(")"),
        ))
        .load(conn)
        .await?;
    let unread: HashMap<i64, i64> = unread.into_iter().collect();
    let member_rows: Vec<MemberRow> = all_members.iter().map(|(m, _)| m.clone()).collect();
    let mut last: HashMap<i64, MessageRow> =
        last.into_iter().map(|m| (m.conversation_id, m)).collect();
    let conversations = rows
        .into_iter()
        .map(|row| {
            let id = row.id;
            let rows = rows_of(&all_members, id);
            let last_message = last
                .remove(&id)
                .map(|m| m.into_wire(&member_rows[rows.clone()]))
                .transpose()?;
            Ok(ConversationSummary {
                conversation: row.into_wire(&all_members[rows]),
                last_message,
                unread_count: unread.get(&id).copied().unwrap_or(0),
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(ConversationList {
        conversations,
        next,
    })
}
