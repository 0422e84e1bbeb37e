//! The Redis bus: PUBLISH for events, a sorted set per user for presence, keys with a TTL for
//! revoked tokens. Commands go through a `ConnectionManager`, which reconnects by itself, except
//! on the two hot paths, PUBLISH (`publish`) and the relays' subscription ([`pubsub`]), which
//! have connections of their own (`connection`).
//!
//! Every call is bounded by [`COMMAND_TIMEOUT`], whatever Redis does. The manager makes one
//! connection attempt per reconnection and never sleeps between attempts (see
//! [`manager_config`]): while Redis is down calls fail at once, and the first calls after it is
//! back reconnect.

mod connection;
mod publish;
pub mod pubsub;
mod resp;
mod roster;

use super::roster::RosterView;
use super::subscriber::Subscriber;
use super::{Bus, BusError, BusMessage, Keys, PresenceState};
use crate::ids::UserId;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

/// Longest any call on the bus waits for Redis, reconnection included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Connections extended per round trip by [`RedisBus::presence_refresh`] (at most two commands
/// each, ~40 KiB of pipeline). One pipeline for all of a relay's connections grew with the
/// relay: at 15 000 connections 30 000 commands, several MiB built in the relay and queued in
/// Redis at once, every `presence.refresh_secs`, holding up every other call on the shared
/// connection and bounded as a whole by [`COMMAND_TIMEOUT`], which a relay large enough would
/// exceed.
const REFRESH_CHUNK: usize = 256;
/// The most characters an `i64` argument takes (`-9223372036854775808`).
const I64_DIGITS: usize = 20;

/// How the command connection reconnects.
///
/// No retries inside the manager: redis 0.32 hands its `factor` (default 100) to backon's
/// `ExponentialBuilder` as the *multiplier* between attempts, starting from backon's fixed 1 s
/// minimum and capped at its 60 s default (plus up to 100 % jitter), so a second retry sleeps
/// 60–120 s. Every command meanwhile awaits that one shared reconnection future, whatever
/// response timeout is set: that was the 108 s stall after a Redis restart. With zero retries a
/// reconnection is a single attempt bounded by [`CONNECT_TIMEOUT`]; a failed one fails the
/// commands waiting on it, and the next command starts a new attempt.
fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT)
        .set_number_of_retries(0)
        // Only used if retries are ever turned back on: never sleep longer than a command may wait.
        .set_max_delay(COMMAND_TIMEOUT.as_millis() as u64)
}

/// Await a Redis call for at most [`COMMAND_TIMEOUT`].
async fn bounded<T>(
    what: &'static str,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| {
            let out_of_memory = e.code() == Some("OOM");
            let error = anyhow::Error::new(e).context(what);
            BusError(if out_of_memory {
                // PUBLISH still goes through, so messages flow while presence quietly stops
                // being written: say so, with the remedy.
                error.context(
                    "Redis is out of memory (maxmemory reached under noeviction) and refuses \
                     writes: messages still flow, presence is not kept; give it more memory \
                     (docs/operations.md, Redis)",
                )
            } else {
                error
            })
        }),
        Err(_) => Err(BusError(anyhow::anyhow!(
            "{what}: Redis did not answer within {COMMAND_TIMEOUT:?}"
        ))),
    }
}

#[derive(Clone)]
pub struct RedisBus {
    conn: ConnectionManager,
    /// PUBLISH's own connection.
    publishing: std::sync::Arc<publish::Publishing>,
    /// Where Redis is and how to log in, as `REDIS_URL` says (for the connections of our own).
    info: redis::ConnectionInfo,
    keys: Keys,
}

