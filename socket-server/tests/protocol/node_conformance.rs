//! Runs `node --test tests/node/conformance` (Engine.IO and Socket.IO conformance, and the real
//! `socket.io-client` with each transport setting) against the echo server.

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

use crate::helpers::spawn_echo;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("socket-server sits in the workspace")
        .to_path_buf()
}

async fn run(program: &str, args: &[&str], dir: &Path, env: &[(&str, String)]) -> Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir).kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    match command.output().await {
        Ok(output) => output,
        Err(error) => panic!(
            "could not run `{program}` ({error}). These tests need Node.js 20+ and npm: \
             install them (e.g. `apt-get install nodejs npm`, or from nodejs.org) and run again"
        ),
    }
}

fn print(output: &Output) {
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_conformance_suite_and_socket_io_client_pass_against_the_echo_server() {
    // Arrange: node, its packages, the server
    let root = workspace_root();
    let node_dir = root.join("tests/node");
    let version = run("node", &["--version"], &root, &[]).await;
    assert!(
        version.status.success(),
        "`node --version` failed: install Node.js 20+"
    );
    if !node_dir.join("node_modules").exists() {
        let install = run("npm", &["ci", "--no-audit", "--no-fund"], &node_dir, &[]).await;
        print(&install);
        assert!(install.status.success(), "`npm ci` in tests/node failed");
    }
    let server = spawn_echo().await;

    // Act
    let output = run(
        "node",
        &["--test", "tests/node/conformance"],
        &root,
        &[("PARLEY_ECHO_PORT", server.port.to_string())],
    )
    .await;

    // Assert
    print(&output);
    assert!(
        output.status.success(),
        "the node conformance suite failed (exit {:?}); its output is above",
        output.status.code()
    );
    server.stop().await;
}
