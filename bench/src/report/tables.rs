//! The report's tables: issue 12's targets met or missed, and one table per scenario (a row per
//! side and parameters) with the ratios Parley / peer of its headline figure.

use std::fmt::Write;

use super::num;
use super::summary::Group;

/// The figures shown per scenario, in order (those present in some run); `cpu.*` are added.
pub const COLUMNS: &[(&str, &[&str])] = &[
    (
        "idle",
        &[
            "connections",
            "rss_per_conn_kib",
            "rss_slope_kib",
            "connects_per_s",
            "idle_cpu_s_per_s.total",
            "client_rss_per_conn_kib",
        ],
    ),
    (
        "echo",
        &[
            "rate",
            "msgs_per_s",
            "lost",
            "cpu_s_per_1000",
            "p50_ms",
            "p99_ms",
        ],
    ),
    (
        "chat",
        &[
            "rate",
            "relays",
            "msgs_per_s",
            "p50_ms",
            "p99_ms",
            "ack_p99_ms",
            "lost",
            "failed",
            "cpu_s_per_1000",
            "frames_per_msg",
            "relay_cpu_s_per_1000_frames",
        ],
    ),
    (
        "persist",
        &[
            "batch",
            "concurrency",
            "msgs_per_s",
            "p50_ms",
            "p99_ms",
            "cpu_s_per_1000",
        ],
    ),
];

/// The figure compared Parley / peer in each scenario's ratio table, and whether more is better.
const HEADLINE: &[(&str, &str, bool)] = &[
    ("idle", "rss_per_conn_kib", false),
    ("idle", "idle_cpu_s_per_s.total", false),
    ("echo", "cpu_s_per_1000", false),
    ("chat", "cpu_s_per_1000", false),
    ("chat", "cpu.relay", false),
    ("chat", "relay_cpu_s_per_1000_frames", false),
    ("persist", "msgs_per_s", true),
];

/// Issue 12's targets: Parley's figure against a limit, or against a peer's (a ratio).
struct Target {
    text: &'static str,
    scenario: &'static str,
    key: &'static str,
    /// `None`: `limit` is the figure's own bound; `Some(peer)`: the bound of Parley / peer.
    peer: Option<&'static str>,
    at_most: bool,
    limit: f64,
    /// Only the runs with this figure at this value (e.g. one relay, 2 000 msg/s).
    only: &'static [(&'static str, f64)],
}

const TARGETS: &[Target] = &[
    Target {
        text: "RSS per idle authenticated connection ≤ 8 KiB",
        scenario: "idle",
        key: "rss_per_conn_kib",
        peer: None,
        at_most: true,
        limit: 8.0,
        only: &[],
    },
    Target {
        text: "stored messages/s ≥ 5 000 with one API process",
        scenario: "persist",
        key: "msgs_per_s",
        peer: None,
        at_most: false,
        limit: 5000.0,
        only: &[],
    },
    Target {
        text: "stored messages/s ≥ 50 % of pgbench (same statements, batch, concurrency)",
        scenario: "persist",
        key: "msgs_per_s",
        peer: Some("pgbench"),
        at_most: false,
        limit: 0.5,
        only: &[],
    },
    Target {
        text: "chat, one relay: whole-system CPU per message ≤ 0.5× the seeds' stack",
        scenario: "chat",
        key: "cpu_s_per_1000",
        peer: Some("seeds"),
        at_most: true,
        limit: 0.5,
        only: &[("relays", 1.0)],
    },
    Target {
        text: "chat, one relay: relay CPU per delivery ≤ 0.5× Node socket.io",
        scenario: "chat",
        key: "cpu.relay",
        peer: Some("node"),
        at_most: true,
        limit: 0.5,
        only: &[("relays", 1.0)],
    },
    Target {
        text: "chat, one relay: relay CPU per delivery ≤ socketioxide",
        scenario: "chat",
        key: "cpu.relay",
        peer: Some("socketioxide"),
        at_most: true,
        limit: 1.0,
        only: &[("relays", 1.0)],
    },
    Target {
        text: "chat, one relay: recipient p99 ≤ 5 ms at 2 000 msg/s",
        scenario: "chat",
        key: "p99_ms",
        peer: None,
        at_most: true,
        limit: 5.0,
        only: &[("relays", 1.0), ("rate", 2000.0)],
    },
    Target {
        text: "echo: CPU per message ≤ 0.8× socketioxide",
        scenario: "echo",
        key: "cpu_s_per_1000",
        peer: Some("socketioxide"),
        at_most: true,
        limit: 0.8,
        only: &[],
    },
    Target {
        text: "echo: CPU per message within 1.5× of the raw echo",
        scenario: "echo",
        key: "cpu_s_per_1000",
        peer: Some("raw"),
        at_most: true,
        limit: 1.5,
        only: &[],
    },
];

