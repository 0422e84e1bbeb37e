//! The in-process bus for the all-in-one binary: publishing delivers straight into the queue of
//! each subscriber interested in the user, waiting for room when a queue is full, so a slow
//! consumer slows publishers down instead of losing events; and two maps (presence, revoked
//! tokens) and the roster of relays.

use super::roster::RosterView;
use super::subscriber::{Command, Counts, Link, Subscriber, OUT_CAPACITY};
use super::{Bus, BusError, BusMessage, PresenceState};
use crate::ids::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One in-process subscriber: the users it receives (counted per connection) and its queue.
pub(crate) struct Route {
    users: Mutex<Counts>,
    out: mpsc::Sender<BusMessage>,
}

impl Route {
    pub(crate) fn subscribe(&self, user: UserId) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(user);
    }

    pub(crate) fn unsubscribe(&self, user: UserId) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }

    fn wants(&self, user: &UserId) -> bool {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(user)
    }
}

/// A user's connections (member → alive until), when they were last seen, and what was last
/// announced to their contacts (`None`: never).
#[derive(Default)]
struct UserPresence {
    connections: HashMap<String, Instant>,
    /// After the last connection closed: still online to readers until then.
    grace_until: Option<Instant>,
    last_seen: Option<DateTime<Utc>>,
    announced_online: Option<bool>,
    /// The end of the latest connection or grace: what a sweep dates a relay's death by.
    due: Option<Instant>,
}

impl UserPresence {
    /// Forget expired connections; how many are left.
    fn live(&mut self, now: Instant) -> usize {
        self.connections.retain(|_, until| *until > now);
        self.connections.len()
    }

    /// Whether anything keeps the user online: a live connection or their grace.
    fn present(&mut self, now: Instant) -> bool {
        self.live(now) > 0 || self.grace_until.is_some_and(|t| t > now)
    }

    /// As the Redis settle script: flip the announced state from online to offline when
    /// nothing keeps the user online, and return the last-seen time (the last close, or the
    /// last refresh, `ttl` before `due`, when that is later).
    fn settle(&mut self, now: Instant, ttl: Duration) -> Option<DateTime<Utc>> {
        if self.present(now) {
            return None;
        }
        let due = self.due.take();
        if self.announced_online != Some(true) {
            return None;
        }
        self.announced_online = Some(false);
        let wall = Utc::now();
        let refreshed = due.map(|due| {
            let ago = now.saturating_duration_since(due.checked_sub(ttl).unwrap_or(due));
            wall - chrono::Duration::from_std(ago).unwrap_or_default()
        });
        let seen = self.last_seen.max(refreshed).unwrap_or(wall).min(wall);
        self.last_seen = Some(seen);
        Some(seen)
    }
}

