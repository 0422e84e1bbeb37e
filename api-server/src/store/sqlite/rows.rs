//! Which SQLite columns fill the shared rows (`store::rows`).

use super::schema::{attachments, conversations, members, messages, users};
use crate::store::rows::selectable;
pub use crate::store::rows::{AttachmentRow, ConversationRow, MemberRow, MessageRow, UserRow};
use diesel::sqlite::Sqlite;

selectable!(
    Sqlite,
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
    Sqlite,
    UserRow,
    users {
        id,
        username,
        display_name,
        created_at
    }
);
selectable!(
    Sqlite,
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
    Sqlite,
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
    Sqlite,
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

/// The application clock at PostgreSQL's precision (microseconds): timestamps are written by the
/// store rather than by SQLite's `CURRENT_TIMESTAMP`, which only has seconds.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
