//! Scenario `echo`: the protocol layer alone, side by side. One server process on the server
//! core — Parley's `protocol_echo` (the protocol layer alone), the Node socket.io relay, the
//! socketioxide peer, or the raw tokio-tungstenite echo (the ceiling) — and `--connections`
//! clients in this process (the generator's core). Open loop: message `i` is due at `start + i /
//! rate`, emitted then (or at once when late) as `42["message","<i> …"]` on connection `i mod
//! connections`; the server sends it back (`message-back`; the raw echo returns the frame
//! itself). Latency is read from the due time; the server's CPU-seconds (`procs::cpu_seconds`)
//! over the measured window (first measured due time → last reply, or the drain limit), per
//! 1 000 messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::peers::{self, Peer};
use crate::sio::{Client, Received};
use crate::{cpu, procs, stats};

/// What follows the message number in each payload: ~100 bytes in all, a chat line.
const FILLER: &str =
    "the quick brown fox jumps over the lazy dog and keeps running past the relay; echo ...";
/// How long a server may take to listen.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long replies may trail the last send before the missing ones count as lost.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Connections opened at once while connecting.
const CONNECTING: usize = 64;
/// The events a reply may come as: `message-back`, or the raw echo's frame itself.
const REPLIES: &[&str] = &["message-back", "message"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Parley,
    Node,
    Socketioxide,
    Raw,
}

impl Side {
    pub fn parse(text: &str) -> anyhow::Result<Side> {
        Ok(match text {
            "parley" => Side::Parley,
            "node" => Side::Node,
            "socketioxide" => Side::Socketioxide,
            "raw" => Side::Raw,
            _ => bail!("--side must be parley, node, socketioxide or raw, not {text:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Side::Parley => "parley",
            Side::Node => "node",
            Side::Socketioxide => "socketioxide",
            Side::Raw => "raw",
        }
    }
}

pub struct EchoArgs {
    pub side: Side,
    pub connections: usize,
    /// Messages per second offered, over all connections.
    pub rate: usize,
    /// Seconds measured.
    pub secs: usize,
    /// Seconds of the same load before the measured window (not counted: JIT, caches).
    pub warmup: usize,
}

impl EchoArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.rate == 0 || self.secs == 0 {
            bail!("--connections, --rate and --secs must be at least 1");
        }
        Ok(())
    }
}

/// What the receivers share: the measured replies.
struct Replies {
    start: Instant,
    period: Duration,
    /// Messages below this number are the warm-up's.
    first_measured: usize,
    /// Measured replies expected; `done` is notified when all have come.
    expected: usize,
    received: AtomicUsize,
    warmup_received: AtomicUsize,
    latency: Mutex<Histogram<u64>>,
    done: Notify,
}

impl Replies {
    fn due(&self, i: usize) -> Instant {
        self.start + self.period * u32::try_from(i).unwrap_or(u32::MAX)
    }

