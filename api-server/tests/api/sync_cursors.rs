//! Sync cursors the server never issued: a cursor beyond the change log's current end (a forged
//! one, or one from another database) answers `400 validation_failed` naming `since`, on REST and
//! on the relay's sync path; every cursor the server did issue keeps working.

use crate::helpers::{spawn_app, TestApp};
use shared::auth::JwtKeys;

/// `nextCursor` of a sync from `since`.
async fn next_cursor(app: &TestApp, token: &str, since: Option<&str>) -> String {
    let reply = app.sync(token, since, None).await;
    reply.expect(200)["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("nextCursor is a string: {}", reply.text))
        .to_owned()
}

/// Cursors of the same backend as `issued` that name positions past it: the reported one, and
/// ones built from `issued` by moving each of its numbers far ahead.
fn beyond(issued: &str) -> Vec<String> {
    const FAR: i64 = 1_000_000_000_000;
    if let Some(id) = issued.strip_prefix('s') {
        let id: i64 = id.parse().expect("an s<id> cursor");
        vec!["s999999999".to_owned(), format!("s{}", id + FAR)]
    } else {
        let (xid, id) = issued
            .strip_prefix('p')
            .and_then(|rest| rest.split_once('.'))
            .expect("a p<xid>.<id> cursor");
        let xid: i64 = xid.parse().expect("a numeric xid");
        let id: i64 = id.parse().expect("a numeric id");
        vec![
            "p999999999.0".to_owned(),
            format!("p{}.{id}", xid + FAR),
            format!("p{xid}.{}", id + FAR),
        ]
    }
}

#[tokio::test]
async fn a_cursor_beyond_any_the_server_issued_answers_400_naming_since() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let conversation = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &conversation, "hello").await;
    let issued = next_cursor(&app, &alice_token, None).await;

    // Act / Assert
    for cursor in beyond(&issued) {
        let reply = app.sync(&alice_token, Some(&cursor), None).await;
        let error = reply.expect_error(400, "validation_failed");
        assert_eq!(error["field"], "since", "{cursor}: {}", reply.text);
    }
}

#[tokio::test]
async fn a_cursor_beyond_the_end_is_refused_even_before_anything_was_written() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let issued = next_cursor(&app, &token, None).await;

    // Act / Assert
    next_cursor(&app, &token, Some(&issued)).await;
    for cursor in beyond(&issued) {
        app.sync(&token, Some(&cursor), None)
            .await
            .expect_error(400, "validation_failed");
    }
}

#[tokio::test]
async fn every_cursor_the_server_issued_is_still_accepted_later() {
    // Arrange: cursors from an empty log, from page boundaries, and from the end.
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let mut issued = vec![next_cursor(&app, &alice_token, None).await];
    let conversation = app.direct(&alice_token, &bob).await;
    for i in 0..5 {
        app.send(&bob_token, &conversation, &format!("m{i}")).await;
    }
    let mut since: Option<String> = None;
    loop {
        let reply = app.sync(&alice_token, since.as_deref(), Some(2)).await;
        let body = reply.expect(200);
        let next = body["nextCursor"].as_str().expect("a cursor").to_owned();
        issued.push(next.clone());
        since = Some(next);
        if body["hasMore"] != true {
            break;
        }
    }
    issued.push(next_cursor(&app, &bob_token, None).await);

    // Act: more changes after every cursor was handed out.
    let last = app.send(&bob_token, &conversation, "after").await;

    // Assert: each cursor still works, and each sees the later message.
    for cursor in &issued {
        let reply = app.sync(&alice_token, Some(cursor), None).await;
        let body = reply.expect(200);
        let messages = body["messages"].as_array().expect("messages");
        assert!(
            messages.iter().any(|m| m["id"] == last["id"]),
            "{cursor}: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn the_relays_sync_path_refuses_the_same_cursors() {
    // Arrange
    let app = spawn_app().await;
    let (token, user) = app.register("alice").await;
    let issued = next_cursor(&app, &token, None).await;
    let keys = JwtKeys::new(&app.settings.jwt).expect("test keys");
    let service = keys.issue_service().expect("a service token").0;
    let path = |since: &str| format!("/internal/relay/users/{}/sync?since={since}", user.id);

    // Act / Assert
    app.get(&path(&issued), &service).await.expect(200);
    for cursor in beyond(&issued) {
        let reply = app.get(&path(&cursor), &service).await;
        let error = reply.expect_error(400, "validation_failed");
        assert_eq!(error["field"], "since", "{cursor}: {}", reply.text);
    }
}
