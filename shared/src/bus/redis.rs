//! The Redis bus: PUBLISH for events, a sorted set per user for presence, keys with a TTL for
//! revoked tokens. Commands go through a `ConnectionManager`, which reconnects by itself.

use super::{Bus, BusError, Keys, PresenceState};
use crate::ids::UserId;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
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