impl RedisBus {
    /// Connect to `url` (`redis://host:port/db`), naming keys and channels under `keys`.
    /// Fails if Redis does not answer (within about a second).
    pub async fn connect(url: &str, keys: Keys) -> anyhow::Result<Self> {
        // redis-rs (built without TLS) refuses it with "the feature is not enabled".
        if redis::parse_redis_url(url).is_some_and(|url| url.scheme() == "rediss") {
            anyhow::bail!(
                "REDIS_URL: TLS (rediss://) is not supported; use redis:// on a private network, \
                 or redis+unix:// for a Redis on the same host"
            );
        }
        let client = redis::Client::open(url).with_context(|| "parsing REDIS_URL")?;
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT + COMMAND_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), manager_config()),
        )
        .await
        .context("connecting to Redis timed out")?
        .context("connecting to Redis")?;
        let info = client.get_connection_info().clone();
        Ok(Self {
            conn,
            publishing: std::sync::Arc::new(publish::Publishing::new(info.clone())),
            info,
            keys,
        })
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
/// Each also keeps the user's entry in the due set ([`Keys::presence_due`]) at the end of their
/// latest connection or grace (`GT`: never earlier), until settling finds nothing left.
///
/// `presence_open`: KEYS presence, announced, due; ARGV now, until, member, key ttl (ms), user.
/// Returns 1 when the user comes online: the announced state flips to online, or it still read
/// online but nothing unexpired was left in the set (no connection, no grace: the relay whose
/// grace timer would have announced them offline stopped first, so contacts that looked since
/// read them offline).
const OPEN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local present = redis.call('ZCARD', KEYS[1]) > 0
redis.call('ZREM', KEYS[1], '~grace')
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[3], 'GT', ARGV[2], ARGV[5])
local previous = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], 'online')
if previous == 'online' and present then return 0 end
return 1
";

/// `presence_close`: KEYS presence, last_seen, due; ARGV now, member, grace ms, user. Returns the live
/// count left. With none left, a `~grace` entry scored at the end of the grace keeps the user
/// online to `presence` (which counts unexpired entries) until then; opening a connection
/// removes it and settling finds it expired.
const CLOSE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
local live = redis.call('ZCARD', KEYS[1])
local held = redis.call('ZSCORE', KEYS[1], '~grace')
if held then live = live - 1 end
local grace = tonumber(ARGV[3])
if live == 0 and grace > 0 then
  local ends = tonumber(ARGV[1]) + grace
  if held and tonumber(held) > ends then
    ends = tonumber(held)
  else
    redis.call('ZADD', KEYS[1], ends, '~grace')
  end
  -- Nothing else is alive: the user is due when the grace ends.
  redis.call('ZADD', KEYS[3], ends, ARGV[4])
  -- The last member's ZREM may have deleted the key, and the ZADD above made it anew without
  -- an expiry (PTTL -1): it must expire with the grace at the latest.
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < grace then redis.call('PEXPIRE', KEYS[1], grace) end
end
return live
";

/// `presence_settle` and each user of `presence_sweep`: KEYS presence, announced, last_seen,
/// due; ARGV now, user, connection ttl (ms). Returns the last-seen ms when the announced state
/// flips from online to offline, nil otherwise. A user with something left alive is due again
/// when it ends; one with nothing left leaves the due set. The last-seen time is the last close,
/// or the last refresh (the due time less the ttl) when that is later: nothing closed the
/// connections of a relay that was killed.
const SETTLE: &str = r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local alive = redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
if #alive > 0 then
  redis.call('ZADD', KEYS[4], 'GT', alive[2], ARGV[2])
  return false
