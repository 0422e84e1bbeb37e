//! `bench all [--quick] [--smoke] [--only <scenario>] [--out <dir>]`: installs the peers, runs
//! every scenario on every side as child processes of this binary, **interleaved** (one pass over
//! every run, then the next pass: A B C A B C A B C), three passes, reads each run's last stdout
//! line (its JSON), and writes `bench/results/` (`report`): `raw.jsonl` (every run, written as it
//! ends), `README.md` and the SVG plots. `--smoke` (CI) runs everything once at toy sizes into a
//! temporary directory and fails when any run does not start or does not report.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::report::summary::Record;
use crate::report::{self, Made};

/// How a run is sized.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Quick,
    Smoke,
}

/// One run to make: a scenario, a side, its flags (besides `--side`).
struct Run {
    scenario: &'static str,
    side: &'static str,
    params: Vec<(String, String)>,
}

/// No run may take longer than this (the scenarios stop themselves at 300 s; this is for a
/// run that hangs): its whole process group is ended.
const RUN_LIMIT: Duration = Duration::from_secs(420);

/// The runs of one pass, in order: each configuration on every side, one side after the other.
fn plan(mode: Mode) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut add = |scenario, sides: &[&'static str], params: &[(&str, usize)]| {
        for side in sides {
            let params = params.iter().map(|(k, v)| ((*k).to_owned(), v.to_string()));
            runs.push(Run {
                scenario,
                side,
                params: params.collect(),
            });
        }
    };
    let (full, quick) = (mode == Mode::Full, mode == Mode::Quick);
    let pick = |full_size: usize, quick_size: usize, smoke_size: usize| match mode {
        Mode::Full => full_size,
        Mode::Quick => quick_size,
        Mode::Smoke => smoke_size,
    };
    let relays = ["parley", "node", "socketioxide"];
    let connections = pick(15_000, 3_000, 50);
    add(
        "idle",
        &relays,
        &[
            ("connections", connections),
            ("step", pick(2_500, 1_000, 50)),
            // One heartbeat interval: a 5 s hold saw none of the peers' pings (their idle CPU
            // read 0) but did see Parley's presence refresh (every 10 s).
            ("hold", pick(crate::idle::HOLD_SECS, 2, 1)),
        ],
    );
    add(
        "echo",
        &["parley", "node", "socketioxide", "raw"],
        &[
            ("connections", pick(100, 50, 10)),
            ("rate", pick(5_000, 2_000, 200)),
            ("secs", pick(5, 2, 1)),
            ("warmup", pick(1, 1, 0)),
        ],
    );
    // The ladder of offered rates, up past the knee of the sides that store nothing. The seeds'
    // stack is past its knee at 1 000 msg/s (acks seconds late): above 2 000 its runs would
    // only wait out their drain.
    let rates: &[usize] = if full {
        &[200, 1_000, 2_000, 4_000, 8_000, 16_000]
    } else if quick {
        &[200, 1_000, 4_000]
    } else {
        &[50]
    };
    for &rate in rates {
        let sides: &[&'static str] = if rate <= 2_000 {
            &["parley", "node", "socketioxide", "seeds"]
        } else {
            &relays
        };
        add(
            "chat",
            sides,
            &[
                ("users", pick(500, 100, 20)),
                ("devices", 2),
                ("rate", rate),
                ("secs", pick(6, 3, 1)),
                ("relays", 1),
                ("drain", pick(30, 15, 10)),
            ],
        );
    }
    add(
        "chat",
        &relays,
        &[
            ("users", pick(500, 100, 20)),
            ("devices", 2),
            ("rate", pick(1_000, 500, 50)),
            ("secs", pick(6, 3, 1)),
            ("relays", 2),
            ("drain", pick(30, 15, 10)),
        ],
    );
    let sizes: &[(usize, usize)] = match mode {
        Mode::Smoke => &[(10, 1)],
        _ => &[(10, 1), (10, 4), (100, 1), (100, 4)],
    };
    for &(batch, concurrency) in sizes {
        let batches = if batch == 10 {
            pick(1_500, 400, 5)
        } else {
            pick(200, 60, 2)
        };
        add(
            "persist",
            &["parley", "pgbench"],
            &[
                ("batch", batch),
                ("concurrency", concurrency),
                ("batches", batches.max(concurrency)),
            ],
        );
    }
    runs
}

