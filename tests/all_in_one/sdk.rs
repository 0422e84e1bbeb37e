//! The `@parley/client` SDK's own suite (`clients/js/test/*.test.mjs`, node's test runner)
//! against the binary, in both configurations: optimistic sends, resends after a broken
//! connection without duplicates, ordering and de-duplication, catch-up after reconnect, the
//! connection monitor, ping latency, typing, presence, logout.

use crate::helpers::{
    drop_database, run_node, start, start_on_postgres_and_redis, workspace_root, Parley,
};
use std::path::Path;
use std::time::SystemTime;

/// Signed URLs of 8 s, whose expiries step by 2 s: the suite sees fresher ones within seconds
/// (as `clients/js/test/helpers.mjs` starts its own Parley).
fn short_signed_urls() -> (&'static str, String) {
    ("PARLEY__ATTACHMENTS__SIGNED_URL_TTL_SECS", "8".to_owned())
}

/// The whole suite runs against one Parley, and registers more users from 127.0.0.1 than
/// `limits.registrations_per_ip` (100 per window) lets one address: not limited here (the API
/// suite tests that limit).
fn registrations_unlimited() -> (&'static str, String) {
    ("PARLEY__LIMITS__REGISTRATIONS_PER_IP", "0".to_owned())
}

#[tokio::test]
async fn the_sdk_suite_passes_on_the_default_configuration() {
    // Arrange
    let parley = start(
        &["--ephemeral"],
        &[short_signed_urls(), registrations_unlimited()],
    )
    .await;

    // Act + Assert
    run_sdk_suite(&parley).await;
    parley.terminate().await;
}

#[tokio::test]
async fn the_sdk_suite_passes_on_postgresql_and_redis() {
    // Arrange
    let (parley, name) =
        start_on_postgres_and_redis(&[short_signed_urls(), registrations_unlimited()]).await;

    // Act + Assert
    run_sdk_suite(&parley).await;
    parley.terminate().await;
    drop_database(&name);
}

/// Run every `clients/js/test/*.test.mjs` against `parley`; fails with node's output.
async fn run_sdk_suite(parley: &Parley) {
    let sdk = workspace_root().join("clients/js");
    assert_built(&sdk);
    let mut files: Vec<String> = std::fs::read_dir(sdk.join("test"))
        .expect("clients/js/test")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("test/{name}"))
        .collect();
    files.sort();
    // A test stuck past 90 s fails with node's report (the patience of each wait is 60 s),
    // well before nextest would kill the whole run without it.
    let args: Vec<String> = ["--test", "--test-timeout=90000", "--test-force-exit"]
        .into_iter()
        .map(str::to_owned)
        .chain(files)
        .collect();
    run_node(parley, &sdk, &args, "clients/js/test").await;
}

/// The suite imports the built SDK: it must exist and be newer than every source file.
fn assert_built(sdk: &Path) {
    let how = "run `npm ci && npm run build` in clients/js (./scripts/test does it)";
    assert!(
        sdk.join("node_modules").exists(),
        "clients/js/node_modules is missing: {how}"
    );
    let built = modified(&sdk.join("dist/index.js"))
        .unwrap_or_else(|| panic!("clients/js/dist is missing: {how}"));
    let mut stale = Vec::new();
    for dir in ["src", "src/generated"] {
        for entry in std::fs::read_dir(sdk.join(dir)).expect("clients/js/src") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "ts") && modified(&path) > Some(built) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "clients/js/dist is older than {stale:?}: {how}"
    );
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}
