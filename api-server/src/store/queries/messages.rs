//! Storing messages exactly once, and reading them back in pages.
//!
//! A send allocates its seq and inserts in one write transaction that first takes the
//! conversation's seq turn (`dialect::take_seq_turn`: an advisory lock on PostgreSQL, nothing on
//! SQLite, whose write transaction holds the database's write lock). Moving `last_seq` locks the
//! conversation's row until the commit, so seqs commit in order, and a rolled-back send leaves no
//! gap. The insert is `ON CONFLICT DO NOTHING` on `(sender, clientMsgId)`: when a concurrent
//! identical send committed first, the transaction rolls back (its seq with it) and the send
//! answers with the winner's row.

use super::conversations::{find_or_create_direct, load, member_rows, require_member};
use super::dialect::{now, take_seq_turn, Conn};
use super::rows::MessageRow;
use super::schema::{changes, conversations, messages, users};
use crate::store::batch::TxError;
use crate::store::{NewMessage, PageQuery, SendOutcome, StoreError, StoreResult, Target};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::ids::{ConversationId, UserId};
use shared::wire::{Message, MessagePage};

async fn existing(
    conn: &mut Conn,
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

/// The conversation a message goes to (the sender a member), and whether it was created for it
/// (a first `recipientId` send).
async fn resolve(conn: &mut Conn, sender: UserId, target: Target) -> StoreResult<(i64, bool)> {
    match target {
        Target::Conversation(id) => Ok((require_member(conn, sender, id).await?.id, false)),
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
            find_or_create_direct(conn, sender, recipient).await
        }
    }
}

pub async fn send(conn: &mut Conn, new: &NewMessage) -> StoreResult<SendOutcome> {
    let sender = new.sender;
    let (conversation, created_conversation) = resolve(conn, sender, new.target).await?;
    let cmid = new.client_msg_id.as_str();
    let (row, created) = if let Some(original) = existing(conn, sender, cmid).await? {
        original.same_as(conversation, new)?;
        (original, false)
    } else if let Some(row) = insert(conn, conversation, new).await? {
        (row, true)
    } else {
        // Raced with a concurrent identical send: answer with the winner's row.
        let original = existing(conn, sender, cmid)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the concurrent send vanished"))?;
        original.same_as(conversation, new)?;
        (original, false)
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

/// Allocate the next seq and insert the message, its upload's link and its change row, in one
/// write transaction. `Ok(None)` when a concurrent identical send won (nothing of ours is left).
async fn insert(
    conn: &mut Conn,
    conversation: i64,
    new: &NewMessage,
) -> StoreResult<Option<MessageRow>> {
    let result = write_tx!(conn, async |conn: &mut Conn| {
        take_seq_turn(conn, conversation).await?;
        let at = now();
        let seq: i64 = diesel::update(conversations::table.find(conversation))
            .set((
                conversations::last_seq.eq(conversations::last_seq + 1),
                conversations::last_message_at.eq(at),
            ))
            .returning(conversations::last_seq)
            .get_result(conn)
            .await?;
        let row: Option<MessageRow> = diesel::insert_into(messages::table)
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
            .on_conflict((messages::sender_id, messages::client_msg_id))
            .do_nothing()
            .returning(MessageRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        let Some(row) = row else {
            return Err(TxError::Raced);
        };
        if let Some(upload) = &new.attachment_id {
            super::attachments::link(conn, upload, new.sender, new.kind.as_str(), row.id)
                .await
                .map_err(TxError::Store)?;
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
    })
    .await;
    match result {
        Ok(row) => Ok(Some(row)),
        Err(TxError::Raced) => Ok(None),
        Err(TxError::Store(e)) => Err(e),
    }
}

pub async fn page(
    conn: &mut Conn,
    user: UserId,
    conversation: ConversationId,
    q: PageQuery,
) -> StoreResult<MessagePage> {
    // One snapshot: the page and the watermarks its statuses derive from agree.
    read_tx!(conn, async |conn: &mut Conn| {
        page_in_snapshot(conn, user, conversation, q).await
    })
    .await
}

async fn page_in_snapshot(
    conn: &mut Conn,
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
    let members = member_rows(conn, id).await?;
    let messages = rows
        .into_iter()
        .map(|r| r.into_wire(&members))
        .collect::<anyhow::Result<Vec<Message>>>()?;
    Ok(MessagePage { messages, has_more })
}
