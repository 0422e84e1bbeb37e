//! Hostile text input: NUL bytes and other control characters, and content that is blank to the
//! eye (only whitespace and invisible characters), on every route that takes text. Each is
//! refused with `400 validation_failed` naming the field, never a 500 (PostgreSQL refuses NUL
//! bytes in text) and never stored.

use crate::helpers::{spawn_app, TestApp, PASSWORD};
use serde_json::{json, Value};
use shared::auth::JwtKeys;
use shared::wire::User;

/// Assert `400 validation_failed` naming `field`.
#[track_caller]
fn assert_refused(reply: &crate::helpers::Reply, field: &str) {
    let error = reply.expect_error(400, "validation_failed");
    assert_eq!(error["field"], field, "{}", reply.text);
}

/// Alice and Bob, and their direct conversation: (Alice's token, Bob, the conversation id).
async fn alice_and_bob(app: &TestApp) -> (String, User, String) {
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let conversation = app.direct(&token, &bob).await;
    (token, bob, conversation)
}

fn message(client_msg_id: &str, conversation: &str, content: &str) -> Value {
    json!({ "clientMsgId": client_msg_id, "conversationId": conversation, "content": content })
}

#[tokio::test]
async fn searching_users_with_a_nul_byte_answers_400_naming_search() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act / Assert: the reported request, and the other control characters.
    for query in [
        "%00", "al%00ice", "%01", "a%1Bb", "%7F", "a%0Ab", "a%C2%85b",
    ] {
        let reply = app.get(&format!("/api/users?search={query}"), &token).await;
        assert_refused(&reply, "search");
    }
}

#[tokio::test]
async fn searching_users_for_a_lone_line_break_or_tab_is_refused_like_one_inside_a_name() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let inside = app.get("/api/users?search=pal%E2%80%A8ice", &token).await;
    assert_refused(&inside, "search");

    // Act / Assert: trimming must not hide them (they would list everyone).
    for query in [
        "%E2%80%A8",
        "%E2%80%A9",
        "%09",
        "%20%0A%20",
        "alice%E2%80%A8",
    ] {
        let reply = app.get(&format!("/api/users?search={query}"), &token).await;
        assert_eq!(
            (reply.status, &reply.body),
            (inside.status, &inside.body),
            "{query}"
        );
    }
    let spaced = app.get("/api/users?search=%20alice%20", &token).await;
    assert_eq!(spaced.expect(200)[0]["username"], "alice");
}

#[tokio::test]
async fn searching_users_with_a_query_string_that_is_not_utf8_answers_400_naming_query() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act / Assert
    for query in ["search=%FF", "search=al%C3ice", "limit=5&search=%E2%80"] {
        let reply = app.get(&format!("/api/users?{query}"), &token).await;
        assert_refused(&reply, "query");
    }
}

#[tokio::test]
async fn registering_with_a_nul_in_the_display_name_answers_400_naming_display_name() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app
        .register_raw(
            &json!({ "username": "alice", "password": PASSWORD, "displayName": "a\u{0}b" }),
        )
        .await;

    // Assert
    assert_refused(&reply, "displayName");
    app.register("alice").await;
}

#[tokio::test]
async fn registering_with_a_control_character_in_any_field_names_that_field() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "username": "al\u{0}ice", "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "alice", "password": "correct\u{0}horse" }),
            "password",
        ),
        (
            json!({ "username": "alice", "password": "correct\u{7}horse" }),
            "password",
        ),
        (
            json!({ "username": "alice", "password": PASSWORD, "displayName": "Al\tice" }),
            "displayName",
        ),
        (
            json!({ "username": "alice", "password": PASSWORD, "displayName": "Al\nice" }),
            "displayName",
        ),
        (
            json!({ "username": "alice", "password": PASSWORD, "displayName": "Al\u{9b}ice" }),
            "displayName",
        ),
    ];

    // Act / Assert
    for (body, field) in cases {
        assert_refused(&app.register_raw(&body).await, field);
    }
}

#[tokio::test]
async fn a_display_name_of_only_invisible_characters_is_refused_as_blank() {
    // Arrange
    let app = spawn_app().await;

    // Act / Assert
    for name in [
        "\u{200b}",
        " \u{200d}\u{feff} ",
        "\u{2060}\u{ad}",
        "\u{3164}",
    ] {
        let reply = app
            .register_raw(
                &json!({ "username": "alice", "password": PASSWORD, "displayName": name }),
            )
            .await;
        assert_refused(&reply, "displayName");
    }
    let emoji = app
        .register_raw(
            &json!({ "username": "alice", "password": PASSWORD, "displayName": "❤\u{fe0f}" }),
        )
        .await;
    assert_eq!(emoji.expect(201)["user"]["displayName"], "❤\u{fe0f}");
}

