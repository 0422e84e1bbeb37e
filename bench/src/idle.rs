//! Scenario `idle`: the memory and CPU an idle authenticated connection costs a side's servers.
//!
//! The side's servers run as processes of their own on the server core (`procs`): Parley's
//! relay with its API, PostgreSQL and Redis, or a peer's relay alone (`peers`; users are ids
//! with signed tokens, nothing stored). The generator
//! opens `--connections` WebSocket Socket.IO connections (`sio::Client`, a 4 KiB read buffer
//! each), one per user, each authenticated with its own token (so each is in its room
//! `user:<id>`), `--concurrency` connects in flight, in steps of `--step`. After each step it
//! reads the RSS of the side's processes from `/proc` (`rss_curve`); then it holds every
//! connection `--hold` seconds (pings answered) and reads their CPU over the hold
//! ([`HOLD_SECS`] by default: one heartbeat interval).
//!
//! Per connection: the least-squares slope of the relay's RSS over the ramp, and
//! (RSS(N) − RSS(0)) / N with RSS(0) read before the first connect (start-up allocations of the
//! first connections included). Each part's RSS and PSS at the end are reported too (PSS for
//! sums over processes that share memory: PostgreSQL's backends).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use crate::peers::{self, Peer};
use crate::procs::{self, Proc, Usage};
use crate::sio;

/// How long a peer's server may take to listen.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The default hold: one heartbeat interval, 25 s on every side (Parley, Node `socket.io` and
/// socketioxide all ping every 25 s), so each connection's ping and pong fall in it once,
/// whatever its connect time.
pub const HOLD_SECS: usize = 25;

pub struct IdleArgs {
    pub side: String,
    pub connections: usize,
    pub step: usize,
    pub hold: usize,
    pub concurrency: usize,
}

impl IdleArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.step == 0 || self.concurrency == 0 {
            bail!("--connections, --step and --concurrency must be at least 1");
        }
        Ok(())
    }
}

