//! `fanout`: users in pairs, each pair a direct conversation, one raw WebSocket device per user
//! on one relay. Phase 1 sends one message at a time (latency without load); phase 2 has K
//! senders with a window of W messages in flight each (throughput, and latency under it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::sio::{AckAnswer, Client};
use crate::stack::Stack;
use crate::stats::{print_header, print_row};

pub struct FanoutArgs {
    /// Users (an even number; one device each).
    pub users: usize,
    /// Messages in each phase.
    pub messages: usize,
    /// Concurrent senders in phase 2.
    pub senders: usize,
    /// Messages in flight per sender in phase 2 (the relay queues 32 per socket).
    pub window: usize,
}

/// How long to wait for one ack or delivery before calling the run failed.
const PATIENCE: Duration = Duration::from_secs(10);

struct Fixture {
    clients: Vec<Arc<Client>>,
    conversations: Vec<String>,
    /// `(clientMsgId, instant)` of every `receive_message` any device read.
    deliveries: mpsc::UnboundedReceiver<(String, Instant)>,
}

impl Fixture {
    fn message(&self, sender: usize, id: &str) -> Value {
        json!({ "clientMsgId": id, "conversationId": self.conversations[sender / 2], "kind": "text", "content": "bench message" })
    }

    /// Wait for the delivery of `id`, skipping others.
    async fn delivered(&mut self, id: &str) -> anyhow::Result<Instant> {
        loop {
            let (got, at) = tokio::time::timeout(PATIENCE, self.deliveries.recv())
                .await
                .with_context(|| format!("{id} was not delivered within {PATIENCE:?}"))?
                .context("every device is gone")?;
            if got == id {
                return Ok(at);
            }
        }
    }
}

async fn acked(rx: tokio::sync::oneshot::Receiver<AckAnswer>) -> anyhow::Result<AckAnswer> {
    let (answer, at) = tokio::time::timeout(PATIENCE, rx)
        .await
        .context("no ack in time")?
        .context("the connection closed before the ack")?;
    if answer["success"] != true || !answer["id"].is_string() {
        bail!("send failed: {answer}");
    }
    Ok((answer, at))
}

async fn arrange(stack: &Stack, args: &FanoutArgs) -> anyhow::Result<Fixture> {
    let ws = stack
        .relays
        .first()
        .context("the fanout bench needs a relay")?;
    let mut users = Vec::with_capacity(args.users);
    for i in 0..args.users {
        users.push(stack.register(&format!("bench{i:05}")).await?);
    }
    let mut conversations = Vec::new();
    for pair in users.chunks(2) {
        conversations.push(stack.conversation(&pair[0].0, &pair[1].1).await?);
    }
    let (tx, deliveries) = mpsc::unbounded_channel();
    let mut clients = Vec::with_capacity(users.len());
    for (token, _) in &users {
        let (client, mut events) = Client::connect(ws, token, &["receive_message"]).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(received) = events.recv().await {
                if received.event == "receive_message" {
                    if let Some(id) = received.arg["clientMsgId"].as_str() {
                        let _ = tx.send((id.to_owned(), received.at));
                    }
                }
            }
        });
        clients.push(Arc::new(client));
    }
    Ok(Fixture {
        clients,
        conversations,
        deliveries,
    })
}

/// One message at a time, every user in turn: fan-out and ack latency without load. The first
/// round (one message per user) warms the relay's membership cache and is not counted.
async fn sequential(
    fixture: &mut Fixture,
    messages: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let users = fixture.clients.len();
    let (mut fanout, mut ack) = (Vec::new(), Vec::new());
    for i in 0..users + messages {
        let sender = i % users;
        let id = format!("seq-{i}");
        let body = fixture.message(sender, &id);
        let sent = Instant::now();
        let rx = fixture.clients[sender].emit_with_ack("send_message", &body);
        let (_, acked_at) = acked(rx).await?;
        let delivered_at = fixture.delivered(&id).await?;
        if i >= users {
            ack.push(acked_at - sent);
            fanout.push(delivered_at - sent);
        }
    }
    Ok((fanout, ack))
}

