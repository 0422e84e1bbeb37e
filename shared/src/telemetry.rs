//! Tracing set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for JSON lines.

use tracing_subscriber::{fmt, EnvFilter};

/// Install the global subscriber once; later calls do nothing (tests call it many times).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let result = if json {
        fmt()
            .with_env_filter(filter)
            .json()
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    };
    // Already installed: fine.
    let _ = result;
}
