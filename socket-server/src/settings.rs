//! The relay's typed settings. Defaults below, overridden by `config/*.yaml`, `PARLEY__…`
//! variables and the ops contract variables (`SOCKET_PORT`, `SOCKET_HOST`, `API_URL`,
//! `REDIS_URL`, `JWT_SECRET`), which win.

use serde::Deserialize;
use shared::auth::JwtSettings;
use shared::settings::{load, SettingsError, Unread};

const DEFAULTS: &str = r#"
socket:
  host: 127.0.0.1
  port: 5000
  shutdown_timeout_secs: 5
  connect_timeout_ms: 10000
  outbox_capacity: 256
  max_uri_bytes: 8192
  max_headers: 100
  trusted_proxies: []
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
  sends_queued_per_socket: 32
  sends_in_flight: 20000
  store_lanes: 1
  store_batch_max: 256
  store_interval_ms: 20
  requests_per_socket: 8
  session_check_secs: 60
  session_cache_secs: 10
  sends_per_sec: 10
  sends_burst: 20
  typing_per_sec: 5
  connections_per_user: 10
  connects_per_ip_per_sec: 20
presence:
  ttl_secs: 30
  refresh_secs: 10
  offline_grace_ms: 5000
"#;

/// The environment variables of the ops contract and the setting each one sets.
pub const ENV_MAP: &[(&str, &str)] = &[
    ("SOCKET_HOST", "socket.host"),
    ("SOCKET_PORT", "socket.port"),
    ("API_URL", "api.url"),
    ("REDIS_URL", "redis.url"),
    ("JWT_SECRET", "jwt.secret"),
    ("TRUSTED_PROXIES", "socket.trusted_proxies"),
    ("CORS_ALLOWED_ORIGINS", "cors.allowed_origins"),
];

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub socket: SocketSettings,
    pub api: ApiSettings,
    pub redis: RedisSettings,
    pub jwt: JwtSettings,
    pub limits: Limits,
    pub presence: PresenceSettings,
    #[serde(default)]
    pub cors: CorsSettings,
}

/// Browser access, the same setting as the API's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CorsSettings {
    /// Browser origins allowed to open sessions cross-origin (`CORS_ALLOWED_ORIGINS`,
    /// comma-separated; exact origins or `scheme://host:*`). Unset: none (the all-in-one
    /// admits the loopback origins instead). Clients without `Origin` are never refused for it.
    pub allowed_origins: Option<shared::net::AllowedOrigins>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SocketSettings {
    pub host: String,
    /// `0` picks a free port; read it back with `Application::port`.
    pub port: u16,
    /// Upper bound on each shutdown phase: finishing the sends already queued, then closing
    /// the connections.
    pub shutdown_timeout_secs: u64,
    /// A connection that has not joined a namespace (authenticated) by then is closed.
    pub connect_timeout_ms: u64,
    /// Packets queued per connection; a client reading slower is disconnected
    /// (`slow consumer`).
    pub outbox_capacity: usize,
    /// Longest request target (path and query); beyond, 414 `uri_too_long`.
    pub max_uri_bytes: usize,
    /// Most header fields in a request; beyond, 431 `too_many_headers`.
    pub max_headers: usize,
    /// Reverse proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` give the client's address
    /// for the per-IP connect limit; empty: the TCP peer is the client. `TRUSTED_PROXIES` takes
    /// a comma-separated list.
    pub trusted_proxies: shared::net::TrustedProxies,
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
    /// Sends of one socket waiting to be stored; beyond, the ack is `rate_limited`.
    pub sends_queued_per_socket: usize,
    /// Sends of the whole relay waiting to be stored; beyond, the ack is `rate_limited`.
    pub sends_in_flight: usize,
    /// Store lanes: batches stored side by side (each lane one at a time; a user's sends
    /// always take the same lane, so their order is kept). One by default: a relay's batches
    /// one after the other grow with the load and never contend for the same conversation
    /// rows, which costs PostgreSQL about a third less CPU per message than four lanes.
    pub store_lanes: usize,
    /// Most messages stored in one batch (one request, one transaction); at most the API's
    /// `shared::port::MAX_STORE_BATCH`.
    pub store_batch_max: usize,
    /// Least time between the starts of two batches of a lane: under a sustained load, what
    /// arrives within it is stored in one batch, started by the first send after it (acks wait
    /// at most twice this much longer; relayed copies never wait). `0`: every batch starts as
    /// soon as the previous one is answered.
    pub store_interval_ms: u64,
    /// `sync` / `mark_*` requests of one socket waiting for the API; beyond, `rate_limited`.
    pub requests_per_socket: usize,
    /// How often the relay asks the API whether its sockets' sessions are still active.
    pub session_check_secs: u64,
    /// How long an active session confirmed by the API at connect is trusted for another
    /// connect of the same token (a logout event forgets it at once); `0` asks every time.
    pub session_cache_secs: u64,
    /// `send_message` rate per user on this relay (token bucket refill per second); beyond,
    /// the ack is `rate_limited` (retryable).
    pub sends_per_sec: u32,
    /// Bucket size: sends a user may make in a burst.
    pub sends_burst: u32,
    /// `typing` events per second per user (also the burst); the excess is dropped silently.
    pub typing_per_sec: u32,
    /// Authenticated sockets per user on this relay; beyond, CONNECT_ERROR
    /// `too_many_connections`.
    pub connections_per_user: usize,
    /// New sessions per second per client IP (also the burst); beyond, HTTP 429.
    pub connects_per_ip_per_sec: u32,
}

