//! Delivery receipts for the design documents' clients. Neither document's client marks a
//! message delivered (no such event exists in either), so without help their senders' ticks go
//! from sent to read. A socket here that speaks either document is taken as the user's device
//! having the message once the relay has handed it the stored message: the relay marks it
//! delivered for that user, as `mark_delivered` would. Marks are coalesced per (user,
//! conversation) over [`WINDOW`] and sent from a task of their own: the live path never waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::ids::{ConversationId, UserId};
use shared::port::{Receipt, RelayPort};
use tokio_util::task::TaskTracker;

/// How long marks are gathered before they are sent (a burst of messages makes one request per
/// user and conversation).
const WINDOW: Duration = Duration::from_millis(200);

pub struct DocumentReceipts {
    port: Arc<dyn RelayPort>,
    tasks: TaskTracker,
    /// (user, conversation) → the highest seq to mark; a flush is under way while not empty.
    due: Arc<Mutex<HashMap<(UserId, ConversationId), i64>>>,
}

impl DocumentReceipts {
    pub fn new(port: Arc<dyn RelayPort>, tasks: TaskTracker) -> Self {
        Self {
            port,
            tasks,
            due: Arc::default(),
        }
    }

    /// Mark `conversation` delivered up to `seq` for each of `users`, shortly.
    pub fn delivered(&self, users: &[UserId], conversation: ConversationId, seq: i64) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let flush = due.is_empty();
        for &user in users {
            let mark = due.entry((user, conversation)).or_insert(seq);
            *mark = (*mark).max(seq);
        }
        if !flush {
            return;
        }
        let (port, due) = (self.port.clone(), self.due.clone());
        self.tasks.spawn(async move {
            tokio::time::sleep(WINDOW).await;
            let marks = std::mem::take(&mut *due.lock().unwrap_or_else(|e| e.into_inner()));
            for ((user, conversation), seq) in marks {
                if let Err(error) = port
                    .mark(user, conversation, Receipt::Delivered, seq)
                    .await
                {
                    tracing::debug!(user_id = %user, conversation_id = %conversation, code = %error.code, "marking delivered for a design document's client failed");
                }
            }
        });
    }
}
