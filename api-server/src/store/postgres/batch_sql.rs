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
pub struct StoreMessages;

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

/// Store a batch's new messages in one statement, in the caller's transaction, after
/// [`ORDER_SEQS`] (which serialises the batches of a conversation, so no row lock is taken
/// first: the `UPDATE` locks its rows, and no other batch of these conversations can be waiting
/// for them). `$1`…`$7` are one row per new message, **in key order** `(sender, clientMsgId)`,
/// so that two batches sharing keys wait on each other in the same order: conversation, sender,
/// key, its rank among the batch's messages of its conversation (1, 2, … in batch order), kind,
/// content, upload. Every conversation's `last_seq` moves up by its count of rows, each message
/// takes `last_seq - count + rank`, its `changes` row follows (conversation and seq order, as
/// single sends write them; stamped with this transaction's xid by the column default). The
/// rows inserted come back: a key stored meanwhile is skipped (`ON CONFLICT DO NOTHING`), and the
/// caller, getting fewer rows than it gave, rolls back (the seqs with it, so no gap).
pub const STORE_MESSAGES: &[&str] = &[
    "WITH v AS (SELECT * FROM unnest(",
    "::bigint[], ",
    "::bigint[], ",
    "::text[], ",
    "::bigint[], ",
    "::text[], ",
    "::text[], ",
    concat!(
        "::text[]) WITH ORDINALITY AS v(c, s, k, r, t, b, a, o)), \
         n AS (SELECT c, count(*) AS n FROM v GROUP BY c), \
         moved AS (UPDATE conversations AS cv SET last_seq = cv.last_seq + n.n, \
         last_message_at = now() FROM n WHERE cv.id = n.c RETURNING cv.id, cv.last_seq, n.n), \
         inserted AS (INSERT INTO messages \
         (conversation_id, sender_id, client_msg_id, seq, kind, content, attachment_id) \
         SELECT v.c, v.s, v.k, moved.last_seq - moved.n + v.r, v.t, v.b, v.a \
         FROM v JOIN moved ON moved.id = v.c ORDER BY v.o \
         ON CONFLICT (sender_id, client_msg_id) DO NOTHING RETURNING ",
        message_columns!(),
        "), changed AS (INSERT INTO changes (conversation_id, kind, message_id) \
         SELECT conversation_id, 'message', id FROM inserted ORDER BY conversation_id, seq) \
         SELECT ",
        message_columns!(),
        " FROM inserted"
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;

    #[test]
    fn a_statement_numbers_its_array_parameters_in_order() {
        let senders = [1_i64, 2];
        let keys = ["a", "b"];
        let query =
            Prepared::<FindKeys>::new(FIND_KEYS, vec![Bind::BigInt(&senders), Bind::Text(&keys)]);
        let sql = debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with("SELECT m.* FROM unnest($1::bigint[], $2::text[]) AS k(s, c)"),
            "{sql}"
        );
    }

    #[test]
    fn every_statement_has_one_part_more_than_parameters() {
        for (parts, binds) in [(FIND_KEYS, 2), (ORDER_SEQS, 1), (STORE_MESSAGES, 7)] {
            assert_eq!(parts.len(), binds + 1, "{}", parts[0]);
        }
    }
}
