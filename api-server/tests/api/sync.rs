//! `GET /api/sync`: every change since a cursor, none lost, none twice.

use crate::helpers::{id_of, spawn_app, spawn_app_with, TestApp};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The parts of a sync answer, asserting its shape.
#[track_caller]
fn parts(body: &Value) -> (Vec<Value>, Vec<Value>, Vec<Value>, String, bool) {
    let list = |key: &str| {
        body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is an array: {body}"))
            .clone()
    };
    (
        list("messages"),
        list("receipts"),
        list("conversations"),
        body["nextCursor"]
            .as_str()
            .unwrap_or_else(|| panic!("nextCursor is a string: {body}"))
            .to_owned(),
        body["hasMore"]
            .as_bool()
            .unwrap_or_else(|| panic!("hasMore is a bool: {body}")),
    )
}

fn ids(values: &[Value]) -> Vec<String> {
    values.iter().map(id_of).collect()
}

/// Everything a client gets by following `hasMore` from `since`, as the contract tells clients
/// to ("call again at once with nextCursor"), and the cursor it ends with.
struct Drained {
    messages: Vec<Value>,
    receipts: Vec<Value>,
    conversations: Vec<Value>,
    cursor: String,
}

async fn sync_all(app: &TestApp, token: &str, since: Option<&str>) -> Drained {
    let mut drained = Drained {
        messages: Vec::new(),
        receipts: Vec::new(),
        conversations: Vec::new(),
        cursor: since.unwrap_or_default().to_owned(),
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut since = since.map(str::to_owned);
    loop {
        let reply = app.sync(token, since.as_deref(), None).await;
        let (messages, receipts, conversations, next, has_more) = parts(reply.expect(200));
        drained.messages.extend(messages);
        drained.receipts.extend(receipts);
        drained.conversations.extend(conversations);
        drained.cursor = next.clone();
        since = Some(next);
        if !has_more {
            return drained;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync kept answering hasMore for 10 s"
        );
    }
}

#[tokio::test]
async fn sync_without_since_returns_everything_from_the_beginning() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    let first = app.send(&alice_token, &id, "one").await;
    let second = app.send(&bob_token, &id, "two").await;
    app.mark(&bob_token, &id, "read", 1).await.expect(200);

    // Act
    let synced = sync_all(&app, &alice_token, None).await;

    // Assert
    assert_eq!(ids(&synced.messages), [id_of(&first), id_of(&second)]);
    assert_eq!(ids(&synced.conversations), std::slice::from_ref(&id));
    let receipts = &synced.receipts;
    let bobs = receipts
        .iter()
        .find(|r| r["userId"] == bob.id.to_string())
        .unwrap_or_else(|| panic!("Bob's receipt is in the sync: {receipts:?}"));
    assert_eq!(bobs["conversationId"], id);
    assert_eq!(bobs["readUpToSeq"], 1);
    assert!(!synced.cursor.is_empty());
}

#[tokio::test]
async fn sync_since_a_cursor_returns_only_what_changed_after_it() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    let before = app.send(&bob_token, &id, "before").await;
    let first = sync_all(&app, &alice_token, None).await;
    assert_eq!(ids(&first.messages), [id_of(&before)]);

    // Act
    let later = app.send(&bob_token, &id, "after").await;
    let second = sync_all(&app, &alice_token, Some(&first.cursor)).await;

    // Assert
    assert_eq!(ids(&second.messages), [id_of(&later)]);
    assert!(
        second.conversations.is_empty(),
        "no conversation was created or changed members: {:?}",
        second.conversations
    );
    let third = sync_all(&app, &alice_token, Some(&second.cursor)).await;
    assert!(
        third.messages.is_empty() && third.receipts.is_empty() && third.conversations.is_empty(),
        "nothing after the last cursor"
    );
}

#[tokio::test]
async fn sync_since_now_answers_no_change_and_a_cursor_from_which_later_ones_come() {
    // Arrange: history a new device does not want replayed
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    app.send(&bob_token, &id, "old").await;
    app.mark(&alice_token, &id, "read", 1).await.expect(200);

    // Act
    let now = app.sync(&alice_token, Some("now"), None).await;
    let later = app.send(&bob_token, &id, "new").await;

    // Assert
    let (messages, receipts, conversations, cursor, has_more) = parts(now.expect(200));
    assert!(messages.is_empty() && receipts.is_empty() && conversations.is_empty());
    assert!(!has_more);
    let after = sync_all(&app, &alice_token, Some(&cursor)).await;
    assert_eq!(ids(&after.messages), [id_of(&later)]);
}