pub struct MemoryBus {
    /// The subscribers; one whose receiver is gone is dropped at the next publish.
    routes: Mutex<Vec<Arc<Route>>>,
    presence: Mutex<HashMap<UserId, UserPresence>>,
    /// Revoked token ids and when the revocation may be forgotten.
    revoked: Mutex<HashMap<String, Instant>>,
    roster: Mutex<super::roster::MemoryRoster>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self {
            routes: Mutex::new(Vec::new()),
            presence: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
            roster: Mutex::default(),
        }
    }

    /// Add a subscriber delivering into `out`; it receives the users it subscribes on the route.
    pub(crate) fn attach(&self, out: mpsc::Sender<BusMessage>) -> Arc<Route> {
        let route = Arc::new(Route {
            users: Mutex::new(Counts::default()),
            out,
        });
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(route.clone());
        route
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, users: &[UserId], payload: &str) -> Result<(), BusError> {
        let deliveries: Vec<(UserId, mpsc::Sender<BusMessage>)> = {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes.retain(|route| !route.out.is_closed());
            users
                .iter()
                .flat_map(|user| {
                    routes
                        .iter()
                        .filter(|route| route.wants(user))
                        .map(|route| (*user, route.out.clone()))
                })
                .collect()
        };
        for (user, out) in deliveries {
            // Waits for room: back-pressure, never a dropped event. An error means that
            // subscriber is gone, which is not the publisher's failure.
            let _ = out
                .send(BusMessage {
                    user,
                    payload: payload.to_owned(),
                })
                .await;
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
                    online: p.present(now),
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
        let now = Instant::now();
        // As the Redis script: online again also when nothing unexpired was left, whatever
        // was announced (a grace nobody settled).
        let present = entry.present(now);
        entry.connections.insert(member.to_owned(), now + ttl);
        entry.grace_until = None;
        entry.due = entry.due.max(Some(now + ttl));
        let previous = entry.announced_online.replace(true);
        Ok(previous != Some(true) || !present)
    }

    async fn presence_close(
        &self,
        user: UserId,
        member: &str,
        grace: Duration,
    ) -> Result<usize, BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(user).or_default();
        entry.connections.remove(member);
        entry.last_seen = Some(Utc::now());
        let now = Instant::now();
        let live = entry.live(now);
        if live == 0 && !grace.is_zero() {
            entry.grace_until = entry.grace_until.max(Some(now + grace));
            // Nothing else is alive: the user is due when the grace ends.
            entry.due = entry.grace_until;
        }
        Ok(live)
    }

    async fn presence_settle(
        &self,
        user: UserId,
        ttl: Duration,
    ) -> Result<Option<DateTime<Utc>>, BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(user).or_default();
        Ok(entry.settle(Instant::now(), ttl))
    }

    async fn presence_sweep(
        &self,
        settled_for: Duration,
        limit: usize,
        ttl: Duration,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let before = now.checked_sub(settled_for).unwrap_or(now);
        Ok(map
            .iter_mut()
            .filter(|(_, p)| p.due.is_some_and(|due| due <= before))
            .filter_map(|(&user, p)| p.settle(now, ttl).map(|seen| (user, seen)))
            .take(limit)
            .collect())
    }

    async fn presence_refresh(
        &self,
        connections: &[(UserId, String)],
        ttl: Duration,
    ) -> Result<(), BusError> {
        let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + ttl;
        for (user, member) in connections {
            let Some(presence) = map.get_mut(user) else {
                continue;
            };
            if let Some(alive) = presence.connections.get_mut(member) {
                *alive = until;
                presence.due = presence.due.max(Some(until));
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

    async fn roster(&self, me: &str, ttl: Duration) -> Result<RosterView, BusError> {
        let mut roster = self.roster.lock().unwrap_or_else(|e| e.into_inner());
        Ok(roster.refresh(me, ttl))
    }

    async fn roster_leave(&self, me: &str) -> Result<(), BusError> {
        let mut roster = self.roster.lock().unwrap_or_else(|e| e.into_inner());
        roster.leave(me);
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn subscribe(&self) -> (Subscriber, mpsc::Receiver<BusMessage>) {
        start_subscriber(self)
    }
}

/// A subscriber on this process's bus; its task ends when every handle is dropped.
fn start_subscriber(bus: &MemoryBus) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    // In process nothing can be missed: live from the start, for good.
    let link = Arc::new(Link::default());
    link.live();
    let (subscriber, commands) = Subscriber::channel(link);
    let (out, received) = mpsc::channel(OUT_CAPACITY);
    tokio::spawn(run_memory(bus.attach(out), commands));
    (subscriber, received)
}

/// Apply subscription commands to the route; deliveries go straight from publishers into the
/// route's queue.
async fn run_memory(route: Arc<Route>, mut commands: mpsc::UnboundedReceiver<Command>) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Subscribe(user, done) => {
                route.subscribe(user);
                let _ = done.send(());
            }
            Command::Unsubscribe(user) => route.unsubscribe(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn published_messages_reach_subscribers_with_their_user() {
        let bus = MemoryBus::new();
        let (tx, mut rx) = mpsc::channel(8);
        let route = bus.attach(tx);
        route.subscribe(UserId(1));
        route.subscribe(UserId(2));
        bus.publish(&[UserId(1), UserId(3), UserId(2)], "hi")
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().user, UserId(1));
        assert_eq!(rx.recv().await.unwrap().user, UserId(2));
    }

    #[tokio::test]
    async fn a_slow_subscriber_slows_publishers_down_and_misses_nothing() {
        // Arrange: a queue far smaller than what is published, and a consumer that lags
        let bus = Arc::new(MemoryBus::new());
        let (tx, mut rx) = mpsc::channel(4);
        let route = bus.attach(tx);
        let users: Vec<UserId> = (1..=10).map(UserId).collect();
        for &u in &users {
            route.subscribe(u);
        }
        let publisher = {
            let bus = bus.clone();
            let users = users.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    bus.publish(&users, &i.to_string()).await.unwrap();
                }
            })
        };

        // Act
        let mut received = 0;
        while received < 20_000 {
            if received % 1_000 == 0 {
                tokio::task::yield_now().await;
            }
            rx.recv().await.unwrap();
            received += 1;
        }

        // Assert: every one of the 2 000 × 10 events arrived, and nothing more
        publisher.await.unwrap();
        assert_eq!(received, 20_000);
        assert!(rx.try_recv().is_err());
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

    #[tokio::test]
    async fn memory_roster_follows_the_shared_contract() {
        super::super::roster::roster_contract(&MemoryBus::new()).await;
    }
}
