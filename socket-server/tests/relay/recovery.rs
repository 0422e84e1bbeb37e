//! What a client relies on when things go wrong: idempotent sends through both paths, catching
//! up with `sync` after a disconnect, `message_failed` when the API is gone, the token's user as
//! sender, revoked tokens refused at connect, and a relay that survives losing Redis.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clients::{
    redis_cli, resubscribed, spawn_relay, spawn_stack_and_relay_settings, subscribed_connections,
    Forwarder, REDIS_ADDR,
};
use crate::device::{refused_code, Device};
use crate::helpers::{spawn_stack, Stack};

fn send(client_msg_id: &str, conversation: &str, content: &str) -> Value {
    json!({ "clientMsgId": client_msg_id, "conversationId": conversation, "kind": "text", "content": content })
}

/// Every page of `GET /api/sync` from `since`, `limit` changes at a time; the messages of all
/// pages in order, and the last cursor.
async fn sync_pages(stack: &Stack, token: &str, since: &str, limit: u32) -> (Vec<Value>, String) {
    let mut messages = Vec::new();
    let mut cursor = since.to_owned();
    for _ in 0..100 {
        let (status, page) = stack
            .get(&format!("/api/sync?since={cursor}&limit={limit}"), token)
            .await;
        assert_eq!(status, 200, "{page}");
        messages.extend(page["messages"].as_array().unwrap().iter().cloned());
        cursor = page["nextCursor"].as_str().unwrap().to_owned();
        if page["hasMore"] == false {
            return (messages, cursor);
        }
    }
    panic!("sync did not end within 100 pages");
}

