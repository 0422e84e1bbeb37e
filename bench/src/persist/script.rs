//! The pgbench script of `persist --side pgbench`: Parley's group commit (one pgbench
//! transaction = one batch) as the statements PostgreSQL receives from the API, **generated from
//! the API's own constants** (`api-server/src/store/postgres/batch_sql.rs`, compiled into this
//! crate below), so it cannot drift from them silently. The committed copy,
//! `bench/pgbench/group_commit.sql`, is checked against this generator by a unit test; write it
//! again with `BENCH_WRITE_PGBENCH_SCRIPT=1 cargo test -p bench pgbench_script`.
//!
//! Per batch, as the API sends them (`service::messages::store_batch` and
//! `store::postgres::batch::send`): the sessions check (one query for the batch's tokens), the
//! member read of the named conversations, then in one transaction the stored-key look-up
//! (`FIND_KEYS`), the seq turns (`ORDER_SEQS`), the conversation row locks
//! (`LOCK_CONVERSATIONS`), the seq move (`MOVE_SEQS`), the message insert (`INSERT_MESSAGES`) and
//! the change rows (`INSERT_CHANGES`). Two statements are the DSL's (diesel builds them): their
//! text is copied here from PostgreSQL's statement log of a `persist` run.
//!
//! What pgbench cannot do, carry rows from one statement's answer to the next one's arrays, is
//! done in SQL: one helper query per batch (no table read) draws the batch, and `MOVE_SEQS` and
//! `INSERT_MESSAGES` run verbatim inside a `WITH … AS (…) SELECT array_agg(…) \gset` that turns
//! their `RETURNING` rows into the next statement's arrays (the API does that in Rust). The API's
//! pool checks (`SELECT 1` per connection taken) are not statements of the group commit and are
//! not here. The helper's own PostgreSQL CPU is measured apart ([`draw_only`]) and subtracted.

#[allow(dead_code, clippy::all)]
#[path = "../../../api-server/src/store/postgres/batch_sql.rs"]
mod batch_sql;

use batch_sql::{
    FIND_KEYS, INSERT_CHANGES, INSERT_MESSAGES, LOCK_CONVERSATIONS, MOVE_SEQS, ORDER_SEQS,
};

/// `users::active_sessions` as diesel writes it.
const SESSIONS: &str = "SELECT \"sessions\".\"jti\", \"sessions\".\"user_id\" FROM \"sessions\" \
     WHERE (((\"sessions\".\"jti\" = ANY(:b_jtis)) AND (\"sessions\".\"revoked_at\" IS NULL)) \
     AND (\"sessions\".\"expires_at\" > CURRENT_TIMESTAMP))";

/// The member read of `batch::resolve` as diesel writes it.
const MEMBERS: &str = "SELECT \"members\".\"conversation_id\", \"members\".\"user_id\", \
     \"members\".\"delivered_up_to_seq\", \"members\".\"read_up_to_seq\", \"members\".\"joined_at\", \
     \"members\".\"updated_at\" FROM \"members\" WHERE (\"members\".\"conversation_id\" = ANY(:b_convs))";

/// The helper that draws a batch: `:batch` messages, each from a uniformly random user of
/// `:users` (with its session `:jtis` and conversation `:convs`, the same positions), keys
/// `g<client>-<n>-<i>` unique per run. Arrays in the orders the API builds them: `b_*` in batch
/// order (distinct conversations and tokens ascending), `i_*` in insert order (sender, key), with
/// `i_ranks` each message's place among its conversation's in batch order (its seq offset).
const DRAW: &str = r#"WITH d AS (
  SELECT i, 1 + floor(random() * cardinality(:users::bigint[]))::int AS k
  FROM generate_series(1, :batch::int) AS i
), p AS (
  SELECT i, (:users::bigint[])[k] AS s, (:convs::bigint[])[k] AS c, (:jtis::text[])[k] AS j,
         'g' || :client_id::text || '-' || :n::text || '-' || i AS m,
         'bench message ' || :client_id::text || ' ' || :n::text || ' ' || i AS b
  FROM d
), r AS (
  SELECT p.*, row_number() OVER (PARTITION BY c ORDER BY i) AS q FROM p
), g AS (
  SELECT c, count(*) AS n FROM r GROUP BY c
)
SELECT (SELECT array_agg(DISTINCT j ORDER BY j) FROM r)::text AS b_jtis,
       (SELECT array_agg(c ORDER BY c) FROM g)::text AS b_convs,
       (SELECT array_agg(n ORDER BY c) FROM g)::text AS b_counts,
       (SELECT array_agg(s ORDER BY i) FROM r)::text AS b_senders,
       (SELECT array_agg(m ORDER BY i) FROM r)::text AS b_cmids,
       array_agg(c ORDER BY s, m COLLATE "C")::text AS i_convs,
       array_agg(s ORDER BY s, m COLLATE "C")::text AS i_senders,
       array_agg(m ORDER BY s, m COLLATE "C")::text AS i_cmids,
       array_agg(q ORDER BY s, m COLLATE "C")::text AS i_ranks,
       array_agg('text'::text ORDER BY s, m COLLATE "C")::text AS i_kinds,
       array_agg(b ORDER BY s, m COLLATE "C")::text AS i_contents,
       array_agg(NULL::text ORDER BY s, m COLLATE "C")::text AS i_atts
