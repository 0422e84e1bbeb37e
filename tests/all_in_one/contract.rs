//! The same client contract on both configurations.

use crate::helpers::{run_node_contract, start};

#[tokio::test]
async fn the_default_configuration_sqlite_and_in_process_bus_passes_the_client_contract() {
    // Arrange
    let parley = start(&["--ephemeral"], &[]).await;
    assert_eq!(parley.ready["addresses"]["bus"], "in-process");
    assert_eq!(parley.ready["addresses"]["database"], ":memory:");

    // Act + Assert
    run_node_contract(&parley).await;
    parley.terminate().await;
}

#[tokio::test]
async fn the_same_binary_on_postgresql_and_redis_passes_the_same_contract() {
    // Arrange: a fresh database (the API creates it) and a Redis prefix of our own
    let name = format!("parley_test_{}", uuid::Uuid::new_v4().simple());
    let parley = start(
        &["--ephemeral"],
        &[
            (
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
            ),
            ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            (
                "PARLEY__REDIS__PREFIX",
                format!("parley-test-{}", uuid::Uuid::new_v4()),
            ),
        ],
    )
    .await;
    assert_eq!(parley.ready["addresses"]["bus"], "redis");
    assert_eq!(parley.ready["addresses"]["database"], "postgresql");

    // Act + Assert
    run_node_contract(&parley).await;
    parley.terminate().await;
    let _ = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
        .arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .status();
}
