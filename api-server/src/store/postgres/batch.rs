//! Group commit on PostgreSQL: a batch of messages stored in one transaction with a fixed, small
//! number of statements, whatever its size (what each message becomes is decided in
//! [`crate::store::batch`]).
//!
//! 1. Targets, before the transaction: the `recipientId` sends' users (one query), their direct
//!    conversations (one query, then find-or-create only for missing pairs, as a single send
//!    does), the membership of every `(sender, conversationId)` (one query).
//! 2. In one transaction: the stored rows of the batch's `(sender, clientMsgId)` keys (one
//!    query); the conversation rows locked **in ascending id order** (one `SELECT … ORDER BY id
//!    FOR UPDATE`), then every conversation's `last_seq` moved up by its count of new messages
//!    in one `UPDATE … FROM unnest(…) RETURNING`, which allocates their consecutive seqs; every new
//!    message in one `INSERT … ON CONFLICT DO NOTHING RETURNING` (rows in key order, so that two
//!    batches sharing keys wait on each other in the same order); their `changes` rows in one
//!    insert, stamped with this transaction's xid by the column default, as a single send's.
//! 3. When the insert returned fewer rows than it was given, a concurrent send of one of the
//!    keys committed in between: the transaction rolls back (its seqs with it, so no gap) and
//!    the batch runs again from step 2, where that key is now found stored.

use super::conversations::{find_or_create_direct, load};
use super::rows::{MemberRow, MessageRow, NewMessageRow};
use super::schema::{changes, conversations, members, messages, users};
use crate::store::batch::{answers, inserts_by_conversation, plan, seqs, Stored};
use crate::store::rows::direct_key;
use crate::store::{NewMessage, SendOutcome, StoreError, StoreResult, Target};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, BigInt};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::ids::UserId;
use std::collections::{BTreeSet, HashMap, HashSet};

