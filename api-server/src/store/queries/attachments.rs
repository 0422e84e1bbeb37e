//! Uploads' records. A link (in the message's transaction) and a garbage claim never both take
//! one upload: on PostgreSQL the second waits for the first's row lock and re-checks
//! `message_id IS NULL` (`postgres/uploads.rs`), on SQLite writes are serialized.

use super::dialect::{lock_user, Conn, SUM_BYTES};
use super::rows::AttachmentRow;
use super::schema::{attachments, members, messages};
use crate::store::rows::attach_refusal;
use crate::store::{StoreError, StoreResult, UploadQuota};
use chrono::{DateTime, Utc};
use diesel::dsl::{exists, sql};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use shared::ids::UserId;

/// Record the upload `row` unless it would take its owner past `quota`
/// ([`StoreError::QuotaExceeded`]): the check and the insert are one transaction holding the
/// owner's row, so concurrent uploads cannot all pass it.
pub async fn create(conn: &mut Conn, row: &AttachmentRow, quota: UploadQuota) -> StoreResult<()> {
    write_tx!(conn, async |conn: &mut Conn| {
        lock_user(conn, row.owner_id).await?;
        let used = bytes_of(conn, UserId(row.owner_id), quota.since).await?;
        if used.saturating_add(row.bytes) > quota.bytes {
            return Err(StoreError::QuotaExceeded);
        }
        insert(conn, row).await
    })
    .await
}

async fn insert(conn: &mut Conn, row: &AttachmentRow) -> StoreResult<()> {
    diesel::insert_into(attachments::table)
        .values((
            attachments::id.eq(&row.id),
            attachments::owner_id.eq(row.owner_id),
            attachments::kind.eq(&row.kind),
            attachments::mime.eq(&row.mime),
            attachments::bytes.eq(row.bytes),
            attachments::sha256.eq(&row.sha256),
            attachments::width.eq(row.width),
            attachments::height.eq(row.height),
            attachments::duration_ms.eq(row.duration_ms),
            attachments::created_at.eq(row.created_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The upload if `user` uploaded it or is a member of the conversation of its message.
pub async fn for_user(
    conn: &mut Conn,
    user: UserId,
    id: &str,
) -> StoreResult<Option<AttachmentRow>> {
    let member_of_its_conversation = exists(
        messages::table
            .inner_join(members::table.on(members::conversation_id.eq(messages::conversation_id)))
            .filter(messages::id.nullable().eq(attachments::message_id))
            .filter(members::user_id.eq(user.get())),
    );
    Ok(attachments::table
        .filter(attachments::id.eq(id))
        .filter(
            attachments::owner_id
                .eq(user.get())
                .or(member_of_its_conversation),
        )
        .select(AttachmentRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn by_ids(conn: &mut Conn, ids: &[String]) -> StoreResult<Vec<AttachmentRow>> {
    Ok(attachments::table
        .filter(attachments::id.eq_any(ids))
        .select(AttachmentRow::as_select())
        .load(conn)
        .await?)
}

/// Bytes of `user`'s uploads made at or after `since`.
pub async fn bytes_of(conn: &mut Conn, user: UserId, since: DateTime<Utc>) -> StoreResult<i64> {
    Ok(attachments::table
        .filter(attachments::owner_id.eq(user.get()))
        .filter(attachments::created_at.ge(since))
        .select(sql::<BigInt>(SUM_BYTES))
        .first(conn)
        .await?)
}

/// Link the upload `id` of `sender`, of `kind` and not yet attached, to `message`; a refusal
/// naming why otherwise. Run inside the message's transaction (see the backend's module
/// docs for why a concurrent garbage claim cannot take a linked upload).
pub async fn link(
    conn: &mut Conn,
    id: &str,
    sender: UserId,
    kind: &str,
    message: i64,
) -> StoreResult<()> {
    let linked = diesel::update(
        attachments::table
            .filter(attachments::id.eq(id))
            .filter(attachments::owner_id.eq(sender.get()))
            .filter(attachments::kind.eq(kind))
            .filter(attachments::message_id.is_null()),
    )
    .set(attachments::message_id.eq(message))
    .execute(conn)
    .await?;
    if linked == 1 {
        return Ok(());
    }
    let found = by_ids(conn, &[id.to_owned()]).await?.into_iter().next();
    Err(attach_refusal(found.as_ref(), sender, kind))
}

/// Delete (and return) at most `limit` uploads created before `before` that no message
/// references: the claim is the delete, so two replicas never both handle one.
pub async fn claim_unattached(
    conn: &mut Conn,
    before: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<AttachmentRow>> {
    let ids: Vec<String> = attachments::table
        .filter(attachments::message_id.is_null())
        .filter(attachments::created_at.lt(before))
        .select(attachments::id)
        .limit(limit)
        .load(conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Re-checked row by row as it deletes: an upload linked meanwhile is not deleted.
    Ok(diesel::delete(
        attachments::table
            .filter(attachments::id.eq_any(&ids))
            .filter(attachments::message_id.is_null()),
    )
    .returning(AttachmentRow::as_returning())
    .get_results(conn)
    .await?)
}