end
local due = redis.call('ZSCORE', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
if redis.call('GET', KEYS[2]) ~= 'online' then return false end
redis.call('SET', KEYS[2], 'offline')
local seen = tonumber(redis.call('GET', KEYS[3]) or 0)
if due then seen = math.max(seen, tonumber(due) - tonumber(ARGV[3])) end
if seen <= 0 or seen > now then seen = now end
seen = string.format('%d', seen)
redis.call('SET', KEYS[3], seen)
return seen
";

/// The presence scripts with their SHA-1 computed once, not on every connect and close (the
/// hash was ~17 000 instructions a call).
static OPEN_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(OPEN));
static CLOSE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CLOSE));
static SETTLE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SETTLE));

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, users: &[UserId], payload: &str) -> Result<(), BusError> {
        let batch = std::iter::once((users, payload));
        self.publishing.publish(&self.keys, batch).await
    }

    async fn publish_many(&self, batch: &[(Vec<UserId>, String)]) -> Result<(), BusError> {
        let batch = batch
            .iter()
            .map(|(users, payload)| (&users[..], &payload[..]));
        self.publishing.publish(&self.keys, batch).await
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
        let raw: Vec<(i64, Option<i64>)> =
            bounded("reading presence", pipe.query_async(&mut conn)).await?;
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
        let mut script = OPEN_SCRIPT.prepare_invoke();
        script
            .key(self.keys.presence(user))
            .key(self.keys.presence_announced(user))
            .key(self.keys.presence_due())
            .arg(now)
            .arg(now.saturating_add(millis(ttl)))
            .arg(member)
            .arg(millis(ttl).max(1))
            .arg(user.0);
        let flipped: i64 = bounded("presence_open", script.invoke_async(&mut conn)).await?;
        Ok(flipped == 1)
    }

    async fn presence_close(
        &self,
        user: UserId,
        member: &str,
        grace: Duration,
    ) -> Result<usize, BusError> {
        let now = Utc::now().timestamp_millis();
        let mut conn = self.conn.clone();
        let mut script = CLOSE_SCRIPT.prepare_invoke();
        script
            .key(self.keys.presence(user))
            .key(self.keys.last_seen(user))
            .key(self.keys.presence_due())
            .arg(now)
            .arg(member)
            .arg(millis(grace))
            .arg(user.0);
        bounded("presence_close", script.invoke_async(&mut conn)).await
    }

    async fn presence_settle(
        &self,
        user: UserId,
        ttl: Duration,
    ) -> Result<Option<DateTime<Utc>>, BusError> {
        let now = Utc::now().timestamp_millis();
        let mut conn = self.conn.clone();
        let mut script = SETTLE_SCRIPT.prepare_invoke();
        script
            .key(self.keys.presence(user))
            .key(self.keys.presence_announced(user))
            .key(self.keys.last_seen(user))
            .key(self.keys.presence_due())
            .arg(now)
            .arg(user.0)
            .arg(millis(ttl));
        let seen: Option<i64> = bounded("presence_settle", script.invoke_async(&mut conn)).await?;
        Ok(seen.and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
    }

    async fn presence_sweep(
        &self,
        settled_for: Duration,
        limit: usize,
        ttl: Duration,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, BusError> {
        let before = Utc::now()
            .timestamp_millis()
            .saturating_sub(millis(settled_for));
        let mut conn = self.conn.clone();
        let mut read = redis::cmd("ZRANGE");
        read.arg(self.keys.presence_due())
            .arg("-inf")
            .arg(before)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let due: Vec<i64> = bounded("reading the users due", read.query_async(&mut conn)).await?;
        let mut settled = Vec::new();
        for user in due.into_iter().map(UserId) {
            if let Some(seen) = self.presence_settle(user, ttl).await? {
                settled.push((user, seen));
            }
        }
        Ok(settled)
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
        let mut conn = self.conn.clone();
        let key_ttl = millis(ttl).max(1);
        let due_key = self.keys.presence_due();
        for chunk in connections.chunks(REFRESH_CHUNK) {
            let mut pipe = redis::Pipeline::with_capacity(2 * chunk.len() + 1);
            // The users' due times, in one command for the chunk (GT: a later refresh by
            // another relay stands).
            let mut due = redis::Cmd::with_capacity(
                3 + 2 * chunk.len(),
                "ZADD".len() + due_key.len() + "GT".len() + chunk.len() * 2 * I64_DIGITS,
            );
            due.arg("ZADD").arg(&due_key).arg("GT");
            // One ZADD and one PEXPIRE per user's run of connections (a user's devices on
            // this relay come together from `Presence::members`). The commands are made at
            // their size: grown argument by argument, each was reallocated several times.
            for run in chunk.chunk_by(|a, b| a.0 == b.0) {
                due.arg(until).arg(run[0].0 .0);
                let key = self.keys.presence(run[0].0);
                let members: usize = run.iter().map(|(_, member)| member.len()).sum();
                let mut zadd = redis::Cmd::with_capacity(
                    3 + 2 * run.len(),
                    "ZADD".len() + key.len() + "XX".len() + run.len() * I64_DIGITS + members,
                );
                // XX: a connection closed meanwhile is not brought back.
                zadd.arg("ZADD").arg(&key).arg("XX");
                for (_, member) in run {
                    zadd.arg(until).arg(member);
                }
                pipe.add_command(zadd).ignore();
                let mut pexpire =
                    redis::Cmd::with_capacity(3, "PEXPIRE".len() + key.len() + I64_DIGITS);
                pexpire.arg("PEXPIRE").arg(key).arg(key_ttl);
                pipe.add_command(pexpire).ignore();
            }
            pipe.add_command(due).ignore();
            bounded("refreshing presence", pipe.query_async::<()>(&mut conn)).await?;
        }
        Ok(())
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), BusError> {
        let ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.revoked(jti)).arg(1).arg("PX").arg(ms);
        bounded(
            "recording a revoked token",
            cmd.query_async::<()>(&mut conn),
        )
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, BusError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.keys.revoked(jti));
        bounded(
            "checking a revoked token",
            cmd.query_async::<bool>(&mut conn),
        )
        .await
    }

    async fn roster(&self, me: &str, ttl: Duration) -> Result<RosterView, BusError> {
        let mut conn = self.conn.clone();
        let call = roster::refresh(&mut conn, &self.keys, me, millis(ttl).max(1));
        bounded("refreshing the roster", call).await
    }

    async fn roster_leave(&self, me: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.keys.roster()).arg(me);
        bounded("leaving the roster", cmd.query_async::<()>(&mut conn)).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        bounded("PING", cmd.query_async::<String>(&mut conn))
            .await
            .map(|_| ())
    }

    fn subscribe(&self) -> (Subscriber, tokio::sync::mpsc::Receiver<BusMessage>) {
        pubsub::start(self.info.clone(), self.keys.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tls_url_is_refused_saying_what_to_use_instead() {
        let keys = Keys::new("parley-tls-test");
        let refused = RedisBus::connect("rediss://127.0.0.1:6379", keys).await;
        let error = format!("{:#}", refused.err().expect("rediss:// refused"));
        assert!(
            error.contains("REDIS_URL") && error.contains("redis://"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn redis_presence_follows_the_shared_contract() {
        let keys = Keys::new(format!("parley-presence-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        super::super::presence_contract(&bus).await;
    }

    #[tokio::test]
    async fn a_user_in_their_grace_has_a_presence_key_that_expires() {
        let keys = Keys::new(format!("parley-grace-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys.clone()).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        let user = UserId(1);
        bus.presence_open(user, "r1:a", Duration::from_secs(30))
            .await
            .unwrap();

        // The last connection closes: its ZREM empties (deletes) the key, the grace entry
        // makes it anew
        let grace = Duration::from_secs(5);
        bus.presence_close(user, "r1:a", grace).await.unwrap();

        // Nobody may settle it (its relay stops): the key must not outlive the grace by much
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.presence(user))
            .query_async(&mut bus.connection())
            .await
            .unwrap();
        assert!((1..=grace.as_millis() as i64).contains(&ttl), "PTTL {ttl}");
    }

    #[tokio::test]
    async fn a_refresh_of_several_round_trips_extends_every_open_connection_only() {
        let keys = Keys::new(format!("parley-refresh-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys.clone()).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        // Two whole round trips and part of a third; users with several connections, most
        // apart, some together (one command for the run), one run across two round trips.
        let mut connections: Vec<(UserId, String)> = (0..2 * REFRESH_CHUNK + 1)
            .map(|i| (UserId(i as i64 % 97 + 1), format!("relay:{i}")))
            .collect();
        for (i, run) in [(10, 3), (REFRESH_CHUNK - 2, 5)] {
            for (user, _) in &mut connections[i..i + run] {
                *user = UserId(500);
            }
        }
        let (short, long) = (Duration::from_secs(60), Duration::from_secs(120));
        for (user, member) in &connections {
            bus.presence_open(*user, member, short).await.unwrap();
        }

        // One of the run across two round trips closes before the refresh, which still lists it.
        let (closed_user, closed) = connections[REFRESH_CHUNK + 1].clone();
        bus.presence_close(closed_user, &closed, Duration::ZERO)
            .await
            .unwrap();

        let refreshed_at = Utc::now().timestamp_millis();
        bus.presence_refresh(&connections, long).await.unwrap();

        // Every open connection now expires `long` after the refresh, not `short` after it
        // opened, and so do their keys; the closed one was not brought back.
        let mut conn = bus.conn.clone();
        let score: Option<i64> = redis::cmd("ZSCORE")
            .arg(keys.presence(closed_user))
            .arg(&closed)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(score, None, "{closed} was closed");
        let open = connections.iter().filter(|(_, member)| *member != closed);
        for (user, member) in open {
            let key_ttl: i64 = redis::cmd("PTTL")
                .arg(keys.presence(*user))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(key_ttl > millis(short), "{member}'s key: {key_ttl} ms left");
            let until: i64 = redis::cmd("ZSCORE")
                .arg(keys.presence(*user))
                .arg(member)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(until >= refreshed_at + millis(long), "{member}: {until}");
        }
    }

    #[tokio::test]
    async fn redis_roster_follows_the_shared_contract() {
        let keys = Keys::new(format!("parley-roster-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        super::super::roster::roster_contract(&bus).await;
    }
}
