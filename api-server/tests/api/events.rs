//! What the API publishes on the bus after each commit, on each member's channel
//! (`{prefix}:u:{userId}`). Every test subscribes before acting.

use crate::helpers::spawn_app;
use reqwest::Method;
use std::time::Duration;

/// Waits for events that must come; only a real failure exhausts it, not a busy machine.
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn storing_a_message_publishes_message_stored_on_each_members_channel() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    let mut events = app.subscribe(&[&alice, &bob]).await;

    // Act
    let reply = app
        .post_message(&alice_token, &id, "ev-1", "hello over the bus")
        .await;

    // Assert
    let stored = reply.expect(201).clone();
    let received = events
        .wait_for("message_stored", &[&alice, &bob], WAIT)
        .await;
    for (user, envelope) in &received {
        assert!(
            envelope["origin"]
                .as_str()
                .is_some_and(|o| o.starts_with("api-")),
            "origin names the API instance: {envelope}"
        );
        let message = &envelope["event"]["data"]["message"];
        assert_eq!(message["id"], stored["id"], "for user {user}: {envelope}");
        assert_eq!(message["seq"], 1);
        assert_eq!(message["content"], "hello over the bus");
        assert_eq!(message["senderId"], alice.id.to_string());
        assert_eq!(message["conversationId"], id);
        assert_eq!(message["clientMsgId"], "ev-1");
    }
}

#[tokio::test]
async fn message_stored_is_not_published_to_users_outside_the_conversation() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (_, carol) = app.register("carol").await;
    let id = app.direct(&alice_token, &bob).await;
    let mut carols = app.subscribe(&[&carol]).await;
    let mut members = app.subscribe(&[&alice, &bob]).await;

    // Act
    app.send(&alice_token, &id, "not for carol").await;

    // Assert: the members got it (so it was published), Carol got nothing.
    members
        .wait_for("message_stored", &[&alice, &bob], WAIT)
        .await;
    let leaked = carols.next(Duration::from_millis(500)).await;
    assert!(leaked.is_none(), "Carol received {leaked:?}");
}

#[tokio::test]
async fn moving_a_watermark_publishes_receipts_moved_to_the_members() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &id, "read me").await;
    let mut events = app.subscribe(&[&alice, &bob]).await;

    // Act
    app.mark(&bob_token, &id, "read", 1).await.expect(200);

    // Assert
    let received = events
        .wait_for("receipts_moved", &[&alice, &bob], WAIT)
        .await;
    for envelope in received.values() {
        let state = &envelope["event"]["data"]["state"];
        assert_eq!(state["conversationId"], id, "{envelope}");
        assert_eq!(state["userId"], bob.id.to_string());
        assert_eq!(state["readUpToSeq"], 1);
        assert_eq!(state["deliveredUpToSeq"], 1);
    }
}

#[tokio::test]
async fn creating_a_conversation_publishes_conversation_changed_to_its_members() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (_, carol) = app.register("carol").await;
    let mut events = app.subscribe(&[&alice, &bob, &carol]).await;

    // Act
    let id = app
        .create_conversation(
            &alice_token,
            &[&bob.id.to_string(), &carol.id.to_string()],
            Some("news"),
        )
        .await;

    // Assert
    let received = events
        .wait_for("conversation_changed", &[&alice, &bob, &carol], WAIT)
        .await;
    for envelope in received.values() {
        let conversation = &envelope["event"]["data"]["conversation"];
        assert_eq!(conversation["id"], id, "{envelope}");
        assert_eq!(conversation["title"], "news");
        assert_eq!(conversation["members"].as_array().map(Vec::len), Some(3));
    }
}

#[tokio::test]
async fn logging_out_publishes_user_logged_out_so_relays_drop_the_tokens_sockets() {
    // Arrange
    let app = spawn_app().await;
    let (token, alice) = app.register("alice").await;
    let mut events = app.subscribe(&[&alice]).await;

    // Act
    app.request(Method::POST, "/api/auth/logout", Some(&token), None)
        .await
        .expect(204);

    // Assert
    let received = events.wait_for("user_logged_out", &[&alice], WAIT).await;
    let data = &received[&alice.id.to_string()]["event"]["data"];
    assert_eq!(data["user_id"], alice.id.to_string(), "{data}");
    assert!(
        data["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{data}"
    );
}
