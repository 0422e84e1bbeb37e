//! Probes: liveness (`/health`, the process answers) and readiness (`/ready`, its database
//! answers; the bus is reported but does not make the API unready: without it the API still
//! stores and serves everything, only live events are lost).

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;
use utoipa::ToSchema;

/// How long the database check may take before it counts as failed.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the bus check may take before it counts as failed.
const BUS_TIMEOUT: Duration = Duration::from_millis(500);

/// `{"status":"ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

/// `{"status":"ready"|"degraded"|"unavailable","checks":{"database":"ok"|"error","bus":"ok"|"error"}}`:
/// `degraded` when only the bus fails, `unavailable` when the database does.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    pub status: &'static str,
    pub checks: ReadyChecks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    pub database: &'static str,
    pub bus: &'static str,
}

/// Liveness: the process serves HTTP. Checks no dependency, so a database outage does not get
/// healthy processes restarted.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthResponse))
)]
pub async fn health() -> web::Json<HealthResponse> {
    web::Json(HealthResponse { status: "ok" })
}

/// Readiness: 200 while the database answers (within 2 s), `ready` when the bus answers too
/// (within 500 ms), `degraded` when it does not; 503 `unavailable` when the database fails.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready, or `degraded`: the bus does not answer (live events are lost, everything else works)", body = ReadyResponse),
        (status = 503, description = "The database does not answer; its check says `error`", body = ReadyResponse),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (database, bus) = tokio::join!(
        check("database", DATABASE_TIMEOUT, async {
            state.store.ping().await.map_err(anyhow::Error::from)
        }),
        check("bus", BUS_TIMEOUT, async {
            state.bus.ping().await.map_err(anyhow::Error::from)
        }),
    );
    let body = ReadyResponse {
        status: status(database, bus),
        checks: ReadyChecks {
            database: label(database),
            bus: label(bus),
        },
    };
    if database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

fn status(database: bool, bus: bool) -> &'static str {
    match (database, bus) {
        (true, true) => "ready",
        (true, false) => "degraded",
        (false, _) => "unavailable",
    }
}

async fn check(
    name: &str,
    limit: Duration,
    ping: impl Future<Output = anyhow::Result<()>>,
) -> bool {
    match tokio::time::timeout(limit, ping).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            // The cause chain without a backtrace (RUST_BACKTRACE would add one to every probe).
            let error = format!("{e:#}");
            tracing::warn!(check = name, error, "readiness check failed");
            false
        }
        Err(_) => {
            tracing::warn!(check = name, "readiness check timed out");
            false
        }
    }
}

fn label(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "error"
    }
}
