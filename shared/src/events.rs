//! What travels on the bus, and on which channel.
//!
//! Every event is addressed to users: it is published on the channel of each user whose devices
//! must see it ([`crate::bus::Keys::user_channel`], `parley:u:<userId>`), so a relay subscribes
//! only to the channels of the users
//! connected to it. The payload is JSON: `{"origin": "<instance id>", "event": {"type": …, "data": …}}`.
//! A relay skips events whose `origin` is itself (it delivered them locally already).

use crate::ids::{ConversationId, UserId};
use crate::wire::{Conversation, MemberState, Message};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default prefix of every key and channel Parley uses on Redis (setting `redis.prefix`).
pub const DEFAULT_PREFIX: &str = "parley";

/// An event on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum BusEvent {
    /// The API committed a message (any path: REST or relay).
    MessageStored { message: Message },
    /// A member's watermarks moved.
    ReceiptsMoved { state: MemberState },
    /// A conversation was created or its members changed.
    ConversationChanged { conversation: Conversation },
    /// A token was revoked by logout; relays disconnect the sockets opened with it.
    UserLoggedOut { user_id: UserId, jti: String },
    /// A relay's optimistic copy of a message being sent (not stored yet).
    MessageRelayed { message: RelayedMessage },
    /// A message the relay could not store.
    MessageFailed {
        sender_id: UserId,
        client_msg_id: String,
        conversation_id: ConversationId,
        error: crate::errors::AckError,
    },
    /// A member started or stopped typing.
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        is_typing: bool,
    },
    /// A user's presence changed.
    Presence {
        user_id: UserId,
        online: bool,
        last_seen: Option<DateTime<Utc>>,
    },
}

/// The optimistic copy of a message the relay fans out before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayedMessage {
    pub client_msg_id: String,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub kind: crate::domain::MessageKind,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    /// The upload's metadata as the sender gave it (shape-checked, not verified): enough to
    /// show a placeholder of the right size. The stored message carries the API's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Box<crate::wire::Attachment>>,
    #[serde(
        serialize_with = "crate::rfc3339::serialize",
        deserialize_with = "crate::rfc3339::deserialize"
    )]
    pub sent_at: DateTime<Utc>,
    pub status: crate::wire::MessageStatus,
}

/// The envelope published on a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The instance that published it (`api-<uuid>` or `relay-<uuid>`).
    pub origin: String,
    pub event: BusEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_with_a_snake_case_type() {
        let env = Envelope {
            origin: "api-1".into(),
            event: BusEvent::UserLoggedOut {
                user_id: UserId(3),
                jti: "j".into(),
            },
        };
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["event"]["type"], "user_logged_out");
        assert_eq!(v["event"]["data"]["user_id"], "3");
    }
}
