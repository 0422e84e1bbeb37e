//! Health, readiness, metrics, the OpenAPI document, and the JSON error shape of the plumbing
//! (unknown routes, oversized or broken bodies).

use crate::backend::{Backend, BACKEND};
use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn health_answers_200() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app.request(Method::GET, "/health", None, None).await;

    // Assert
    reply.expect(200);
}

#[tokio::test]
async fn ready_answers_200_when_the_database_and_the_bus_are_up() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app.request(Method::GET, "/ready", None, None).await;

    // Assert
    reply.expect(200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_not_by_concrete_path() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    app.get(&format!("/api/conversations/{id}"), &token)
        .await
        .expect(200);
    app.get("/api/conversations/987654321", &token)
        .await
        .expect(404);
    let stray = format!("/no-such-path-{}", uuid::Uuid::new_v4().simple());
    app.request(Method::GET, &stray, None, None)
        .await
        .expect(404);

    // Act
    let reply = app.request(Method::GET, "/metrics", None, None).await;

    // Assert
    reply.expect(200);
    assert!(
        reply.content_type.starts_with("text/plain"),
        "Prometheus text format: {}",
        reply.content_type
    );
    let requests: Vec<&str> = reply
        .text
        .lines()
        .filter(|l| l.starts_with("parley_api_http_requests_total{"))
        .collect();
    assert!(
        requests
            .iter()
            .any(|l| l.contains("route=\"/api/conversations/{id}\"") && l.contains("\"200\"")),
        "a series for the route pattern: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("route=\"/api/auth/register\"")),
        "{requests:#?}"
    );
    for concrete in [
        "/api/conversations/987654321\"",
        &format!("/api/conversations/{id}\""),
        &stray,
    ] {
        assert!(
            !reply.text.contains(concrete),
            "no label may carry a concrete path ({concrete}): {requests:#?}"
        );
    }
}

/// Replace every `{param}` by `{}` so the document may name its parameters as it likes.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    // Arrange
    let app = spawn_app().await;
    let expected = [
        ("post", "/api/auth/register"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/logout"),
        ("get", "/api/auth/me"),
        ("get", "/api/users"),
        ("post", "/api/conversations"),
        ("get", "/api/conversations"),
        ("get", "/api/conversations/{}"),
        ("get", "/api/conversations/{}/messages"),
        ("post", "/api/conversations/{}/delivered"),
        ("post", "/api/conversations/{}/read"),
        ("post", "/api/messages"),
        ("get", "/api/sync"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
    ];

    // Act
    let reply = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await;

    // Assert
    let doc = reply.expect(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3: {}",
        doc["openapi"]
    );
    let paths: Vec<(String, &Value)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(p, item)| (normalize(p), item))
        .collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|(method, path)| {
            !paths
                .iter()
                .any(|(p, item)| p == path && item.get(*method).is_some())
        })
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from the document: {missing:?}; it has {:?}",
        paths.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_unknown_route_answers_404_with_the_json_error_shape() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app
        .request(Method::GET, "/api/no-such-thing", None, None)
        .await;

    // Assert
    reply.expect_error(404, "not_found");
}

#[tokio::test]
async fn a_wrong_method_on_a_known_route_answers_405_with_the_json_error_shape() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let reply = app
        .request(Method::DELETE, "/api/messages", Some(&token), None)
        .await;

    // Assert
    reply.expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn an_oversized_body_answers_413_payload_too_large_as_json() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    let huge = "x".repeat(app.settings.limits.body_bytes + 1024);

    // Act
    let message = app
        .send_raw(
            &token,
            &json!({ "clientMsgId": "big-1", "conversationId": id, "kind": "text", "content": huge }),
        )
        .await;
    let register = app
        .register_raw(&json!({ "username": "huge", "password": huge }))
        .await;

    // Assert
    message.expect_error(413, "payload_too_large");
    register.expect_error(413, "payload_too_large");
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400_invalid_json() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let broken = app
        .request_raw(
            Method::POST,
            "/api/messages",
            Some(&token),
            "application/json",
            b"{\"clientMsgId\": \"x\", ".to_vec(),
        )
        .await;
    let register = app
        .request_raw(
            Method::POST,
            "/api/auth/register",
            None,
            "application/json",
            b"not json at all".to_vec(),
        )
        .await;

    // Assert
    broken.expect_error(400, "invalid_json");
    register.expect_error(400, "invalid_json");
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_answers_400_invalid_json() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act: content must be a string, clientMsgId is required.
    let wrong_type = app
        .send_raw(
            &token,
            &json!({ "clientMsgId": "x", "conversationId": "1", "kind": "text", "content": 5 }),
        )
        .await;
    let missing = app
        .send_raw(&token, &json!({ "conversationId": "1", "content": "hi" }))
        .await;

    // Assert
    wrong_type.expect_error(400, "invalid_json");
    missing.expect_error(400, "invalid_json");
}

