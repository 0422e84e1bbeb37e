//! `/health` and `/metrics` on the relay's port.

use crate::device::Device;
use crate::helpers::spawn_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_on_the_relay_port() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let _device = Device::connect(&stack, 0, &alice).await;

    // Act
    let health = stack
        .http
        .get(format!("{}/health", stack.relay_url(0)))
        .send()
        .await
        .unwrap();
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.relay_url(0)))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("relay_sockets 1"), "{text}");
    assert!(text.contains("relay_users 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_include_the_standard_process_metrics_with_plausible_values() {
    // Arrange
    let stack = spawn_stack(1).await;

    // Act
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.relay_url(0)))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(metrics.status(), 200);
    test_support::metrics::assert_process_metrics(&metrics.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_request_id_given_or_a_new_one() {
    // Arrange
    let stack = spawn_stack(1).await;
    let url = stack.relay_url(0);

    // Act
    let given = stack
        .http
        .get(format!("{url}/health"))
        .header("x-request-id", "edge-1234")
        .send()
        .await
        .unwrap();
    let handshake = stack
        .http
        .get(format!("{url}/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(given.headers()["x-request-id"], "edge-1234");
    assert_eq!(handshake.status(), 200);
    let id = handshake.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}
