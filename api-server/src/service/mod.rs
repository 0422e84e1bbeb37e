//! What the API does, apart from HTTP: plain functions taking the [`AppState`] and typed
//! arguments, returning `Result<_, ApiError>`, and publishing the bus events after each commit.
//! The REST handlers (`crate::routes`) and the relay port (in process, [`crate::port`], or over
//! the internal routes, `crate::routes::internal`) call the same functions, so both apply the
//! same rules.
//!
//! # Layout
//! - [`attachments`]: store an upload, describe uploads on messages, collect garbage.
//! - [`messages`]: send one message, store a batch (group commit).
//! - [`receipts`]: move a watermark.
//! - [`sync`]: changes since a cursor.
//! - [`conversations`]: create one, a user's memberships, a conversation's members.
//! - [`sessions`]: whether a session is active.
//!
//! [`AppState`]: crate::state::AppState

pub mod attachments;
pub mod conversations;
pub mod messages;
pub mod receipts;
pub mod sessions;
pub mod sync;
