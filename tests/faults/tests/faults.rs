//! One fault per test, under traffic; what each asserts is in the crate's documentation
//! (`tests/faults/src/lib.rs`). Users: `i` on relay `i % 2`, conversations between `i` and
//! `i + 1`.

use std::time::{Duration, Instant};

use faults::service::Service;
use faults::{Run, Stack};
use serde_json::json;

/// How long PostgreSQL or Redis stays down. Holding a fault open is the only waiting on the
/// clock here; everything else waits for an event with a deadline.
const OUTAGE: Duration = Duration::from_secs(10);
/// How long a killed service stays dead before its supervisor restarts it: long enough for its
/// clients to see failed reconnects (relay) or exhausted store retries (API).
const DOWNTIME: Duration = Duration::from_secs(5);
/// How soon after a logout during a Redis outage its open socket must be closed: the relays
/// check their sessions every 5 s while their bus is down (60 s otherwise).
const OUTAGE_REVOKED_WITHIN: Duration = Duration::from_secs(30);

/// SIGKILL the service `pick` names, leave it dead for [`DOWNTIME`], then start it again on
/// its port as its supervisor would; when it was ready again.
fn kill_and_restart(run: &mut Run, pick: fn(&mut Stack) -> &mut Service) -> Instant {
    let service = pick(&mut run.stack);
    service.kill();
    std::thread::sleep(DOWNTIME);
    service.restart();
    Instant::now()
}

#[test]
fn a_relay_killed_under_traffic_loses_no_acknowledged_message() {
    // Arrange
    let mut run = Run::start("relay kill -9");

    // Act: relay 0 (users 0, 2, 4) dies and comes back on its port
    let back = kill_and_restart(&mut run, |stack| &mut stack.relays[0]);

    // Assert: its users send again, and receive live from the other relay again
    run.assert_acks_recover(back, 0);
    run.assert_live_delivery_recovers(back, 1, 0);
    run.finish();
}

#[test]
fn users_of_a_killed_relay_fail_over_to_the_other_and_lose_no_acknowledged_message() {
    // Arrange: users whose connection is lost move to the other relay and resend there
    let mut run = Run::start("relay kill -9, users fail over");
    run.driver.command(json!({ "cmd": "failover" }));

    // Act: relay 0 (users 0, 2, 4) dies for good
    run.stack.relays[0].kill();
    let killed = Instant::now();

    // Assert: for these users the fault ends as they reach relay 1
    run.assert_acks_recover(killed, 0);
    run.assert_live_delivery_recovers(killed, 1, 0);
    run.finish();
}

#[test]
fn the_users_of_a_relay_killed_for_good_are_announced_offline_to_their_contacts() {
    // Arrange
    let mut run = Run::start("relay kill -9, presence");

    // Act: relay 0 (users 0, 2, 4) dies for good, and its users stay away
    run.stack.relays[0].kill();
    let killed = Instant::now();

    // Assert: user 1, on the other relay, is told both its contacts are offline
    for of in [0, 2] {
        let seen = run.driver.offline(1, of);
        assert!(
            seen["lastSeen"].is_string(),
            "user1 was not told user{of} is offline: {seen}"
        );
        run.assert_recovered(killed, &format!("user1 told user{of} is offline"));
    }
}

#[test]
fn the_api_killed_under_traffic_loses_no_acknowledged_message() {
    // Arrange
    let mut run = Run::start("API kill -9");

    // Act
    let back = kill_and_restart(&mut run, |stack| &mut stack.api);

    // Assert
    run.assert_acks_recover(back, 0);
    run.finish();
}

#[test]
fn postgres_stopped_for_ten_seconds_under_traffic_loses_no_acknowledged_message() {
    // Arrange
    let mut run = Run::start("PostgreSQL stopped 10 s");

    // Act
    run.stack.postgres.stop();
    std::thread::sleep(OUTAGE);
    run.stack.postgres.restart();
    let back = Instant::now();

    // Assert
    run.assert_acks_recover(back, 0);
    run.finish();
}

#[test]
fn postgres_crashing_under_traffic_loses_no_acknowledged_message() {
    // Arrange
    let mut run = Run::start("PostgreSQL crash");

    // Act: every PostgreSQL process quits at once; the restart replays the WAL
    run.stack.postgres.crash();
    run.stack.postgres.restart();
    let back = Instant::now();

    // Assert: the cursors the users kept through the crash still miss nothing
    run.assert_acks_recover(back, 0);
    run.finish();
}

#[test]
fn postgres_frozen_under_traffic_answers_503_keeps_live_delivery_and_loses_no_acknowledged_message()
{
    // Arrange
    let mut run = Run::start("PostgreSQL frozen");

    // Act: every PostgreSQL process stops (SIGSTOP); its port and connections stay open
    run.stack.postgres.freeze();

    // Assert, while it hangs: a request that needs the database is answered 503 (after the
    // API's query timeout, not when the database resumes), and messages still go live from one
    // relay's user to the other's
    for answer in run.driver.rest_by_everyone("/api/conversations") {
        println!("PostgreSQL frozen: {answer}");
        assert_eq!(answer["status"], 503, "while PostgreSQL hangs: {answer}");
        assert_eq!(answer["code"], "service_unavailable", "{answer}");
    }
    let probes = run.driver.live(0, 1);
    println!("PostgreSQL frozen: user0 → user1 delivered live ({probes} probes)");
    run.stack.postgres.thaw();
    let back = Instant::now();

    // Assert: after it resumes, nothing acknowledged is lost
    run.assert_acks_recover(back, 0);
    run.finish();
}

