//! Engine.IO server settings, with the defaults of the reference server where it has one.

use shared::net::AllowedOrigins;
use std::time::Duration;

/// Settings of one Engine.IO endpoint.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Path the endpoint answers under; requests elsewhere go to the fallback handler.
    /// Default `/socket.io/` (the Socket.IO client's default).
    pub path: String,
    /// The server pings every `ping_interval` (default 25 s, as the reference server).
    pub ping_interval: Duration,
    /// A session whose client does not answer a ping within `ping_timeout` is closed
    /// (default 20 s).
    pub ping_timeout: Duration,
    /// Largest packet or polling payload accepted, in bytes; announced in the handshake.
    /// Default 1 000 000 (the reference server's `maxHttpBufferSize`).
    pub max_payload: usize,
    /// How long a WebSocket upgrade from polling may take between the connection and the `5`
    /// packet (default 10 s).
    pub upgrade_timeout: Duration,
    /// Capacity, in packets, of a session's outbox: a Socket.IO packet with binary attachments
    /// (its text frame and each attachment) counts once, like a ping or a text message. When it
    /// is full the client reads too slowly and the session is closed with
    /// [`CloseReason::SlowConsumer`](super::CloseReason). Default 256.
    pub outbox_capacity: usize,
    /// Bytes of queued WebSocket frames gathered into one write (default 8 KiB; a single larger
    /// packet is written whole). The write buffer exists only while there is something to
    /// write, and reads go through a buffer on the stack: an idle connection holds neither.
    pub ws_write_buffer: usize,
    /// Browser origins allowed to open sessions cross-origin (default: any, for test servers;
    /// the relay sets `CORS_ALLOWED_ORIGINS`). A handshake or preflight from an origin off the
    /// list is refused with 403; allowed origins get CORS headers on every polling answer.
    /// Requests without `Origin`, and same-origin ones, are never refused for it.
    pub allowed_origins: AllowedOrigins,
    /// Upper bound on the time [`serve`](super::serve) takes to return once shutdown is asked.
    pub shutdown_timeout: Duration,
    /// Longest request target (path and query) answered normally, in bytes; a longer one gets
    /// 414 `uri_too_long` in the error shape (default 8 KiB). Past 65 534 bytes hyper's parser
    /// refuses the request itself, before any of our code runs: 414 with an empty body.
    pub max_uri_len: usize,
    /// Most header fields a request may carry; more get 431 `too_many_headers` in the error
    /// shape (default 100).
    pub max_headers: usize,
    /// Header fields hyper's parser accepts before it refuses the request itself with an empty
    /// 431 (default 1 000; above `max_headers` so that our answer covers the gap).
    pub max_headers_parsed: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            outbox_capacity: 256,
            ws_write_buffer: 8 * 1024,
            allowed_origins: AllowedOrigins::any(),
            shutdown_timeout: Duration::from_secs(5),
            max_uri_len: 8 * 1024,
            max_headers: 100,
            max_headers_parsed: 1000,
        }
    }
}