/// How the relay records presence in the bus (see `docs/protocol.md`, Presence).
#[derive(Debug, Clone, Deserialize)]
pub struct PresenceSettings {
    /// How long a connection counts as alive without a refresh: a relay that dies leaves its
    /// users online at most this long.
    pub ttl_secs: u64,
    /// How often the relay refreshes all its connections (a few hundred per round trip); below
    /// `ttl_secs`.
    pub refresh_secs: u64,
    /// A user is announced offline only after this long without any connection, so a device
    /// moving between relays does not flicker.
    pub offline_grace_ms: u64,
}

impl Settings {
    /// Load from the layered sources, with the keys given that no setting reads; one clear
    /// line on failure.
    pub fn load() -> Result<(Self, Unread), SettingsError> {
        let (settings, unread): (Settings, Unread) = load(DEFAULTS, ENV_MAP)?;
        settings.validate()?;
        Ok((settings, unread))
    }

    /// Checks serde cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        shared::auth::JwtKeys::new(&self.jwt).map_err(SettingsError)?;
        let l = &self.limits;
        if l.store_attempts == 0
            || l.sends_queued_per_socket == 0
            || l.sends_in_flight == 0
            || l.store_lanes == 0
            || l.store_batch_max == 0
            || l.requests_per_socket == 0
            || l.session_check_secs == 0
            || l.sends_per_sec == 0
            || l.sends_burst == 0
            || l.typing_per_sec == 0
            || l.connections_per_user == 0
            || l.connects_per_ip_per_sec == 0
            || self.socket.outbox_capacity == 0
        {
            return Err(SettingsError(
                "limits.* rates and counts and socket.outbox_capacity must be at least 1".into(),
            ));
        }
        if l.store_batch_max > shared::port::MAX_STORE_BATCH {
            return Err(SettingsError(format!(
                "limits.store_batch_max must be at most {} (the API's batch limit)",
                shared::port::MAX_STORE_BATCH
            )));
        }
        crate::chat::port_http::api_base(&self.api.url)
            .map_err(|e| SettingsError(format!("API_URL: {e}")))?;
        if self.presence.refresh_secs == 0 || self.presence.refresh_secs >= self.presence.ttl_secs {
            return Err(SettingsError(
                "presence.refresh_secs must be at least 1 and below presence.ttl_secs".into(),
            ));
        }
        Ok(())
    }
}
