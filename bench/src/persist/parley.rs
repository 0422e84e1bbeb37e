//! `persist --side parley`: the API as its own process, batches posted by the relay's HTTP port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shared::ids::UserId;
use shared::port::{RelayPort, StoreItem, StoreOutcome};
use socket_server::chat::port_http::HttpPort;

use super::{jwt_settings, seed, stored, Outcome, PersistArgs, Sender};
use crate::procs::{self, ParleyStack};

/// How long one batch may take to be answered.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

pub async fn run(args: &PersistArgs) -> anyhow::Result<Outcome> {
    let stack = ParleyStack::start(0).await?;
    let senders = seed(&stack, args.users).await?;
    let keys = shared::auth::JwtKeys::new(&jwt_settings()?).map_err(anyhow::Error::msg)?;
    let port = HttpPort::new(&stack.api_url, ANSWER_LIMIT, keys)?;
    let parts: Vec<(&'static str, Vec<u32>)> = stack
        .parts()
        .into_iter()
        .filter(|(_, pids)| !pids.is_empty())
        .collect();
    stack.postgres.reset_statements()?;
    let before: Vec<f64> = parts.iter().map(|(_, p)| procs::cpu_seconds(p)).collect();
    let (latencies, elapsed) = drive(Arc::new(port), Arc::new(senders), args).await?;
    let cpu = parts
        .iter()
        .zip(&before)
        .map(|((part, pids), before)| (*part, procs::cpu_seconds(pids) - before))
        .collect();
    Ok(Outcome {
        latencies,
        elapsed,
        stored: stored(&stack.postgres).await?,
        cpu,
    })
}

/// `--concurrency` senders each post their share of `--batches` batches, one at a time; every
/// batch's latency and the whole window. Any refused message fails the run.
pub async fn drive(
    port: Arc<dyn RelayPort>,
    senders: Arc<Vec<Sender>>,
    args: &PersistArgs,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let (per_sender, batch) = (args.per_sender(), args.batch);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..args.concurrency {
        let (port, senders) = (port.clone(), senders.clone());
        tasks.push(tokio::spawn(async move {
            let mut pick = seeded(task as u64 + 1);
            let mut latencies = Vec::with_capacity(per_sender);
            for b in 0..per_sender {
                let items: Vec<StoreItem> = (0..batch)
                    .map(|i| {
                        let sender = &senders[pick(senders.len())];
                        let message = serde_json::from_value(serde_json::json!({
                            "clientMsgId": format!("p{task}-{b}-{i}"),
                            "conversationId": sender.conversation.to_string(),
                            "content": format!("bench message {task} {b} {i}"),
                        }))?;
                        anyhow::Ok(StoreItem {
                            sender: UserId(sender.user),
                            jti: sender.jti.clone(),
                            message,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                let sent = Instant::now();
                let outcomes = port
                    .store(&items, shared::port::Announce::Bus)
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
    Ok((latencies, start.elapsed()))
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
