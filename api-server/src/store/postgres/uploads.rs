//! The group commit's uploads on PostgreSQL: locked, then linked in one statement. A link is an
//! `UPDATE … WHERE message_id IS NULL` in the message's transaction and a garbage claim a
//! `DELETE … WHERE message_id IS NULL`: whichever comes second waits for the first's row lock,
//! then re-checks its condition on the new row version, so a linked upload is never collected
//! and a collected one never linked.

use super::dialect::Conn;
use super::rows::AttachmentRow;
use super::schema::attachments;
use crate::store::StoreResult;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

/// The uploads `ids`, locked until the transaction ends (a batch checks them, then links them).
pub async fn lock(conn: &mut Conn, ids: &[String]) -> StoreResult<Vec<AttachmentRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(attachments::table
        .filter(attachments::id.eq_any(ids))
        .order(attachments::id)
        .for_update()
        .select(AttachmentRow::as_select())
        .load(conn)
        .await?)
}

/// Link each inserted message of a batch to its upload (checked and locked by [`lock`]), in one
/// statement.
pub async fn link_inserted(
    conn: &mut Conn,
    batch: &[crate::store::NewMessage],
    inserted: &std::collections::HashMap<usize, super::rows::MessageRow>,
) -> StoreResult<()> {
    let (ids, messages): (Vec<&str>, Vec<i64>) = inserted
        .iter()
        .filter_map(|(&i, row)| Some((batch[i].attachment_id.as_deref()?, row.id)))
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    let linked = diesel::sql_query(
        "UPDATE attachments AS a SET message_id = v.message_id \
         FROM unnest($1::text[], $2::bigint[]) AS v(id, message_id) \
         WHERE a.id = v.id AND a.message_id IS NULL",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&ids)
    .bind::<diesel::sql_types::Array<BigInt>, _>(&messages)
    .execute(conn)
    .await?;
    if linked != ids.len() {
        return Err(anyhow::anyhow!("linked {linked} of {} checked uploads", ids.len()).into());
    }
    Ok(())
}
