//! Start-up and shutdown as a test suite or an operator sees them.

use crate::helpers::start;
use std::time::Duration;

#[tokio::test]
async fn the_ready_line_names_two_addresses_that_answer() {
    // Arrange
    let parley = start(&["--ephemeral"], &[]).await;

    // Act
    let api = reqwest::get(format!("{}/health", parley.api))
        .await
        .unwrap();
    let relay = reqwest::get(format!("{}/health", parley.socket))
        .await
        .unwrap();

    // Assert
    assert_eq!(api.status(), 200);
    assert_eq!(relay.status(), 200);
    assert_ne!(parley.api, parley.socket);
    parley.terminate().await;
}

#[tokio::test]
async fn closing_stdin_stops_an_ephemeral_parley_cleanly() {
    // Arrange
    let mut parley = start(&["--ephemeral"], &[]).await;

    // Act
    drop(parley.stdin.take());

    // Assert
    let exit = tokio::time::timeout(Duration::from_secs(60), parley.child.wait())
        .await
        .expect("parley did not exit within 60 s of its stdin closing")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn sigterm_stops_parley_cleanly() {
    let parley = start(&["--ephemeral"], &[]).await;
    parley.terminate().await;
}

#[tokio::test]
async fn sigterm_stops_a_parley_whose_database_never_answers_during_start_up() {
    // Arrange: a "PostgreSQL" that accepts connections and never says a word
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut parley = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--ephemeral")
        .env(
            "DATABASE_URL",
            format!("postgres://parley@127.0.0.1:{port}/parley"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (_held, _) = silent.accept().await.unwrap();

    // Act: start-up is waiting on it
    let pid = parley.id().expect("parley is running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("running kill");
    assert!(status.success());

    // Assert
    let exit = tokio::time::timeout(Duration::from_secs(60), parley.wait())
        .await
        .expect("parley did not exit within 60 s of SIGTERM while starting")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn an_unknown_argument_is_refused_with_exit_code_2() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--nope")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--nope"));
}

#[tokio::test]
async fn help_and_version_print_and_exit_0_without_serving() {
    for (flag, expected) in [("--help", "USAGE"), ("--version", "parley ")] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
            .arg(flag)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{flag}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(expected), "{flag}: {stdout}");
    }
}
