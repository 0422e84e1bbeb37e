//! Receipt watermarks (`/delivered`, `/read`), message status and unread counts.

use crate::helpers::{id_of, spawn_app, TestApp};
use serde_json::Value;

/// Alice and Bob's direct conversation with `n` messages from Alice.
async fn chat_with_messages(app: &TestApp, n: usize) -> (String, String, String, String) {
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    for i in 1..=n {
        app.send(&alice_token, &id, &format!("m{i}")).await;
    }
    (alice_token, bob_token, id, bob.id.to_string())
}

/// `(deliveredUpToSeq, readUpToSeq)` of a MemberState answer.
#[track_caller]
fn marks(state: &Value) -> (i64, i64) {
    (
        state["deliveredUpToSeq"]
            .as_i64()
            .expect("deliveredUpToSeq"),
        state["readUpToSeq"].as_i64().expect("readUpToSeq"),
    )
}

/// The status of each message as `token`'s user sees it, in seq order.
async fn statuses(app: &TestApp, token: &str, id: &str) -> Vec<String> {
    app.all_messages(token, id)
        .await
        .iter()
        .map(|m| m["status"].as_str().expect("status").to_owned())
        .collect()
}

#[tokio::test]
async fn marking_delivered_answers_200_with_the_member_state() {
    // Arrange
    let app = spawn_app().await;
    let (_, bob_token, id, bob_id) = chat_with_messages(&app, 3).await;

    // Act
    let reply = app.mark(&bob_token, &id, "delivered", 2).await;

    // Assert
    let state = reply.expect(200);
    assert_eq!(state["conversationId"], id);
    assert_eq!(state["userId"], bob_id);
    assert_eq!(marks(state), (2, 0));
    assert!(state["at"].is_string(), "{state}");
}

#[tokio::test]
async fn marking_read_moves_delivered_along() {
    // Arrange
    let app = spawn_app().await;
    let (_, bob_token, id, _) = chat_with_messages(&app, 3).await;
    app.mark(&bob_token, &id, "delivered", 1).await.expect(200);

    // Act
    let reply = app.mark(&bob_token, &id, "read", 3).await;

    // Assert
    assert_eq!(marks(reply.expect(200)), (3, 3));
}

#[tokio::test]
async fn watermarks_never_move_back() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, bob_token, id, bob_id) = chat_with_messages(&app, 5).await;
    app.mark(&bob_token, &id, "delivered", 4).await.expect(200);
    app.mark(&bob_token, &id, "read", 3).await.expect(200);

    // Act
    let delivered_back = app.mark(&bob_token, &id, "delivered", 1).await;
    let read_back = app.mark(&bob_token, &id, "read", 2).await;

    // Assert
    assert_eq!(marks(delivered_back.expect(200)), (4, 3));
    assert_eq!(marks(read_back.expect(200)), (4, 3));
    let conversation = app
        .get(&format!("/api/conversations/{id}"), &alice_token)
        .await;
    let body = conversation.expect(200);
    let bob = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["user"]["id"] == bob_id.as_str())
        .expect("bob is a member");
    assert_eq!(marks(bob), (4, 3));
}

#[tokio::test]
async fn a_watermark_never_passes_the_last_seq() {
    // Arrange
    let app = spawn_app().await;
    let (_, bob_token, id, _) = chat_with_messages(&app, 3).await;

    // Act
    let reply = app.mark(&bob_token, &id, "read", 99).await;

    // Assert
    assert_eq!(marks(reply.expect(200)), (3, 3));
}

#[tokio::test]
async fn the_senders_view_of_a_message_goes_from_sent_to_delivered_to_read() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, bob_token, id, _) = chat_with_messages(&app, 3).await;
    assert_eq!(
        statuses(&app, &alice_token, &id).await,
        ["sent", "sent", "sent"]
    );

    // Act + Assert
    app.mark(&bob_token, &id, "delivered", 2).await.expect(200);
    assert_eq!(
        statuses(&app, &alice_token, &id).await,
        ["delivered", "delivered", "sent"]
    );
    app.mark(&bob_token, &id, "read", 1).await.expect(200);
    assert_eq!(
        statuses(&app, &alice_token, &id).await,
        ["read", "delivered", "sent"]
    );
}

#[tokio::test]
async fn in_a_group_a_message_is_read_only_once_every_other_member_read_it() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let (carol_token, carol) = app.register("carol").await;
    let id = app
        .create_conversation(
            &alice_token,
            &[&bob.id.to_string(), &carol.id.to_string()],
            Some("three"),
        )
        .await;
    app.send(&alice_token, &id, "hello all").await;

    // Act + Assert
    app.mark(&bob_token, &id, "read", 1).await.expect(200);
    assert_eq!(statuses(&app, &alice_token, &id).await, ["sent"]);
    app.mark(&carol_token, &id, "delivered", 1)
        .await
        .expect(200);
    assert_eq!(statuses(&app, &alice_token, &id).await, ["delivered"]);
    app.mark(&carol_token, &id, "read", 1).await.expect(200);
    assert_eq!(statuses(&app, &alice_token, &id).await, ["read"]);
}

#[tokio::test]
async fn unread_count_counts_messages_from_others_above_the_read_watermark() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, bob_token, id, _) = chat_with_messages(&app, 3).await;
    let unread = |token: String| {
        let app = &app;
        let id = id.clone();
        async move {
            let list = app.conversations(&token).await;
            let summary = list
                .iter()
                .find(|c| id_of(c) == id)
                .expect("listed")
                .clone();
            summary["unreadCount"].as_i64().expect("unreadCount")
        }
    };

    // Act + Assert: Alice's own messages are never unread for her.
    assert_eq!(unread(bob_token.clone()).await, 3);
    assert_eq!(unread(alice_token.clone()).await, 0);
    app.mark(&bob_token, &id, "read", 2).await.expect(200);
    assert_eq!(unread(bob_token.clone()).await, 1);
    app.send(&bob_token, &id, "reply").await;
    assert_eq!(unread(alice_token.clone()).await, 1);
    assert_eq!(unread(bob_token.clone()).await, 1);
    app.mark(&bob_token, &id, "delivered", 4).await.expect(200);
    assert_eq!(unread(bob_token.clone()).await, 1, "delivered is not read");
}

#[tokio::test]
async fn a_non_member_cannot_move_watermarks_and_gets_404_conversation_not_found() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _, id, _) = chat_with_messages(&app, 2).await;
    let (carol_token, _) = app.register("carol").await;

    // Act
    let delivered = app.mark(&carol_token, &id, "delivered", 2).await;
    let read = app.mark(&carol_token, &id, "read", 2).await;

    // Assert
    delivered.expect_error(404, "conversation_not_found");
    read.expect_error(404, "conversation_not_found");
    assert_eq!(statuses(&app, &alice_token, &id).await, ["sent", "sent"]);
}
