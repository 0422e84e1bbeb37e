//! What `chat` prints at the end: the latency table, the counts, the CPU per 1 000 messages
//! (per part of an external side, or per thread kind in process), and as the last line of
//! stdout one JSON object for the orchestrator (flat keys with units: `p50_ms`, `p99_ms`,
//! `ack_p99_ms`, `lost`, `cpu_s_per_1000`, `cpu` by part, `frames_per_msg`…; the full figures
//! nested).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use super::load;
use super::{ChatArgs, Side};
use crate::cpu;
use crate::stats::{four_significant, hdr_json, print_hdr_header, print_hdr_row, quantile_ms};

pub fn report(
    args: &ChatArgs,
    outcome: &load::Outcome,
    load_average: Option<f64>,
    arranged: Duration,
    total: Duration,
) {
    let record = &outcome.record;
    let count = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    let sent = count(&record.sent);
    let acked = count(&record.acked);
    let failed = count(&record.failed);
    let (expected, received, missing, of_failed) = record.deliveries();
    let failures = record
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let h = record.histograms();
    let last_ack = Duration::from_micros(count(&record.last_ack_us));
    let window = Duration::from_secs(args.secs as u64);
    let tail = last_ack.saturating_sub(window);
    let per_sec = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let stored_in_window = per_sec(count(&record.acked_in_window), window);
    let stored_overall = per_sec(acked, last_ack);

    println!();
    print_hdr_header();
    print_hdr_row("receive_message (scheduled send → read)", &h.receive);
    print_hdr_row(ack_label(args), &h.ack);
    print_hdr_row("generator lag (scheduled → emitted)", &h.lag);
    print_hdr_row(
        "  for reference: receive (emitted → read)",
        &h.receive_from_emit,
    );
    println!();
    println!(
        "sent {sent} of {} planned at {} msg/s (last emit {:.3} s after the first was due)",
        record.planned(),
        args.rate,
        outcome.generated.as_secs_f64()
    );
    println!(
        "deliveries: {received} of {expected} expected, {missing} lost, {} duplicate, {} misdirected, {} unknown; {} of them the stored copy; {of_failed} for sends that failed",
        count(&record.duplicates),
        count(&record.misdirected),
        count(&record.unknown),
        count(&record.stored_copies),
    );
    println!(
        "acks: {acked} {}, {failed} failed {failures:?}, {} closed, {} unacknowledged after waiting {:.1} s (limit {} s) past the last emit",
        if args.side.stores() { "stored" } else { "relayed" },
        outcome.closed,
        outcome.unanswered,
        outcome.drained.as_secs_f64(),
        args.drain
    );
    println!(
        "acked: {stored_in_window:.0} msg/s during the {} s window; {acked} in {:.3} s = {stored_overall:.0} msg/s to the last ack ({:.3} s after the window)",
        args.secs,
        last_ack.as_secs_f64(),
        tail.as_secs_f64()
    );
    let cpu = cpu_figures(outcome, sent);
    println!("{}", cpu.line);
    // The sides write different numbers of frames per message (Parley also sends each
    // device the stored id, `message_saved`): the relay's CPU per frame compares the same unit.
    let frames_per_msg = outcome.frames as f64 / sent.max(1) as f64;
    let relay_per_frame = outcome
        .parts
        .iter()
        .find(|(part, _)| *part == "relay")
        .filter(|_| outcome.frames > 0)
        .map(|(_, seconds)| 1000.0 * seconds / outcome.frames as f64);
    println!(
        "frames written to the devices: {} ({frames_per_msg:.2} per message){}",
        outcome.frames,
        relay_per_frame.map_or(String::new(), |s| format!(
            "; relay CPU-seconds per 1000 frames {s:.4}"
        )),
    );
    println!(
        "took {:.1} s end to end ({:.1} s starting and arranging, {:.1} s connecting); 1-min load average {} at the start, {} at the end",
        total.as_secs_f64(),
        arranged.as_secs_f64(),
        outcome.connect.as_secs_f64(),
        load_average.map_or("?".into(), |l| format!("{l:.2}")),
        cpu::load_average().map_or("?".into(), |l| format!("{l:.2}")),
    );
    let generated = outcome.generated.as_secs_f64().max(1e-9);
    let mut line = json!({
        "scenario": "chat",
        "side": args.side.name(),
        "users": args.users,
        "devices": args.devices,
        "relays": args.relays,
        "rate": args.rate,
        "secs": args.secs,
        "p50_ms": round(quantile_ms(&h.receive, 0.5)),
        "p90_ms": round(quantile_ms(&h.receive, 0.9)),
        "p99_ms": round(quantile_ms(&h.receive, 0.99)),
        "p999_ms": round(quantile_ms(&h.receive, 0.999)),
        "ack_p50_ms": round(quantile_ms(&h.ack, 0.5)),
        "ack_p99_ms": round(quantile_ms(&h.ack, 0.99)),
        "lag_p99_ms": round(quantile_ms(&h.lag, 0.99)),
        "msgs_per_s": round(sent as f64 / generated),
        "acked_msgs_per_s": round(stored_in_window),
        "lost": missing,
        "duplicate": count(&record.duplicates),
        "misdirected": count(&record.misdirected),
        "failed": failed,
        "unacked": outcome.unanswered,
        "cpu_s_per_1000": cpu.total_per_thousand.map(round),
        "cpu": cpu.per_thousand,
        "cpu_s": cpu.seconds,
        "frames_per_msg": round(frames_per_msg),
        "relay_cpu_s_per_1000_frames": relay_per_frame.map(four_significant),
    });
    let details = json!({
        "load_average_1m": load_average,
        "load_average_1m_end": cpu::load_average(),
        "planned": record.planned(),
        "sent": sent,
        "receive_ms": hdr_json(&h.receive),
        "ack_ms": hdr_json(&h.ack),
        "generator_lag_ms": hdr_json(&h.lag),
        "receive_from_emit_ms": hdr_json(&h.receive_from_emit),
        "deliveries": {
            "per_message": record.layout.fanout(),
            "expected": expected,
            "received": received,
            "lost": missing,
            "duplicate": count(&record.duplicates),
            "misdirected": count(&record.misdirected),
            "unknown": count(&record.unknown),
            "stored_copy": count(&record.stored_copies),
            "of_failed_sends": of_failed,
        },
        "acks": {
            "acked": acked,
            "failed": failed,
            "failed_by_code": failures,
            "closed": outcome.closed,
            "unacked": outcome.unanswered,
            "drain_s": round(outcome.drained.as_secs_f64()),
            "last_ack_s": round(last_ack.as_secs_f64()),
            "tail_after_window_s": round(tail.as_secs_f64()),
        },
        "acked_msg_per_s": {
            "window": round(stored_in_window),
            "to_last_ack": round(stored_overall),
        },
        "measured_s": round(outcome.measured.as_secs_f64()),
        "setup_s": round(arranged.as_secs_f64() + outcome.connect.as_secs_f64()),
        "total_s": round(total.as_secs_f64()),
    });
    if let (Value::Object(line), Value::Object(details)) = (&mut line, details) {
        line.extend(details);
    }
    println!();
    println!("{line}");
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ack_label(args: &ChatArgs) -> &'static str {
    match args.side {
        Side::Parley | Side::Inproc => "ack with stored id (scheduled send → read)",
        Side::Seeds => "API 201, relay acked (scheduled → read)",
        Side::Node | Side::Socketioxide => "relay ack (scheduled send → read)",
    }
}

