//! `cargo run`: Parley in one process — the API and the relay on embedded SQLite and an
//! in-process bus by default (see `parley::settings`). Prints one JSON line with the addresses
//! on stdout when ready; logs go to stderr.

use parley::settings::{self, Options};
use parley::AllInOne;
use shared::cli::About;
use std::process::ExitCode;

/// The binaries' allocator, which gives the memory of closed connections back
/// (`shared::alloc`).
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::ALLOCATOR;

const ABOUT: About<'static> = About {
    name: "parley",
    version: env!("CARGO_PKG_VERSION"),
    summary: "Parley in one process: the REST API (port 3000) and the Socket.IO relay (port 5000) \
              on embedded SQLite and an in-process bus, or on DATABASE_URL and REDIS_URL",
    options: &[(
        "--ephemeral",
        "in-memory database, free ports, fresh secret, uploads in a temporary folder, for the \
         variables below that are unset; exits when stdin closes (also PARLEY_EPHEMERAL=1)",
    )],
    env: &[
        ("PARLEY_DATA_DIR", "the data folder (./data)"),
        (
            "DATABASE_URL",
            "sqlite://$PARLEY_DATA_DIR/parley.db by default, or postgres://…",
        ),
        ("REDIS_URL", "the bus (in-process when unset)"),
        ("JWT_SECRET", "created once in the data folder when unset"),
        (
            "ATTACHMENTS_URL",
            "uploads: file://$PARLEY_DATA_DIR/attachments by default, or s3://bucket/prefix",
        ),
        ("API_PORT", "3000 (API_HOST: 127.0.0.1)"),
        ("SOCKET_PORT", "5000 (SOCKET_HOST: 127.0.0.1)"),
        (
            "CORS_ALLOWED_ORIGINS",
            "browser origins besides http://localhost:* and http://127.0.0.1:*",
        ),
    ],
};

fn main() -> ExitCode {
    let args = match ABOUT.handle_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    shared::telemetry::init("info");
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(e) => return ABOUT.refuse_settings(e),
    };
    // Before the runtime starts any thread: this writes the process environment.
    if let Err(e) = settings::apply_defaults(&options) {
        return ABOUT.refuse_settings(format!("{e:#}"));
    }
    let settings = match settings::load() {
        Ok(s) => s,
        Err(e) => return ABOUT.refuse_settings(e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Installed before the ready line, so a SIGTERM sent as soon as it is read stops us
        // cleanly.
        let mut stop = Box::pin(shared::shutdown::signal());
        let starting = AllInOne::build(settings);
        let Some(parley) = shared::shutdown::unless_stopped(&mut stop, starting).await else {
            return Ok(());
        };
        let parley = parley?;
        let ready = serde_json::json!({ "event": "ready", "addresses": parley.addresses() });
        println!("{ready}");
        let shutdown = async {
            tokio::select! {
                () = stop => {}
                () = stdin_closed(), if options.ephemeral => {
                    tracing::info!("stdin closed, shutting down");
                }
            }
        };
        parley.run_until_stopped(shutdown).await
    });
    // A pending stdin read sits on a blocking thread; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    ABOUT.finish(result)
}

/// Resolves when stdin reaches end of file (the test suite that started us went away).
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
