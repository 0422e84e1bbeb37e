//! The relay port's contract, run by the same code against both implementations: `HttpPort`
//! (the split deployment, over the internal routes) and `InProcessPort` (the all-in-one
//! binary), each on the real API and a fresh PostgreSQL database. Plus group commit under
//! concurrency: batches over the same conversations in opposite orders.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use shared::auth::{JwtKeys, JwtSettings};
use shared::bus::redis::RedisBus;
use shared::bus::{Bus, Keys};
use shared::errors::ErrorCode;
use shared::events::{BusEvent, Envelope};
use shared::ids::{ConversationId, UserId};
use shared::port::{Announce, Receipt, RelayPort, StoreItem, StoreOutcome};
use shared::wire::{Message, SendMessageRequest};
use socket_server::chat::port_http::HttpPort;
use tokio::sync::oneshot;

use crate::helpers::PASSWORD;

/// The API alone on port 0 against a fresh database, with both ports to it; the database is
/// dropped with it.
struct Api {
    url: String,
    http: reqwest::Client,
    keys: JwtKeys,
    in_process: Arc<dyn RelayPort>,
    db_name: String,
    /// The prefix of the API's bus keys and channels.
    bus_prefix: String,
    stop: Option<oneshot::Sender<()>>,
}

async fn spawn_api() -> Api {
    shared::telemetry::init("warn");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("parley_port_test_{id}");
    let jwt = JwtSettings {
        secret: SecretString::from(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )),
        issuer: "parley-test-issuer".into(),
        audience: "parley-test-clients".into(),
        ttl_secs: 3600,
        leeway_secs: 0,
    };
    let bus_prefix = format!("parley-port-test-{id}");
    let settings = crate::helpers::api_settings(
        &db_name,
        crate::helpers::REDIS_URL,
        &bus_prefix,
        jwt.clone(),
    );
    let app = api_server::startup::Application::build(settings)
        .await
        .unwrap_or_else(|e| panic!("the API did not start (PostgreSQL and Redis must run): {e:#}"));
    let url = format!("http://127.0.0.1:{}", app.port());
    let in_process = app.relay_port();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    Api {
        url,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(shared::port::API_CLIENT_IDLE)
            .build()
            .unwrap(),
        keys: JwtKeys::new(&jwt).unwrap(),
        in_process,
        db_name,
        bus_prefix,
        stop: Some(tx),
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ))
            .output();
    }
}

/// A registered user: their token, id and the token's `jti`.
struct User {
    token: String,
    id: UserId,
    jti: String,
}

impl Api {
    fn http_port(&self) -> Arc<dyn RelayPort> {
        Arc::new(HttpPort::new(&self.url, Duration::from_secs(30), self.keys.clone()).unwrap())
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, username: &str) -> User {
        let response = self
            .http
            .post(format!("{}/api/auth/register", self.url))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "registering {username}");
        let body: Value = response.json().await.unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        let jti = self.keys.verify(&token).unwrap().jti;
        User {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            token,
            jti,
        }
    }

    async fn direct(&self, user: &User, other: &User) -> ConversationId {
        let (status, body) = self
            .post(
                "/api/conversations",
                &user.token,
                &json!({ "memberIds": [other.id] }),
            )
            .await;
        assert!(matches!(status, 200 | 201), "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Every message of a conversation, in seq order.
    async fn history(&self, user: &User, conversation: ConversationId) -> Vec<Message> {
        let response = self
            .http
            .get(format!(
                "{}/api/conversations/{conversation}/messages?afterSeq=0&limit=200",
                self.url
            ))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["hasMore"], false, "more than a page: {page}");
        serde_json::from_value(page["messages"].clone()).unwrap()
    }
}

fn item(user: &User, jti: &str, message: Value) -> StoreItem {
    let message: SendMessageRequest = serde_json::from_value(message).unwrap();
    StoreItem {
        sender: user.id,
        jti: jti.to_owned(),
        message,
    }
}

fn text(cmid: &str, conversation: ConversationId, content: &str) -> Value {
    json!({ "clientMsgId": cmid, "conversationId": conversation, "content": content })
}

#[track_caller]
fn message(outcome: &StoreOutcome) -> &Message {
    match outcome {
        StoreOutcome::Message(m) => m,
        StoreOutcome::Error(e) => panic!("expected a message, got {e:?}"),
    }
}

#[track_caller]
fn refusal(outcome: &StoreOutcome) -> ErrorCode {
    match outcome {
        StoreOutcome::Error(e) => e.code,
        StoreOutcome::Message(m) => panic!("expected a refusal, got message {m:?}"),
    }
}

