//! The data directory the all-in-one creates, and the database and secret in it, are readable by
//! their owner alone.

use crate::helpers::{start, temp_dir};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The permission bits of `path`, in octal.
fn mode(path: &Path) -> String {
    let metadata = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:o}", metadata.permissions().mode() & 0o777)
}

#[tokio::test]
async fn the_data_directory_and_the_database_files_it_creates_are_owner_only() {
    // Arrange: a data directory that does not exist yet
    let parent = temp_dir("owner-only");
    let data = parent.join("data");
    let envs = [
        ("PARLEY_DATA_DIR", data.display().to_string()),
        ("API_PORT", "0".to_owned()),
        ("SOCKET_PORT", "0".to_owned()),
    ];
    let parley = start(&[], &envs).await;

    // Act: a write, so that the write-ahead log holds something
    let registered = reqwest::Client::new()
        .post(format!("{}/api/auth/register", parley.api))
        .json(&json!({"username": "alice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();

    // Assert: while it runs, with its -wal and -shm open
    assert_eq!(registered.status(), 201);
    let modes: Vec<(&str, String)> = [
        "",
        "parley.db",
        "parley.db-wal",
        "parley.db-shm",
        "jwt-secret",
    ]
    .into_iter()
    .map(|name| (name, mode(&data.join(name))))
    .collect();
    assert_eq!(
        modes,
        [
            ("", "700".to_owned()),
            ("parley.db", "600".to_owned()),
            ("parley.db-wal", "600".to_owned()),
            ("parley.db-shm", "600".to_owned()),
            ("jwt-secret", "600".to_owned())
        ]
    );
    parley.terminate().await;
    std::fs::remove_dir_all(parent).unwrap();
}
