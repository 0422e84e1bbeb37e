//! The API's typed settings. Defaults below, overridden by `config/*.yaml`, `PARLEY__…` variables
//! and the ops contract variables (`DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`, `API_PORT`, …).

use serde::Deserialize;
use shared::auth::JwtSettings;
use shared::settings::{load, SettingsError, Unread};

const DEFAULTS: &str = r#"
api:
  host: 127.0.0.1
  port: 3000
  shutdown_timeout_secs: 10
  body_timeout_ms: 10000
  keep_alive_secs: 5
  trusted_proxies: []
database:
  url: postgres://postgres@127.0.0.1:5432/parley
  pool_size: 16
  query_timeout_secs: 10
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
  login_failures_per_account: 100
  login_failures_per_ip: 50
  login_window_secs: 300
  registrations_per_ip: 100
  sends_per_sec: 10
  sends_burst: 20
  conversations_per_minute: 6
  conversations_burst: 20
attachments:
  url: file://data/attachments
  image_max_bytes: 10485760
  image_max_pixels: 40000000
  voice_max_bytes: 5242880
  voice_max_ms: 300000
  uploads_per_minute: 30
  user_quota_bytes: 1073741824
  user_quota_window_secs: 86400
  thumbnail_px: 320
  signed_url_ttl_secs: 3600
  unattached_ttl_secs: 86400
  gc_interval_secs: 600
  upload_timeout_secs: 300
  decodes_at_once: 0
  decode_wait_secs: 10
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
    ("ATTACHMENTS_URL", "attachments.url"),
    ("ATTACHMENTS_S3_ENDPOINT", "attachments.s3_endpoint"),
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
    #[serde(default)]
    pub attachments: AttachmentSettings,
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
    /// An idle keep-alive connection is closed after this long (`0`: one request per
    /// connection). Behind a balancer or proxy that reuses idle connections to the API, it must
    /// outlast the balancer's own idle timeout, or the API closes a connection the balancer is
    /// sending a request on and the client gets a 502.
    pub keep_alive_secs: u64,
    /// Reverse proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` give the client's address
    /// for per-IP limits; empty: the TCP peer is the client. `TRUSTED_PROXIES` takes a
    /// comma-separated list.
    pub trusted_proxies: shared::net::TrustedProxies,
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    /// How long one PostgreSQL operation may take once it holds a connection; past it the
    /// request gets 503 `service_unavailable` and the connection is closed, not pooled again
    /// (a database that hangs — stopped, or a network path that drops packets — costs each
    /// request this long, never for ever). SQLite does not use it.
    pub query_timeout_secs: u64,
    /// Create the PostgreSQL database at start-up when it does not exist.
    pub create_if_missing: bool,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DatabaseSettings")
            .field("pool_size", &self.pool_size)
            .field("query_timeout_secs", &self.query_timeout_secs)
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
    /// Failed logins per username from one client address allowed in a window before 429 (for
    /// that address).
    pub login_failures_per_window: u32,
    /// Failed logins per username from any addresses allowed in a window before 429 (for all).
    pub login_failures_per_account: u32,
    /// Failed logins per client IP (any usernames) allowed in a window before 429.
    pub login_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// Registrations per client IP in the same window (each hashes a password, tens of ms of
    /// CPU); beyond, 429 `rate_limited` with `Retry-After`. `0`: not limited.
    pub registrations_per_ip: u32,
    /// `POST /api/messages` per user on this replica (token bucket refill per second, and its
    /// size); beyond, 429 `rate_limited` with `Retry-After`.
    pub sends_per_sec: u32,
    pub sends_burst: u32,
    /// Conversations a user may create (`POST /api/conversations`) per minute on this replica
    /// (token bucket refill per minute, and its size); beyond, 429 `rate_limited` with
    /// `Retry-After`. Finding the existing direct conversation is not counted. Each
    /// conversation lengthens every member's conversation list.
    pub conversations_per_minute: u32,
    pub conversations_burst: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CorsSettings {
    /// Browser origins allowed to call the API cross-origin (`CORS_ALLOWED_ORIGINS`,
    /// comma-separated; exact origins or `scheme://host:*`). Unset: none (the all-in-one
    /// admits the loopback origins instead).
    pub allowed_origins: Option<shared::net::AllowedOrigins>,
}

