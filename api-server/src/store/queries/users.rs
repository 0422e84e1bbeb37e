//! Users and sessions.

use super::dialect::{now, user_matches, Backend, Conn};
use super::rows::UserRow;
use super::schema::{conversations, members, sessions, users};
use crate::store::{NewUser, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use shared::ids::UserId;
use shared::port::ConversationMembers;
use shared::wire::User;

pub async fn create(conn: &mut Conn, new: &NewUser) -> StoreResult<User> {
    let row: UserRow = diesel::insert_into(users::table)
        .values((
            users::username.eq(&new.username),
            users::display_name.eq(&new.display_name),
            users::password_hash.eq(&new.password_hash),
            users::created_at.eq(now()),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::UsernameTaken
            }
            other => other.into(),
        })?;
    Ok(row.into())
}

pub async fn credentials(conn: &mut Conn, username: &str) -> StoreResult<Option<(User, String)>> {
    let found: Option<(UserRow, String)> = users::table
        .filter(users::username.eq(username))
        .select((UserRow::as_select(), users::password_hash))
        .first(conn)
        .await
        .optional()?;
    Ok(found.map(|(u, hash)| (u.into(), hash)))
}

pub async fn by_id(conn: &mut Conn, id: UserId) -> StoreResult<Option<User>> {
    let found: Option<UserRow> = users::table
        .find(id.get())
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(found.map(Into::into))
}

/// Users whose username or display name contains `query`, case-insensitively, by username.
pub async fn search(conn: &mut Conn, query: &str, limit: i64) -> StoreResult<Vec<User>> {
    let rows: Vec<UserRow> = users::table
        .filter(user_matches(query))
        .order(users::username.asc())
        .limit(limit)
        .select(UserRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn contacts(conn: &mut Conn, user: UserId) -> StoreResult<Vec<UserId>> {
    let (mine, theirs) = diesel::alias!(members as mine, members as theirs);
    let ids: Vec<i64> = mine
        .inner_join(
            theirs.on(theirs
                .field(members::conversation_id)
                .eq(mine.field(members::conversation_id))),
        )
        .filter(mine.field(members::user_id).eq(user.get()))
        .filter(theirs.field(members::user_id).ne(user.get()))
        .select(theirs.field(members::user_id))
        .distinct()
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(UserId).collect())
}

pub async fn create_session(
    conn: &mut Conn,
    jti: &str,
    user: UserId,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::jti.eq(jti),
            sessions::user_id.eq(user.get()),
            sessions::created_at.eq(now()),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn revoke_session(conn: &mut Conn, jti: &str) -> StoreResult<()> {
    diesel::update(sessions::table.find(jti))
        .filter(sessions::revoked_at.is_null())
        .set(sessions::revoked_at.eq(now()))
        .execute(conn)
        .await?;
    Ok(())
}

/// Delete at most `limit` sessions that expired before `expired_before`; how many went. A
/// missing session reads as inactive, as an expired one does.
pub async fn prune_sessions(
    conn: &mut Conn,
    expired_before: DateTime<Utc>,
    limit: i64,
) -> StoreResult<usize> {
    let expired: Vec<String> = sessions::table
        .filter(sessions::expires_at.lt(expired_before))
        .select(sessions::jti)
        .limit(limit)
        .load(conn)
        .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let deleted = diesel::delete(sessions::table.filter(sessions::jti.eq_any(&expired)))
        .execute(conn)
        .await?;
    Ok(deleted)
}

pub async fn session_active(conn: &mut Conn, jti: &str) -> StoreResult<bool> {
    let found: Option<i64> = sessions::table
        .find(jti)
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now()))
        .select(sessions::user_id)
        .first(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

pub async fn active_sessions(
    conn: &mut Conn,
    jtis: &[String],
) -> StoreResult<Vec<(String, UserId)>> {
    let found: Vec<(String, i64)> = active_among(jtis).load(conn).await?;
    Ok(found.into_iter().map(|(j, u)| (j, UserId(u))).collect())
}

/// The query of [`active_sessions`], `(jti, user id)` rows, for a caller that runs it on a
/// connection of its own choosing (PostgreSQL's group commit pipelines it).
pub fn active_among(jtis: &[String]) -> sessions::BoxedQuery<'_, Backend, (Text, BigInt)> {
    sessions::table
        .filter(sessions::jti.eq_any(jtis))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now()))
        .select((sessions::jti, sessions::user_id))
        .into_boxed()
}

/// Every conversation of `user` with its members and whether it is a direct one, in one query.
pub async fn memberships(conn: &mut Conn, user: UserId) -> StoreResult<Vec<ConversationMembers>> {
    let (mine, theirs) = diesel::alias!(members as mine, members as theirs);
    let rows: Vec<(i64, i64, bool)> = mine
        .inner_join(
            theirs.on(theirs
                .field(members::conversation_id)
                .eq(mine.field(members::conversation_id))),
        )
        .inner_join(
            conversations::table
                .on(conversations::id.eq(mine.field(members::conversation_id))),
        )
        .filter(mine.field(members::user_id).eq(user.get()))
        .select((
            theirs.field(members::conversation_id),
            theirs.field(members::user_id),
            conversations::direct_key.is_not_null(),
        ))
        .order((
            theirs.field(members::conversation_id),
            theirs.field(members::user_id),
        ))
        .load(conn)
        .await?;
    Ok(crate::store::rows::group_members(rows))
}
