//! `chat`: many users chatting at once, the load of issue 7. `users` users in direct pairs
//! (registered and paired through REST first), `devices` WebSocket devices each, spread over
//! `relays` relays; **open-loop** `send_message` at `rate` msg/s for `secs` s, each from a random
//! device to its user's conversation. Every latency is measured from the message's scheduled
//! send time, so a generator or a server that falls behind shows up as latency (no coordinated
//! omission); senders and receivers share one clock (`Instant`, one process).
//!
//! The devices and the generator run on a runtime of their own (threads named
//! [`load::THREAD_NAME`]), so the stack's CPU time is the process's minus theirs.
//!
//! # Layout
//! - `load`: connect, read every device's events, emit on schedule, progress, drain.
//! - `record`: per-message state, counters and HDR histograms shared by all of them.
//! - here: the arguments, arranging users and conversations, the report.

mod load;
mod record;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use crate::cpu;
use crate::stack::Stack;
use crate::stats::{hdr_json, print_hdr_header, print_hdr_row};

#[derive(Clone)]
pub struct ChatArgs {
    /// Users, an even number (paired in direct conversations).
    pub users: usize,
    /// WebSocket devices per user.
    pub devices: usize,
    /// Messages per second offered, over all devices.
    pub rate: usize,
    /// Seconds of sending.
    pub secs: usize,
    /// Relays the devices are spread over (linked by the Redis bus).
    pub relays: usize,
    /// Longest wait, after the last send, for the remaining acks and deliveries (seconds).
    pub drain: usize,
}

/// Registrations at once (each hashes a password, tens of ms of CPU on the API).
const REGISTRATIONS_IN_PARALLEL: usize = 4;

impl ChatArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.users < 2 || self.users % 2 == 1 {
            bail!("--users must be an even number ≥ 2");
        }
        if !(1..=10).contains(&self.devices) {
            bail!("--devices must be 1 to 10 (the relay's connections per user)");
        }
        if self.rate == 0 || self.secs == 0 || self.relays == 0 {
            bail!("--rate, --secs and --relays must be at least 1");
        }
        if self.secs.saturating_add(self.drain) > 240 {
            bail!("--secs + --drain must stay under the bench's 300 s limit (at most 240)");
        }
        if self.rate.saturating_mul(self.secs) > 10_000_000 {
            bail!("--rate × --secs is capped at 10 000 000 messages");
        }
        Ok(())
    }
}

/// Register the users and create one direct conversation per pair; the tokens and the
/// conversation ids.
async fn arrange(stack: &Stack, users: usize) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let registered: Vec<(String, String)> = stream::iter(0..users)
        .map(|u| {
            let name = format!("chat{}{u:05}", &run[..6]);
            async move { stack.register(&name).await }
        })
        .buffered(REGISTRATIONS_IN_PARALLEL)
        .try_collect()
        .await
        .context("registering the users")?;
    let conversations: Vec<String> = stream::iter(registered.chunks(2))
        .map(|pair| stack.conversation(&pair[0].0, &pair[1].1))
        .buffered(REGISTRATIONS_IN_PARALLEL)
        .try_collect()
        .await
        .context("creating the conversations")?;
    let tokens = registered.into_iter().map(|(token, _)| token).collect();
    Ok((tokens, conversations))
}

/// The generator's runtime; shut down without blocking when dropped (it may be dropped inside
/// the main runtime, where a blocking shutdown would panic).
struct GeneratorRuntime(Option<tokio::runtime::Runtime>);

impl Drop for GeneratorRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

pub async fn run(stack: &Stack, args: &ChatArgs) -> anyhow::Result<()> {
    args.check()?;
    let began = Instant::now();
    let load_average = cpu::load_average();
    println!(
        "chat: {} users in {} direct conversations, {} device(s) each, {} relay(s); open loop at {} msg/s for {} s (1-min load average {})",
        args.users,
        args.users / 2,
        args.devices,
        args.relays,
        args.rate,
        args.secs,
        load_average.map_or("?".into(), |l| format!("{l:.2}")),
    );
    let (tokens, conversations) = arrange(stack, args.users).await?;
    let arranged = began.elapsed();
    println!(
        "{} users registered and paired in {:.1} s",
        args.users,
        arranged.as_secs_f64()
    );
    let runtime = GeneratorRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name(load::THREAD_NAME)
            .enable_all()
            .build()?,
    ));
    let handle = runtime.0.as_ref().map(|r| r.handle().clone());
    let handle = handle.context("the generator runtime")?;
    let outcome = handle
        .spawn(load::drive(
            stack.relays.clone(),
            tokens,
            conversations,
            args.clone(),
        ))
        .await
        .context("the load generator panicked")??;
    drop(runtime);
    report(args, &outcome, load_average, arranged, began.elapsed());
    Ok(())
}

/// CPU-seconds the machine spent on neither this process nor PostgreSQL and Redis (other
/// people's builds and tests on a shared machine).
fn others(cpu: &cpu::Usage) -> f64 {
    (cpu.machine_busy - cpu.process - cpu.services).max(0.0)
}

