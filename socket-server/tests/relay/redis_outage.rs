//! Redis is only the bus: stopping it (a Redis of the test's own, never the shared one) costs
//! live cross-relay delivery for the outage and nothing else. Sends through both relays and REST
//! are stored and answered as before; `/health` answers throughout; once Redis is back (empty:
//! it keeps nothing on disk), cross-relay delivery, presence and logout propagation work again,
//! and every acknowledged message is in PostgreSQL exactly once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::RedisServer;

use crate::device::Device;
use crate::helpers::{spawn_stack_on, Stack};

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(10);
/// Acks, 201s and `/health` answers are expected within a second (they take milliseconds);
/// the assertions allow this much so that a loaded machine cannot fail them, while a stall on
/// Redis (what this test exists for: over 100 s before) still does.
const ANSWER_BOUND: Duration = Duration::from_secs(3);
/// Recovery is expected within 5 s of Redis answering again; asserted with the same margin.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

fn send(client_msg_id: &str, conversation: &str) -> Value {
    json!({ "clientMsgId": client_msg_id, "conversationId": conversation, "content": client_msg_id })
}

/// GET `url`; how long the answer took.
async fn timed_health(http: &reqwest::Client, url: String) -> Duration {
    let started = Instant::now();
    let response = http.get(&url).send().await.expect("health answers");
    assert_eq!(response.status(), 200, "{url}");
    started.elapsed()
}

/// Every service's `/health`, asserting each answers within [`ANSWER_BOUND`]; the slowest.
async fn health_of_all(stack: &Stack) -> Duration {
    let mut urls = vec![format!("{}/health", stack.api_url)];
    urls.extend((0..stack.relay_ports.len()).map(|i| format!("{}/health", stack.relay_url(i))));
    let mut slowest = Duration::ZERO;
    for url in urls {
        let took = timed_health(&stack.http, url.clone()).await;
        assert!(took < ANSWER_BOUND, "{url} took {took:?}");
        slowest = slowest.max(took);
    }
    slowest
}

