//! Which PostgreSQL columns fill the shared rows (`store::rows`), and the insertable of a message.

use super::schema::{attachments, conversations, members, messages, users};
use crate::store::rows::selectable;
pub use crate::store::rows::{AttachmentRow, ConversationRow, MemberRow, MessageRow, UserRow};
use diesel::pg::Pg;
use diesel::prelude::*;

selectable!(
    Pg,
    AttachmentRow,
    attachments {
        id,
        owner_id,
        kind,
        mime,
        bytes,
        sha256,
        width,
        height,
        duration_ms,
        message_id,
        created_at,
    }
);
selectable!(
    Pg,
    UserRow,
    users {
        id,
        username,
        display_name,
        created_at
    }
);
selectable!(
    Pg,
    ConversationRow,
    conversations {
        id,
        kind,
        title,
        last_seq,
        created_at
    }
);
selectable!(
    Pg,
    MemberRow,
    members {
        conversation_id,
        user_id,
        delivered_up_to_seq,
        read_up_to_seq,
        joined_at,
        updated_at,
    }
);
selectable!(
    Pg,
    MessageRow,
    messages {
        id,
        conversation_id,
        sender_id,
        client_msg_id,
        seq,
        kind,
        content,
        attachment_id,
        created_at,
    }
);

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