/// The CPU figures of a run: a line to print, and for the JSON the CPU-seconds and the
/// CPU-seconds per 1 000 messages by part, with their `total` (the side's, without the
/// generator).
struct CpuFigures {
    line: String,
    seconds: Value,
    per_thousand: Value,
    total_per_thousand: Option<f64>,
}

fn cpu_figures(outcome: &load::Outcome, sent: u64) -> CpuFigures {
    let per_thousand = |seconds: f64| 1000.0 * seconds / sent.max(1) as f64;
    let Some(cpu) = outcome.cpu.as_ref() else {
        return CpuFigures {
            line: "CPU: no /proc here".into(),
            seconds: Value::Null,
            per_thousand: Value::Null,
            total_per_thousand: None,
        };
    };
    // In process: the stack is this process less the generator's threads, next to every
    // PostgreSQL and Redis process of the machine (or BENCH_POSTMASTER_PID's cluster).
    let parts: Vec<(&str, f64)> = if outcome.parts.is_empty() {
        vec![
            ("stack", cpu.process - cpu.named),
            ("postgres", cpu.postgres),
            ("redis", cpu.redis),
        ]
    } else {
        outcome.parts.clone()
    };
    let total: f64 = parts.iter().map(|(_, s)| s).sum();
    let generator = if outcome.parts.is_empty() {
        cpu.named
    } else {
        cpu.process
    };
    let others = (cpu.machine_busy - total - generator).max(0.0);
    let listed: Vec<String> = parts
        .iter()
        .map(|(part, s)| format!("{part} {s:.2} ({:.3})", per_thousand(*s)))
        .collect();
    let line = format!(
        "CPU-seconds over {:.1} s (per 1000 messages): {}; side total {total:.2} ({:.3}); generator {generator:.2} ({:.3}); other processes {others:.2}; machine {:.0}% busy{}",
        outcome.measured.as_secs_f64(),
        listed.join(", "),
        per_thousand(total),
        per_thousand(generator),
        cpu.machine_busy_pct,
        if outcome.parts.is_empty() {
            format!("; this process's threads per 1000: {}", cpu.threads_per_thousand(sent as usize))
        } else {
            String::new()
        },
    );
    let map = |f: &dyn Fn(f64) -> f64| {
        let mut object: serde_json::Map<String, Value> = parts
            .iter()
            .map(|(part, s)| (part.to_string(), json!(round(f(*s)))))
            .collect();
        object.insert("total".into(), json!(round(f(total))));
        object
    };
    let mut seconds = map(&|s| s);
    seconds.insert("generator".into(), json!(round(generator)));
    seconds.insert("other_processes".into(), json!(round(others)));
    seconds.insert(
        "machine_busy_pct".into(),
        json!(round(cpu.machine_busy_pct)),
    );
    CpuFigures {
        line,
        seconds: Value::Object(seconds),
        per_thousand: Value::Object(map(&per_thousand)),
        total_per_thousand: Some(per_thousand(total)),
    }
}
