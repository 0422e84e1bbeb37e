//! The machine and the versions a run was made with, for the report's first table.

use std::path::Path;
use std::process::Command;

/// `(what, value)` rows: CPU, cores, kernel, the commit, and the versions of everything that ran.
pub fn describe(repo: &Path) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|kib| kib.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_owned(), |k| k.trim().to_owned());
    let head = first_line(
        "git",
        &["-C", &repo.display().to_string(), "rev-parse", "HEAD"],
    );
    // The report's own directory does not count: by the time this is read, the runs have
    // written their results there.
    let dirty = Command::new("git")
        .args(["-C", &repo.display().to_string(), "status", "--porcelain"])
        .args(["--", ".", ":(exclude)bench/results"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let pg_bin = ["15", "16", "17"]
        .iter()
        .map(|v| format!("/usr/lib/postgresql/{v}/bin/postgres"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| "postgres".into());
    let rust_lock = repo.join("bench/peers/rust/Cargo.lock");
    let node_lock = repo.join("bench/peers/node/package-lock.json");
    vec![
        ("CPU".into(), format!("{model} ({cores} cores available)")),
        ("memory".into(), memory),
        ("kernel".into(), kernel),
        (
            "commit".into(),
            format!(
                "{head}{}",
                if dirty { " + uncommitted changes" } else { "" }
            ),
        ),
        ("rustc".into(), first_line("rustc", &["-V"])),
        ("Node.js".into(), first_line("node", &["--version"])),
        ("PostgreSQL".into(), first_line(&pg_bin, &["--version"])),
        ("pgbench".into(), first_line("pgbench", &["--version"])),
        ("Redis".into(), first_line("redis-server", &["--version"])),
        (
            "socket.io (Node peer)".into(),
            npm_version(&node_lock, "socket.io"),
        ),
        (
            "@socket.io/redis-adapter".into(),
            npm_version(&node_lock, "@socket.io/redis-adapter"),
        ),
        ("bufferutil".into(), npm_version(&node_lock, "bufferutil")),
        (
            "socketioxide (Rust peer)".into(),
            cargo_version(&rust_lock, "socketioxide"),
        ),
        (
            "tokio-tungstenite (raw echo)".into(),
            cargo_version(&rust_lock, "tokio-tungstenite"),
        ),
    ]
}

/// The first line a command prints (stdout, else stderr), or why there is none.
fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(_) => format!("{program}: not found"),
    }
}

/// A package's version in an npm lockfile (`"node_modules/<name>": {"version": …}`).
fn npm_version(lock: &Path, name: &str) -> String {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return format!("no {}", lock.display());
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v["packages"][format!("node_modules/{name}")]["version"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not in the lockfile".into())
}

/// A crate's version in a Cargo.lock (`name = "<name>"` then `version = "…"`).
fn cargo_version(lock: &Path, name: &str) -> String {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return format!("no {}", lock.display());
    };
    let wanted = format!("name = \"{name}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return version.trim_matches('"').to_owned();
            }
        }
    }
    "not in the lockfile".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_lockfiles() {
        let dir = std::env::temp_dir().join(format!("bench-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cargo = dir.join("Cargo.lock");
        std::fs::write(
            &cargo,
            "[[package]]\nname = \"socketioxide\"\nversion = \"0.18.9\"\n",
        )
        .expect("write");
        let npm = dir.join("package-lock.json");
        std::fs::write(
            &npm,
            r#"{"packages":{"node_modules/socket.io":{"version":"4.8.1"}}}"#,
        )
        .expect("write");
        assert_eq!(cargo_version(&cargo, "socketioxide"), "0.18.9");
        assert_eq!(npm_version(&npm, "socket.io"), "4.8.1");
        assert_eq!(npm_version(&npm, "bufferutil"), "not in the lockfile");
        let _ = std::fs::remove_dir_all(dir);
    }
}
