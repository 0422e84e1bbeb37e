//! Storing messages exactly once, and reading them back in pages.

use super::conversations::{find_or_create_direct, load, require_member};
use super::rows::{MemberRow, MessageRow, NewMessageRow};
use super::schema::{changes, conversations, members, messages, users};
use crate::store::{NewMessage, PageQuery, SendOutcome, StoreError, StoreResult, Target};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::ids::{ConversationId, UserId};
use shared::wire::{Message, MessagePage};

/// Why the insert transaction rolled back.
enum InsertError {
    /// A concurrent send with the same `(sender, clientMsgId)` committed first; the seq we
    /// allocated was rolled back with the transaction, so no gap is left.
    Raced,
    Store(StoreError),
}

impl From<DieselError> for InsertError {
    fn from(e: DieselError) -> Self {
        InsertError::Store(e.into())
    }
}

async fn members_rows(conn: &mut AsyncPgConnection, id: i64) -> StoreResult<Vec<MemberRow>> {
    Ok(members::table
        .filter(members::conversation_id.eq(id))
        .select(MemberRow::as_select())
        .load(conn)
        .await?)
}

async fn existing(
    conn: &mut AsyncPgConnection,
    sender: UserId,
    client_msg_id: &str,
) -> StoreResult<Option<MessageRow>> {
    Ok(messages::table
        .filter(messages::sender_id.eq(sender.get()))
        .filter(messages::client_msg_id.eq(client_msg_id))
        .select(MessageRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn send(conn: &mut AsyncPgConnection, new: NewMessage) -> StoreResult<SendOutcome> {
    let sender = new.sender;
    let (conversation, created_conversation) = match new.target {
        Target::Conversation(id) => (require_member(conn, sender, id).await?.id, false),
        Target::Recipient(recipient) => {
            if recipient == sender {
                return Err(StoreError::Invalid(
                    "recipientId",
                    "cannot be the sender".into(),
                ));
            }
            let exists: i64 = users::table
                .filter(users::id.eq(recipient.get()))
                .count()
                .get_result(conn)
                .await?;
            if exists == 0 {
                return Err(StoreError::UserNotFound);
            }
            find_or_create_direct(conn, sender, recipient).await?
        }
    };

    let cmid = new.client_msg_id.as_str();
    let (row, created) = if let Some(original) = existing(conn, sender, cmid).await? {
        original.same_as(conversation, &new)?;
        (original, false)
    } else if let Some(row) = insert(conn, conversation, &new).await? {
        (row, true)
    } else {
        // Raced with a concurrent identical send: answer with the winner's row.
        let original = existing(conn, sender, cmid)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the concurrent send vanished"))?;
        original.same_as(conversation, &new)?;
        (original, false)
    };
    let member_rows = members_rows(conn, conversation).await?;
    let message = row.into_wire(&member_rows)?;
    let new_conversation = if created_conversation {
        Some(load(conn, conversation).await?)
    } else {
        None
    };
    Ok(SendOutcome {
        message,
        created,
        new_conversation,
        members: member_rows.iter().map(|m| UserId(m.user_id)).collect(),
    })
}

/// Allocate the next seq and insert, in one transaction. `Ok(None)` when a concurrent identical
/// send won (nothing of ours is left behind).
async fn insert(
    conn: &mut AsyncPgConnection,
    conversation: i64,
    new: &NewMessage,
) -> StoreResult<Option<MessageRow>> {
    let result = conn
        .transaction(async |conn| {
            // The conversation's seq turn, before anything is written (the same prepared
            // statement as the group commit's).
            super::batch::take_seq_turns(conn, &[conversation]).await?;
            // The row lock taken here serializes senders of one conversation until commit, so
            // seqs commit in order and a rolled-back send leaves no gap.
            let seq: i64 = diesel::update(conversations::table.find(conversation))
                .set((
                    conversations::last_seq.eq(conversations::last_seq + 1),
                    conversations::last_message_at.eq(diesel::dsl::now),
                ))
                .returning(conversations::last_seq)
                .get_result(conn)
                .await?;
            let row: Option<MessageRow> = diesel::insert_into(messages::table)
                .values(NewMessageRow {
                    conversation_id: conversation,
                    sender_id: new.sender.get(),
                    client_msg_id: new.client_msg_id.as_str(),
                    seq,
                    kind: new.kind.as_str(),
                    content: new.content.as_str(),
                    attachment_id: new.attachment_id.as_deref(),
                })
                .on_conflict((messages::sender_id, messages::client_msg_id))
                .do_nothing()
                .returning(MessageRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let Some(row) = row else {
                return Err(InsertError::Raced);
            };
            if let Some(upload) = &new.attachment_id {
                super::attachments::link(conn, upload, new.sender, new.kind.as_str(), row.id)
                    .await
                    .map_err(InsertError::Store)?;
            }
            diesel::insert_into(changes::table)
                .values((
                    changes::conversation_id.eq(conversation),
                    changes::kind.eq("message"),
                    changes::message_id.eq(row.id),
                ))
                .execute(conn)
                .await?;
            Ok(row)
        })
        .await;
    match result {
        Ok(row) => Ok(Some(row)),
        Err(InsertError::Raced) => Ok(None),
        Err(InsertError::Store(e)) => Err(e),
    }
}

pub async fn page(
    conn: &mut AsyncPgConnection,
    user: UserId,
    conversation: ConversationId,
    q: PageQuery,
) -> StoreResult<MessagePage> {
    let id = require_member(conn, user, conversation).await?.id;
    let mut query = messages::table
        .filter(messages::conversation_id.eq(id))
        .select(MessageRow::as_select())
        .limit(q.limit + 1)
        .into_boxed();
    if let Some(after) = q.after_seq {
        query = query.filter(messages::seq.gt(after));
    }
    if let Some(before) = q.before_seq {
        query = query.filter(messages::seq.lt(before));
    }
    // With afterSeq: the oldest messages after it, going forward. Otherwise: the newest ones
    // (before beforeSeq), going back. Either way answered in seq order.
    let forward = q.after_seq.is_some();
    query = if forward {
        query.order(messages::seq.asc())
    } else {
        query.order(messages::seq.desc())
    };
    let mut rows: Vec<MessageRow> = query.load(conn).await?;
    let has_more = rows.len() as i64 > q.limit;
    rows.truncate(q.limit as usize);
    if !forward {
        rows.reverse();
    }
    let member_rows = members_rows(conn, id).await?;
    let messages = rows
        .into_iter()
        .map(|r| r.into_wire(&member_rows))
        .collect::<anyhow::Result<Vec<Message>>>()?;
    Ok(MessagePage { messages, has_more })
}
