//! What the users report at the end, and the promises checked against it and against the
//! database: every acknowledged message stored exactly once, no `seq` gap, every member has
//! every acknowledged message after sync, one id per `clientMsgId`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

use crate::stack::Stack;

/// One acknowledged message: `[id, seq, conversationId, clientMsgId]`.
type Acked = (String, i64, String, String);
/// One message of a sync answer: `[id, seq, conversationId, clientMsgId, senderId]`.
type Synced = (String, i64, String, String, String);

/// The driver's final report, with the conversations of its `ready` event.
#[derive(Debug)]
pub struct Report {
    pub users: Vec<UserReport>,
    /// Conversation id → the indexes of its two members.
    pub members: HashMap<String, Vec<usize>>,
}

/// What one user sent, saw and synced.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserReport {
    pub index: usize,
    pub id: String,
    pub logged_out: bool,
    pub acked: Vec<Acked>,
    /// `[clientMsgId, id]` of every `message_saved` (and stored `receive_message`).
    pub saved: Vec<(String, String)>,
    /// A sync from the start at the end; `None` for a logged-out user (its token no longer
    /// syncs).
    pub synced: Option<Vec<Synced>>,
    /// Every page of the syncs from the user's kept cursor, every second through the fault and
    /// once more at the end, in order; `None` for a logged-out user.
    pub incremental: Option<Vec<Synced>>,
    /// Messages still waiting for their ack when the driver gave up.
    pub unacked: Vec<String>,
    /// `[clientMsgId, code]` of sends refused with a non-retryable error.
    pub failures: Vec<(String, String)>,
    /// What the client saw: ack errors, `message_failed`, connect errors and disconnects by
    /// code, the slowest ack and the longest time offline.
    pub stats: Value,
}

