//! Sessions as the relay asks about them.

use crate::error::ApiResult;
use crate::state::AppState;
use shared::ids::UserId;

/// Whether `jti` is an active (issued, not revoked, not expired) session of `user`.
pub async fn session_active(state: &AppState, user: UserId, jti: &str) -> ApiResult<bool> {
    Ok(state.store.session_active_for(user, jti).await?)
}
