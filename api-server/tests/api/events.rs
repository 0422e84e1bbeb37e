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
async fn in_a_group_a_watermark_move_is_published_to_the_member_and_the_senders_it_passes() {
    // Arrange: alice, bob and carol; alice's message is seq 1, carol's seq 2
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let (carol_token, carol) = app.register("carol").await;
    let ids = [bob.id.to_string(), carol.id.to_string()];
    let id = app
        .create_conversation(&alice_token, &[&ids[0], &ids[1]], Some("three"))
        .await;
    app.send(&alice_token, &id, "from alice").await;
    let mut carols = app.subscribe(&[&carol]).await;
    let mut told = app.subscribe(&[&alice, &bob]).await;

    // Act: bob's delivered passes alice's message only
    app.mark(&bob_token, &id, "delivered", 1).await.expect(200);

    // Assert: alice (whose tick it moves) and bob's own devices are told; carol is not
    let received = told.wait_for("receipts_moved", &[&alice, &bob], WAIT).await;
    for envelope in received.values() {
        assert_eq!(envelope["event"]["data"]["state"]["deliveredUpToSeq"], 1);
    }
    while let Some((_, envelope)) = carols.next(Duration::from_millis(500)).await {
        assert_ne!(envelope["event"]["type"], "receipts_moved", "{envelope}");
    }

    // Act: carol sends, and bob reads both
    app.send(&carol_token, &id, "from carol").await;
    let mut everyone = app.subscribe(&[&alice, &bob, &carol]).await;
    app.mark(&bob_token, &id, "read", 2).await.expect(200);

    // Assert: the move passes both senders' messages: all three are told
    let received = everyone
        .wait_for("receipts_moved", &[&alice, &bob, &carol], WAIT)
        .await;
    for envelope in received.values() {
        assert_eq!(envelope["event"]["data"]["state"]["readUpToSeq"], 2);
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
