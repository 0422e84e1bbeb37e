//! Publishing the API's events on the bus after each commit. Best effort: the database is the
//! record, a failed publish is logged and counted, and clients recover through sync.

use shared::bus::Bus;
use shared::events::{BusEvent, Envelope};
use shared::ids::UserId;
use std::sync::Arc;

#[derive(Clone)]
pub struct Publisher {
    bus: Arc<dyn Bus>,
    origin: String,
    failures: prometheus::IntCounter,
}

impl Publisher {
    pub fn new(bus: Arc<dyn Bus>, failures: prometheus::IntCounter) -> Self {
        Self {
            bus,
            origin: format!("api-{}", uuid::Uuid::new_v4()),
            failures,
        }
    }

    /// Publish `event` to the channel of every user in `to`.
    pub async fn publish(&self, to: &[UserId], event: BusEvent) {
        if to.is_empty() {
            return;
        }
        let envelope = Envelope {
            origin: self.origin.clone(),
            event,
        };
        let payload = match serde_json::to_string(&envelope) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "serializing a bus event");
                return;
            }
        };
        if let Err(e) = self.bus.publish(to, &payload).await {
            self.failures.inc();
            tracing::warn!(error = ?e, "publishing a bus event failed; clients will catch up through sync");
        }
    }
}
