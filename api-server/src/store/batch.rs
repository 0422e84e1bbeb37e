//! Group commit, the part every backend shares: deciding what each message of a batch becomes
//! (a refusal, the answer of a retry, or a new row), allocating seqs per conversation in batch
//! order, and assembling one answer per message. The backends only run the queries.
//!
//! A batch answers exactly as its messages sent one after the other would:
//! - a message whose `(sender, clientMsgId)` is stored answers the original (a retry), or
//!   [`StoreError::IdempotencyMismatch`] when its content or conversation differs;
//! - a message repeating the key of an earlier one of the same batch answers like a retry of
//!   that one (the same row, `created: false`), or a mismatch;
//! - a message whose session is not an active one of its sender is refused first
//!   ([`StoreError::SessionInactive`], the relay's `token_revoked`; [`Sessions`]);
//! - a refusal (not a member, unknown recipient, …) answers that message only.

use super::rows::{attach_refusal, AttachmentRow, MemberRow, MessageRow};
use super::{NewMessage, SendOutcome, SessionMessage, StoreError, StoreResult};
use shared::ids::UserId;
use shared::wire::Conversation;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The sessions of a batch's messages (see [`super::SessionMessage`]).
pub struct Sessions {
    /// Message `i`'s session.
    of: Vec<String>,
    /// The distinct sessions, ascending (to read at once).
    pub distinct: Vec<String>,
}

/// Split a batch into its messages and their sessions.
pub fn split(batch: Vec<SessionMessage>) -> (Vec<NewMessage>, Sessions) {
    let (of, messages): (Vec<String>, Vec<NewMessage>) =
        batch.into_iter().map(|m| (m.jti, m.message)).unzip();
    let distinct = of
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (messages, Sessions { of, distinct })
}

impl Sessions {
    /// Whether each message's session is an active one of its sender, from `active` (the active
    /// sessions among [`Sessions::distinct`] with their user ids, as `users::active_among` reads
    /// them): a jti holds for its own user only.
    pub fn held(&self, batch: &[NewMessage], active: &[(String, i64)]) -> Vec<bool> {
        let active: HashMap<&str, i64> = active.iter().map(|(j, u)| (j.as_str(), *u)).collect();
        self.of
            .iter()
            .zip(batch)
            .map(|(jti, m)| active.get(jti.as_str()) == Some(&m.sender.get()))
            .collect()
    }
}

/// Why a write transaction storing messages rolled back.
pub enum TxError {
    /// A concurrent send of one of its `(sender, clientMsgId)` keys committed first; the seqs it
    /// allocated were rolled back with it, so no gap is left.
    Raced,
    Store(StoreError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Store(e.into())
    }
}

/// What one message of a batch becomes.
#[derive(Debug)]
pub enum Step {
    /// Refused before the lookup (its target); the backend holds the reason.
    Unresolved,
    /// Refused by the lookup (an idempotency mismatch).
    Refused(StoreError),
    /// A retry: the stored original answers.
    Stored(MessageRow),
    /// New: to insert into this conversation.
    Insert { conversation: i64 },
    /// The same message as the earlier item at this index, which is inserted.
    RetryOf(usize),
}

/// The `(sender, clientMsgId)` key of a message.
fn key(new: &NewMessage) -> (i64, &str) {
    (new.sender.get(), new.client_msg_id.as_str())
}

/// Whether two sends of one key carry the same message (as [`MessageRow::same_as`]).
fn same_message(a: &NewMessage, b: &NewMessage) -> bool {
    a.kind == b.kind
        && a.content.as_str() == b.content.as_str()
        && a.attachment_id == b.attachment_id
}

