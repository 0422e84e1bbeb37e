//! Receipt watermarks: they only ever grow, and never pass the conversation's last seq.

use super::conversations::{member_ids, require_member};
use super::rows::MemberRow;
use super::schema::{changes, members};
use crate::store::{StoreResult, Watermark, WatermarkOutcome};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::ids::{ConversationId, UserId};

diesel::define_sql_function! {
    /// PostgreSQL's GREATEST of two bigints.
    fn greatest(a: BigInt, b: BigInt) -> BigInt;
}

pub async fn move_watermark(
    conn: &mut AsyncPgConnection,
    user: UserId,
    conversation: ConversationId,
    which: Watermark,
    up_to_seq: i64,
) -> StoreResult<WatermarkOutcome> {
    let id = require_member(conn, user, conversation).await?.id;
    let member = members::table.find((id, user.get()));
    let moved: Option<MemberRow> = conn
        .transaction(async |conn| {
            // Clamp under the same statement: a watermark never passes the last seq.
            let target = super::schema::conversations::table
                .find(id)
                .select(super::schema::conversations::last_seq)
                .first::<i64>(conn)
                .await?
                .min(up_to_seq);
            // The filters are re-checked under the row lock, so concurrent moves only grow it.
            let updated: Option<MemberRow> = match which {
                Watermark::Delivered => {
                    diesel::update(member)
                        .filter(members::delivered_up_to_seq.lt(target))
                        .set((
                            members::delivered_up_to_seq.eq(target),
                            members::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(MemberRow::as_returning())
                        .get_result(conn)
                        .await
                }
                // delivered >= read always holds, so read < target is the only case to move.
                Watermark::Read => {
                    diesel::update(member)
                        .filter(members::read_up_to_seq.lt(target))
                        .set((
                            members::read_up_to_seq.eq(target),
                            members::delivered_up_to_seq
                                .eq(greatest(members::delivered_up_to_seq, target)),
                            members::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(MemberRow::as_returning())
                        .get_result(conn)
                        .await
                }
            }
            .optional()?;
            if updated.is_some() {
                diesel::insert_into(changes::table)
                    .values((
                        changes::conversation_id.eq(id),
                        changes::kind.eq("receipt"),
                        changes::user_id.eq(user.get()),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, crate::store::StoreError>(updated)
        })
        .await?;
    let (state, moved) = match moved {
        Some(row) => (row.state(), true),
        None => {
            let row: MemberRow = member.select(MemberRow::as_select()).first(conn).await?;
            (row.state(), false)
        }
    };
    Ok(WatermarkOutcome {
        state,
        moved,
        members: member_ids(conn, id).await?,
    })
}
