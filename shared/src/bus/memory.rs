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

/// A user's connections (member → alive until), when they were last seen, and what was last
/// announced to their contacts (`None`: never).
#[derive(Default)]
struct UserPresence {
    connections: HashMap<String, Instant>,
    last_seen: Option<DateTime<Utc>>,
    announced_online: Option<bool>,
}

impl UserPresence {
    /// Forget expired connections; how many are left.
    fn live(&mut self, now: Instant) -> usize {
        self.connections.retain(|_, until| *until > now);
        self.connections.len()
    }
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
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        Ok(users
            .iter()
            .map(|u| match map.get_mut(u) {
                Some(p) => PresenceState {
                    online: p.live(now) > 0,
                    last_seen: p.last_seen,
                },
                None => PresenceState {
                    online: false,
                    last_seen: None,
                },
            })
            .collect())
    }

    async fn presence_open(
        &self,
        user: UserId,
        member: &str,
        ttl: Duration,
    ) -> Result<bool, BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(user).or_default();
        entry
            .connections
            .insert(member.to_owned(), Instant::now() + ttl);
        let previous = entry.announced_online.replace(true);
        Ok(previous != Some(true))
    }

    async fn presence_close(&self, user: UserId, member: &str) -> Result<usize, BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(user).or_default();
        entry.connections.remove(member);
        entry.last_seen = Some(Utc::now());
        Ok(entry.live(Instant::now()))
    }

    async fn presence_settle(&self, user: UserId) -> Result<Option<DateTime<Utc>>, BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(user).or_default();
        if entry.live(Instant::now()) > 0 || entry.announced_online == Some(false) {
            return Ok(None);
        }
        entry.announced_online = Some(false);
        Ok(Some(entry.last_seen.unwrap_or_else(Utc::now)))
    }

    async fn presence_refresh(
        &self,
        connections: &[(UserId, String)],
        ttl: Duration,
    ) -> Result<(), BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + ttl;
        for (user, member) in connections {
            if let Some(alive) = map
                .get_mut(user)
                .and_then(|p| p.connections.get_mut(member))
            {
                *alive = until;
            }
        }
        Ok(())
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
    async fn memory_presence_follows_the_shared_contract() {
        super::super::presence_contract(&MemoryBus::new()).await;
    }
}
