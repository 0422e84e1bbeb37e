//! Sessions as the relay asks about them.

use crate::error::ApiResult;
use crate::state::AppState;
use crate::store::{Store, StoreResult};
use chrono::{DateTime, Utc};
use shared::ids::UserId;
use shared::port::SessionRef;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often each API replica deletes expired sessions.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Sessions deleted per statement.
const PRUNE_BATCH: i64 = 1000;

/// Delete every session that expired before `expired_before` (a few statements of
/// [`PRUNE_BATCH`]); how many went. Nothing needs them: a missing session reads as inactive.
pub async fn prune(store: &dyn Store, expired_before: DateTime<Utc>) -> StoreResult<usize> {
    let mut pruned = 0;
    loop {
        let deleted = store.prune_sessions(expired_before, PRUNE_BATCH).await?;
        pruned += deleted;
        if (deleted as i64) < PRUNE_BATCH {
            return Ok(pruned);
        }
    }
}

/// Prune expired sessions every [`PRUNE_EVERY`], for as long as the store is in use: without
/// it the table keeps a row per login for ever (a soak made 46 a minute). Rows are kept a day
/// past their expiry (the JWT leeway, and a record of recent logins for whoever looks).
pub fn spawn_prune(store: &Arc<dyn Store>) {
    super::every(PRUNE_EVERY, store, |store| async move {
        match prune(&*store, Utc::now() - chrono::Duration::days(1)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "expired sessions deleted"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning expired sessions failed"),
        }
    });
}

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
