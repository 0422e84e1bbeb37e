//! Parley as an operator runs it: the release `api-server` and `socket-server` binaries, on a
//! PostgreSQL and a Redis of the run's own, all on [`SERVER_CORE`], and users made in bulk.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use shared::auth::{JwtKeys, JwtSettings};
use shared::ids::UserId;

use super::{free_port, run_dir, spawn, wait_port, Postgres, Proc, Redis, JWT_SECRET};

/// How long the API may take to create its database, migrate and listen.
const START_LIMIT: Duration = Duration::from_secs(60);
/// The API's database in the run's cluster.
const DATABASE: &str = "parley";
/// Settings of both services besides the ops contract's: as `stack.rs` sets them in process, the
/// per-user send rate (10/s by default), the burst and the connects per IP raised so that a run
/// measures the services, not the rate limiters; logs at `warn`.
const ENV: &[(&str, &str)] = &[
    ("PARLEY__LIMITS__SENDS_PER_SEC", "1000000"),
    ("PARLEY__LIMITS__SENDS_BURST", "1000000"),
    ("PARLEY__LIMITS__CONNECTS_PER_IP_PER_SEC", "1000000"),
    ("PARLEY__LIMITS__TYPING_PER_SEC", "1000000"),
    ("RUST_LOG", "warn"),
];

/// A user of the run's database with a live session: connect with `{"token": token}`.
#[derive(Clone, Debug)]
pub struct BenchUser {
    pub id: i64,
    pub token: String,
}

/// The API and the relays; dropped in field order: relays, API, then PostgreSQL and Redis.
pub struct ParleyStack {
    /// `ws://127.0.0.1:<port>/socket.io/` of each relay.
    pub relay_urls: Vec<String>,
    /// `http://127.0.0.1:<port>`.
    pub api_url: String,
    pub relays: Vec<Proc>,
    pub api: Proc,
    pub postgres: Postgres,
    pub redis: Redis,
    /// Numbers the batches of [`ParleyStack::users`] (usernames stay unique).
    batches: AtomicUsize,
}

impl ParleyStack {
    /// Start PostgreSQL, Redis, the API (which creates and migrates its database) and `relays`
    /// relays (several are linked by the Redis bus), each once its port accepts.
    pub async fn start(relays: usize) -> anyhow::Result<ParleyStack> {
        let api_bin = binary("api-server")?;
        let relay_bin = binary("socket-server")?;
        let postgres = Postgres::start().await?;
        let redis = Redis::start().await?;
        let port = free_port()?;
        let mut command = service(&api_bin, &redis);
        command
            .env("DATABASE_URL", postgres.url(DATABASE))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env(
                "ATTACHMENTS_URL",
                format!("file://{}/attachments", run_dir().display()),
            );
        let mut api = spawn("api-server", command)?;
        wait_port(&mut api, port, START_LIMIT).await?;
        let api_url = format!("http://127.0.0.1:{port}");
        let mut processes = Vec::with_capacity(relays);
        let mut relay_urls = Vec::with_capacity(relays);
        for i in 0..relays {
            let port = free_port()?;
            let mut command = service(&relay_bin, &redis);
            command
                .env("API_URL", &api_url)
                .env("SOCKET_HOST", "127.0.0.1")
                .env("SOCKET_PORT", port.to_string());
            let mut relay = spawn(&format!("socket-server-{i}"), command)?;
            wait_port(&mut relay, port, START_LIMIT).await?;
            processes.push(relay);
            relay_urls.push(format!("ws://127.0.0.1:{port}/socket.io/"));
        }
        Ok(ParleyStack {
            relay_urls,
            api_url,
            relays: processes,
            api,
            postgres,
            redis,
            batches: AtomicUsize::new(0),
        })
    }

    /// The side's processes by part, for [`super::usage`]: `relay` (every relay), `api`,
    /// `postgres` (the postmaster: its backends are descendants), `redis`.
    pub fn parts(&self) -> Vec<(&'static str, Vec<u32>)> {
        vec![
            ("relay", self.relays.iter().map(Proc::pid).collect()),
            ("api", vec![self.api.pid()]),
            ("postgres", vec![self.postgres.pid()]),
            ("redis", vec![self.redis.pid()]),
        ]
    }

    /// `n` new users with a live session each and its signed token. Rows go in with two
    /// statements (users, then sessions) instead of `n` registrations: no argon2 per user. They
    /// cannot log in with a password (the hash is not one).
    pub async fn users(&self, n: usize) -> anyhow::Result<Vec<BenchUser>> {
        let batch = self.batches.fetch_add(1, Ordering::Relaxed);
        let (client, connection) =
            tokio_postgres::connect(&self.postgres.url(DATABASE), tokio_postgres::NoTls)
                .await
                .context("connecting to the run's PostgreSQL")?;
        let connection = tokio::spawn(connection);
        let rows = client
            .query(
                "INSERT INTO users (username, display_name, password_hash) \
                 SELECT 'bench_' || $1::text || '_' || g, 'Bench ' || g, '!bench' \
                 FROM generate_series(1, $2::int) AS g RETURNING id",
                &[&batch.to_string(), &i32::try_from(n)?],
            )
            .await
            .context("inserting the bench users")?;
        let keys = JwtKeys::new(&jwt_settings()?).map_err(anyhow::Error::msg)?;
        let mut users = Vec::with_capacity(n);
        let (mut jtis, mut ids, mut expiries) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            let id: i64 = row.get(0);
            let (token, claims) = keys.issue(UserId(id)).context("signing a token")?;
            jtis.push(claims.jti);
            ids.push(id);
            expiries.push(claims.exp as f64);
            users.push(BenchUser { id, token });
        }
        client
            .execute(
                "INSERT INTO sessions (jti, user_id, expires_at) \
                 SELECT j, u, to_timestamp(e) FROM unnest($1::text[], $2::int8[], $3::float8[]) \
                 AS t(j, u, e)",
                &[&jtis, &ids, &expiries],
            )
            .await
            .context("inserting the bench sessions")?;
        drop(client);
        let _ = connection.await;
        Ok(users)
    }
}

/// A token for each of `ids`, signed as Parley signs its own (for sides that keep no users).
pub fn sign(ids: &[i64]) -> anyhow::Result<Vec<String>> {
    let keys = JwtKeys::new(&jwt_settings()?).map_err(anyhow::Error::msg)?;
    ids.iter()
        .map(|&id| Ok(keys.issue(UserId(id)).context("signing a token")?.0))
        .collect()
}

/// The settings the services sign and verify tokens with (defaults, [`JWT_SECRET`]).
pub fn jwt_settings() -> anyhow::Result<JwtSettings> {
    serde_json::from_value(serde_json::json!({ "secret": JWT_SECRET }))
        .context("JWT settings of the bench")
}

/// A service binary of the bench's target dir (built with the bench).
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build them: cargo build --release -p api-server -p socket-server \
             (with the bench's CARGO_TARGET_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// A service's command: the run's Redis and secret, [`ENV`], run from the run dir (no
/// `config/` there: the services' defaults apply).
fn service(binary: &std::path::Path, redis: &Redis) -> Command {
    let mut command = Command::new(binary);
    command
        .env("REDIS_URL", redis.url())
        .env("JWT_SECRET", JWT_SECRET)
        .envs(ENV.iter().copied())
        .current_dir(run_dir());
    command
}