struct Loaded {
    fanout: Vec<Duration>,
    ack: Vec<Duration>,
    total: usize,
    last_ack: Duration,
    last_delivery: Duration,
}

/// K senders, W in flight each, until `messages` are acked and delivered.
async fn concurrent(fixture: &mut Fixture, args: &FanoutArgs) -> anyhow::Result<Loaded> {
    let users = fixture.clients.len();
    // Senders alternate between pairs first, so K ≤ users/2 means K distinct conversations.
    let order: Vec<usize> = (0..users).step_by(2).chain((1..users).step_by(2)).collect();
    let k = args.senders.clamp(1, users);
    let per_sender = (args.messages / k).max(1);
    let total = per_sender * k;
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let mut senders = Vec::new();
    for &sender in &order[..k] {
        let client = fixture.clients[sender].clone();
        let bodies: Vec<(String, Value)> = (0..per_sender)
            .map(|n| {
                let id = format!("load-{sender}-{n}");
                let body = fixture.message(sender, &id);
                (id, body)
            })
            .collect();
        let sent_at = sent_at.clone();
        let window = args.window.max(1);
        senders.push(tokio::spawn(async move {
            let mut in_flight = FuturesUnordered::new();
            let mut latencies = Vec::with_capacity(bodies.len());
            let mut bodies = bodies.into_iter();
            loop {
                while in_flight.len() < window {
                    let Some((id, body)) = bodies.next() else {
                        break;
                    };
                    let now = Instant::now();
                    sent_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, now);
                    let rx = client.emit_with_ack("send_message", &body);
                    in_flight.push(async move { acked(rx).await.map(|(_, at)| (now, at)) });
                }
                match in_flight.next().await {
                    Some(answer) => {
                        let (sent, at) = answer?;
                        latencies.push((at - sent, at));
                    }
                    None => return anyhow::Ok(latencies),
                }
            }
        }));
    }
    let mut fanout = Vec::with_capacity(total);
    let mut last_delivery = start;
    while fanout.len() < total {
        let (id, at) = tokio::time::timeout(PATIENCE, fixture.deliveries.recv())
            .await
            .context("deliveries stopped before every message arrived")?
            .context("every device is gone")?;
        let sent = sent_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(sent) = sent {
            fanout.push(at - sent);
            last_delivery = last_delivery.max(at);
        }
    }
    let mut ack = Vec::with_capacity(total);
    let mut last_ack = start;
    for sender in senders {
        for (latency, at) in sender.await?? {
            ack.push(latency);
            last_ack = last_ack.max(at);
        }
    }
    Ok(Loaded {
        fanout,
        ack,
        total,
        last_ack: last_ack - start,
        last_delivery: last_delivery - start,
    })
}

pub async fn run(stack: &Stack, args: &FanoutArgs) -> anyhow::Result<()> {
    if args.users < 2 || args.users % 2 == 1 {
        bail!("--users must be an even number ≥ 2");
    }
    let mut fixture = arrange(stack, args).await?;
    println!(
        "fanout: {} users in {} direct conversations, one WebSocket device each, one relay",
        args.users,
        args.users / 2
    );
    let (fanout, ack) = sequential(&mut fixture, args.messages).await?;
    let loaded = concurrent(&mut fixture, args).await?;
    let k = args.senders.clamp(1, args.users);
    println!();
    print_header();
    print_row("fan-out, one at a time (emit → receive)", &fanout);
    print_row("ack, one at a time (emit → stored ack)", &ack);
    print_row(
        &format!("fan-out, {k} senders × window {}", args.window),
        &loaded.fanout,
    );
    print_row(
        &format!("ack, {k} senders × window {}", args.window),
        &loaded.ack,
    );
    let rate = |d: Duration| loaded.total as f64 / d.as_secs_f64();
    println!();
    println!(
        "throughput, {k} senders: {} messages delivered in {:.3} s = {:.0} msg/s; all acked (stored) in {:.3} s = {:.0} msg/s",
        loaded.total,
        loaded.last_delivery.as_secs_f64(),
        rate(loaded.last_delivery),
        loaded.last_ack.as_secs_f64(),
        rate(loaded.last_ack),
    );
    Ok(())
}