pub fn targets(md: &mut String, groups: &[Group]) {
    md.push_str("## Targets (issue 12)\n\n| target | where | Parley | compared with | met |\n|---|---|---:|---:|---|\n");
    for t in TARGETS {
        let parleys: Vec<&Group> = groups
            .iter()
            .filter(|g| g.scenario == t.scenario && g.side == "parley")
            .filter(|g| t.only.iter().all(|(k, v)| g.get(k) == Some(*v)))
            .collect();
        let mut rows = 0;
        for g in parleys {
            let Some(ours) = g.get(t.key) else { continue };
            let (figure, compared) = match t.peer {
                None => (
                    ours,
                    format!("{} {}", if t.at_most { "≤" } else { "≥" }, num(t.limit)),
                ),
                Some(peer) => {
                    let theirs = groups
                        .iter()
                        .find(|p| {
                            p.scenario == t.scenario && p.side == peer && p.params == g.params
                        })
                        .and_then(|p| p.get(t.key));
                    let Some(theirs) = theirs.filter(|v| *v != 0.0) else {
                        continue;
                    };
                    (
                        ours / theirs,
                        format!(
                            "{peer} {} (ratio {} {})",
                            num(theirs),
                            if t.at_most { "≤" } else { "≥" },
                            num(t.limit)
                        ),
                    )
                }
            };
            let met = if t.at_most {
                figure <= t.limit
            } else {
                figure >= t.limit
            };
            let shown = if t.peer.is_some() {
                format!("{} (×{})", num(ours), num(figure))
            } else {
                num(ours)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {shown} | {compared} | {} |",
                t.text,
                g.label(),
                if met { "**met**" } else { "missed" }
            );
            rows += 1;
        }
        if rows == 0 {
            let _ = writeln!(md, "| {} | – | – | – | no data in this run |", t.text);
        }
    }
    md.push('\n');
}

/// One scenario's table (a row per side and parameters) and its ratios Parley / peer.
pub fn table(md: &mut String, groups: &[Group], scenario: &str, preferred: &[&str]) {
    let ours: Vec<&Group> = groups.iter().filter(|g| g.scenario == scenario).collect();
    if ours.is_empty() {
        let _ = writeln!(md, "## `{scenario}`\n\nNot run.\n");
        return;
    }
    let mut keys: Vec<String> = preferred
        .iter()
        .filter(|k| ours.iter().any(|g| g.figures.contains_key(**k)))
        .map(|k| (*k).to_owned())
        .collect();
    let mut cpu: Vec<String> = ours
        .iter()
        .flat_map(|g| g.figures.keys())
        .filter(|k| k.starts_with("cpu.") && k.matches('.').count() == 1)
        .cloned()
        .collect();
    cpu.sort();
    cpu.dedup();
    keys.extend(cpu);
    let _ = writeln!(md, "## `{scenario}`\n");
    let _ = writeln!(md, "| side | parameters | runs | {} |", keys.join(" | "));
    let _ = writeln!(md, "|---|---|---:|{}", "---:|".repeat(keys.len()));
    for g in &ours {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| g.get(k).map_or("–".into(), num))
            .collect();
        let runs = if g.failures.is_empty() {
            g.runs.to_string()
        } else {
            format!("{} ({} failed)", g.runs, g.failures.len())
        };
        let _ = writeln!(
            md,
            "| {} | {} | {runs} | {} |",
            g.side,
            g.label(),
            cells.join(" | ")
        );
    }
    md.push('\n');
    for (s, key, more_is_better) in HEADLINE.iter().filter(|h| h.0 == scenario) {
        let _ = s;
        let mut rows = Vec::new();
        for g in ours.iter().filter(|g| g.side == "parley") {
            let Some(parley) = g.get(key) else { continue };
            for peer in ours
                .iter()
                .filter(|p| p.side != "parley" && p.params == g.params)
            {
                if let Some(theirs) = peer.get(key).filter(|v| *v != 0.0) {
                    rows.push(format!(
                        "| {} | {} | {} | {} | ×{} |",
                        g.label(),
                        peer.side,
                        num(parley),
                        num(theirs),
                        num(parley / theirs)
                    ));
                }
            }
        }
        if !rows.is_empty() {
            let better = if *more_is_better {
                "higher is better"
            } else {
                "lower is better"
            };
            let _ = writeln!(md, "Parley / peer, `{key}` ({better}):\n\n| parameters | peer | Parley | peer's | Parley / peer |\n|---|---|---:|---:|---:|");
            md.push_str(&rows.join("\n"));
            md.push_str("\n\n");
        }
    }
}
