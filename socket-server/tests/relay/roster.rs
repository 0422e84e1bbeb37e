//! The roster of relays: a relay alone on the bus publishes nothing for relays (it delivers
//! locally), and a relay that starts is served relayed copies from the moment it serves.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::clients::spawn_relay;
use crate::device::Device;
use crate::helpers::{metric, spawn_stack, spawn_stack_custom, REDIS_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_right_after_a_second_relay_starts_reaches_a_device_on_it_relayed() {
    // Arrange: one relay (alone: it publishes no relayed copies), which waits as long as it
    // takes for the API; storage held by a lock the test takes, so a message can only reach
    // another relay as its relayed copy
    let template = Arc::new(Mutex::new(None));
    let seen = template.clone();
    let mut stack = spawn_stack_custom(
        REDIS_URL,
        1,
        |_| {},
        move |relay| {
            relay.api.timeout_ms = 600_000;
            *seen.lock().unwrap() = Some(relay.clone());
        },
    )
    .await;
    let settings = template.lock().unwrap().take().unwrap();
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut sender = Device::connect(&stack, 0, &alice).await;
    assert_eq!(metric(&stack.metrics(0).await, "relay_peers"), 0);
    let db = stack.hold_messages().await;

    // Act: a second relay starts; a device of bob's connects to it and alice sends at once
    let (second, _stop) = spawn_relay(&mut stack, settings).await;
    let mut receiver = Device::connect(&stack, second, &bob).await;
    let mut ack = sender
        .send_later(
            "send_message",
            json!({ "clientMsgId": "m-1", "conversationId": conversation, "content": "hi" }),
            crate::device::PATIENCE,
        )
        .await;

    // Assert: the relayed copy (no id: not stored yet) reaches the second relay's device; once
    // storage is released the send is acknowledged
    let (event, body) = receiver.next().await;
    assert_eq!(event, "receive_message", "{body}");
    assert_eq!(body["clientMsgId"], "m-1", "{body}");
    assert!(body.get("id").is_none(), "not the relayed copy: {body}");
    db.batch_execute("COMMIT").await.unwrap();
    let (_, answer) = tokio::time::timeout(crate::device::PATIENCE, ack.recv())
        .await
        .expect("no ack")
        .unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(metric(&stack.metrics(0).await, "relay_peers"), 1);
    assert_eq!(metric(&stack.metrics(second).await, "relay_peers"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_alone_on_the_bus_delivers_locally_and_publishes_nothing() {
    // Arrange: one relay, two users on it
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut sender = Device::connect(&stack, 0, &alice).await;
    let mut receiver = Device::connect(&stack, 0, &bob).await;

    // Act: a message and a typing indicator
    let ack = sender
        .request(
            "send_message",
            json!({ "clientMsgId": "m-1", "conversationId": conversation, "content": "hi" }),
        )
        .await;
    let typed = sender
        .request(
            "typing",
            json!({ "conversationId": conversation, "isTyping": true }),
        )
        .await;

    // Assert: both delivered here, and the relay published nothing on the bus (the API's
    // `message_stored` is the API's)
    assert_eq!(ack["success"], true, "{ack}");
    assert_eq!(typed["success"], true, "{typed}");
    let mut events = Vec::new();
    while !events.iter().any(|e| e == "typing") {
        let (event, body) = receiver.next().await;
        if event == "receive_message" {
            assert_eq!(body["clientMsgId"], "m-1", "{body}");
        }
        events.push(event);
    }
    assert!(events.iter().any(|e| e == "receive_message"), "{events:?}");
    let text = stack.metrics(0).await;
    assert_eq!(metric(&text, "relay_peers"), 0);
    assert_eq!(metric(&text, "relay_bus_events_published_total"), 0);
}
