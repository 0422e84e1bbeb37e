//! The relay's counters, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Chat events received from clients that ask to send a message.
    pub messages_in: Counter,
    /// Events emitted to local sockets by fan-out.
    pub messages_out: Counter,
    /// Sockets that passed authentication.
    pub connects: Counter,
    /// Connections refused at CONNECT.
    pub connects_refused: Counter,
    /// Failed publishes on the bus.
    pub bus_errors: Counter,
}

impl Metrics {
    /// The text exposition, with the gauges the caller knows (sessions, users, sockets).
    pub fn render(&self, sessions: usize, users: usize, sockets: usize) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "relay_engine_sessions",
            "gauge",
            "Open Engine.IO sessions.",
            sessions as u64,
        );
        line(
            "relay_users",
            "gauge",
            "Users with a socket on this relay (rooms).",
            users as u64,
        );
        line(
            "relay_sockets",
            "gauge",
            "Authenticated sockets.",
            sockets as u64,
        );
        line(
            "relay_messages_in_total",
            "counter",
            "send_message events received.",
            self.messages_in.get(),
        );
        line(
            "relay_messages_out_total",
            "counter",
            "Events fanned out to sockets.",
            self.messages_out.get(),
        );
        line(
            "relay_connects_total",
            "counter",
            "Sockets authenticated.",
            self.connects.get(),
        );
        line(
            "relay_connects_refused_total",
            "counter",
            "Connections refused.",
            self.connects_refused.get(),
        );
        line(
            "relay_bus_errors_total",
            "counter",
            "Failed bus publishes.",
            self.bus_errors.get(),
        );
        out
    }
}
