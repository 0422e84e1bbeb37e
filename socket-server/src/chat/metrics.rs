//! The relay's metrics on a `prometheus` registry, rendered in the text format at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::store::Refused;

/// Buckets of the fan-out histograms, in seconds: 50 µs to 1 s.
const FANOUT_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// A monotonically increasing counter (a handle on a registered `IntCounter`).
#[derive(Clone)]
pub struct Counter(IntCounter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn add(&self, n: usize) {
        self.0.inc_by(n as u64);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// Raise the counter to `total`, a count kept elsewhere (never lowers it).
    pub fn catch_up(&self, total: u64) {
        let seen = self.0.get();
        if total > seen {
            self.0.inc_by(total - seen);
        }
    }
}

pub struct Metrics {
    registry: Registry,
    sessions: IntGauge,
    users: IntGauge,
    sockets: IntGauge,
    /// Chat events received from clients that ask to send a message.
    pub messages_in: Counter,
    /// Events emitted to local sockets by fan-out.
    pub messages_out: Counter,
    /// Sockets that passed authentication.
    pub connects: Counter,
    /// Connections refused at CONNECT.
    pub connects_refused: Counter,
    /// Failed bus commands (publish, presence).
    pub bus_errors: Counter,
    /// Failures of the Redis pub/sub connection (each followed by a reconnect).
    pub subscriber_errors: Counter,
    /// Emits refused because a socket's outbox was full (the connection is then closed).
    pub outbox_drops: Counter,
    /// `send_message` refused before it was relayed or stored, indexed by [`Refused`].
    sends_refused: [Counter; 4],
    /// Sends admitted and not answered yet (`limits.sends_in_flight` bounds them).
    pub sends_in_flight: IntGauge,
    /// From receiving `send_message` to the relayed copy queued on the last local socket.
    pub send_fanout: Histogram,
    /// From receiving a bus event to its emit queued on the last local socket.
    pub bus_fanout: Histogram,
    /// Bus events the background publisher sent / dropped (queue full or bus down), and
    /// whether the bus answered its last round trip.
    pub bus_published: Counter,
    pub bus_dropped: Counter,
    pub bus_up: IntGauge,
    /// Whether the API answered the relay's last call (1), did not (0), or is not known yet or
    /// in this process (-1).
    pub api_up: IntGauge,
    /// Other live relays in the roster (-1: unknown, the roster could not be read).
    pub peers: IntGauge,
    /// Conversations the membership view did not know when a client used them.
    pub membership_misses: Counter,
    /// Messages per store batch.
    pub store_batch_size: Histogram,
    /// Storing one batch through the port, retries included.
    pub store_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(gauge.clone()));
    gauge
}

fn counter(registry: &Registry, name: &str, help: &str) -> Counter {
    let counter =
        IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(counter.clone()));
    Counter(counter)
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(FANOUT_BUCKETS.to_vec());
    let histogram = Histogram::with_opts(opts).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(histogram.clone()));
    histogram
}

