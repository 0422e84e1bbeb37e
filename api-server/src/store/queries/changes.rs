//! A sync page's answer from the change rows it hands out: the messages, receipts and
//! conversations they name. Which rows a page hands out, and its cursor, are the backend's
//! (`sync.rs`: a transaction-id horizon on PostgreSQL, the id order on SQLite).

use super::conversations::{members_of, rows_of};
use super::dialect::Conn;
use super::rows::{ConversationRow, MemberRow, MessageRow};
use super::schema::{changes, conversations, messages};
use crate::store::StoreResult;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::wire::{Message, SyncResponse};
use std::collections::BTreeSet;

/// What a change row says happened.
#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = changes)]
pub struct Change {
    pub conversation_id: i64,
    pub kind: String,
    pub message_id: Option<i64>,
    pub user_id: Option<i64>,
}

/// The answer to a page of `changes` (in the log's order), read in the page's snapshot.
pub async fn answer<'a>(
    conn: &mut Conn,
    changes: impl Iterator<Item = &'a Change>,
    next_cursor: String,
    has_more: bool,
) -> StoreResult<SyncResponse> {
    let mut message_ids = Vec::new();
    let mut receipt_keys = BTreeSet::new();
    let mut conversation_ids = BTreeSet::new();
    for change in changes {
        match (change.kind.as_str(), change.message_id, change.user_id) {
            ("message", Some(message), _) => message_ids.push(message),
            ("receipt", _, Some(user)) => {
                receipt_keys.insert((change.conversation_id, user));
            }
            ("conversation", _, _) => {
                conversation_ids.insert(change.conversation_id);
            }
            _ => {}
        }
    }
    let mut message_rows: Vec<MessageRow> = if message_ids.is_empty() {
        Vec::new()
    } else {
        messages::table
            .filter(messages::id.eq_any(&message_ids))
            .select(MessageRow::as_select())
            .load(conn)
            .await?
    };
    message_rows.sort_by_key(|m| (m.conversation_id, m.seq));
    let touched: Vec<i64> = message_rows
        .iter()
        .map(|m| m.conversation_id)
        .chain(receipt_keys.iter().map(|(c, _)| *c))
        .chain(conversation_ids.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Ordered by conversation: each message and conversation below takes its own members by a
    // binary search (`rows_of`), not by a scan of every member of every touched conversation.
    let all_members = members_of(conn, &touched).await?;
    let member_rows: Vec<MemberRow> = all_members.iter().map(|(m, _)| m.clone()).collect();
    let messages = message_rows
        .into_iter()
        .map(|m| {
            let members = rows_of(&all_members, m.conversation_id);
            m.into_wire(&member_rows[members])
        })
        .collect::<anyhow::Result<Vec<Message>>>()?;
    let receipts = member_rows
        .iter()
        .filter(|m| receipt_keys.contains(&(m.conversation_id, m.user_id)))
        .map(MemberRow::state)
        .collect();
    let conversation_list: Vec<i64> = conversation_ids.into_iter().collect();
    let conversations = conversations::table
        .filter(conversations::id.eq_any(&conversation_list))
        .order(conversations::id)
        .select(ConversationRow::as_select())
        .load::<ConversationRow>(conn)
        .await?
        .into_iter()
        .map(|c| {
            let members = rows_of(&all_members, c.id);
            c.into_wire(&all_members[members])
        })
        .collect();
    Ok(SyncResponse {
        messages,
        receipts,
        conversations,
        next_cursor,
        has_more,
    })
}