/// A conversation's `last_seq` after the batch moved it.
#[derive(QueryableByName)]
struct MovedSeq {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

/// Attempts of step 2 before giving up (each lost race finds one more key stored, so a second
/// attempt almost always succeeds).
const ATTEMPTS: u32 = 5;

/// Why the transaction rolled back.
enum TxError {
    /// A concurrent send of a key of the batch committed first.
    Raced,
    Store(StoreError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        TxError::Store(e.into())
    }
}

pub async fn send(
    conn: &mut AsyncPgConnection,
    batch: Vec<NewMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    let (resolved, created) = resolve(conn, &batch).await?;
    let targets: Vec<Option<i64>> = resolved.iter().map(|r| r.as_ref().ok().copied()).collect();
    let refusals: Vec<Option<StoreError>> = resolved.into_iter().map(Result::err).collect();
    let mut attempt = 1;
    let stored = loop {
        let result = conn
            .transaction(async |conn| store(conn, &batch, &targets).await)
            .await;
        match result {
            Ok(stored) => break stored,
            Err(TxError::Raced) if attempt < ATTEMPTS => {
                tracing::debug!(
                    attempt,
                    "a concurrent send committed a key of the batch; again"
                );
                attempt += 1;
            }
            Err(TxError::Raced) => {
                return Err(anyhow::anyhow!("the batch lost {ATTEMPTS} races in a row").into())
            }
            Err(TxError::Store(e)) => return Err(e),
        }
    };
    let touched: Vec<i64> = targets
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let member_rows: Vec<MemberRow> = members::table
        .filter(members::conversation_id.eq_any(&touched))
        .select(MemberRow::as_select())
        .load(conn)
        .await?;
    let mut new_conversations = HashMap::new();
    for id in created {
        new_conversations.insert(id, load(conn, id).await?);
    }
    Ok(answers(stored, refusals, &member_rows, new_conversations))
}

/// Each message's conversation (its target resolved, the sender a member) or its refusal, and
/// the direct conversations created on the way.
async fn resolve(
    conn: &mut AsyncPgConnection,
    batch: &[NewMessage],
) -> StoreResult<(Vec<StoreResult<i64>>, BTreeSet<i64>)> {
    let recipients: Vec<i64> = batch
        .iter()
        .filter_map(|m| match m.target {
            Target::Recipient(r) if r != m.sender => Some(r.get()),
            _ => None,
        })
        .collect();
    let existing_users: HashSet<i64> = if recipients.is_empty() {
        HashSet::new()
    } else {
        users::table
            .filter(users::id.eq_any(&recipients))
            .select(users::id)
            .load::<i64>(conn)
            .await?
            .into_iter()
            .collect()
    };
    let keys: Vec<String> = batch
        .iter()
        .filter_map(|m| match m.target {
            Target::Recipient(r) if existing_users.contains(&r.get()) => {
                Some(direct_key(m.sender, r))
            }
            _ => None,
        })
        .collect();
    let mut directs: HashMap<String, i64> = if keys.is_empty() {
        HashMap::new()
    } else {
        conversations::table
            .filter(conversations::direct_key.eq_any(&keys))
            .select((
                conversations::direct_key.assume_not_null(),
                conversations::id,
            ))
            .load::<(String, i64)>(conn)
            .await?
            .into_iter()
            .collect()
    };
    let conversation_ids: Vec<i64> = batch
        .iter()
        .filter_map(|m| match m.target {
            Target::Conversation(c) => Some(c.get()),
            Target::Recipient(_) => None,
        })
        .collect();
    let senders: Vec<i64> = batch.iter().map(|m| m.sender.get()).collect();
    let memberships: HashSet<(i64, i64)> = if conversation_ids.is_empty() {
        HashSet::new()
    } else {
        members::table
            .filter(members::conversation_id.eq_any(&conversation_ids))
            .filter(members::user_id.eq_any(&senders))
            .select((members::conversation_id, members::user_id))
            .load::<(i64, i64)>(conn)
            .await?
            .into_iter()
            .collect()
    };

    let mut created = BTreeSet::new();
    let mut resolved = Vec::with_capacity(batch.len());
    for m in batch {
        let target = match m.target {
            Target::Conversation(c) if memberships.contains(&(c.get(), m.sender.get())) => {
                Ok(c.get())
            }
            Target::Conversation(_) => Err(StoreError::ConversationNotFound),
            Target::Recipient(r) if r == m.sender => Err(StoreError::Invalid(
                "recipientId",
                "cannot be the sender".into(),
            )),
            Target::Recipient(r) if !existing_users.contains(&r.get()) => {
                Err(StoreError::UserNotFound)
            }
            Target::Recipient(r) => {
                let key = direct_key(m.sender, r);
                match directs.get(&key) {
                    Some(&id) => Ok(id),
                    None => {
                        let (id, was_created) = find_or_create_direct(conn, m.sender, r).await?;
                        if was_created {
                            created.insert(id);
                        }
                        directs.insert(key, id);
                        Ok(id)
                    }
                }
            }
        };
        resolved.push(target);
    }
    Ok((resolved, created))
}

/// Step 2 of the module doc, inside the caller's transaction.
async fn store(
    conn: &mut AsyncPgConnection,
    batch: &[NewMessage],
    targets: &[Option<i64>],
) -> Result<Stored, TxError> {
    let (senders, cmids): (Vec<i64>, Vec<&str>) = batch
        .iter()
        .zip(targets)
        .filter(|(_, t)| t.is_some())
        .map(|(m, _)| (m.sender.get(), m.client_msg_id.as_str()))
        .unzip();
    // Both lists may pair a sender with another's key: `plan` looks up exact keys only.
    let found: Vec<MessageRow> = if senders.is_empty() {
        Vec::new()
    } else {
        messages::table
            .filter(messages::sender_id.eq_any(&senders))
            .filter(messages::client_msg_id.eq_any(&cmids))
            .select(MessageRow::as_select())
            .load(conn)
            .await?
    };
    let steps = plan(batch, targets, found);
    let groups = inserts_by_conversation(&steps);
    if groups.is_empty() {
        return Ok(Stored {
            steps,
            inserted: HashMap::new(),
        });
    }

    // Lock the batch's conversation rows in ascending id order (the order every batch follows,
    // so two cannot deadlock; the row locks come above the sort), then move every `last_seq` in
    // one statement: two statements whatever the number of conversations.
    let ids: Vec<i64> = groups.keys().copied().collect();
    let counts: Vec<i64> = groups.values().map(|items| items.len() as i64).collect();
    diesel::sql_query("SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind::<Array<BigInt>, _>(&ids)
        .execute(conn)
        .await?;
    let moved: Vec<MovedSeq> = diesel::sql_query(
        "UPDATE conversations AS c \
         SET last_seq = c.last_seq + v.n, last_message_at = now() \
         FROM unnest($1::bigint[], $2::bigint[]) AS v(id, n) \
         WHERE c.id = v.id \
         RETURNING c.id, c.last_seq",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<BigInt>, _>(&counts)
    .load(conn)
    .await?;
    let last: HashMap<i64, i64> = moved.into_iter().map(|m| (m.id, m.last_seq)).collect();
    // Batch index → (conversation, seq).
    let mut placed: HashMap<usize, (i64, i64)> = HashMap::new();
    for (&conversation, items) in &groups {
        let &last = last.get(&conversation).ok_or_else(|| {
            TxError::Store(anyhow::anyhow!("conversation {conversation} vanished").into())
        })?;
        let at = seqs(last, items.len()).map(|seq| (conversation, seq));
        placed.extend(items.iter().copied().zip(at));
    }

    let mut order: Vec<usize> = placed.keys().copied().collect();
    order.sort_by_key(|&i| (batch[i].sender, batch[i].client_msg_id.as_str()));
    let rows: Vec<NewMessageRow> = order
        .iter()
        .map(|&i| {
            let m = &batch[i];
            let (conversation, seq) = placed[&i];
            NewMessageRow {
                conversation_id: conversation,
                sender_id: m.sender.get(),
                client_msg_id: m.client_msg_id.as_str(),
                seq,
                kind: m.kind.as_str(),
                content: m.content.as_str(),
                attachment_id: m.attachment_id.as_deref(),
            }
        })
        .collect();
    let returned: Vec<MessageRow> = diesel::insert_into(messages::table)
        .values(&rows)
        .on_conflict((messages::sender_id, messages::client_msg_id))
        .do_nothing()
        .returning(MessageRow::as_returning())
        .get_results(conn)
        .await?;
    if returned.len() < rows.len() {
        return Err(TxError::Raced);
    }

    let index: HashMap<(UserId, &str), usize> = order
        .iter()
        .map(|&i| ((batch[i].sender, batch[i].client_msg_id.as_str()), i))
        .collect();
    let mut inserted = HashMap::with_capacity(returned.len());
    for row in returned {
        let i = index
            .get(&(UserId(row.sender_id), row.client_msg_id.as_str()))
            .copied()
            .ok_or_else(|| TxError::Store(anyhow::anyhow!("an unexpected row came back").into()))?;
        inserted.insert(i, row);
    }
    // In conversation and seq order, as single sends would have written them.
    let mut new_rows: Vec<&MessageRow> = inserted.values().collect();
    new_rows.sort_by_key(|r| (r.conversation_id, r.seq));
    let change_rows: Vec<_> = new_rows
        .iter()
        .map(|r| {
            (
                changes::conversation_id.eq(r.conversation_id),
                changes::kind.eq("message"),
                changes::message_id.eq(Some(r.id)),
            )
        })
        .collect();
    diesel::insert_into(changes::table)
        .values(&change_rows)
        .execute(conn)
        .await?;
    Ok(Stored { steps, inserted })
}
