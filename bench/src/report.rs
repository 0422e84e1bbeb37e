//! `bench/results/`: the report of `bench all` — `README.md` (the environment, issue 12's targets
//! met or missed, a table per scenario with medians and ratios Parley / peer, the sizing) and
//! SVG plots (`svg`), from the runs summarised by `summary`.

mod env;
mod knee;
mod plots;
pub mod summary;
mod svg;
mod tables;

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use summary::Record;

/// What the report says about how it was made.
pub struct Made<'a> {
    pub mode: &'a str,
    pub reps: usize,
    pub minutes: f64,
    pub command: &'a str,
}

/// Write `README.md` and the plots into `out` (`raw.jsonl` is written as the runs end).
pub fn write(out: &Path, repo: &Path, records: &[Record], made: &Made) -> anyhow::Result<()> {
    let groups = summary::groups(records);
    let mut md = String::new();
    let _ = writeln!(md, "# Side-by-side benchmark (issue 12)\n");
    let _ = writeln!(
        md,
        "Written by `{}` ({} mode, {} repetition(s) interleaved, {:.1} min); every figure is the \
         median over the repetitions. Do not edit: run the command again. Every run's own JSON line \
         is in `raw.jsonl`.\n",
        made.command, made.mode, made.reps, made.minutes
    );
    md.push_str("## Environment\n\n| | |\n|---|---|\n");
    for (what, value) in env::describe(repo) {
        let _ = writeln!(md, "| {what} | {} |", value.replace('|', "/"));
    }
    md.push_str(
        "\nServers (Parley's API and relays, the peers, each side's own PostgreSQL and Redis) run \
         pinned to core 1, the load generator (the bench process, pgbench) on core 0. CPU figures are \
         CPU-seconds per 1 000 units of work (messages, deliveries) of the side's server processes \
         and their children (each process's kernel CPU clock, to the nanosecond; the process \
         tree and reaped children from `/proc`), over the load window; the generator's own CPU is \
         never counted.\n\n",
    );
    tables::targets(&mut md, &groups);
    for (scenario, columns) in tables::COLUMNS {
        tables::table(&mut md, &groups, scenario, columns);
    }
    knee::knee(&mut md, &groups);
    plots::plots(out, &mut md, &groups)?;
    md.push_str(SIZING);
    let failed: Vec<&Record> = records.iter().filter(|r| !r.ok).collect();
    if !failed.is_empty() {
        md.push_str("\n## Runs that failed\n\n");
        for r in failed {
            let error = r.error.as_deref().unwrap_or("").replace('\n', " ⏎ ");
            let _ = writeln!(
                md,
                "- `{} --side {}` ({}), repetition {}: {}",
                r.scenario,
                r.side,
                r.label(),
                r.rep + 1,
                error
            );
        }
    }
    let path = out.join("README.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))
}

const SIZING: &str = "\n## Sizing\n\n\
The full run (`bench all`, no flag) is sized to finish in about 17–23 minutes on 2 cores: three \
repetitions of one pass over every scenario and side (≈ 5.5–7.5 min a pass). A pass is ≈ 1 min of \
`idle` (ramps to 15 000 connections, one per side), ≈ 0.5 min of `echo` (5 s at 5 000 msg/s per \
side), ≈ 4–5 min of `chat` (6 s per offered rate and side plus the drain, the ladder of rates up \
to 16 000 msg/s, two relays at one rate) \
and ≈ 1.5–2 min of `persist` (1 500 batches of 10 or 200 batches of 100 per side and \
concurrency: 2–2.5 min a pass with 2 000 and 300 on a busy machine); each run also starts its \
own PostgreSQL and Redis (≈ 2–5 s). The report states the minutes the run took; when a pass \
outgrows its share, lower that scenario's sizes in `plan()` (`src/all.rs`). Shorter: `--quick` (one \
repetition, smaller loads: checks the pipeline, not for numbers), `--only <scenario>`; \
`--smoke` (what CI runs) runs everything once at toy sizes into a temporary directory.\n";

/// A figure with the digits it needs: 3 significant digits, integers above 100.
pub(crate) fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(
        scenario: &str,
        side: &str,
        params: &[(&str, &str)],
        result: serde_json::Value,
    ) -> Record {
        Record {
            scenario: scenario.into(),
            side: side.into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            rep: 0,
            ok: true,
            secs: 1.0,
            error: None,
            result: Some(result),
        }
    }

    const MADE: Made<'static> = Made {
        mode: "test",
        reps: 1,
        minutes: 0.1,
        command: "bench all",
    };

    #[test]
    fn the_report_says_which_targets_are_met_and_draws_the_plots() {
        let out = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&out).expect("temp dir");
        let p = [("batch", "10"), ("concurrency", "1")];
        let records = [
            run(
                "persist",
                "parley",
                &p,
                json!({"msgs_per_s": 6000, "cpu": {"api": 0.1, "postgres": 0.2}}),
            ),
            run(
                "persist",
                "pgbench",
                &p,
                json!({"msgs_per_s": 15000, "cpu": {"postgres": 0.1}}),
            ),
            run(
                "chat",
                "parley",
                &[("rate", "2000")],
                json!({"rate": 2000, "relays": 1, "p99_ms": 4.0, "p50_ms": 1.0}),
            ),
        ];
        write(&out, Path::new("."), &records, &MADE).expect("report");
        let md = std::fs::read_to_string(out.join("README.md")).expect("README");
        assert!(md.contains("| stored messages/s ≥ 5 000 with one API process | batch 10, concurrency 1 | 6000 | ≥ 5000 | **met** |"), "{md}");
        assert!(md.contains("| stored messages/s ≥ 50 % of pgbench (same statements, batch, concurrency) | batch 10, concurrency 1 | 6000 (×0.400) | pgbench 15000 (ratio ≥ 0.500) | missed |"), "{md}");
        assert!(
            md.contains(
                "recipient p99 ≤ 5 ms at 2 000 msg/s | rate 2000 | 4.00 | ≤ 5.00 | **met** |"
            ),
            "{md}"
        );
        assert!(md.contains("| RSS per idle authenticated connection ≤ 8 KiB | – | – | – | no data in this run |"), "{md}");
        for plot in ["chat_latency.svg", "idle_rss.svg", "cpu_persist.svg"] {
            assert!(out.join(plot).exists(), "{plot}");
        }
        let _ = std::fs::remove_dir_all(out);
    }

    #[test]
    fn the_idle_table_compares_memory_and_cpu_with_each_peer() {
        let out = std::env::temp_dir().join(format!("bench-report-idle-{}", std::process::id()));
        std::fs::create_dir_all(&out).expect("temp dir");
        let p = [("connections", "15000")];
        let records = [
            run(
                "idle",
                "parley",
                &p,
                json!({"connections": 15000, "rss_per_conn_kib": 6.5,
                       "idle_cpu_s_per_s": {"relay": 0.03, "redis": 0.006, "total": 0.04}}),
            ),
            run(
                "idle",
                "node",
                &p,
                json!({"connections": 15000, "rss_per_conn_kib": 15.0,
                       "idle_cpu_s_per_s": {"relay": 0.1, "total": 0.1}}),
            ),
        ];
        write(&out, Path::new("."), &records, &MADE).expect("report");
        let md = std::fs::read_to_string(out.join("README.md")).expect("README");
        assert!(
            md.contains("Parley / peer, `rss_per_conn_kib` (lower is better)"),
            "{md}"
        );
        assert!(
            md.contains("| connections 15000 | node | 6.50 | 15.0 | ×0.433 |"),
            "{md}"
        );
        assert!(
            md.contains("Parley / peer, `idle_cpu_s_per_s.total` (lower is better)"),
            "{md}"
        );
        assert!(
            md.contains("| connections 15000 | node | 0.040 | 0.100 | ×0.400 |"),
            "{md}"
        );
        let _ = std::fs::remove_dir_all(out);
    }
}
