//! `persist --side pgbench`: the storage floor. The run's PostgreSQL with Parley's schema and the
//! same users and conversations as `--side parley`, the API stopped once it has migrated and
//! seeded, then `pgbench -M prepared` (on this process's core, the generator's) running
//! `script.rs`'s group commit with the same batch size, batch count and concurrency. Latency per
//! batch from pgbench's transaction log, the window from its own `tps` (connections excluded),
//! CPU of the PostgreSQL cluster (postmaster and backends) over pgbench's run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{script, seed, stored, Outcome, PersistArgs};
use crate::procs::{self, ParleyStack};

/// pgbench ends by itself after this (`timeout`), below the scenario's own limit.
const PGBENCH_LIMIT: Duration = Duration::from_secs(240);

pub async fn run(args: &PersistArgs) -> anyhow::Result<Outcome> {
    let stack = ParleyStack::start(0).await?;
    let senders = seed(&stack, args.users).await?;
    // Only PostgreSQL works from here: the API is stopped (its process ended by drop).
    let ParleyStack { api, postgres, .. } = stack;
    drop(api);
    let dir = procs::run_dir().join("pgbench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let array = |values: Vec<String>| format!("{{{}}}", values.join(","));
    let variables = [
        format!("batch={}", args.batch),
        format!(
            "users={}",
            array(senders.iter().map(|s| s.user.to_string()).collect())
        ),
        format!(
            "jtis={}",
            array(senders.iter().map(|s| s.jti.clone()).collect())
        ),
        format!(
            "convs={}",
            array(senders.iter().map(|s| s.conversation.to_string()).collect())
        ),
        "n=0".to_owned(),
    ];
    let run = |name: &'static str, script: String, log: bool| {
        pgbench(&postgres, &dir, name, script, &variables, args, log)
    };
    let (figures, cpu) = run("group_commit", script::generate(), true).await?;
    let latencies = latencies(&dir)?;
    let stored = stored(&postgres).await?;
    // The helper again, alone, as many times: its share of PostgreSQL's CPU.
    let (_, helper) = run("draw_only", script::draw_only(), false).await?;
    println!(
        "pgbench: PostgreSQL {cpu:.3} CPU-s in all, of which the helper drawing the batches {helper:.3} (measured alone, subtracted)"
    );
    Ok(Outcome {
        elapsed: Duration::from_secs_f64(figures.processed as f64 / figures.tps),
        latencies,
        stored,
        cpu: vec![("postgres", (cpu - helper).max(0.0))],
    })
}

/// Run one pgbench script (`args`' concurrency and batches) on this process's core; its
/// summary and PostgreSQL's CPU-seconds meanwhile.
async fn pgbench(
    postgres: &procs::Postgres,
    dir: &Path,
    name: &str,
    script: String,
    variables: &[String],
    args: &PersistArgs,
    log: bool,
) -> anyhow::Result<(Figures, f64)> {
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    let mut command = Command::new("timeout");
    command
        .arg(PGBENCH_LIMIT.as_secs().to_string())
        .arg("pgbench")
        .args(["-n", "-M", "prepared", "-j", "1"])
        .arg("-c")
        .arg(args.concurrency.to_string())
        .arg("-t")
        .arg(args.per_sender().to_string())
        .arg("-f")
        .arg(&path)
        .current_dir(dir);
    if log {
        command.arg("-l").arg("--log-prefix").arg(dir.join("log"));
    }
    for variable in variables {
        command.arg("-D").arg(variable);
    }
    command.arg(postgres.url("parley"));
    let before = procs::cpu_seconds(&[postgres.pid()]);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .context("waiting for pgbench")?
        .context("running pgbench (apt-get install postgresql-client)")?;
    let cpu = procs::cpu_seconds(&[postgres.pid()]) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench {name} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            text.trim()
        );
    }
    let figures = Figures::parse(&text)?;
    if figures.failed > 0 || figures.processed != args.per_sender() * args.concurrency {
        bail!(
            "pgbench {name}: {figures:?}, not {} batches:\n{text}",
            args.per_sender() * args.concurrency
        );
    }
    Ok((figures, cpu))
}

/// What pgbench's summary says.
#[derive(Debug, PartialEq)]
struct Figures {
    processed: usize,
    failed: usize,
    tps: f64,
}

impl Figures {
    fn parse(text: &str) -> anyhow::Result<Figures> {
        let after = |prefix: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .with_context(|| format!("no `{prefix}` in pgbench's output:\n{text}"))
        };
        let processed = after("number of transactions actually processed:")?;
        let processed = processed.split('/').next().unwrap_or(processed).parse()?;
        let failed = after("number of failed transactions:")
            .map_or(Ok(0), str::parse)
            .context("pgbench's failed transactions")?;
        let tps = after("tps =")?.parse().context("pgbench's tps")?;
        Ok(Figures {
            processed,
            failed,
            tps,
        })
    }
}

/// Every transaction's latency from pgbench's `-l` logs (`client transaction µs script epoch
/// epoch_µs` per line).
fn latencies(dir: &Path) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("log."));
        if !is_log {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines() {
            let micros: u64 = line
                .split_whitespace()
                .nth(2)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("a line of {}: {line:?}", path.display()))?;
            all.push(Duration::from_micros(micros));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_summary_is_read() {
        let text = "number of clients: 4\nnumber of transactions actually processed: 800/800\n\
                    number of failed transactions: 0 (0.000%)\nlatency average = 26.799 ms\n\
                    tps = 149.258549 (without initial connection time)\n";
        assert_eq!(
            Figures::parse(text).expect("parse"),
            Figures {
                processed: 800,
                failed: 0,
                tps: 149.258549
            }
        );
        assert!(Figures::parse("pgbench: error").is_err());
    }

    #[test]
    fn transaction_latencies_are_read_from_the_logs() {
        let dir = std::env::temp_dir().join(format!("bench-pgbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("log.123"),
            "0 0 2500 0 1764680000 123\n1 0 900 0 1764680000 456\n",
        )
        .expect("write");
        std::fs::write(dir.join("group_commit.sql"), "BEGIN;").expect("write");
        let mut found = latencies(&dir).expect("logs");
        found.sort();
        assert_eq!(
            found,
            vec![Duration::from_micros(900), Duration::from_micros(2500)]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
