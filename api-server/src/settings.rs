//! The API's typed settings. Defaults below, overridden by `config/*.yaml`, `PARLEY__…` variables
//! and the ops contract variables (`DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`, `API_PORT`, …).

use serde::Deserialize;
use shared::auth::JwtSettings;
use shared::settings::{load, SettingsError};

const DEFAULTS: &str = r#"
api:
  host: 127.0.0.1
  port: 3000
  shutdown_timeout_secs: 10
  body_timeout_ms: 10000
  trusted_proxies: []
database:
  url: postgres://postgres@127.0.0.1:5432/parley
  pool_size: 16
  create_if_missing: true
redis:
  url: redis://127.0.0.1:6379
  prefix: parley
jwt:
  issuer: parley
  audience: parley-clients
  ttl_secs: 604800
  leeway_secs: 30
limits:
  body_bytes: 65536
  text_chars: 4000
  page_max: 200
  page_default: 50
  sync_max: 500
  search_max: 50
  login_failures_per_window: 5
  login_failures_per_ip: 50
  login_window_secs: 300
  sends_per_sec: 10
  sends_burst: 20
"#;

/// The environment variables of the ops contract and the setting each one sets.
pub const ENV_MAP: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("JWT_SECRET", "jwt.secret"),
    ("API_HOST", "api.host"),
    ("API_PORT", "api.port"),
    ("CORS_ALLOWED_ORIGINS", "cors.allowed_origins"),
    ("TRUSTED_PROXIES", "api.trusted_proxies"),
];

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub api: HttpSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub jwt: JwtSettings,
    pub limits: Limits,
    #[serde(default)]
    pub cors: CorsSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    /// `0` picks a free port; read it back with `Application::port`.
    pub port: u16,
    pub shutdown_timeout_secs: u64,
    /// A request body must arrive whole within this long from the start of the request; a
    /// client that sends less than its `Content-Length` gets 408 `request_timeout` instead of
    /// holding the connection.
    pub body_timeout_ms: u64,
    /// Reverse proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` give the client's address
    /// for per-IP limits; empty: the TCP peer is the client. `TRUSTED_PROXIES` takes a
    /// comma-separated list.
    pub trusted_proxies: shared::net::TrustedProxies,
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    /// Create the PostgreSQL database at start-up when it does not exist.
    pub create_if_missing: bool,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DatabaseSettings")
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every channel and key (several deployments can share one Redis).
    pub prefix: String,
}

/// Sizes and rates. Every one is documented in `docs/operations.md`.
#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    /// Largest JSON body accepted (413 `payload_too_large` above).
    pub body_bytes: usize,
    /// Longest message content, in characters.
    pub text_chars: usize,
    /// Largest and default page of messages.
    pub page_max: i64,
    pub page_default: i64,
    /// Most changes one sync answer carries.
    pub sync_max: i64,
    /// Most users one search answers.
    pub search_max: i64,
    /// Failed logins per username allowed in a window before 429.
    pub login_failures_per_window: u32,
    /// Failed logins per client IP (any usernames) allowed in a window before 429.
    pub login_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// `POST /api/messages` per user on this replica (token bucket refill per second, and its
    /// size); beyond, 429 `rate_limited` with `Retry-After`.
    pub sends_per_sec: u32,
    pub sends_burst: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CorsSettings {
    /// Browser origins allowed to call the API cross-origin (`CORS_ALLOWED_ORIGINS`,
    /// comma-separated; exact origins or `scheme://host:*`). Unset: none (the all-in-one
    /// admits the loopback origins instead).
    pub allowed_origins: Option<shared::net::AllowedOrigins>,
}

impl Settings {
    /// Load from the layered sources; one clear line on failure.
    pub fn load() -> Result<Self, SettingsError> {
        let settings: Settings = load(DEFAULTS, ENV_MAP)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks serde cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        shared::auth::JwtKeys::new(&self.jwt).map_err(SettingsError)?;
        if self.limits.page_default > self.limits.page_max || self.limits.page_max < 1 {
            return Err(SettingsError(
                "limits.page_default must be between 1 and limits.page_max".into(),
            ));
        }
        if self.database.pool_size == 0 {
            return Err(SettingsError(
                "database.pool_size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
