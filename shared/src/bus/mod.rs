//! The bus between processes: publish to channels, and the few shared keys (presence, revoked
//! tokens) the services read. Two implementations run the same tests: [`redis::RedisBus`] for the
//! split deployment and [`memory::MemoryBus`] for the all-in-one process.

pub mod memory;
pub mod redis;
pub mod subscriber;

use crate::ids::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A bus failure. Publishing is best-effort for the API (the database is the record and clients
/// recover through sync), so callers log and count these rather than fail the request.
#[derive(Debug, thiserror::Error)]
#[error("bus: {0}")]
pub struct BusError(#[from] pub anyhow::Error);

/// A user's presence as the relays last wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceState {
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A message published to one user's devices.
#[derive(Debug, Clone)]
pub struct BusMessage {
    pub user: UserId,
    pub payload: String,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publish one payload to the devices of every user in `users` (on Redis: one PUBLISH per
    /// user channel, in one round trip).
    async fn publish(&self, users: &[UserId], payload: &str) -> Result<(), BusError>;

    /// Presence of each user, in order.
    async fn presence(&self, users: &[UserId]) -> Result<Vec<PresenceState>, BusError>;

    /// Record that the token `jti` is revoked until `ttl` has passed (its remaining lifetime).
    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), BusError>;

    /// Whether `jti` was revoked.
    async fn is_token_revoked(&self, jti: &str) -> Result<bool, BusError>;

    /// Whether the bus answers.
    async fn ping(&self) -> Result<(), BusError>;
}

/// Names of the channels and keys under a prefix (`parley` by default; tests use one per run so
/// that parallel runs sharing a Redis never see each other's events).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The channel carrying everything addressed to one user's devices.
    pub fn user_channel(&self, user: UserId) -> String {
        format!("{}:u:{user}", self.prefix)
    }

    /// Sorted set of a user's live connections: member `relay:conn`, score the unix time (ms)
    /// until which that connection counts as alive. Relays refresh their scores; a dead
    /// relay's entries expire by themselves.
    pub fn presence(&self, user: UserId) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    /// Unix time (ms) a user was last seen online.
    pub fn last_seen(&self, user: UserId) -> String {
        format!("{}:lastseen:{user}", self.prefix)
    }

    /// Marks a revoked token.
    pub fn revoked(&self, jti: &str) -> String {
        format!("{}:revoked:{jti}", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(crate::events::DEFAULT_PREFIX)
    }
}
