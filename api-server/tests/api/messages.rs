//! `POST /api/messages` (exactly once, gap-free `seq`) and the message pages.

use crate::helpers::{id_of, spawn_app, spawn_app_with, TestApp};
use serde_json::{json, Value};
use std::collections::HashSet;

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// A page: its seqs and `hasMore`.
async fn page(app: &TestApp, token: &str, id: &str, query: &str) -> (Vec<i64>, bool) {
    let reply = app.messages_page(token, id, query).await;
    let body = reply.expect(200);
    let messages = body["messages"].as_array().expect("messages").clone();
    (seqs(&messages), body["hasMore"].as_bool().expect("hasMore"))
}

#[tokio::test]
async fn sending_a_message_answers_201_with_the_stored_message() {
    // Arrange
    let app = spawn_app().await;
    let (token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;

    // Act
    let reply = app.post_message(&token, &id, "tmp-1", "hello bob").await;

    // Assert
    let body = reply.expect(201);
    assert!(!id_of(body).is_empty());
    assert_eq!(body["clientMsgId"], "tmp-1");
    assert_eq!(body["conversationId"], id);
    assert_eq!(body["senderId"], alice.id.to_string());
    assert_eq!(body["seq"], 1);
    assert_eq!(body["kind"], "text");
    assert_eq!(body["content"], "hello bob");
    assert!(body["createdAt"].is_string(), "{body}");
    assert_eq!(body["status"], "sent");
}

#[tokio::test]
async fn sending_twice_with_the_same_client_msg_id_stores_one_message() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    let first = app.post_message(&token, &id, "tmp-1", "hello").await;
    let first = first.expect(201).clone();

    // Act
    let retry = app.post_message(&token, &id, "tmp-1", "hello").await;

    // Assert
    let retry = retry.expect(200);
    for field in ["id", "seq", "createdAt", "conversationId", "senderId"] {
        assert_eq!(retry[field], first[field], "{field}");
    }
    let all = app.all_messages(&token, &id).await;
    assert_eq!(all.len(), 1, "{all:?}");
}

#[tokio::test]
async fn reusing_a_client_msg_id_for_different_content_answers_422_idempotency_mismatch() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    app.post_message(&token, &id, "tmp-1", "hello")
        .await
        .expect(201);

    // Act
    let reply = app
        .post_message(&token, &id, "tmp-1", "something else")
        .await;

    // Assert
    reply.expect_error(422, "idempotency_mismatch");
    let all = app.all_messages(&token, &id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["content"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sends_with_one_client_msg_id_store_one_message() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;

    // Act
    let replies = futures::future::join_all(
        (0..50).map(|_| app.post_message(&token, &id, "same-tmp-id", "only once")),
    )
    .await;

    // Assert
    let created = replies.iter().filter(|r| r.status.as_u16() == 201).count();
    let retried = replies.iter().filter(|r| r.status.as_u16() == 200).count();
    let others: Vec<String> = replies
        .iter()
        .filter(|r| !matches!(r.status.as_u16(), 200 | 201))
        .map(|r| format!("{} {}", r.status, r.text))
        .collect();
    assert!(others.is_empty(), "unexpected answers: {others:?}");
    assert_eq!((created, retried), (1, 49));
    let ids: HashSet<String> = replies.iter().map(|r| id_of(&r.body)).collect();
    assert_eq!(ids.len(), 1, "every answer names the same message: {ids:?}");
    let all = app.all_messages(&token, &id).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["seq"], 1);
    assert_eq!(Some(id_of(&all[0])), ids.into_iter().next());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_senders_in_one_conversation_get_seqs_one_to_n_without_gaps() {
    // Arrange
    let app = spawn_app().await;
    let names: Vec<String> = (1..=20).map(|i| format!("sender{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let users = app.register_many(&names).await;
    let others: Vec<String> = users[1..].iter().map(|(_, u)| u.id.to_string()).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let id = app
        .create_conversation(&users[0].0, &others, Some("crowd"))
        .await;
    const PER_SENDER: usize = 3;

    // Act
    let sends = users
        .iter()
        .flat_map(|(token, _)| (0..PER_SENDER).map(|i| (token.as_str(), i)));
    let replies = futures::future::join_all(sends.map(|(token, i)| {
        let (app, id) = (&app, &id);
        async move {
            let cmid = format!("m-{}", uuid::Uuid::new_v4().simple());
            app.post_message(token, id, &cmid, &format!("message {i}"))
                .await
        }
    }))
    .await;

    // Assert
    let n = (users.len() * PER_SENDER) as i64;
    let mut answered: Vec<i64> = replies
        .iter()
        .map(|r| r.expect(201)["seq"].as_i64().expect("seq"))
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, (1..=n).collect::<Vec<_>>());
    let stored = seqs(&app.all_messages(&users[0].0, &id).await);
    assert_eq!(stored, (1..=n).collect::<Vec<_>>());
    let conversation = app
        .get(&format!("/api/conversations/{id}"), &users[0].0)
        .await;
    assert_eq!(conversation.expect(200)["lastSeq"], n);
}

#[tokio::test]
async fn sending_to_a_recipient_creates_the_direct_conversation_once() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let send_to_bob = |cmid: &'static str| {
        let (app, token) = (&app, &alice_token);
        let body = json!({
            "clientMsgId": cmid,
            "recipientId": bob.id.to_string(),
            "kind": "text",
            "content": "hi",
        });
        async move { app.send_raw(token, &body).await }
    };

    // Act
    let first = send_to_bob("r-1").await;
    let second = send_to_bob("r-2").await;

    // Assert
    let first = first.expect(201).clone();
    let second = second.expect(201).clone();
    assert_eq!(first["conversationId"], second["conversationId"]);
    assert_eq!(
        (first["seq"].as_i64(), second["seq"].as_i64()),
        (Some(1), Some(2))
    );
    let bobs = app.conversations(&bob_token).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["id"], first["conversationId"]);
    assert_eq!(bobs[0]["kind"], "direct");
    let mut members: Vec<String> = bobs[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user"]["id"].as_str().expect("id").to_owned())
        .collect();
    members.sort();
    let mut expected = vec![alice.id.to_string(), bob.id.to_string()];
    expected.sort();
    assert_eq!(members, expected);
}

