//! Presence across relays: `online_users` at connect, `presence` to contacts only when a user's
//! global state changes, offline after the grace period (300 ms in the test stack; 10 s for the
//! move between relays), and `GET /api/users` reading what the relays wrote.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::Payload;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::{spawn_stack, spawn_stack_with, Stack};

/// A device that records only `presence` and `online_users`.
struct Watcher {
    client: Client,
    rx: mpsc::UnboundedReceiver<(String, Value)>,
}

fn first(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        other => panic!("expected a text payload, got {other:?}"),
    }
}

impl Watcher {
    async fn connect(stack: &Stack, relay: usize, token: &str) -> Watcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = ClientBuilder::new(stack.relay_url(relay))
            .reconnect(false)
            .auth(json!({ "token": token }));
        for event in ["presence", "online_users"] {
            let tx = tx.clone();
            builder = builder.on(event, move |payload, _: Client| -> BoxFuture<'static, ()> {
                let _ = tx.send((event.to_owned(), first(payload)));
                async {}.boxed()
            });
        }
        let client = builder.connect().await.expect("could not connect");
        Watcher { client, rx }
    }

    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(crate::device::PATIENCE, self.rx.recv())
            .await
            .expect("no event within PATIENCE")
            .expect("the client is gone")
    }

    /// The `online_users` list every connection receives first.
    async fn online_users(&mut self) -> Vec<Value> {
        let (event, body) = self.next().await;
        assert_eq!(event, "online_users", "{body}");
        body["users"].as_array().unwrap().clone()
    }

    async fn nothing_within(&mut self, wait: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(wait, self.rx.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }

    async fn close(self) {
        self.client.disconnect().await.unwrap();
    }
}

