//! `cargo run`: Parley in one process.
//!
//! Today this runs the API (PostgreSQL + Redis from `DATABASE_URL` / `REDIS_URL`, defaults on
//! localhost, the database created if missing). The relay and the embedded SQLite + in-process
//! bus default join it in the next increments (see the open issues).

use api_server::settings::Settings;
use api_server::startup::Application;
use std::process::ExitCode;

fn main() -> ExitCode {
    shared::telemetry::init("info");
    if std::env::var_os("JWT_SECRET").is_none() {
        // A development convenience only: tokens stop verifying when the process restarts.
        // Single-threaded here, before the runtime starts.
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::env::set_var("JWT_SECRET", secret);
        tracing::warn!("JWT_SECRET is not set: using a random secret for this run");
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parley: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped(shared::shutdown::signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e:#}");
            ExitCode::FAILURE
        }
    }
}
