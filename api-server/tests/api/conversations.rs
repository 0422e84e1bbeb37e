//! Creating, listing and reading conversations.

use crate::helpers::{id_of, spawn_app, spawn_app_with, Reply};
use serde_json::Value;
use shared::wire::User;

/// The member entry of `user` in a conversation, asserting its shape.
#[track_caller]
fn member<'a>(conversation: &'a Value, user: &User) -> &'a Value {
    let members = conversation["members"]
        .as_array()
        .unwrap_or_else(|| panic!("members is an array: {conversation}"));
    let entry = members
        .iter()
        .find(|m| m["user"]["id"] == user.id.to_string())
        .unwrap_or_else(|| panic!("user {} is a member: {conversation}", user.id));
    assert!(entry["deliveredUpToSeq"].is_i64(), "{entry}");
    assert!(entry["readUpToSeq"].is_i64(), "{entry}");
    assert!(entry["joinedAt"].is_string(), "{entry}");
    entry
}

#[tokio::test]
async fn creating_a_direct_conversation_answers_201_with_both_members_at_zero() {
    // Arrange
    let app = spawn_app().await;
    let (token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;

    // Act
    let reply = app
        .create_conversation_raw(&token, &[&bob.id.to_string()], None)
        .await;

    // Assert
    let body = reply.expect(201);
    assert!(!id_of(body).is_empty());
    assert_eq!(body["kind"], "direct");
    assert!(body["title"].is_null(), "{body}");
    assert_eq!(body["lastSeq"], 0);
    assert!(body["createdAt"].is_string());
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2), "{body}");
    for user in [&alice, &bob] {
        let entry = member(body, user);
        assert_eq!(entry["deliveredUpToSeq"], 0);
        assert_eq!(entry["readUpToSeq"], 0);
        assert_eq!(entry["user"]["username"], user.username);
    }
}

#[tokio::test]
async fn creating_the_same_direct_pair_again_answers_200_with_the_same_conversation() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let first = app
        .create_conversation_raw(&alice_token, &[&bob.id.to_string()], None)
        .await;
    let id = id_of(first.expect(201));

    // Act
    let again = app
        .create_conversation_raw(&alice_token, &[&bob.id.to_string()], None)
        .await;
    let from_the_other_side = app
        .create_conversation_raw(&bob_token, &[&alice.id.to_string()], None)
        .await;

    // Assert
    assert_eq!(id_of(again.expect(200)), id);
    assert_eq!(id_of(from_the_other_side.expect(200)), id);
    assert_eq!(app.conversations(&alice_token).await.len(), 1);
}

#[tokio::test]
async fn creating_a_group_answers_201_with_its_title_and_the_creator_among_the_members() {
    // Arrange
    let app = spawn_app().await;
    let (token, alice) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (_, carol) = app.register("carol").await;

    // Act
    let reply = app
        .create_conversation_raw(
            &token,
            &[&bob.id.to_string(), &carol.id.to_string()],
            Some("Trip"),
        )
        .await;

    // Assert
    let body = reply.expect(201);
    assert_eq!(body["kind"], "group");
    assert_eq!(body["title"], "Trip");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(3), "{body}");
    for user in [&alice, &bob, &carol] {
        member(body, user);
    }
}

#[tokio::test]
async fn creating_a_conversation_with_an_unknown_member_answers_404_user_not_found() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;

    // Act
    let direct = app
        .create_conversation_raw(&token, &["987654321"], None)
        .await;
    let group = app
        .create_conversation_raw(&token, &[&bob.id.to_string(), "987654321"], Some("G"))
        .await;

    // Assert
    direct.expect_error(404, "user_not_found");
    group.expect_error(404, "user_not_found");
    assert!(
        app.conversations(&token).await.is_empty(),
        "nothing half-created"
    );
}

#[tokio::test]
async fn listing_conversations_shows_the_last_message_last_seq_unread_count_and_members() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &id, "one").await;
    let last = app.send(&alice_token, &id, "two").await;

    // Act
    let list = app.conversations(&bob_token).await;

    // Assert
    assert_eq!(list.len(), 1, "{list:?}");
    let summary = &list[0];
    assert_eq!(id_of(summary), id);
    assert_eq!(summary["lastSeq"], 2);
    assert_eq!(summary["unreadCount"], 2);
    assert_eq!(summary["lastMessage"]["id"], last["id"]);
    assert_eq!(summary["lastMessage"]["content"], "two");
    member(summary, &alice);
    member(summary, &bob);
}

