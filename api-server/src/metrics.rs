//! Prometheus metrics of the API: requests and latency by route, pool usage, the bus publisher
//! (events published, dropped, whether the bus answers).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use shared::bus::publisher::PublisherCounters;
use std::sync::Arc;

/// The API's metrics, registered on their own registry (no globals: tests run many apps).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub pool: IntGaugeVec,
    pub messages_stored: IntCounter,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("parley_api".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )?;
        let messages_stored =
            IntCounter::new("messages_stored_total", "Messages stored (not retries)")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(messages_stored.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            pool,
            messages_stored,
        })
    }

    /// Export the bus publisher's counters (read at each scrape). Called once per publisher;
    /// a second call is logged and ignored (the names are taken).
    pub fn watch_bus(&self, counters: Arc<PublisherCounters>) {
        let registered = BusCollector::new(counters)
            .and_then(|collector| self.registry.register(Box::new(collector)));
        if let Err(e) = registered {
            tracing::error!(error = %e, "registering the bus publisher metrics");
        }
    }

    /// Record one finished request.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, pool: (usize, usize, usize)) -> String {
        let (in_use, idle, max) = pool;
        self.pool.with_label_values(&["in_use"]).set(in_use as i64);
        self.pool.with_label_values(&["idle"]).set(idle as i64);
        self.pool.with_label_values(&["max"]).set(max as i64);
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The bus publisher's atomics as Prometheus metrics, refreshed at each scrape: shared knows no
/// Prometheus, so the values are copied when gathered.
struct BusCollector {
    counters: Arc<PublisherCounters>,
    published: IntCounter,
    dropped: IntCounter,
    up: IntGauge,
}

impl BusCollector {
    fn new(counters: Arc<PublisherCounters>) -> prometheus::Result<Self> {
        Ok(Self {
            counters,
            published: IntCounter::new("bus_events_published_total", "Events the bus accepted")?,
            dropped: IntCounter::new(
                "bus_events_dropped_total",
                "Events dropped: the bus was down or too slow, or the queue was full",
            )?,
            up: IntGauge::new(
                "bus_up",
                "1 while the bus answers the publisher, 0 during an outage",
            )?,
        })
    }
}

/// Raise a counter to `value` (the atomics only grow).
fn catch_up(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

impl Collector for BusCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            &self.published.desc(),
            &self.dropped.desc(),
            &self.up.desc(),
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        catch_up(&self.published, self.counters.published());
        catch_up(&self.dropped, self.counters.dropped());
        self.up.set(i64::from(self.counters.bus_up()));
        [
            self.published.collect(),
            self.dropped.collect(),
            self.up.collect(),
        ]
        .concat()
    }
}
