//! Runs `node --test tests/node/relay` (socket.io-client 4.x with each transport setting), and
//! `tests/node/vocab` (the design documents' clients),
//! against two relays and the API prepared here; the scenario is passed in the environment.

use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::process::Command;

use crate::helpers::spawn_stack;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("socket-server sits in the workspace")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_devices_on_two_relays_pass_the_node_chat_suite() {
    // Arrange: node's packages, two relays, three users and a conversation
    assert_installed();
    let stack = spawn_stack(2).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let (mallory, mallory_id) = stack.register("mallory").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let scenario = json!({
        "relays": [stack.relay_url(0), stack.relay_url(1)],
        "api": stack.api_url,
        "alice": { "token": alice, "id": alice_id },
        "bob": { "token": bob, "id": bob_id },
        "mallory": { "token": mallory, "id": mallory_id },
        "conversation": conversation,
        "expiredToken": stack.expired_token(&alice_id),
    });

    // Act + Assert
    run_node_suite(
        "tests/node/relay",
        &[("PARLEY_RELAY_SCENARIO", scenario.to_string())],
    )
    .await;
}

/// `tests/node/node_modules` is there (`./scripts/test` installs it). Not installed here: each
/// test runs in a process of its own, and one installing while another runs raced it.
fn assert_installed() {
    assert!(
        workspace_root().join("tests/node/node_modules").exists(),
        "tests/node/node_modules is missing: run ./scripts/test, or `npm ci` in tests/node"
    );
}

/// Run `node --test <dir>` from the workspace root with `envs`; fails with node's output.
async fn run_node_suite(dir: &str, envs: &[(&str, String)]) {
    let output = Command::new("node")
        .args(["--test", dir])
        .current_dir(workspace_root())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (Node.js 20+)");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the node suite {dir} failed (exit {:?}); its output is above",
        output.status.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_written_from_the_design_documents_work_unmodified_on_two_relays() {
    // Arrange: two relays and the API (the suite registers its own users)
    assert_installed();
    let stack = spawn_stack(2).await;
    let relays = format!("{},{}", stack.relay_url(0), stack.relay_url(1));

    // Act + Assert: each document's client, two users on two devices spread over the relays
    run_node_suite(
        "tests/node/vocab",
        &[
            ("PARLEY_API", stack.api_url.clone()),
            ("PARLEY_SOCKETS", relays),
        ],
    )
    .await;
}
