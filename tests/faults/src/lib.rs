//! Parley's fault suite: each test runs the split deployment on its own — a PostgreSQL cluster
//! and a `redis-server` of its own, the `api-server` and two `socket-server` relays as separate
//! processes — drives it with six real `socket.io-client` users (three per relay, each sharing
//! a direct conversation with its two neighbours on the other relay, 30 messages per second in
//! all, resending with the same `clientMsgId` on a retryable error or after a reconnect, and
//! syncing every second from the cursor each keeps), breaks one thing under that traffic, lets
//! it recover and checks what users care about.
//!
//! Run it with `cargo nextest run -p faults` (the binaries come from
//! `cargo build --workspace`; node, npm, `redis-server` and the PostgreSQL server binaries must
//! be installed).
//!
//! # What every test asserts
//!
//! After the fault, once the traffic has flowed again and every user synced — from its kept
//! cursor, and its whole history from the start:
//! - every send was acknowledged in the end, none refused with a non-retryable error;
//! - every acknowledged message is stored exactly once, with the id, `seq` and conversation
//!   its ack gave (one row per `(sender, clientMsgId)`);
//! - `seq` runs 1, 2, … without a gap in every conversation;
//! - every member of a conversation has every acknowledged message of it after either sync,
//!   with the acknowledged id and `seq`, and neither repeats a message (the cursor kept through
//!   the fault skips nothing);
//! - one `clientMsgId` never maps to two ids, in acks, `message_saved` or sync (the same id
//!   may be delivered live twice);
//! - recovery is bounded: a new message sent after the fault ended is acknowledged within
//!   [`RECOVERY_BOUND`] (the time is printed).
//!
//! # The faults (`tests/faults.rs`)
//! 1. A relay killed with SIGKILL, restarted on its port 5 s later: its users reconnect by
//!    themselves and resend what was unacknowledged; within the bound a user of that relay
//!    gets an ack, and receives live from a user of the other relay.
//! 2. A relay killed for good while its users fail over: each user whose connection is lost
//!    moves to the other relay and resends what was unacknowledged there (a retry through
//!    another relay must find the original message); within the bound a user of the dead relay
//!    gets an ack, and receives live.
//! 3. The API killed with SIGKILL, restarted on its port 5 s later: acks pause (retryable
//!    errors), none is lost.
//! 4. PostgreSQL stopped for 10 s: acks pause, none is lost; the database's restart is the end.
//! 5. PostgreSQL crashed (`pg_ctl stop -m immediate`) and restarted at once (crash recovery):
//!    nothing acknowledged is lost and the sync cursors kept across the crash skip nothing.
//! 6. Redis stopped for 10 s: acks keep coming, cross-relay live delivery pauses and comes back
//!    within the bound after Redis restarts (empty).
//! 7. The relays' pub/sub connections killed (`CLIENT KILL TYPE pubsub`): a message from a user
//!    on one relay reaches a user on the other live (`receive_message`) within the bound, both
//!    ways.
//! 8. A logout, then Redis restarted empty: the logged-out token is refused at connect on both
//!    relays (`token_revoked`, the relays ask the database), while the other users keep sending.
//! 9. A logout *during* a Redis outage: the token is refused at connect on both relays, also by
//!    the one that confirmed its session seconds before (its session cache is not trusted while
//!    the bus is down, nor afterwards for what it confirmed before), and the socket already open
//!    with it gets `session_revoked` before Redis is back (the relays check every 5 s then).
//!
//! 10. PostgreSQL frozen (SIGSTOP to every process of it: connections open, nothing answers):
//!     while it hangs, a REST request of each user is answered 503 `service_unavailable` (the
//!     API gives up on a query after `database.query_timeout_secs` and closes its connection)
//!     and a message from a user on one relay reaches a user on the other live; after it
//!     resumes, nothing acknowledged is lost.
//! 11. Redis frozen for 10 s (SIGSTOP: connections open, nothing answers): while it hangs, a
//!     new message is acknowledged and each user's REST request answered; after it resumes,
//!     cross-relay live delivery comes back both ways and nothing acknowledged is lost.
//! 12. A relay killed for good while its users stay away: a user on the other relay is told
//!     (`presence`, with a `lastSeen`) that its two contacts there are offline within the
//!     bound; the relays run with `presence.ttl_secs` 5 and `refresh_secs` 1. This test checks
//!     presence only: the dead relay's users keep unacknowledged sends.
//!
//! # Layout
//! - [`stack`]: [`Stack`], the deployment of one test; [`service`]: one service process, killed
//!   on drop; `http`: the readiness probe.
//! - [`driver`]: [`Driver`], the node process running `tests/node/faults/driver.mjs`.
//! - [`report`]: the users' final report and the promises checked against it and the database.

pub mod driver;
mod http;
pub mod report;
pub mod service;
pub mod stack;

use std::time::{Duration, Instant};

pub use driver::Driver;
pub use report::Report;
pub use stack::Stack;

/// A new message after the fault ended must be acknowledged (or delivered live) within this.
/// Recovery takes a few seconds; the bound leaves room for a loaded machine while a hang or a
/// retry loop that never succeeds still fails.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// Messages acknowledged before the fault, and again after recovery, in all users (about 4 s of
/// traffic each).
const TRAFFIC: u64 = 120;

/// One fault test: the stack, the traffic flowing on it, and the name printed with its results.
#[derive(Debug)]
pub struct Run {
    /// Declared first so that it is dropped first: the users go before the services.
    pub driver: Driver,
    pub stack: Stack,
    fault: &'static str,
}

impl Run {
    /// Start the stack and the users; returns once traffic flows.
    pub fn start(fault: &'static str) -> Run {
        let stack = Stack::start();
        let mut driver = Driver::start(&stack);
        driver.wait_for_acks(TRAFFIC);
        Run {
            driver,
            stack,
            fault,
        }
    }

    /// A new message from `user` is acknowledged within [`RECOVERY_BOUND`] of `fault_ended`;
    /// the time it took.
    pub fn assert_acks_recover(&mut self, fault_ended: Instant, user: usize) -> Duration {
        self.driver.probe(user);
        self.assert_recovered(
            fault_ended,
            &format!("a new message from user{user} acknowledged"),
        )
    }

    /// A message from `from` reaches `to` (on the other relay) live within [`RECOVERY_BOUND`]
    /// of `fault_ended`; the time it took.
    pub fn assert_live_delivery_recovers(
        &mut self,
        fault_ended: Instant,
        from: usize,
        to: usize,
    ) -> Duration {
        let probes = self.driver.live(from, to);
        self.assert_recovered(
            fault_ended,
            &format!("user{from} → user{to} delivered live ({probes} probes)"),
        )
    }

    /// Print how long after `fault_ended` `what` happened (now) and assert it is within
    /// [`RECOVERY_BOUND`].
    pub fn assert_recovered(&self, fault_ended: Instant, what: &str) -> Duration {
        let took = fault_ended.elapsed();
        let secs = took.as_secs_f64();
        println!("{}: {what} {secs:.2} s after the fault ended", self.fault);
        assert!(
            took < RECOVERY_BOUND,
            "{}: {what} only {secs:.2} s after the fault ended",
            self.fault
        );
        took
    }

    /// Let traffic flow again, stop it, sync everyone and check every promise.
    pub fn finish(self) {
        let Run {
            mut driver,
            stack,
            fault,
        } = self;
        driver.wait_for_acks(TRAFFIC);
        let report = driver.stop();
        println!("{fault}: {}", report.summary());
        report.assert_promises_kept(&stack);
    }
}
