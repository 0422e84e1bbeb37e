//! What every handler can reach.

use crate::auth::throttle::LoginThrottle;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::settings::Limits;
use crate::store::Store;
use shared::auth::JwtKeys;
use shared::bus::Bus;
use std::sync::Arc;

/// Shared by all workers (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub keys: JwtKeys,
    pub limits: Limits,
    pub publisher: Publisher,
    pub metrics: Metrics,
    /// Permits to store messages (see `startup::writers`): reads keep connections of their own.
    pub writers: Arc<tokio::sync::Semaphore>,
    pub login_throttle: Arc<LoginThrottle>,
    /// Registrations per client IP (`limits.registrations_per_ip`): the same sliding window.
    pub registrations: Arc<LoginThrottle>,
    /// Proxies whose forwarding headers name the client (`api.trusted_proxies`).
    pub trusted_proxies: Arc<shared::net::TrustedProxies>,
    /// Uploads: their storage, signed URLs, limits (`attachments.*`).
    pub attachments: crate::attachments::Attachments,
    /// `POST /api/messages` per user on this replica (`limits.sends_per_sec`, `sends_burst`).
    pub sends: Arc<shared::limits::RateLimiter<shared::ids::UserId>>,
    /// `POST /api/conversations` per user on this replica (`limits.conversations_per_minute`,
    /// `conversations_burst`).
    pub conversations: Arc<shared::limits::RateLimiter<shared::ids::UserId>>,
}
