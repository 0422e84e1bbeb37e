//! Parley's REST API: the system of record. It stores users, conversations and messages (each
//! exactly once, with a gap-free per-conversation `seq`), moves receipt watermarks, answers sync,
//! and publishes an event on the bus after every commit so the relays can push it live.
//!
//! # Layout
//! - [`startup`]: `Application::build(settings)` binds the port; `run_until_stopped(shutdown)`.
//! - [`settings`]: typed settings and their defaults.
//! - [`routes`]: one module per resource (`auth`, `users`, `conversations`, `messages`,
//!   `receipts`, `sync`, `health`, `metrics`, `openapi`).
//! - [`auth`]: password hashing (Argon2id), the bearer-token extractor, the login throttle.
//! - [`store`]: the storage interface and its backends (`store::postgres`, …).
//! - [`publish`]: events published on the bus after each commit.
//! - [`error`]: the one error type and its JSON shape.
//! - [`metrics`]: Prometheus metrics.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod publish;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