#[tokio::test]
async fn sending_to_a_recipient_uses_the_existing_direct_conversation() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (_, carol) = app.register("carol").await;
    let pair = app.direct(&alice_token, &carol).await;

    // Act
    let reply = app
        .send_raw(
            &alice_token,
            &json!({
                "clientMsgId": "r-1",
                "recipientId": carol.id.to_string(),
                "kind": "text",
                "content": "hi",
            }),
        )
        .await;

    // Assert
    assert_eq!(reply.expect(201)["conversationId"], pair);
    assert_eq!(app.conversations(&alice_token).await.len(), 1);
}

#[tokio::test]
async fn sending_to_an_unknown_recipient_answers_404_user_not_found() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let reply = app
        .send_raw(
            &token,
            &json!({
                "clientMsgId": "r-1",
                "recipientId": "987654321",
                "kind": "text",
                "content": "hi",
            }),
        )
        .await;

    // Assert
    reply.expect_error(404, "user_not_found");
    assert!(app.conversations(&token).await.is_empty());
}

#[tokio::test]
async fn a_sender_id_in_the_body_is_ignored_and_the_token_user_is_the_sender() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;

    // Act
    let reply = app
        .send_raw(
            &alice_token,
            &json!({
                "clientMsgId": "spoof-1",
                "conversationId": id,
                "senderId": bob.id.to_string(),
                "kind": "text",
                "content": "it was bob, honest",
            }),
        )
        .await;

    // Assert
    assert_eq!(reply.expect(201)["senderId"], alice.id.to_string());
    let stored = app.all_messages(&alice_token, &id).await;
    assert_eq!(stored[0]["senderId"], alice.id.to_string());
}

#[tokio::test]
async fn the_same_client_msg_id_from_two_senders_stores_two_messages() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;

    // Act
    let from_alice = app.post_message(&alice_token, &id, "tmp-1", "a").await;
    let from_bob = app.post_message(&bob_token, &id, "tmp-1", "b").await;

    // Assert
    let a = id_of(from_alice.expect(201));
    let b = id_of(from_bob.expect(201));
    assert_ne!(a, b);
    assert_eq!(seqs(&app.all_messages(&bob_token, &id).await), [1, 2]);
}

#[tokio::test]
async fn invalid_messages_answer_400_validation_failed_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    let base =
        json!({ "clientMsgId": "v-1", "conversationId": id, "kind": "text", "content": "ok" });
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("content", json!("   ")), "content"),
        (with("content", json!("x".repeat(4001))), "content"),
        (with("content", json!("nul\u{0}byte")), "content"),
        (with("kind", json!("sticker")), "kind"),
        (with("clientMsgId", json!("")), "clientMsgId"),
        (with("clientMsgId", json!("has space")), "clientMsgId"),
        (with("clientMsgId", json!("x".repeat(129))), "clientMsgId"),
    ];

    for (body, field) in cases {
        // Act
        let reply = app.send_raw(&token, &body).await;

        // Assert
        let error = reply.expect_error(400, "validation_failed");
        assert_eq!(error["field"], field, "for {body}: {}", reply.text);
    }
    assert!(app.all_messages(&token, &id).await.is_empty());
}