/// What the side runs: the relay first (the per-connection figures are its), then the rest.
struct Side {
    relay_url: String,
    tokens: Vec<String>,
    parts: Vec<(&'static str, Vec<u32>)>,
    _stack: Option<procs::ParleyStack>,
    _peer: Option<Proc>,
}

async fn start(args: &IdleArgs) -> anyhow::Result<Side> {
    match args.side.as_str() {
        "parley" => {
            let stack = procs::ParleyStack::start(1).await?;
            let users = stack.users(args.connections).await?;
            Ok(Side {
                relay_url: stack.relay_urls[0].clone(),
                tokens: users.into_iter().map(|u| u.token).collect(),
                parts: stack.parts(),
                _stack: Some(stack),
                _peer: None,
            })
        }
        "node" | "socketioxide" => {
            let peer = if args.side == "node" {
                Peer::Node
            } else {
                Peer::Socketioxide
            };
            let port = procs::free_port()?;
            let mut command = peers::command(peer)?;
            command
                .env("PORT", port.to_string())
                .env("JWT_SECRET", procs::JWT_SECRET);
            let mut process = procs::spawn(&format!("{}-relay", args.side), command)?;
            procs::wait_port(&mut process, port, START_LIMIT).await?;
            let ids: Vec<i64> = (1..=args.connections as i64).collect();
            Ok(Side {
                relay_url: format!("ws://127.0.0.1:{port}/socket.io/"),
                tokens: procs::sign(&ids)?,
                parts: vec![("relay", vec![process.pid()])],
                _stack: None,
                _peer: Some(process),
            })
        }
        other => bail!("--side must be parley, node or socketioxide, not {other:?}"),
    }
}

/// Usage of each part of the side, in the order of `parts`.
fn read(parts: &[(&'static str, Vec<u32>)]) -> Vec<Usage> {
    parts.iter().map(|(_, pids)| procs::usage(pids)).collect()
}

pub async fn run(args: &IdleArgs) -> anyhow::Result<()> {
    args.check()?;
    let side = start(args).await?;
    let n = args.connections;
    let client_rss_0 = procs::usage_of(std::process::id()).rss_bytes;
    let at_start = read(&side.parts);
    let mut curve = vec![(0usize, at_start[0].rss_bytes)];
    let mut clients = Vec::with_capacity(n);
    let ramp = Instant::now();
    println!(
        "idle, side {}: {n} connections, steps of {}, {} connects in flight",
        args.side, args.step, args.concurrency
    );
    while clients.len() < n {
        let from = clients.len();
        let to = (from + args.step).min(n);
        let url = side.relay_url.as_str();
        let opened: Vec<_> = stream::iter(&side.tokens[from..to])
            .map(|token| async move {
                sio::Client::connect(url, token, &[])
                    .await
                    .with_context(|| format!("connection {} of {n}", from + 1))
            })
            .buffer_unordered(args.concurrency)
            .try_collect()
            .await?;
        clients.extend(opened);
        let rss = procs::usage(&side.parts[0].1).rss_bytes;
        println!(
            "  {:>6} connections: relay RSS {:>8} KiB ({:.1} s)",
            clients.len(),
            rss / 1024,
            ramp.elapsed().as_secs_f64()
        );
        curve.push((clients.len(), rss));
    }
    let ramp_secs = ramp.elapsed().as_secs_f64();
    let after_ramp = read(&side.parts);
    tokio::time::sleep(Duration::from_secs(args.hold as u64)).await;
    let after_hold = read(&side.parts);
    let client_rss = procs::usage_of(std::process::id()).rss_bytes;
    report(
        args,
        &side,
        &Figures {
            curve,
            ramp_secs,
            at_start,
            after_ramp,
            after_hold,
            client_per_conn: client_rss.saturating_sub(client_rss_0) as f64 / n as f64,
        },
    );
    drop(clients);
    Ok(())
}

struct Figures {
    /// `(connections, relay RSS bytes)` after each step.
    curve: Vec<(usize, u64)>,
    ramp_secs: f64,
    at_start: Vec<Usage>,
    after_ramp: Vec<Usage>,
    after_hold: Vec<Usage>,
    /// The generator's own RSS growth per connection, in bytes.
    client_per_conn: f64,
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &[(usize, u64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in points {
        num += (x as f64 - mean_x) * (y as f64 - mean_y);
        den += (x as f64 - mean_x).powi(2);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn report(args: &IdleArgs, side: &Side, f: &Figures) {
    let n = args.connections;
    let kib = |bytes: f64| bytes / 1024.0;
    let relay_end = f.after_hold[0].rss_bytes as f64;
    let per_conn = kib((relay_end - f.at_start[0].rss_bytes as f64) / n as f64);
    let slope_kib = kib(slope(&f.curve));
    let hold = args.hold.max(1) as f64;
    let mut idle_cpu = serde_json::Map::new();
    let mut connect_cpu = serde_json::Map::new();
    let mut rss = serde_json::Map::new();
    let mut pss = serde_json::Map::new();
    let (mut idle_total, mut connect_total) = (0.0, 0.0);
    println!("  part       RSS KiB    PSS KiB   connect CPU-s/1000   idle CPU-s/s");
    for (i, (part, _)) in side.parts.iter().enumerate() {
        let connect = f.after_ramp[i].since(&f.at_start[i]).cpu_seconds * 1000.0 / n as f64;
        let idle = f.after_hold[i].since(&f.after_ramp[i]).cpu_seconds / hold;
        let part_rss = f.after_hold[i].rss_bytes / 1024;
        let part_pss = f.after_hold[i].pss_bytes / 1024;
        println!("  {part:<8} {part_rss:>9} {part_pss:>10} {connect:>20.3} {idle:>14.4}");
        connect_total += connect;
        idle_total += idle;
        connect_cpu.insert((*part).into(), json!(connect));
        idle_cpu.insert((*part).into(), json!(idle));
        rss.insert((*part).into(), json!(part_rss));
        pss.insert((*part).into(), json!(part_pss));
    }
    connect_cpu.insert("total".into(), json!(connect_total));
    idle_cpu.insert("total".into(), json!(idle_total));
    println!(
        "  relay RSS per connection: {per_conn:.2} KiB ((RSS(N) − RSS(0)) / N), slope {slope_kib:.2} KiB; \
         {:.0} connects/s; generator {:.2} KiB per connection",
        n as f64 / f.ramp_secs,
        kib(f.client_per_conn)
    );
    let curve: Vec<_> = f.curve.iter().map(|&(c, b)| json!([c, b / 1024])).collect();
    println!(
        "{}",
        json!({
            "scenario": "idle",
            "side": args.side,
            "connections": n,
            "step": args.step,
            "hold_s": args.hold,
            "rss_per_conn_kib": per_conn,
            "rss_slope_kib": slope_kib,
            "rss_curve": curve,
            "rss_kib": rss,
            "pss_kib": pss,
            "connects_per_s": n as f64 / f.ramp_secs,
            "connect_cpu_s_per_1000": connect_cpu,
            "idle_cpu_s_per_s": idle_cpu,
            "client_rss_per_conn_kib": kib(f.client_per_conn),
        })
    );
}