#[tokio::test]
async fn a_new_conversation_is_listed_without_a_last_message() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    app.direct(&token, &bob).await;

    // Act
    let list = app.conversations(&token).await;

    // Assert
    assert_eq!(list.len(), 1);
    assert!(
        list[0].get("lastMessage").is_none_or(Value::is_null),
        "{list:?}"
    );
    assert_eq!(list[0]["unreadCount"], 0);
    assert_eq!(list[0]["lastSeq"], 0);
}

#[tokio::test]
async fn listing_conversations_shows_only_the_callers_own() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (carol_token, carol) = app.register("carol").await;
    let with_bob = app.direct(&alice_token, &bob).await;
    let with_carol = app.direct(&alice_token, &carol).await;

    // Act
    let alice_list = app.conversations(&alice_token).await;
    let carol_list = app.conversations(&carol_token).await;

    // Assert
    let mut alice_ids: Vec<String> = alice_list.iter().map(id_of).collect();
    alice_ids.sort();
    let mut expected = vec![with_bob, with_carol.clone()];
    expected.sort();
    assert_eq!(alice_ids, expected);
    let carol_ids: Vec<String> = carol_list.iter().map(id_of).collect();
    assert_eq!(carol_ids, [with_carol]);
}

#[tokio::test]
async fn the_most_recently_active_conversation_is_listed_first() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (_, carol) = app.register("carol").await;
    let older = app.direct(&token, &bob).await;
    let newer = app.direct(&token, &carol).await;
    app.send(&token, &newer, "first").await;

    // Act
    app.send(&token, &older, "revived").await;
    let list = app.conversations(&token).await;

    // Assert
    let ids: Vec<String> = list.iter().map(id_of).collect();
    assert_eq!(ids, [older, newer]);
}

/// The next page's path in a `Link` header (`<path>; rel="next"`).
fn next_page(reply: &Reply) -> Option<String> {
    let link = reply.link.as_deref()?;
    let (target, params) = link.split_once(';').expect("a Link with parameters");
    assert_eq!(params.trim(), r#"rel="next""#, "{link}");
    let path = target
        .trim()
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'));
    Some(path.expect("a Link target in <>").to_owned())
}

#[tokio::test]
async fn the_list_is_paged_through_its_link_header_and_a_conversation_revived_meanwhile_moves_to_the_first_page(
) {
    // Arrange: five conversations, the oldest made the most recently active.
    let app = spawn_app_with(|s| s.limits.page_default = 2).await;
    let (token, _) = app.register("alice").await;
    let mut ids = Vec::new();
    for name in ["bob", "carol", "dave", "erin", "frank"] {
        let (_, user) = app.register(name).await;
        ids.push(app.direct(&token, &user).await);
    }
    app.send(&token, &ids[0], "revived").await;
    let whole: Vec<String> = app
        .get("/api/conversations?limit=200", &token)
        .await
        .expect(200)
        .as_array()
        .expect("an array")
        .iter()
        .map(id_of)
        .collect();
    let order = |at: &[usize]| -> Vec<String> { at.iter().map(|&i| ids[i].clone()).collect() };
    assert_eq!(whole, order(&[0, 4, 3, 2, 1]));

    // Act: page by the server's default size; between the first two pages, the third
    // conversation listed gets a message and moves to the top.
    let mut paged = Vec::new();
    let mut pages = 0;
    let mut path = Some("/api/conversations".to_owned());
    while let Some(at) = path {
        let reply = app.get(&at, &token).await;
        let page = reply.expect(200).as_array().expect("an array").clone();
        paged.extend(page.iter().map(id_of));
        path = next_page(&reply);
        pages += 1;
        if pages == 1 {
            app.send(&token, &ids[3], "moved up").await;
        }
    }

    // Assert: the pages go on where the first ended, so nothing is listed twice; the revived
    // conversation is now above them, first in the list (and the live `receive_message` told a
    // connected client of it).
    assert_eq!(paged, order(&[0, 4, 2, 1]));
    assert_eq!(pages, 2, "pages of 2 and 2, the last without a Link");
    let first = app.get("/api/conversations?limit=1", &token).await;
    assert_eq!(
        first.expect(200).as_array().map(|l| id_of(&l[0])),
        Some(ids[3].clone())
    );
}

#[tokio::test]
async fn the_last_page_has_no_link_and_an_empty_list_is_one_page() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;

    // Act
    let empty = app.get("/api/conversations", &token).await;
    app.direct(&token, &bob).await;
    let exact = app.get("/api/conversations?limit=1", &token).await;

    // Assert
    assert!(empty.expect(200).as_array().is_some_and(Vec::is_empty));
    assert_eq!(empty.link, None);
    assert_eq!(exact.expect(200).as_array().map(Vec::len), Some(1));
    assert_eq!(exact.link, None, "one conversation fits a page of one");
}