/// Wait for the next `event` on `device`, skipping others; `None` if `limit` passes first.
async fn next_event(device: &mut Device, event: &str, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let left = deadline - Instant::now();
        match tokio::time::timeout(left, device.next()).await {
            Ok((name, body)) if name == event => return Some(body),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_costs_only_live_cross_relay_delivery_and_everything_recovers_after_it() {
    // Arrange: the API and two relays on a Redis of our own; alice on relay 0, bob on relay 1
    let mut redis = RedisServer::start();
    let stack = spawn_stack_on(&redis.url(), 2, |_| {}).await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let (carol, carol_id) = stack.register("carol").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    stack.conversation(&carol, &[&bob_id]).await;
    let mut a = Device::connect(&stack, 0, &alice).await;
    let mut a2 = Device::connect(&stack, 0, &alice).await;
    let mut b = Device::connect(&stack, 1, &bob).await;
    let before = a
        .request("send_message", send("before", &conversation))
        .await;
    assert_eq!(before["success"], true, "{before}");
    let relayed = next_event(&mut b, "receive_message", ANSWER_BOUND).await;
    assert!(
        relayed.is_some(),
        "cross-relay delivery works before the outage"
    );
    let mut acked: Vec<String> = vec![before["id"].as_str().unwrap().to_owned()];

    // Act: stop Redis; keep sending through both relays and REST for the whole outage
    redis.stop();
    let outage = Instant::now();
    let (mut slowest_ack, mut slowest_rest, mut slowest_health) = Default::default();
    let mut i = 0;
    while outage.elapsed() < OUTAGE {
        i += 1;
        for (device, name) in [(&mut a, "a"), (&mut b, "b")] {
            let id = format!("{name}-out-{i}");
            let started = Instant::now();
            let ack = device
                .request("send_message", send(&id, &conversation))
                .await;
            let took = started.elapsed();
            assert_eq!(ack["success"], true, "{id} during the outage: {ack}");
            assert!(took < ANSWER_BOUND, "{id} acked after {took:?}");
            slowest_ack = took.max(slowest_ack);
            acked.push(ack["id"].as_str().unwrap().to_owned());
        }
        // alice's other device, on the same relay, still learns the real id of what she sent:
        // the relay announces what it stored without the bus.
        let id = format!("a-out-{i}");
        let saved = loop {
            let Some(saved) = next_event(&mut a2, "message_saved", ANSWER_BOUND).await else {
                panic!("no message_saved for {id} on the sender's other device");
            };
            if saved["clientMsgId"] == id.as_str() {
                break saved;
            }
        };
        assert_eq!(saved["id"], acked[acked.len() - 2], "{saved}");
        let started = Instant::now();
        let (status, stored) = stack
            .post(
                "/api/messages",
                Some(&bob),
                &send(&format!("rest-out-{i}"), &conversation),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(status, 201, "REST during the outage: {stored}");
        assert!(took < ANSWER_BOUND, "REST answered after {took:?}");
        slowest_rest = took.max(slowest_rest);
        acked.push(stored["id"].as_str().unwrap().to_owned());
        slowest_health = health_of_all(&stack).await.max(slowest_health);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "during a {OUTAGE:?} Redis outage: {} sends, slowest ack {slowest_ack:?}, slowest REST \
         {slowest_rest:?}, slowest /health {slowest_health:?}",
        acked.len() - 1
    );

    // Act: Redis comes back, empty
    redis.restart();
    let back = Instant::now();

    // Assert: cross-relay delivery again, within the bound (probe messages until one arrives)
    let mut probe = 0;
    let recovered = loop {
        probe += 1;
        let id = format!("probe-{probe}");
        let ack = a.request("send_message", send(&id, &conversation)).await;
        assert_eq!(ack["success"], true, "{ack}");
        acked.push(ack["id"].as_str().unwrap().to_owned());
        if let Some(body) = next_event(&mut b, "receive_message", Duration::from_millis(500)).await
        {
            if body["clientMsgId"]
                .as_str()
                .is_some_and(|c| c.starts_with("probe-"))
            {
                break back.elapsed();
            }
        }
        assert!(
            back.elapsed() < RECOVERY_BOUND,
            "no cross-relay delivery {RECOVERY_BOUND:?} after Redis came back"
        );
    };
    println!("cross-relay delivery back {recovered:?} after Redis");

    // Assert: presence is recorded again (Redis lost it): alice shows online in GET /api/users
    let online = loop {
        let (status, users) = stack.get("/api/users?search=alice", &bob).await;
        assert_eq!(status, 200, "{users}");
        let alice_online = users
            .as_array()
            .and_then(|list| list.iter().find(|u| u["id"] == alice_id.as_str()))
            .is_some_and(|u| u["online"] == true);
        if alice_online {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < RECOVERY_BOUND,
            "alice not online again {RECOVERY_BOUND:?} after Redis came back: {users}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("presence back {online:?} after Redis");

    // Assert: logout propagates again: carol's socket on relay 1 is revoked and closed
    let mut c = Device::connect(&stack, 1, &carol).await;
    stack.logout(&carol).await;
    let revoked = next_event(&mut c, "session_revoked", RECOVERY_BOUND).await;
    assert!(
        revoked.is_some(),
        "carol's socket was not revoked after logout"
    );
    let _ = carol_id;

    // Assert: everything acknowledged is stored exactly once, seq without gap, and bob's sync
    // has every message (the live copies lost during the outage included)
    let (db, connection) = tokio_postgres::connect(&stack.database_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the stack's database");
    tokio::spawn(connection);
    let rows = db
        .query(
            "SELECT id, seq FROM messages WHERE conversation_id = $1 ORDER BY seq",
            &[&conversation.parse::<i64>().unwrap()],
        )
        .await
        .unwrap();
    let stored: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, i64>(0).to_string())
        .collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>(), "seq gap");
    let distinct: HashSet<&String> = acked.iter().collect();
    assert_eq!(distinct.len(), acked.len(), "an ack repeated an id");
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        distinct,
        "stored ≠ acknowledged"
    );
    let (status, page) = stack.get("/api/sync", &bob).await;
    assert_eq!(status, 200, "{page}");
    let synced: HashSet<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for id in &acked {
        assert!(synced.contains(id.as_str()), "bob's sync misses {id}");
    }
}
