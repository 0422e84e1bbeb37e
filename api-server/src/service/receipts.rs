//! Receipts: move a member's `delivered` or `read` watermark in a conversation.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::Watermark;
use shared::events::BusEvent;
use shared::ids::{ConversationId, UserId};
use shared::wire::MemberState;

/// Move `user`'s `which` watermark up to `up_to_seq` (clamped to the last seq; it never goes
/// back) and, when it moved, publish `receipts_moved` to those it concerns (the member and the
/// senders of the messages it passed; see [`crate::store::WatermarkOutcome::audience`]). The
/// state afterwards.
#[tracing::instrument(skip(state), fields(user_id = %user, conversation_id = %conversation))]
pub async fn mark(
    state: &AppState,
    user: UserId,
    conversation: ConversationId,
    which: Watermark,
    up_to_seq: i64,
) -> ApiResult<MemberState> {
    if up_to_seq < 0 {
        return Err(ApiError::invalid("upToSeq", "must not be negative"));
    }
    let outcome = state
        .store
        .move_watermark(user, conversation, which, up_to_seq)
        .await?;
    if outcome.moved {
        state.publisher.publish(
            &outcome.audience,
            BusEvent::ReceiptsMoved {
                state: outcome.state.clone(),
            },
        );
    }
    Ok(outcome.state)
}
