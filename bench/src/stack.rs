//! The system under test, in this process on loopback port 0: the API against a fresh
//! PostgreSQL database (created at start, dropped at the end), and as many relays as asked
//! (none, one, or several linked by the bus), all on Redis under a prefix of their own.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where PostgreSQL and Redis are (`BENCH_POSTGRES_URL`, `BENCH_REDIS_URL` override).
fn postgres_base() -> String {
    std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Set before the runtime starts (settings are read from the environment): a throwaway JWT
/// secret, and limits raised so the per-user send rate limit (10/s by default) measures
/// nothing but itself and a run can register its users through the API from one address.
pub fn prepare_environment() {
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::env::set_var("JWT_SECRET", secret);
    for (key, value) in [
        ("PARLEY__LIMITS__SENDS_PER_SEC", "1000000"),
        ("PARLEY__LIMITS__SENDS_BURST", "1000000"),
        ("PARLEY__LIMITS__CONNECTS_PER_IP_PER_SEC", "1000000"),
        ("PARLEY__LIMITS__TYPING_PER_SEC", "1000000"),
        ("PARLEY__LIMITS__REGISTRATIONS_PER_IP", "0"),
    ] {
        std::env::set_var(key, value);
    }
}

/// An HTTP client of an API (Parley's or a peer's): every request answered within `timeout`,
/// and no connection kept unused longer than Parley's API waits on one
/// (`shared::port::API_CLIENT_IDLE`), so no request meets a close.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(shared::port::API_CLIENT_IDLE)
        .build()
}

/// The direct conversation of the token's user with `other` through the API at `api_url`
/// (`POST /api/conversations`); its id.
pub async fn conversation(
    http: &reqwest::Client,
    api_url: &str,
    token: &str,
    other: &str,
) -> anyhow::Result<String> {
    let answer: Value = http
        .post(format!("{api_url}/api/conversations"))
        .bearer_auth(token)
        .json(&json!({ "memberIds": [other] }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .context("conversation id")
}

pub struct Stack {
    pub api_url: String,
    /// Each relay's `ws://…/socket.io/` base (empty when none runs).
    pub relays: Vec<String>,
    pub http: reqwest::Client,
    db_name: String,
    /// The Redis key prefix of this run (presence and last-seen keys are left under it).
    prefix: String,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// Start the API and `relays` relays.
    pub async fn start(relays: usize) -> anyhow::Result<Stack> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("parley_bench_{id}");
        let prefix = format!("parley-bench-{id}");
        let mut api_settings = api_server::settings::Settings::load()?.0;
        api_settings.api.host = "127.0.0.1".into();
        api_settings.api.port = 0;
        api_settings.database.url = format!("{}/{db_name}", postgres_base());
        api_settings.database.create_if_missing = true;
        api_settings.redis.url = redis_url();
        api_settings.redis.prefix = prefix.clone();
        let api = api_server::startup::Application::build(api_settings)
            .await
            .context("starting the API (PostgreSQL and Redis must run)")?;
        let api_url = format!("http://127.0.0.1:{}", api.port());
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let (tx, rx) = oneshot::channel::<()>();
        tasks.push(tokio::spawn(api.run_until_stopped(async move {
            let _ = rx.await;
        })));
        stops.push(tx);
        let mut relay_ws = Vec::with_capacity(relays);
        for _ in 0..relays {
            let mut settings = socket_server::settings::Settings::load()?.0;
            settings.socket.host = "127.0.0.1".into();
            settings.socket.port = 0;
            settings.api.url = api_url.clone();
            settings.redis.url = redis_url();
            settings.redis.prefix = prefix.clone();
            let relay = socket_server::startup::Application::build(settings)
                .await
                .context("starting the relay")?;
            relay_ws.push(format!("ws://127.0.0.1:{}/socket.io/", relay.port()));
            let (tx, rx) = oneshot::channel::<()>();
            tasks.push(tokio::spawn(relay.run_until_stopped(async move {
                let _ = rx.await;
            })));
            stops.push(tx);
        }
        Ok(Stack {
            api_url,
            relays: relay_ws,
            http: http_client(Duration::from_secs(30))?,
            db_name,
            prefix,
            stops,
            tasks,
        })
    }

    /// Register `username`; its (token, user id).
    pub async fn register(&self, username: &str) -> anyhow::Result<(String, String)> {
        let body = json!({ "username": username, "password": "bench-password-1" });
        let answer: Value = self
            .http
            .post(format!("{}/api/auth/register", self.api_url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let field = |v: &Value| v.as_str().map(str::to_owned).context("register answer");
        Ok((field(&answer["token"])?, field(&answer["user"]["id"])?))
    }

    /// The direct conversation of the token's user with `other`; its id.
    pub async fn conversation(&self, token: &str, other: &str) -> anyhow::Result<String> {
        conversation(&self.http, &self.api_url, token, other).await
    }

    /// Stop the services (bounded wait), then drop the database and the Redis keys.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stops.clear();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let (client, connection) = tokio_postgres::connect(
            &format!("{}/postgres", postgres_base()),
            tokio_postgres::NoTls,
        )
        .await
        .context("connecting to PostgreSQL to drop the bench database")?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ))
            .await
            .context("dropping the bench database")?;
        self.delete_redis_keys()
            .await
            .context("deleting the bench's Redis keys")
    }

    /// Every key under this run's prefix (presence, last seen: hundreds per run otherwise).
    async fn delete_redis_keys(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(redis_url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{}:*", self.prefix);
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for chunk in keys.chunks(500) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<()>(&mut connection)
                .await?;
        }
        Ok(())
    }
}