/// Image and voice uploads: where they are kept, their limits, signed URLs, garbage collection.
/// Every one is documented in `docs/operations.md`.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct AttachmentSettings {
    /// `file:///dir` (or a plain path) for the local filesystem, `s3://bucket/prefix` for S3 or
    /// an S3-compatible server (`ATTACHMENTS_URL`); empty: a temporary directory removed at
    /// exit (tests, `--ephemeral`).
    pub url: String,
    /// An S3-compatible server's endpoint (`ATTACHMENTS_S3_ENDPOINT`, else `AWS_ENDPOINT`);
    /// path-style requests, plain HTTP allowed for `http://`.
    pub s3_endpoint: Option<String>,
    /// Region, access key and secret when not taken from the `AWS_*` variables.
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<secrecy::SecretString>,
    /// Largest image upload, in bytes, and most pixels (width × height).
    pub image_max_bytes: u64,
    pub image_max_pixels: u64,
    /// Largest voice upload, in bytes, and longest duration, in milliseconds.
    pub voice_max_bytes: u64,
    pub voice_max_ms: u64,
    /// Uploads per user per minute on one replica; beyond, 429 `rate_limited`.
    pub uploads_per_minute: u32,
    /// Bytes a user may upload within `user_quota_window_secs` (attached or not); beyond, 413
    /// `quota_exceeded` until older uploads leave the window.
    pub user_quota_bytes: u64,
    /// The quota's rolling window: uploads older than this no longer count.
    pub user_quota_window_secs: u64,
    /// The thumbnail's longer side, in pixels.
    pub thumbnail_px: u32,
    /// How long a signed download URL stays valid.
    pub signed_url_ttl_secs: u64,
    /// An upload no message references after this long is deleted.
    pub unattached_ttl_secs: u64,
    /// How often each replica looks for such uploads.
    pub gc_interval_secs: u64,
    /// An upload's body must arrive whole within this long (`api.body_timeout_ms` is for the
    /// other routes); 408 `request_timeout` otherwise.
    pub upload_timeout_secs: u64,
    /// Uploads probed (an image decoded for its thumbnail, a voice note read for its duration)
    /// at once on this replica; `0`: as many as the replica has CPUs. A decoded image holds up to
    /// 4 bytes per pixel (160 MB at 40 Mpx), so this bounds the memory uploads take together.
    pub decodes_at_once: usize,
    /// How long an upload waits for its turn to be probed; beyond, 503 `service_unavailable`
    /// (retryable).
    pub decode_wait_secs: u64,
}

impl Default for AttachmentSettings {
    /// The documented defaults, but a temporary directory for storage.
    fn default() -> Self {
        Self {
            url: String::new(),
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            image_max_bytes: 10 << 20,
            image_max_pixels: 40_000_000,
            voice_max_bytes: 5 << 20,
            voice_max_ms: 300_000,
            uploads_per_minute: 30,
            user_quota_bytes: 1 << 30,
            user_quota_window_secs: 86_400,
            thumbnail_px: 320,
            signed_url_ttl_secs: 3600,
            unattached_ttl_secs: 86_400,
            gc_interval_secs: 600,
            upload_timeout_secs: 300,
            decodes_at_once: 0,
            decode_wait_secs: 10,
        }
    }
}

impl std::fmt::Debug for AttachmentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL and endpoint hold no secret; the keys do.
        f.debug_struct("AttachmentSettings")
            .field("url", &self.url)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("image_max_bytes", &self.image_max_bytes)
            .field("voice_max_bytes", &self.voice_max_bytes)
            .finish_non_exhaustive()
    }
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
        if self.limits.page_default > self.limits.page_max || self.limits.page_max < 1 {
            return Err(SettingsError(
                "limits.page_default must be between 1 and limits.page_max".into(),
            ));
        }
        let a = &self.attachments;
        if a.image_max_bytes == 0 || a.voice_max_bytes == 0 || a.thumbnail_px == 0 {
            return Err(SettingsError(
                "attachments.image_max_bytes, voice_max_bytes and thumbnail_px must be positive"
                    .into(),
            ));
        }
        if a.signed_url_ttl_secs == 0 || a.gc_interval_secs == 0 {
            return Err(SettingsError(
                "attachments.signed_url_ttl_secs and gc_interval_secs must be positive".into(),
            ));
        }
        if self.database.pool_size == 0 || self.database.query_timeout_secs == 0 {
            return Err(SettingsError(
                "database.pool_size and database.query_timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
