//! The `rust_socketio` async client against the echo server, over each transport setting.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::json;
use tokio::sync::mpsc;

use crate::helpers::spawn_echo;

type Received = mpsc::UnboundedReceiver<(String, Payload)>;

/// A callback that forwards what it receives, tagged with `tag`.
fn forward(
    tx: &mpsc::UnboundedSender<(String, Payload)>,
    tag: &str,
) -> impl FnMut(Payload, Client) -> BoxFuture<'static, ()> + Send + Sync + 'static {
    let tx = tx.clone();
    let tag = tag.to_owned();
    move |payload, _client| {
        let _ = tx.send((tag.clone(), payload));
        async {}.boxed()
    }
}

async fn next(rx: &mut Received) -> (String, Payload) {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("nothing received within 5 s")
        .expect("the callbacks are gone")
}

fn text(payload: Payload) -> Vec<serde_json::Value> {
    match payload {
        Payload::Text(values) => values,
        other => panic!("expected a text payload, got {other:?}"),
    }
}

async fn connect(url: String, namespace: &str, transport: TransportType) -> (Client, Received) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ClientBuilder::new(url)
        .namespace(namespace)
        .transport_type(transport)
        .reconnect(false)
        .auth(json!({ "token": "from-rust" }))
        .on("auth", forward(&tx, "auth"))
        .on("message-back", forward(&tx, "message-back"))
        .connect()
        .await
        .expect("rust_socketio could not connect");
    (client, rx)
}

async fn exchanges_events_acks_and_binary(transport: TransportType) {
    // Arrange
    let server = spawn_echo().await;
    let (client, mut rx) = connect(server.url(), "/", transport).await;
    let (tag, auth) = next(&mut rx).await;
    assert_eq!(tag, "auth");
    assert_eq!(text(auth), vec![json!({ "token": "from-rust" })]);

    // Act + assert: a plain event
    client
        .emit("message", vec![json!("hello"), json!({ "n": 1 })])
        .await
        .unwrap();
    let (tag, echo) = next(&mut rx).await;
    assert_eq!(tag, "message-back");
    assert_eq!(text(echo), vec![json!("hello"), json!({ "n": 1 })]);

    // an ack
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    client
        .emit_with_ack(
            "message-with-ack",
            vec![json!("acked"), json!(2)],
            Duration::from_secs(60),
            forward(&ack_tx, "ack"),
        )
        .await
        .unwrap();
    let (_, answer) = next(&mut ack_rx).await;
    // rust_socketio hands an ack's arguments over as one array
    assert_eq!(text(answer), vec![json!(["acked", 2])]);

    // binary data (rust_socketio sends one attachment per event)
    client
        .emit(
            "message",
            Payload::Binary(Bytes::from_static(&[1, 2, 3, 255])),
        )
        .await
        .unwrap();
    let (tag, echo) = next(&mut rx).await;
    assert_eq!(tag, "message-back");
    match echo {
        Payload::Binary(data) => assert_eq!(&data[..], &[1, 2, 3, 255]),
        other => panic!("expected binary, got {other:?}"),
    }

    client.disconnect().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_socketio_exchanges_events_acks_and_binary_with_the_default_transports() {
    exchanges_events_acks_and_binary(TransportType::Any).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_socketio_exchanges_events_acks_and_binary_over_websocket_only() {
    exchanges_events_acks_and_binary(TransportType::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_socketio_exchanges_events_acks_and_binary_over_polling_only() {
    exchanges_events_acks_and_binary(TransportType::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_socketio_connects_to_a_custom_namespace_with_auth() {
    let server = spawn_echo().await;
    let (client, mut rx) = connect(server.url(), "/custom", TransportType::Any).await;
    let (tag, auth) = next(&mut rx).await;
    assert_eq!(tag, "auth");
    assert_eq!(text(auth), vec![json!({ "token": "from-rust" })]);
    client.emit("message", json!("in custom")).await.unwrap();
    let (tag, echo) = next(&mut rx).await;
    assert_eq!(tag, "message-back");
    assert_eq!(text(echo), vec![json!("in custom")]);
    client.disconnect().await.unwrap();
    server.stop().await;
}
