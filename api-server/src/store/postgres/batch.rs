//! Group commit on PostgreSQL: a batch of messages stored in one transaction with a fixed, small
//! number of statements and round trips, whatever its size (what each message becomes is
//! decided in [`crate::store::batch`]).
//!
//! 1. Only for `recipientId` sends (the rare case), before the transaction: the batch's sessions
//!    (one query, so that a revoked session creates nothing), then the recipients (one query),
//!    their direct conversations (one query, then find-or-create only for missing pairs, as a
//!    single send does). A batch addressed by `conversationId` alone skips this step.
//! 2. One transaction: `BEGIN`; one round trip pipelining four statements — the seq turns of
//!    every conversation the batch names or found (advisory locks **in ascending id order**,
//!    `ORDER_SEQS`), the batch's active sessions, the member rows of those conversations, and
//!    the stored rows of the batch's exact `(sender, clientMsgId)` keys (one query joining the
//!    keys as `unnest` arrays). PostgreSQL runs them in order, so the reads see what the batches
//!    that held the turns before this one committed. Then, in Rust, a message whose session is
//!    not an active one of its sender is refused (`SessionInactive`), one whose sender is not a
//!    member of the conversation it names too (`ConversationNotFound`; the turn taken for it
//!    only cost a short lock), and the rest is planned. Then one statement (`STORE_MESSAGES`)
//!    moves every conversation's `last_seq` up by its count of new messages, inserts them (`ON
//!    CONFLICT DO NOTHING`, rows in key order, so that two batches sharing keys wait on each
//!    other in the same order) with seqs from their ranks, and their `changes` rows, stamped
//!    with this transaction's xid by the column default, as a single send's; `COMMIT`. No
//!    `FOR UPDATE` first: the turns already serialise the batches of a conversation. Every
//!    statement has the same text whatever the batch's size (arrays, not one placeholder per
//!    row), so each is prepared once per connection and its plan reused. Common case: one pool
//!    checkout, one transaction, four round trips (`BEGIN`, the pipeline, `STORE_MESSAGES`,
//!    `COMMIT`); uploads add their lock and link.
//! 3. After the commit, only for direct conversations step 1 created: the conversation, to
//!    announce it (one query each).
//!
//! When the statement returned fewer rows than it was given, a concurrent send of one of the keys
//! committed in between: the transaction rolls back (its seqs with it, so no gap) and the batch
//! runs again from step 2, where that key is now found stored.

use super::conversations::{find_or_create_direct, load};
use super::dialect::Conn;
use super::rows::{MemberRow, MessageRow};
use super::schema::{conversations, members, users};
use super::users::active_among;
use crate::store::batch::{
    answers, attachments_to_link, check_attachments, inserts_by_conversation, plan, ranks, split,
    Sessions, Step, Stored, TxError,
};
use crate::store::rows::direct_key;
use crate::store::{NewMessage, SendOutcome, SessionMessage, StoreError, StoreResult, Target};
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
    batch: Vec<SessionMessage>,
) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
    let (batch, sessions) = split(batch);
    let (before, created) = resolve_recipients(conn, &batch, &sessions).await?;
    let decided = if before.iter().all(|b| matches!(b, Before::Refused(_))) {
        // Every message is a refused `recipientId` send: nothing to store.
        Decided {
            stored: Stored {
                steps: batch.iter().map(|_| Step::Unresolved).collect(),
                inserted: HashMap::new(),
            },
            targets: vec![None; batch.len()],
            held: vec![true; batch.len()],
            members: Vec::new(),
        }
    } else {
        let mut attempt = 1;
        loop {
            let result = conn
                .transaction(async |conn| store(conn, &batch, &sessions, &before).await)
                .await;
            match result {
                Ok(decided) => break decided,
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
        }
    };
    let refusals = before
        .into_iter()
        .zip(&decided.targets)
        .zip(&decided.held)
        .map(|((before, target), &held)| match (before, target) {
            (_, Some(_)) => None,
            (_, None) if !held => Some(StoreError::SessionInactive),
            (Before::Refused(e), None) => Some(e),
            (Before::Named(_), None) => Some(StoreError::ConversationNotFound),
            (Before::Direct(_), None) => Some(StoreError::Unexpected(anyhow::anyhow!(
                "a direct conversation found went unused"
            ))),
        })
        .collect();
    let mut new_conversations = HashMap::new();
    for id in created {
        new_conversations.insert(id, load(conn, id).await?);
    }
    Ok(answers(
        decided.stored,
        refusals,
        &decided.members,
        new_conversations,
    ))
}

/// What step 1 made of a message.
enum Before {
    /// Addressed by conversation id: the sender's membership is read in step 2.
    Named(i64),
    /// A `recipientId` send's direct conversation (found or created).
    Direct(i64),
    /// A `recipientId` send refused (its session, the recipient).
    Refused(StoreError),
}

impl Before {
    /// The conversation step 2 takes the turn of, reads the members of, and may store into.
    fn conversation(&self) -> Option<i64> {
        match *self {
            Before::Named(id) | Before::Direct(id) => Some(id),
            Before::Refused(_) => None,
        }
    }
}

