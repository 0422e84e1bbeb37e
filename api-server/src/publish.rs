//! Publishing the API's events on the bus after each commit, without ever waiting on it: a thin
//! wrapper over [`shared::bus::publisher::BusPublisher`], which queues the event and sends it
//! from its own task. Best effort: the database is the record; events the bus cannot take are
//! dropped and counted (`bus_events_dropped_total`), and clients recover through sync.

use crate::metrics::Metrics;
use shared::bus::publisher::BusPublisher;
use shared::bus::Bus;
use shared::events::BusEvent;
use shared::ids::UserId;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Events that may wait for the bus before further ones are dropped.
const QUEUE_CAPACITY: usize = 16_384;

#[derive(Clone)]
pub struct Publisher {
    inner: BusPublisher,
    /// The publisher's task until its owner takes it ([`Publisher::take_task`]). Left here, it
    /// ends by itself when the last `Publisher` clone is dropped (after sending what is queued).
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Publisher {
    /// Start the background publisher on `bus` (on the current Tokio runtime) and expose its
    /// counters through `metrics`.
    pub fn new(bus: Arc<dyn Bus>, metrics: &Metrics) -> Self {
        let origin = format!("api-{}", uuid::Uuid::new_v4());
        let (inner, task) = BusPublisher::start(bus, origin, QUEUE_CAPACITY);
        metrics.watch_bus(inner.counters());
        Self {
            inner,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Publish `event` to the channel of every user in `to`. Returns at once: the event is
    /// queued (or dropped and counted when the queue is full).
    pub fn publish(&self, to: &[UserId], event: BusEvent) {
        self.inner.publish(to, event);
    }

    /// The publisher's task, for the application to own (await it after the last handle is
    /// gone, or abort it). `None` once taken.
    pub fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
