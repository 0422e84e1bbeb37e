//! Publishing without waiting on the bus: [`BusPublisher::publish`] serialises the event once and
//! puts it on a bounded queue; one background task sends what is queued in one pipelined round
//! trip ([`Bus::publish_many`]), each bounded by a timeout.
//!
//! When a round trip fails the bus counts as down: the task logs one warning, drops everything
//! queued meanwhile (counted) without trying to send it, and probes the bus with `ping` at a
//! short interval; when a probe answers it logs one line with the outage's duration and the
//! events dropped, and sends again. Publishing is best effort by design: the database is the
//! record and clients recover what they missed through sync.
//!
//! The task is owned: [`BusPublisher::start`] returns it with the handle. It ends when the last
//! handle is dropped, after sending what was queued (bounded by [`PublisherConfig::flush_timeout`]),
//! or when its `JoinHandle` is aborted. It holds no handle itself, so nothing keeps it alive.

use super::Bus;
use crate::events::{BusEvent, Envelope};
use crate::ids::UserId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One queued event: its recipients and its serialised envelope.
type Item = (Vec<UserId>, String);

/// How the background task behaves; [`PublisherConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Events that may wait for the task; beyond that they are dropped (counted).
    pub capacity: usize,
    /// Most events sent in one round trip.
    pub batch_max: usize,
    /// Longest wait for one round trip (publish or probe) before the bus counts as down.
    pub timeout: Duration,
    /// While the bus is down, how often it is probed.
    pub probe_interval: Duration,
    /// While the bus is up but nothing is published, how often it is probed (so that the
    /// `up` counter tells the truth on an idle instance too).
    pub idle_probe_interval: Duration,
    /// Once every handle is gone, how long the task may still spend sending what was queued.
    pub flush_timeout: Duration,
}

impl PublisherConfig {
    /// Defaults: 1 s round trips, probes every 250 ms while down and every 5 s while idle,
    /// 512 events per round trip, 2 s to flush at the end.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            batch_max: 512,
            timeout: Duration::from_secs(1),
            probe_interval: Duration::from_millis(250),
            idle_probe_interval: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(2),
        }
    }
}

/// What the publisher did so far, readable at any time (for metrics).
#[derive(Debug)]
pub struct PublisherCounters {
    published: AtomicU64,
    dropped: AtomicU64,
    up: AtomicBool,
}

impl PublisherCounters {
    fn new() -> Self {
        Self {
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }
    }

    /// Events the bus accepted.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events dropped: the queue was full, the bus was down, or a round trip failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the last round trip (publish or probe) succeeded.
    pub fn bus_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn add_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Handle on the background publisher; cheap to clone. See the module docs.
#[derive(Clone)]
pub struct BusPublisher {
    queue: mpsc::Sender<Item>,
    origin: Arc<str>,
    counters: Arc<PublisherCounters>,
}

impl BusPublisher {
    /// Start a publisher on `bus` whose envelopes name `origin`, with a queue of `capacity`
    /// events and the other defaults of [`PublisherConfig::new`]. Spawns its task on the current
    /// Tokio runtime and returns it: the caller owns it.
    pub fn start(
        bus: Arc<dyn Bus>,
        origin: impl Into<String>,
        capacity: usize,
    ) -> (BusPublisher, JoinHandle<()>) {
        Self::start_with(bus, origin, PublisherConfig::new(capacity))
    }

    /// [`BusPublisher::start`] with every setting chosen.
    pub fn start_with(
        bus: Arc<dyn Bus>,
        origin: impl Into<String>,
        config: PublisherConfig,
    ) -> (BusPublisher, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(config.capacity.max(1));
        let counters = Arc::new(PublisherCounters::new());
        let task = tokio::spawn(run(bus, rx, config, counters.clone()));
        let handle = BusPublisher {
            queue,
            origin: origin.into().into(),
            counters,
        };
        (handle, task)
    }

    /// Queue `event` for the channel of every user in `to`; never waits. Dropped (and counted)
    /// when the queue is full or the task has stopped.
    pub fn publish(&self, to: &[UserId], event: BusEvent) {
        if to.is_empty() {
            return;
        }
        let envelope = Envelope {
            origin: self.origin.to_string(),
            event,
        };
        match serde_json::to_string(&envelope) {
            Ok(payload) => self.publish_payload(to, payload),
            Err(error) => {
                tracing::error!(%error, "serialising a bus event");
                self.counters.add_dropped(1);
            }
        }
    }

    /// Queue an already serialised payload (an [`Envelope`] in JSON); never waits.
    pub fn publish_payload(&self, to: &[UserId], payload: String) {
        if to.is_empty() {
            return;
        }
        if self.queue.try_send((to.to_vec(), payload)).is_err() {
            self.counters.add_dropped(1);
        }
    }

