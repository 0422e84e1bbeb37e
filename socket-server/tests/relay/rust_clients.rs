//! `rust_socketio` devices against real relays: the optimistic relay, the stored ack, the
//! `message_saved` everywhere, across one relay or two linked only by Redis.

use std::time::Duration;

use serde_json::json;

use crate::device::Device;
use crate::helpers::spawn_stack;

/// Alice's two devices and Bob's two, on the relays given by `placement` ([a1, a2, b1, b2]);
/// a1 sends, the other three see it relayed then saved, and the ack carries the stored id.
async fn one_device_sends_and_three_others_see_it_relayed_then_saved(placement: [usize; 4]) {
    // Arrange
    let relays = placement.iter().max().unwrap() + 1;
    let stack = spawn_stack(relays).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a1 = Device::connect(&stack, placement[0], &alice).await;
    let mut others = vec![
        Device::connect(&stack, placement[1], &alice).await,
        Device::connect(&stack, placement[2], &bob).await,
        Device::connect(&stack, placement[3], &bob).await,
    ];

    // Act
    let ack = a1
        .request(
            "send_message",
            json!({ "clientMsgId": "c-1", "conversationId": conversation, "kind": "text", "content": "hello" }),
        )
        .await;

    // Assert
    assert_eq!(ack["success"], true, "ack {ack}");
    assert_eq!(ack["clientMsgId"], "c-1");
    assert_eq!(ack["conversationId"], conversation);
    assert_eq!(ack["status"], "sent");
    assert_eq!(ack["seq"], 1);
    let id = ack["id"]
        .as_str()
        .expect("the ack carries the stored id")
        .to_owned();
    for device in &mut others {
        let (event, relayed) = device.next().await;
        assert_eq!(event, "receive_message", "{relayed}");
        assert_eq!(relayed["clientMsgId"], "c-1");
        assert_eq!(relayed["content"], "hello");
        assert_eq!(relayed["status"], "sent");
        assert!(
            relayed.get("id").is_none(),
            "the relayed copy has no id yet"
        );
        let (event, saved) = device.next().await;
        assert_eq!(event, "message_saved", "{saved}");
        assert_eq!(saved["id"], id.as_str());
        assert_eq!(saved["clientMsgId"], "c-1");
    }
    let (event, saved) = a1.next().await;
    assert_eq!(
        (event.as_str(), &saved["id"]),
        ("message_saved", &json!(id))
    );
    let (status, page) = stack
        .get(&format!("/api/conversations/{conversation}/messages"), &bob)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_with_two_devices_each_on_one_relay_see_a_message_relayed_then_saved() {
    one_device_sends_and_three_others_see_it_relayed_then_saved([0, 0, 0, 0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_on_two_relays_linked_only_by_redis_see_a_message_relayed_then_saved() {
    one_device_sends_and_three_others_see_it_relayed_then_saved([0, 1, 1, 0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_send_to_a_conversation_and_nobody_sees_it() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let (mallory, _) = stack.register("mallory").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let mut m = Device::connect(&stack, 0, &mallory).await;

    // Act
    let ack = m
        .request(
            "send_message",
            json!({ "clientMsgId": "evil-1", "conversationId": conversation, "content": "hi" }),
        )
        .await;

    // Assert
    assert_eq!(ack["success"], false, "ack {ack}");
    assert_eq!(ack["error"]["code"], "conversation_not_found");
    assert_eq!(ack["error"]["retryable"], false);
    a.nothing_within(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_rest_reaches_every_device_as_receive_message_then_message_saved() {
    // Arrange
    let stack = spawn_stack(2).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut devices = vec![
        Device::connect(&stack, 0, &alice).await,
        Device::connect(&stack, 1, &bob).await,
    ];

    // Act
    let (status, stored) = stack
        .post(
            "/api/messages",
            Some(&bob),
            &json!({ "clientMsgId": "rest-1", "conversationId": conversation, "content": "via rest" }),
        )
        .await;

    // Assert
    assert_eq!(status, 201, "{stored}");
    for device in &mut devices {
        let (event, message) = device.next().await;
        assert_eq!(event, "receive_message");
        assert_eq!(message["id"], stored["id"]);
        assert_eq!(message["content"], "via rest");
        let (event, saved) = device.next().await;
        assert_eq!(
            (event.as_str(), &saved["id"]),
            ("message_saved", &stored["id"])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_sends_are_refused_with_a_validation_error() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let mut a = Device::connect(&stack, 0, &alice).await;

    // Act
    let blank = a
        .request(
            "send_message",
            json!({ "clientMsgId": "x", "conversationId": "1", "content": "  " }),
        )
        .await;
    let neither = a
        .request(
            "send_message",
            json!({ "clientMsgId": "y", "content": "hi" }),
        )
        .await;
    let shapeless = a.request("send_message", json!("hello")).await;

    // Assert
    assert_eq!(blank["error"]["code"], "validation_failed", "{blank}");
    assert_eq!(neither["error"]["code"], "validation_failed", "{neither}");
    assert_eq!(shapeless["error"]["code"], "invalid_json", "{shapeless}");
}
