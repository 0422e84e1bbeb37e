//! The API's integration suite: one binary (link once), one module per area. Each test starts its
//! own API on port 0 against a fresh database and bus prefix (`helpers::spawn_app`), so they run
//! in parallel and in any order.
//!
//! # Layout
//! - `helpers`: `spawn_app()` and request helpers; `backend`: the one place that picks the
//!   storage and bus (`PARLEY_TEST_BACKEND`: PostgreSQL or SQLite, with Redis) and touches
//!   them directly.
//! - `attachments`, `attachments_refusals`: uploads, downloads and messages with images and
//!   voice notes, on a directory and on a real S3-protocol server (`attachments_s3`), with
//!   media made in the test (`attachments_media`).
//! - `auth`, `tokens`: registration, login, logout, the throttle; hostile tokens.
//! - `users`, `conversations`, `messages`, `receipts`, `sync`: the resources.
//! - `events`: what the API publishes on the bus after each commit.
//! - `internal`: the relay's internal routes (service token, batch store, look-ups).
//! - `ops`: health, readiness, metrics, OpenAPI and the error shape of the plumbing.
//! - `deletes`: rows an operator deletes by hand, and what goes with them.
//! - `input_validation`, `sync_cursors`: hostile text on every text field; cursors the server
//!   never issued.

mod attachments;
mod attachments_media;
mod attachments_refusals;
mod attachments_s3;
mod auth;
mod backend;
mod bus_outage;
mod conversations;
mod deletes;
mod events;
mod helpers;
mod http_edges;
mod input_validation;
mod internal;
mod messages;
mod ops;
mod receipts;
mod sync;
mod sync_cursors;
mod tokens;
mod users;
