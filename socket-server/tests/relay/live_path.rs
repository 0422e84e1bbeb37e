//! The live path never waits on storage: with the API's only database connection held by a
//! request stuck on a lock the test holds (so no insert and no other query can run), two users
//! chatting through the relay still see every message on their other devices at once, whether
//! a send names the conversation or, as the design documents' clients do, the recipient; once
//! the lock is released, every send is acknowledged once with its real id.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::device::Device;
use crate::helpers::{spawn_stack_custom, until_a_query_waits_for_a_lock, REDIS_URL};

/// Messages each user sends while storage is held, one per device: rust_socketio picks ack ids
/// at random in 0..999 and answers every outstanding ack sharing an id with the first answer,
/// so a device keeps a single ack outstanding here.
const EACH: usize = 5;

/// Wait until `device` has received `count` `receive_message` events; their clientMsgIds.
async fn relayed(device: &mut Device, count: usize) -> HashSet<String> {
    let mut seen = HashSet::new();
    while seen.len() < count {
        let (event, body) = device.next().await;
        assert_eq!(
            event, "receive_message",
            "only relayed copies can arrive: {body}"
        );
        assert!(
            seen.insert(body["clientMsgId"].as_str().unwrap().to_owned()),
            "a message relayed twice: {body}"
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_other_device_while_storage_is_held_and_are_acked_once_it_is_released()
{
    // Arrange: an API with one database connection; two users with two devices each; the relay
    // waits as long as it takes for the API (the test decides when storage is released, not a
    // clock)
    let stack = spawn_stack_custom(
        REDIS_URL,
        1,
        |api| api.database.pool_size = 1,
        |relay| {
            relay.api.timeout_ms = 600_000;
            relay.limits.connections_per_user = EACH + 1;
        },
    )
    .await;
    let (alice, alice_id) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let mut senders = Vec::new();
    for i in 0..EACH {
        senders.push((format!("a-{i}"), Device::connect(&stack, 0, &alice).await));
        senders.push((format!("b-{i}"), Device::connect(&stack, 0, &bob).await));
    }
    let mut a_other = Device::connect(&stack, 0, &alice).await;
    let mut b_other = Device::connect(&stack, 0, &bob).await;
    let db = stack.hold_messages().await;
    let rest = {
        let (http, url, token) = (stack.http.clone(), stack.api_url.clone(), alice.clone());
        let body = json!({ "clientMsgId": "rest-held", "conversationId": conversation, "content": "held" });
        tokio::spawn(async move {
            http.post(format!("{url}/api/messages"))
                .bearer_auth(token)
                .json(&body)
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    until_a_query_waits_for_a_lock(&db).await;

    // Act: both users send, alternately, while nothing can be stored: alice names the
    // conversation, bob names her (their direct conversation, which the relay knows)
    let mut acks: Vec<(String, mpsc::UnboundedReceiver<(String, Value)>)> = Vec::new();
    for (id, device) in &mut senders {
        let content = format!("held {id}");
        let body = if id.starts_with("b-") {
            json!({ "clientMsgId": id, "recipientId": alice_id, "content": content })
        } else {
            json!({ "clientMsgId": id, "conversationId": conversation, "content": content })
        };
        let ack = device
            .send_later("send_message", body, Duration::from_secs(600))
            .await;
        acks.push((id.clone(), ack));
    }
    let all: HashSet<String> = acks.iter().map(|(id, _)| id.clone()).collect();

    // Assert: each user's other device has every message, while storage is still held
    assert_eq!(relayed(&mut a_other, 2 * EACH).await, all);
    assert_eq!(relayed(&mut b_other, 2 * EACH).await, all);
    for (id, ack) in &mut acks {
        assert!(
            ack.try_recv().is_err(),
            "{id} was acked while storage was held"
        );
    }
    let (stored,): (i64,) = {
        let row = db
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap();
        (row.get(0),)
    };
    assert_eq!(stored, 0, "nothing can be stored while the lock is held");

    // Act: release storage
    db.batch_execute("COMMIT").await.unwrap();
    assert_eq!(rest.await.unwrap().unwrap(), 201);

    // Assert: each send acked once, with its real id; one row each, seq 1..=2*EACH
    let mut ids = HashSet::new();
    for (client_msg_id, ack) in &mut acks {
        let (_, answer) = ack.recv().await.expect("every send is acked");
        assert_eq!(answer["success"], true, "{client_msg_id}: {answer}");
        assert_eq!(answer["clientMsgId"], client_msg_id.as_str(), "{answer}");
        assert!(
            ids.insert(answer["id"].as_str().unwrap().to_owned()),
            "{answer}"
        );
    }
    let rows = db
        .query("SELECT client_msg_id, seq FROM messages ORDER BY seq", &[])
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(seqs, (1..=2 * EACH as i64 + 1).collect::<Vec<_>>());
    let mut stored: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(stored.remove("rest-held"));
    assert_eq!(stored, all);
}
