//! Group commit on SQLite (what each message becomes is decided as for a single send: writes
//! are serialized, so nothing of `store::batch` is needed here but the session check).

use super::dialect::Conn;
use super::messages;
use super::users::active_among;
use crate::store::batch::split;
use crate::store::{SendOutcome, SessionMessage, StoreError, StoreResult};
use diesel_async::{AsyncConnection, RunQueryDsl};

/// A batch (group commit): one `BEGIN IMMEDIATE` transaction for all of it. In it, first the
/// batch's sessions (one query): a message whose session is not an active one of its sender is
/// refused there. Every other message is sent as a single send is (which refuses a sender who is
/// not a member of the conversation it names), in a savepoint of its own, so that a refused one
/// rolls back only what it wrote (a direct conversation it created). One fsync for the batch
/// instead of one per message; an error of the database itself fails the batch and rolls all of
/// it back.
pub async fn send(
    conn: &mut Conn,
    batch: Vec<SessionMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    let (batch, sessions) = split(batch);
    conn.immediate_transaction(async |conn| {
        let active: Vec<(String, i64)> = active_among(&sessions.distinct).load(conn).await?;
        let held = sessions.held(&batch, &active);
        let mut answers = Vec::with_capacity(batch.len());
        for (new, held) in batch.iter().zip(held) {
            if !held {
                answers.push(Err(StoreError::SessionInactive));
                continue;
            }
            match conn
                .transaction(async |conn| messages::send(conn, new).await)
                .await
            {
                Err(e) if !e.is_refusal() => return Err(e),
                answer => answers.push(answer),
            }
        }
        Ok(answers)
    })
    .await
}
