//! Parley's benchmark harness: performance claims come from here, never from timed tests.
//!
//! # Layout
//! - `stack`: the API (fresh PostgreSQL database, own Redis prefix) and a relay, in process on
//!   loopback port 0, stopped and cleaned up at the end.
//! - `sio`: a minimal WebSocket-only Socket.IO client on tokio-tungstenite.
//! - `fanout`, `api`, `publish`, `chat`, `persist`: the scenarios; `stats`: percentiles; `cpu`: CPU time
//!   from `/proc`.
//!
//! `cargo run --release -p bench -- fanout [--users N] [--messages M] [--senders K] [--window W]`
//! `cargo run --release -p bench -- chat [--side parley|node|socketioxide|seeds|inproc] [--users 500] [--devices 2] [--rate 1000] [--secs 10] [--relays 1] [--drain 60]`
//! `cargo run --release -p bench -- api [--clients C] [--requests R]`
//! `cargo run --release -p bench -- echo [--side parley|node|socketioxide|raw] [--connections 100] [--rate 5000] [--secs 10] [--warmup 2]`
//! `cargo run --release -p bench -- publish [--publishes P]` (Redis only, no stack)
//! `cargo run --release -p bench -- persist [--side parley|pgbench|inproc] [--batch 10] [--batches 2000] [--concurrency 1] [--users 20]`
//! `cargo run --release -p bench -- all [--quick] [--smoke] [--only <scenario>] [--out <dir>]` (every scenario and side, the report in `bench/results/`)
//! `cargo run --release -p bench -- idle [--side parley|node|socketioxide] [--connections 15000] [--step 2500] [--hold 25] [--concurrency 64]`

mod all;
mod api;
mod chat;
mod cpu;
mod echo;
mod fanout;
mod idle;
mod peers;
mod persist;
mod procs;
mod publish;
mod report;
mod sio;
mod stack;
mod stats;

use std::time::Duration;

/// The allocator of the relay's binaries (jemalloc), so that the in-process stack measures what
/// `socket-server` and `parley` run.
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::ALLOCATOR;

use anyhow::{bail, Context};

/// No run lasts longer than this; the stack is stopped, its database and Redis keys deleted either way.
const TIME_LIMIT: Duration = Duration::from_secs(300);

enum Scenario {
    Fanout(fanout::FanoutArgs),
    Api(api::ApiArgs),
    Publish(publish::PublishArgs),
    Chat(chat::ChatArgs),
    Persist(persist::PersistArgs),
    Echo(echo::EchoArgs),
    Idle(idle::IdleArgs),
}

/// What `bench --help` prints (and a run with an unknown scenario).
const USAGE: &str = "\
usage: bench <scenario> [--flag value ...]   (bench/README.md says what each one measures)
  bench all     [--quick] [--smoke] [--only <scenario>] [--out <dir>]
  bench chat    [--side parley|node|socketioxide|seeds|inproc] [--users N] [--devices D] [--rate R] [--secs S] [--relays K] [--drain S]
  bench echo    [--side parley|node|socketioxide|raw] [--connections N] [--rate R] [--secs S] [--warmup S]
  bench idle    [--side parley|node|socketioxide] [--connections N] [--step K] [--hold S] [--concurrency C]
  bench persist [--side parley|pgbench|inproc] [--batch B] [--batches N] [--concurrency C] [--users U]
  bench fanout  [--users N] [--messages M] [--senders K] [--window W]
  bench api     [--clients C] [--requests R]
  bench publish [--publishes P]";

