//! Group commit on PostgreSQL: a batch of messages stored in one transaction with a fixed, small
//! number of statements, whatever its size (what each message becomes is decided in
//! [`crate::store::batch`]).
//!
//! 1. Targets, before the transaction: the `recipientId` sends' users (one query), their direct
//!    conversations (one query, then find-or-create only for missing pairs, as a single send
//!    does), the members of every `conversationId` named (one query: it decides the senders'
//!    membership, and gives the members the answers and the published events need).
//! 2. In one transaction: the conversations' seq turns (advisory locks **in ascending id
//!    order**, `ORDER_SEQS`) and the stored rows of the batch's exact `(sender, clientMsgId)` keys
//!    (one query joining the keys as `unnest` arrays), pipelined in one round trip; then one
//!    statement (`STORE_MESSAGES`) moves every conversation's `last_seq` up by its count of new
//!    messages, inserts them (`ON CONFLICT DO NOTHING`, rows in key order, so that two batches
//!    sharing keys wait on each other in the same order) with seqs from their ranks, and their
//!    `changes` rows, stamped with this transaction's xid by the column default, as a single
//!    send's. No `FOR UPDATE` first: the turns already serialise the batches of a conversation.
//!    Every statement has the same text whatever the batch's size (arrays, not one placeholder
//!    per row), so each is prepared once per connection and its plan reused.
//! 3. After the commit, only the members of conversations step 1 did not read (direct
//!    conversations found by `recipientId`), if any (one query).
//!
//! When the statement returned fewer rows than it was given, a concurrent send of one of the keys
//! committed in between: the transaction rolls back (its seqs with it, so no gap) and the batch
//! runs again from step 2, where that key is now found stored.

use super::conversations::{find_or_create_direct, load};
use super::dialect::Conn;
use super::rows::{MemberRow, MessageRow};
use super::schema::{conversations, members, users};
use crate::store::batch::{
    answers, attachments_to_link, check_attachments, inserts_by_conversation, plan, ranks, Step,
    Stored, TxError,
};
use crate::store::rows::direct_key;
use crate::store::{NewMessage, SendOutcome, StoreError, StoreResult, Target};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use shared::ids::UserId;
use std::collections::{BTreeSet, HashMap, HashSet};

use sql::{Bind, Prepared};

#[path = "batch_sql.rs"]
mod sql;

