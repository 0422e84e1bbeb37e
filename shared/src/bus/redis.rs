//! The Redis bus: PUBLISH for events, a sorted set per user for presence, keys with a TTL for
//! revoked tokens. Commands go through a `ConnectionManager`, which reconnects by itself.

use super::{Bus, BusError, Keys, PresenceState};
use crate::ids::UserId;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use std::time::Duration;

#[derive(Clone)]
pub struct RedisBus {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
}

impl RedisBus {
    /// Connect to `url` (`redis://host:port/db`), naming keys and channels under `keys`.
    /// Fails if Redis does not answer.
    pub async fn connect(url: &str, keys: Keys) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).with_context(|| "parsing REDIS_URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .context("connecting to Redis timed out")?
        .context("connecting to Redis")?;
        Ok(Self { conn, client, keys })
    }

    /// The underlying client, for opening a pub/sub connection.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The key and channel names this bus uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the shared command connection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// Presence scripts: each reads and writes a user's keys atomically. Scores are unix ms until
/// which a connection counts as alive; expired members are removed whenever a key is touched.
///
/// `presence_open`: KEYS presence, announced; ARGV now, until, member, key ttl (ms).
/// Returns 1 when the announced state flips to online.
const OPEN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local previous = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], 'online')
if previous == 'online' then return 0 end
return 1
";

/// `presence_close`: KEYS presence, last_seen; ARGV now, member. Returns the live count left.
const CLOSE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('ZCARD', KEYS[1])
";

/// `presence_settle`: KEYS presence, announced, last_seen; ARGV now. Returns the last-seen ms
/// when the announced state flips to offline, nil otherwise.
const SETTLE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) > 0 then return false end
if redis.call('GET', KEYS[2]) == 'offline' then return false end
redis.call('SET', KEYS[2], 'offline')
local seen = redis.call('GET', KEYS[3])
if seen then return seen end
return ARGV[1]
";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn err(e: redis::RedisError) -> BusError {
    BusError(anyhow::Error::new(e))
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, users: &[UserId], payload: &str) -> Result<(), BusError> {
        if users.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for &user in users {
            pipe.publish(self.keys.user_channel(user), payload).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn presence(&self, users: &[UserId]) -> Result<Vec<PresenceState>, BusError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = Utc::now().timestamp_millis();
        let mut pipe = redis::pipe();
        for &u in users {
            pipe.zcount(self.keys.presence(u), now_ms, "+inf");
            pipe.get(self.keys.last_seen(u));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<(i64, Option<i64>)> = pipe.query_async(&mut conn).await.map_err(err)?;
        Ok(raw
            .into_iter()
            .map(|(live, last)| PresenceState {
                online: live > 0,
                last_seen: last.and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            })
            .collect())
    }

    async fn presence_open(
        &self,
        user: UserId,
        member: &str,
        ttl: Duration,
    ) -> Result<bool, BusError> {
        let now = Utc::now().timestamp_millis();
        let mut conn = self.conn.clone();
        let flipped: i64 = redis::Script::new(OPEN)
            .key(self.keys.presence(user))
            .key(self.keys.presence_announced(user))
            .arg(now)
            .arg(now.saturating_add(millis(ttl)))
            .arg(member)
            .arg(millis(ttl).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(flipped == 1)
    }

    async fn presence_close(&self, user: UserId, member: &str) -> Result<usize, BusError> {
        let now = Utc::now().timestamp_millis();
        let mut conn = self.conn.clone();
        redis::Script::new(CLOSE)
            .key(self.keys.presence(user))
            .key(self.keys.last_seen(user))
            .arg(now)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(err)
    }

    async fn presence_settle(&self, user: UserId) -> Result<Option<DateTime<Utc>>, BusError> {
        let now = Utc::now().timestamp_millis();
        let mut conn = self.conn.clone();
        let seen: Option<i64> = redis::Script::new(SETTLE)
            .key(self.keys.presence(user))
            .key(self.keys.presence_announced(user))
            .key(self.keys.last_seen(user))
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(seen.and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
    }

    async fn presence_refresh(
        &self,
        connections: &[(UserId, String)],
        ttl: Duration,
    ) -> Result<(), BusError> {
        if connections.is_empty() {
            return Ok(());
        }
        let until = Utc::now().timestamp_millis().saturating_add(millis(ttl));
        let mut pipe = redis::pipe();
        for (user, member) in connections {
            let key = self.keys.presence(*user);
            // XX: a connection closed meanwhile is not brought back.
            pipe.cmd("ZADD")
                .arg(&key)
                .arg("XX")
                .arg(until)
                .arg(member)
                .ignore();
            pipe.pexpire(&key, millis(ttl).max(1)).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), BusError> {
        let ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.keys.revoked(jti))
            .arg(1)
            .arg("PX")
            .arg(ms)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, BusError> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(self.keys.revoked(jti))
            .query_async::<bool>(&mut conn)
            .await
            .map_err(err)
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redis_presence_follows_the_shared_contract() {
        let keys = Keys::new(format!("parley-presence-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        super::super::presence_contract(&bus).await;
    }
}
