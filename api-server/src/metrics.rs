//! Prometheus metrics of the API: requests and latency by route, pool usage, bus failures.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The API's metrics, registered on their own registry (no globals: tests run many apps).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub pool: IntGaugeVec,
    pub bus_publish_failures: IntCounter,
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
        let bus_publish_failures = IntCounter::new(
            "bus_publish_failures_total",
            "Events that could not be published on the bus",
        )?;
        let messages_stored =
            IntCounter::new("messages_stored_total", "Messages stored (not retries)")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(bus_publish_failures.clone()))?;
        registry.register(Box::new(messages_stored.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            pool,
            bus_publish_failures,
            messages_stored,
        })
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