#[tokio::test]
async fn a_message_must_name_exactly_one_of_conversation_and_recipient() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;

    // Act
    let neither = app
        .send_raw(
            &token,
            &json!({ "clientMsgId": "x-1", "kind": "text", "content": "hi" }),
        )
        .await;
    let both = app
        .send_raw(
            &token,
            &json!({
                "clientMsgId": "x-2",
                "conversationId": id,
                "recipientId": bob.id.to_string(),
                "kind": "text",
                "content": "hi",
            }),
        )
        .await;

    // Assert
    neither.expect_error(400, "validation_failed");
    both.expect_error(400, "validation_failed");
}

#[tokio::test]
async fn content_is_limited_in_characters_not_bytes() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    let content = "é".repeat(4000);

    // Act
    let reply = app.post_message(&token, &id, "long-1", &content).await;

    // Assert
    assert_eq!(reply.expect(201)["content"], content);
}

#[tokio::test]
async fn an_image_message_keeps_its_kind_and_attachment_id() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    let upload = app
        .upload(&token, crate::attachments_media::png(8, 8))
        .await;
    let upload = upload["id"].as_str().expect("an upload id");

    // Act
    let reply = app
        .send_raw(
            &token,
            &json!({
                "clientMsgId": "img-1",
                "conversationId": id,
                "kind": "image",
                "content": "a photo",
                "attachmentId": upload,
            }),
        )
        .await;

    // Assert
    let body = reply.expect(201);
    assert_eq!(body["kind"], "image");
    assert_eq!(body["attachmentId"], upload);
    let stored = app.all_messages(&token, &id).await;
    assert_eq!(stored[0]["attachmentId"], upload);
    assert_eq!(stored[0]["attachment"]["id"], upload);
}

#[tokio::test]
async fn a_non_member_cannot_read_or_post_and_gets_404_conversation_not_found() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (carol_token, _) = app.register("carol").await;
    let id = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &id, "private").await;

    // Act
    let read = app.messages_page(&carol_token, &id, "").await;
    let post = app
        .post_message(&carol_token, &id, "in-1", "let me in")
        .await;

    // Assert
    read.expect_error(404, "conversation_not_found");
    assert!(!read.text.contains("private"));
    post.expect_error(404, "conversation_not_found");
    let all = app.all_messages(&alice_token, &id).await;
    assert_eq!(all.len(), 1, "nothing stored by the non-member: {all:?}");
}

#[tokio::test]
async fn pages_follow_after_seq_and_before_seq_with_has_more() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    for i in 1..=7 {
        app.send(&token, &id, &format!("m{i}")).await;
    }

    // Act + Assert: forwards.
    assert_eq!(
        page(&app, &token, &id, "afterSeq=0&limit=3").await,
        (vec![1, 2, 3], true)
    );
    assert_eq!(
        page(&app, &token, &id, "afterSeq=3&limit=3").await,
        (vec![4, 5, 6], true)
    );
    assert_eq!(
        page(&app, &token, &id, "afterSeq=6&limit=3").await,
        (vec![7], false)
    );
    assert_eq!(
        page(&app, &token, &id, "afterSeq=7&limit=3").await,
        (vec![], false)
    );

    // Backwards: the closest messages before the bound, still in seq order.
    assert_eq!(
        page(&app, &token, &id, "beforeSeq=8&limit=3").await,
        (vec![5, 6, 7], true)
    );
    assert_eq!(
        page(&app, &token, &id, "beforeSeq=5&limit=3").await,
        (vec![2, 3, 4], true)
    );
    assert_eq!(
        page(&app, &token, &id, "beforeSeq=2&limit=3").await,
        (vec![1], false)
    );
}

#[tokio::test]
async fn a_page_bound_that_is_not_a_number_is_refused_naming_its_parameter() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;

    for (query, field) in [
        ("afterSeq=abc", "afterSeq"),
        ("beforeSeq=1.5", "beforeSeq"),
        ("limit=3&afterSeq=-1", "afterSeq"),
        ("limit=ten", "limit"),
    ] {
        // Act
        let reply = app
            .get(&format!("/api/conversations/{id}/messages?{query}"), &token)
            .await;

        // Assert
        let error = reply.expect_error(400, "validation_failed");
        assert_eq!(error["field"], field, "{query}: {}", reply.text);
    }
}

