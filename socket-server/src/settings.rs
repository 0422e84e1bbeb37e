//! The relay's typed settings. Defaults below, overridden by `config/*.yaml`, `PARLEY__…`
//! variables and the ops contract variables (`SOCKET_PORT`, `SOCKET_HOST`, `API_URL`,
//! `REDIS_URL`, `JWT_SECRET`), which win.

use serde::Deserialize;
use shared::auth::JwtSettings;
use shared::settings::{load, SettingsError};

const DEFAULTS: &str = r#"
socket:
  host: 127.0.0.1
  port: 5000
  shutdown_timeout_secs: 5
api:
  url: http://127.0.0.1:3000
  timeout_ms: 5000
redis:
  url: redis://127.0.0.1:6379
  prefix: parley
jwt:
  issuer: parley
  audience: parley-clients
  ttl_secs: 604800
  leeway_secs: 30
limits:
  text_chars: 4000
  store_attempts: 4
  store_backoff_ms: 200
  membership_cache_secs: 10
  sends_queued_per_socket: 32
"#;

/// The environment variables of the ops contract and the setting each one sets.
pub const ENV_MAP: &[(&str, &str)] = &[
    ("SOCKET_HOST", "socket.host"),
    ("SOCKET_PORT", "socket.port"),
    ("API_URL", "api.url"),
    ("REDIS_URL", "redis.url"),
    ("JWT_SECRET", "jwt.secret"),
];

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub socket: SocketSettings,
    pub api: ApiSettings,
    pub redis: RedisSettings,
    pub jwt: JwtSettings,
    pub limits: Limits,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SocketSettings {
    pub host: String,
    /// `0` picks a free port; read it back with `Application::port`.
    pub port: u16,
    /// Upper bound on draining at shutdown.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Base URL of the REST API (plain http on loopback or a private network).
    pub url: String,
    /// Timeout of one HTTP request to the API.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every channel and key; must match the API's.
    pub prefix: String,
}

/// Sizes, retries and caches of the chat layer.
#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    /// Longest message content, in characters (as the API's `limits.text_chars`).
    pub text_chars: usize,
    /// Attempts to store one message through the API on 5xx or connection errors.
    pub store_attempts: u32,
    /// First backoff between attempts (doubled each time).
    pub store_backoff_ms: u64,
    /// How long a membership answer of the API is trusted.
    pub membership_cache_secs: u64,
    /// Sends of one socket waiting to be stored; beyond, the ack is `rate_limited`.
    pub sends_queued_per_socket: usize,
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
        if self.limits.store_attempts == 0 || self.limits.sends_queued_per_socket == 0 {
            return Err(SettingsError(
                "limits.store_attempts and limits.sends_queued_per_socket must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}
