//! Runs `tests/python/relay_clients.py` (python-socketio's sync client from PyPI, on WebSocket and
//! on long-polling) against two relays and the API prepared here; the scenario is passed in the
//! environment. The suite's last test asks, on its stdout, for relay 0 to be stopped gracefully
//! (`PARLEY-CONTROL stop-relay 0`), and is answered on its stdin once it has exited.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::helpers::spawn_stack;

/// The whole suite's bound: its own waits are 60 s each; this only stops a hung interpreter.
const SUITE_DEADLINE: Duration = Duration::from_secs(900);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("socket-server sits in the workspace")
        .to_path_buf()
}

/// The venv's python, installed from `tests/python/requirements.txt` as it is now.
fn python() -> PathBuf {
    let dir = workspace_root().join("tests/python");
    let python = dir.join(".venv/bin/python");
    let install = "run ./scripts/test, or: python3 -m venv tests/python/.venv && \
        tests/python/.venv/bin/pip install --require-hashes --only-binary=:all: \
        -r tests/python/requirements.txt && \
        cp tests/python/requirements.txt tests/python/.venv/requirements.txt \
        (Debian: apt-get install python3-venv)";
    assert!(
        python.exists(),
        "tests/python/.venv is missing (python-socketio for this test): {install}"
    );
    let wanted =
        std::fs::read(dir.join("requirements.txt")).expect("tests/python/requirements.txt");
    let installed = std::fs::read(dir.join(".venv/requirements.txt")).unwrap_or_default();
    assert!(
        wanted == installed,
        "tests/python/.venv was installed from another requirements.txt: rm -rf tests/python/.venv and {install}"
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_devices_on_two_relays_pass_the_python_suite() {
    // Arrange: the venv, two relays, eight users, alice and bob's direct conversation and a
    // group of all
    let python = python();
    let mut stack = spawn_stack(2).await;
    let mut users = serde_json::Map::new();
    let mut ids = Vec::new();
    for name in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        let (token, id) = stack.register(name).await;
        users.insert(name.into(), json!({ "token": token, "id": id }));
        ids.push(id);
    }
    let alice = users["alice"]["token"].as_str().unwrap().to_owned();
    let direct = stack.conversation(&alice, &[&ids[1]]).await;
    let others: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    let group = stack.conversation(&alice, &others).await;
    let mut scenario = json!({
        "relays": [stack.relay_url(0), stack.relay_url(1)],
        "api": stack.api_url,
        "direct": direct,
        "group": group,
        "expiredToken": stack.expired_token(&ids[0]),
        "control": true,
    });
    scenario.as_object_mut().unwrap().extend(users);

    // Act: the suite, answering its requests to stop a relay
    let mut child = Command::new(python)
        .args(["-B", "tests/python/relay_clients.py"])
        .current_dir(workspace_root())
        .env("PARLEY_RELAY_SCENARIO", scenario.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting tests/python/.venv/bin/python");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let run = async {
        while let Some(line) = stdout.next_line().await.expect("the suite's stdout") {
            println!("{line}");
            if let Some(index) = line.strip_prefix("PARLEY-CONTROL stop-relay ") {
                let index: usize = index.parse().expect("a relay index");
                stack.stop_relay(index).await;
                stdin
                    .write_all(format!("stopped {index}\n").as_bytes())
                    .await
                    .expect("answering the suite");
                stdin.flush().await.unwrap();
            }
        }
        child.wait().await.expect("the suite's exit")
    };
    let status = tokio::time::timeout(SUITE_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the python suite ran past {SUITE_DEADLINE:?}"));

    // Assert
    eprintln!("{}", errors.await.unwrap());
    assert!(
        status.success(),
        "the python suite tests/python/relay_clients.py failed (exit {:?}); its output is above",
        status.code()
    );
}
