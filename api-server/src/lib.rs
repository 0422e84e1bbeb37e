//! Parley's REST API: the system of record. It stores users, conversations and messages (each
//! exactly once, with a gap-free per-conversation `seq`), moves receipt watermarks, answers sync,
//! and publishes an event on the bus after every commit so the relays can push it live.
//!
//! # Layout
//! - [`startup`]: `Application::build(settings)` binds the port; `run_until_stopped(shutdown)`.
//! - [`settings`]: typed settings and their defaults.
//! - [`routes`]: one module per resource (`auth`, `users`, `conversations`, `messages`,
//!   `receipts`, `sync`, `health`, `metrics`, `openapi`) and `internal`, the relay's routes.
//! - [`attachments`]: image and voice uploads: storage (filesystem or S3), type sniffing,
//!   dimensions, thumbnails, durations, signed download URLs.
//! - [`auth`]: password hashing (Argon2id), the bearer-token extractor, the login throttle.
//! - [`service`]: what the API does, as plain functions the REST handlers and the relay port
//!   both call (send, store a batch, receipts, sync, memberships, sessions).
//! - [`port`]: [`port::InProcessPort`], the relay port served in process (all-in-one binary).
//! - [`store`]: the storage interface and its backends (`store::postgres`, …).
//! - [`publish`]: events published on the bus after each commit.
//! - [`error`]: the one error type and its JSON shape.
//! - [`metrics`]: Prometheus metrics.

pub mod attachments;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod port;
pub mod publish;
pub mod routes;
pub mod service;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
