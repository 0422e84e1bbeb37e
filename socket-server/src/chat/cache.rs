//! Two short-lived memories of the relay: who is in a conversation (as the API last said, per
//! asking user), and which messages were relayed before being stored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::ids::{ConversationId, UserId};

/// How long a relayed message is remembered: far longer than storing it takes.
const RELAYED_TTL: Duration = Duration::from_secs(300);
/// Entries kept at most; the oldest are dropped past it (bounded memory).
const MAX_ENTRIES: usize = 100_000;

/// A conversation's members as one of them was told, and when.
type MembersEntry = (Vec<UserId>, Instant);

/// Members of conversations, as the API answered a member's `GET /api/conversations/{id}`.
pub struct MembershipCache {
    ttl: Duration,
    entries: Mutex<HashMap<(UserId, ConversationId), MembersEntry>>,
}

impl MembershipCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The members of `conversation` if `user` was found to be one of them recently.
    pub fn get(&self, user: UserId, conversation: ConversationId) -> Option<Vec<UserId>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(user, conversation))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(members, _)| members.clone())
    }

    pub fn put(&self, user: UserId, conversation: ConversationId, members: Vec<UserId>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        if entries.len() < MAX_ENTRIES {
            entries.insert((user, conversation), (members, Instant::now()));
        }
    }

    /// Forget a conversation whose members changed.
    pub fn invalidate(&self, conversation: ConversationId) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(_, c), _| *c != conversation);
    }
}

/// Messages (sender, clientMsgId) whose optimistic copy this relay delivered (it sent it, or
/// received `message_relayed` for a local user). When `message_stored` arrives for one of these,
/// devices already show it and only need `message_saved`; for any other (sent through REST, or
/// relayed while none of the members was connected here) they also need `receive_message`.
#[derive(Default)]
pub struct RecentlyRelayed {
    entries: Mutex<HashMap<(UserId, String), Instant>>,
}

impl RecentlyRelayed {
    pub fn insert(&self, sender: UserId, client_msg_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, at| at.elapsed() < RELAYED_TTL);
        }
        if entries.len() < MAX_ENTRIES {
            entries.insert((sender, client_msg_id.to_owned()), Instant::now());
        }
    }

    pub fn contains(&self, sender: UserId, client_msg_id: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(sender, client_msg_id.to_owned()))
            .is_some_and(|at| at.elapsed() < RELAYED_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_answers_expire() {
        let cache = MembershipCache::new(Duration::ZERO);
        cache.put(UserId(1), ConversationId(2), vec![UserId(1)]);
        assert_eq!(cache.get(UserId(1), ConversationId(2)), None);
        let cache = MembershipCache::new(Duration::from_secs(60));
        cache.put(UserId(1), ConversationId(2), vec![UserId(1), UserId(3)]);
        assert_eq!(cache.get(UserId(3), ConversationId(2)), None);
        assert_eq!(
            cache.get(UserId(1), ConversationId(2)).map(|m| m.len()),
            Some(2)
        );
        cache.invalidate(ConversationId(2));
        assert_eq!(cache.get(UserId(1), ConversationId(2)), None);
    }

    #[test]
    fn relayed_messages_are_remembered_by_sender_and_client_msg_id() {
        let relayed = RecentlyRelayed::default();
        relayed.insert(UserId(1), "m-1");
        assert!(relayed.contains(UserId(1), "m-1"));
        assert!(!relayed.contains(UserId(2), "m-1"));
    }
}