    fn record(&self, reply: &Received) {
        let Some(i) = reply
            .arg
            .as_str()
            .and_then(|text| text.split(' ').next())
            .and_then(|number| number.parse::<usize>().ok())
        else {
            return;
        };
        if i < self.first_measured {
            self.warmup_received.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let latency = reply.at.saturating_duration_since(self.due(i));
        stats::record(
            &mut self.latency.lock().unwrap_or_else(|e| e.into_inner()),
            latency,
        );
        if self.received.fetch_add(1, Ordering::Relaxed) + 1 == self.expected {
            self.done.notify_one();
        }
    }
}

pub async fn run(args: &EchoArgs) -> anyhow::Result<()> {
    args.check()?;
    let port = procs::free_port()?;
    let mut command = match args.side {
        Side::Parley => peers::protocol_echo(port)?,
        Side::Node => peers::command(Peer::Node)?,
        Side::Socketioxide => peers::command(Peer::Socketioxide)?,
        Side::Raw => peers::command(Peer::RawEcho)?,
    };
    command
        .env("PORT", port.to_string())
        .env("JWT_SECRET", procs::JWT_SECRET);
    let mut server = procs::spawn(&format!("echo-{}", args.side.name()), command)?;
    procs::wait_port(&mut server, port, START_LIMIT).await?;
    println!(
        "echo: side {}, server pid {} (log {}), {} connections, {} msg/s, {} s (+{} s warm-up)",
        args.side.name(),
        server.pid(),
        server.log().display(),
        args.connections,
        args.rate,
        args.secs,
        args.warmup
    );
    let (clients, inboxes) = connect(args.side, port, args.connections).await?;

    let first_measured = args.warmup * args.rate;
    let total = first_measured + args.secs * args.rate;
    let replies = Arc::new(Replies {
        // A short lead so the first sends are not late already.
        start: Instant::now() + Duration::from_millis(200),
        period: Duration::from_secs(1) / u32::try_from(args.rate).context("--rate too large")?,
        first_measured,
        expected: total - first_measured,
        received: AtomicUsize::new(0),
        warmup_received: AtomicUsize::new(0),
        latency: Mutex::new(stats::histogram()),
        done: Notify::new(),
    });
    for mut inbox in inboxes {
        let replies = replies.clone();
        tokio::spawn(async move {
            while let Some(reply) = inbox.recv().await {
                replies.record(&reply);
            }
        });
    }

    // Open loop: every message at its due time, late ones at once; never skipped or slowed.
    let mut lag = stats::histogram();
    let mut before = None;
    for i in 0..total {
        let due = replies.due(i);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if i == first_measured {
            before = Some((
                procs::cpu_seconds(&[server.pid()]),
                cpu::Sample::now(""),
                due,
            ));
        }
        if i >= first_measured {
            stats::record(&mut lag, Instant::now().saturating_duration_since(due));
        }
        let payload = Value::String(format!("{i} {FILLER}"));
        clients[i % clients.len()].emit("message", &payload);
        if i % args.rate == args.rate - 1 {
            progress(&replies, i + 1);
        }
    }
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while replies.received.load(Ordering::Relaxed) < replies.expected {
            replies.done.notified().await;
        }
    })
    .await;
    let end = Instant::now();
    let (cpu_before, machine_before, window_start) =
        before.context("the measured window never started")?;
    let server_usage = procs::usage(&[server.pid()]);
    let machine = match (machine_before, cpu::Sample::now("")) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
    server
        .check_running()
        .context("the server stopped during the run")?;
    drop(clients);

    let report = Report {
        args,
        window: end.saturating_duration_since(window_start),
        received: replies.received.load(Ordering::Relaxed),
        expected: replies.expected,
        server_cpu: server_usage.cpu_seconds - cpu_before,
        server_rss: server_usage.rss_bytes,
        machine,
        latency: replies
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        lag,
    };
    report.print();
    Ok(())
}

/// `n` connected clients (Socket.IO with a signed token, or raw WebSocket) and their inboxes.
async fn connect(
    side: Side,
    port: u16,
    n: usize,
) -> anyhow::Result<(
    Vec<Client>,
    Vec<tokio::sync::mpsc::UnboundedReceiver<Received>>,
)> {
    let settings: shared::auth::JwtSettings =
        serde_json::from_value(json!({ "secret": procs::JWT_SECRET }))?;
    let keys = shared::auth::JwtKeys::new(&settings).map_err(anyhow::Error::msg)?;
    let connected: Vec<anyhow::Result<_>> = futures::stream::iter(0..n)
        .map(|i| {
            let token = keys
                .issue(shared::ids::UserId(i as i64 + 1))
                .map(|(token, _)| token);
            async move {
                if side == Side::Raw {
                    Client::connect_raw(&format!("ws://127.0.0.1:{port}/"), REPLIES).await
                } else {
                    let base = format!("ws://127.0.0.1:{port}/socket.io/");
                    Client::connect(&base, &token?, REPLIES).await
                }
            }
        })
        .buffered(CONNECTING)
        .collect()
        .await;
    let mut clients = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for result in connected {
        let (client, inbox) = result.context("connecting a client")?;
        clients.push(client);
        inboxes.push(inbox);
    }
    Ok((clients, inboxes))
}

