//! `spawn_stack()`: a fresh database, the API and N relays sharing one Redis prefix, all on
//! port 0 and stopped (database dropped) when the [`Stack`] is dropped.

use std::time::Duration;

use api_server::settings::{
    CorsSettings, DatabaseSettings, HttpSettings, Limits as ApiLimits, RedisSettings as ApiRedis,
    Settings as ApiSettings,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use shared::auth::JwtSettings;
use socket_server::settings::{
    ApiSettings as RelayApi, Limits, PresenceSettings, RedisSettings, Settings, SocketSettings,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// A running relay: what stops it, and its task (the relay's exit).
type RelayRun = (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>);

pub struct Stack {
    pub api_url: String,
    pub relay_ports: Vec<u16>,
    pub jwt: JwtSettings,
    pub http: reqwest::Client,
    db_name: String,
    _stops: Vec<oneshot::Sender<()>>,
    /// Each relay's stop and task, until [`Stack::stop_relay`] takes them.
    relays: Vec<Option<RelayRun>>,
}

/// The API's settings for tests: port 0, a database `db_name` (created when missing), the bus
/// at `redis_url` under `prefix`, small limits.
pub fn api_settings(db_name: &str, redis_url: &str, prefix: &str, jwt: JwtSettings) -> ApiSettings {
    ApiSettings {
        api: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            shutdown_timeout_secs: 1,
            body_timeout_ms: 10_000,
            keep_alive_secs: 5,
            trusted_proxies: Default::default(),
        },
        database: DatabaseSettings {
            url: format!("postgres://postgres@127.0.0.1:5432/{db_name}"),
            pool_size: 4,
            query_timeout_secs: 10,
            create_if_missing: true,
        },
        redis: ApiRedis {
            url: redis_url.into(),
            prefix: prefix.into(),
        },
        jwt,
        limits: ApiLimits {
            body_bytes: 65_536,
            text_chars: 4000,
            page_max: 200,
            page_default: 50,
            sync_max: 500,
            search_max: 50,
            login_failures_per_window: 5,
            login_failures_per_account: 100,
            login_failures_per_ip: 50,
            login_window_secs: 300,
            registrations_per_ip: 100,
            sends_per_sec: 1000,
            sends_burst: 1000,
            conversations_per_minute: 1000,
            conversations_burst: 1000,
        },
        cors: CorsSettings {
            allowed_origins: None,
        },
        // Documented defaults; storage in a temporary directory of the API's own.
        attachments: Default::default(),
    }
}

fn jwt(secret: String) -> JwtSettings {
    JwtSettings {
        secret: SecretString::from(secret),
        issuer: "parley-test-issuer".into(),
        audience: "parley-test-clients".into(),
        ttl_secs: 3600,
        leeway_secs: 0,
    }
}

/// The API and `relays` relays, linked only by Redis (a prefix of their own).
pub async fn spawn_stack(relays: usize) -> Stack {
    spawn_stack_with(relays, |_| {}).await
}

/// As [`spawn_stack`], with each relay's settings adjusted by `tweak` first.
pub async fn spawn_stack_with(relays: usize, tweak: impl Fn(&mut Settings)) -> Stack {
    spawn_stack_on(REDIS_URL, relays, tweak).await
}

/// As [`spawn_stack_with`], on the Redis at `redis_url` (a test's own, to stop and restart).
pub async fn spawn_stack_on(
    redis_url: &str,
    relays: usize,
    tweak: impl Fn(&mut Settings),
) -> Stack {
    spawn_stack_custom(redis_url, relays, |_| {}, tweak).await
}

/// The most general form: the API's settings adjusted by `api_tweak`, each relay's by `tweak`.
pub async fn spawn_stack_custom(
    redis_url: &str,
    relays: usize,
    api_tweak: impl FnOnce(&mut ApiSettings),
    tweak: impl Fn(&mut Settings),
) -> Stack {
    shared::telemetry::init("warn");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let prefix = format!("parley-relay-test-{id}");
    let db_name = format!("parley_relay_test_{id}");
    let mut api_settings = api_settings(&db_name, redis_url, &prefix, jwt(secret.clone()));
    api_tweak(&mut api_settings);
    let api = api_server::startup::Application::build(api_settings)
        .await
        .unwrap_or_else(|e| panic!("the API did not start (PostgreSQL and Redis must run): {e:#}"));
    let api_url = format!("http://127.0.0.1:{}", api.port());
    let mut stops = Vec::new();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(api.run_until_stopped(async move {
        let _ = rx.await;
    }));
    stops.push(tx);
    let mut relay_ports = Vec::new();
    let mut relay_runs = Vec::new();
    for _ in 0..relays {
        let mut settings = Settings {
            socket: SocketSettings {
                host: "127.0.0.1".into(),
                port: 0,
                shutdown_timeout_secs: 1,
                connect_timeout_ms: 10_000,
                outbox_capacity: 256,
                max_uri_bytes: 8192,
                max_headers: 100,
                trusted_proxies: Default::default(),
            },
            api: RelayApi {
                url: api_url.clone(),
                timeout_ms: 5000,
            },
            redis: RedisSettings {
                url: redis_url.into(),
                prefix: prefix.clone(),
            },
            jwt: jwt(secret.clone()),
            limits: Limits {
                text_chars: 4000,
                store_attempts: 3,
                store_backoff_ms: 50,
                sends_queued_per_socket: 32,
                sends_in_flight: 20_000,
                store_lanes: 4,
                store_batch_max: 128,
                store_interval_ms: 20,
                requests_per_socket: 8,
                session_check_secs: 60,
                session_cache_secs: 10,
                sends_per_sec: 100,
                sends_burst: 100,
                typing_per_sec: 50,
                connections_per_user: 10,
                connects_per_ip_per_sec: 1000,
            },
            presence: PresenceSettings {
                ttl_secs: 30,
                refresh_secs: 10,
                offline_grace_ms: 300,
            },
            cors: Default::default(),
        };
        tweak(&mut settings);
        let relay = socket_server::startup::Application::build(settings)
            .await
            .unwrap_or_else(|e| panic!("the relay did not start: {e:#}"));
        relay_ports.push(relay.port());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run_until_stopped(async move {
            let _ = rx.await;
        }));
        relay_runs.push(Some((tx, task)));
    }
    Stack {
        api_url,
        relay_ports,
        jwt: jwt(secret),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_idle_timeout(shared::port::API_CLIENT_IDLE)
            .build()
            .unwrap(),
        db_name,
        _stops: stops,
        relays: relay_runs,
    }
}

