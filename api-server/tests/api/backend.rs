//! The one place that knows which storage and bus the suite runs against ([`BACKEND`], chosen by
//! `PARLEY_TEST_BACKEND` = `postgres` (default) | `sqlite`), and everything that touches them
//! directly: provisioning a database per test, dropping it, subscribing to users' channels,
//! writing presence as a relay would. Both backends use Redis for the bus.

use api_server::settings::{
    CorsSettings, DatabaseSettings, HttpSettings, Limits, RedisSettings, Settings,
};
use api_server::startup::Application;
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{json, Value};
use shared::auth::JwtSettings;
use shared::wire::User;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::mpsc;

/// The storage and bus every test of this binary runs against.
pub static BACKEND: LazyLock<Backend> = LazyLock::new(Backend::from_env);

const PG_HOST: &str = "127.0.0.1";
const PG_PORT: u16 = 5432;
const PG_USER: &str = "postgres";
const REDIS_URL: &str = "redis://127.0.0.1:6379";
const PG_START_HINT: &str = "start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start";
const REDIS_START_HINT: &str =
    "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no";

/// Backends the suite knows how to provision. The in-process bus comes with the all-in-one
/// binary; only this enum's methods change then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    PostgresRedis,
    /// The embedded SQLite store, one file in its own temporary directory per test.
    SqliteRedis,
}

impl Backend {
    /// `PARLEY_TEST_BACKEND`: `postgres` (the default) or `sqlite`.
    fn from_env() -> Self {
        match std::env::var("PARLEY_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("postgres") => Backend::PostgresRedis,
            Ok("sqlite") => Backend::SqliteRedis,
            Ok(other) => panic!("PARLEY_TEST_BACKEND={other:?}: use postgres or sqlite"),
        }
    }

    /// Create what one test needs (its own database) and fill the settings that point at it.
    pub async fn provision(self, settings: &mut Settings) {
        match self {
            Backend::PostgresRedis => {
                let admin = pg_admin().await;
                let name = settings_db_name(settings);
                admin
                    .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
                check_redis().await;
            }
            // The store creates the directory and the file.
            Backend::SqliteRedis => check_redis().await,
        }
    }

    pub async fn build(self, settings: Settings) -> Application {
        match self {
            Backend::PostgresRedis | Backend::SqliteRedis => Application::build(settings)
                .await
                .unwrap_or_else(|e| panic!("Application::build failed: {e:#}")),
        }
    }