#[tokio::test]
async fn a_list_cursor_or_limit_that_is_not_one_is_refused_naming_its_field() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    for (query, field) in [
        ("before=abc", "before"),
        ("before=12_", "before"),
        ("before=12_0", "before"),
        ("before=99999999999999999999_1", "before"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
    ] {
        // Act
        let reply = app
            .get(&format!("/api/conversations?{query}"), &token)
            .await;

        // Assert
        let error = reply.expect_error(400, "validation_failed");
        assert_eq!(error["field"], field, "{query}: {}", reply.text);
    }
}

#[tokio::test]
async fn getting_a_conversation_answers_it_with_its_members_watermarks() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &id, "one").await;
    app.send(&alice_token, &id, "two").await;
    app.mark(&bob_token, &id, "read", 1).await.expect(200);

    // Act
    let reply = app
        .get(&format!("/api/conversations/{id}"), &alice_token)
        .await;

    // Assert
    let body = reply.expect(200);
    assert_eq!(id_of(body), id);
    assert_eq!(body["kind"], "direct");
    assert_eq!(body["lastSeq"], 2);
    assert_eq!(member(body, &bob)["readUpToSeq"], 1);
    assert_eq!(member(body, &bob)["deliveredUpToSeq"], 1);
    assert_eq!(member(body, &alice)["readUpToSeq"], 0);
}

#[tokio::test]
async fn a_non_member_gets_404_conversation_not_found_for_a_conversation() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let (carol_token, _) = app.register("carol").await;
    let id = app.direct(&alice_token, &bob).await;

    // Act
    let not_a_member = app
        .get(&format!("/api/conversations/{id}"), &carol_token)
        .await;
    let no_such = app.get("/api/conversations/987654321", &carol_token).await;

    // Assert: the same answer, so ids cannot be probed.
    not_a_member.expect_error(404, "conversation_not_found");
    no_such.expect_error(404, "conversation_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_of_one_direct_pair_make_one_conversation() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let (alice_id, bob_id) = (alice.id.to_string(), bob.id.to_string());
    let attempts = (0..10).map(|i| {
        let (token, other) = if i % 2 == 0 {
            (&alice_token, &bob_id)
        } else {
            (&bob_token, &alice_id)
        };
        let app = &app;
        async move {
            app.create_conversation_raw(token, &[other.as_str()], None)
                .await
        }
    });

    // Act
    let replies = futures::future::join_all(attempts).await;

    // Assert
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "exactly one creation: {statuses:?} {:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 9);
    let ids: std::collections::HashSet<String> = replies.iter().map(|r| id_of(&r.body)).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.conversations(&alice_token).await.len(), 1);
}

#[tokio::test]
async fn conversations_beyond_the_per_user_rate_answer_429_and_finding_a_direct_one_is_free() {
    // Arrange: bursts of two, one a minute (no refill within the test)
    let app = spawn_app_with(|s| {
        s.limits.conversations_burst = 2;
        s.limits.conversations_per_minute = 1;
    })
    .await;
    let (token, _) = app.register("alice").await;
    let (carol_token, _) = app.register("carol").await;
    let (_, bob) = app.register("bob").await;
    let bob_id = bob.id.to_string();
    app.create_conversation_raw(&token, &[&bob_id], None)
        .await
        .expect(201);

    // Act: the existing direct conversation, found five times, then two groups
    for _ in 0..5 {
        app.create_conversation_raw(&token, &[&bob_id], None)
            .await
            .expect(200);
    }
    let second = app
        .create_conversation_raw(&token, &[&bob_id], Some("one"))
        .await;
    let third = app
        .create_conversation_raw(&token, &[&bob_id], Some("two"))
        .await;

    // Assert: the finds took nothing from the burst; another user has a budget of their own
    second.expect(201);
    let error = third.expect_error(429, "rate_limited");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("conversations")),
        "{error}"
    );
    app.create_conversation_raw(&carol_token, &[&bob_id], Some("three"))
        .await
        .expect(201);
    assert_eq!(app.conversations(&token).await.len(), 2);
}
