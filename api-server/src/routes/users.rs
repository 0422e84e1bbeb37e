//! Finding people to talk to: user search joined with live presence from the bus.

use super::page_limit;
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::web;
use serde::Deserialize;
use shared::bus::PresenceState;
use shared::domain::SearchText;
use shared::errors::ErrorEnvelope;
use shared::wire::{User, UserWithPresence};
use std::time::Duration;
use utoipa::IntoParams;

/// Default number of users a search answers.
const DEFAULT_LIMIT: i64 = 20;
/// Longest a search waits for presence before answering everyone offline.
const PRESENCE_TIMEOUT: Duration = Duration::from_millis(300);

/// `GET /api/users` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Part of a username or display name (case-insensitive), at most 100 characters, no
    /// control characters. Empty or absent: everyone.
    pub search: Option<String>,
    /// At most this many users (default 20, capped by the server).
    pub limit: Option<i64>,
}

/// Users whose username or display name contains `search`, with their presence.
#[utoipa::path(
    get, path = "/api/users", tag = "users",
    security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching users by username", body = Vec<UserWithPresence>),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
pub async fn search(
    user: AuthUser,
    state: web::Data<AppState>,
    query: super::Query<SearchQuery>,
) -> ApiResult<web::Json<Vec<UserWithPresence>>> {
    let query = query.into_inner();
    let search = SearchText::parse(query.search.as_deref())?;
    let limit = page_limit(query.limit, DEFAULT_LIMIT, state.limits.search_max)?;
    let users = state.store.search_users(search.as_str(), limit).await?;
    let presence = presence_of(&state, &users).await;
    Ok(web::Json(
        users
            .into_iter()
            .zip(presence)
            .map(|(user, p)| UserWithPresence {
                user,
                online: p.online,
                last_seen: p.last_seen,
            })
            .collect(),
    ))
}

/// Presence of each user in order; everyone offline and never seen when the bus cannot answer
/// within [`PRESENCE_TIMEOUT`] (presence is a hint, the search itself still succeeds).
async fn presence_of(state: &AppState, users: &[User]) -> Vec<PresenceState> {
    let unknown = PresenceState {
        online: false,
        last_seen: None,
    };
    if users.is_empty() {
        return Vec::new();
    }
    let ids: Vec<_> = users.iter().map(|u| u.id).collect();
    let answer = tokio::time::timeout(PRESENCE_TIMEOUT, state.bus.presence(&ids)).await;
    let Ok(answer) = answer else {
        tracing::warn!("reading presence timed out; answering everyone offline");
        return vec![unknown; ids.len()];
    };
    match answer {
        Ok(states) if states.len() == ids.len() => states,
        Ok(states) => {
            tracing::error!(
                asked = ids.len(),
                answered = states.len(),
                "the bus answered presence for a different number of users"
            );
            vec![unknown; ids.len()]
        }
        Err(e) => {
            tracing::warn!(error = ?e, "reading presence failed; answering everyone offline");
            vec![unknown; ids.len()]
        }
    }
}
