//! Group commit on SQLite (what each message becomes is decided as for a single send: writes
//! are serialized, so nothing of `store::batch` is needed here).

use super::dialect::Conn;
use super::messages;
use crate::store::{NewMessage, SendOutcome, StoreResult};
use diesel_async::AsyncConnection;

/// A batch (group commit): one `BEGIN IMMEDIATE` transaction for all of it, each message sent
/// as a single send is, in a savepoint of its own, so that a refused one rolls back only what it
/// wrote (a direct conversation it created). One fsync for the batch instead of one per
/// message; an error of the database itself fails the batch and rolls all of it back.
pub async fn send(
    conn: &mut Conn,
    batch: Vec<NewMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    conn.immediate_transaction(async |conn| {
        let mut answers = Vec::with_capacity(batch.len());
        for new in &batch {
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