/// Metric options are only rejected for invalid names or buckets; ours are constants checked by
/// `every_metric_is_rendered_under_its_name`.
fn unreachable_metric<T>() -> T {
    panic!("invalid metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            sessions: gauge(&r, "relay_engine_sessions", "Open Engine.IO sessions."),
            users: gauge(
                &r,
                "relay_users",
                "Users with a socket on this relay (rooms).",
            ),
            sockets: gauge(&r, "relay_sockets", "Authenticated sockets."),
            messages_in: counter(
                &r,
                "relay_messages_in_total",
                "send_message events received.",
            ),
            messages_out: counter(
                &r,
                "relay_messages_out_total",
                "Events fanned out to sockets.",
            ),
            connects: counter(&r, "relay_connects_total", "Sockets authenticated."),
            connects_refused: counter(&r, "relay_connects_refused_total", "Connections refused."),
            bus_errors: counter(&r, "relay_bus_errors_total", "Failed bus commands."),
            subscriber_errors: counter(
                &r,
                "relay_redis_subscriber_errors_total",
                "Failures of the Redis pub/sub connection.",
            ),
            outbox_drops: counter(
                &r,
                "relay_outbox_drops_total",
                "Emits refused by a full outbox (the slow client is disconnected).",
            ),
            sends_refused: {
                let opts = Opts::new(
                    "relay_sends_refused_total",
                    "send_message refused before it was relayed or stored, by the limit that refused it.",
                );
                let vec = IntCounterVec::new(opts, &["reason"])
                    .unwrap_or_else(|_| unreachable_metric());
                let _ = r.register(Box::new(vec.clone()));
                Refused::ALL.map(|refused| Counter(vec.with_label_values(&[refused.reason()])))
            },
            sends_in_flight: gauge(
                &r,
                "relay_sends_in_flight",
                "Sends admitted and not answered yet (bounded by limits.sends_in_flight).",
            ),
            send_fanout: histogram(
                &r,
                "relay_send_fanout_seconds",
                "From send_message received to the relayed copy queued on the last local socket.",
            ),
            bus_fanout: histogram(
                &r,
                "relay_bus_fanout_seconds",
                "From a bus event received to its emit queued on the last local socket.",
            ),
            bus_published: counter(
                &r,
                "relay_bus_events_published_total",
                "Bus events the background publisher sent.",
            ),
            bus_dropped: counter(
                &r,
                "relay_bus_events_dropped_total",
                "Bus events dropped: publisher queue full or bus down (clients recover by sync).",
            ),
            bus_up: gauge(
                &r,
                "relay_bus_up",
                "1 while the bus answered the publisher's last round trip.",
            ),
            api_up: gauge(
                &r,
                "relay_api_up",
                "1 while the API answered the relay's last call, 0 when it did not (-1: not known yet, or in this process).",
            ),
            peers: gauge(
                &r,
                "relay_peers",
                "Other live relays on the bus (0: alone, nothing published for relays; -1: unknown).",
            ),
            membership_misses: counter(
                &r,
                "relay_membership_misses_total",
                "Conversations resolved through the API because the membership view lacked them.",
            ),
            store_batch_size: {
                let opts =
                    HistogramOpts::new("relay_store_batch_size", "Messages per store batch.")
                        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
                let histogram = Histogram::with_opts(opts).unwrap_or_else(|_| unreachable_metric());
                let _ = r.register(Box::new(histogram.clone()));
                histogram
            },
            store_latency: histogram(
                &r,
                "relay_store_batch_seconds",
                "Storing one batch through the API port, retries included.",
            ),
            registry: r,
        }
    }

    /// Count a `send_message` refused.
    pub fn refused(&self, refused: Refused) {
        self.sends_refused[refused as usize].inc();
    }

    /// The text exposition, with the gauges the caller knows (sessions, users, sockets), then
    /// the standard `process_*` metrics (CPU, memory, file descriptors, start time; Linux only).
    pub fn render(&self, sessions: usize, users: usize, sockets: usize) -> String {
        self.sessions.set(sessions as i64);
        self.users.set(users as i64);
        self.sockets.set(sockets as i64);
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "encoding metrics");
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        text.push_str(&shared::process_metrics::ProcessMetrics::read().render());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_under_its_name() {
        let metrics = Metrics::new();
        metrics.messages_out.add(3);
        metrics.send_fanout.observe(0.001);
        metrics.refused(Refused::RelayFull);
        let text = metrics.render(1, 2, 3);
        for (index, refused) in Refused::ALL.into_iter().enumerate() {
            assert_eq!(
                refused as usize, index,
                "{refused:?} indexes its own counter"
            );
        }
        for name in [
            "relay_engine_sessions 1",
            "relay_users 2",
            "relay_sockets 3",
            "relay_messages_in_total 0",
            "relay_messages_out_total 3",
            "relay_connects_total 0",
            "relay_connects_refused_total 0",
            "relay_bus_errors_total 0",
            "relay_redis_subscriber_errors_total 0",
            "relay_outbox_drops_total 0",
            "relay_sends_refused_total{reason=\"sends_per_sec\"} 0",
            "relay_sends_refused_total{reason=\"sends_queued_per_socket\"} 0",
            "relay_sends_refused_total{reason=\"sends_in_flight\"} 1",
            "relay_sends_refused_total{reason=\"shutting_down\"} 0",
            "relay_sends_in_flight 0",
            "relay_send_fanout_seconds_count 1",
            "relay_bus_fanout_seconds_count 0",
            "relay_membership_misses_total 0",
            "relay_bus_events_published_total 0",
            "relay_bus_events_dropped_total 0",
            "relay_bus_up 0",
            "relay_api_up 0",
            "relay_peers 0",
            "relay_store_batch_size_count 0",
            "relay_store_batch_seconds_count 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