fn client_msg_ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["clientMsgId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitting_and_posting_the_same_client_msg_id_stores_one_message_with_one_id() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let body = send("both-1", &conversation, "sent twice");

    // Act: the socket and REST race with the same clientMsgId
    let (ack, (status, stored)) = tokio::join!(
        a.request("send_message", body.clone()),
        stack.post("/api/messages", Some(&alice), &body)
    );

    // Assert
    assert_eq!(ack["success"], true, "{ack}");
    assert!(matches!(status, 200 | 201), "{status} {stored}");
    assert!(ack["id"].is_string(), "{ack}");
    assert_eq!(ack["id"], stored["id"]);
    let (_, page) = stack
        .get(
            &format!("/api/conversations/{conversation}/messages"),
            &alice,
        )
        .await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["id"], stored["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_device_catches_up_with_sync_on_every_missed_message_once_in_order() {
    // Arrange: bob's device records its cursor after a first message, then disconnects
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let ack = a
        .request("send_message", send("seen", &conversation, "before"))
        .await;
    assert_eq!(ack["success"], true, "{ack}");
    let mut b = Device::connect(&stack, 0, &bob).await;
    let first = b.request("sync", json!({})).await;
    assert_eq!(first["hasMore"], false, "{first}");
    assert_eq!(
        client_msg_ids(first["messages"].as_array().unwrap()),
        ["seen"]
    );
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    b.client.disconnect().await.unwrap();
    let missed: Vec<String> = (1..=7).map(|n| format!("missed-{n}")).collect();
    for id in &missed {
        let ack = a.request("send_message", send(id, &conversation, id)).await;
        assert_eq!(ack["success"], true, "{ack}");
    }

    // Act: reconnect and sync over the socket, and page the same range through REST
    let mut b = Device::connect(&stack, 0, &bob).await;
    let answer = b.request("sync", json!({ "since": cursor })).await;
    let (paged, _) = sync_pages(&stack, &bob, &cursor, 2).await;

    // Assert
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["hasMore"], false, "{answer}");
    let messages = answer["messages"].as_array().unwrap();
    assert_eq!(client_msg_ids(messages), missed);
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (2..=8).collect::<Vec<u64>>());
    assert_eq!(client_msg_ids(&paged), missed, "REST pages of 2");
    let distinct: HashSet<&Value> = paged.iter().map(|m| &m["id"]).collect();
    assert_eq!(
        distinct.len(),
        missed.len(),
        "a message repeated across pages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_stored_fails_the_ack_and_reaches_the_relayed_devices_as_message_failed(
) {
    // Arrange: a relay that reaches the API through a forwarder (its membership view is loaded
    // at connect); one send goes through, then the forwarder closes, so the API's port is
    // closed for that relay
    let (mut stack, mut settings) = spawn_stack_and_relay_settings().await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut api = Forwarder::start(stack.api_url.trim_start_matches("http://")).await;
    settings.api.url = api.url("http");
    let (relay, _stop) = spawn_relay(&mut stack, settings).await;
    let mut a1 = Device::connect(&stack, relay, &alice).await;
    let mut a2 = Device::connect(&stack, relay, &alice).await;
    let mut b = Device::connect(&stack, relay, &bob).await;
    let warm = a1
        .request("send_message", send("warm-1", &conversation, "warm"))
        .await;
    assert_eq!(warm["success"], true, "{warm}");
    assert_eq!(a1.next().await.0, "message_saved");
    for device in [&mut a2, &mut b] {
        assert_eq!(device.next().await.0, "receive_message");
        assert_eq!(device.next().await.0, "message_saved");
    }
    api.close().await;

    // Act
    let ack = a1
        .request("send_message", send("lost-1", &conversation, "lost"))
        .await;

    // Assert
    assert_eq!(ack["success"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "storage_failed", "{ack}");
    assert!(ack["error"]["message"].is_string(), "{ack}");
    assert_eq!(ack["error"]["retryable"], true, "{ack}");
    for device in [&mut a2, &mut b] {
        let (event, relayed) = device.next().await;
        assert_eq!(event, "receive_message", "{relayed}");
        assert_eq!(relayed["clientMsgId"], "lost-1");
        let (event, failed) = device.next().await;
        assert_eq!(event, "message_failed", "{failed}");
        assert_eq!(failed["clientMsgId"], "lost-1");
        assert_eq!(failed["conversationId"], conversation.as_str());
        assert_eq!(failed["error"]["code"], "storage_failed", "{failed}");
        assert_eq!(failed["error"]["retryable"], true, "{failed}");
    }
    a1.nothing_within(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_sender_id_is_refused_and_nothing_is_relayed_or_stored() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let mut b = Device::connect(&stack, 0, &bob).await;
    let mut spoofed = send("spoof-1", &conversation, "it was bob");
    spoofed["senderId"] = json!(bob_id);

    // Act: the spoofed send, then an honest one
    let refused = a.request("send_message", spoofed).await;
    let mut honest = send("honest-1", &conversation, "it was me");
    honest["senderId"] = json!(alice_id);
    let ack = a.request("send_message", honest).await;

    // Assert: refused, never trusted; the next thing bob sees is the honest message
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "validation_failed", "{refused}");
    assert_eq!(ack["success"], true, "{ack}");
    let (event, relayed) = b.next().await;
    assert_eq!(event, "receive_message", "{relayed}");
    assert_eq!(relayed["clientMsgId"], "honest-1", "{relayed}");
    assert_eq!(relayed["senderId"], alice_id.as_str());
    let (_, page) = stack
        .get(&format!("/api/conversations/{conversation}/messages"), &bob)
        .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["messages"][0]["id"], ack["id"], "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_with_a_logged_out_token_is_refused_with_connect_error_token_revoked() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    stack.logout(&alice).await;

    // Act
    let code = refused_code(&stack, 0, &alice).await;

    // Assert
    assert_eq!(code, "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_redis_subscription_is_killed_resubscribes_and_delivers_again() {
    // Arrange: a relay reaching Redis through a forwarder, so its connections are known
    let (mut stack, mut settings) = spawn_stack_and_relay_settings().await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let redis = Forwarder::start(REDIS_ADDR).await;
    settings.redis.url = redis.url("redis");
    let (relay, _stop) = spawn_relay(&mut stack, settings).await;
    let mut b = Device::connect(&stack, relay, &bob).await;
    let killed = subscribed_connections(&redis.upstreams());
    assert_eq!(
        killed.len(),
        1,
        "the relay's pub/sub connection: {killed:?}"
    );

    // Act: the Redis server drops the relay's pub/sub connection, then a message is sent
    let answer = redis_cli(&["CLIENT", "KILL", "ID", &killed[0]]);
    assert_eq!(answer.trim(), "1", "CLIENT KILL answered {answer}");
    resubscribed(&redis, &killed).await;
    let (status, stored) = stack
        .post(
            "/api/messages",
            Some(&alice),
            &send("after-kill", &conversation, "still here"),
        )
        .await;

    // Assert
    assert_eq!(status, 201, "{stored}");
    let (event, message) = b.next().await;
    assert_eq!(event, "receive_message", "{message}");
    assert_eq!(message["id"], stored["id"]);
}
