//! Receipt watermarks: they only ever grow, and never pass the conversation's last seq.

use super::conversations::{member_rows, require_member};
use super::dialect::{greatest, now, Conn};
use super::rows::MemberRow;
use super::schema::{changes, conversations, members};
use crate::store::{StoreError, StoreResult, Watermark, WatermarkOutcome};
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
    write_tx!(conn, async |conn: &mut Conn| {
        let id = require_member(conn, user, conversation).await?.id;
        let member = members::table.find((id, user.get()));
        // Clamped: a watermark never passes the last seq.
        let target = conversations::table
            .find(id)
            .select(conversations::last_seq)
            .first::<i64>(conn)
            .await?
            .min(up_to_seq);
        let at = now();
        // The filters are re-checked under the row lock, so concurrent moves only grow it.
        let moved: Option<MemberRow> = match which {
            Watermark::Delivered => {
                diesel::update(member)
                    .filter(members::delivered_up_to_seq.lt(target))
                    .set((
                        members::delivered_up_to_seq.eq(target),
                        members::updated_at.eq(at),
                    ))
                    .returning(MemberRow::as_returning())
                    .get_result(conn)
                    .await
            }
            // delivered >= read always holds, so read < target is the only case to move, and
            // moving read moves delivered along.
            Watermark::Read => {
                diesel::update(member)
                    .filter(members::read_up_to_seq.lt(target))
                    .set((
                        members::read_up_to_seq.eq(target),
                        members::delivered_up_to_seq
                            .eq(greatest(members::delivered_up_to_seq, target)),
                        members::updated_at.eq(at),
                    ))
                    .returning(MemberRow::as_returning())
                    .get_result(conn)
                    .await
            }
        }
        .optional()?;
        let (state, moved) = match moved {
            Some(row) => {
                diesel::insert_into(changes::table)
                    .values((
                        changes::conversation_id.eq(id),
                        changes::kind.eq("receipt"),
                        changes::user_id.eq(user.get()),
                        changes::created_at.eq(at),
                    ))
                    .execute(conn)
                    .await?;
                (row.state(), true)
            }
            None => {
                let row: MemberRow = member.select(MemberRow::as_select()).first(conn).await?;
                (row.state(), false)
            }
        };
        let members = member_rows(conn, id).await?;
        Ok::<_, StoreError>(WatermarkOutcome {
            state,
            moved,
            members: members.iter().map(|m| UserId(m.user_id)).collect(),
        })
    })
    .await
}
