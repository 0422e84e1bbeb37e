//! `api`: `POST /api/messages` latency and throughput, C clients (each its own user, direct
//! conversation and keep-alive connection) posting one request at a time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::stack::Stack;
use crate::stats::{print_header, print_row};

pub struct ApiArgs {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests in total (after 10 warm-up requests per client, not counted).
    pub requests: usize,
}

const WARM_UP: usize = 10;

pub async fn run(stack: &Stack, args: &ApiArgs) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let per_client = (args.requests / clients).max(1);
    let mut posters = Vec::new();
    for c in 0..clients {
        let (token, _) = stack.register(&format!("poster{c:04}")).await?;
        let (_, peer) = stack.register(&format!("peer{c:04}")).await?;
        let conversation = stack.conversation(&token, &peer).await?;
        let http = crate::stack::http_client(Duration::from_secs(30))?;
        posters.push((http, token, conversation));
    }
    let url = format!("{}/api/messages", stack.api_url);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, (http, token, conversation)) in posters.into_iter().enumerate() {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for n in 0..WARM_UP + per_client {
                let body = json!({ "clientMsgId": format!("api-{c}-{n}"), "conversationId": conversation, "content": "bench message" });
                let sent = Instant::now();
                let response = http.post(&url).bearer_auth(&token).json(&body).send().await?;
                let status = response.status();
                response.bytes().await?;
                if status.as_u16() != 201 {
                    bail!("POST /api/messages answered {status}");
                }
                if n >= WARM_UP {
                    latencies.push(sent.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a client panicked")??);
    }
    let elapsed = start.elapsed();
    let total = clients * (WARM_UP + per_client);
    println!("api: {clients} concurrent clients, {per_client} requests each after {WARM_UP} warm-up requests");
    println!();
    print_header();
    print_row(
        &format!("POST /api/messages, {clients} clients"),
        &latencies,
    );
    println!();
    println!(
        "throughput: {total} requests (warm-up included) in {:.3} s = {:.0} req/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
