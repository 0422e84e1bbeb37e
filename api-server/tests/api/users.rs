//! `GET /api/users?search=`: finding people, with their presence.

use crate::helpers::{spawn_app, spawn_app_with, PASSWORD};
use serde_json::{json, Value};

fn usernames(users: &Value) -> Vec<String> {
    users
        .as_array()
        .unwrap_or_else(|| panic!("an array of users: {users}"))
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_owned())
        .collect()
}

#[tokio::test]
async fn searching_finds_users_by_part_of_their_username_ignoring_case() {
    // Arrange
    let app = spawn_app().await;
    let mut users = app.register_many(&["alice", "bobby", "robert"]).await;
    let (token, _) = users.remove(0);

    // Act
    let reply = app.get("/api/users?search=OB", &token).await;

    // Assert
    let mut found = usernames(reply.expect(200));
    found.sort();
    assert_eq!(found, ["bobby", "robert"]);
}

#[tokio::test]
async fn searching_matches_display_names_too() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    app.register_raw(&json!({
        "username": "xq42",
        "password": PASSWORD,
        "displayName": "Zebulon Smith",
    }))
    .await
    .expect(201);

    // Act
    let reply = app.get("/api/users?search=zebulon", &token).await;

    // Assert
    assert_eq!(usernames(reply.expect(200)), ["xq42"]);
}

#[tokio::test]
async fn users_nobody_is_connected_as_are_offline() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bobby").await;

    // Act
    let reply = app.get("/api/users?search=bobby", &token).await;

    // Assert
    let body = reply.expect(200);
    let found = &body[0];
    assert_eq!(found["id"], bob.id.to_string(), "{body}");
    assert_eq!(found["displayName"], bob.display_name);
    assert_eq!(found["online"], false, "{body}");
    assert!(
        found.get("lastSeen").is_some_and(Value::is_null),
        "lastSeen is present and null: {body}"
    );
    assert!(!reply.text.contains("$argon2"), "{}", reply.text);
}

#[tokio::test]
async fn a_user_with_a_live_relay_connection_is_online_with_a_last_seen_time() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bobby").await;
    app.mark_online(&bob).await;

    // Act
    let reply = app.get("/api/users?search=bobby", &token).await;

    // Assert
    let body = reply.expect(200);
    assert_eq!(body[0]["online"], true, "{body}");
    assert!(body[0]["lastSeen"].is_string(), "{body}");
}

#[tokio::test]
async fn search_answers_at_most_search_max_users() {
    // Arrange
    let app = spawn_app_with(|s| s.limits.search_max = 2).await;
    let mut users = app
        .register_many(&["member1", "member2", "member3", "member4"])
        .await;
    let (token, _) = users.remove(0);

    // Act
    let reply = app.get("/api/users?search=member", &token).await;

    // Assert
    assert_eq!(usernames(reply.expect(200)).len(), 2, "{}", reply.text);
}

#[tokio::test]
async fn a_search_that_matches_nobody_answers_an_empty_list() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let reply = app.get("/api/users?search=zzzzzz", &token).await;

    // Assert
    assert_eq!(reply.expect(200), &json!([]));
}
