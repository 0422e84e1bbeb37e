//! The split deployment of one test: its own PostgreSQL cluster and Redis, the API and two
//! relays as processes on free loopback ports, with their logs in a temporary directory (kept
//! when the test fails).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use test_support::{PgCluster, RedisServer};

use crate::service::{workspace_binary, Service, ServiceSpec};

/// The database the API creates in the test's cluster.
const DATABASE: &str = "parley";
/// How many relays the users spread over.
pub const RELAYS: usize = 2;

/// Everything one fault test runs. Dropped in field order: the services first, then their
/// dependencies, then (unless the test failed) the logs.
#[derive(Debug)]
pub struct Stack {
    pub api: Service,
    pub relays: Vec<Service>,
    pub postgres: PgCluster,
    pub redis: RedisServer,
    logs: Logs,
}

impl Stack {
    /// Start PostgreSQL, Redis, the API and the relays; returns once every service is ready.
    pub fn start() -> Stack {
        let api_binary = workspace_binary("api-server");
        let relay_binary = workspace_binary("socket-server");
        let logs = Logs::create();
        let postgres = PgCluster::start();
        let redis = RedisServer::start();
        let secret = format!("parley-faults-secret-{}", unique());
        let common = [("JWT_SECRET", secret.as_str()), ("RUST_LOG", "info")];
        let common = common.map(|(k, v)| (k.to_owned(), v.to_owned()));
        let api_port = free_port();
        let mut api_env = common.to_vec();
        api_env.extend(owned(&[
            ("DATABASE_URL", &postgres.url(DATABASE)),
            ("REDIS_URL", &redis.url()),
            ("API_HOST", "127.0.0.1"),
            ("API_PORT", &api_port.to_string()),
        ]));
        let api = Service::start(ServiceSpec {
            name: "api".into(),
            binary: api_binary,
            port: api_port,
            ready_path: "/ready",
            env: api_env,
            log: logs.file("api.log"),
        });
        let relays = (0..RELAYS)
            .map(|i| {
                let port = free_port();
                let mut env = common.to_vec();
                env.extend(owned(&[
                    ("API_URL", &api.url()),
                    ("REDIS_URL", &redis.url()),
                    ("SOCKET_HOST", "127.0.0.1"),
                    ("SOCKET_PORT", &port.to_string()),
                    // Presence of a killed relay's users settles within seconds, not a minute.
                    ("PARLEY__PRESENCE__TTL_SECS", "5"),
                    ("PARLEY__PRESENCE__REFRESH_SECS", "1"),
                ]));
                Service::start(ServiceSpec {
                    name: format!("relay{i}"),
                    binary: relay_binary.clone(),
                    port,
                    ready_path: "/health",
                    env,
                    log: logs.file(&format!("relay{i}.log")),
                })
            })
            .collect();
        Stack {
            api,
            relays,
            postgres,
            redis,
            logs,
        }
    }

    /// The relays' base URLs, in order.
    pub fn relay_urls(&self) -> Vec<String> {
        self.relays.iter().map(Service::url).collect()
    }

    /// Rows of `sql` run in Parley's database, columns separated by `|`.
    pub fn query(&self, sql: &str) -> Vec<String> {
        self.postgres.query(DATABASE, sql)
    }

    /// Where the services' logs are.
    pub fn log_dir(&self) -> &Path {
        &self.logs.dir
    }
}

/// The temporary directory of the logs; removed on drop unless the test is failing.
#[derive(Debug)]
struct Logs {
    dir: PathBuf,
}

impl Logs {
    fn create() -> Logs {
        let dir = std::env::temp_dir().join(format!("parley-faults-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Logs { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the services' logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A loopback port nobody listens on now (the service binds it a moment later; the services
/// are restarted on it, so it must be fixed rather than `0`).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free loopback port: {e}"))
}

/// A name no other test uses at the same time.
fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH);
    format!(
        "{}-{}",
        std::process::id(),
        nanos.map_or(0, |d| d.as_nanos())
    )
}
