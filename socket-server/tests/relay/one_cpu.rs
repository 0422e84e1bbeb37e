//! Given one CPU (its affinity, or a cgroup quota), the relay binary runs a current-thread
//! runtime: no worker threads, and a message still goes from one user's socket to the other's,
//! acknowledged with its stored id.

use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_stack;
use crate::memory::{connect, next_text, RelayProcess, Ws};

/// Read packets until the ack `43<id>` arrives; its arguments.
async fn ack(ws: &mut Ws, id: u32) -> Value {
    let prefix = format!("43{id}[");
    loop {
        let packet = next_text(ws).await;
        if packet.starts_with(&prefix) {
            return serde_json::from_str(&packet[prefix.len() - 1..]).expect("JSON arguments");
        }
    }
}

/// Read packets until the event `name` arrives; its first argument.
async fn event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let packet = next_text(ws).await;
        let Some(args) = packet.strip_prefix("42") else {
            continue;
        };
        let mut args: Value = serde_json::from_str(args).expect("JSON arguments");
        if args[0] == name {
            return args[1].take();
        }
    }
}

async fn emit(ws: &mut Ws, ack_id: u32, event: &str, arg: Value) {
    let packet = format!("42{ack_id}{}", json!([event, arg]));
    ws.send(Message::text(packet)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_cpu_the_relay_runs_without_worker_threads_and_relays() {
    // Arrange: the binary on one CPU; bob's socket has had a request answered, so it is in
    // his room
    let stack = spawn_stack(0).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let relay = RelayProcess::start_on_one_cpu(&stack).await;
    let mut a = connect(relay.port, &alice).await;
    let mut b = connect(relay.port, &bob).await;
    emit(&mut b, 1, "ping", json!({})).await;
    ack(&mut b, 1).await;

    // Act
    let send =
        json!({ "clientMsgId": "one-cpu-1", "conversationId": conversation, "content": "hi" });
    emit(&mut a, 1, "send_message", send).await;

    // Assert
    let relayed = event(&mut b, "receive_message").await;
    assert_eq!(relayed["clientMsgId"], "one-cpu-1", "{relayed}");
    let ack = ack(&mut a, 1).await;
    assert_eq!(ack[0]["success"], true, "{ack}");
    assert!(ack[0]["id"].is_string(), "{ack}");
    let threads = relay.threads();
    assert!(
        !threads.iter().any(|name| name.starts_with("tokio-rt")),
        "worker threads on one CPU: {threads:?}"
    );
}
