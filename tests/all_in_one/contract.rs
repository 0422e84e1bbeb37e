//! The same client contract on both configurations.

use crate::helpers::{
    drop_database, run_node_contract, run_node_suite, start, start_on_postgres_and_redis,
};

#[tokio::test]
async fn the_default_configuration_sqlite_and_in_process_bus_passes_the_client_contract() {
    // Arrange
    let parley = start(&["--ephemeral"], &[]).await;
    assert_eq!(parley.ready["addresses"]["bus"], "in-process");
    assert_eq!(parley.ready["addresses"]["database"], ":memory:");

    // Act + Assert
    run_node_contract(&parley).await;
    assert_relay_used_the_in_process_port(&parley).await;
    parley.terminate().await;
}

#[tokio::test]
async fn clients_written_from_the_design_documents_work_unmodified() {
    // Arrange
    let parley = start(&["--ephemeral"], &[]).await;

    // Act + Assert: each document's client, two users on two devices
    run_node_suite(&parley, "tests/node/vocab").await;
    parley.terminate().await;
}

/// The relay stored its sends (the contract sends over the socket) without one HTTP request to
/// the API: no internal route was ever called, while the relay counted store batches.
async fn assert_relay_used_the_in_process_port(parley: &crate::helpers::Parley) {
    let get = |url: String| async move {
        reqwest::get(&url)
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body")
    };
    let api = get(format!("{}/metrics", parley.api)).await;
    let relay = get(format!("{}/metrics", parley.socket)).await;
    assert!(
        api.contains("parley_api_http_requests_total"),
        "the API counts requests: {api}"
    );
    assert!(
        !api.contains("/internal/"),
        "the relay called the API over HTTP:\n{api}"
    );
    let batches: u64 = relay
        .lines()
        .find_map(|l| l.strip_prefix("relay_store_batch_size_count "))
        .and_then(|n| n.trim().parse().ok())
        .expect("relay_store_batch_size_count in the relay's metrics");
    assert!(batches > 0, "the relay stored nothing:\n{relay}");
}

#[tokio::test]
async fn the_same_binary_on_postgresql_and_redis_passes_the_same_contract() {
    // Arrange: a fresh database (the API creates it) and a Redis prefix of our own
    let (parley, name) = start_on_postgres_and_redis(&[]).await;

    // Act + Assert
    run_node_contract(&parley).await;
    assert_relay_used_the_in_process_port(&parley).await;
    parley.terminate().await;
    drop_database(&name);
}
