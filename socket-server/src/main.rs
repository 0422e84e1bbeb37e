//! The relay binary: arguments, settings, telemetry, `Application::build`, serve until SIGTERM /
//! Ctrl-C. Start-up errors are one line on stderr; exit codes as `docs/operations.md` says (2
//! for bad arguments or settings, 1 for a failure while starting or serving).

use std::process::ExitCode;

use shared::cli::About;
use socket_server::settings::{Settings, ENV_MAP};
use socket_server::startup::Application;

/// jemalloc, which gives the memory of closed connections back (`shared::alloc`).
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::ALLOCATOR;

const ABOUT: About<'static> = About {
    name: "socket-server",
    version: env!("CARGO_PKG_VERSION"),
    summary: "Parley's Socket.IO v4 relay",
    options: &[],
    env: ENV_MAP,
};

fn main() -> ExitCode {
    if let Err(code) = ABOUT.handle_args() {
        return code;
    }
    match runtime() {
        Ok(runtime) => runtime.block_on(serve()),
        Err(error) => ABOUT.finish(Err(error.into())),
    }
}

async fn serve() -> ExitCode {
    shared::telemetry::init("info");
    let settings = match Settings::load() {
        Ok((settings, unread)) => {
            unread.warn("socket-server");
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

/// The relay's tokio runtime: one worker thread per CPU it may use (its affinity and cgroup
/// quota, as `available_parallelism` reads them) — or, given one CPU, a current-thread runtime.
/// The multi-threaded one would have a single worker there and still pay for the stealing and
/// parking it cannot use: ~2 500 instructions a relayed message, 3.7 % of the relay's
/// (`bench/README.md`, session 23).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let one_cpu = std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}
