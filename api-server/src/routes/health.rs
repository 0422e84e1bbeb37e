//! Probes: liveness (`/health`, the process answers) and readiness (`/ready`, its database and
//! bus answer too).

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;
use utoipa::ToSchema;

/// How long each readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"status":"ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

/// `{"status":"ready"|"unavailable","checks":{"database":"ok"|"error","bus":"ok"|"error"}}`.
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

/// Readiness: the database and the bus answer within 2 s each.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadyResponse),
        (status = 503, description = "A dependency does not answer; its check says `error`", body = ReadyResponse),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (database, bus) = tokio::join!(
        check("database", async {
            state.store.ping().await.map_err(anyhow::Error::from)
        }),
        check("bus", async {
            state.bus.ping().await.map_err(anyhow::Error::from)
        }),
    );
    let ready = database && bus;
    let body = ReadyResponse {
        status: if ready { "ready" } else { "unavailable" },
        checks: ReadyChecks {
            database: label(database),
            bus: label(bus),
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn check(name: &str, ping: impl Future<Output = anyhow::Result<()>>) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = ?e, "readiness check failed");
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
