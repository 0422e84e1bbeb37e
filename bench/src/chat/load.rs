//! The open-loop load of `chat`, run on the generator's own runtime: connect every device, read
//! every device's events, emit on schedule, print progress each second, then wait (bounded) for
//! the last acks and deliveries.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use super::record::{Layout, Record};
use super::ChatArgs;
use crate::cpu;
use crate::sio::{Client, Received};
use crate::stats::quantile_ms;

/// Devices connecting at once while the run is arranged.
const CONNECTS_IN_PARALLEL: usize = 32;
/// Once every send is answered, how long to wait for deliveries still missing.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);
/// The name of the generator runtime's threads, so its CPU time can be told from the stack's.
pub const THREAD_NAME: &str = "bench-client";

/// What the run measured, for the report.
pub struct Outcome {
    pub record: Arc<Record>,
    pub connect: Duration,
    /// From the first scheduled send to the last emit.
    pub generated: Duration,
    /// From the last emit to the end of the wait for acks and deliveries.
    pub drained: Duration,
    /// CPU between the first scheduled send and the end of the drain (`None` without `/proc`).
    pub cpu: Option<cpu::Usage>,
    /// The measured window: first scheduled send to the end of the drain.
    pub measured: Duration,
    /// Sends with no answer at the end of the drain (the count is taken then: closing the
    /// devices afterwards answers them all as closed).
    pub unanswered: u64,
    /// Sends whose device closed before the ack, at the end of the drain.
    pub closed: u64,
}

/// Connect `devices` devices per user (device `d` of the run on relay `d % relays`), then run
/// the load. `tokens[u]` is user `u`'s, `conversations[c]` the id of pair `c`.
pub async fn drive(
    relays: Vec<String>,
    tokens: Vec<String>,
    conversations: Vec<String>,
    args: ChatArgs,
) -> anyhow::Result<Outcome> {
    let layout = Layout {
        devices_per_user: args.devices,
    };
    let count = tokens.len() * args.devices;
    let connecting = Instant::now();
    let devices: Vec<(Client, mpsc::UnboundedReceiver<Received>)> = stream::iter(0..count)
        .map(|d| {
            let relay = &relays[d % relays.len()];
            let token = &tokens[layout.user(d)];
            async move {
                Client::connect(relay, token, &["receive_message"])
                    .await
                    .with_context(|| format!("connecting device {d}"))
            }
        })
        .buffered(CONNECTS_IN_PARALLEL)
        .try_collect()
        .await?;
    let connect = connecting.elapsed();
    println!(
        "{count} devices connected in {:.1} s; sending {} msg/s for {} s",
        connect.as_secs_f64(),
        args.rate,
        args.secs
    );

    let start = Instant::now() + Duration::from_millis(200);
    let planned = args.rate * args.secs;
    let record = Arc::new(Record::new(layout, start, args.rate as u64, planned));
    let mut clients = Vec::with_capacity(count);
    for (device, (client, events)) in devices.into_iter().enumerate() {
        tokio::spawn(read_events(device, events, record.clone()));
        clients.push(client);
    }
    let progress = tokio::spawn(progress(record.clone()));

    tokio::time::sleep_until(start.into()).await;
    let cpu_before = cpu::Sample::now(THREAD_NAME);
    generate(&clients, &conversations, &record, args.users, args.devices).await;
    let generated = start.elapsed();
    let drain_began = Instant::now();
    drain(&record, Duration::from_secs(args.drain as u64)).await;
    let drained = drain_began.elapsed();
    let measured = start.elapsed();
    let unanswered = record
        .sent
        .load(Ordering::Relaxed)
        .saturating_sub(record.answered());
    let closed = record.closed.load(Ordering::Relaxed);
    let cpu = cpu_before
        .zip(cpu::Sample::now(THREAD_NAME))
        .map(|(before, after)| after.since(&before));
    progress.abort();
    // The devices close when `clients` drops at the end of this task.
    Ok(Outcome {
        record,
        connect,
        generated,
        drained,
        cpu,
        measured,
        unanswered,
        closed,
    })
}

/// One device's reader: every `receive_message` goes to the record.
async fn read_events(
    device: usize,
    mut events: mpsc::UnboundedReceiver<Received>,
    record: Arc<Record>,
) {
    let mut seen = HashSet::new();
    while let Some(event) = events.recv().await {
        if event.event != "receive_message" {
            continue;
        }
        let Some(id) = event.arg["clientMsgId"].as_str() else {
            record.unknown.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let stored = event.arg.get("id").is_some_and(|id| !id.is_null());
        record.receive(device, id, stored, event.at, &mut seen);
    }
}

/// Emit every planned message at its scheduled instant (late ones at once, never skipped), each
/// from a random device to its user's conversation; each ack is awaited on a task of its own.
async fn generate(
    clients: &[Client],
    conversations: &[String],
    record: &Arc<Record>,
    users: usize,
    devices: usize,
) {
    // xorshift64*: reproducible, and no dependency for a uniform pick.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut pick = |n: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    for i in 0..record.planned() {
        let due = record.intended(i);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let user = pick(users);
        let device = user * devices + pick(devices);
        let body = json!({
            "clientMsgId": format!("c{i}"),
            "conversationId": conversations[user / 2],
            "kind": "text",
            "content": format!("bench message {i}"),
        });
        record.sending(i, device, Instant::now().saturating_duration_since(due));
        let ack = clients[device].emit_with_ack("send_message", &body);
        let record = record.clone();
        tokio::spawn(async move {
            match ack.await {
                Ok((answer, at)) if answer["success"] == true && answer["id"].is_string() => {
                    record.acked(i, at)
                }
                Ok((answer, _)) => {
                    record.failed(i, answer["error"]["code"].as_str().unwrap_or("no_code"))
                }
                Err(_) => record.closed(i),
            }
        });
    }
}

/// Wait until every send is answered and every expected delivery arrived, at most `limit`
/// (and at most [`DELIVERY_GRACE`] for deliveries once every send is answered).
async fn drain(record: &Record, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut grace_end: Option<Instant> = None;
    loop {
        let answered = record.answered() >= record.sent.load(Ordering::Relaxed);
        let delivered = record.received.load(Ordering::Relaxed) >= record.expected_so_far();
        if answered && delivered {
            return;
        }
        let now = Instant::now();
        if answered {
            let end = *grace_end.get_or_insert(now + DELIVERY_GRACE);
            if now >= end {
                return;
            }
        }
        if now >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One line a second: totals so far, and the p99s of the last second.
async fn progress(record: Arc<Record>) {
    let mut tick = tokio::time::interval_at(
        (record.start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    loop {
        tick.tick().await;
        let (receive_p99, ack_p99) = {
            let mut h = record.histograms();
            let p99 = |h: &hdrhistogram::Histogram<u64>| {
                if h.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.1}", quantile_ms(h, 0.99))
                }
            };
            let seen = (p99(&h.receive_interval), p99(&h.ack_interval));
            h.receive_interval.reset();
            h.ack_interval.reset();
            seen
        };
        let sent = record.sent.load(Ordering::Relaxed);
        println!(
            "[{:>4.0} s] sent {sent:>7}  received {:>8}/{:<8}  acked {:>7}  unacked {:>6}  failed {:>5}  last 1 s: p99 receive {receive_p99} ms, p99 ack {ack_p99} ms",
            record.start.elapsed().as_secs_f64(),
            record.received.load(Ordering::Relaxed),
            record.expected_so_far(),
            record.acked.load(Ordering::Relaxed),
            sent.saturating_sub(record.answered()),
            record.failed.load(Ordering::Relaxed),
        );
    }
}