/// Decide each message's step. `targets[i]` is message `i`'s conversation (resolved, sender a
/// member) or `None` when it was refused; `stored` holds at least the stored rows of the
/// batch's keys (others are ignored).
pub fn plan(batch: &[NewMessage], targets: &[Option<i64>], stored: Vec<MessageRow>) -> Vec<Step> {
    let stored: HashMap<(i64, String), MessageRow> = stored
        .into_iter()
        .map(|row| ((row.sender_id, row.client_msg_id.clone()), row))
        .collect();
    let mut first: HashMap<(i64, &str), usize> = HashMap::new();
    let mut steps = Vec::with_capacity(batch.len());
    for (i, (new, target)) in batch.iter().zip(targets).enumerate() {
        let Some(conversation) = *target else {
            steps.push(Step::Unresolved);
            continue;
        };
        let (sender, cmid) = key(new);
        if let Some(row) = stored.get(&(sender, cmid.to_owned())) {
            steps.push(match row.same_as(conversation, new) {
                Ok(()) => Step::Stored(row.clone()),
                Err(e) => Step::Refused(e),
            });
            continue;
        }
        if let Some(&j) = first.get(&(sender, cmid)) {
            let same = targets[j] == Some(conversation) && same_message(&batch[j], new);
            steps.push(if same {
                Step::RetryOf(j)
            } else {
                Step::Refused(StoreError::IdempotencyMismatch)
            });
            continue;
        }
        first.insert((sender, cmid), i);
        steps.push(Step::Insert { conversation });
    }
    steps
}

/// The uploads the new messages of `steps` attach (to load, locked, before [`check_attachments`]).
pub fn attachments_to_link(batch: &[NewMessage], steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .zip(batch)
        .filter(|(step, _)| matches!(step, Step::Insert { .. }))
        .filter_map(|(_, new)| new.attachment_id.clone())
        .collect()
}

/// Refuse the new messages whose upload is not one of their sender's, of their kind, unattached
/// and attached by no earlier message of the batch (`rows`: the uploads of
/// [`attachments_to_link`], locked). A retry of a refused message is refused alike. What is left
/// to insert links its upload for sure.
pub fn check_attachments(batch: &[NewMessage], steps: &mut [Step], rows: &[AttachmentRow]) {
    let rows: HashMap<&str, &AttachmentRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut claimed: HashMap<&str, usize> = HashMap::new();
    let mut refused: Vec<bool> = vec![false; steps.len()];
    for i in 0..steps.len() {
        let new = &batch[i];
        match steps[i] {
            Step::Insert { .. } => {
                let Some(id) = new.attachment_id.as_deref() else {
                    continue;
                };
                let row = rows.get(id).copied();
                let fits = row.is_some_and(|r| {
                    r.owner_id == new.sender.get()
                        && r.kind == new.kind.as_str()
                        && r.message_id.is_none()
                }) && !claimed.contains_key(id);
                if fits {
                    claimed.insert(id, i);
                } else {
                    let mut shown = row.cloned();
                    if claimed.contains_key(id) {
                        // Attached by an earlier message of this batch.
                        if let Some(r) = shown.as_mut() {
                            r.message_id = Some(0);
                        }
                    }
                    steps[i] = Step::Refused(attach_refusal(
                        shown.as_ref(),
                        new.sender,
                        new.kind.as_str(),
                    ));
                    refused[i] = true;
                }
            }
            Step::RetryOf(j) if refused[j] => {
                let row = new
                    .attachment_id
                    .as_deref()
                    .and_then(|id| rows.get(id).copied());
                steps[i] = Step::Refused(attach_refusal(row, new.sender, new.kind.as_str()));
                refused[i] = true;
            }
            _ => {}
        }
    }
}

/// The messages to insert, by conversation in ascending id order (the order their rows are
/// locked in, so that concurrent batches cannot deadlock), each in batch order (their seqs).
pub fn inserts_by_conversation(steps: &[Step]) -> BTreeMap<i64, Vec<usize>> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        if let Step::Insert { conversation } = step {
            groups.entry(*conversation).or_default().push(i);
        }
    }
    groups
}

/// Each new message's rank among the new messages of its conversation (1, 2, … in batch order),
/// by batch index: its seq is the conversation's `last_seq` before the batch plus its rank.
pub fn ranks(groups: &BTreeMap<i64, Vec<usize>>) -> HashMap<usize, i64> {
    groups
        .values()
        .flat_map(|items| items.iter().copied().zip(1..))
        .collect()
}

/// What the batch's lookup and inserts produced, to answer from.
pub struct Stored {
    pub steps: Vec<Step>,
    /// The inserted rows, by batch index.
    pub inserted: HashMap<usize, MessageRow>,
}

