//! Which columns of the backend's schema fill the shared rows (`store::rows`).

use super::dialect::Backend;
use super::schema::{attachments, conversations, members, messages, users};
use crate::store::rows::selectable;
pub use crate::store::rows::{AttachmentRow, ConversationRow, MemberRow, MessageRow, UserRow};

selectable!(
    Backend,
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
    Backend,
    UserRow,
    users {
        id,
        username,
        display_name,
        created_at
    }
);
selectable!(
    Backend,
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
    Backend,
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
    Backend,
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
