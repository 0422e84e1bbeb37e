//! The group commit's statements as **prepared statements**: fixed SQL text whose parameters are
//! arrays, so one statement serves every batch size, is prepared once per connection and its
//! plan reused. (`diesel::sql_query` is never cached, and a multi-row `INSERT … VALUES` has a
//! different text for every row count: each batch paid PostgreSQL's parse and plan again.)

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Untyped};
use diesel::QueryResult;

/// One array parameter.
pub enum Bind<'a> {
    BigInt(&'a [i64]),
    Text(&'a [&'a str]),
    NullableText(&'a [Option<&'a str>]),
}

/// A statement: `parts` around the parameters (`parts.len() == binds.len() + 1`); `S` names it
/// (a unit type per statement), which is what the connection's statement cache keys it by.
pub struct Prepared<'a, S> {
    parts: &'static [&'static str],
    binds: Vec<Bind<'a>>,
    statement: PhantomData<S>,
}

impl<'a, S> Prepared<'a, S> {
    pub fn new(parts: &'static [&'static str], binds: Vec<Bind<'a>>) -> Self {
        debug_assert_eq!(parts.len(), binds.len() + 1);
        Self {
            parts,
            binds,
            statement: PhantomData,
        }
    }
}

impl<S: 'static> QueryId for Prepared<'_, S> {
    type QueryId = S;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S> Query for Prepared<'_, S> {
    type SqlType = Untyped;
}

impl<S> QueryFragment<Pg> for Prepared<'_, S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut parts = self.parts.iter();
        if let Some(first) = parts.next() {
            out.push_sql(first);
        }
        for (bind, part) in self.binds.iter().zip(parts) {
            match bind {
                Bind::BigInt(values) => out.push_bind_param::<Array<BigInt>, _>(values)?,
                Bind::Text(values) => out.push_bind_param::<Array<Text>, _>(values)?,
                Bind::NullableText(values) => {
                    out.push_bind_param::<Array<Nullable<Text>>, _>(values)?
                }
            }
            out.push_sql(part);
        }
        Ok(())
    }
}

/// The statements, one unit type each.
pub struct FindKeys;
pub struct OrderSeqs;
pub struct LockConversations;
pub struct MoveSeqs;
pub struct InsertMessages;
pub struct InsertChanges;

/// The columns of a message row, for `SELECT` and `RETURNING` (read as `MessageByName`).
macro_rules! message_columns {
    () => {
        "id, conversation_id, sender_id, client_msg_id, seq, kind, content, attachment_id, created_at"
    };
}

/// The stored rows of exact `(sender, clientMsgId)` keys (`$1` senders, `$2` keys, pairwise):
/// one look-up in the unique index per key whatever the plan cache decides (the `LIMIT 1` keeps
/// the planner from flattening the `LATERAL` subquery into a join; a join with `IN` got a
/// generic plan, made while `messages` was small, that scanned the whole table every batch).
pub const FIND_KEYS: &[&str] = &[
    "SELECT m.* FROM unnest(",
    "::bigint[], ",
    concat!(
        "::text[]) AS k(s, c) CROSS JOIN LATERAL (SELECT ",
        message_columns!(),
        " FROM messages WHERE sender_id = k.s AND client_msg_id = k.c LIMIT 1) AS m"
    ),
];

/// Take the conversations' seq turns (transaction-scoped advisory locks keyed by conversation id,
/// `$1` in ascending order so two batches cannot deadlock) **before this transaction writes
/// anything**. PostgreSQL gives a transaction its xid at its first write or row lock, *before*
/// that waits, so two senders queued on one conversation row may get xids in the other order
/// than their seqs; sync reads changes in xid order and would hand out seq 31 before 29. A
/// transaction that waits here has no xid yet and takes one only after the previous holder
/// committed: within a conversation, xid order is seq order.
pub const ORDER_SEQS: &[&str] = &[
    "SELECT pg_advisory_xact_lock(id) FROM unnest(",
    "::bigint[]) WITH ORDINALITY AS t(id, o) ORDER BY o",
];

/// Lock conversation rows in ascending id order.
pub const LOCK_CONVERSATIONS: &[&str] = &[
    "SELECT id FROM conversations WHERE id = ANY(",
    ") ORDER BY id FOR UPDATE",
];

/// Move each conversation's `last_seq` up by its count; the new `last_seq`s.
pub const MOVE_SEQS: &[&str] = &[
    "UPDATE conversations AS c SET last_seq = c.last_seq + v.n, last_message_at = now() \
     FROM unnest(",
    "::bigint[], ",
    "::bigint[]) AS v(id, n) WHERE c.id = v.id RETURNING c.id, c.last_seq",
];

/// Insert the new messages in the order given; the rows inserted (a key stored meanwhile is
/// skipped).
pub const INSERT_MESSAGES: &[&str] = &[
    "INSERT INTO messages \
     (conversation_id, sender_id, client_msg_id, seq, kind, content, attachment_id) \
     SELECT c, s, k, q, t, b, a FROM unnest(",
    "::bigint[], ",
    "::bigint[], ",
    "::text[], ",
    "::bigint[], ",
    "::text[], ",
    "::text[], ",
    concat!(
        "::text[]) WITH ORDINALITY AS v(c, s, k, q, t, b, a, o) ORDER BY o \
         ON CONFLICT (sender_id, client_msg_id) DO NOTHING RETURNING ",
        message_columns!()
    ),
];

/// One `changes` row per new message, in the order given.
pub const INSERT_CHANGES: &[&str] = &[
    "INSERT INTO changes (conversation_id, kind, message_id) \
     SELECT c, 'message', m FROM unnest(",
    "::bigint[], ",
    "::bigint[]) WITH ORDINALITY AS v(c, m, o) ORDER BY o",
];

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;

    #[test]
    fn a_statement_numbers_its_array_parameters_in_order() {
        let ids = [1_i64, 2];
        let counts = [3_i64, 4];
        let query =
            Prepared::<MoveSeqs>::new(MOVE_SEQS, vec![Bind::BigInt(&ids), Bind::BigInt(&counts)]);
        let sql = debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with(
                "UPDATE conversations AS c SET last_seq = c.last_seq + v.n, last_message_at = now() \
                 FROM unnest($1::bigint[], $2::bigint[]) AS v(id, n)"
            ),
            "{sql}"
        );
    }

    #[test]
    fn every_statement_has_one_part_more_than_parameters() {
        for (parts, binds) in [
            (FIND_KEYS, 2),
            (ORDER_SEQS, 1),
            (LOCK_CONVERSATIONS, 1),
            (MOVE_SEQS, 2),
            (INSERT_MESSAGES, 7),
            (INSERT_CHANGES, 2),
        ] {
            assert_eq!(parts.len(), binds + 1, "{}", parts[0]);
        }
    }
}