#[tokio::test]
async fn logging_in_with_a_nul_byte_answers_401_never_500() {
    // Arrange
    let app = spawn_app().await;
    app.register("alice").await;

    // Act / Assert
    app.login("al\u{0}ice", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    app.login("alice", "correct\u{0}horse")
        .await
        .expect_error(401, "invalid_credentials");
}

#[tokio::test]
async fn sending_content_with_a_nul_or_another_control_character_answers_400_naming_content() {
    // Arrange
    let app = spawn_app().await;
    let (token, _, conversation) = alice_and_bob(&app).await;

    // Act / Assert
    for (i, content) in [
        "a\u{0}b",
        "\u{0}",
        "bell\u{7}",
        "esc\u{1b}[31m",
        "del\u{7f}",
        "c1\u{85}",
    ]
    .into_iter()
    .enumerate()
    {
        let reply = app
            .send_raw(&token, &message(&format!("c{i}"), &conversation, content))
            .await;
        assert_refused(&reply, "content");
    }
    assert!(app.all_messages(&token, &conversation).await.is_empty());
}

#[tokio::test]
async fn content_keeps_its_line_breaks_tabs_and_emoji() {
    // Arrange
    let app = spawn_app().await;
    let (token, _, conversation) = alice_and_bob(&app).await;
    let content = "line one\r\nline two\n\tindented ❤\u{fe0f} 👩\u{200d}💻";

    // Act
    let reply = app
        .send_raw(&token, &message("c1", &conversation, content))
        .await;

    // Assert
    assert_eq!(reply.expect(201)["content"], content);
}

#[tokio::test]
async fn content_made_only_of_invisible_characters_is_refused_like_empty_content() {
    // Arrange
    let app = spawn_app().await;
    let (token, bob, conversation) = alice_and_bob(&app).await;
    let blank = [
        "\u{200b}",
        "\u{200b}\u{200c}\u{200d}",
        " \u{2060} \u{feff}\n",
        "\u{ad}",
        "\u{fe0f}\u{fe0e}",
        "\u{e0020}\u{e007f}",
        "\u{3000}\u{2800}\u{115f}",
        "\u{180e}\u{034f}\u{061c}",
    ];

    // Act / Assert: to a conversation, and to a user (which must not create anything either).
    for (i, content) in blank.into_iter().enumerate() {
        let reply = app
            .send_raw(&token, &message(&format!("c{i}"), &conversation, content))
            .await;
        assert_refused(&reply, "content");
        let reply = app
            .send_raw(
                &token,
                &json!({ "clientMsgId": format!("r{i}"), "recipientId": bob.id.to_string(), "content": content }),
            )
            .await;
        assert_refused(&reply, "content");
    }
    assert!(app.all_messages(&token, &conversation).await.is_empty());
}

#[tokio::test]
async fn a_client_msg_id_or_attachment_id_with_a_control_character_is_refused_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let (token, _, conversation) = alice_and_bob(&app).await;
    let mut attachment = message("c1", &conversation, "a picture");
    attachment["kind"] = json!("image");
    attachment["attachmentId"] = json!("img\u{0}1");

    // Act / Assert
    assert_refused(
        &app.send_raw(&token, &message("c\u{0}1", &conversation, "hi"))
            .await,
        "clientMsgId",
    );
    assert_refused(&app.send_raw(&token, &attachment).await, "attachmentId");
    assert!(app.all_messages(&token, &conversation).await.is_empty());
}

#[tokio::test]
async fn a_conversation_title_with_a_control_character_is_refused_and_an_invisible_one_is_none() {
    // Arrange
    let app = spawn_app().await;
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let (token, _) = &users[0];
    let others: Vec<String> = users[1..].iter().map(|(_, u)| u.id.to_string()).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();

    // Act / Assert
    for title in ["a\u{0}b", "team\u{1b}", "two\nlines"] {
        let reply = app
            .create_conversation_raw(token, &others, Some(title))
            .await;
        assert_refused(&reply, "title");
    }
    let untitled = app
        .create_conversation_raw(token, &others, Some("\u{200b}\u{feff}"))
        .await;
    assert_eq!(untitled.expect(201)["title"], Value::Null);
}

#[tokio::test]
async fn the_relay_path_refuses_the_same_content_per_message() {
    // Arrange
    let app = spawn_app().await;
    let (token, _, conversation) = alice_and_bob(&app).await;
    let keys = JwtKeys::new(&app.settings.jwt).expect("test keys");
    let jti = keys.verify(&token).expect("a user token").jti;
    let sender = keys.verify(&token).expect("a user token").sub;
    let item = |cmid: &str, content: &str| json!({ "sender": sender, "jti": jti, "message": message(cmid, &conversation, content) });
    let batch = json!({ "items": [
        item("c1", "a\u{0}b"),
        item("c2", "\u{200b}\u{2060}"),
        item("c3", "fine"),
    ]});
    let service = keys.issue_service().expect("a service token").0;

    // Act
    let reply = app.post("/internal/relay/messages", &service, &batch).await;

    // Assert
    let outcomes = reply.expect(200)["outcomes"].clone();
    assert_eq!(
        outcomes[0]["error"]["code"], "validation_failed",
        "{outcomes}"
    );
    assert_eq!(
        outcomes[1]["error"]["code"], "validation_failed",
        "{outcomes}"
    );
    assert_eq!(outcomes[2]["message"]["content"], "fine", "{outcomes}");
}
