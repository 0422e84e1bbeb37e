//! Tracing set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for JSON lines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::{fmt, EnvFilter};

/// Whether [`init`] installed the JSON subscriber (see [`json_lines`]).
static JSON_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Install the global subscriber once; later calls do nothing (tests call it many times). A
/// `RUST_LOG` that does not parse is not silently replaced: the default filter is used and a
/// warning says so.
pub fn init(default_filter: &str) {
    let (filter, refused) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => (
            EnvFilter::new(default_filter),
            std::env::var("RUST_LOG").ok().map(|value| (value, error)),
        ),
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let result = if json {
        fmt()
            .with_env_filter(filter)
            .json()
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        // Colours only for a person at a terminal, never into a file, a pipe or a collector.
        fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init()
    };
    // Already installed: fine.
    if result.is_ok() {
        JSON_INSTALLED.store(json, Ordering::Relaxed);
        if let Some((value, error)) = refused {
            tracing::warn!(
                rust_log = %value,
                %error,
                "RUST_LOG is not a valid filter; logging with the default `{default_filter}`"
            );
        }
    }
}

/// Whether log lines are JSON (`LOG_FORMAT=json` and [`init`] ran), so that a binary's last
/// words — a refused setting, a failed start — are written as a log line too, not as plain
/// text a log pipeline parsing JSON would trip on.
pub fn json_lines() -> bool {
    JSON_INSTALLED.load(Ordering::Relaxed)
}
