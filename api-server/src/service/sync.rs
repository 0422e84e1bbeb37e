//! Catch-up: every change visible to a user since a cursor.

use crate::error::{ApiError, ApiResult};
use crate::routes::page_limit;
use crate::state::AppState;
use crate::store::{no_changes, SYNC_NOW};
use shared::ids::UserId;
use shared::wire::SyncResponse;

/// Longest cursor accepted (cursors are opaque but short).
const MAX_CURSOR_LEN: usize = 512;

/// Changes visible to `user` since `since` (absent or empty: from the beginning; [`SYNC_NOW`]:
/// none, and the cursor of the present position), at most `limit` (default and cap
/// `limits.sync_max`).
pub async fn sync(
    state: &AppState,
    user: UserId,
    since: Option<&str>,
    limit: Option<i64>,
) -> ApiResult<SyncResponse> {
    let since = since.filter(|s| !s.is_empty());
    if since.is_some_and(|s| s.len() > MAX_CURSOR_LEN) {
        return Err(ApiError::invalid(
            "since",
            "is not a cursor this server issued",
        ));
    }
    let limit = page_limit(limit, state.limits.sync_max, state.limits.sync_max)?;
    if since == Some(SYNC_NOW) {
        return Ok(no_changes(state.store.sync_position().await?));
    }
    let mut changes = state.store.sync(user, since, limit).await?;
    super::attachments::decorate(state, &mut changes.messages).await?;
    Ok(changes)
}
