//! The report's three plots: chat latency against offered rate, idle RSS against connections,
//! CPU per message per system (stacked by process).

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use super::summary::Group;
use super::svg;

/// The three plots, written next to the README and linked from it.
pub fn plots(out: &Path, md: &mut String, groups: &[Group]) -> anyhow::Result<()> {
    md.push_str("## Plots\n\n");
    let mut series = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for g in groups.iter().filter(|g| g.scenario == "chat") {
        let name = match g.get("relays") {
            Some(r) if r > 1.0 => format!("{} ×{r} relays", g.side),
            _ => g.side.clone(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in &names {
        for (percentile, dashed) in [("p99", false), ("p50", true)] {
            let mut points: Vec<(f64, f64)> = groups
                .iter()
                .filter(|g| g.scenario == "chat")
                .filter(|g| match g.get("relays") {
                    Some(r) if r > 1.0 => *name == format!("{} ×{r} relays", g.side),
                    _ => *name == g.side,
                })
                .filter_map(|g| Some((g.get("rate")?, g.get(&format!("{percentile}_ms"))?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(svg::Series {
                name: format!("{name} {percentile}"),
                points,
                dashed,
            });
        }
    }
    let chat = svg::lines(
        "chat: recipient latency against offered rate",
        "offered msg/s",
        "receive latency, ms (log)",
        &series,
        true,
    );
    let mut files = vec![(
        "chat_latency.svg",
        chat,
        "chat: receive latency p50 (dashed) and p99 against the offered rate",
    )];
    let rss: Vec<svg::Series> = groups
        .iter()
        .filter(|g| g.scenario == "idle")
        .filter_map(|g| {
            let curve = g.curves.get("rss_curve")?;
            Some(svg::Series {
                name: g.side.clone(),
                points: curve.iter().map(|&(c, kib)| (c, kib / 1024.0)).collect(),
                dashed: false,
            })
        })
        .collect();
    files.push((
        "idle_rss.svg",
        svg::lines(
            "idle: server RSS against connections",
            "authenticated connections",
            "RSS, MiB",
            &rss,
            false,
        ),
        "idle: the server's RSS against open authenticated connections",
    ));
    for scenario in ["echo", "chat", "persist"] {
        let bars: Vec<svg::Bar> = groups
            .iter()
            .filter(|g| g.scenario == scenario)
            .filter_map(|g| {
                let mut parts: Vec<(String, f64)> = g
                    .figures
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("cpu.")?, *v)))
                    .filter(|(k, _)| *k != "total" && !k.contains('.'))
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                if parts.is_empty() {
                    parts.push(("total".into(), g.get("cpu_s_per_1000")?));
                }
                Some(svg::Bar {
                    label: format!("{} {}", g.side, g.label()),
                    parts,
                })
            })
            .collect();
        let name = match scenario {
            "echo" => "cpu_echo.svg",
            "chat" => "cpu_chat.svg",
            _ => "cpu_persist.svg",
        };
        files.push((
            name,
            svg::stacked_bars(
                &format!("{scenario}: CPU-seconds per 1 000 messages, by process"),
                "CPU-s per 1 000",
                &bars,
            ),
            "CPU per message per system, stacked by process",
        ));
    }
    for (name, content, caption) in files {
        let path = out.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(md, "![{caption}]({name})\n");
    }
    Ok(())
}
