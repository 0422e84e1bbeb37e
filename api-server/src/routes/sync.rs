//! Catch-up: every change visible to the caller since a cursor.

use super::page_limit;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::web;
use serde::Deserialize;
use shared::errors::ErrorEnvelope;
use shared::wire::SyncResponse;
use utoipa::IntoParams;

/// Longest cursor accepted (cursors are opaque but short).
const MAX_CURSOR_LEN: usize = 512;

/// `GET /api/sync` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// The `nextCursor` of the previous answer; absent: from the beginning.
    pub since: Option<String>,
    /// At most this many changes (default and cap set by the server).
    pub limit: Option<i64>,
}

/// Changes since `since`. Call again at once with `nextCursor` while `hasMore`.
#[utoipa::path(
    get, path = "/api/sync", tag = "sync",
    security(("bearer" = [])),
    params(SyncQuery),
    responses(
        (status = 200, description = "The changes and the next cursor", body = SyncResponse),
        (status = 400, description = "`validation_failed`: a bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn sync(
    user: AuthUser,
    state: web::Data<AppState>,
    query: web::Query<SyncQuery>,
) -> ApiResult<web::Json<SyncResponse>> {
    let query = query.into_inner();
    let since = query.since.as_deref().filter(|s| !s.is_empty());
    if since.is_some_and(|s| s.len() > MAX_CURSOR_LEN) {
        return Err(ApiError::invalid(
            "since",
            "is not a cursor this server issued",
        ));
    }
    let limit = page_limit(query.limit, state.limits.sync_max, state.limits.sync_max)?;
    Ok(web::Json(
        state.store.sync(user.user_id, since, limit).await?,
    ))
}