fn progress(replies: &Replies, sent: usize) {
    let measured_sent = sent.saturating_sub(replies.first_measured);
    let received = replies.received.load(Ordering::Relaxed);
    let latency = replies.latency.lock().unwrap_or_else(|e| e.into_inner());
    let p99 = if latency.is_empty() {
        0.0
    } else {
        stats::quantile_ms(&latency, 0.99)
    };
    println!(
        "  sent {sent} (measured {measured_sent}), replies {received} measured + {} warm-up, p99 so far {p99:.3} ms",
        replies.warmup_received.load(Ordering::Relaxed)
    );
}

struct Report<'a> {
    args: &'a EchoArgs,
    window: Duration,
    received: usize,
    expected: usize,
    server_cpu: f64,
    server_rss: u64,
    machine: Option<cpu::Usage>,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
}

impl Report<'_> {
    fn print(&self) {
        let round = |x: f64, digits: i32| {
            let scale = 10f64.powi(digits);
            (x * scale).round() / scale
        };
        let per_thousand = 1000.0 * self.server_cpu / self.expected.max(1) as f64;
        let lost = self.expected - self.received.min(self.expected);
        let rate = self.received as f64 / self.window.as_secs_f64().max(1e-9);
        stats::print_hdr_header();
        stats::print_hdr_row("echo (due → reply read)", &self.latency);
        stats::print_hdr_row("generator lag (due → emitted)", &self.lag);
        println!(
            "{} messages, {} replies, {lost} lost, {rate:.0} msg/s over {:.2} s; server CPU {:.2} s = {per_thousand:.4} CPU-s per 1 000 messages, RSS {} KiB",
            self.expected,
            self.received,
            self.window.as_secs_f64(),
            self.server_cpu,
            self.server_rss / 1024
        );
        let (busy_pct, others) = match &self.machine {
            Some(machine) => {
                let others = machine.machine_busy - machine.process - self.server_cpu;
                println!(
                    "machine busy {:.0} %: generator {:.2} CPU-s, server {:.2}, other processes {:.2}; load average {}",
                    machine.machine_busy_pct,
                    machine.process,
                    self.server_cpu,
                    others.max(0.0),
                    cpu::load_average().map_or("?".into(), |l| format!("{l:.2}"))
                );
                (
                    Some(round(machine.machine_busy_pct, 1)),
                    Some(round(others.max(0.0), 2)),
                )
            }
            None => (None, None),
        };
        let h = &self.latency;
        let line = json!({
            "scenario": "echo",
            "side": self.args.side.name(),
            "connections": self.args.connections,
            "rate": self.args.rate,
            "secs": self.args.secs,
            "warmup_secs": self.args.warmup,
            "sent": self.expected,
            "received": self.received,
            "lost": lost,
            "msgs_per_s": round(rate, 1),
            "cpu_s": round(self.server_cpu, 3),
            "cpu_s_per_1000": round(per_thousand, 4),
            "cpu": { "server": round(per_thousand, 4), "total": round(per_thousand, 4) },
            "server_rss_kib": self.server_rss / 1024,
            "p50_ms": round(stats::quantile_ms(h, 0.50), 3),
            "p90_ms": round(stats::quantile_ms(h, 0.90), 3),
            "p99_ms": round(stats::quantile_ms(h, 0.99), 3),
            "p999_ms": round(stats::quantile_ms(h, 0.999), 3),
            "max_ms": round(h.max() as f64 / 1000.0, 3),
            "generator_lag_p99_ms": round(stats::quantile_ms(&self.lag, 0.99), 3),
            "machine_busy_pct": busy_pct,
            "others_cpu_s": others,
            "load_1m": cpu::load_average(),
        });
        println!("{line}");
    }
}
