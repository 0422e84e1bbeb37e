//! `chat`: many users chatting at once, the load of issue 7, against one side (issue 12):
//! Parley, Node socket.io, socketioxide or the seeds' stack, each as processes of its own on the
//! server core (`sides`), or Parley in this process (`--side inproc`). `users` users in direct
//! pairs, `devices` WebSocket devices each, spread over `relays` relays; **open-loop**
//! `send_message` at `rate` msg/s for `secs` s, each from a random device to its user's partner
//! (the seeds' client also POSTs it to their API). Every latency is measured from the message's
//! scheduled send time, so a generator or a server that falls behind shows up as latency (no
//! coordinated omission); senders and receivers share one clock (`Instant`, one process).
//!
//! The devices and the generator run on a runtime of their own (threads named
//! [`load::THREAD_NAME`]): in process, the stack's CPU time is the process's minus theirs; an
//! external side's is read from its processes.
//!
//! # Layout
//! - `sides`: starting each side's servers, its users and conversations.
//! - `load`: connect, read every device's events, emit on schedule, progress, drain.
//! - `record`: per-message state, counters and HDR histograms shared by all of them.
//! - `report`: the table and the JSON line. `commands`: the Redis commands a Parley run caused.
//! - here: the arguments, arranging users and conversations in process, running.

mod commands;
mod load;
mod record;
mod report;
mod sides;

pub use sides::Side;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::cpu;
use crate::stack::Stack;

#[derive(Clone)]
pub struct ChatArgs {
    /// What runs the chat: Parley, a peer, or Parley in this process.
    pub side: Side,
    /// Users, an even number (paired in direct conversations).
    pub users: usize,
    /// WebSocket devices per user.
    pub devices: usize,
    /// Messages per second offered, over all devices.
    pub rate: usize,
    /// Seconds of sending.
    pub secs: usize,
    /// Relays the devices are spread over (linked by Redis: Parley's bus, the peers' adapters).
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

/// In process: register the users and create one direct conversation per pair.
async fn arrange(stack: &Stack, users: usize) -> anyhow::Result<sides::Target> {
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
    Ok(sides::Target {
        side: Side::Inproc,
        relays: stack.relays.clone(),
        users: registered
            .into_iter()
            .map(|(token, id)| sides::User { id, token })
            .collect(),
        conversations,
        api: None,
    })
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

/// `chat` against Parley in this process (`stack` holds `args.relays` relays).
pub async fn run_inproc(stack: &Stack, args: &ChatArgs) -> anyhow::Result<()> {
    args.check()?;
    let began = Instant::now();
    let load_average = announce(args);
    let target = arrange(stack, args.users).await?;
    let arranged = began.elapsed();
    println!(
        "{} users registered and paired in {:.1} s",
        args.users,
        arranged.as_secs_f64()
    );
    let outcome = generate(target, Vec::new(), args).await?;
    report::report(args, &outcome, load_average, arranged, began.elapsed());
    Ok(())
}

/// `chat` against `args.side` started as processes of their own, stopped at the end.
pub async fn run(args: &ChatArgs) -> anyhow::Result<()> {
    args.check()?;
    let began = Instant::now();
    let load_average = announce(args);
    let (target, servers) = sides::start(args.side, args.relays, args.users)
        .await
        .with_context(|| format!("starting the {} side", args.side.name()))?;
    let arranged = began.elapsed();
    println!(
        "{} started ({} relay(s)), {} users and {} conversations made in {:.1} s",
        args.side.name(),
        args.relays,
        args.users,
        target.conversations.len(),
        arranged.as_secs_f64()
    );
    let redis = servers.redis_url.clone();
    let before = match &redis {
        Some(url) => Some(commands::read(url).await?),
        None => None,
    };
    let outcome = generate(target, servers.parts.clone(), args).await;
    if let (Some(url), Some(before), Ok(outcome)) = (&redis, &before, &outcome) {
        let after = commands::read(url).await?;
        let sent = outcome
            .record
            .sent
            .load(std::sync::atomic::Ordering::Relaxed);
        println!("{}", commands::line(before, &after, sent));
    }
    drop(servers);
    report::report(args, &outcome?, load_average, arranged, began.elapsed());
    Ok(())
}

/// The run's first line; the 1-minute load average at the start.
fn announce(args: &ChatArgs) -> Option<f64> {
    let load_average = cpu::load_average();
    println!(
        "chat against {}: {} users in {} direct conversations, {} device(s) each, {} relay(s); open loop at {} msg/s for {} s (1-min load average {})",
        args.side.name(),
        args.users,
        args.users / 2,
        args.devices,
        args.relays,
        args.rate,
        args.secs,
        load_average.map_or("?".into(), |l| format!("{l:.2}")),
    );
    load_average
}

/// Run the load on the generator's own runtime.
async fn generate(
    target: sides::Target,
    parts: Vec<(&'static str, Vec<u32>)>,
    args: &ChatArgs,
) -> anyhow::Result<load::Outcome> {
    let runtime = GeneratorRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name(load::THREAD_NAME)
            .enable_all()
            .build()?,
    ));
    let handle = runtime.0.as_ref().map(|r| r.handle().clone());
    let handle = handle.context("the generator runtime")?;
    handle
        .spawn(load::drive(Arc::new(target), parts, args.clone()))
        .await
        .context("the load generator panicked")?
}
