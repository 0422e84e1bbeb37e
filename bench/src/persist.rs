//! `persist`: the storage path alone, with batches of a fixed size, so that two builds can be
//! compared on the same work whatever the machine does (in `chat`, batches grow when the stack
//! is starved of CPU, and the CPU per message with them). The relay's own HTTP port
//! (`socket_server::chat::port_http::HttpPort`) posts `--batches` batches of `--batch`
//! messages to `POST /internal/relay/messages`, `--concurrency` at a time, each batch from
//! random users of `--users` (paired in direct conversations) to their conversation, and waits
//! for each answer. No relay runs: nothing else touches the API.
//!
//! Reported: stored msg/s, latency per batch, and CPU-seconds per 1 000 messages of PostgreSQL,
//! Redis (the API publishes every stored message) and this process by thread kind.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shared::port::{RelayPort, StoreItem, StoreOutcome};

use crate::cpu;
use crate::stack::Stack;
use crate::stats::{print_header, print_row};

pub struct PersistArgs {
    /// Messages per batch.
    pub batch: usize,
    /// Batches in total.
    pub batches: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
    /// Users (even), paired in direct conversations.
    pub users: usize,
}

pub async fn run(stack: &Stack, args: &PersistArgs) -> anyhow::Result<()> {
    if args.users < 2 || args.users % 2 == 1 || args.batch == 0 || args.concurrency == 0 {
        bail!("--users must be an even number ≥ 2, --batch and --concurrency at least 1");
    }
    if args.batch > shared::port::MAX_STORE_BATCH {
        bail!("--batch is at most {}", shared::port::MAX_STORE_BATCH);
    }
    let settings = socket_server::settings::Settings::load()?;
    let keys = shared::auth::JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?;
    // (user id, jti, conversation id) of every user.
    let mut senders = Vec::with_capacity(args.users);
    for pair in 0..args.users / 2 {
        let (token_a, _) = stack.register(&format!("persist{pair:05}a")).await?;
        let (token_b, id_b) = stack.register(&format!("persist{pair:05}b")).await?;
        let conversation = stack.conversation(&token_a, &id_b).await?;
        for token in [token_a, token_b] {
            let claims = keys.verify(&token).context("reading a bench token")?;
            senders.push((claims.user_id()?, claims.jti, conversation.clone()));
        }
    }
    let port = std::sync::Arc::new(socket_server::chat::port_http::HttpPort::new(
        &stack.api_url,
        Duration::from_secs(30),
        keys,
    )?);
    let senders = std::sync::Arc::new(senders);
    let per_task = args.batches.div_ceil(args.concurrency);
    let batch = args.batch;
    let before = cpu::Sample::now("-");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..args.concurrency {
        let (port, senders) = (port.clone(), senders.clone());
        tasks.push(tokio::spawn(async move {
            let mut pick = seeded(task as u64 + 1);
            let mut latencies = Vec::with_capacity(per_task);
            for b in 0..per_task {
                let items: Vec<StoreItem> = (0..batch)
                    .map(|i| {
                        let (user, jti, conversation) = &senders[pick(senders.len())];
                        let message = serde_json::from_value(serde_json::json!({
                            "clientMsgId": format!("p{task}-{b}-{i}"),
                            "conversationId": conversation,
                            "content": format!("bench message {task} {b} {i}"),
                        }))?;
                        anyhow::Ok(StoreItem {
                            sender: *user,
                            jti: jti.clone(),
                            message,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                let sent = Instant::now();
                let outcomes = port
                    .store(&items)
                    .await
                    .map_err(|e| anyhow::anyhow!("storing a batch: {}", e.message))?;
                latencies.push(sent.elapsed());
                if let Some(StoreOutcome::Error(e)) = outcomes
                    .iter()
                    .find(|o| matches!(o, StoreOutcome::Error(_)))
                {
                    bail!("a message was refused: {} {}", e.code, e.message);
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a sender panicked")??);
    }
    let elapsed = start.elapsed();
    let usage = before
        .zip(cpu::Sample::now("-"))
        .map(|(before, after)| after.since(&before));
    let messages = latencies.len() * batch;
    println!(
        "persist: {} batches of {batch} = {messages} messages, {} at a time, {} users",
        latencies.len(),
        args.concurrency,
        args.users
    );
    print_header();
    print_row("batch stored (sent → answer)", &latencies);
    println!(
        "stored: {:.0} msg/s ({:.3} s)",
        messages as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if let Some(cpu) = usage {
        let per_thousand = |s: f64| 1000.0 * s / messages.max(1) as f64;
        println!(
            "CPU-seconds per 1000 messages: PostgreSQL {:.3}, Redis {:.3}, this process {:.3} ({}); other processes {:.1} CPU-s, machine {:.0}% busy",
            per_thousand(cpu.postgres),
            per_thousand(cpu.redis),
            per_thousand(cpu.process),
            cpu.threads_per_thousand(messages),
            (cpu.machine_busy - cpu.process - cpu.services).max(0.0),
            cpu.machine_busy_pct
        );
    }
    Ok(())
}

/// A reproducible uniform pick in `0..n` (xorshift64*).
fn seeded(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    move |n| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