    /// The `origin` written in every envelope.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The counters, shared with the task (hold them to read metrics).
    pub fn counters(&self) -> Arc<PublisherCounters> {
        self.counters.clone()
    }
}

/// The state of the bus as the task sees it.
enum State {
    Up,
    /// Down since then, with this many events dropped during the outage so far; the next
    /// probe is due at `probe_at` (a deadline, so that a stream of events cannot put it off).
    Down {
        since: Instant,
        dropped: u64,
        probe_at: Instant,
    },
}

async fn run(
    bus: Arc<dyn Bus>,
    mut rx: mpsc::Receiver<Item>,
    config: PublisherConfig,
    counters: Arc<PublisherCounters>,
) {
    let mut state = State::Up;
    let mut batch: Vec<Item> = Vec::with_capacity(config.batch_max);
    loop {
        match &mut state {
            State::Up => {
                let first = tokio::select! {
                    item = rx.recv() => item,
                    () = tokio::time::sleep(config.idle_probe_interval) => {
                        if let Err(reason) = probe(bus.as_ref(), config.timeout).await {
                            state = outage_begins(&counters, 0, &reason, &config);
                        }
                        continue;
                    }
                };
                let Some(first) = first else { return };
                batch.push(first);
                while batch.len() < config.batch_max {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                let sent = tokio::time::timeout(config.timeout, bus.publish_many(&batch)).await;
                batch.clear();
                match sent {
                    Ok(Ok(())) => {
                        counters.published.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Ok(Err(error)) => {
                        counters.add_dropped(n);
                        state = outage_begins(&counters, n as u64, &error.to_string(), &config);
                    }
                    Err(_) => {
                        counters.add_dropped(n);
                        state = outage_begins(&counters, n as u64, "publishing timed out", &config);
                    }
                }
            }
            State::Down {
                since,
                dropped,
                probe_at,
            } => {
                tokio::select! {
                    item = rx.recv() => match item {
                        Some(_) => {
                            counters.add_dropped(1);
                            *dropped += 1;
                        }
                        None => {
                            tracing::info!(dropped = *dropped, "bus publisher stopped while the bus was down");
                            return;
                        }
                    },
                    () = tokio::time::sleep_until(*probe_at) => {
                        *probe_at = Instant::now() + config.probe_interval;
                        if probe(bus.as_ref(), config.timeout).await.is_ok() {
                            counters.up.store(true, Ordering::Relaxed);
                            tracing::info!(
                                outage_ms = since.elapsed().as_millis() as u64,
                                dropped = *dropped,
                                "the bus answers again; publishing resumed"
                            );
                            state = State::Up;
                        }
                    }
                }
            }
        }
        // Every handle gone: what is still queued gets `flush_timeout` to go out.
        if rx.is_closed() {
            flush(bus.as_ref(), &mut rx, &config, &counters, &state).await;
            return;
        }
    }
}

/// Send what is still queued once every handle is gone, within `flush_timeout`; drop the rest.
async fn flush(
    bus: &dyn Bus,
    rx: &mut mpsc::Receiver<Item>,
    config: &PublisherConfig,
    counters: &PublisherCounters,
    state: &State,
) {
    let deadline = Instant::now() + config.flush_timeout;
    let mut batch = Vec::new();
    loop {
        while batch.len() < config.batch_max {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let sent = matches!(state, State::Up)
            && matches!(
                tokio::time::timeout_at(deadline, bus.publish_many(&batch)).await,
                Ok(Ok(()))
            );
        batch.clear();
        if sent {
            counters.published.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            // Down or out of time: count everything left as dropped.
            let mut left = n;
            while rx.try_recv().is_ok() {
                left += 1;
            }
            counters.add_dropped(left);
            tracing::warn!(
                dropped = left,
                "bus publisher stopped before the queue was sent"
            );
            return;
        }
    }
}

/// Whether the bus answers a ping within `timeout`; why not, if it does not.
async fn probe(bus: &dyn Bus, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, bus.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("ping timed out".to_owned()),
    }
}

/// Mark the bus down and say so, once per outage.
fn outage_begins(
    counters: &PublisherCounters,
    dropped: u64,
    reason: &str,
    config: &PublisherConfig,
) -> State {
    counters.up.store(false, Ordering::Relaxed);
    tracing::warn!(
        %reason,
        "the bus does not answer: events are dropped until it does (clients catch up through sync)"
    );
    let now = Instant::now();
    State::Down {
        since: now,
        dropped,
        probe_at: now + config.probe_interval,
    }
}

#[cfg(test)]
#[path = "publisher_tests.rs"]
mod tests;
