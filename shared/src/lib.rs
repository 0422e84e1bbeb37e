//! Parley's shared vocabulary: what the API, the relay and their clients agree on.
//!
//! # Layout
//! - [`ids`]: newtype ids (`UserId`, `ConversationId`, `MessageId`), strings on the wire.
//! - [`domain`]: parsed, validated inputs (`MessageContent::parse`, `ClientMsgId::parse`, …).
//! - [`wire`]: the JSON shapes of the REST API and Socket.IO events (camelCase); `rfc3339`
//!   reads and writes the timestamps of a message's hot path.
//! - [`errors`]: the one table of error codes, their HTTP status and retry rule.
//! - [`events`]: what travels on the bus between the API and the relays, and the channel names.
//! - [`bus`]: the bus interface with a Redis and an in-process implementation.
//! - [`limits`]: token-bucket rate limiters per key.
//! - [`net`]: the client's address behind trusted reverse proxies.
//! - [`owner_only`]: files and directories only their owner may read (data directory, secrets).
//! - [`port`]: the typed port between the relay and the API (in process or over HTTP).
//! - [`auth`]: JWT claims, signing and verification with pinned algorithm, `iss`, `aud`, `exp`.
//! - [`cli`]: `--help` and `--version`, shared by every binary.
//! - [`settings`]: layered settings loading (defaults, `config/*.yaml`, environment).
//! - [`telemetry`]: tracing subscriber set-up.
//! - [`process_metrics`]: the standard `process_*` metrics, read from `/proc`.
//! - [`request_id`]: the `x-request-id` of each HTTP request and the access log's target.
//! - [`shutdown`]: the SIGTERM / Ctrl-C future services stop on.
//! - [`alloc`]: the binaries' allocator (jemalloc).
//!
//! This crate pulls in no web framework, database driver or WebSocket library.

pub mod alloc;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod domain;
pub mod errors;
pub mod events;
pub mod ids;
pub mod limits;
pub mod net;
pub mod owner_only;
pub mod port;
pub mod process_metrics;
pub mod request_id;
mod rfc3339;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
#[cfg(test)]
mod ts_export;
pub mod wire;
