//! `GET /metrics`: the Prometheus text exposition.

use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Request counts and latency by route, pool usage, bus failures, messages stored, and the
/// standard `process_*` metrics (CPU, memory, file descriptors, start time; Linux only).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.metrics.render(state.store.pool_status());
    body.push_str(&shared::process_metrics::ProcessMetrics::read().render());
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(body)
}