fn report(
    args: &ChatArgs,
    outcome: &load::Outcome,
    load_average: Option<f64>,
    arranged: Duration,
    total: Duration,
) {
    let record = &outcome.record;
    let count = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    let sent = count(&record.sent);
    let acked = count(&record.acked);
    let failed = count(&record.failed);
    let (expected, received, missing, of_failed) = record.deliveries();
    let failures = record
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let h = record.histograms();
    let last_ack = Duration::from_micros(count(&record.last_ack_us));
    let window = Duration::from_secs(args.secs as u64);
    let tail = last_ack.saturating_sub(window);
    let per_sec = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let stored_in_window = per_sec(count(&record.acked_in_window), window);
    let stored_overall = per_sec(acked, last_ack);
    let cpu = outcome.cpu.as_ref();
    let per_thousand = |seconds: f64| 1000.0 * seconds / sent.max(1) as f64;

    println!();
    print_hdr_header();
    print_hdr_row("receive_message (scheduled send → read)", &h.receive);
    print_hdr_row("ack with stored id (scheduled send → read)", &h.ack);
    print_hdr_row("generator lag (scheduled → emitted)", &h.lag);
    print_hdr_row(
        "  for reference: receive (emitted → read)",
        &h.receive_from_emit,
    );
    println!();
    println!(
        "sent {sent} of {} planned at {} msg/s (last emit {:.3} s after the first was due)",
        record.planned(),
        args.rate,
        outcome.generated.as_secs_f64()
    );
    println!(
        "deliveries: {received} of {expected} expected, {missing} lost, {} duplicate, {} misdirected, {} unknown; {} of them the stored copy; {of_failed} for sends that failed",
        count(&record.duplicates),
        count(&record.misdirected),
        count(&record.unknown),
        count(&record.stored_copies),
    );
    println!(
        "acks: {acked} stored, {failed} failed {failures:?}, {} closed, {} unacknowledged after waiting {:.1} s (limit {} s) past the last emit",
        outcome.closed,
        outcome.unanswered,
        outcome.drained.as_secs_f64(),
        args.drain
    );
    println!(
        "stored: {stored_in_window:.0} msg/s during the {} s window; {acked} in {:.3} s = {stored_overall:.0} msg/s to the last ack ({:.3} s after the window)",
        args.secs,
        last_ack.as_secs_f64(),
        tail.as_secs_f64()
    );
    if let Some(cpu) = cpu {
        println!(
            "CPU-seconds over {:.1} s: this process {:.2} = stack {:.2} ({:.3} per 1000 messages) + generator and devices {:.2}; PostgreSQL + Redis {:.2}; other processes {:.2}; machine {:.0}% busy",
            outcome.measured.as_secs_f64(),
            cpu.process,
            cpu.process - cpu.named,
            per_thousand(cpu.process - cpu.named),
            cpu.named,
            cpu.services,
            others(cpu),
            cpu.machine_busy_pct
        );
        println!(
            "CPU-seconds per 1000 messages: PostgreSQL {:.3}, Redis {:.3}; this process's threads: {}",
            per_thousand(cpu.postgres),
            per_thousand(cpu.redis),
            cpu.threads_per_thousand(sent as usize)
        );
    }
    println!(
        "took {:.1} s end to end ({:.1} s registering and pairing, {:.1} s connecting); 1-min load average {} at the start, {} at the end",
        total.as_secs_f64(),
        arranged.as_secs_f64(),
        outcome.connect.as_secs_f64(),
        load_average.map_or("?".into(), |l| format!("{l:.2}")),
        cpu::load_average().map_or("?".into(), |l| format!("{l:.2}")),
    );
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let line = json!({
        "scenario": "chat",
        "users": args.users,
        "devices": args.devices,
        "relays": args.relays,
        "rate": args.rate,
        "secs": args.secs,
        "load_average_1m": load_average,
        "load_average_1m_end": cpu::load_average(),
        "planned": record.planned(),
        "sent": sent,
        "receive_ms": hdr_json(&h.receive),
        "ack_ms": hdr_json(&h.ack),
        "generator_lag_ms": hdr_json(&h.lag),
        "receive_from_emit_ms": hdr_json(&h.receive_from_emit),
        "deliveries": {
            "expected": expected,
            "received": received,
            "lost": missing,
            "duplicate": count(&record.duplicates),
            "misdirected": count(&record.misdirected),
            "unknown": count(&record.unknown),
            "stored_copy": count(&record.stored_copies),
            "of_failed_sends": of_failed,
        },
        "acks": {
            "stored": acked,
            "failed": failed,
            "failed_by_code": failures,
            "closed": outcome.closed,
            "unacked": outcome.unanswered,
            "drain_s": round(outcome.drained.as_secs_f64()),
            "last_ack_s": round(last_ack.as_secs_f64()),
            "tail_after_window_s": round(tail.as_secs_f64()),
        },
        "stored_msg_per_s": {
            "window": round(stored_in_window),
            "to_last_ack": round(stored_overall),
        },
        "cpu": cpu.map(|cpu| json!({
            "measured_s": round(outcome.measured.as_secs_f64()),
            "process_s": round(cpu.process),
            "stack_s": round(cpu.process - cpu.named),
            "generator_s": round(cpu.named),
            "stack_s_per_1000_msgs": round(per_thousand(cpu.process - cpu.named)),
            "process_s_per_1000_msgs": round(per_thousand(cpu.process)),
            "postgres_redis_s": round(cpu.services),
            "postgres_s": round(cpu.postgres),
            "redis_s": round(cpu.redis),
            "threads_s": cpu.threads.iter().map(|(k, s)| (k.to_string(), json!(round(*s)))).collect::<serde_json::Map<_, _>>(),
            "other_processes_s": round(others(cpu)),
            "machine_busy_pct": round(cpu.machine_busy_pct),
        })),
        "setup_s": round(arranged.as_secs_f64() + outcome.connect.as_secs_f64()),
        "total_s": round(total.as_secs_f64()),
    });
    println!();
    println!("{line}");
}
