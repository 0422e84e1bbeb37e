//! Receipt watermarks: they only ever grow, and never pass the conversation's last seq. The
//! read, the clamp and the update happen in one `BEGIN IMMEDIATE` transaction, so concurrent
//! moves are applied one after the other and each sees the previous one's result.

use super::conversations::require_member;
use super::rows::{now, MemberRow};
use super::schema::{changes, conversations, members};
use super::Conn;
use crate::store::{StoreResult, Watermark, WatermarkOutcome};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::ids::{ConversationId, UserId};

pub async fn move_watermark(
    conn: &mut Conn,
    user: UserId,
    conversation: ConversationId,
    which: Watermark,
    up_to_seq: i64,
) -> StoreResult<WatermarkOutcome> {
    conn.immediate_transaction(async |conn| {
        let id = require_member(conn, user, conversation).await?.id;
        let member = members::table.find((id, user.get()));
        let target = conversations::table
            .find(id)
            .select(conversations::last_seq)
            .first::<i64>(conn)
            .await?
            .min(up_to_seq);
        let current: MemberRow = member.select(MemberRow::as_select()).first(conn).await?;
        // delivered >= read always holds, so moving read moves delivered along.
        let (delivered, read) = match which {
            Watermark::Delivered => (
                current.delivered_up_to_seq.max(target),
                current.read_up_to_seq,
            ),
            Watermark::Read => (
                current.delivered_up_to_seq.max(target),
                current.read_up_to_seq.max(target),
            ),
        };
        let moved = match which {
            Watermark::Delivered => delivered > current.delivered_up_to_seq,
            Watermark::Read => read > current.read_up_to_seq,
        };
        let state = if moved {
            let at = now();
            let row: MemberRow = diesel::update(member)
                .set((
                    members::delivered_up_to_seq.eq(delivered),
                    members::read_up_to_seq.eq(read),
                    members::updated_at.eq(at),
                ))
                .returning(MemberRow::as_returning())
                .get_result(conn)
                .await?;
            diesel::insert_into(changes::table)
                .values((
                    changes::conversation_id.eq(id),
                    changes::kind.eq("receipt"),
                    changes::user_id.eq(user.get()),
                    changes::created_at.eq(at),
                ))
                .execute(conn)
                .await?;
            row.state()
        } else {
            current.state()
        };
        let ids: Vec<i64> = members::table
            .filter(members::conversation_id.eq(id))
            .select(members::user_id)
            .load(conn)
            .await?;
        Ok(WatermarkOutcome {
            state,
            moved,
            members: ids.into_iter().map(UserId).collect(),
        })
    })
    .await
}
