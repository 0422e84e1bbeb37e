//! A `rust_socketio` device: connects with a token, records every chat event it receives.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::Stack;

/// How long a wait for something that must happen may take: only a real failure exhausts it,
/// never a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

type Received = mpsc::UnboundedReceiver<(String, Value)>;

/// A device: the client and what it received, as (event, first argument).
pub struct Device {
    pub client: Client,
    rx: Received,
}

/// The first argument of an event or ack (rust_socketio hands an ack's arguments as an array).
fn first(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => match values.swap_remove(0) {
            Value::Array(mut args) if !args.is_empty() => args.swap_remove(0),
            other => other,
        },
        other => panic!("expected a text payload, got {other:?}"),
    }
}

fn forward(
    tx: &mpsc::UnboundedSender<(String, Value)>,
    tag: &str,
) -> impl FnMut(Payload, Client) -> BoxFuture<'static, ()> + Send + Sync + 'static {
    let tx = tx.clone();
    let tag = tag.to_owned();
    move |payload, _client| {
        let _ = tx.send((tag.clone(), first(payload)));
        async {}.boxed()
    }
}

impl Device {
    pub async fn connect(stack: &Stack, relay: usize, token: &str) -> Device {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = ClientBuilder::new(stack.relay_url(relay))
            .reconnect(false)
            .auth(json!({ "token": token }));
        for event in [
            "receive_message",
            "message_saved",
            "message_failed",
            "typing",
            "message_status",
            "session_revoked",
        ] {
            builder = builder.on(event, forward(&tx, event));
        }
        let client = builder
            .connect()
            .await
            .expect("rust_socketio could not connect");
        let mut device = Device { client, rx };
        // Events are handled in order after the connect: an answered ping means the device is in
        // its user's room and the relay subscribed to the user's channel.
        let pong = device.request("ping", json!({})).await;
        assert!(pong["serverTime"].is_string(), "ping answered {pong}");
        device
    }

    /// Emit with an ack and wait for the answer.
    pub async fn request(&mut self, event: &str, arg: Value) -> Value {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.client
            .emit_with_ack(event, arg, PATIENCE, forward(&tx, "ack"))
            .await
            .unwrap();
        tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no ack for {event} within 10 s"))
            .unwrap()
            .1
    }

    /// Emit with an ack and return at once; the ack's answer arrives on the receiver whenever
    /// the relay sends it (rust_socketio forgets the ack after `wait`).
    pub async fn send_later(
        &mut self,
        event: &str,
        arg: Value,
        wait: Duration,
    ) -> mpsc::UnboundedReceiver<(String, Value)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.client
            .emit_with_ack(event, arg, wait, forward(&tx, "ack"))
            .await
            .unwrap();
        rx
    }

    pub async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("no event within 5 s")
            .expect("the client is gone")
    }

    /// The next event, if one arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn nothing_within(&mut self, wait: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(wait, self.rx.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }
}

/// Connect to relay `relay` with `token`, expecting a CONNECT_ERROR; its `data.code`.
pub async fn refused_code(stack: &Stack, relay: usize, token: &str) -> String {
    match connect_or_refusal(stack, relay, token).await {
        Ok(_) => panic!("the relay admitted the socket"),
        Err(code) => code,
    }
}

/// Connect to relay `relay` with `token`: the client once the relay admits it (CONNECT), or
/// the CONNECT_ERROR's `data.code`.
pub async fn connect_or_refusal(
    stack: &Stack,
    relay: usize,
    token: &str,
) -> Result<Client, String> {
    let (admitted, mut outcome) = mpsc::unbounded_channel::<Result<(), String>>();
    let refused = admitted.clone();
    // rust_socketio hands a CONNECT_ERROR to the `error` handler.
    let client = ClientBuilder::new(stack.relay_url(relay))
        .reconnect(false)
        .auth(json!({ "token": token }))
        .on(Event::Connect, move |_, _| {
            let _ = admitted.send(Ok(()));
            async {}.boxed()
        })
        .on(Event::Error, move |payload, _| {
            if let Payload::Text(values) = payload {
                let _ = refused.send(Err(values.iter().map(Value::to_string).collect()));
            }
            async {}.boxed()
        })
        .connect()
        .await
        .expect("the transport itself connects");
    let first = tokio::time::timeout(PATIENCE, outcome.recv())
        .await
        .expect("neither CONNECT nor CONNECT_ERROR within the patience")
        .unwrap();
    let error = match first {
        Ok(()) => return Ok(client),
        Err(error) => error,
    };
    let frame = error
        .split_once("ConnectError frame: ")
        .map(|(_, data)| data.trim_end_matches('"').replace("\\\"", "\""))
        .unwrap_or_else(|| panic!("not a CONNECT_ERROR: {error}"));
    let data: Value = serde_json::from_str(&frame).unwrap_or_else(|e| panic!("{e}: {frame}"));
    assert!(data["message"].is_string(), "{data}");
    Err(data["data"]["code"].as_str().unwrap_or_default().to_owned())
}