struct Options {
    mode: Mode,
    only: Option<String>,
    out: Option<PathBuf>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        mode: Mode::Full,
        only: None,
        out: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.mode = Mode::Quick,
            "--smoke" => options.mode = Mode::Smoke,
            "--only" => options.only = Some(args.next().context("--only needs a scenario")?.clone()),
            "--out" => options.out = Some(args.next().context("--out needs a directory")?.into()),
            other => bail!("usage: bench all [--quick] [--smoke] [--only <scenario>] [--out <dir>]; not {other:?}"),
        }
    }
    Ok(options)
}

/// `bench all`: the whole report, or (`--smoke`) a check that every scenario runs.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let options = options(args)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate's directory has a parent")?
        .to_owned();
    let started = Instant::now();
    install(&repo)?;
    let mut runs = plan(options.mode);
    if let Some(only) = &options.only {
        runs.retain(|r| r.scenario == only);
        if runs.is_empty() {
            bail!("--only {only}: no such scenario in the plan");
        }
    }
    let reps = if options.mode == Mode::Full { 3 } else { 1 };
    let out = match (&options.out, options.mode) {
        (Some(out), _) => out.clone(),
        (None, Mode::Smoke) => {
            std::env::temp_dir().join(format!("parley-bench-smoke-{}", std::process::id()))
        }
        (None, _) => repo.join("bench/results"),
    };
    let logs = std::env::temp_dir().join(format!("parley-bench-all-{}", std::process::id()));
    for dir in [&out, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let raw_path = out.join("raw.jsonl");
    let mut raw = std::fs::File::create(&raw_path)
        .with_context(|| format!("creating {}", raw_path.display()))?;
    println!(
        "bench all: {} runs × {reps} pass(es) → {}; each run's output in {}",
        runs.len(),
        out.display(),
        logs.display()
    );
    let mut records = Vec::new();
    for rep in 0..reps {
        for (i, run) in runs.iter().enumerate() {
            let log = logs.join(format!("{rep}-{i:02}-{}-{}.log", run.scenario, run.side));
            let record = execute(run, rep, &log);
            println!(
                "[{:>5.0} s] pass {}/{reps} {:>2}/{} {} --side {} ({}): {}",
                started.elapsed().as_secs_f64(),
                rep + 1,
                i + 1,
                runs.len(),
                run.scenario,
                run.side,
                record.label(),
                if record.ok {
                    format!("ok in {:.1} s", record.secs)
                } else {
                    format!("FAILED: {}", record.error.as_deref().unwrap_or(""))
                }
            );
            writeln!(raw, "{}", serde_json::to_string(&record)?).context("writing raw.jsonl")?;
            records.push(record);
        }
    }
    let command = match options.mode {
        Mode::Full => "cargo run --release -p bench -- all",
        Mode::Quick => "cargo run --release -p bench -- all --quick",
        Mode::Smoke => "cargo run -p bench -- all --smoke",
    };
    let made = Made {
        mode: match options.mode {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        },
        reps,
        minutes: started.elapsed().as_secs_f64() / 60.0,
        command,
    };
    report::write(&out, &repo, &records, &made)?;
    println!(
        "bench all: report in {} ({:.1} min)",
        out.join("README.md").display(),
        made.minutes
    );
    let failed = records.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        bail!(
            "{failed} of {} runs failed (see {})",
            records.len(),
            out.join("README.md").display()
        );
    }
    Ok(())
}

/// The peers' install script (idempotent, quick when done already). The Rust peers are built
/// where this bench looks for them, next to its own target directory (whatever
/// `CARGO_TARGET_DIR` says in this shell), or not at all when `BENCH_PEERS_BIN` names them.
fn install(repo: &Path) -> anyhow::Result<()> {
    let mut install = Command::new(repo.join("bench/peers/install"));
    install.current_dir(repo);
    if std::env::var_os("BENCH_PEERS_BIN").is_some() {
        println!("bench all: bench/peers/install node (the Rust peers are in BENCH_PEERS_BIN)");
        install.arg("node");
    } else {
        println!("bench all: bench/peers/install");
        install.env("CARGO_TARGET_DIR", crate::peers::target_dir()?);
    }
    let status = install.status().context("running bench/peers/install")?;
    if !status.success() {
        bail!("bench/peers/install failed ({status}): the peers are needed; see its output above");
    }
    Ok(())
}

