//! Storing messages exactly once, and reading them back in pages.
//!
//! A send is one `BEGIN IMMEDIATE` transaction: SQLite's write lock is held from the
//! idempotency check to the commit, so a concurrent identical send finds the first one's row,
//! and the seq taken from `last_seq` is the next one with nothing allocated in between.

use super::conversations::{find_or_create_direct, load, member_rows, require_member};
use super::rows::{now, MessageRow};
use super::schema::{changes, conversations, messages, users};
use super::Conn;
use crate::store::{NewMessage, PageQuery, SendOutcome, StoreError, StoreResult, Target};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use shared::ids::{ConversationId, UserId};
use shared::wire::{Message, MessagePage};

pub async fn send(conn: &mut Conn, new: NewMessage) -> StoreResult<SendOutcome> {
    conn.immediate_transaction(async |conn| send_locked(conn, &new).await)
        .await
}

/// A batch (group commit): one `BEGIN IMMEDIATE` transaction for all of it, each message sent
/// as [`send`] does in a savepoint of its own, so that a refused one rolls back only what it
/// wrote (a direct conversation it created). One fsync for the batch instead of one per
/// message; an error of the database itself fails the batch and rolls all of it back.
pub async fn send_batch(
    conn: &mut Conn,
    batch: Vec<NewMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    conn.immediate_transaction(async |conn| {
        let mut answers = Vec::with_capacity(batch.len());
        for new in &batch {
            match conn
                .transaction(async |conn| send_locked(conn, new).await)
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

/// The send, under the write lock.
async fn send_locked(conn: &mut Conn, new: &NewMessage) -> StoreResult<SendOutcome> {
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

    let original: Option<MessageRow> = messages::table
        .filter(messages::sender_id.eq(sender.get()))
        .filter(messages::client_msg_id.eq(new.client_msg_id.as_str()))
        .select(MessageRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let (row, created) = match original {
        Some(original) => {
            original.same_as(conversation, new)?;
            (original, false)
        }
        None => (insert(conn, conversation, new).await?, true),
    };
    let members = member_rows(conn, conversation).await?;
    let message = row.into_wire(&members)?;
    let new_conversation = if created_conversation {
        Some(load(conn, conversation).await?)
    } else {
        None
    };
    Ok(SendOutcome {
        message,
        created,
        new_conversation,
        members: members.iter().map(|m| UserId(m.user_id)).collect(),
    })
}

/// Allocate the next seq, insert the message and its change row (under the write lock).
async fn insert(conn: &mut Conn, conversation: i64, new: &NewMessage) -> StoreResult<MessageRow> {
    let at = now();
    let seq: i64 = diesel::update(conversations::table.find(conversation))
        .set((
            conversations::last_seq.eq(conversations::last_seq + 1),
            conversations::last_message_at.eq(at),
        ))
        .returning(conversations::last_seq)
        .get_result(conn)
        .await?;
    let row: MessageRow = diesel::insert_into(messages::table)
        .values((
            messages::conversation_id.eq(conversation),
            messages::sender_id.eq(new.sender.get()),
            messages::client_msg_id.eq(new.client_msg_id.as_str()),
            messages::seq.eq(seq),
            messages::kind.eq(new.kind.as_str()),
            messages::content.eq(new.content.as_str()),
            messages::attachment_id.eq(new.attachment_id.as_deref()),
            messages::created_at.eq(at),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .await?;
    if let Some(upload) = &new.attachment_id {
        super::attachments::link(conn, upload, new.sender, new.kind.as_str(), row.id).await?;
    }
    diesel::insert_into(changes::table)
        .values((
            changes::conversation_id.eq(conversation),
            changes::kind.eq("message"),
            changes::message_id.eq(row.id),
            changes::created_at.eq(at),
        ))
        .execute(conn)
        .await?;
    Ok(row)
}

pub async fn page(
    conn: &mut Conn,
    user: UserId,
    conversation: ConversationId,
    q: PageQuery,
) -> StoreResult<MessagePage> {
    // One read transaction: the page and the watermarks its statuses derive from agree.
    conn.transaction(async |conn| {
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
        // With afterSeq: the oldest messages after it, going forward. Otherwise: the newest
        // ones (before beforeSeq), going back. Either way answered in seq order.
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
        let members = member_rows(conn, id).await?;
        let messages = rows
            .into_iter()
            .map(|r| r.into_wire(&members))
            .collect::<anyhow::Result<Vec<Message>>>()?;
        Ok(MessagePage { messages, has_more })
    })
    .await
}
