//! The bus between processes: publish to channels, and the few shared keys (presence, revoked
//! tokens) the services read. Two implementations run the same tests: [`redis::RedisBus`] for the
//! split deployment and [`memory::MemoryBus`] for the all-in-one process.

pub mod memory;
pub mod publisher;
pub mod redis;
pub mod roster;
pub mod subscriber;

#[cfg(test)]
mod outage_tests;

use crate::ids::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A bus failure. Publishing is best-effort for the API (the database is the record and clients
/// recover through sync), so callers log and count these rather than fail the request.
/// Shown with its whole chain of causes (`refreshing presence: OOM command not allowed…`), not
/// only what was being done.
#[derive(Debug, thiserror::Error)]
#[error("bus: {0:#}")]
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

    /// Publish each `(users, payload)` of `batch` as [`Bus::publish`] would, in order (on Redis:
    /// the whole batch in one pipelined round trip). Stops at the first failure.
    async fn publish_many(&self, batch: &[(Vec<UserId>, String)]) -> Result<(), BusError> {
        for (users, payload) in batch {
            self.publish(users, payload).await?;
        }
        Ok(())
    }

    /// Presence of each user, in order.
    async fn presence(&self, users: &[UserId]) -> Result<Vec<PresenceState>, BusError>;

    /// Connection `member` (`relay:conn`) of `user` opened; it counts as alive for `ttl` unless
    /// refreshed. Returns `true` when the user's announced state flips to online (their
    /// contacts must be told), decided atomically with the write.
    async fn presence_open(
        &self,
        user: UserId,
        member: &str,
        ttl: Duration,
    ) -> Result<bool, BusError>;

    /// Connection `member` of `user` closed; records `last_seen`. Returns how many live
    /// connections the user has left anywhere, counted atomically with the removal. When none
    /// is left, the user still reads as online in `presence` for `grace` (the offline grace the
    /// caller settles after): a contact who looks meanwhile must not see them offline when they
    /// come back within it, since nothing would be announced then.
    async fn presence_close(
        &self,
        user: UserId,
        member: &str,
        grace: Duration,
    ) -> Result<usize, BusError>;

    /// After a grace period with no live connection: returns the user's last-seen time when the
    /// announced state flips to offline (their contacts must be told), `None` when the user came
    /// back or offline was announced already. `ttl` is the connections' time to live (see
    /// [`Bus::presence_sweep`]).
    async fn presence_settle(
        &self,
        user: UserId,
        ttl: Duration,
    ) -> Result<Option<DateTime<Utc>>, BusError>;

    /// Settle the users nobody will settle: those left online with no live connection and no
    /// grace for at least `settled_for`, because the relay that held their connections was
    /// killed (they expired unrefreshed) or stopped while their grace ran. Up to `limit` of
    /// them, each claimed atomically as [`Bus::presence_settle`] does, so that whichever relay
    /// sweeps, each is announced offline once. Returns them with their last-seen time: their
    /// last close, or their connections' last refresh (`ttl` before they were to expire) when
    /// nothing closed them.
    async fn presence_sweep(
        &self,
        settled_for: Duration,
        limit: usize,
        ttl: Duration,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, BusError>;

    /// Extend every listed connection (that still exists) by `ttl`, in round trips of a bounded
    /// size (on Redis, a few hundred connections each, and one command for consecutive
    /// connections of one user: list a user's connections together).
    async fn presence_refresh(
        &self,
        connections: &[(UserId, String)],
        ttl: Duration,
    ) -> Result<(), BusError>;

    /// Record that the token `jti` is revoked until `ttl` has passed (its remaining lifetime).
    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), BusError>;

    /// Whether `jti` was revoked.
    async fn is_token_revoked(&self, jti: &str) -> Result<bool, BusError>;

    /// Relay `me` is alive for `ttl`: record it in the roster of relays, acknowledge every
    /// other live relay as seen by `me`, and return the roster as it stands (on Redis: one
    /// script, atomically).
    async fn roster(&self, me: &str, ttl: Duration) -> Result<roster::RosterView, BusError>;

    /// Relay `me` stops: it leaves the roster at once instead of expiring.
    async fn roster_leave(&self, me: &str) -> Result<(), BusError>;

    /// Whether the bus answers.
    async fn ping(&self) -> Result<(), BusError>;

    /// Open this process's subscription: a [`subscriber::Subscriber`] handle (subscribe and
    /// unsubscribe users' channels, counted per connection) and the receiver of what is
    /// published on them. Its task ends when every handle is dropped.
    fn subscribe(
        &self,
    ) -> (
        subscriber::Subscriber,
        tokio::sync::mpsc::Receiver<BusMessage>,
    );
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

    /// `{prefix}:{kind}:{user}`, written directly: these names are made for every publish and
    /// for every connection's presence refresh, where `format!` cost ~1 700 instructions each
    /// (its formatting machinery, and a reallocation as the string outgrew its first guess).
    fn user_key(&self, kind: &str, user: UserId) -> String {
        let mut id = itoa::Buffer::new();
        let id = id.format(user.0);
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 2);
        key.push_str(&self.prefix);
        key.push(':');
        key.push_str(kind);
        key.push(':');
        key.push_str(id);
        key
    }

    /// The channel carrying everything addressed to one user's devices.
    pub fn user_channel(&self, user: UserId) -> String {
        self.user_key("u", user)
    }

    /// Sorted set of a user's live connections: member `relay:conn`, score the unix time (ms)
    /// until which that connection counts as alive. Relays refresh their scores; a dead
    /// relay's entries expire by themselves.
    pub fn presence(&self, user: UserId) -> String {
        self.user_key("presence", user)
    }

    /// The presence last announced to a user's contacts: `online` or `offline` (absent: never
    /// announced). Lets relays announce each change once, whichever relay sees it.
    pub fn presence_announced(&self, user: UserId) -> String {
        self.user_key("presence-announced", user)
    }

    /// Sorted set of the users who may still read online: member the user id, score the unix
    /// time (ms) until which their latest connection (or grace) counts as alive. What
    /// [`Bus::presence_sweep`] reads to find the users of a relay that died.
    pub fn presence_due(&self) -> String {
        format!("{}:presence-due", self.prefix)
    }

    /// Unix time (ms) a user was last seen online.
    pub fn last_seen(&self, user: UserId) -> String {
        self.user_key("lastseen", user)
    }

    /// Sorted set of the live relays: member the relay's origin, score the unix time (ms) until
    /// which it counts as alive.
    pub fn roster(&self) -> String {
        format!("{}:relays", self.prefix)
    }

    /// Sorted set of acknowledgements between relays: member `seer>seen`, score the unix time
    /// (ms) until which it holds.
    pub fn roster_acks(&self) -> String {
        format!("{}:relays-seen", self.prefix)
    }

    /// Marks a revoked token.
    pub fn revoked(&self, jti: &str) -> String {
        format!("{}:revoked:{jti}", self.prefix)
    }
}

