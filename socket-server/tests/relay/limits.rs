//! The relay's per-user limits: sends per second (ack `rate_limited`, retryable), sends waiting
//! to be stored per socket and per relay (counted by the limit that refused them), and
//! connections per user on one relay (CONNECT_ERROR `too_many_connections`), handshakes per IP
//! (429 with `Retry-After`, keyed on the client behind trusted proxies) and the `Origin`
//! allowlist (403), typing beyond its rate (dropped; never `success` for a non-member), and the
//! fan-out histogram.

use serde_json::json;

use crate::device::{connect_or_refusal, refused_code, Device};
use crate::helpers::{
    metric, spawn_stack_custom, spawn_stack_with, until_queries_wait_for_a_lock, REDIS_URL,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_per_user_rate_are_refused_as_rate_limited_and_retryable() {
    // Arrange: a burst of 2, refilled at 1 per second
    let stack = spawn_stack_with(1, |s| {
        s.limits.sends_burst = 2;
        s.limits.sends_per_sec = 1;
    })
    .await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let send = |n: usize| json!({ "clientMsgId": format!("rl-{n}"), "conversationId": conversation, "content": "hi" });

    // Act
    let mut acks = Vec::new();
    for n in 0..3 {
        acks.push(a.request("send_message", send(n)).await);
    }

    // Assert
    assert_eq!(acks[0]["success"], true, "{}", acks[0]);
    assert_eq!(acks[1]["success"], true, "{}", acks[1]);
    assert_eq!(acks[2]["success"], false, "{}", acks[2]);
    assert_eq!(acks[2]["error"]["code"], "rate_limited");
    assert_eq!(acks[2]["error"]["retryable"], true);
    // The next token comes within the second of the refill (the two sends took some of it).
    let wait = acks[2]["error"]["retryAfterMs"].as_u64();
    assert!(
        wait.is_some_and(|ms| (1..=1000).contains(&ms)),
        "{}",
        acks[2]
    );
    let metrics = stack.metrics(0).await;
    let refused = r#"relay_sends_refused_total{reason="sends_per_sec"}"#;
    assert_eq!(metric(&metrics, refused), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_beyond_its_rate_is_dropped_for_a_member_and_refused_for_anyone_else() {
    // Arrange: one typing event a second; alice and bob's conversation, carol outside it
    let stack = spawn_stack_with(1, |s| s.limits.typing_per_sec = 1).await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let (carol, _) = stack.register("carol").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let typing = json!({ "conversationId": conversation, "isTyping": true });
    let mut a = Device::connect(&stack, 0, &alice).await;
    let mut c = Device::connect(&stack, 0, &carol).await;

    // Act: ten events each, one after the other (all but one a second over the rate)
    let (mut member, mut outsider) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        member.push(a.request("typing", typing.clone()).await);
        outsider.push(c.request("typing", typing.clone()).await);
    }

    // Assert: the member is never refused; the outsider never told `success`, and refused
    // for the rate rather than looked up with the API once over it
    assert!(
        member.iter().all(|ack| ack["success"] == true),
        "{member:?}"
    );
    assert!(
        outsider.iter().all(|ack| ack["success"] == false),
        "{outsider:?}"
    );
    let code = |ack: &serde_json::Value| ack["error"]["code"].as_str().unwrap_or("").to_owned();
    assert_eq!(code(&outsider[0]), "conversation_not_found");
    assert!(
        outsider.iter().any(|ack| code(ack) == "rate_limited"),
        "{outsider:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_storage_queues_are_refused_and_counted_by_the_limit_that_refused_them() {
    // Arrange: one send may wait to be stored per socket, two per relay; storage held by a lock
    // the test takes, and a relay that waits as long as it takes for the API
    let stack = spawn_stack_custom(
        REDIS_URL,
        1,
        |_| {},
        |relay| {
            relay.api.timeout_ms = 600_000;
            relay.limits.sends_queued_per_socket = 1;
            relay.limits.sends_in_flight = 2;
        },
    )
    .await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a1 = Device::connect(&stack, 0, &alice).await;
    let a2 = Device::connect(&stack, 0, &alice).await;
    let mut b = Device::connect(&stack, 0, &bob).await;
    let send =
        |id: &str| json!({ "clientMsgId": id, "conversationId": conversation, "content": id });
    let db = stack.hold_messages().await;

    // Act: a send that waits on each of alice's devices (no ack asked: then rust_socketio has
    // one ack at a time to match), a second one on the first device, one more from bob once
    // both are admitted (relayed)
    a1.client
        .emit("send_message", send("held-1"))
        .await
        .unwrap();
    let socket_full = a1.request("send_message", send("over-socket")).await;
    a2.client
        .emit("send_message", send("held-2"))
        .await
        .unwrap();
    let mut relayed = Vec::new();
    for _ in 0..2 {
        let (event, body) = b.next().await;
        relayed.push((event, body["clientMsgId"].clone()));
    }
    let relay_full = b.request("send_message", send("over-relay")).await;
    let held = stack.metrics(0).await;

    // Assert: refused, retryable, each by its own limit; the refused send was not relayed
    assert_eq!(
        socket_full["error"]["code"], "rate_limited",
        "{socket_full}"
    );
    assert_eq!(socket_full["error"]["retryable"], true, "{socket_full}");
    assert_eq!(
        socket_full["error"].get("retryAfterMs"),
        None,
        "no time to promise"
    );
    assert!(
        socket_full["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{socket_full}"
    );
    assert_eq!(relay_full["error"]["code"], "rate_limited", "{relay_full}");
    assert!(
        relay_full["error"]["message"]
            .as_str()
            .unwrap()
            .contains("relay"),
        "{relay_full}"
    );
    assert_eq!(
        relayed,
        [
            ("receive_message".to_owned(), json!("held-1")),
            ("receive_message".to_owned(), json!("held-2")),
        ]
    );
    let refused = |reason: &str| {
        metric(
            &held,
            &format!("relay_sends_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("sends_queued_per_socket"), 1);
    assert_eq!(refused("sends_in_flight"), 1);
    assert_eq!(refused("sends_per_sec"), 0);
    assert_eq!(metric(&held, "relay_sends_in_flight"), 2);

    // Act: release storage
    db.batch_execute("COMMIT").await.unwrap();

    // Assert: the two admitted sends are stored, the refused ones are not
    let mut saved = Vec::new();
    for _ in 0..2 {
        let (event, body) = b.next().await;
        assert_eq!(event, "message_saved", "{body}");
        saved.push(body["clientMsgId"].as_str().unwrap().to_owned());
    }
    saved.sort();
    assert_eq!(saved, ["held-1", "held-2"]);
    let rows = db
        .query("SELECT client_msg_id FROM messages ORDER BY seq", &[])
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(stored, ["held-1", "held-2"]);
}

/// A relay spending 1 send a second with bursts of 20 (the API's own budget out of the way),
/// and alice, connected to it, after 40 REST sends it saw delivered to her device: her budget
/// there is 20 in debt, ~21 s from its next token. Her device and the conversation.
async fn alice_in_debt_by_rest() -> (crate::helpers::Stack, String, Device, String) {
    let stack = spawn_stack_with(1, |s| {
        s.limits.sends_burst = 20;
        s.limits.sends_per_sec = 1;
    })
    .await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    for n in 0..40 {
        let body = json!({ "clientMsgId": format!("rest-{n}"), "conversationId": conversation, "content": "hi" });
        let (status, reply) = stack.post("/api/messages", Some(&alice), &body).await;
        assert_eq!(status, 201, "{reply}");
    }
    let mut delivered = 0;
    while delivered < 40 {
        if a.next().await.0 == "receive_message" {
            delivered += 1;
        }
    }
    (stack, alice, a, conversation)
}

/// `device` sends one message to `conversation` over its socket; the ack.
async fn send_one(device: &mut Device, conversation: &str) -> serde_json::Value {
    let body =
        json!({ "clientMsgId": "socket-1", "conversationId": conversation, "content": "hi" });
    device.request("send_message", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_sends_draw_from_the_same_budget_as_the_socket() {
    // Arrange: alice's REST sends put her relay budget 20 in debt
    let (_stack, _, mut a, conversation) = alice_in_debt_by_rest().await;

    // Act: the budget is 20 in debt, ~21 s from its next token
    let ack = send_one(&mut a, &conversation).await;

    // Assert
    assert_eq!(ack["success"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_coming_back_does_not_give_a_spent_send_budget_back() {
    // Arrange: alice's REST sends put her relay budget 20 in debt; then her only socket leaves
    let (stack, alice, a, conversation) = alice_in_debt_by_rest().await;
    a.client.disconnect().await.unwrap();
    while metric(&stack.metrics(0).await, "relay_users") > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Act: she comes back at once
    let mut again = Device::connect(&stack, 0, &alice).await;
    let ack = send_one(&mut again, &conversation).await;

    // Assert
    assert_eq!(ack["success"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_sends_draw_from_the_same_budget_as_rest() {
    // Arrange: 1/s with bursts of 20 on the API, the relay's own budget out of the way; alice
    // sends 40 messages over the socket, each acknowledged once stored
    let stack = spawn_stack_custom(
        REDIS_URL,
        1,
        |api| {
            api.limits.sends_burst = 20;
            api.limits.sends_per_sec = 1;
        },
        |_| {},
    )
    .await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    for n in 0..40 {
        let body = json!({ "clientMsgId": format!("socket-{n}"), "conversationId": conversation, "content": "hi" });
        let ack = a.request("send_message", body).await;
        assert_eq!(ack["success"], true, "{ack}");
    }

    // Act: the API's budget is 20 in debt, ~21 s from its next token
    let body = json!({ "clientMsgId": "rest-1", "conversationId": conversation, "content": "hi" });
    let (status, reply) = stack.post("/api/messages", Some(&alice), &body).await;

    // Assert
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_per_user_limit_is_refused_with_too_many_connections() {
    // Arrange: two sockets of alice's are allowed on the relay, and both are open
    let stack = spawn_stack_with(1, |s| s.limits.connections_per_user = 2).await;
    let (alice, _) = stack.register("alice").await;
    let _one = Device::connect(&stack, 0, &alice).await;
    let _two = Device::connect(&stack, 0, &alice).await;

    // Act
    let code = refused_code(&stack, 0, &alice).await;

    // Assert
    assert_eq!(code, "too_many_connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_at_the_same_time_stay_within_the_per_user_limit() {
    // Arrange: one socket of alice's allowed; two of her connects past the limit check at
    // once, each waiting for its membership look-up (held by a lock on `members`)
    let stack = spawn_stack_with(1, |s| s.limits.connections_per_user = 1).await;
    let (alice, _) = stack.register("alice").await;
    let db = stack.lock_table("members", "ACCESS EXCLUSIVE").await;
    let connects = futures::future::join_all((0..2).map(|_| connect_or_refusal(&stack, 0, &alice)));
    let release = async {
        until_queries_wait_for_a_lock(&db, 2).await;
        db.batch_execute("COMMIT").await.unwrap();
    };

    // Act
    let (outcomes, ()) = tokio::join!(connects, release);

    // Assert: one admitted, the other refused
    let refusals: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
    assert_eq!(refusals, ["too_many_connections"]);
}

/// Status of an Engine.IO polling handshake on relay 0, with an optional `Origin`.
async fn handshake(stack: &crate::helpers::Stack, origin: Option<&str>) -> u16 {
    let mut request = stack.http.get(format!(
        "{}/socket.io/?EIO=4&transport=polling",
        stack.relay_url(0)
    ));
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_from_an_origin_off_the_allowlist_are_refused_with_403() {
    // Arrange
    let stack = spawn_stack_with(1, |s| {
        s.cors.allowed_origins =
            Some(shared::net::AllowedOrigins::parse(&["https://app.example"]).expect("an origin"));
    })
    .await;

    // Act
    let allowed = handshake(&stack, Some("https://app.example")).await;
    let foreign = handshake(&stack, Some("https://evil.example")).await;
    let without_origin = handshake(&stack, None).await;

    // Assert: node, mobile apps and bots send no Origin; the token authenticates them
    assert_eq!((allowed, foreign, without_origin), (200, 403, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_beyond_the_per_ip_rate_are_refused_with_429_and_retry_after() {
    // Arrange
    let stack = spawn_stack_with(1, |s| s.limits.connects_per_ip_per_sec = 2).await;

    // Act
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(forwarded_handshake(&stack, None).await);
    }

    // Assert: `Retry-After` in whole seconds (a 2/s bucket refills within one)
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, vec![200, 200, 429]);
    assert_eq!(answers[2].1.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_connect_rate_is_per_forwarded_client() {
    // Arrange: the test client is the load balancer (127.0.0.1)
    let stack = spawn_stack_with(1, |s| {
        s.limits.connects_per_ip_per_sec = 2;
        s.socket.trusted_proxies =
            shared::net::TrustedProxies::parse(&["127.0.0.1", "::1"]).expect("addresses");
    })
    .await;
    for _ in 0..2 {
        forwarded_handshake(&stack, Some("198.51.100.1")).await;
    }

    // Act
    let same_client = forwarded_handshake(&stack, Some("198.51.100.1")).await.0;
    let mut other_clients = Vec::new();
    for n in 2..6 {
        let client = format!("198.51.100.{n}");
        other_clients.push(forwarded_handshake(&stack, Some(&client)).await.0);
    }

    // Assert
    assert_eq!(same_client, 429);
    assert_eq!(other_clients, vec![200; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_do_not_change_the_connect_budget() {
    // Arrange: no trusted proxies configured
    let stack = spawn_stack_with(1, |s| s.limits.connects_per_ip_per_sec = 2).await;

    // Act: a client claims a fresh address on every attempt
    let mut statuses = Vec::new();
    for n in 0..3 {
        let claimed = format!("198.51.100.{n}");
        statuses.push(forwarded_handshake(&stack, Some(&claimed)).await.0);
    }

    // Assert
    assert_eq!(statuses, vec![200, 200, 429]);
}

/// Status and `Retry-After` of a polling handshake on relay 0, sent with `X-Forwarded-For`.
async fn forwarded_handshake(
    stack: &crate::helpers::Stack,
    forwarded_for: Option<&str>,
) -> (u16, Option<String>) {
    let mut request = stack.http.get(format!(
        "{}/socket.io/?EIO=4&transport=polling",
        stack.relay_url(0)
    ));
    if let Some(client) = forwarded_for {
        request = request.header("X-Forwarded-For", client);
    }
    let response = request.send().await.expect("the relay answers");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status().as_u16(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_send_is_measured_in_the_fanout_histogram() {
    // Arrange
    let stack = spawn_stack_with(1, |_| {}).await;
    let (alice, _) = stack.register("alice").await;
    let (_, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;

    // Act
    let ack = a
        .request(
            "send_message",
            json!({ "clientMsgId": "m-1", "conversationId": conversation, "content": "hi" }),
        )
        .await;
    let metrics = stack.metrics(0).await;

    // Assert
    assert_eq!(ack["success"], true, "{ack}");
    assert!(
        metrics.contains("relay_send_fanout_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains("relay_outbox_drops_total 0"), "{metrics}");
}