    /// Best-effort removal of the test's database and bus keys. Blocking: called from `Drop`.
    pub fn cleanup(self, db_name: String, prefix: String) {
        match self {
            Backend::PostgresRedis => {
                // Our own runtime on our own thread: `Drop` may run inside the test's runtime.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        let Ok((client, conn)) = pg_connect("postgres").await else {
                            return;
                        };
                        tokio::spawn(conn);
                        // FORCE: the app's pool may still hold connections.
                        let _ = client
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
                            ))
                            .await;
                        clean_redis(&prefix).await;
                    });
                })
                .join();
            }
            Backend::SqliteRedis => {
                let _ = std::fs::remove_dir_all(&db_name);
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(clean_redis(&prefix));
                })
                .join();
            }
        }
    }

    /// Listen to the events published for `users` (subscribed before this returns).
    pub async fn subscribe(self, prefix: &str, users: &[&str]) -> EventStream {
        match self {
            Backend::PostgresRedis | Backend::SqliteRedis => {
                let client = redis::Client::open(REDIS_URL).expect("redis url");
                let mut pubsub = client
                    .get_async_pubsub()
                    .await
                    .unwrap_or_else(|e| panic!("Redis is unreachable ({e}); {REDIS_START_HINT}"));
                let mut channels = HashMap::new();
                for user in users {
                    let channel = format!("{prefix}:u:{user}");
                    pubsub.subscribe(&channel).await.expect("SUBSCRIBE");
                    channels.insert(channel, (*user).to_owned());
                }
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(user) = channels.get(msg.get_channel_name()) else {
                            continue;
                        };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        let value = serde_json::from_str(&payload)
                            .unwrap_or_else(|_| json!({ "unparsable": payload }));
                        if tx.send((user.clone(), value)).is_err() {
                            break;
                        }
                    }
                });
                EventStream { rx }
            }
        }
    }

    /// Open a transaction the app does not own and leave it open until the guard is dropped.
    /// PostgreSQL: a write transaction in another database of the server, as another service
    /// sharing it (or a slow batch job) would. SQLite: a read transaction on the app's own file
    /// from another connection (a backup, a reporting tool): with one writer at a time, the only
    /// transaction that can stay open beside the app's writes is a reader, and WAL must let the
    /// app's writes commit and be synced while it holds its snapshot.
    pub async fn unrelated_open_transaction(self, db_name: &str) -> UnrelatedTransaction {
        match self {
            Backend::PostgresRedis => {
                let client = pg_admin().await;
                client
                    .batch_execute("BEGIN; SELECT txid_current();")
                    .await
                    .expect("opening a transaction");
                UnrelatedTransaction {
                    _connection: Box::new(client),
                }
            }
            Backend::SqliteRedis => {
                use diesel::connection::SimpleConnection;
                let mut conn = sqlite_connection(db_name);
                conn.batch_execute("BEGIN; SELECT count(*) FROM changes;")
                    .expect("opening a read transaction");
                UnrelatedTransaction {
                    _connection: Box::new(conn),
                }
            }
        }
    }

    /// Run `sql` on the test's database as an operator would by hand (`psql`; `sqlite3` with
    /// foreign keys on, as the app's own connections have them). `Err` holds the database's
    /// refusal.
    pub async fn operator_sql(self, db_name: &str, sql: &str) -> Result<(), String> {
        match self {
            Backend::PostgresRedis => {
                let client = operator_pg(db_name).await;
                client.batch_execute(sql).await.map_err(|e| {
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
                })
            }
            Backend::SqliteRedis => {
                use diesel::connection::SimpleConnection;
                let mut conn = sqlite_connection(db_name);
                conn.batch_execute(sql).map_err(|e| e.to_string())
            }
        }
    }

    /// The one integer `query` answers on the test's database (e.g. a `count(*)`).
    pub async fn operator_count(self, db_name: &str, query: &str) -> i64 {
        match self {
            Backend::PostgresRedis => {
                let client = operator_pg(db_name).await;
                client
                    .query_one(query, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{query}: {e}"))
                    .get(0)
            }
            Backend::SqliteRedis => {
                use diesel::RunQueryDsl;
                let mut conn = sqlite_connection(db_name);
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                    "({query})"
                )))
                .get_result(&mut conn)
                .unwrap_or_else(|e| panic!("{query}: {e}"))
            }
        }
    }

    /// Make `user` look connected to a relay right now, as the relays record it.
    pub async fn mark_online(self, prefix: &str, user: &str) {
        match self {
            Backend::PostgresRedis | Backend::SqliteRedis => {
                let client = redis::Client::open(REDIS_URL).expect("redis url");
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap_or_else(|e| panic!("Redis is unreachable ({e}); {REDIS_START_HINT}"));
                let now_ms = chrono::Utc::now().timestamp_millis();
                let key = format!("{prefix}:presence:{user}");
                redis::pipe()
                    .zadd(&key, "relay-test:conn-1", now_ms + 60_000)
                    .ignore()
                    .expire(&key, 120)
                    .ignore()
                    .set_ex(format!("{prefix}:lastseen:{user}"), now_ms, 120)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .expect("writing presence");
            }
        }
    }
}

/// What names the test's database: the PostgreSQL database name, or the SQLite file's own
/// temporary directory (removed with it).
pub fn settings_db_name(settings: &Settings) -> String {
    let url = &settings.database.url;
    match url.strip_prefix("sqlite://") {
        Some(path) => PathBuf::from(path)
            .parent()
            .expect("the SQLite file is in its own directory")
            .to_string_lossy()
            .into_owned(),
        None => url
            .rsplit('/')
            .next()
            .expect("database url has a name")
            .to_owned(),
    }
}

/// The SQLite file in a test's directory (see [`settings_db_name`]).
fn sqlite_file(dir: &str) -> String {
    format!("{dir}/parley.db")
}