/// Step 1 of the module doc: what each message goes to, the `recipientId` sends resolved (the
/// others as named), and the direct conversations created on the way.
async fn resolve_recipients(
    conn: &mut Conn,
    batch: &[NewMessage],
    sessions: &Sessions,
) -> StoreResult<(Vec<Before>, BTreeSet<i64>)> {
    let mut created = BTreeSet::new();
    if batch
        .iter()
        .all(|m| matches!(m.target, Target::Conversation(_)))
    {
        let before = batch
            .iter()
            .map(|m| match m.target {
                Target::Conversation(c) => Before::Named(c.get()),
                Target::Recipient(_) => unreachable!("all are addressed by conversation"),
            })
            .collect();
        return Ok((before, created));
    }
    let active: Vec<(String, i64)> = active_among(&sessions.distinct).load(conn).await?;
    let held = sessions.held(batch, &active);
    let recipients: Vec<i64> = batch
        .iter()
        .zip(&held)
        .filter_map(|(m, &held)| match m.target {
            Target::Recipient(r) if held && r != m.sender => Some(r.get()),
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
    let mut before = Vec::with_capacity(batch.len());
    for (m, held) in batch.iter().zip(held) {
        let step = match m.target {
            Target::Conversation(c) => Before::Named(c.get()),
            Target::Recipient(_) if !held => Before::Refused(StoreError::SessionInactive),
            Target::Recipient(r) if r == m.sender => Before::Refused(StoreError::Invalid(
                "recipientId",
                "cannot be the sender".into(),
            )),
            Target::Recipient(r) if !existing_users.contains(&r.get()) => {
                Before::Refused(StoreError::UserNotFound)
            }
            Target::Recipient(r) => {
                let key = direct_key(m.sender, r);
                match directs.get(&key) {
                    Some(&id) => Before::Direct(id),
                    None => {
                        let (id, was_created) = find_or_create_direct(conn, m.sender, r).await?;
                        if was_created {
                            created.insert(id);
                        }
                        directs.insert(key, id);
                        Before::Direct(id)
                    }
                }
            }
        };
        before.push(step);
    }
    Ok((before, created))
}

/// What step 2 decided and stored.
struct Decided {
    stored: Stored,
    /// Message `i`'s conversation, or `None` when it was refused before the plan.
    targets: Vec<Option<i64>>,
    /// Whether message `i`'s session is an active one of its sender.
    held: Vec<bool>,
    /// The member rows of every conversation of the batch.
    members: Vec<MemberRow>,
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
    sessions: &Sessions,
    before: &[Before],
) -> Result<Decided, TxError> {
    let turns: Vec<i64> = before
        .iter()
        .filter_map(Before::conversation)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (senders, cmids): (Vec<i64>, Vec<&str>) = batch
        .iter()
        .zip(before)
        .filter(|(_, b)| b.conversation().is_some())
        .map(|(m, _)| (m.sender.get(), m.client_msg_id.as_str()))
        .unzip();
    // The seq turns first, before the first write or row lock; then the sessions, the members
    // and the stored keys, as pairs (one unique-index look-up each: two `= ANY` lists would
    // pair every sender with every key, and a generic plan of that may scan the table): four
    // statements, one round trip (the connection pipelines them; PostgreSQL runs them in order,
    // so the reads see what the batches that held the turns before this one committed).
    let (active, members, found): (Vec<(String, i64)>, Vec<MemberRow>, Vec<MessageByName>) = {
        let shared: &Conn = conn;
        let turns_taken =
            Prepared::<sql::OrderSeqs>::new(sql::ORDER_SEQS, vec![Bind::BigInt(&turns)])
                .execute(&mut &*shared);
        let active = active_among(&sessions.distinct).load::<(String, i64)>(&mut &*shared);
        let members = members::table
            .filter(members::conversation_id.eq_any(&turns))
            .order((members::conversation_id, members::user_id))
            .select(MemberRow::as_select())
            .load::<MemberRow>(&mut &*shared);
        let keys = Prepared::<sql::FindKeys>::new(
            sql::FIND_KEYS,
            vec![Bind::BigInt(&senders), Bind::Text(&cmids)],
        )
        .load::<MessageByName>(&mut &*shared);
        let (_, active, members, found) = futures::try_join!(turns_taken, active, members, keys)?;
        (active, members, found)
    };
    let found: Vec<MessageRow> = found.into_iter().map(MessageRow::from).collect();
    let held = sessions.held(batch, &active);
    let memberships: HashSet<(i64, i64)> = members
        .iter()
        .map(|m| (m.conversation_id, m.user_id))
        .collect();
    let targets: Vec<Option<i64>> = batch
        .iter()
        .zip(before)
        .zip(&held)
        .map(|((m, before), &held)| match *before {
            _ if !held => None,
            Before::Named(id) if memberships.contains(&(id, m.sender.get())) => Some(id),
            Before::Direct(id) => Some(id),
            Before::Named(_) | Before::Refused(_) => None,
        })
        .collect();
    let stored = insert(conn, batch, &targets, found).await?;
    Ok(Decided {
        stored,
        targets,
        held,
        members,
    })
}

/// The rest of step 2: plan each message (`targets` as [`Decided::targets`], `found` the stored
/// rows of the batch's keys), lock and check the uploads, store the new messages.
async fn insert(
    conn: &mut Conn,
    batch: &[NewMessage],
    targets: &[Option<i64>],
    found: Vec<MessageRow>,
) -> Result<Stored, TxError> {
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