/// Longer than the stack's offline grace (300 ms) plus the bus round trips.
const AFTER_GRACE: Duration = Duration::from_millis(1200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_sees_online_then_offline_after_the_grace_and_a_stranger_sees_nothing() {
    // Arrange: alice and bob share a conversation; carol shares none
    let stack = spawn_stack(2).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let (carol, _) = stack.register("carol").await;
    stack.conversation(&alice, &[&bob_id]).await;
    let mut b = Watcher::connect(&stack, 0, &bob).await;
    assert_eq!(b.online_users().await, Vec::<Value>::new());
    let mut c = Watcher::connect(&stack, 0, &carol).await;
    c.online_users().await;

    // Act: alice comes online on the other relay, then leaves
    let mut a = Watcher::connect(&stack, 1, &alice).await;
    let seen_by_alice = a.online_users().await;
    let (event, online) = b.next().await;
    a.close().await;
    let (event2, offline) = b.next().await;

    // Assert
    assert_eq!(seen_by_alice, vec![json!(bob_id)]);
    assert_eq!(
        (event.as_str(), &online["userId"]),
        ("presence", &json!(alice_id))
    );
    assert_eq!(online["online"], json!(true));
    assert_eq!(
        (event2.as_str(), &offline["online"]),
        ("presence", &json!(false))
    );
    assert!(offline["lastSeen"].is_string(), "{offline}");
    c.nothing_within(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_contacts_could_not_be_read_at_connect_is_announced_once_they_are() {
    // Arrange: a relay that waits 1 s for the API; bob online; the members table locked, so
    // reading alice's conversations at her connect times out
    let stack = spawn_stack_with(1, |s| s.api.timeout_ms = 1_000).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    stack.conversation(&alice, &[&bob_id]).await;
    let mut b = Watcher::connect(&stack, 0, &bob).await;
    b.online_users().await;
    let lock = stack.lock_table("members", "ACCESS EXCLUSIVE").await;
    let mut a = Watcher::connect(&stack, 0, &alice).await;
    assert_eq!(
        a.online_users().await,
        Vec::<Value>::new(),
        "connected without her contacts"
    );

    // Act: the API can read them again
    lock.batch_execute("ROLLBACK").await.unwrap();

    // Assert: the relay loads them by itself; each learns the other is online
    let (event, online) = b.next().await;
    assert_eq!(
        (event.as_str(), &online["userId"], &online["online"]),
        ("presence", &json!(alice_id), &json!(true)),
        "{online}"
    );
    assert_eq!(a.online_users().await, vec![json!(bob_id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_of_two_devices_does_not_announce_offline() {
    // Arrange
    let stack = spawn_stack(2).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    stack.conversation(&alice, &[&bob_id]).await;
    let mut b = Watcher::connect(&stack, 0, &bob).await;
    b.online_users().await;
    let phone = Watcher::connect(&stack, 0, &alice).await;
    let _laptop = Watcher::connect(&stack, 1, &alice).await;
    let (event, online) = b.next().await;
    assert_eq!(
        (event.as_str(), &online["online"]),
        ("presence", &json!(true))
    );

    // Act
    phone.close().await;

    // Assert: neither offline nor a second online
    b.nothing_within(AFTER_GRACE).await;
}

/// The offline grace of [`moving_between_two_relays_within_the_grace_does_not_flicker`]'s stack:
/// long enough that the move (a disconnect and a connect) fits in it however busy the machine.
const MOVE_GRACE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_between_two_relays_within_the_grace_does_not_flicker() {
    // Arrange
    let stack = spawn_stack_with(2, |settings| {
        settings.presence.offline_grace_ms = MOVE_GRACE.as_millis() as u64;
    })
    .await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    stack.conversation(&alice, &[&bob_id]).await;
    let mut b = Watcher::connect(&stack, 0, &bob).await;
    b.online_users().await;
    let first = Watcher::connect(&stack, 0, &alice).await;
    let (_, online) = b.next().await;
    assert_eq!(online["online"], json!(true));

    // Act: the device drops off relay 0 and reconnects to relay 1 at once
    let left = tokio::time::Instant::now();
    first.close().await;
    let mut second = Watcher::connect(&stack, 1, &alice).await;
    second.online_users().await;
    let moved_in = left.elapsed();
    assert!(
        moved_in < MOVE_GRACE,
        "the move took {moved_in:?}, longer than the grace: nothing to judge"
    );

    // Assert: no offline when the grace that began at the disconnect is over, nor after
    let after_grace = left + MOVE_GRACE + AFTER_GRACE;
    b.nothing_within(after_grace.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    let (_, users) = stack.get("/api/users?search=alice", &bob).await;
    assert_eq!(users[0]["id"], json!(alice_id));
    assert_eq!(users[0]["online"], json!(true), "{users}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_users_shows_what_the_relays_wrote_and_online_users_lists_online_contacts() {
    // Arrange
    let stack = spawn_stack(1).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    stack.conversation(&alice, &[&bob_id]).await;

    // Act + assert: online while connected
    let mut a = Watcher::connect(&stack, 0, &alice).await;
    a.online_users().await;
    let (_, users) = stack.get("/api/users?search=alice", &bob).await;
    assert_eq!(
        (&users[0]["id"], &users[0]["online"]),
        (&json!(alice_id), &json!(true))
    );
    let mut b = Watcher::connect(&stack, 0, &bob).await;
    assert_eq!(b.online_users().await, vec![json!(alice_id)]);

    // Act + assert: offline with a last-seen time once gone
    a.close().await;
    let (_, offline) = b.next().await;
    assert_eq!(offline["online"], json!(false));
    let (_, users) = stack.get("/api/users?search=alice", &bob).await;
    assert_eq!(users[0]["online"], json!(false), "{users}");
    assert!(users[0]["lastSeen"].is_string(), "{users}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_who_become_contacts_while_connected_learn_each_others_presence() {
    // Arrange: alice and bob, online on two relays, share nothing yet
    let stack = spawn_stack(2).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let mut a = Watcher::connect(&stack, 0, &alice).await;
    assert_eq!(a.online_users().await, Vec::<Value>::new());
    let mut b = Watcher::connect(&stack, 1, &bob).await;
    assert_eq!(b.online_users().await, Vec::<Value>::new());

    // Act: alice starts a chat with bob
    stack.conversation(&alice, &[&bob_id]).await;

    // Assert: each is told the other is online (no presence event would come before either
    // reconnects or goes offline)
    let (event, seen_by_bob) = b.next().await;
    assert_eq!(event, "presence", "{seen_by_bob}");
    assert_eq!(
        (&seen_by_bob["userId"], &seen_by_bob["online"]),
        (&json!(alice_id), &json!(true))
    );
    let (event, seen_by_alice) = a.next().await;
    assert_eq!(event, "presence", "{seen_by_alice}");
    assert_eq!(
        (&seen_by_alice["userId"], &seen_by_alice["online"]),
        (&json!(bob_id), &json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_relay_stopped_during_their_grace_is_announced_offline_once_by_another() {
    // Arrange: three relays refreshing every second; bob on relay 0 sees alice come online on
    // relay 1; relay 2 sweeps too
    let mut stack = spawn_stack_with(3, |settings| {
        settings.presence.ttl_secs = 3;
        settings.presence.refresh_secs = 1;
    })
    .await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    stack.conversation(&alice, &[&bob_id]).await;
    let mut b = Watcher::connect(&stack, 0, &bob).await;
    b.online_users().await;
    let mut a = Watcher::connect(&stack, 1, &alice).await;
    a.online_users().await;
    let (_, online) = b.next().await;
    assert_eq!(online["online"], json!(true), "{online}");

    // Act: relay 1 stops (SIGTERM) before alice's grace ends, so it never announces her
    // offline, and she does not come back
    stack.stop_relay(1).await;

    // Assert: another relay announces it, once, with a last-seen time
    let (event, offline) = b.next().await;
    assert_eq!(event, "presence", "{offline}");
    assert_eq!(
        (&offline["userId"], &offline["online"]),
        (&json!(alice_id), &json!(false))
    );
    assert!(offline["lastSeen"].is_string(), "{offline}");
    b.nothing_within(Duration::from_millis(2500)).await;
    drop(a);
}
