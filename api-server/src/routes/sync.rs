//! Catch-up: every change visible to the caller since a cursor.

use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::service;
use crate::state::AppState;
use actix_web::web;
use serde::Deserialize;
use shared::errors::ErrorEnvelope;
use shared::wire::SyncResponse;
use utoipa::IntoParams;

/// `GET /api/sync` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// The `nextCursor` of the previous answer; absent: from the beginning; `now`: no change,
    /// the cursor of the present position (a new device's first).
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
    query: super::Query<SyncQuery>,
) -> ApiResult<web::Json<SyncResponse>> {
    let query = query.into_inner();
    let answer =
        service::sync::sync(&state, user.user_id, query.since.as_deref(), query.limit).await?;
    Ok(web::Json(answer))
}