FROM r"#;

/// The helper alone (the batch drawn, nothing stored): run as often as [`generate`]'s script,
/// its PostgreSQL CPU is what the helper adds to the floor, subtracted from it.
pub fn draw_only() -> String {
    let mut out = String::from("\\set n :n + 1\n");
    push(&mut out, DRAW, " \\gset");
    out
}

/// The script: one pgbench transaction stores one batch.
pub fn generate() -> String {
    let mut out = String::new();
    out.push_str(concat!(
        "-- Parley's group commit, one batch per pgbench transaction: the storage floor of\n",
        "-- `bench persist --side pgbench`. GENERATED by bench/src/persist/script.rs from\n",
        "-- api-server/src/store/postgres/batch_sql.rs: do not edit (a unit test fails when it drifts).\n",
        "-- Run with -M prepared and -D batch=<size> -D users='{id,…}' -D jtis='{jti,…}'\n",
        "-- -D convs='{conversation id,…}' (user i's session and conversation) -D n=0.\n",
        "\\set n :n + 1\n",
        "-- (helper, not Parley's) draw this batch\n",
    ));
    push(&mut out, DRAW, " \\gset");
    out.push_str("-- the sessions check, one query per batch (service::messages::store_batch)\n");
    push(&mut out, SESSIONS, ";");
    out.push_str("-- the member read of the conversations named (batch::resolve)\n");
    push(&mut out, MEMBERS, ";");
    out.push_str("BEGIN;\n-- FIND_KEYS: the stored rows of the batch's keys\n");
    push(&mut out, &fill(FIND_KEYS, &["b_senders", "b_cmids"]), ";");
    out.push_str("-- ORDER_SEQS: the conversations' seq turns\n");
    push(&mut out, &fill(ORDER_SEQS, &["b_convs"]), ";");
    out.push_str("-- LOCK_CONVERSATIONS\n");
    push(&mut out, &fill(LOCK_CONVERSATIONS, &["b_convs"]), ";");
    out.push_str("-- MOVE_SEQS, verbatim; around it, each new message's seq in insert order\n");
    let moved = format!(
        "WITH moved AS ({}) SELECT array_agg(moved.last_seq - v.n + r.q ORDER BY r.o)::text AS i_seqs \
         FROM unnest(:i_convs::bigint[], :i_ranks::bigint[]) WITH ORDINALITY AS r(c, q, o) \
         JOIN moved ON moved.id = r.c \
         JOIN unnest(:b_convs::bigint[], :b_counts::bigint[]) AS v(id, n) ON v.id = r.c",
        fill(MOVE_SEQS, &["b_convs", "b_counts"])
    );
    push(&mut out, &moved, " \\gset");
    out.push_str("-- INSERT_MESSAGES, verbatim; around it, the change rows' arrays\n");
    let inserted = format!(
        "WITH inserted AS ({}) SELECT \
         array_agg(conversation_id ORDER BY conversation_id, seq)::text AS c_convs, \
         array_agg(id ORDER BY conversation_id, seq)::text AS c_ids FROM inserted",
        fill(
            INSERT_MESSAGES,
            &[
                "i_convs",
                "i_senders",
                "i_cmids",
                "i_seqs",
                "i_kinds",
                "i_contents",
                "i_atts",
            ]
        )
    );
    push(&mut out, &inserted, " \\gset");
    out.push_str("-- INSERT_CHANGES\n");
    push(&mut out, &fill(INSERT_CHANGES, &["c_convs", "c_ids"]), ";");
    out.push_str("COMMIT;\n");
    out
}

/// A statement's parts around its parameters, with pgbench variables as the parameters.
fn fill(parts: &[&str], variables: &[&str]) -> String {
    assert_eq!(parts.len(), variables.len() + 1, "{}", parts[0]);
    let mut sql = parts[0].to_owned();
    for (variable, part) in variables.iter().zip(&parts[1..]) {
        sql.push(':');
        sql.push_str(variable);
        sql.push_str(part);
    }
    sql
}

/// One statement on its own line(s), ended by `end` (`;`, or ` \gset`).
fn push(out: &mut String, sql: &str, end: &str) {
    out.push_str(sql);
    out.push_str(end);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_pgbench_script_is_the_generated_one() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pgbench/group_commit.sql");
        let generated = generate();
        if std::env::var_os("BENCH_WRITE_PGBENCH_SCRIPT").is_some() {
            std::fs::write(&path, &generated).expect("writing the pgbench script");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} differs from the statements of api-server/src/store/postgres/batch_sql.rs: \
             write it again with BENCH_WRITE_PGBENCH_SCRIPT=1 cargo test -p bench pgbench_script",
            path.display()
        );
    }

    #[test]
    fn every_statement_parameter_is_a_pgbench_variable() {
        let script = generate();
        for statement in [FIND_KEYS, ORDER_SEQS, LOCK_CONVERSATIONS, MOVE_SEQS] {
            assert!(script.contains(statement[0]), "{}", statement[0]);
        }
        assert!(!script.contains('$'), "{script}");
    }
}
