//! `persist`: the storage path alone, with batches of a fixed size (in `chat`, batches grow when
//! the stack is starved of CPU, and the CPU per message with them), against its floor.
//!
//! - `--side parley`: the release `api-server` as its own process on core 1, on the run's own
//!   PostgreSQL and Redis (`procs::ParleyStack`, no relay). The relay's HTTP port
//!   (`socket_server::chat::port_http::HttpPort`) posts `--batches` batches of `--batch` messages
//!   to `POST /internal/relay/messages`, `--concurrency` at a time, each from random users of
//!   `--users` (paired in direct conversations), and waits for each answer (`parley.rs`).
//! - `--side pgbench`: the same database (migrated by the API, the same users, sessions and
//!   conversations; the API then stopped), and `pgbench -M prepared` running the statements the
//!   API sends for a batch (`script.rs`, generated from the API's own constants) with the same
//!   batch size, batch count and concurrency: the storage floor (`pgbench.rs`).
//! - `--side inproc`: the harness's first mode, the API in this process on the shared PostgreSQL
//!   and Redis (`inproc.rs`; the README's earlier figures).
//!
//! Reported: stored msg/s, latency per batch (sent → answer; pgbench: the transaction), and
//! CPU-seconds per 1 000 messages of each server process (API, PostgreSQL, Redis) over the load
//! window; every stored row is counted in the database afterwards.

mod inproc;
mod parley;
mod pgbench;
mod script;

pub use inproc::run as run_inproc;

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;

use crate::procs::{self, ParleyStack};
use crate::stats::{four_significant, print_header, print_row, Summary};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Parley,
    Pgbench,
    Inproc,
}

impl Side {
    pub fn parse(text: &str) -> anyhow::Result<Side> {
        Ok(match text {
            "parley" => Side::Parley,
            "pgbench" => Side::Pgbench,
            "inproc" => Side::Inproc,
            _ => bail!("--side must be parley, pgbench or inproc, not {text:?}"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Parley => "parley",
            Side::Pgbench => "pgbench",
            Side::Inproc => "inproc",
        }
    }
}

pub struct PersistArgs {
    pub side: Side,
    /// Messages per batch.
    pub batch: usize,
    /// Batches in total.
    pub batches: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
    /// Users (even), paired in direct conversations.
    pub users: usize,
}

impl PersistArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.users < 2 || self.users % 2 == 1 || self.batch == 0 || self.concurrency == 0 {
            bail!("--users must be an even number ≥ 2, --batch and --concurrency at least 1");
        }
        if self.batch > shared::port::MAX_STORE_BATCH {
            bail!("--batch is at most {}", shared::port::MAX_STORE_BATCH);
        }
        if self.batches < self.concurrency {
            bail!("--batches must be at least --concurrency");
        }
        Ok(())
    }

    /// Batches per sender (each of `concurrency` sends this many).
    fn per_sender(&self) -> usize {
        self.batches.div_ceil(self.concurrency)
    }
}

/// A user who sends: their id, their session's `jti`, their direct conversation.
pub struct Sender {
    pub user: i64,
    pub jti: String,
    pub conversation: i64,
}

/// `parley` or `pgbench` (server processes of the run's own); `inproc` is [`run_inproc`].
pub async fn run(args: &PersistArgs) -> anyhow::Result<()> {
    args.check()?;
    let outcome = match args.side {
        Side::Parley => parley::run(args).await?,
        Side::Pgbench => pgbench::run(args).await?,
        Side::Inproc => bail!("--side inproc runs in process: persist::run_inproc"),
    };
    print(args, &outcome);
    Ok(())
}

