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
//! - [`sessions`]: whether a session is active; pruning expired ones.
//! - here: [`spawn_close_idle`], closing idle pooled database connections.
//!
//! [`AppState`]: crate::state::AppState

pub mod attachments;
pub mod conversations;
pub mod messages;
pub mod receipts;
pub mod sessions;
pub mod sync;

use crate::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Run `job` on the store every `period` (the first right away, the next ones a period after
/// the previous ended), in a task that ends once the application dropped the store.
fn every<F, Fut>(period: Duration, store: &Arc<dyn Store>, mut job: F)
where
    F: FnMut(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            job(store).await;
        }
    });
}

/// How often each API replica looks for pooled database connections idle for
/// [`IDLE_CONNECTION`], and closes them.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(60);
const IDLE_CONNECTION: Duration = Duration::from_secs(300);

/// Close pooled database connections idle for [`IDLE_CONNECTION`], every [`IDLE_CHECK_EVERY`]:
/// a pool grown by a peak otherwise holds its connections for ever (a soak left 10 of 16 open
/// and idle), and the replicas' pools add up on the database's `max_connections`.
pub fn spawn_close_idle(store: &Arc<dyn Store>) {
    every(IDLE_CHECK_EVERY, store, |store| async move {
        let closed = store.close_idle(IDLE_CONNECTION);
        if closed > 0 {
            tracing::debug!(closed, "idle database connections closed");
        }
    });
}