/// A connection of its own to a test's PostgreSQL database.
async fn operator_pg(db_name: &str) -> tokio_postgres::Client {
    let (client, conn) = pg_connect(db_name)
        .await
        .unwrap_or_else(|e| panic!("connecting to {db_name}: {e}"));
    tokio::spawn(conn);
    client
}

/// A connection of its own to a test's SQLite file, set up as the app's own connections are
/// (foreign keys on, waiting for the writer).
fn sqlite_connection(dir: &str) -> diesel::SqliteConnection {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let path = sqlite_file(dir);
    let mut conn = diesel::SqliteConnection::establish(&path)
        .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    conn.batch_execute("PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;")
        .expect("setting up the connection");
    conn
}

/// Revoked-token and presence keys expire anyway; leave no litter.
async fn clean_redis(prefix: &str) {
    if let Ok(redis) = redis::Client::open(REDIS_URL) {
        if let Ok(mut conn) = redis.get_multiplexed_async_connection().await {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _ = redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<()>(&mut conn)
                    .await;
            }
        }
    }
}

async fn pg_connect(
    db: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    let conf =
        format!("host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={db} connect_timeout=5");
    tokio_postgres::connect(&conf, tokio_postgres::NoTls).await
}

/// A connection to the `postgres` maintenance database.
async fn pg_admin() -> tokio_postgres::Client {
    let (client, conn) = pg_connect("postgres").await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {PG_HOST}:{PG_PORT} as {PG_USER} ({e}); {PG_START_HINT}"
        )
    });
    tokio::spawn(conn);
    client
}

async fn check_redis() {
    let client = redis::Client::open(REDIS_URL).expect("redis url");
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    })
    .await;
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("Redis is unreachable at {REDIS_URL} ({e}); {REDIS_START_HINT}"),
        Err(_) => panic!("Redis did not answer at {REDIS_URL}; {REDIS_START_HINT}"),
    }
}

/// Settings for one test: port 0, its own database name and bus prefix, a random 64-byte secret,
/// issuer and audience that differ from the defaults (so the test proves they are honoured).
pub fn test_settings() -> Settings {
    let id = uuid::Uuid::new_v4();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    Settings {
        api: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            shutdown_timeout_secs: 1,
            body_timeout_ms: 10_000,
            keep_alive_secs: 5,
            trusted_proxies: Default::default(),
        },
        database: DatabaseSettings {
            url: match *BACKEND {
                Backend::PostgresRedis => format!(
                    "postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/parley_test_{}",
                    id.simple()
                ),
                Backend::SqliteRedis => format!(
                    "sqlite://{}",
                    sqlite_file(
                        &std::env::temp_dir()
                            .join(format!("parley_test_{}", id.simple()))
                            .to_string_lossy()
                    )
                ),
            },
            pool_size: 8,
            query_timeout_secs: 10,
            create_if_missing: false,
        },
        redis: RedisSettings {
            url: REDIS_URL.into(),
            prefix: format!("parley-test-{id}"),
        },
        jwt: JwtSettings {
            secret: SecretString::from(secret),
            issuer: "parley-test-issuer".into(),
            audience: "parley-test-clients".into(),
            ttl_secs: 3600,
            leeway_secs: 0,
        },
        limits: Limits {
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

/// Keeps a transaction open elsewhere; dropping it closes the connection, which ends it.
pub struct UnrelatedTransaction {
    /// The connection (PostgreSQL client or SQLite connection) holding the transaction.
    _connection: Box<dyn std::any::Any>,
}

/// Events received on users' channels, as `(user id, envelope)`.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<(String, Value)>,
}

impl EventStream {
    /// The next event for anyone, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Wait until an event of type `kind` arrived for each of `users`; returns them by user.
    /// Other events are kept in the returned list of skipped ones.
    pub async fn wait_for(
        &mut self,
        kind: &str,
        users: &[&User],
        wait: Duration,
    ) -> HashMap<String, Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut found = HashMap::new();
        while found.len() < users.len() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some((user, envelope)) if envelope["event"]["type"] == kind => {
                    found.entry(user).or_insert(envelope);
                }
                Some(_) => {}
                None => break,
            }
        }
        for user in users {
            assert!(
                found.contains_key(&user.id.to_string()),
                "no {kind} event reached user {} within {wait:?} (got {found:?})",
                user.id
            );
        }
        found
    }
}
