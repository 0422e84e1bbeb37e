//! The relay's internal routes (`/internal/relay/…`): service-token authentication, the batch
//! store (group commit) answering per message, and the look-ups the relay's port needs.

use crate::helpers::{id_of, spawn_app, TestApp, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use shared::auth::JwtKeys;

impl TestApp {
    fn keys(&self) -> JwtKeys {
        JwtKeys::new(&self.settings.jwt).expect("test keys")
    }

    /// A fresh service token, as a relay mints it.
    fn service_token(&self) -> String {
        self.keys().issue_service().expect("a service token").0
    }

    /// The `jti` of a user token.
    fn jti(&self, token: &str) -> String {
        self.keys().verify(token).expect("a valid user token").jti
    }

    /// Post `items` as the relay does; one outcome per item, in order.
    async fn store_batch(&self, items: Vec<Value>) -> Vec<Value> {
        let count = items.len();
        let reply = self
            .post(
                "/internal/relay/messages",
                &self.service_token(),
                &json!({ "items": items }),
            )
            .await;
        let outcomes = reply.expect(200)["outcomes"]
            .as_array()
            .expect("an array of outcomes")
            .clone();
        assert_eq!(outcomes.len(), count, "{}", reply.text);
        outcomes
    }
}

/// The error code of a refused outcome ("" for a stored message).
fn code(outcome: &Value) -> &str {
    outcome["error"]["code"].as_str().unwrap_or("")
}

fn item(sender: &str, jti: &str, message: Value) -> Value {
    json!({ "sender": sender, "jti": jti, "message": message })
}

fn text(cmid: &str, conversation: &str, content: &str) -> Value {
    json!({ "clientMsgId": cmid, "conversationId": conversation, "content": content })
}

#[tokio::test]
async fn the_internal_routes_take_service_tokens_only_and_the_public_ones_refuse_them() {
    // Arrange
    let app = spawn_app().await;
    let (token, user) = app.register("alice").await;
    let service = app.service_token();
    let path = format!("/internal/relay/users/{}/memberships", user.id);

    // Act / Assert
    app.get(&path, &token)
        .await
        .expect_error(401, "invalid_token");
    app.request(Method::GET, &path, None, None)
        .await
        .expect_error(401, "missing_token");
    app.get(&path, "not.a.token")
        .await
        .expect_error(401, "invalid_token");
    app.get(&path, &service).await.expect(200);
    app.get("/api/auth/me", &service)
        .await
        .expect_error(401, "invalid_token");
    app.get("/api/conversations", &service)
        .await
        .expect_error(401, "invalid_token");
}

#[tokio::test]
async fn a_batch_answers_each_message_in_order_and_refuses_only_the_bad_ones() {
    // Arrange
    let app = spawn_app().await;
    let users = app.register_many(&["alice", "bob", "carol", "dave"]).await;
    let (alice_token, alice) = &users[0];
    let (bob_token, bob) = &users[1];
    let (_, carol) = &users[2];
    let (dave_token, _) = &users[3];
    let ab = app.direct(alice_token, bob).await;
    let stranger = app.direct(bob_token, carol).await;
    let stored = app.post_message(alice_token, &ab, "stored", "first").await;
    stored.expect(201);
    let (a, jti) = (alice.id.to_string(), app.jti(alice_token));
    let dave_jti = app.jti(dave_token);
    let batch = vec![
        item(&a, &jti, text("m1", &ab, "one")),
        item(&a, &jti, text("m2", &stranger, "not a member")),
        item(&a, &jti, text("m1", &ab, "one")),
        item(&a, &jti, text("stored", &ab, "first")),
        item(&a, &jti, text("stored", &ab, "changed")),
        item(
            &a,
            &jti,
            json!({ "clientMsgId": "m3", "recipientId": carol.id, "content": "hi carol" }),
        ),
        item(&a, &jti, text("m4", &ab, "   ")),
        item(&a, &dave_jti, text("m5", &ab, "someone else's session")),
        item(&a, &jti, text("m6", &ab, "two")),
    ];

    // Act
    let outcomes = app.store_batch(batch).await;

    // Assert
    let code = |i: usize| code(&outcomes[i]);
    let message = |i: usize| outcomes[i]["message"].clone();
    assert_eq!(message(0)["seq"], 2);
    assert_eq!(code(1), "conversation_not_found");
    assert_eq!(
        message(2)["id"],
        message(0)["id"],
        "a duplicate answers the first"
    );
    assert_eq!(
        message(3)["id"],
        stored.body["id"],
        "a retry answers the original"
    );
    assert_eq!(code(4), "idempotency_mismatch");
    assert_eq!(message(5)["seq"], 1);
    assert_ne!(message(5)["conversationId"], json!(ab));
    assert_eq!(code(6), "validation_failed");
    assert_eq!(code(7), "token_revoked");
    assert_eq!(message(8)["seq"], 3);
    assert_eq!(outcomes[1]["error"]["retryable"], false);
    let seqs: Vec<i64> = app
        .all_messages(alice_token, &ab)
        .await
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[tokio::test]
async fn a_caller_asking_for_saved_gets_what_storing_assigned_for_the_messages_it_can_rebuild() {
    // Arrange
    let app = spawn_app().await;
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let (alice_token, alice) = &users[0];
    let (_, bob) = &users[1];
    let (_, carol) = &users[2];
    let ab = app.direct(alice_token, bob).await;
    let (a, jti) = (alice.id.to_string(), app.jti(alice_token));
    let batch = json!({
        "items": [
            item(&a, &jti, text("m1", &ab, "one")),
            item(&a, &jti, json!({ "clientMsgId": "m2", "recipientId": carol.id, "content": "hi" })),
            item(&a, &jti, text("m3", &ab, "   ")),
        ],
        "announce": "caller",
        "answers": "saved",
    });

    // Act
    let reply = app
        .post("/internal/relay/messages", &app.service_token(), &batch)
        .await;

    // Assert: the text message to a conversation named comes back as what storing gave it; a
    // message to a user (whose conversation the API made) whole; a refusal as always.
    let outcomes = reply.expect(200)["outcomes"].clone();
    let stored = app.all_messages(alice_token, &ab).await;
    assert_eq!(
        outcomes[0],
        json!({ "saved": { "id": stored[0]["id"], "seq": 1, "createdAt": stored[0]["createdAt"] } })
    );
    assert_eq!(outcomes[1]["message"]["clientMsgId"], "m2");
    assert_eq!(code(&outcomes[2]), "validation_failed");
}

#[tokio::test]
async fn a_revoked_session_stores_nothing_and_creates_no_conversation_while_the_others_store() {
    // Arrange: alice logs out one of her two tokens; bob's session is active.
    let app = spawn_app().await;
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let (revoked_token, alice) = &users[0];
    let (bob_token, bob) = &users[1];
    let (_, carol) = &users[2];
    let login = app.login("alice", PASSWORD).await;
    let alice_token = login.expect(200)["token"].as_str().unwrap().to_owned();
    let ab = app.direct(bob_token, alice).await;
    let (a, revoked) = (alice.id.to_string(), app.jti(revoked_token));
    let (b, b_jti) = (bob.id.to_string(), app.jti(bob_token));
    app.request(Method::POST, "/api/auth/logout", Some(revoked_token), None)
        .await
        .expect(204);
    let batch = vec![
        item(&a, &revoked, text("r1", &ab, "revoked, by conversation")),
        item(&b, &b_jti, text("b1", &ab, "bob's")),
        item(
            &a,
            &revoked,
            json!({ "clientMsgId": "r2", "recipientId": carol.id, "content": "hi carol" }),
        ),
        item(&a, &revoked, text("r3", &ab, "   ")),
        item(
            &b,
            &revoked,
            text("b2", &ab, "bob under alice's revoked session"),
        ),
    ];

    // Act
    let outcomes = app.store_batch(batch).await;

    // Assert
    for i in [0, 2, 3, 4] {
        assert_eq!(
            code(&outcomes[i]),
            "token_revoked",
            "item {i}: {outcomes:?}"
        );
    }
    assert_eq!(outcomes[1]["message"]["seq"], 1, "{outcomes:?}");
    let stored: Vec<Value> = app.all_messages(&alice_token, &ab).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["clientMsgId"], "b1");
    assert_eq!(
        app.conversations(&alice_token).await.len(),
        1,
        "the revoked session's recipientId send created a conversation"
    );
}

#[tokio::test]
async fn a_batch_of_refused_recipient_sends_answers_each_refusal() {
    // Arrange
    let app = spawn_app().await;
    let (token, alice) = app.register("alice").await;
    let (a, jti) = (alice.id.to_string(), app.jti(&token));
    let batch = vec![
        item(
            &a,
            &jti,
            json!({ "clientMsgId": "m1", "recipientId": "999999", "content": "hi" }),
        ),
        item(
            &a,
            &jti,
            json!({ "clientMsgId": "m2", "recipientId": a, "content": "me" }),
        ),
    ];

    // Act
    let outcomes = app.store_batch(batch).await;

    // Assert
    assert_eq!(code(&outcomes[0]), "user_not_found", "{outcomes:?}");
    assert_eq!(code(&outcomes[1]), "validation_failed", "{outcomes:?}");
    assert!(app.conversations(&token).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_sharing_keys_store_each_message_once_with_gap_free_seqs() {
    // Arrange: four relays post the same 24 messages (two senders, two conversations, one of
    // them shared) at once, each in batches of 4 in its own order, so that batches race for the
    // same keys and for the same conversations' seqs.
    let app = std::sync::Arc::new(spawn_app().await);
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let (alice_token, alice) = &users[0];
    let (bob_token, bob) = &users[1];
    let (_, carol) = &users[2];
    let ab = app.direct(alice_token, bob).await;
    let group = app
        .create_conversation(
            alice_token,
            &[&bob.id.to_string(), &carol.id.to_string()],
            Some("all"),
        )
        .await;
    let (a, a_jti) = (alice.id.to_string(), app.jti(alice_token));
    let (b, b_jti) = (bob.id.to_string(), app.jti(bob_token));
    let messages: Vec<Value> = (0..24)
        .map(|i| {
            let (sender, jti) = if i % 2 == 0 {
                (&a, &a_jti)
            } else {
                (&b, &b_jti)
            };
            let conversation = if i % 3 == 0 { &ab } else { &group };
            item(
                sender,
                jti,
                text(&format!("k{i}"), conversation, &format!("m{i}")),
            )
        })
        .collect();

    // Act
    let relays: Vec<_> = (0..4_usize)
        .map(|relay| {
            let app = app.clone();
            let mut mine = messages.clone();
            mine.rotate_left(relay * 5);
            if relay % 2 == 1 {
                mine.reverse();
            }
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for batch in mine.chunks(4) {
                    let outcomes = app.store_batch(batch.to_vec()).await;
                    for (sent, outcome) in batch.iter().zip(outcomes) {
                        let key = sent["message"]["clientMsgId"].as_str().unwrap().to_owned();
                        answers.push((key, outcome["message"].clone()));
                    }
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for relay in relays {
        answers.extend(relay.await.expect("relay task"));
    }

    // Assert: every answer to a key names one message; 24 messages stored, seqs 1..n per
    // conversation without gaps.
    let mut ids: std::collections::HashMap<String, String> = Default::default();
    for (key, message) in &answers {
        assert!(message.is_object(), "{key} was refused: {message}");
        let id = id_of(message);
        let first = ids.entry(key.clone()).or_insert_with(|| id.clone());
        assert_eq!(*first, id, "{key} answered by two messages");
    }
    assert_eq!(ids.len(), 24);
    let mut stored = 0;
    for conversation in [&ab, &group] {
        let seqs: Vec<i64> = app
            .all_messages(alice_token, conversation)
            .await
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        stored += seqs.len();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    }
    assert_eq!(stored, 24);
}

#[tokio::test]
async fn a_batch_over_the_cap_is_refused_whole_with_400() {
    // Arrange
    let app = spawn_app().await;
    let (token, user) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let conversation = app.direct(&token, &bob).await;
    let jti = app.jti(&token);
    let items: Vec<Value> = (0..=shared::port::MAX_STORE_BATCH)
        .map(|i| {
            item(
                &user.id.to_string(),
                &jti,
                text(&format!("c{i}"), &conversation, "x"),
            )
        })
        .collect();

    // Act
    let reply = app
        .post(
            "/internal/relay/messages",
            &app.service_token(),
            &json!({ "items": items }),
        )
        .await;

    // Assert
    reply.expect_error(400, "validation_failed");
    assert!(app.all_messages(&token, &conversation).await.is_empty());
}

#[tokio::test]
async fn bad_input_on_the_internal_routes_answers_400_never_500() {
    let app = spawn_app().await;
    let service = app.service_token();
    app.get("/internal/relay/users/abc/memberships", &service)
        .await
        .expect_error(400, "validation_failed");
    app.post(
        "/internal/relay/messages",
        &service,
        &json!({ "items": "no" }),
    )
    .await
    .expect_error(400, "invalid_json");
    app.post(
        "/internal/relay/users/1/conversations/x/read",
        &service,
        &json!({ "upToSeq": 1 }),
    )
    .await
    .expect_error(400, "validation_failed");
    app.get("/internal/relay/users/1/sync?since=bogus", &service)
        .await
        .expect_error(400, "validation_failed");
}

#[tokio::test]
async fn the_look_ups_answer_what_the_relay_needs() {
    // Arrange
    let app = spawn_app().await;
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let (alice_token, alice) = &users[0];
    let (bob_token, bob) = &users[1];
    let (_, carol) = &users[2];
    let ab = app.direct(alice_token, bob).await;
    let bc = app.direct(bob_token, carol).await;
    let group = app
        .create_conversation(alice_token, &[&bob.id.to_string()], Some("two of us"))
        .await;
    app.send(bob_token, &ab, "hello").await;
    let service = app.service_token();
    let a = alice.id.to_string();
    let mut pair = [alice.id, bob.id];
    pair.sort();

    // Act / Assert: memberships and members; of the pair's two conversations, the direct one
    // is marked (where the relay sends their `recipientId` messages)
    let memberships = app
        .get(&format!("/internal/relay/users/{a}/memberships"), &service)
        .await;
    let expected = json!([
        { "conversationId": ab, "members": pair, "direct": true },
        { "conversationId": group, "members": pair, "direct": false },
    ]);
    assert_eq!(memberships.expect(200), &expected);
    let members = app
        .get(
            &format!("/internal/relay/users/{a}/conversations/{ab}/members"),
            &service,
        )
        .await;
    let expected = json!({ "conversationId": ab, "members": pair, "direct": true });
    assert_eq!(members.expect(200), &expected);
    app.get(
        &format!("/internal/relay/users/{a}/conversations/{bc}/members"),
        &service,
    )
    .await
    .expect_error(404, "conversation_not_found");

    // Sessions: alice's own, bob's jti named as alice's, then after logout.
    let jti = app.jti(alice_token);
    let session = |user: String, jti: String| {
        let path = format!("/internal/relay/users/{user}/sessions/{jti}");
        let service = service.clone();
        let app = &app;
        async move { app.get(&path, &service).await.expect(200)["active"].clone() }
    };
    assert_eq!(session(a.clone(), jti.clone()).await, true);
    assert_eq!(session(a.clone(), app.jti(bob_token)).await, false);
    app.request(Method::POST, "/api/auth/logout", Some(alice_token), None)
        .await
        .expect(204);
    assert_eq!(session(a.clone(), jti).await, false);

    // Receipts and sync.
    let read = app
        .post(
            &format!("/internal/relay/users/{a}/conversations/{ab}/read"),
            &service,
            &json!({ "upToSeq": 1 }),
        )
        .await;
    assert_eq!(read.expect(200)["readUpToSeq"], 1);
    let sync = app
        .get(&format!("/internal/relay/users/{a}/sync"), &service)
        .await;
    let body = sync.expect(200);
    assert_eq!(body["messages"][0]["conversationId"], json!(ab));
    assert!(body["nextCursor"].is_string());
    let _ = id_of(&body["messages"][0]);
}