impl Report {
    /// Parse the `report` event; `ready` gives the conversations' members.
    pub fn parse(ready: &Value, report: Value) -> Report {
        let users: Vec<UserReport> = serde_json::from_value(report["users"].clone())
            .unwrap_or_else(|e| panic!("the driver's report does not parse: {e}"));
        let members: HashMap<String, Vec<usize>> = ready["conversations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let id = c["id"].as_str()?.to_owned();
                let members = serde_json::from_value(c["members"].clone()).ok()?;
                Some((id, members))
            })
            .collect();
        Report { users, members }
    }

    /// Every acknowledged message, once each.
    fn acked(&self) -> BTreeMap<&str, &Acked> {
        self.users
            .iter()
            .flat_map(|u| &u.acked)
            .map(|a| (a.3.as_str(), a))
            .collect()
    }

    /// Check every promise; panics naming the first broken one.
    pub fn assert_promises_kept(&self, stack: &Stack) {
        self.assert_every_send_settled();
        self.assert_one_id_per_client_msg_id();
        self.assert_stored_exactly_once(stack);
        self.assert_no_seq_gap(stack);
        self.assert_everyone_synced_everything();
    }

    /// Every send of the traffic was acknowledged in the end (retries included), none refused.
    fn assert_every_send_settled(&self) {
        for user in &self.users {
            assert!(
                user.unacked.is_empty() && user.failures.is_empty(),
                "user{}: unacknowledged {:?}, refused {:?}",
                user.index,
                user.unacked,
                user.failures
            );
        }
    }

    /// Acks, `message_saved` events and sync answers never give one `clientMsgId` two ids.
    fn assert_one_id_per_client_msg_id(&self) {
        let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
        for user in &self.users {
            let acked = user.acked.iter().map(|a| (&a.3, &a.0));
            let saved = user.saved.iter().map(|(c, id)| (c, id));
            let synced = (user.synced.iter().chain(&user.incremental))
                .flatten()
                .map(|s| (&s.3, &s.0));
            for (client_msg_id, id) in acked.chain(saved).chain(synced) {
                ids.entry(client_msg_id).or_default().insert(id);
            }
        }
        let split: Vec<_> = ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(split.is_empty(), "clientMsgIds with several ids: {split:?}");
    }

    /// Each acknowledged message is one row of `messages`, with the acknowledged id, seq and
    /// conversation; no `(sender, clientMsgId)` has two rows.
    fn assert_stored_exactly_once(&self, stack: &Stack) {
        let rows = stack.query(
            "SELECT client_msg_id, id, seq, conversation_id, \
             count(*) OVER (PARTITION BY sender_id, client_msg_id) FROM messages",
        );
        let mut stored: HashMap<String, Vec<String>> = HashMap::new();
        for row in rows {
            let mut columns = row.split('|').map(str::to_owned);
            let client_msg_id = columns.next().unwrap_or_default();
            stored.entry(client_msg_id).or_default().push(row);
        }
        for (client_msg_id, (id, seq, conversation, _)) in self.acked() {
            let expected = format!("{client_msg_id}|{id}|{seq}|{conversation}|1");
            let rows = stored.get(client_msg_id);
            assert_eq!(
                rows.map(Vec::as_slice),
                Some(&[expected][..]),
                "acknowledged {client_msg_id} is not stored exactly once as acknowledged"
            );
        }
    }

    /// In every conversation `seq` runs 1, 2, … with no gap.
    fn assert_no_seq_gap(&self, stack: &Stack) {
        let gaps = stack.query(
            "SELECT conversation_id, count(*), min(seq), max(seq) FROM messages \
             GROUP BY conversation_id HAVING min(seq) <> 1 OR max(seq) <> count(*) \
             OR count(DISTINCT seq) <> count(*)",
        );
        assert!(
            gaps.is_empty(),
            "conversations with a seq gap (id|count|min|max): {gaps:?}"
        );
    }

    /// After sync — from the start, and from the cursor kept through the fault — each member
    /// of a conversation has each of its acknowledged messages, with the acknowledged id and
    /// seq, and no message twice.
    fn assert_everyone_synced_everything(&self) {
        for user in &self.users {
            for (how, synced) in [
                ("sync from the start", &user.synced),
                ("syncs from its cursor", &user.incremental),
            ] {
                if let Some(synced) = synced {
                    self.assert_synced_everything(user.index, how, synced);
                }
            }
        }
    }

    fn assert_synced_everything(&self, user: usize, how: &str, synced: &[Synced]) {
        let mut seen: HashMap<&str, &Synced> = HashMap::new();
        for message in synced {
            let repeated = seen.insert(message.0.as_str(), message);
            assert!(
                repeated.is_none(),
                "user{user}'s {how} repeated {message:?}"
            );
        }
        let missing: Vec<_> = self
            .acked()
            .into_values()
            .filter(|(_, _, conversation, _)| self.is_member(user, conversation))
            .filter(|(id, seq, _, _)| seen.get(id.as_str()).is_none_or(|s| s.1 != *seq))
            .collect();
        assert!(
            missing.is_empty(),
            "user{user} lacks {} acknowledged messages after its {how}: {missing:?}",
            missing.len()
        );
    }

    fn is_member(&self, user: usize, conversation: &str) -> bool {
        self.members
            .get(conversation)
            .is_some_and(|m| m.contains(&user))
    }

    /// One line of what the clients saw, summed over the users.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let (mut slowest_ack, mut longest_offline) = (0.0f64, 0.0f64);
        for stats in self.users.iter().map(|u| &u.stats) {
            let kinds = [
                "ackErrors",
                "messageFailed",
                "connectErrors",
                "disconnects",
                "syncErrors",
            ];
            for kind in kinds {
                for (code, n) in stats[kind].as_object().into_iter().flatten() {
                    *counts.entry(format!("{kind}.{code}")).or_default() += n.as_u64().unwrap_or(0);
                }
            }
            slowest_ack = slowest_ack.max(stats["slowestAckMs"].as_f64().unwrap_or(0.0));
            longest_offline =
                longest_offline.max(stats["longestOfflineMs"].as_f64().unwrap_or(0.0));
        }
        let synced: Vec<_> = self
            .users
            .iter()
            .map(|u| u.incremental.as_ref().map(Vec::len))
            .collect();
        format!(
            "{} messages acknowledged, synced from the cursor per user {synced:?}; slowest ack {:.1} s, \
             longest offline {:.1} s; {counts:?}",
            self.acked().len(),
            slowest_ack / 1000.0,
            longest_offline / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Two users sharing conversation 7; user 0 sent `a` (id 1, seq 1), both synced it.
    fn consistent() -> Report {
        let ready = json!({ "conversations": [{ "id": "7", "members": [0, 1] }] });
        let user = |index: usize, acked: Value| {
            json!({
                "index": index, "id": index.to_string(), "loggedOut": false,
                "acked": acked, "saved": [["a", "1"]], "synced": [["1", 1, "7", "a", "0"]],
                "incremental": [["1", 1, "7", "a", "0"]],
                "unacked": [], "failures": [], "stats": {},
            })
        };
        let report = json!({ "users": [user(0, json!([["1", 1, "7", "a"]])), user(1, json!([]))] });
        Report::parse(&ready, report)
    }

    #[test]
    fn a_consistent_report_keeps_the_promises_checked_without_the_database() {
        let report = consistent();
        report.assert_every_send_settled();
        report.assert_one_id_per_client_msg_id();
        report.assert_everyone_synced_everything();
    }

    #[test]
    #[should_panic(expected = "lacks 1 acknowledged messages after its syncs from its cursor")]
    fn a_member_whose_syncs_lack_an_acknowledged_message_fails() {
        let mut report = consistent();
        report.users[1].incremental = Some(vec![]);
        report.assert_everyone_synced_everything();
    }

    #[test]
    #[should_panic(expected = "repeated")]
    fn a_sync_that_repeats_a_message_fails() {
        let mut report = consistent();
        let twice = ("1".into(), 1, "7".into(), "a".into(), "0".into());
        report.users[1].synced = Some(vec![twice.clone(), twice]);
        report.assert_everyone_synced_everything();
    }

    #[test]
    #[should_panic(expected = "clientMsgIds with several ids")]
    fn a_client_msg_id_seen_with_two_ids_fails() {
        let mut report = consistent();
        report.users[1].saved.push(("a".into(), "2".into()));
        report.assert_one_id_per_client_msg_id();
    }

    #[test]
    #[should_panic(expected = "unacknowledged")]
    fn a_send_never_acknowledged_fails() {
        let mut report = consistent();
        report.users[0].unacked.push("b".into());
        report.assert_every_send_settled();
    }
}