impl Stack {
    /// The URL of the stack's own PostgreSQL database.
    pub fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.db_name)
    }

    /// Holds storage: a transaction that keeps `messages` locked (EXCLUSIVE blocks every insert's
    /// ROW EXCLUSIVE) until the returned client runs `COMMIT`. A REST send then waits on it
    /// holding the API's only connection.
    pub async fn hold_messages(&self) -> tokio_postgres::Client {
        self.lock_table("messages", "EXCLUSIVE").await
    }

    /// A transaction that keeps `table` locked in `mode` until the returned client runs
    /// `COMMIT`: the API's queries that need a conflicting lock wait meanwhile.
    pub async fn lock_table(&self, table: &str, mode: &str) -> tokio_postgres::Client {
        let (db, connection) = tokio_postgres::connect(&self.database_url(), tokio_postgres::NoTls)
            .await
            .expect("connecting to the stack's database");
        tokio::spawn(connection);
        db.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN {mode} MODE"))
            .await
            .unwrap();
        db
    }

    /// Stops relay `index` as SIGTERM does (its graceful shutdown: open sessions are told, the
    /// listener closes) and returns once it has exited.
    pub async fn stop_relay(&mut self, index: usize) {
        let (stop, task) = self.relays[index].take().expect("a relay stopped once");
        let _ = stop.send(());
        task.await
            .expect("the relay's task")
            .expect("the relay stopped cleanly");
    }

    pub fn relay_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.relay_ports[index])
    }

    /// The `/metrics` text of relay `index`.
    pub async fn metrics(&self, index: usize) -> String {
        let url = format!("{}/metrics", self.relay_url(index));
        let response = self.http.get(url).send().await.expect("the relay answers");
        response.text().await.expect("a metrics text")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.api_url)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.api_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Register a user; returns (token, user id).
    pub async fn register(&self, username: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/auth/register",
                None,
                &json!({ "username": username, "password": PASSWORD }),
            )
            .await;
        assert_eq!(status, 201, "registering {username}: {body}");
        (
            body["token"].as_str().unwrap().to_owned(),
            body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Log `token` out (through the API, which publishes the logout).
    pub async fn logout(&self, token: &str) {
        let (status, body) = self.post("/api/auth/logout", Some(token), &json!({})).await;
        assert_eq!(status, 204, "logging out: {body}");
    }

    /// Create a conversation of the caller with `members`; returns its id.
    pub async fn conversation(&self, token: &str, members: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/api/conversations",
                Some(token),
                &json!({ "memberIds": members }),
            )
            .await;
        assert!(
            matches!(status, 200 | 201),
            "creating a conversation: {body}"
        );
        body["id"].as_str().unwrap().to_owned()
    }

    /// A token signed with the stack's secret that expired an hour ago.
    pub fn expired_token(&self, user_id: &str) -> String {
        use secrecy::ExposeSecret;
        let now = chrono::Utc::now().timestamp();
        let claims = shared::auth::Claims {
            sub: user_id.to_owned(),
            iss: self.jwt.issuer.clone(),
            aud: self.jwt.audience.clone(),
            iat: now - 7200,
            exp: now - 3600,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: None,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.jwt.secret.expose_secret().as_bytes()),
        )
        .unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Stop the services first (their pools hold connections), then drop the database.
        self.relays.clear();
        self._stops.clear();
        let _ = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name),
            ])
            .output();
    }
}

/// The value of the metric `name` (with its labels, if any) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// Returns once a query of the API waits for a lock (one [`Stack::lock_table`] holds).
pub async fn until_a_query_waits_for_a_lock(db: &tokio_postgres::Client) {
    until_queries_wait_for_a_lock(db, 1).await;
}

/// Returns once `count` queries of the API wait for a lock (one [`Stack::lock_table`] holds).
pub async fn until_queries_wait_for_a_lock(db: &tokio_postgres::Client, count: i64) {
    let deadline = tokio::time::Instant::now() + crate::device::PATIENCE;
    loop {
        let row = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} queries did not wait for the lock within {:?}",
            crate::device::PATIENCE
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