/// Users paired in direct conversations (made through the API, as clients make them).
async fn seed(stack: &ParleyStack, users: usize) -> anyhow::Result<Vec<Sender>> {
    let keys = shared::auth::JwtKeys::new(&jwt_settings()?).map_err(anyhow::Error::msg)?;
    let made = stack.users(users).await?;
    let http = crate::stack::http_client(Duration::from_secs(60))?;
    let mut senders = Vec::with_capacity(users);
    for pair in made.chunks(2) {
        let [a, b] = pair else {
            bail!("an even number of users")
        };
        let answer: serde_json::Value = http
            .post(format!("{}/api/conversations", stack.api_url))
            .bearer_auth(&a.token)
            .json(&json!({ "memberIds": [b.id.to_string()] }))
            .send()
            .await
            .context("creating a conversation")?
            .error_for_status()
            .context("creating a conversation")?
            .json()
            .await?;
        let conversation = answer["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .context("the conversation's id")?;
        for user in [a, b] {
            let claims = keys.verify(&user.token).context("reading a bench token")?;
            senders.push(Sender {
                user: user.id,
                jti: claims.jti,
                conversation,
            });
        }
    }
    Ok(senders)
}

/// The services' token settings ([`procs::JWT_SECRET`], the defaults otherwise).
fn jwt_settings() -> anyhow::Result<shared::auth::JwtSettings> {
    serde_json::from_value(json!({ "secret": procs::JWT_SECRET })).context("JWT settings")
}

/// Messages stored in the run's database.
async fn stored(postgres: &procs::Postgres) -> anyhow::Result<i64> {
    let (client, connection) =
        tokio_postgres::connect(&postgres.url("parley"), tokio_postgres::NoTls)
            .await
            .context("connecting to the run's PostgreSQL")?;
    let connection = tokio::spawn(connection);
    let count: i64 = client
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .context("counting the stored messages")?
        .get(0);
    drop(client);
    let _ = connection.await;
    Ok(count)
}

/// What a side did.
pub struct Outcome {
    /// Each batch's latency.
    latencies: Vec<Duration>,
    /// The load window.
    elapsed: Duration,
    /// Messages counted in the database afterwards.
    stored: i64,
    /// CPU-seconds over the window of each server process (and its children) by part.
    cpu: Vec<(&'static str, f64)>,
}

fn print(args: &PersistArgs, o: &Outcome) {
    let messages = o.latencies.len() * args.batch;
    let rate = messages as f64 / o.elapsed.as_secs_f64().max(1e-9);
    let per_thousand = |s: f64| 1000.0 * s / messages.max(1) as f64;
    let total: f64 = o.cpu.iter().map(|(_, s)| s).sum();
    println!(
        "persist --side {}: {} batches of {} = {messages} messages, {} at a time, {} users; {} stored",
        args.side.name(),
        o.latencies.len(),
        args.batch,
        args.concurrency,
        args.users,
        o.stored
    );
    print_header();
    print_row("batch stored (sent → answer)", &o.latencies);
    println!("stored: {rate:.0} msg/s ({:.3} s)", o.elapsed.as_secs_f64());
    let parts: Vec<String> = o
        .cpu
        .iter()
        .map(|(part, s)| format!("{part} {:.3}", per_thousand(*s)))
        .collect();
    println!(
        "CPU-seconds per 1000 messages: {} = {:.3}",
        parts.join(" + "),
        per_thousand(total)
    );
    let s = Summary::of(&o.latencies);
    let ms = |f: fn(&Summary) -> f64| s.as_ref().map(f);
    let mut cpu: serde_json::Map<String, serde_json::Value> = o
        .cpu
        .iter()
        .map(|(part, s)| {
            (
                (*part).to_owned(),
                json!(four_significant(per_thousand(*s))),
            )
        })
        .collect();
    cpu.insert("total".into(), json!(four_significant(per_thousand(total))));
    let cpu_s: serde_json::Map<String, serde_json::Value> = o
        .cpu
        .iter()
        .map(|(part, s)| ((*part).to_owned(), json!(four_significant(*s))))
        .collect();
    println!(
        "{}",
        json!({
            "scenario": "persist",
            "side": args.side.name(),
            "batch": args.batch,
            "concurrency": args.concurrency,
            "batches": o.latencies.len(),
            "users": args.users,
            "messages": messages,
            "stored": o.stored,
            "secs": four_significant(o.elapsed.as_secs_f64()),
            "msgs_per_s": four_significant(rate),
            "p50_ms": ms(|s| s.p50).map(four_significant),
            "p90_ms": ms(|s| s.p90).map(four_significant),
            "p99_ms": ms(|s| s.p99).map(four_significant),
            "max_ms": ms(|s| s.max).map(four_significant),
            "cpu_s_per_1000": four_significant(per_thousand(total)),
            "cpu": cpu,
            "cpu_s": cpu_s,
        })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_that_cannot_make_a_run_are_refused() {
        let args = |batch, batches, concurrency, users| PersistArgs {
            side: Side::Parley,
            batch,
            batches,
            concurrency,
            users,
        };
        assert!(args(10, 100, 4, 20).check().is_ok());
        assert!(args(10, 100, 4, 21).check().is_err());
        assert!(args(300, 100, 4, 20).check().is_err());
        assert!(args(10, 2, 4, 20).check().is_err());
        assert!(Side::parse("pgbench").is_ok_and(|s| s == Side::Pgbench));
        assert!(Side::parse("mysql").is_err());
    }
}
