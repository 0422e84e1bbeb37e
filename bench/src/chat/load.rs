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
use super::sides::{Side, Target};
use super::ChatArgs;
use crate::cpu;
use crate::procs;
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
    /// CPU over the measured window (`None` without `/proc`):
    /// this process's (with external servers: the generator's alone) and the machine's.
    pub cpu: Option<cpu::Usage>,
    /// CPU-seconds of each part of an external side over the same window (`relay`, `api`,
    /// `postgres`, `redis`; each process with its descendants), in the order given.
    pub parts: Vec<(&'static str, f64)>,
    /// The measured window: from the CPU sample taken 200 ms before the first scheduled send
    /// to the end of the drain.
    pub measured: Duration,
    /// Sends with no answer at the end of the drain (the count is taken then: closing the
    /// devices afterwards answers them all as closed).
    pub unanswered: u64,
    /// Sends whose device closed before the ack, at the end of the drain.
    pub closed: u64,
    /// WebSocket frames the devices read over the measured window: what the side's relays
    /// wrote (relayed copies, acks, Parley's `message_saved`, pings).
    pub frames: u64,
}

/// Connect `devices` devices per user (device `d` of the run on relay `d % relays`), then run
/// the load; the CPU of `parts` (an external side's processes) is read over the load window.
pub async fn drive(
    target: Arc<Target>,
    parts: Vec<(&'static str, Vec<u32>)>,
    args: ChatArgs,
) -> anyhow::Result<Outcome> {
    let layout = Layout {
        devices_per_user: args.devices,
    };
    let count = target.users.len() * args.devices;
    let connecting = Instant::now();
    let relays = &target.relays;
    let devices: Vec<(Client, mpsc::UnboundedReceiver<Received>)> = stream::iter(0..count)
        .map(|d| {
            let relay = &relays[d % relays.len()];
            let token = &target.users[layout.user(d)].token;
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

    // The CPU before the load, read now: reading `/proc` (every process) takes milliseconds on
    // this runtime, and read once the first send was due it made the first sends of every run
    // late.
    let cpu_before = cpu::Sample::now(THREAD_NAME);
    let parts_before = parts_cpu(&parts);
    let frames_before = crate::sio::frames_read();
    let sampled = Instant::now();
    let start = sampled + Duration::from_millis(200);
    let planned = args.rate * args.secs;
    let record = Arc::new(Record::new(layout, start, args.rate as u64, planned));
    let mut clients = Vec::with_capacity(count);
    for (device, (client, events)) in devices.into_iter().enumerate() {
        tokio::spawn(read_events(device, events, record.clone()));
        clients.push(client);
    }
    let progress = tokio::spawn(progress(record.clone()));

    let http = crate::stack::http_client(Duration::from_secs(60))?;
    tokio::time::sleep_until(start.into()).await;
    generate(&clients, &target, &http, &record, args.devices).await;
    let generated = start.elapsed();
    let drain_began = Instant::now();
    drain(&record, Duration::from_secs(args.drain as u64)).await;
    let drained = drain_began.elapsed();
    let measured = sampled.elapsed();
    let frames = crate::sio::frames_read() - frames_before;
    let unanswered = record
        .sent
        .load(Ordering::Relaxed)
        .saturating_sub(record.answered());
    let closed = record.closed.load(Ordering::Relaxed);
    let cpu = cpu_before
        .zip(cpu::Sample::now(THREAD_NAME))
        .map(|(before, after)| after.since(&before));
    let parts = parts_cpu(&parts)
        .into_iter()
        .zip(parts_before)
        .map(|((part, after), (_, before))| (part, after - before))
        .collect();
    progress.abort();
    // The devices close when `clients` drops at the end of this task.
    Ok(Outcome {
        record,
        connect,
        generated,
        drained,
        cpu,
        parts,
        measured,
        unanswered,
        closed,
        frames,
    })
}

/// CPU-seconds so far of each part (its processes and their descendants).
fn parts_cpu(parts: &[(&'static str, Vec<u32>)]) -> Vec<(&'static str, f64)> {
    parts
        .iter()
        .map(|(part, pids)| (*part, procs::cpu_seconds(pids)))
        .collect()
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
/// from a random device to its user's partner; each answer is awaited on a task of its own.
/// For the seeds the message is also POSTed to their API at the same time, and that answer is
/// the ack (as their client shows a message sent once saved).
async fn generate(
    clients: &[Client],
    target: &Arc<Target>,
    http: &reqwest::Client,
    record: &Arc<Record>,
    devices: usize,
) {
    let users = target.users.len();
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
        let body = payload(target, user, i);
        record.sending(i, device, Instant::now().saturating_duration_since(due));
        let ack = clients[device].emit_with_ack("send_message", &body);
        let post = target.api.as_ref().map(|api| {
            http.post(format!("{api}/api/messages"))
                .bearer_auth(&target.users[user].token)
                .json(&body)
                .send()
        });
        let (record, side) = (record.clone(), target.side);
        tokio::spawn(async move {
            let saved = match post {
                Some(post) => Some(saved(post).await),
                None => None,
            };
            let answer = match ack.await {
                Ok((answer, at)) => answer_of(side, &answer, at),
                Err(_) => return record.closed(i),
            };
            match (answer, saved) {
                (Ok(at), None) => record.acked(i, at),
                (Ok(_), Some(Ok(at))) => record.acked(i, at),
                (Err(code), _) | (Ok(_), Some(Err(code))) => record.failed(i, &code),
            }
        });
    }
}

/// Message `i` from `user` to its partner, with the ids the side routes by: Parley's relay the
/// conversation (it refuses both ids at once), the peers' relays the recipient, the seeds both
/// (their API stores by conversation).
fn payload(target: &Target, user: usize, i: usize) -> serde_json::Value {
    let mut body = json!({
        "content": format!("bench message {i}"),
        "clientMsgId": format!("c{i}"),
    });
    if matches!(target.side, Side::Parley | Side::Inproc | Side::Seeds) {
        body["conversationId"] = json!(target.conversations[user / 2]);
    }
    if matches!(target.side, Side::Node | Side::Socketioxide | Side::Seeds) {
        body["recipientId"] = json!(target.users[user ^ 1].id);
    }
    body
}

/// The relay's ack: its instant when it accepts the send, else the error code. Parley's ack
/// carries the stored message's id; a relay that stores nothing answers `success` alone.
fn answer_of(side: Side, answer: &serde_json::Value, at: Instant) -> Result<Instant, String> {
    let stored = !matches!(side, Side::Parley | Side::Inproc) || answer["id"].is_string();
    if answer["success"] == true && stored {
        Ok(at)
    } else {
        Err(answer["error"]["code"]
            .as_str()
            .unwrap_or("no_code")
            .to_owned())
    }
}

/// The seeds' API answer: the instant its 201 was read whole, else `http_<status>`,
/// `http_timeout` (no answer within the client's 60 s), `http_connect` (no connection) or
/// `http_error`. The body is read in every case, so the connection is kept for the next.
async fn saved(
    post: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
) -> Result<Instant, String> {
    let code = |error: reqwest::Error| {
        if error.is_timeout() {
            "http_timeout".to_owned()
        } else if error.is_connect() {
            "http_connect".to_owned()
        } else {
            "http_error".to_owned()
        }
    };
    let response = post.await.map_err(code)?;
    let status = response.status();
    response.bytes().await.map_err(code)?;
    if status == reqwest::StatusCode::CREATED {
        Ok(Instant::now())
    } else {
        Err(format!("http_{}", status.as_u16()))
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
