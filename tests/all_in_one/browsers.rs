//! Browser origins out of the box: the all-in-one admits pages on the loopback origins (a dev
//! server on another port) on both ports, refuses other origins in the error shapes, and never
//! refuses a client that sends no `Origin`.

use reqwest::{Client, Method, Response};

use crate::helpers::start;

/// A browser's preflight for a POST with a JSON body and a bearer token.
async fn preflight(client: &Client, url: &str, origin: &str) -> Response {
    client
        .request(Method::OPTIONS, url)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("the preflight is answered")
}

/// An Engine.IO polling handshake, as socket.io-client makes it from a page on `origin`.
async fn handshake(client: &Client, socket: &str, origin: Option<&str>) -> Response {
    let mut request = client.get(format!("{socket}/socket.io/?EIO=4&transport=polling"));
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.expect("the handshake is answered")
}

fn allow_origin(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_page_on_a_loopback_dev_server_reaches_both_ports_without_configuration() {
    // Arrange
    let parley = start(&["--ephemeral"], &[]).await;
    let client = Client::new();
    let page = "http://localhost:5173";

    // Act
    let api_preflight =
        preflight(&client, &format!("{}/api/auth/register", parley.api), page).await;
    let relay_handshake = handshake(&client, &parley.socket, Some(page)).await;

    // Assert
    assert_eq!(api_preflight.status(), 204);
    assert_eq!(allow_origin(&api_preflight), Some(page));
    assert_eq!(relay_handshake.status(), 200);
    assert_eq!(allow_origin(&relay_handshake), Some(page));
    parley.terminate().await;
}

#[tokio::test]
async fn other_origins_are_refused_in_the_error_shapes_and_clients_without_origin_are_not() {
    // Arrange
    let parley = start(&["--ephemeral"], &[]).await;
    let client = Client::new();
    let page = "https://evil.example";

    // Act
    let api_preflight =
        preflight(&client, &format!("{}/api/auth/register", parley.api), page).await;
    let relay_handshake = handshake(&client, &parley.socket, Some(page)).await;
    let node_like = handshake(&client, &parley.socket, None).await;

    // Assert
    assert_eq!(api_preflight.status(), 403);
    let body: serde_json::Value = api_preflight.json().await.expect("a JSON refusal");
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    assert_eq!(relay_handshake.status(), 403);
    let body: serde_json::Value = relay_handshake.json().await.expect("a JSON refusal");
    assert_eq!(body["code"], 4, "the Engine.IO error shape: {body}");
    assert_eq!(node_like.status(), 200);
    parley.terminate().await;
}

#[tokio::test]
async fn cors_allowed_origins_replaces_the_loopback_default_on_both_ports() {
    // Arrange: one comma-separated list for both services
    let origins = "https://app.example, https://admin.example".to_owned();
    let parley = start(&["--ephemeral"], &[("CORS_ALLOWED_ORIGINS", origins)]).await;
    let client = Client::new();

    // Act
    let listed = handshake(&client, &parley.socket, Some("https://admin.example")).await;
    let loopback = preflight(
        &client,
        &format!("{}/api/auth/login", parley.api),
        "http://localhost:5173",
    )
    .await;
    let api_listed = preflight(
        &client,
        &format!("{}/api/auth/login", parley.api),
        "https://app.example",
    )
    .await;

    // Assert
    assert_eq!(allow_origin(&listed), Some("https://admin.example"));
    assert_eq!(loopback.status(), 403);
    assert_eq!(allow_origin(&api_listed), Some("https://app.example"));
    parley.terminate().await;
}