/// A message row read by name (the statements of [`sql`] are SQL text: their arrays have no
/// DSL), the same columns as [`MessageRow`].
#[derive(QueryableByName)]
struct MessageByName {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    conversation_id: i64,
    #[diesel(sql_type = BigInt)]
    sender_id: i64,
    #[diesel(sql_type = Text)]
    client_msg_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    content: String,
    #[diesel(sql_type = Nullable<Text>)]
    attachment_id: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<MessageByName> for MessageRow {
    fn from(r: MessageByName) -> Self {
        MessageRow {
            id: r.id,
            conversation_id: r.conversation_id,
            sender_id: r.sender_id,
            client_msg_id: r.client_msg_id,
            seq: r.seq,
            kind: r.kind,
            content: r.content,
            attachment_id: r.attachment_id,
            created_at: r.created_at,
        }
    }
}

/// Attempts of step 2 before giving up (each lost race finds one more key stored, so a second
/// attempt almost always succeeds).
const ATTEMPTS: u32 = 5;

pub async fn send(
    conn: &mut Conn,
    batch: Vec<NewMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    let (resolved, created, mut member_rows) = resolve(conn, &batch).await?;
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
    // Members of the conversations step 1 did not read (found by `recipientId`).
    let read: HashSet<i64> = member_rows.iter().map(|m| m.conversation_id).collect();
    let unread: Vec<i64> = targets
        .iter()
        .flatten()
        .copied()
        .filter(|id| !read.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unread.is_empty() {
        let more: Vec<MemberRow> = members::table
            .filter(members::conversation_id.eq_any(&unread))
            .order((members::conversation_id, members::user_id))
            .select(MemberRow::as_select())
            .load(conn)
            .await?;
        member_rows.extend(more);
    }
    let mut new_conversations = HashMap::new();
    for id in created {
        new_conversations.insert(id, load(conn, id).await?);
    }
    Ok(answers(stored, refusals, &member_rows, new_conversations))
}

/// What step 1 found: each message's conversation or its refusal, the direct conversations
/// created on the way, and the members of the conversations named by id.
type Resolved = (Vec<StoreResult<i64>>, BTreeSet<i64>, Vec<MemberRow>);

/// Each message's conversation (its target resolved, the sender a member) or its refusal, the
/// direct conversations created on the way, and the members of the conversations named by id.
async fn resolve(conn: &mut Conn, batch: &[NewMessage]) -> StoreResult<Resolved> {
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
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let member_rows: Vec<MemberRow> = if conversation_ids.is_empty() {
        Vec::new()
    } else {
        members::table
            .filter(members::conversation_id.eq_any(&conversation_ids))
            .order((members::conversation_id, members::user_id))
            .select(MemberRow::as_select())
            .load(conn)
            .await?
    };
    let memberships: HashSet<(i64, i64)> = member_rows
        .iter()
        .map(|m| (m.conversation_id, m.user_id))
        .collect();

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
    Ok((resolved, created, member_rows))
}

/// Take the seq turns of `conversations` (ascending ids) in the caller's transaction, before it
/// writes anything: within a conversation, the xid sync orders by is then the seq order (see
/// `sql::ORDER_SEQS`). Every path that allocates seqs calls this — the batch and a single send.
pub(super) async fn take_seq_turns(conn: &mut Conn, conversations: &[i64]) -> QueryResult<()> {
    if !conversations.is_empty() {
        Prepared::<sql::OrderSeqs>::new(sql::ORDER_SEQS, vec![Bind::BigInt(conversations)])
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Step 2 of the module doc, inside the caller's transaction.
async fn store(
    conn: &mut Conn,
    batch: &[NewMessage],
    targets: &[Option<i64>],
) -> Result<Stored, TxError> {
    let (senders, cmids): (Vec<i64>, Vec<&str>) = batch
        .iter()
        .zip(targets)
        .filter(|(_, t)| t.is_some())
        .map(|(m, _)| (m.sender.get(), m.client_msg_id.as_str()))
        .unzip();
    // The seq turns first, before the first write or row lock, and the stored keys, as pairs
    // (one unique-index look-up each: two `= ANY` lists would pair every sender with every key,
    // and a generic plan of that may scan the table): two statements, one round trip (the
    // connection pipelines them; PostgreSQL runs them in order, so the look-up sees what the
    // batches that held the turns before this one committed).
    let turns: Vec<i64> = targets
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let found: Vec<MessageRow> = if senders.is_empty() {
        Vec::new()
    } else {
        let shared: &Conn = conn;
        let turns = Prepared::<sql::OrderSeqs>::new(sql::ORDER_SEQS, vec![Bind::BigInt(&turns)])
            .execute(&mut &*shared);
        let keys = Prepared::<sql::FindKeys>::new(
            sql::FIND_KEYS,
            vec![Bind::BigInt(&senders), Bind::Text(&cmids)],
        )
        .load::<MessageByName>(&mut &*shared);
        let (_, found) = futures::try_join!(turns, keys)?;
        found.into_iter().map(MessageRow::from).collect()
    };
    let mut steps = plan(batch, targets, found);
    let uploads = super::uploads::lock(conn, &attachments_to_link(batch, &steps))
        .await
        .map_err(TxError::Store)?;
    check_attachments(batch, &mut steps, &uploads);
    let groups = inserts_by_conversation(&steps);
    if groups.is_empty() {
        return Ok(Stored {
            steps,
            inserted: HashMap::new(),
        });
    }

    let rank = ranks(&groups);
    let mut order: Vec<usize> = rank.keys().copied().collect();
    order.sort_by_key(|&i| (batch[i].sender, batch[i].client_msg_id.as_str()));
    let mut columns = NewColumns::default();
    for &i in &order {
        let m = &batch[i];
        let Step::Insert { conversation } = steps[i] else {
            unreachable!("only the inserts are grouped")
        };
        columns.conversation_id.push(conversation);
        columns.sender_id.push(m.sender.get());
        columns.client_msg_id.push(m.client_msg_id.as_str());
        columns.rank.push(rank[&i]);
        columns.kind.push(m.kind.as_str());
        columns.content.push(m.content.as_str());
        columns.attachment_id.push(m.attachment_id.as_deref());
    }
    let returned: Vec<MessageRow> = Prepared::<sql::StoreMessages>::new(
        sql::STORE_MESSAGES,
        vec![
            Bind::BigInt(&columns.conversation_id),
            Bind::BigInt(&columns.sender_id),
            Bind::Text(&columns.client_msg_id),
            Bind::BigInt(&columns.rank),
            Bind::Text(&columns.kind),
            Bind::Text(&columns.content),
            Bind::NullableText(&columns.attachment_id),
        ],
    )
    .load::<MessageByName>(conn)
    .await?
    .into_iter()
    .map(MessageRow::from)
    .collect();
    if returned.len() < order.len() {
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
    super::uploads::link_inserted(conn, batch, &inserted)
        .await
        .map_err(TxError::Store)?;
    Ok(Stored { steps, inserted })
}

/// The new messages of a batch as one array per column (bound to the `unnest` insert).
#[derive(Default)]
struct NewColumns<'a> {
    conversation_id: Vec<i64>,
    sender_id: Vec<i64>,
    client_msg_id: Vec<&'a str>,
    /// The rank among the batch's new messages of its conversation (1, 2, … in batch order).
    rank: Vec<i64>,
    kind: Vec<&'a str>,
    content: Vec<&'a str>,
    attachment_id: Vec<Option<&'a str>>,
}
