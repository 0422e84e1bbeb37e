//! `persist --side inproc`: the API in this process (`stack.rs`) on the shared PostgreSQL and
//! Redis, as the harness first ran it (the README's earlier figures). CPU from `cpu.rs`: this
//! process (the API and the generator together), every PostgreSQL and Redis process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use socket_server::chat::port_http::HttpPort;

use super::parley::drive;
use super::{print, Outcome, PersistArgs, Sender};
use crate::cpu;
use crate::stack::Stack;

pub async fn run(stack: &Stack, args: &PersistArgs) -> anyhow::Result<()> {
    args.check()?;
    let settings = socket_server::settings::Settings::load()?.0;
    let keys = shared::auth::JwtKeys::new(&settings.jwt).map_err(anyhow::Error::msg)?;
    let mut senders = Vec::with_capacity(args.users);
    for pair in 0..args.users / 2 {
        let (token_a, _) = stack.register(&format!("persist{pair:05}a")).await?;
        let (token_b, id_b) = stack.register(&format!("persist{pair:05}b")).await?;
        let conversation = stack.conversation(&token_a, &id_b).await?;
        for token in [token_a, token_b] {
            let claims = keys.verify(&token).context("reading a bench token")?;
            senders.push(Sender {
                user: claims.user_id()?.get(),
                jti: claims.jti,
                conversation: conversation.parse().context("a conversation id")?,
            });
        }
    }
    let port = HttpPort::new(&stack.api_url, Duration::from_secs(30), keys)?;
    let before = cpu::Sample::now("-");
    let (latencies, elapsed) = drive(Arc::new(port), Arc::new(senders), args).await?;
    let usage = before
        .zip(cpu::Sample::now("-"))
        .map(|(before, after)| after.since(&before));
    if let Some(u) = &usage {
        println!(
            "other processes {:.1} CPU-s, machine {:.0}% busy",
            (u.machine_busy - u.process - u.services).max(0.0),
            u.machine_busy_pct
        );
    }
    let cpu = usage.map_or_else(Vec::new, |u| {
        vec![
            ("process", u.process),
            ("postgres", u.postgres),
            ("redis", u.redis),
        ]
    });
    // Every batch was answered with its messages stored (a refusal fails the run).
    let stored = (latencies.len() * args.batch) as i64;
    print(
        args,
        &Outcome {
            latencies,
            elapsed,
            stored,
            cpu,
        },
    );
    Ok(())
}
