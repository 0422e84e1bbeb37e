//! The API binary: arguments, settings, telemetry, `Application::build`, serve until SIGTERM /
//! Ctrl-C. Start-up errors are one line on stderr; exit codes as `docs/operations.md` says (2
//! for bad arguments or settings, 1 for a failure while starting or serving).

use std::process::ExitCode;

use api_server::settings::{Settings, ENV_MAP};
use api_server::startup::Application;
use shared::cli::About;

/// jemalloc (`shared::alloc`): with glibc's malloc a fifth of the API's CPU storing batches
/// went to the allocator.
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::ALLOCATOR;

const ABOUT: About<'static> = About {
    name: "api-server",
    version: env!("CARGO_PKG_VERSION"),
    summary: "Parley's REST API: users, conversations and messages stored exactly once",
    options: &[],
    env: ENV_MAP,
};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(code) = ABOUT.handle_args() {
        return code;
    }
    shared::telemetry::init("info,api_server=info");
    let settings = match Settings::load() {
        Ok((settings, unread)) => {
            unread.warn("api-server");
            settings
        }
        Err(e) => return ABOUT.refuse_settings(e),
    };
    // Installed before the service announces itself, so an early SIGTERM stops it cleanly,
    // also while a dependency keeps start-up waiting.
    let mut stop = Box::pin(shared::shutdown::signal());
    let result = async {
        let starting = Application::build(settings);
        let Some(app) = shared::shutdown::unless_stopped(&mut stop, starting).await else {
            return Ok(());
        };
        app?.run_until_stopped(stop).await
    }
    .await;
    ABOUT.finish(result)
}
