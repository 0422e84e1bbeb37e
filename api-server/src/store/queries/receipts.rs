//! Receipt watermarks: they only ever grow, and never pass the conversation's last seq. A move
//! is told to those whose view it changes: the member's own devices and the senders of the
//! messages it passed (their ticks), not every member of a large group.

use super::conversations::require_member;
use super::dialect::{greatest, now, Conn};
use super::rows::MemberRow;
use super::schema::{changes, conversations, members, messages};
use crate::store::{StoreError, StoreResult, Watermark, WatermarkOutcome};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::ids::{ConversationId, UserId};

/// A move passing more messages than this is told to every member: finding the senders would
/// read that many rows, and a member catching up on that much concerns most senders anyway.
const AUDIENCE_SCAN: i64 = 1_000;

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
        // Where the watermark was: the messages it passes lie above. A concurrent move may
        // raise it before ours takes the row lock; reading it lower only widens the audience.
        let before: MemberRow = member.select(MemberRow::as_select()).first(conn).await?;
        let from = match which {
            Watermark::Delivered => before.delivered_up_to_seq,
            Watermark::Read => before.read_up_to_seq,
        };
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
        let (state, audience) = match moved {
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
                (row.state(), Some(audience(conn, id, user, from, target).await?))
            }
            None => (before.state(), None),
        };
        Ok::<_, StoreError>(WatermarkOutcome {
            state,
            moved: audience.is_some(),
            audience: audience.unwrap_or_default(),
        })
    })
    .await
}

/// Who is told that `user`'s watermark in conversation `id` moved from `from` to `to`: `user`
/// (their other devices) and the members who sent a message in `(from, to]`, whose statuses it
/// changes; every member when that is more than [`AUDIENCE_SCAN`] messages. Members only: a
/// sender who has left is not told. The member list is read only in that last case: a
/// receipt in a large group reads the messages it passes, not every member.
async fn audience(
    conn: &mut Conn,
    id: i64,
    user: UserId,
    from: i64,
    to: i64,
) -> StoreResult<Vec<UserId>> {
    let members_of_it = members::table
        .filter(members::conversation_id.eq(id))
        .select(members::user_id);
    let mut told: Vec<i64> = if to - from > AUDIENCE_SCAN {
        members_of_it.load(conn).await?
    } else {
        messages::table
            .filter(messages::conversation_id.eq(id))
            .filter(messages::seq.gt(from))
            .filter(messages::seq.le(to))
            .filter(messages::sender_id.eq_any(members_of_it))
            .select(messages::sender_id)
            .distinct()
            .load(conn)
            .await?
    };
    told.push(user.get());
    told.sort_unstable();
    told.dedup();
    Ok(told.into_iter().map(UserId).collect())
}