#[tokio::test]
async fn sync_carries_receipts_and_new_conversations_after_the_cursor() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let (carol_token, _) = app.register("carol").await;
    let with_bob = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &with_bob, "hi").await;
    let cursor = sync_all(&app, &alice_token, None).await.cursor;

    // Act
    app.mark(&bob_token, &with_bob, "read", 1).await.expect(200);
    let with_carol = app.direct(&carol_token, &alice).await;
    let Drained {
        receipts,
        conversations,
        ..
    } = sync_all(&app, &alice_token, Some(&cursor)).await;

    // Assert
    assert!(
        receipts.iter().any(|r| r["userId"] == bob.id.to_string()
            && r["conversationId"] == with_bob
            && r["readUpToSeq"] == 1),
        "{receipts:?}"
    );
    assert_eq!(ids(&conversations), [with_carol]);
}

#[tokio::test]
async fn sync_shows_a_committed_message_while_an_unrelated_transaction_stays_open() {
    // Arrange: a transaction the app does not own, begun before the send (see
    // `Backend::unrelated_open_transaction` for what it is on each backend).
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    let (_, _, _, cursor, _) = parts(app.sync(&bob_token, None, None).await.expect(200));
    let _open = app.unrelated_open_transaction().await;

    // Act: the send commits (201), then Bob syncs, as his second device would.
    let message = app.send(&alice_token, &id, "committed").await;
    let from_start = app.sync(&bob_token, None, None).await;
    let from_cursor = app.sync(&bob_token, Some(&cursor), None).await;

    // Assert: a committed message is in the answer, or the answer says more is waiting.
    for reply in [from_start, from_cursor] {
        let (messages, _, _, _, has_more) = parts(reply.expect(200));
        assert!(
            ids(&messages).contains(&id_of(&message)) || has_more,
            "message {} committed but sync answered {} with hasMore=false",
            id_of(&message),
            reply.text
        );
    }
}

#[tokio::test]
async fn sync_includes_the_users_own_messages_for_their_other_devices() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;

    // Act
    let mine = app.send(&alice_token, &id, "sent from my phone").await;
    let synced = sync_all(&app, &alice_token, None).await;

    // Assert
    assert_eq!(ids(&synced.messages), [id_of(&mine)]);
}

#[tokio::test]
async fn sync_pages_with_has_more_and_each_page_continues_the_last() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    let mut sent = Vec::new();
    for i in 1..=7 {
        sent.push(id_of(&app.send(&bob_token, &id, &format!("m{i}")).await));
    }

    // Act
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 50, "sync never finished");
        let reply = app.sync(&alice_token, cursor.as_deref(), Some(2)).await;
        let (messages, receipts, conversations, next, has_more) = parts(reply.expect(200));
        assert!(
            messages.len() + receipts.len() + conversations.len() <= 2,
            "limit 2 respected: {}",
            reply.text
        );
        seen.extend(ids(&messages));
        cursor = Some(next);
        if !has_more {
            break;
        }
    }

    // Assert
    assert_eq!(seen, sent);
    assert!(calls >= 4, "7 messages in pages of 2 take several calls");
}

#[tokio::test]
async fn sync_answers_at_most_sync_max_changes() {
    // Arrange
    let app = spawn_app_with(|s| s.limits.sync_max = 3).await;
    let (alice_token, _) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let id = app.direct(&alice_token, &bob).await;
    for i in 1..=6 {
        app.send(&bob_token, &id, &format!("m{i}")).await;
    }

    // Act
    let reply = app.sync(&alice_token, None, Some(1000)).await;

    // Assert
    let (messages, receipts, conversations, _, has_more) = parts(reply.expect(200));
    assert!(
        messages.len() + receipts.len() + conversations.len() <= 3,
        "{}",
        reply.text
    );
    assert!(has_more);
}