#[tokio::test]
async fn a_page_without_bounds_is_in_seq_order_and_complete_when_it_fits() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    for i in 1..=4 {
        app.send(&token, &id, &format!("m{i}")).await;
    }

    // Act
    let (seqs, has_more) = page(&app, &token, &id, "").await;

    // Assert
    assert_eq!((seqs, has_more), (vec![1, 2, 3, 4], false));
}

#[tokio::test]
async fn the_page_limit_is_capped_by_page_max() {
    // Arrange
    let app = spawn_app_with(|s| {
        s.limits.page_max = 5;
        s.limits.page_default = 2;
    })
    .await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&token, &bob).await;
    for i in 1..=7 {
        app.send(&token, &id, &format!("m{i}")).await;
    }

    // Act
    let capped = page(&app, &token, &id, "afterSeq=0&limit=1000").await;
    let default = page(&app, &token, &id, "afterSeq=0").await;

    // Assert
    assert_eq!(capped, (vec![1, 2, 3, 4, 5], true));
    assert_eq!(default, (vec![1, 2], true));
}

#[tokio::test]
async fn reusing_a_client_msg_id_in_another_conversation_answers_422_idempotency_mismatch() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (_, carol) = app.register("carol").await;
    let with_bob = app.direct(&token, &bob).await;
    let with_carol = app.direct(&token, &carol).await;
    app.post_message(&token, &with_bob, "tmp-1", "same words")
        .await
        .expect(201);

    // Act
    let reply = app
        .post_message(&token, &with_carol, "tmp-1", "same words")
        .await;

    // Assert
    reply.expect_error(422, "idempotency_mismatch");
    assert!(app.all_messages(&token, &with_carol).await.is_empty());
}

#[tokio::test]
async fn retrying_a_send_to_a_recipient_answers_200_with_the_same_message() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let body = json!({
        "clientMsgId": "first-contact",
        "recipientId": bob.id.to_string(),
        "kind": "text",
        "content": "hello stranger",
    });
    let first = app.send_raw(&token, &body).await;
    let first = first.expect(201).clone();

    // Act
    let retry = app.send_raw(&token, &body).await;

    // Assert
    let retry = retry.expect(200);
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(retry["conversationId"], first["conversationId"]);
    assert_eq!(app.conversations(&token).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_sends_to_a_new_recipient_share_one_direct_conversation() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let sends = (0..10).map(|i| {
        // Both sides race to open the pair's conversation.
        let (token, to) = if i % 2 == 0 {
            (&alice_token, &bob)
        } else {
            (&bob_token, &alice)
        };
        let body = json!({
            "clientMsgId": format!("race-{i}"),
            "recipientId": to.id.to_string(),
            "kind": "text",
            "content": format!("hello {i}"),
        });
        let app = &app;
        async move { app.send_raw(token, &body).await }
    });

    // Act
    let replies = futures::future::join_all(sends).await;

    // Assert
    let conversations: HashSet<String> = replies
        .iter()
        .map(|r| {
            r.expect(201)["conversationId"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(conversations.len(), 1, "{conversations:?}");
    let id = conversations.into_iter().next().expect("one");
    assert_eq!(
        seqs(&app.all_messages(&alice_token, &id).await),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(app.conversations(&alice_token).await.len(), 1);
    assert_eq!(app.conversations(&bob_token).await.len(), 1);
}

#[tokio::test]
async fn rest_sends_beyond_the_per_user_rate_are_refused_with_429_rate_limited() {
    // Arrange: one send a second, bursts of five
    let app = spawn_app_with(|settings| {
        settings.limits.sends_per_sec = 1;
        settings.limits.sends_burst = 5;
    })
    .await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;

    // Act: ten sends, one after the other
    let started = std::time::Instant::now();
    let mut stored = 0;
    let mut limited = 0;
    for i in 0..10 {
        let body =
            json!({ "clientMsgId": format!("r-{i}"), "recipientId": bob.id, "content": "hi" });
        let reply = app.post("/api/messages", &token, &body).await;
        match reply.status.as_u16() {
            201 => stored += 1,
            429 => {
                assert_eq!(
                    reply.body["error"]["code"], "rate_limited",
                    "{}",
                    reply.text
                );
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }

    // Assert: never more than the burst plus what the elapsed time refilled
    let refilled = started.elapsed().as_secs() + 1;
    assert!(stored <= 5 + refilled, "{stored} stored in {refilled} s");
    assert_eq!(stored + limited, 10);
}
