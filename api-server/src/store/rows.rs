//! Rows as both backends read them, and their conversion to wire types. The structs derive
//! `Queryable` only (positional and backend-generic); each backend says which of its columns fill
//! them with [`selectable!`], so the wire conversion is written once.

use super::{message_status, NewMessage, StoreError, StoreResult};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use diesel::Queryable;
use shared::domain::MessageKind;
use shared::ids::{ConversationId, MessageId, UserId};
use shared::port::ConversationMembers;
use shared::wire::{
    Conversation, ConversationKind, ConversationMember, MemberState, Message, User,
};

/// `impl Selectable<$backend> for $row` from the columns of `$table`, in the row's field order.
macro_rules! selectable {
    ($backend:ty, $row:ty, $table:ident { $($column:ident),+ $(,)? }) => {
        impl diesel::Selectable<$backend> for $row {
            type SelectExpression = ($($table::$column,)+);
            fn construct_selection() -> Self::SelectExpression {
                ($($table::$column,)+)
            }
        }
    };
}
pub(crate) use selectable;

#[derive(Debug, Clone, Queryable)]
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

#[derive(Debug, Clone, Queryable)]
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

#[derive(Debug, Clone, Queryable)]
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

#[derive(Debug, Clone, Queryable)]
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
            // Described (with signed URLs) by `service::attachments::decorate`.
            attachment: None,
            created_at: self.created_at,
            status: message_status(self.seq, sender, &marks),
        })
    }

    /// `Ok` when a retry carries the same message as this stored original; a mismatch otherwise.
    pub fn same_as(&self, conversation: i64, new: &NewMessage) -> StoreResult<()> {
        let same = self.conversation_id == conversation
            && self.kind == new.kind.as_str()
            && self.content == new.content.as_str()
            && self.attachment_id.as_deref() == new.attachment_id.as_deref();
        if same {
            Ok(())
        } else {
            Err(StoreError::IdempotencyMismatch)
        }
    }
}

/// An upload's record (`attachments` table); its bytes are in the object store.
#[derive(Debug, Clone, Queryable)]
pub struct AttachmentRow {
    pub id: String,
    pub owner_id: i64,
    pub kind: String,
    pub mime: String,
    pub bytes: i64,
    pub sha256: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub duration_ms: Option<i64>,
    /// The message referencing it, once one does.
    pub message_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// Why an upload cannot be attached to a message (`found`: the upload's row if it exists at
/// all, whoever owns it).
pub fn attach_refusal(found: Option<&AttachmentRow>, sender: UserId, kind: &str) -> StoreError {
    let reason = match found {
        Some(row) if row.owner_id == sender.get() && row.kind != kind => {
            format!("is a {} upload, not a {kind} one", row.kind)
        }
        Some(row) if row.owner_id == sender.get() && row.message_id.is_some() => {
            "is already attached to another message".to_owned()
        }
        // Someone else's upload is indistinguishable from none.
        _ => "names no upload of yours (POST /api/attachments first)".to_owned(),
    };
    StoreError::Invalid("attachmentId", reason)
}

/// `(conversation, member, direct)` rows in conversation order, grouped per conversation.
pub fn group_members(rows: Vec<(i64, i64, bool)>) -> Vec<ConversationMembers> {
    let mut grouped: Vec<ConversationMembers> = Vec::new();
    for (conversation, user, direct) in rows {
        match grouped.last_mut() {
            Some(c) if c.conversation_id.get() == conversation => c.members.push(UserId(user)),
            _ => grouped.push(ConversationMembers {
                conversation_id: ConversationId(conversation),
                members: vec![UserId(user)],
                direct,
            }),
        }
    }
    grouped
}

/// The key that makes a direct conversation unique per pair.
pub fn direct_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

/// A LIKE pattern matching `query` anywhere, with `%`, `_` and `\` escaped (escape character `\`).
pub fn like_pattern(query: &str) -> String {
    let mut escaped = String::with_capacity(query.len() + 2);
    escaped.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn the_direct_key_ignores_the_order_of_the_pair() {
        assert_eq!(
            direct_key(UserId(9), UserId(2)),
            direct_key(UserId(2), UserId(9))
        );
    }
}
