//! Rows deleted by hand (an operator in `psql` or `sqlite3`; Parley itself deletes no
//! conversation, message or user): what goes with them and what is refused, the same on both
//! backends. On PostgreSQL the tables a stored message writes check no foreign key on insert
//! (migration `2026-12-06-000001_hot_path_foreign_keys`): statement triggers do what the
//! foreign keys' deletes did; on SQLite the foreign keys still do it.

use crate::backend::{Backend, BACKEND};
use crate::helpers::{id_of, spawn_app, TestApp};

/// How many rows of `table` belong to conversation `id`.
async fn rows_of(app: &TestApp, table: &str, id: &str) -> i64 {
    app.operator_count(&format!(
        "SELECT count(*) FROM {table} WHERE conversation_id = {id}"
    ))
    .await
}

/// The contents of the messages a sync from the beginning gives `token`'s user.
async fn synced(app: &TestApp, token: &str) -> Vec<String> {
    let sync = app.sync(token, None, None).await;
    sync.expect(200)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect()
}

#[tokio::test]
async fn deleting_a_conversation_by_hand_takes_its_members_messages_and_changes_with_it() {
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let (_, carol) = app.register("carol").await;
    let gone = app.direct(&alice_token, &bob).await;
    let kept = app.direct(&alice_token, &carol).await;
    app.send(&alice_token, &gone, "one").await;
    app.send(&bob_token, &gone, "two").await;
    app.mark(&bob_token, &gone, "read", 1).await.expect(200);
    app.send(&alice_token, &kept, "three").await;

    app.operator_sql(&format!("DELETE FROM conversations WHERE id = {gone}"))
        .await
        .expect("deleting a conversation");

    for table in ["members", "messages", "changes"] {
        assert_eq!(rows_of(&app, table, &gone).await, 0, "{table} of {gone}");
    }
    assert_eq!(rows_of(&app, "messages", &kept).await, 1);
    let listed: Vec<String> = app
        .conversations(&alice_token)
        .await
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed, [kept]);
    assert_eq!(synced(&app, &alice_token).await, ["three"]);
}

#[tokio::test]
async fn deleting_a_message_by_hand_takes_its_change_with_it_and_sync_goes_on_without_it() {
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    let first = app.send(&alice_token, &id, "one").await;
    app.send(&alice_token, &id, "two").await;

    app.operator_sql(&format!(
        "DELETE FROM messages WHERE id = {}",
        id_of(&first)
    ))
    .await
    .expect("deleting a message");

    let changes = app
        .operator_count(&format!(
            "SELECT count(*) FROM changes WHERE message_id = {}",
            id_of(&first)
        ))
        .await;
    assert_eq!(changes, 0, "the deleted message's change row");
    assert_eq!(synced(&app, &bob_token).await, ["two"]);
    let history: Vec<String> = app
        .all_messages(&bob_token, &id)
        .await
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect();
    assert_eq!(history, ["two"]);
}

#[tokio::test]
async fn a_user_who_sent_messages_cannot_be_deleted_by_hand_one_who_sent_none_can() {
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &id, "one").await;
    app.mark(&bob_token, &id, "read", 1).await.expect(200);

    let refused = app
        .operator_sql(&format!("DELETE FROM users WHERE id = {}", alice.id))
        .await;
    assert!(refused.is_err(), "deleting a sender: {refused:?}");
    assert_eq!(rows_of(&app, "messages", &id).await, 1);
    assert_eq!(
        app.operator_count(&format!(
            "SELECT count(*) FROM users WHERE id = {}",
            alice.id
        ))
        .await,
        1
    );

    // Bob sent nothing: he goes, with his sessions, his membership and his receipt's change row.
    app.operator_sql(&format!("DELETE FROM users WHERE id = {}", bob.id))
        .await
        .expect("deleting a user who sent nothing");
    for (table, column) in [
        ("sessions", "user_id"),
        ("members", "user_id"),
        ("changes", "user_id"),
    ] {
        let left = app
            .operator_count(&format!(
                "SELECT count(*) FROM {table} WHERE {column} = {}",
                bob.id
            ))
            .await;
        assert_eq!(left, 0, "{table} of bob");
    }
    assert_eq!(rows_of(&app, "messages", &id).await, 1);
}

#[tokio::test]
async fn storing_a_message_checks_no_foreign_key_row_by_row_on_postgres() {
    if *BACKEND != Backend::PostgresRedis {
        return; // SQLite checks its foreign keys within the same statement, without locks.
    }
    let app = spawn_app().await;
    // A foreign key on these tables is one trigger, most of them a locking query, per stored
    // message (the migration says what they cost).
    let keys = app
        .operator_count(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' \
             AND conrelid IN ('messages'::regclass, 'changes'::regclass)",
        )
        .await;
    assert_eq!(keys, 0, "foreign keys on messages or changes");
}