#[tokio::test]
async fn sync_never_shows_conversations_the_user_is_not_in() {
    // Arrange
    let app = spawn_app().await;
    let (alice_token, alice) = app.register("alice").await;
    let (bob_token, bob) = app.register("bob").await;
    let (carol_token, _) = app.register("carol").await;
    let private = app.direct(&alice_token, &bob).await;
    app.send(&alice_token, &private, "secret").await;
    app.mark(&bob_token, &private, "read", 1).await.expect(200);
    let carols = app.direct(&carol_token, &alice).await;
    let for_carol = app.send(&alice_token, &carols, "hi carol").await;

    // Act
    let synced = sync_all(&app, &carol_token, None).await;

    // Assert
    assert_eq!(ids(&synced.messages), [id_of(&for_carol)]);
    assert_eq!(ids(&synced.conversations), std::slice::from_ref(&carols));
    assert!(
        synced
            .receipts
            .iter()
            .all(|r| r["conversationId"] == carols),
        "{:?}",
        synced.receipts
    );
}

#[tokio::test]
async fn sync_with_a_cursor_the_server_did_not_issue_answers_400() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let reply = app.sync(&token, Some("not-a-cursor"), None).await;

    // Assert
    reply.expect_error(400, "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_loses_nothing_while_writers_commit_concurrently() {
    // Arrange: Alice reads; four writers post into three of her conversations, two of them
    // into the same group, so commits interleave within one conversation too.
    let app = Arc::new(spawn_app().await);
    let users = app.register_many(&["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (&users[0], &users[1], &users[2], &users[3]);
    let with_bob = app.direct(&alice.0, &bob.1).await;
    let with_carol = app.direct(&alice.0, &carol.1).await;
    let group = app
        .create_conversation(
            &alice.0,
            &[
                &bob.1.id.to_string(),
                &carol.1.id.to_string(),
                &dave.1.id.to_string(),
            ],
            Some("all"),
        )
        .await;
    const PER_WRITER: usize = 30;
    let writers = [
        (bob.0.clone(), with_bob.clone()),
        (carol.0.clone(), with_carol.clone()),
        (dave.0.clone(), group.clone()),
        (bob.0.clone(), group.clone()),
    ];
    let done = Arc::new(AtomicBool::new(false));

    // Act
    let handles: Vec<_> = writers
        .into_iter()
        .map(|(token, conversation)| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut stored = Vec::new();
                for i in 0..PER_WRITER {
                    let m = app.send(&token, &conversation, &format!("w{i}")).await;
                    stored.push(id_of(&m));
                }
                stored
            })
        })
        .collect();
    let reader = {
        let app = app.clone();
        let token = alice.0.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            let mut calls = 0usize;
            // Read while writers write, then drain until an answer has nothing more.
            let mut drained = false;
            while !drained {
                calls += 1;
                assert!(calls < 10_000, "sync never caught up");
                let writers_done = done.load(Ordering::SeqCst);
                let reply = app.sync(&token, cursor.as_deref(), Some(7)).await;
                let (messages, _, _, next, has_more) = parts(reply.expect(200));
                let empty = messages.is_empty();
                seen.extend(messages);
                cursor = Some(next);
                drained = writers_done && !has_more && empty;
            }
            seen
        })
    };
    let mut posted = Vec::new();
    for handle in handles {
        posted.extend(handle.await.expect("writer task"));
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("reader task");

    // Assert: every message exactly once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &seen {
        *counts.entry(id_of(m)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "seen more than once: {twice:?}");
    let posted: HashSet<String> = posted.into_iter().collect();
    let seen_ids: HashSet<String> = counts.keys().cloned().collect();
    let missing: Vec<_> = posted.difference(&seen_ids).collect();
    assert!(
        missing.is_empty(),
        "{} of {} messages never reached sync: {missing:?}",
        missing.len(),
        posted.len()
    );
    assert_eq!(seen_ids, posted, "nothing unexpected either");
    // Per conversation, in seq order with no gap.
    let mut per_conversation: HashMap<String, Vec<i64>> = HashMap::new();
    for m in &seen {
        per_conversation
            .entry(
                m["conversationId"]
                    .as_str()
                    .expect("conversationId")
                    .to_owned(),
            )
            .or_default()
            .push(m["seq"].as_i64().expect("seq"));
    }
    for (conversation, expected) in [
        (&with_bob, PER_WRITER),
        (&with_carol, PER_WRITER),
        (&group, 2 * PER_WRITER),
    ] {
        let seqs = per_conversation
            .get(conversation)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            seqs,
            (1..=expected as i64).collect::<Vec<_>>(),
            "conversation {conversation} in seq order"
        );
    }
}