#[tokio::test]
async fn a_bad_query_parameter_answers_400_with_the_json_error_shape() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;

    // Act
    let reply = app
        .messages_page(&token, &id, "afterSeq=not-a-number")
        .await;

    // Assert
    reply.expect(400);
    assert!(
        reply.body["error"]["code"].is_string(),
        "the JSON error shape: {}",
        reply.text
    );
}

#[tokio::test]
async fn metrics_include_the_standard_process_metrics_with_plausible_values() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app.request(Method::GET, "/metrics", None, None).await;

    // Assert
    reply.expect(200);
    test_support::metrics::assert_process_metrics(&reply.text);
}

#[tokio::test]
async fn responses_carry_the_request_id_given_or_a_new_one() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let given = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "edge-1234")
        .send()
        .await
        .unwrap();
    let generated = app.client.get(app.url("/nowhere")).send().await.unwrap();

    // Assert
    assert_eq!(given.headers()["x-request-id"], "edge-1234");
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn replicas_starting_together_on_a_new_database_all_start() {
    if *BACKEND != Backend::PostgresRedis {
        return; // a PostgreSQL deployment's start-up
    }
    // Arrange: a database that does not exist yet, as a first deployment's replicas find it
    let app = spawn_app().await;
    let mut settings = app.settings.database.clone();
    let name = format!("{}_new", app.db_name);
    settings.url = settings.url.replace(&app.db_name, &name);
    settings.create_if_missing = true;

    // Act: four replicas' start-ups at once (create the database, migrate)
    let opened =
        futures::future::join_all((0..4).map(|_| api_server::store::open(&settings))).await;

    // Assert
    for (i, store) in opened.into_iter().enumerate() {
        let store = store.unwrap_or_else(|e| panic!("replica {i} did not start: {e:#}"));
        store.ping().await.expect("pinging");
    }
    // (No bus keys were written under this prefix: only the database goes.)
    BACKEND.cleanup(name.clone(), name);
}

#[tokio::test]
async fn idle_pooled_connections_are_closed() {
    // Arrange: a store with three connections open at once, then all back in the pool
    let app = spawn_app().await;
    let store = api_server::store::open(&app.settings.database)
        .await
        .expect("opening the store as another replica would");
    let (a, b, c) = tokio::join!(store.ping(), store.ping(), store.ping());
    a.and(b).and(c).expect("pinging");
    let (_, idle_before, _) = store.pool_status();

    // Act: close what was idle for no time at all (every idle one), then for a long while
    let none = store.close_idle(std::time::Duration::from_secs(3600));
    let all = store.close_idle(std::time::Duration::ZERO);

    // Assert: an embedded database has nothing to close; a pool closes its idle connections
    // and opens a new one when asked
    let (_, idle_after, _) = store.pool_status();
    assert_eq!(none, 0);
    match *crate::backend::BACKEND {
        crate::backend::Backend::SqliteRedis => assert_eq!(all, 0),
        crate::backend::Backend::PostgresRedis => {
            assert!(idle_before >= 1, "{idle_before}");
            assert_eq!((all, idle_after), (idle_before, 0));
        }
    }
    store
        .ping()
        .await
        .expect("a new connection after closing the idle ones");
}