/// One answer per message, in order. `refusals[i]` is the reason of an [`Step::Unresolved`]
/// message; `members` holds the member rows of every conversation the batch touched;
/// `new_conversations` the direct conversations created for `recipientId` sends (announced with
/// the first message stored in each).
pub fn answers(
    stored: Stored,
    mut refusals: Vec<Option<StoreError>>,
    members: &[MemberRow],
    mut new_conversations: HashMap<i64, Conversation>,
) -> Vec<StoreResult<SendOutcome>> {
    let member_ids = |conversation: i64| -> Vec<UserId> {
        members
            .iter()
            .filter(|m| m.conversation_id == conversation)
            .map(|m| UserId(m.user_id))
            .collect()
    };
    let answer = |row: &MessageRow, created: bool, new_conversation: Option<Conversation>| {
        Ok(SendOutcome {
            message: row.clone().into_wire(members)?,
            created,
            new_conversation,
            members: member_ids(row.conversation_id),
        })
    };
    let Stored { steps, inserted } = stored;
    steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| match step {
            Step::Unresolved => Err(refusals[i].take().unwrap_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!("message {i} has no refusal"))
            })),
            Step::Refused(e) => Err(e),
            Step::Stored(row) => answer(&row, false, None),
            Step::Insert { conversation } => match inserted.get(&i) {
                Some(row) => answer(row, true, new_conversations.remove(&conversation)),
                None => Err(anyhow::anyhow!("message {i} was not inserted").into()),
            },
            Step::RetryOf(j) => match inserted.get(&j) {
                Some(row) => answer(row, false, None),
                None => Err(anyhow::anyhow!("message {j} was not inserted").into()),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use shared::domain::{ClientMsgId, MessageContent, MessageKind};
    use shared::ids::ConversationId;

    fn new(sender: i64, cmid: &str, content: &str) -> NewMessage {
        NewMessage {
            sender: UserId(sender),
            client_msg_id: ClientMsgId::parse(cmid).unwrap(),
            target: super::super::Target::Conversation(ConversationId(1)),
            kind: MessageKind::Text,
            content: MessageContent::parse(content, 100).unwrap(),
            attachment_id: None,
        }
    }

    fn row(sender: i64, cmid: &str, conversation: i64, content: &str) -> MessageRow {
        MessageRow {
            id: 1,
            conversation_id: conversation,
            sender_id: sender,
            client_msg_id: cmid.into(),
            seq: 1,
            kind: "text".into(),
            content: content.into(),
            attachment_id: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_batch_answers_as_its_messages_sent_one_by_one_would() {
        let batch = [
            new(1, "a", "hi"),    // new
            new(1, "b", "hi"),    // not a member
            new(1, "a", "hi"),    // retry of item 0
            new(1, "a", "other"), // mismatch with item 0
            new(1, "s", "hi"),    // retry of a stored one
            new(1, "t", "hi"),    // mismatch with a stored one
            new(2, "a", "hi"),    // another sender's key
        ];
        let targets = [Some(5), None, Some(5), Some(5), Some(5), Some(5), Some(4)];
        let stored = vec![row(1, "s", 5, "hi"), row(1, "t", 5, "bye")];
        let steps = plan(&batch, &targets, stored);
        assert!(matches!(steps[0], Step::Insert { conversation: 5 }));
        assert!(matches!(steps[1], Step::Unresolved));
        assert!(matches!(steps[2], Step::RetryOf(0)));
        assert!(matches!(
            steps[3],
            Step::Refused(StoreError::IdempotencyMismatch)
        ));
        assert!(matches!(steps[4], Step::Stored(_)));
        assert!(matches!(
            steps[5],
            Step::Refused(StoreError::IdempotencyMismatch)
        ));
        assert!(matches!(steps[6], Step::Insert { conversation: 4 }));
        let groups = inserts_by_conversation(&steps);
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            [(4, vec![6]), (5, vec![0])]
        );
    }

    #[test]
    fn ranks_count_each_conversation_in_batch_order() {
        let groups = BTreeMap::from([(4, vec![1, 3, 6]), (5, vec![0, 2])]);
        let mut ranks: Vec<(usize, i64)> = ranks(&groups).into_iter().collect();
        ranks.sort();
        assert_eq!(ranks, [(0, 1), (1, 1), (2, 2), (3, 2), (6, 3)]);
    }
}
