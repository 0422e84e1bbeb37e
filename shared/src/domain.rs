//! Parsed inputs: a value of these types has passed its checks, so a handler cannot forget one.

use crate::ids::{ConversationId, UserId};
use crate::wire::SendMessageRequest;
use serde::{Deserialize, Serialize};

/// Why an input was refused: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The kind of a message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Text,
    Image,
    Voice,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "text" => Ok(MessageKind::Text),
            "image" => Ok(MessageKind::Image),
            "voice" => Ok(MessageKind::Voice),
            other => Err(FieldError::new(
                "kind",
                format!("must be text, image or voice, not {other:?}"),
            )),
        }
    }
}

/// The temporary id a client gives a message before it is stored. 1 to 128 visible ASCII
/// characters; unique per sender (the idempotency key of a send).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                "clientMsgId",
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                "clientMsgId",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A message's content: non-empty after trimming, at most `max_chars` characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageContent(String);

impl MessageContent {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, FieldError> {
        if raw.trim().is_empty() {
            return Err(FieldError::new("content", "must not be empty"));
        }
        if raw.chars().count() > max_chars {
            return Err(FieldError::new(
                "content",
                format!("must be at most {max_chars} characters"),
            ));
        }
        if raw.contains('\0') {
            return Err(FieldError::new(
                "content",
                "must not contain NUL characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A username: 3 to 32 characters of `a-z 0-9 _ . -`, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim().to_lowercase();
        if !(3..=32).contains(&name.chars().count()) {
            return Err(FieldError::new("username", "must be 3 to 32 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(FieldError::new(
                "username",
                "may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: 8 to 256 characters. Never logged.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if !(8..=256).contains(&n) {
            return Err(FieldError::new("password", "must be 8 to 256 characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A display name: 1 to 64 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(FieldError::new("displayName", "must be 1 to 64 characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a message goes: an existing conversation, or the direct conversation with a user (found
/// or created by the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTarget {
    Conversation(ConversationId),
    Recipient(UserId),
}

/// A `send_message` / `POST /api/messages` request that passed every check. The API and the
/// relay both parse with this, so a message the relay shows at once is one the API will accept.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub client_msg_id: ClientMsgId,
    pub target: SendTarget,
    pub kind: MessageKind,
    pub content: MessageContent,
    /// `None` also for an empty `attachmentId`.
    pub attachment_id: Option<String>,
}

impl OutgoingMessage {
    /// Longest `attachmentId`, in characters.
    pub const MAX_ATTACHMENT_ID_CHARS: usize = 256;

    /// Check every field; `max_chars` bounds the content.
    pub fn parse(request: &SendMessageRequest, max_chars: usize) -> Result<Self, FieldError> {
        let target = match (request.conversation_id, request.recipient_id) {
            (Some(c), None) => SendTarget::Conversation(c),
            (None, Some(r)) => SendTarget::Recipient(r),
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "recipientId",
                    "give either conversationId or recipientId, not both",
                ))
            }
            (None, None) => {
                return Err(FieldError::new(
                    "conversationId",
                    "conversationId or recipientId is required",
                ))
            }
        };
        let client_msg_id = ClientMsgId::parse(&request.client_msg_id)?;
        let kind = MessageKind::parse(request.kind.as_deref().unwrap_or("text"))?;
        let content = MessageContent::parse(&request.content, max_chars)?;
        let attachment_id = request.attachment_id.clone().filter(|a| !a.is_empty());
        if attachment_id
            .as_ref()
            .is_some_and(|a| a.chars().count() > Self::MAX_ATTACHMENT_ID_CHARS)
        {
            return Err(FieldError::new(
                "attachmentId",
                format!(
                    "must be at most {} characters",
                    Self::MAX_ATTACHMENT_ID_CHARS
                ),
            ));
        }
        Ok(Self {
            client_msg_id,
            target,
            kind,
            content,
            attachment_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outgoing_message_needs_exactly_one_target_and_a_bounded_attachment() {
        let request = |json: serde_json::Value| -> SendMessageRequest {
            serde_json::from_value(json).unwrap()
        };
        let ok = OutgoingMessage::parse(
            &request(serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "hi", "attachmentId": ""})),
            10,
        )
        .unwrap();
        assert_eq!(ok.target, SendTarget::Recipient(UserId(2)));
        assert_eq!((ok.kind, ok.attachment_id), (MessageKind::Text, None));
        let none = request(serde_json::json!({"clientMsgId": "c", "content": "hi"}));
        assert_eq!(
            OutgoingMessage::parse(&none, 10).unwrap_err().field,
            "conversationId"
        );
        let long = request(serde_json::json!({
            "clientMsgId": "c", "conversationId": "1", "content": "hi", "attachmentId": "a".repeat(257)
        }));
        assert_eq!(
            OutgoingMessage::parse(&long, 10).unwrap_err().field,
            "attachmentId"
        );
    }

    #[test]
    fn content_is_refused_when_blank_too_long_or_with_nul() {
        assert!(MessageContent::parse("  ", 10).is_err());
        assert!(MessageContent::parse("abcdefghijk", 10).is_err());
        assert!(MessageContent::parse("a\0b", 10).is_err());
        assert_eq!(MessageContent::parse("héllo", 5).unwrap().as_str(), "héllo");
    }

    #[test]
    fn client_msg_ids_are_bounded_printable_ascii() {
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse("has space").is_err());
        assert!(ClientMsgId::parse(&"x".repeat(129)).is_err());
        assert!(ClientMsgId::parse("tmp-123_abc").is_ok());
    }

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("al ice").is_err());
    }
}