/// The presence contract both implementations pass (called from their tests).
#[cfg(test)]
pub(crate) async fn presence_contract(bus: &dyn Bus) {
    let ttl = Duration::from_secs(30);
    let (u, other) = (UserId(1), UserId(2));
    // Two devices: online announced once, the first close leaves one live connection.
    assert!(bus.presence_open(u, "r1:a", ttl).await.unwrap());
    assert!(!bus.presence_open(u, "r2:b", ttl).await.unwrap());
    assert!(bus.presence(&[u]).await.unwrap()[0].online);
    let grace = Duration::from_secs(30);
    assert_eq!(bus.presence_close(u, "r1:a", grace).await.unwrap(), 1);
    assert_eq!(bus.presence_settle(u, ttl).await.unwrap(), None);
    // The last close, then back within the grace period: online to readers all along, nothing
    // to announce either way.
    assert_eq!(bus.presence_close(u, "r2:b", grace).await.unwrap(), 0);
    assert!(bus.presence(&[u]).await.unwrap()[0].online);
    assert_eq!(bus.presence_settle(u, ttl).await.unwrap(), None);
    assert!(!bus.presence_open(u, "r1:c", ttl).await.unwrap());
    assert!(bus.presence(&[u]).await.unwrap()[0].online);
    assert_eq!(bus.presence_settle(u, ttl).await.unwrap(), None);
    // Another device comes and goes within the grace: the grace starts again from its close.
    assert!(!bus.presence_open(u, "r2:d", ttl).await.unwrap());
    assert_eq!(bus.presence_close(u, "r2:d", grace).await.unwrap(), 1);
    // Gone for good (no grace left): offline announced once, with the last-seen time.
    assert_eq!(
        bus.presence_close(u, "r1:c", Duration::ZERO).await.unwrap(),
        0
    );
    let state = bus.presence(&[u, other]).await.unwrap();
    assert!(!state[0].online && state[0].last_seen.is_some());
    assert_eq!(
        state[1],
        PresenceState {
            online: false,
            last_seen: None
        }
    );
    assert!(bus.presence_settle(u, ttl).await.unwrap().is_some());
    assert_eq!(bus.presence_settle(u, ttl).await.unwrap(), None);
    // A connection nobody refreshes expires; a refreshed one stays.
    assert!(bus
        .presence_open(other, "dead:x", Duration::from_millis(50))
        .await
        .unwrap());
    bus.presence_open(other, "live:y", Duration::from_millis(50))
        .await
        .unwrap();
    bus.presence_refresh(&[(other, "live:y".to_owned())], ttl)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(bus.presence(&[other]).await.unwrap()[0].online);
    assert_eq!(
        bus.presence_close(other, "live:y", Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    // A grace nobody settled (the relay that closed the last connection stopped before its
    // timer): once it ran out, the user reads offline, so coming back is announced again.
    let third = UserId(3);
    assert!(bus.presence_open(third, "r1:e", ttl).await.unwrap());
    let short = Duration::from_millis(50);
    assert_eq!(bus.presence_close(third, "r1:e", short).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!bus.presence(&[third]).await.unwrap()[0].online);
    assert!(bus.presence_open(third, "r1:f", ttl).await.unwrap());
    // Users nobody settles: one whose relay was killed (its connection expires unrefreshed) and
    // one whose relay stopped during their grace. A sweep leaves them to their relay for
    // `settled_for`, then announces each once, last seen when last refreshed or closed.
    let (killed, stopped) = (UserId(4), UserId(5));
    let opened = Utc::now();
    assert!(bus.presence_open(killed, "dead:z", short).await.unwrap());
    assert!(bus.presence_open(stopped, "r1:g", ttl).await.unwrap());
    assert_eq!(bus.presence_close(stopped, "r1:g", short).await.unwrap(), 0);
    let closed = Utc::now();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let hour = Duration::from_secs(3600);
    assert_eq!(bus.presence_sweep(hour, 10, short).await.unwrap(), []);
    let mut swept = bus.presence_sweep(Duration::ZERO, 10, short).await.unwrap();
    swept.sort_by_key(|(user, _)| user.0);
    let users: Vec<UserId> = swept.iter().map(|(user, _)| *user).collect();
    assert_eq!(users, [killed, stopped]);
    // In memory the last refresh is dated from a monotonic instant: within a few ms.
    let slack = chrono::Duration::milliseconds(20);
    assert!(
        swept[0].1 >= opened - slack && swept[0].1 <= closed + slack,
        "{swept:?}"
    );
    assert!(
        swept[1].1 >= opened - slack && swept[1].1 <= closed + slack,
        "{swept:?}"
    );
    assert!(!bus.presence(&[killed]).await.unwrap()[0].online);
    assert_eq!(
        bus.presence_sweep(Duration::ZERO, 10, short).await.unwrap(),
        []
    );
    assert_eq!(bus.presence_settle(killed, short).await.unwrap(), None);
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(crate::events::DEFAULT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_keys_and_channel_are_named_as_every_relay_and_api_expects() {
        // Every process of a deployment reads and writes these names, whatever its version.
        let keys = Keys::new("parley");
        assert_eq!(keys.user_channel(UserId(42)), "parley:u:42");
        assert_eq!(keys.presence(UserId(7)), "parley:presence:7");
        assert_eq!(
            keys.presence_announced(UserId(7)),
            "parley:presence-announced:7"
        );
        assert_eq!(keys.last_seen(UserId(-3)), "parley:lastseen:-3");
        assert_eq!(
            Keys::new("t-1").user_channel(UserId(i64::MAX)),
            format!("t-1:u:{}", i64::MAX)
        );
    }
}
