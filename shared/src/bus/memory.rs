//! The in-process bus for the all-in-one binary: a broadcast channel and two maps.

use super::{Bus, BusError, BusMessage, PresenceState};
use crate::ids::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How many published messages a slow in-process subscriber may fall behind before it misses
/// some (it then recovers through sync, as a relay does after a Redis outage).
const CAPACITY: usize = 16 * 1024;

/// A user's live connection count and when they were last seen.
#[derive(Default)]
struct UserPresence {
    connections: usize,
    last_seen: Option<DateTime<Utc>>,
}

pub struct MemoryBus {
    tx: broadcast::Sender<BusMessage>,
    presence: Mutex<HashMap<UserId, UserPresence>>,
    /// Revoked token ids and when the revocation may be forgotten.
    revoked: Mutex<HashMap<String, Instant>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            presence: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Every message published from now on, to any user.
    pub fn subscribe_all(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }

    /// A connection of `user` opened (`online = true`) or closed.
    pub fn set_connection(&self, user: UserId, online: bool) {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(user).or_default();
        if online {
            entry.connections += 1;
        } else {
            entry.connections = entry.connections.saturating_sub(1);
            entry.last_seen = Some(Utc::now());
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, users: &[UserId], payload: &str) -> Result<(), BusError> {
        for &user in users {
            // No receiver is not an error: nobody is listening.
            let _ = self.tx.send(BusMessage {
                user,
                payload: payload.to_owned(),
            });
        }
        Ok(())
    }

    async fn presence(&self, users: &[UserId]) -> Result<Vec<PresenceState>, BusError> {
        let map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        Ok(users
            .iter()
            .map(|u| match map.get(u) {
                Some(p) => PresenceState {
                    online: p.connections > 0,
                    last_seen: p.last_seen,
                },
                None => PresenceState {
                    online: false,
                    last_seen: None,
                },
            })
            .collect())
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), BusError> {
        let mut map = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, until| *until > now);
        map.insert(jti.to_owned(), now + ttl);
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, BusError> {
        let map = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(jti).is_some_and(|until| *until > Instant::now()))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn published_messages_reach_subscribers_with_their_user() {
        let bus = MemoryBus::new();
        let mut rx = bus.subscribe_all();
        bus.publish(&[UserId(1), UserId(2)], "hi").await.unwrap();
        assert_eq!(rx.recv().await.unwrap().user, UserId(1));
        assert_eq!(rx.recv().await.unwrap().user, UserId(2));
    }

    #[tokio::test]
    async fn revoked_tokens_are_remembered_until_their_ttl() {
        let bus = MemoryBus::new();
        bus.revoke_token("j1", Duration::from_secs(60))
            .await
            .unwrap();
        bus.revoke_token("j2", Duration::ZERO).await.unwrap();
        assert!(bus.is_token_revoked("j1").await.unwrap());
        assert!(!bus.is_token_revoked("j2").await.unwrap());
        assert!(!bus.is_token_revoked("j3").await.unwrap());
    }

    #[tokio::test]
    async fn presence_counts_connections_and_records_last_seen() {
        let bus = MemoryBus::new();
        let u = UserId(1);
        bus.set_connection(u, true);
        bus.set_connection(u, true);
        bus.set_connection(u, false);
        assert!(bus.presence(&[u]).await.unwrap()[0].online);
        bus.set_connection(u, false);
        let p = bus.presence(&[u]).await.unwrap()[0];
        assert!(!p.online && p.last_seen.is_some());
    }
}