fn parse(args: &[String]) -> anyhow::Result<Scenario> {
    let mut flags = std::collections::HashMap::new();
    let invalid = std::cell::RefCell::new(None::<String>);
    let mut rest = args.iter().skip(1);
    while let Some(flag) = rest.next() {
        let name = flag
            .strip_prefix("--")
            .with_context(|| format!("unexpected argument {flag}"))?;
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        flags.insert(name.to_owned(), value.clone());
    }
    let flags = std::cell::RefCell::new(flags);
    // A numeric flag, or its default.
    let take = |name: &str, default: usize| -> usize {
        flags
            .borrow_mut()
            .remove(name)
            .map_or(Ok(default), |value| value.parse())
            .unwrap_or_else(|_| {
                invalid
                    .borrow_mut()
                    .get_or_insert_with(|| format!("--{name} needs a number"));
                default
            })
    };
    // A text flag (e.g. `--side node`), or its default.
    #[allow(unused)]
    let text = |name: &str, default: &str| -> String {
        flags
            .borrow_mut()
            .remove(name)
            .unwrap_or_else(|| default.to_owned())
    };
    let scenario = match args.first().map(String::as_str) {
        Some("fanout") => Scenario::Fanout(fanout::FanoutArgs {
            users: take("users", 20),
            messages: take("messages", 1000),
            senders: take("senders", 10),
            window: take("window", 8),
        }),
        Some("api") => Scenario::Api(api::ApiArgs {
            clients: take("clients", 4),
            requests: take("requests", 2000),
        }),
        Some("publish") => Scenario::Publish(publish::PublishArgs {
            publishes: take("publishes", 5000),
        }),
        Some("chat") => Scenario::Chat(chat::ChatArgs {
            side: chat::Side::parse(&text("side", "parley"))?,
            users: take("users", 500),
            devices: take("devices", 2),
            rate: take("rate", 1000),
            secs: take("secs", 10),
            relays: take("relays", 1),
            drain: take("drain", 60),
        }),
        Some("persist") => Scenario::Persist(persist::PersistArgs {
            side: persist::Side::parse(&text("side", "parley"))?,
            batch: take("batch", 10),
            batches: take("batches", 2000),
            concurrency: take("concurrency", 1),
            users: take("users", 20),
        }),
        Some("idle") => Scenario::Idle(idle::IdleArgs {
            side: text("side", "parley"),
            connections: take("connections", 15000),
            step: take("step", 2500),
            hold: take("hold", idle::HOLD_SECS),
            concurrency: take("concurrency", 64),
        }),
        Some("echo") => Scenario::Echo(echo::EchoArgs {
            side: echo::Side::parse(&text("side", "parley"))?,
            connections: take("connections", 100),
            rate: take("rate", 5000),
            secs: take("secs", 10),
            warmup: take("warmup", 2),
        }),
        _ => bail!("{USAGE}"),
    };
    if let Some(message) = invalid.into_inner() {
        bail!(message);
    }
    if let Some(unknown) = flags.into_inner().keys().next() {
        bail!("unknown flag --{unknown}");
    }
    Ok(scenario)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    if args.first().is_some_and(|a| a == "all") {
        return all::main(&args[1..]);
    }
    let scenario = parse(&args)?;
    if matches!(&scenario, Scenario::Persist(args) if args.side != persist::Side::Inproc) {
        procs::prepare()?;
    }
    // Scenarios against server processes: this process is the generator, on its own core.
    if matches!(scenario, Scenario::Idle(_) | Scenario::Echo(_))
        || matches!(&scenario, Scenario::Chat(args) if args.side != chat::Side::Inproc)
    {
        procs::prepare()?;
    }
    // Before any thread exists: the services read their settings from the environment.
    stack::prepare_environment();
    shared::telemetry::init("error");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "build: {}; {} CPU(s) available",
            if cfg!(debug_assertions) {
                "debug (use --release for numbers)"
            } else {
                "release"
            },
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        if let Scenario::Echo(args) = &scenario {
            return tokio::time::timeout(TIME_LIMIT, echo::run(args))
                .await
                .context("the bench ran past its time limit")?;
        }
        if let Scenario::Idle(args) = &scenario {
            return tokio::time::timeout(TIME_LIMIT, idle::run(args))
                .await
                .context("the bench ran past its time limit")?;
        }
        if let Scenario::Publish(args) = &scenario {
            return tokio::time::timeout(TIME_LIMIT, publish::run(&stack::redis_url(), args))
                .await
                .context("the bench ran past its time limit")?;
        }
        if let Scenario::Persist(args) = &scenario {
            if args.side != persist::Side::Inproc {
                return tokio::time::timeout(TIME_LIMIT, persist::run(args))
                    .await
                    .context("the bench ran past its time limit")?;
            }
        }
        if let Scenario::Chat(args) = &scenario {
            if args.side != chat::Side::Inproc {
                return tokio::time::timeout(TIME_LIMIT, chat::run(args))
                    .await
                    .context("the bench ran past its time limit")?;
            }
        }
        let relays = match &scenario {
            Scenario::Fanout(_) => 1,
            Scenario::Chat(args) => {
                args.check()?;
                args.relays
            }
            _ => 0,
        };
        let stack = stack::Stack::start(relays).await?;
        let outcome = tokio::time::timeout(TIME_LIMIT, async {
            match &scenario {
                Scenario::Fanout(args) => fanout::run(&stack, args).await,
                Scenario::Api(args) => api::run(&stack, args).await,
                Scenario::Chat(args) => chat::run_inproc(&stack, args).await,
                Scenario::Persist(args) => persist::run_inproc(&stack, args).await,
                Scenario::Publish(_) | Scenario::Echo(_) | Scenario::Idle(_) => {
                    unreachable!("run above, without the in-process stack")
                }
            }
        })
        .await;
        stack.stop().await?;
        outcome.context("the bench ran past its time limit")?
    })
}
