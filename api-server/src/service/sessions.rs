//! Sessions as the relay asks about them.

use crate::error::ApiResult;
use crate::state::AppState;
use shared::ids::UserId;
use shared::port::SessionRef;
use std::collections::HashSet;

/// Whether `jti` is an active (issued, not revoked, not expired) session of `user`.
pub async fn session_active(state: &AppState, user: UserId, jti: &str) -> ApiResult<bool> {
    Ok(state.store.session_active_for(user, jti).await?)
}

/// For each `(user, jti)`, whether it is an active session of that user (one query).
pub async fn sessions_active(state: &AppState, sessions: &[SessionRef]) -> ApiResult<Vec<bool>> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let jtis: Vec<String> = sessions.iter().map(|s| s.jti.clone()).collect();
    let active: HashSet<(String, UserId)> = state
        .store
        .active_sessions(&jtis)
        .await?
        .into_iter()
        .collect();
    Ok(sessions
        .iter()
        .map(|s| active.contains(&(s.jti.clone(), s.user)))
        .collect())
}