#[test]
fn redis_stopped_for_ten_seconds_under_traffic_loses_no_acknowledged_message() {
    // Arrange
    let mut run = Run::start("Redis stopped 10 s");

    // Act
    run.stack.redis.stop();
    std::thread::sleep(OUTAGE);
    run.stack.redis.restart();
    let back = Instant::now();

    // Assert
    assert_acks_and_cross_relay_delivery_recover(&mut run, back);
    run.finish();
}

#[test]
fn redis_frozen_under_traffic_keeps_acks_and_rest_and_loses_no_acknowledged_message() {
    // Arrange
    let mut run = Run::start("Redis frozen");

    // Act: Redis stops answering (SIGSTOP): its port and connections stay open, for OUTAGE
    run.stack.redis.freeze();
    let frozen = Instant::now();

    // Assert, while it hangs: new messages are acknowledged and REST answers (nothing waits
    // on Redis without a bound)
    let acked = run.assert_acks_recover(frozen, 0);
    println!("Redis frozen: user0's new message acknowledged {acked:?} into the hang");
    for answer in run.driver.rest_by_everyone("/api/conversations") {
        println!("Redis frozen: {answer}");
        assert_eq!(answer["status"], 200, "while Redis hangs: {answer}");
    }
    std::thread::sleep(OUTAGE.saturating_sub(frozen.elapsed()));
    run.stack.redis.thaw();
    let back = Instant::now();

    // Assert: after it resumes, nothing lost
    assert_acks_and_cross_relay_delivery_recover(&mut run, back);
    run.finish();
}

#[test]
fn killed_pubsub_connections_resume_cross_relay_live_delivery() {
    // Arrange
    let mut run = Run::start("pub/sub connections killed");

    // Act
    let killed = run.stack.redis.kill_clients("pubsub");
    let at = Instant::now();
    println!("{killed} pub/sub connections killed");

    // Assert: live delivery relay 0 → relay 1 and back
    assert!(
        killed >= 2,
        "each relay has a pub/sub connection, killed {killed}"
    );
    run.assert_live_delivery_recovers(at, 0, 1);
    run.assert_live_delivery_recovers(at, 1, 2);
    run.assert_acks_recover(at, 0);
    run.finish();
}

#[test]
fn a_token_logged_out_before_redis_restarts_empty_stays_refused_on_both_relays() {
    // Arrange
    let mut run = Run::start("logout then Redis restart");
    run.driver.command(json!({ "cmd": "logout", "user": 0 }));
    let logged_out = run.driver.expect("logged_out");
    assert_eq!(
        logged_out["revoked"], "logout",
        "user0's open socket got session_revoked"
    );

    // Act: Redis comes back empty (the revocation marks are gone), then user0's token connects
    run.stack.redis.restart();
    let back = Instant::now();
    let codes = connect_codes(&mut run, 0);

    // Assert: refused on both relays; the others keep working
    assert_eq!(codes, ["token_revoked", "token_revoked"]);
    run.assert_acks_recover(back, 1);
    run.assert_acks_recover(back, 2);
    run.finish();
}

#[test]
fn a_token_logged_out_during_a_redis_outage_is_refused_at_connect_and_its_socket_closed() {
    // Arrange: user0's socket on relay 0 had its session confirmed at connect, seconds ago
    let mut run = Run::start("logout during a Redis outage");

    // Act: log out while Redis is down (the logout event reaches no relay), then connect, then
    // wait for the open socket's session_revoked, all before Redis is back
    run.stack.redis.stop();
    run.driver
        .command(json!({ "cmd": "logout", "user": 0, "awaitRevoked": false }));
    run.driver.expect("logged_out");
    let codes = connect_codes(&mut run, 0);
    run.driver.command(json!({ "cmd": "revoked", "user": 0 }));
    let revoked = run.driver.expect("revoked");
    run.stack.redis.restart();

    // Assert: both relays ask the database, as docs/operations.md (Redis outage) says, and the
    // open socket is closed by the outage's session checks (every 5 s), long before the
    // periodic one (60 s after the relay started)
    assert_eq!(codes, ["token_revoked", "token_revoked"]);
    let after = Duration::from_secs_f64(revoked["ms"].as_f64().unwrap_or(f64::MAX) / 1000.0);
    println!("user0's socket revoked {after:.1?} after the logout: {revoked}");
    assert_eq!(
        revoked["revoked"], "revoked",
        "user0's open socket got session_revoked while Redis was down"
    );
    assert!(
        after < OUTAGE_REVOKED_WITHIN,
        "revoked within {OUTAGE_REVOKED_WITHIN:?} of the logout (the relays check every 5 s while \
         the bus is down), after {after:?}"
    );
    run.finish();
}

/// After a fault of the bus that ended at `back`: acks, and live delivery between the relays
/// both ways.
fn assert_acks_and_cross_relay_delivery_recover(run: &mut Run, back: Instant) {
    run.assert_acks_recover(back, 0);
    run.assert_live_delivery_recovers(back, 0, 1);
    run.assert_live_delivery_recovers(back, 1, 2);
}

/// What each relay answers a new connection with `user`'s token: `connected` or the
/// CONNECT_ERROR code.
fn connect_codes(run: &mut Run, user: usize) -> Vec<String> {
    run.driver
        .command(json!({ "cmd": "connect", "user": user }));
    let results = run.driver.expect("connect_results");
    results["results"]
        .as_array()
        .expect("connect results are a list")
        .iter()
        .map(|r| r["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}