/// Run one scenario as a child of this binary (its own process group, so a run that hangs is
/// ended with every server it started); its record from the last line of its stdout.
fn execute(run: &Run, rep: usize, log: &Path) -> Record {
    let mut record = Record {
        scenario: run.scenario.to_owned(),
        side: run.side.to_owned(),
        params: run.params.clone(),
        rep,
        ok: false,
        secs: 0.0,
        error: None,
        result: None,
    };
    let started = Instant::now();
    let outcome = child_output(run, log);
    record.secs = started.elapsed().as_secs_f64();
    match outcome.and_then(|lines| last_json(&lines, log)) {
        Ok(result) => {
            record.ok = true;
            record.result = Some(result);
        }
        Err(e) => record.error = Some(format!("{e:#}")),
    }
    record
}

/// The stdout lines of a run that succeeded (stdout goes to `log` too, stderr next to it); an
/// error with the end of its stderr when it failed.
fn child_output(run: &Run, log: &Path) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the bench binary")?;
    let mut command = Command::new(exe);
    command.arg(run.scenario).args(["--side", run.side]);
    for (k, v) in &run.params {
        command.arg(format!("--{k}")).arg(v);
    }
    let err = std::fs::File::create(log.with_extension("stderr"))
        .with_context(|| format!("creating {}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .process_group(0)
        .spawn()
        .context("starting the scenario")?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let mut copy =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(copy, "{line}");
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // The group's id is the child's pid (`process_group(0)`): it and what it started.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            bail!("still running after {RUN_LIMIT:?}: ended");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the output reader panicked"))?;
    if !status.success() {
        let stderr = std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{status}: {}", tail.join(" ⏎ "));
    }
    Ok(lines)
}

/// The JSON object on the last non-empty line.
fn last_json(lines: &[String], log: &Path) -> anyhow::Result<serde_json::Value> {
    let last = lines.iter().rev().find(|l| !l.trim().is_empty());
    let value: serde_json::Value = last
        .and_then(|l| serde_json::from_str(l).ok())
        .filter(serde_json::Value::is_object)
        .with_context(|| {
            format!(
                "ended without a JSON object as its last line (see {})",
                log.display()
            )
        })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_runs_each_side_of_a_configuration_next_to_the_other() {
        let runs = plan(Mode::Full);
        let persist: Vec<&Run> = runs.iter().filter(|r| r.scenario == "persist").collect();
        assert_eq!((persist[0].side, persist[1].side), ("parley", "pgbench"));
        assert_eq!(persist[0].params, persist[1].params);
        let top = |side: &str| {
            runs.iter()
                .filter(|r| r.scenario == "chat" && r.side == side)
                .filter_map(|r| r.params.iter().find(|(k, _)| k == "rate"))
                .filter_map(|(_, v)| v.parse::<usize>().ok())
                .max()
        };
        assert_eq!(top("socketioxide"), Some(16_000));
        assert_eq!(top("seeds"), Some(2_000));
        for scenario in ["idle", "echo", "chat", "persist"] {
            assert!(
                plan(Mode::Smoke).iter().any(|r| r.scenario == scenario),
                "{scenario}"
            );
        }
    }

    #[test]
    fn the_last_line_must_be_a_json_object() {
        let log = Path::new("x.log");
        let lines = vec![
            "table".to_owned(),
            r#"{"scenario":"persist","msgs_per_s":5}"#.to_owned(),
            String::new(),
        ];
        assert_eq!(last_json(&lines, log).expect("json")["msgs_per_s"], 5);
        let error = last_json(&["no json".to_owned()], log).expect_err("no json");
        assert!(
            error.to_string().contains("without a JSON object"),
            "{error}"
        );
    }

    #[test]
    fn flags_are_checked() {
        assert!(options(&["--smoke".into()]).is_ok_and(|o| o.mode == Mode::Smoke));
        assert!(options(&["--fast".into()]).is_err());
        assert!(options(&["--only".into()]).is_err());
    }
}
