//! `publish`: what one bus publish costs, done as the relay does it (`Bus::publish` of a
//! `message_relayed` envelope to every member's channel), on Redis and in process.
//!
//! For each fan-out (members per publish) and each bus, `P` publishes one after the other, each
//! timed from call to return, first with nobody subscribed, then with one subscriber (the
//! relay's own pub/sub connection) subscribed to every member, which must receive all of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shared::bus::memory::MemoryBus;
use shared::bus::redis::RedisBus;
use shared::bus::{Bus, BusMessage, Keys};
use shared::domain::MessageKind;
use shared::events::{BusEvent, Envelope, RelayedMessage};
use shared::ids::{ConversationId, UserId};
use shared::wire::MessageStatus;
use tokio::sync::mpsc;

use crate::stats;

pub struct PublishArgs {
    /// Publishes per row (fewer for fan-out 100, see [`count_for`]).
    pub publishes: usize,
}

/// Members per publish: a direct conversation, a small group, a large group.
const FANOUTS: [usize; 3] = [2, 10, 100];
/// Untimed publishes before each row.
const WARM_UP: usize = 50;
/// A subscriber that received nothing for this long has received all it will.
const IDLE: Duration = Duration::from_secs(1);

/// Publishes per row: at most 100 000 channel messages per row.
fn count_for(publishes: usize, fanout: usize) -> usize {
    publishes.min(100_000 / fanout).max(1)
}

/// A realistic envelope: what the relay publishes for one 80-character text message.
fn payload(members: &[UserId]) -> anyhow::Result<String> {
    let envelope = Envelope {
        origin: format!("relay-{}", uuid::Uuid::new_v4()),
        event: BusEvent::MessageRelayed {
            message: RelayedMessage {
                client_msg_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: ConversationId(members[0].0),
                sender_id: members[0],
                kind: MessageKind::Text,
                content:
                    "Are we still on for lunch tomorrow? I can book the place near the station."
                        .into(),
                attachment_id: None,
                attachment: None,
                sent_at: chrono::Utc::now(),
                status: MessageStatus::Sent,
            },
        },
    };
    serde_json::to_string(&envelope).context("encoding the envelope")
}

pub async fn run(redis_url: &str, args: &PublishArgs) -> anyhow::Result<()> {
    let prefix = format!("parley-bench-{}", uuid::Uuid::new_v4().simple());
    let keys = Keys::new(&prefix);
    let redis = Arc::new(
        RedisBus::connect(redis_url, keys.clone())
            .await
            .context("connecting to Redis (BENCH_REDIS_URL)")?,
    );
    println!("Redis channel prefix {prefix}; payload bytes per channel shown per row");
    stats::print_header();
    let mut rates = Vec::new();
    for fanout in FANOUTS {
        let first = 1_000_000_000 * i64::try_from(fanout)?;
        let members: Vec<UserId> = (0..fanout)
            .map(|i| UserId(first + i64::try_from(i).unwrap_or(0)))
            .collect();
        let payload = payload(&members)?;
        let count = count_for(args.publishes, fanout);
        for subscribed in [false, true] {
            for bus_name in ["redis", "memory"] {
                let (bus, sub): (Arc<dyn Bus>, _) = match bus_name {
                    "redis" => (redis.clone() as Arc<dyn Bus>, redis.subscribe()),
                    _ => {
                        let memory = Arc::new(MemoryBus::new());
                        let sub = memory.subscribe();
                        (memory as Arc<dyn Bus>, sub)
                    }
                };
                let (subscriber, received) = sub;
                if subscribed {
                    for &user in &members {
                        subscriber.subscribe(user).await;
                    }
                }
                let label = format!(
                    "{bus_name}, fan-out {fanout}, {} subscriber(s), {} B",
                    u8::from(subscribed),
                    payload.len()
                );
                let expected = subscribed.then_some((WARM_UP + count) * fanout);
                let rate =
                    row(&*bus, &members, &payload, count, received, expected, &label).await?;
                rates.push((label, rate));
                drop(subscriber);
            }
        }
    }
    println!();
    println!(
        "{:<44} {:>12} {:>14} {:>14}",
        "rate", "publishes/s", "channel msg/s", "received"
    );
    for (label, rate) in rates {
        println!(
            "{label:<44} {:>12.0} {:>14.0} {:>14}",
            rate.publishes,
            rate.messages,
            rate.delivered.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// Throughput of one row.
struct Rate {
    publishes: f64,
    /// Channel messages (publishes × fan-out) per second.
    messages: f64,
    /// `received/expected` (warm-up included) when subscribed.
    delivered: Option<String>,
}

/// One row: `count` timed publishes (after a warm-up); when `expected` is given, waits until the
/// subscriber received that many messages. Rates run to the last publish returning, or to the
/// last message received when subscribed.
async fn row(
    bus: &dyn Bus,
    members: &[UserId],
    payload: &str,
    count: usize,
    mut received: mpsc::Receiver<BusMessage>,
    expected: Option<usize>,
    label: &str,
) -> anyhow::Result<Rate> {
    let got = Arc::new(AtomicUsize::new(0));
    let counter = tokio::spawn({
        let got = got.clone();
        async move {
            while received.recv().await.is_some() {
                got.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    for _ in 0..WARM_UP {
        bus.publish(members, payload).await?;
    }
    let mut samples = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let one = Instant::now();
        bus.publish(members, payload).await?;
        samples.push(one.elapsed());
        // Let the subscriber run, as between the relay's events (the in-process bus never
        // yields otherwise and would overrun its broadcast buffer).
        tokio::task::yield_now().await;
    }
    let mut ended = Instant::now();
    let mut delivered = None;
    if let Some(expected) = expected {
        // Until every message arrived, or none arrived for IDLE (a lagging in-process
        // subscriber skips what it missed, as in the relay).
        let (mut last, mut since) = (usize::MAX, Instant::now());
        loop {
            let now = got.load(Ordering::Relaxed);
            if now >= expected || since.elapsed() > IDLE {
                break;
            }
            if now != last {
                (last, since, ended) = (now, Instant::now(), Instant::now());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let now = got.load(Ordering::Relaxed);
        if now >= expected {
            ended = Instant::now();
        }
        delivered = Some(format!("{now}/{expected}"));
    }
    counter.abort();
    stats::print_row(label, &samples);
    let secs = (ended - started).as_secs_f64();
    Ok(Rate {
        publishes: count as f64 / secs,
        messages: (count * members.len()) as f64 / secs,
        delivered,
    })
}
