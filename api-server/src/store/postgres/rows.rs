//! Row structs of the PostgreSQL tables and their conversion to wire types.

use super::schema::{conversations, members, messages, users};
use crate::store::message_status;
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use shared::domain::MessageKind;
use shared::ids::{ConversationId, MessageId, UserId};
use shared::wire::{
    Conversation, ConversationKind, ConversationMember, MemberState, Message, User,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: UserId(r.id),
            username: r.username,
            display_name: r.display_name,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = conversations, check_for_backend(diesel::pg::Pg))]
pub struct ConversationRow {
    pub id: i64,
    pub kind: String,
    pub title: Option<String>,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
}

impl ConversationRow {
    pub fn kind(&self) -> ConversationKind {
        if self.kind == "direct" {
            ConversationKind::Direct
        } else {
            ConversationKind::Group
        }
    }

    /// The wire conversation, with its members (rows of any conversation; those of this one
    /// are picked).
    pub fn into_wire(self, members: &[(MemberRow, UserRow)]) -> Conversation {
        let kind = self.kind();
        Conversation {
            id: ConversationId(self.id),
            kind,
            title: self.title,
            created_at: self.created_at,
            last_seq: self.last_seq,
            members: members
                .iter()
                .filter(|(m, _)| m.conversation_id == self.id)
                .map(|(m, u)| ConversationMember {
                    user: u.clone().into(),
                    delivered_up_to_seq: m.delivered_up_to_seq,
                    read_up_to_seq: m.read_up_to_seq,
                    joined_at: m.joined_at,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = members, check_for_backend(diesel::pg::Pg))]
pub struct MemberRow {
    pub conversation_id: i64,
    pub user_id: i64,
    pub delivered_up_to_seq: i64,
    pub read_up_to_seq: i64,
    pub joined_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MemberRow {
    pub fn state(&self) -> MemberState {
        MemberState {
            conversation_id: ConversationId(self.conversation_id),
            user_id: UserId(self.user_id),
            delivered_up_to_seq: self.delivered_up_to_seq,
            read_up_to_seq: self.read_up_to_seq,
            at: self.updated_at,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub client_msg_id: String,
    pub seq: i64,
    pub kind: String,
    pub content: String,
    pub attachment_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessageRow<'a> {
    pub conversation_id: i64,
    pub sender_id: i64,
    pub client_msg_id: &'a str,
    pub seq: i64,
    pub kind: &'a str,
    pub content: &'a str,
    pub attachment_id: Option<&'a str>,
}

impl MessageRow {
    /// The wire message; its status is derived from `members` (rows of any conversation).
    pub fn into_wire(self, members: &[MemberRow]) -> anyhow::Result<Message> {
        let marks: Vec<(UserId, i64, i64)> = members
            .iter()
            .filter(|m| m.conversation_id == self.conversation_id)
            .map(|m| (UserId(m.user_id), m.delivered_up_to_seq, m.read_up_to_seq))
            .collect();
        let sender = UserId(self.sender_id);
        Ok(Message {
            id: MessageId(self.id),
            client_msg_id: self.client_msg_id,
            conversation_id: ConversationId(self.conversation_id),
            sender_id: sender,
            seq: self.seq,
            kind: MessageKind::parse(&self.kind)
                .map_err(|_| anyhow!("message {} has unknown kind {:?}", self.id, self.kind))?,
            content: self.content,
            attachment_id: self.attachment_id,
            created_at: self.created_at,
            status: message_status(self.seq, sender, &marks),
        })
    }
}
