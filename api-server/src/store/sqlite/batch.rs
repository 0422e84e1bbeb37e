//! Group commit on SQLite (what each message becomes is decided as for a single send: writes
//! are serialized, so nothing of `store::batch` is needed here but the session check).

use super::conversations::member_rows_of;
use super::dialect::Conn;
use super::messages;
use super::users::active_among;
use crate::store::batch::split;
use crate::store::{SendOutcome, SessionMessage, StoreError, StoreResult, Target};
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::{BTreeSet, HashSet};

/// A batch (group commit): one `BEGIN IMMEDIATE` transaction for all of it. In it, first the
/// batch's sessions and the members of the conversations it names (one query each, no
/// pipelining here): a message whose session is not an active one of its sender, or whose
/// sender is not a member of the conversation it names, is refused there. Every other message
/// is sent as a single send is, in a savepoint of its own, so that a refused one rolls back only
/// what it wrote (a direct conversation it created). One fsync for the batch instead of one per
/// message; an error of the database itself fails the batch and rolls all of it back.
pub async fn send(
    conn: &mut Conn,
    batch: Vec<SessionMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    let (batch, sessions) = split(batch);
    let named: Vec<i64> = batch
        .iter()
        .filter_map(|m| match m.target {
            Target::Conversation(c) => Some(c.get()),
            Target::Recipient(_) => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    conn.immediate_transaction(async |conn| {
        let active: Vec<(String, i64)> = active_among(&sessions.distinct).load(conn).await?;
        let held = sessions.held(&batch, &active);
        let memberships: HashSet<(i64, i64)> = if named.is_empty() {
            HashSet::new()
        } else {
            member_rows_of(&named)
                .load(conn)
                .await?
                .into_iter()
                .map(|m| (m.conversation_id, m.user_id))
                .collect()
        };
        let mut answers = Vec::with_capacity(batch.len());
        for (new, held) in batch.iter().zip(held) {
            let member = match new.target {
                Target::Conversation(c) => memberships.contains(&(c.get(), new.sender.get())),
                Target::Recipient(_) => true,
            };
            if !held {
                answers.push(Err(StoreError::SessionInactive));
                continue;
            }
            if !member {
                answers.push(Err(StoreError::ConversationNotFound));
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
