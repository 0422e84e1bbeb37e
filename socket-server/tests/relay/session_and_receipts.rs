//! Logout, receipts, typing, ping and sync over the socket, across two relays.

use std::time::Duration;

use serde_json::json;

use crate::device::Device;
use crate::helpers::{spawn_stack, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_revokes_that_tokens_sockets_on_every_relay_and_no_other() {
    // Arrange: alice's first token on both relays, a second token (another login) on relay 0
    let stack = spawn_stack(2).await;
    let (first, _) = stack.register("alice").await;
    let (status, login) = stack
        .post(
            "/api/auth/login",
            None,
            &json!({ "username": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let second = login["token"].as_str().unwrap().to_owned();
    let mut revoked = vec![
        Device::connect(&stack, 0, &first).await,
        Device::connect(&stack, 1, &first).await,
    ];
    let mut kept = Device::connect(&stack, 0, &second).await;

    // Act
    let (status, _) = stack
        .post("/api/auth/logout", Some(&first), &json!({}))
        .await;

    // Assert
    assert_eq!(status, 204);
    for device in &mut revoked {
        let (event, body) = device.next().await;
        assert_eq!(
            (event.as_str(), &body["reason"]),
            ("session_revoked", &json!("logout"))
        );
    }
    kept.nothing_within(Duration::from_millis(300)).await;
    let pong = kept.request("ping", json!({})).await;
    assert!(pong["serverTime"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_read_reaches_every_members_devices_as_message_status() {
    // Arrange
    let stack = spawn_stack(2).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let mut b = Device::connect(&stack, 1, &bob).await;
    let sent = a
        .request(
            "send_message",
            json!({ "clientMsgId": "r-1", "conversationId": conversation, "content": "read me" }),
        )
        .await;
    assert_eq!(sent["success"], true, "{sent}");
    a.next().await; // message_saved
    b.next().await; // receive_message
    b.next().await; // message_saved

    // Act
    let ack = b
        .request(
            "mark_read",
            json!({ "conversationId": conversation, "upToSeq": 1 }),
        )
        .await;

    // Assert
    assert_eq!(ack["success"], true, "{ack}");
    assert_eq!(ack["readUpToSeq"], 1);
    for device in [&mut a, &mut b] {
        let (event, status) = device.next().await;
        assert_eq!(event, "message_status", "{status}");
        assert_eq!(status["userId"], bob_id.as_str());
        assert_eq!(status["readUpToSeq"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_members_devices_and_not_the_typists() {
    // Arrange
    let stack = spawn_stack(2).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a1 = Device::connect(&stack, 0, &alice).await;
    let mut a2 = Device::connect(&stack, 1, &alice).await;
    let mut b = Device::connect(&stack, 1, &bob).await;

    // Act
    let ack = a1
        .request(
            "typing",
            json!({ "conversationId": conversation, "isTyping": true }),
        )
        .await;

    // Assert
    assert_eq!(ack["success"], true, "{ack}");
    let (event, typing) = b.next().await;
    assert_eq!(event, "typing");
    assert_eq!(typing["userId"], alice_id.as_str());
    assert_eq!(typing["isTyping"], true);
    a2.nothing_within(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_goes_while_typing_is_said_to_have_stopped() {
    // Arrange: alice typing to bob, who sees it (on the other relay)
    let stack = spawn_stack(2).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let mut b = Device::connect(&stack, 1, &bob).await;
    a.request(
        "typing",
        json!({ "conversationId": conversation, "isTyping": true }),
    )
    .await;
    let (event, typing) = b.next().await;
    assert_eq!(
        (event.as_str(), &typing["isTyping"]),
        ("typing", &json!(true))
    );

    // Act: her socket goes while typing (no `isTyping: false` sent)
    a.client.disconnect().await.unwrap();

    // Assert: bob is told she stopped
    let (event, typing) = b.next().await;
    assert_eq!(event, "typing", "{typing}");
    assert_eq!(typing["userId"], alice_id.as_str());
    assert_eq!(typing["conversationId"], conversation.as_str());
    assert_eq!(typing["isTyping"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_over_the_socket_answers_like_get_api_sync() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    for n in 1..=2 {
        let (status, _) = stack
            .post(
                "/api/messages",
                Some(&alice),
                &json!({ "clientMsgId": format!("s-{n}"), "conversationId": conversation, "content": "x" }),
            )
            .await;
        assert_eq!(status, 201);
    }
    let mut a = Device::connect(&stack, 0, &alice).await;

    // Act
    let answer = a.request("sync", json!({})).await;

    // Assert
    let (_, expected) = stack.get("/api/sync", &alice).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["messages"], expected["messages"]);
    assert_eq!(answer["messages"].as_array().map(Vec::len), Some(2));
}