/// The contract every implementation of the port keeps.
async fn contract(api: &Api, port: &dyn RelayPort) {
    // Arrange: alice and bob share `ab`; bob and carol `bc`; one message already stored.
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let dave = api.register("dave").await;
    let ab = api.direct(&alice, &bob).await;
    let bc = api.direct(&bob, &carol).await;
    let (status, stored) = api
        .post("/api/messages", &alice.token, &text("stored", ab, "first"))
        .await;
    assert_eq!(status, 201, "{stored}");
    let a = |message: Value| item(&alice, &alice.jti, message);

    // Act: one batch of every kind of item.
    let outcomes = port
        .store(
            &[
                a(text("m1", ab, "one")),
                a(text("m2", bc, "not a member")),
                a(text("m1", ab, "one")),
                a(text("stored", ab, "first")),
                a(text("stored", ab, "changed")),
                a(json!({ "clientMsgId": "m3", "recipientId": carol.id, "content": "hi carol" })),
                a(text("m4", ab, "two")),
                item(&alice, &dave.jti, text("m5", ab, "another user's session")),
            ],
            Announce::Bus,
        )
        .await
        .unwrap();

    // Assert: one outcome each, in order, seqs without gap.
    assert_eq!(outcomes.len(), 8);
    assert_eq!(message(&outcomes[0]).seq, 2);
    assert_eq!(refusal(&outcomes[1]), ErrorCode::ConversationNotFound);
    assert_eq!(message(&outcomes[2]).id, message(&outcomes[0]).id);
    assert_eq!(message(&outcomes[3]).id.to_string(), stored["id"]);
    assert_eq!(refusal(&outcomes[4]), ErrorCode::IdempotencyMismatch);
    let to_carol = message(&outcomes[5]);
    assert_ne!(to_carol.conversation_id, ab);
    assert_eq!(to_carol.seq, 1);
    assert_eq!(message(&outcomes[6]).seq, 3);
    assert_eq!(refusal(&outcomes[7]), ErrorCode::TokenRevoked);
    let seqs: Vec<i64> = api
        .history(&alice, ab)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    // Each stored message is answered as stored (over HTTP most are rebuilt from what was
    // sent: `answers: saved`).
    for (i, conversation) in [
        (0, ab),
        (2, ab),
        (3, ab),
        (5, to_carol.conversation_id),
        (6, ab),
    ] {
        let answered = message(&outcomes[i]);
        let history = api.history(&alice, conversation).await;
        let stored = history.iter().find(|m| m.id == answered.id);
        assert_eq!(Some(answered), stored, "outcome {i}");
    }

    // Announcing: the API publishes `message_stored` for a batch it announces, not for one
    // its caller announces. The API publishes in order, so the second is read after the first
    // would have been.
    let bus = RedisBus::connect(crate::helpers::REDIS_URL, Keys::new(api.bus_prefix.clone()))
        .await
        .expect("Redis must run at 127.0.0.1:6379");
    let (subscriber, mut received) = bus.subscribe();
    subscriber.subscribe(bob.id).await;
    let quiet = port
        .store(
            &[a(text("quiet", ab, "announced by the caller"))],
            Announce::Caller,
        )
        .await
        .unwrap();
    assert_eq!(message(&quiet[0]).seq, 4);
    let loud = port
        .store(
            &[a(text("loud", ab, "announced by the API"))],
            Announce::Bus,
        )
        .await
        .unwrap();
    assert_eq!(message(&loud[0]).seq, 5);
    let mut stored_on_the_bus = Vec::new();
    let read_until_loud = async {
        while !stored_on_the_bus.iter().any(|id| id == "loud") {
            let published = received.recv().await.expect("the bus subscription ended");
            let envelope: Envelope = serde_json::from_str(&published.payload).unwrap();
            if let BusEvent::MessageStored { message } = envelope.event {
                stored_on_the_bus.push(message.client_msg_id);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_until_loud)
        .await
        .expect("the API published no message_stored for a batch it announces");
    assert!(
        !stored_on_the_bus.iter().any(|id| id == "quiet"),
        "{stored_on_the_bus:?}"
    );

    // Memberships and members.
    let ac = to_carol.conversation_id;
    let sorted = |mut ids: Vec<UserId>| {
        ids.sort();
        ids
    };
    let mut expected = vec![
        (ab, sorted(vec![alice.id, bob.id])),
        (ac, sorted(vec![alice.id, carol.id])),
    ];
    expected.sort();
    let view: Vec<(ConversationId, Vec<UserId>)> = port
        .memberships(alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.conversation_id, sorted(c.members)))
        .collect();
    assert_eq!(view, expected);
    let members = port.members(alice.id, ab).await.unwrap().map(sorted);
    assert_eq!(members, Some(sorted(vec![alice.id, bob.id])));
    assert_eq!(port.members(alice.id, bc).await.unwrap(), None);

    // Receipts: they move up, never back.
    let read = port.mark(bob.id, ab, Receipt::Read, 3).await.unwrap();
    assert_eq!((read.read_up_to_seq, read.delivered_up_to_seq), (3, 3));
    let delivered = port.mark(bob.id, ab, Receipt::Delivered, 1).await.unwrap();
    assert_eq!(delivered.delivered_up_to_seq, 3);
    let not_member = port.mark(alice.id, bc, Receipt::Read, 1).await.unwrap_err();
    assert_eq!(not_member.code, ErrorCode::ConversationNotFound);

    // Sync: everything from the beginning, then nothing new after the cursor.
    let all = port.sync(bob.id, None).await.unwrap();
    let mut synced: Vec<i64> = all
        .messages
        .iter()
        .filter(|m| m.conversation_id == ab)
        .map(|m| m.seq)
        .collect();
    synced.sort();
    assert_eq!(synced, [1, 2, 3, 4, 5]);
    let after = port.sync(bob.id, Some(all.next_cursor)).await.unwrap();
    assert!(after.messages.is_empty(), "{after:?}");
    let bad = port.sync(bob.id, Some("bogus".into())).await.unwrap_err();
    assert_eq!(bad.code, ErrorCode::ValidationFailed);

    // Sessions: the user's own live jti, another user's, then after logout.
    assert!(port.session_active(alice.id, &alice.jti).await.unwrap());
    assert!(!port.session_active(alice.id, &bob.jti).await.unwrap());
    let (status, _) = api.post("/api/auth/logout", &alice.token, &json!({})).await;
    assert_eq!(status, 204);
    assert!(!port.session_active(alice.id, &alice.jti).await.unwrap());
    let after_logout = port
        .store(&[a(text("m6", ab, "late"))], Announce::Bus)
        .await
        .unwrap();
    assert_eq!(refusal(&after_logout[0]), ErrorCode::TokenRevoked);
}

#[tokio::test]
async fn the_http_port_keeps_the_port_contract() {
    let api = spawn_api().await;
    contract(&api, &*api.http_port()).await;
}

#[tokio::test]
async fn the_in_process_port_keeps_the_port_contract() {
    let api = spawn_api().await;
    contract(&api, &*api.in_process.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_over_the_same_conversations_store_each_message_once_without_gaps() {
    // Arrange: `sender` in three conversations; eight batches over all three, half of them in
    // ascending and half in descending conversation order, and pairs of batches sharing some
    // messages (the same key and content: one row).
    let api = spawn_api().await;
    let sender = api.register("sender").await;
    let mut conversations = Vec::new();
    for name in ["one", "two", "three"] {
        let other = api.register(name).await;
        conversations.push(api.direct(&sender, &other).await);
    }
    const BATCHES: usize = 8;
    const PER_CONVERSATION: usize = 10;
    let batches: Vec<Vec<StoreItem>> = (0..BATCHES)
        .map(|b| {
            let mut order = conversations.clone();
            if b % 2 == 1 {
                order.reverse();
            }
            let mut items = Vec::new();
            for j in 0..PER_CONVERSATION {
                for &c in &order {
                    let own = format!("b{b}-{c}-{j}");
                    items.push(item(&sender, &sender.jti, text(&own, c, "x")));
                }
                if j % 3 == 0 {
                    let shared = format!("shared-{}-{j}", b / 2);
                    let c = conversations[1];
                    items.push(item(&sender, &sender.jti, text(&shared, c, "s")));
                }
            }
            items
        })
        .collect();
    let mut expected_keys: Vec<(ConversationId, String)> = batches
        .iter()
        .flatten()
        .map(|i| {
            let c = i.message.conversation_id.unwrap();
            (c, i.message.client_msg_id.clone())
        })
        .collect();
    expected_keys.sort();
    expected_keys.dedup();
    let port = api.in_process.clone();

    // Act: all at once.
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let port = port.clone();
            tokio::spawn(async move { port.store(&batch, Announce::Bus).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    // Assert: no batch failed, every item stored; per conversation seqs 1..N, one row per key.
    for answer in answers {
        let outcomes = answer.unwrap_or_else(|e| panic!("a batch failed: {e:?}"));
        for outcome in &outcomes {
            message(outcome);
        }
    }
    let mut stored_keys = Vec::new();
    for &c in &conversations {
        let history = api.history(&sender, c).await;
        let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
        let expected: Vec<i64> = (1..=history.len() as i64).collect();
        assert_eq!(seqs, expected, "conversation {c}");
        stored_keys.extend(history.into_iter().map(|m| (c, m.client_msg_id)));
    }
    stored_keys.sort();
    assert_eq!(stored_keys, expected_keys);
}
