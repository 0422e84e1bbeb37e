//! Redis outages, on a `redis-server` each test starts, stops and restarts itself (the shared
//! one on 6379 is never touched): nothing waits on Redis without a bound while it is down, and
//! everything works again within a few seconds of its return.

use super::publisher::BusPublisher;
use super::redis::RedisBus;
use super::{Bus, Keys};
use crate::events::BusEvent;
use crate::ids::{ConversationId, UserId};
use std::sync::Arc;
use std::time::Duration;
use test_support::RedisServer;
use tokio::time::Instant;

/// How long after Redis returns everything must work again.
const RECOVERY: Duration = Duration::from_secs(5);
/// The bound on any one call while Redis is down (1 s timeout plus slack for a busy machine).
const CALL_BOUND: Duration = Duration::from_millis(1500);

async fn connect(redis: &RedisServer) -> RedisBus {
    let keys = Keys::new(format!("parley-outage-{}", uuid::Uuid::new_v4()));
    RedisBus::connect(&redis.url(), keys)
        .await
        .expect("connecting to the test's Redis")
}

/// Stop or restart in a blocking thread, so the tasks under test keep running meanwhile.
async fn stop(mut redis: RedisServer) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .unwrap()
}

async fn restart(mut redis: RedisServer) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap()
}

/// Poll `attempt` every 50 ms until it succeeds; how long that took. Fails after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut attempt: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if attempt().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn typing(user: i64) -> BusEvent {
    BusEvent::Typing {
        conversation_id: ConversationId(1),
        user_id: UserId(user),
        is_typing: true,
    }
}

/// Each call once; panics if one succeeds or takes longer than [`CALL_BOUND`].
async fn every_call_fails_within_the_bound(bus: &RedisBus) {
    let ttl = Duration::from_secs(30);
    let u = UserId(1);
    let timed = |name: &'static str, started: Instant, failed: bool| {
        let took = started.elapsed();
        assert!(failed, "{name} succeeded with Redis down");
        assert!(took < CALL_BOUND, "{name} took {took:?} with Redis down");
    };
    let t = Instant::now();
    timed("publish", t, bus.publish(&[u], "x").await.is_err());
    let t = Instant::now();
    let batch = [(vec![u], "x".to_owned())];
    timed("publish_many", t, bus.publish_many(&batch).await.is_err());
    let t = Instant::now();
    timed("presence", t, bus.presence(&[u]).await.is_err());
    let t = Instant::now();
    timed(
        "presence_open",
        t,
        bus.presence_open(u, "r:c", ttl).await.is_err(),
    );
    let t = Instant::now();
    timed(
        "presence_close",
        t,
        bus.presence_close(u, "r:c", ttl).await.is_err(),
    );
    let t = Instant::now();
    timed(
        "presence_settle",
        t,
        bus.presence_settle(u, ttl).await.is_err(),
    );
    let t = Instant::now();
    timed(
        "presence_sweep",
        t,
        bus.presence_sweep(ttl, 10, ttl).await.is_err(),
    );
    let t = Instant::now();
    let conns = [(u, "r:c".to_owned())];
    timed(
        "presence_refresh",
        t,
        bus.presence_refresh(&conns, ttl).await.is_err(),
    );
    let t = Instant::now();
    timed("revoke_token", t, bus.revoke_token("j", ttl).await.is_err());
    let t = Instant::now();
    timed(
        "is_token_revoked",
        t,
        bus.is_token_revoked("j").await.is_err(),
    );
    let t = Instant::now();
    timed("ping", t, bus.ping().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_every_bus_call_fails_within_a_bound_and_works_again_after_restart() {
    // Arrange
    let redis = RedisServer::start();
    let bus = connect(&redis).await;
    bus.ping().await.expect("Redis answers before the outage");

    // Act: stop it
    let redis = stop(redis).await;

    // Assert: every call fails promptly, twice (the second time with a reconnection pending)
    every_call_fails_within_the_bound(&bus).await;
    every_call_fails_within_the_bound(&bus).await;

    // Back: commands work again within the recovery bound
    let _redis = restart(redis).await;
    let took = within(RECOVERY, "PING after the restart", || async {
        bus.ping().await.is_ok()
    })
    .await;
    eprintln!("commands answer again {took:?} after Redis restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_publish_returns_at_once_counts_drops_and_resumes_after_restart() {
    // Arrange
    let redis = RedisServer::start();
    let bus = Arc::new(connect(&redis).await);
    let (publisher, _task) = BusPublisher::start(bus.clone(), "api-outage-test", 10_000);
    let counters = publisher.counters();
    let redis = stop(redis).await;

    // Act: a thousand events while Redis is down
    let started = Instant::now();
    for _ in 0..1_000 {
        publisher.publish(&[UserId(1), UserId(2)], typing(1));
    }
    let took = started.elapsed();

    // Assert: publish never waited, and every event is counted dropped, none published
    assert!(
        took < Duration::from_millis(500),
        "1000 publishes took {took:?}"
    );
    within(RECOVERY, "every event counted dropped", || async {
        counters.dropped() == 1_000
    })
    .await;
    assert!(!counters.bus_up());
    assert_eq!(counters.published(), 0);

    // Back: the publisher notices by itself and publishes again
    let _redis = restart(redis).await;
    let took = within(RECOVERY, "publishing again after the restart", || async {
        publisher.publish(&[UserId(1)], typing(1));
        counters.published() > 0
    })
    .await;
    assert!(counters.bus_up());
    eprintln!("publishing resumed {took:?} after Redis restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_answers_while_redis_is_down_and_receives_again_after_restart() {
    // Arrange: a subscriber receiving user 1
    let redis = RedisServer::start();
    let bus = connect(&redis).await;
    let (sub, mut rx) = bus.subscribe();
    sub.subscribe(UserId(1)).await;
    bus.publish(&[UserId(1)], "before").await.unwrap();
    let got = tokio::time::timeout(RECOVERY, rx.recv()).await.unwrap();
    assert_eq!(got.unwrap().payload, "before");

    // Act: Redis goes away; another user connects meanwhile
    let redis = stop(redis).await;
    let started = Instant::now();
    sub.subscribe(UserId(2)).await;
    let took = started.elapsed();

    // Assert: subscribing returned promptly, and after the restart both users receive again
    assert!(took < CALL_BOUND, "subscribe took {took:?} with Redis down");
    let _redis = restart(redis).await;
    let restarted = Instant::now();
    loop {
        let _ = bus.publish(&[UserId(1)], "after").await;
        let got = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
        if matches!(got, Ok(Some(m)) if m.user == UserId(1) && m.payload == "after") {
            break;
        }
        assert!(
            restarted.elapsed() < RECOVERY,
            "user 1 receives again within {RECOVERY:?} of the restart"
        );
    }
    let took = restarted.elapsed();
    eprintln!("the subscriber received again {took:?} after Redis restarted");
    bus.publish(&[UserId(2)], "for two").await.unwrap();
    let got = loop {
        let m = tokio::time::timeout(RECOVERY, rx.recv())
            .await
            .expect("user 2 receives")
            .unwrap();
        if m.user == UserId(2) {
            break m;
        }
    };
    assert_eq!(got.payload, "for two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_finds_a_redis_that_hangs_and_receives_again_after_it_resumes() {
    // Arrange: a live subscription of user 1, with nothing to confirm
    let mut redis = RedisServer::start();
    let bus = connect(&redis).await;
    let (sub, mut rx) = bus.subscribe();
    sub.subscribe(UserId(1)).await;
    assert!(sub.epoch().is_some(), "subscribed before the hang");

    // Act: Redis hangs (SIGSTOP: its connections stay open, nothing answers on them)
    redis.freeze();

    // Assert: the subscription counts as down (sessions are then checked with the database,
    // and the session cache is not trusted), then live again once Redis resumes
    let took = within(RECOVERY, "the hung Redis noticed", || async {
        sub.epoch().is_none()
    })
    .await;
    eprintln!("the subscriber noticed the hang {took:?} after it began");
    redis.thaw();
    within(RECOVERY, "subscribed again after the hang", || async {
        sub.epoch().is_some()
    })
    .await;
    bus.publish(&[UserId(1)], "after the hang").await.unwrap();
    let got = tokio::time::timeout(RECOVERY, rx.recv()).await.unwrap();
    assert_eq!(got.unwrap().payload, "after the hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_publish_after_redis_restarted_goes_through() {
    // Arrange: the publishing connection kept idle after a publish, and a subscriber
    let redis = RedisServer::start();
    let bus = connect(&redis).await;
    let (sub, mut rx) = bus.subscribe();
    sub.subscribe(UserId(1)).await;
    bus.publish(&[UserId(1)], "before").await.unwrap();
    assert_eq!(rx.recv().await.unwrap().payload, "before");
    let before = sub.epoch();

    // Act: Redis restarts (closing every connection) and the subscriber is back
    let _redis = restart(redis).await;
    within(RECOVERY, "subscribed again after the restart", || async {
        sub.epoch().is_some_and(|now| Some(now) != before)
    })
    .await;
    let first = bus.publish(&[UserId(1)], "after").await;

    // Assert: the first publish found the kept connection closed and used a new one
    first.expect("the first publish after the restart");
    let got = tokio::time::timeout(RECOVERY, rx.recv()).await.unwrap();
    assert_eq!(got.unwrap().payload, "after");
}

/// Run `command` (space-separated words) on `redis` as its default user.
async fn admin(url: &str, command: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut words = command.split(' ');
    let mut cmd = redis::cmd(words.next().unwrap());
    for word in words {
        cmd.arg(word);
    }
    cmd.query_async::<()>(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_is_named_as_such_with_the_refused_command_and_publish_goes_on() {
    // Arrange: a Redis whose memory limit is already passed, under noeviction
    let redis = RedisServer::start();
    let bus = connect(&redis).await;
    admin(&redis.url(), "CONFIG SET maxmemory-policy noeviction").await;
    admin(&redis.url(), "CONFIG SET maxmemory 1").await;

    // Act: the relays' presence refresh (the first write after the limit changed may still
    // pass; a script that has written once is let finish, so presence_open itself may pass too)
    let connections = [(UserId(1), "relay:conn".to_owned())];
    let mut refused = None;
    for _ in 0..5 {
        let refreshed = bus.presence_refresh(&connections, Duration::from_secs(20));
        if let Err(error) = refreshed.await {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("Redis refused no write");
    let published = bus.publish(&[UserId(1)], "still delivered").await;

    // Assert
    let said = refused.to_string();
    assert!(said.contains("Redis is out of memory"), "{said}");
    assert!(
        said.contains("command not allowed when used memory"),
        "{said}"
    );
    published.expect("PUBLISH is not refused for memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_authenticates_as_the_url_says_and_reports_a_wrong_password() {
    // Arrange: a Redis with a password for the default user and an ACL user of its own
    let redis = RedisServer::start();
    let port = redis.port();
    admin(&redis.url(), "ACL SETUSER relay on >s3cret ~* &* +@all").await;
    admin(&redis.url(), "CONFIG SET requirepass pw").await;

    for url in [
        format!("redis://relay:s3cret@127.0.0.1:{port}"),
        format!("redis://:pw@127.0.0.1:{port}"),
    ] {
        // Act: subscribe through a bus connected with that URL's credentials
        let keys = Keys::new(format!("parley-auth-{}", uuid::Uuid::new_v4()));
        let bus = RedisBus::connect(&url, keys).await.expect("connecting");
        let (sub, mut rx) = bus.subscribe();
        sub.subscribe(UserId(1)).await;

        // Assert: the subscription is live and receives
        assert!(sub.epoch().is_some(), "not subscribed with {url}");
        assert_eq!(sub.errors(), 0, "{url}");
        bus.publish(&[UserId(1)], "authenticated").await.unwrap();
        let got = rx.recv().await.expect("a message");
        assert_eq!(
            (got.user, got.payload.as_str()),
            (UserId(1), "authenticated"),
            "{url}"
        );
    }

    // A wrong password: subscribing still returns, the failure is counted, nothing is live
    let wrong = redis::Client::open(format!("redis://relay:wrong@127.0.0.1:{port}")).unwrap();
    let keys = Keys::new(format!("parley-auth-{}", uuid::Uuid::new_v4()));
    let (sub, _rx) = super::redis::pubsub::start(wrong.get_connection_info().clone(), keys);
    let started = Instant::now();
    sub.subscribe(UserId(1)).await;
    assert!(
        started.elapsed() < CALL_BOUND,
        "subscribe took {:?}",
        started.elapsed()
    );
    within(RECOVERY, "the failed AUTH counted", || async {
        sub.errors() > 0
    })
    .await;
    assert_eq!(sub.epoch(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_redis_refuses_fails_naming_why_and_the_next_one_goes_through() {
    // Arrange: a user who may do everything but PUBLISH, and a subscriber (as the default user)
    let redis = RedisServer::start();
    let port = redis.port();
    admin(&redis.url(), "ACL SETUSER api on >pw ~* &* +@all -publish").await;
    let keys = Keys::new(format!("parley-refused-{}", uuid::Uuid::new_v4()));
    let url = format!("redis://api:pw@127.0.0.1:{port}");
    let bus = RedisBus::connect(&url, keys.clone()).await.unwrap();
    let listener = RedisBus::connect(&redis.url(), keys).await.unwrap();
    let (sub, mut rx) = listener.subscribe();
    sub.subscribe(UserId(1)).await;

    // Act: publish while refused, then once allowed
    let batch = [
        (vec![UserId(1)], "refused".to_owned()),
        (vec![UserId(1)], "refused too".to_owned()),
    ];
    let refused = bus.publish_many(&batch).await;
    admin(&redis.url(), "ACL SETUSER api +publish").await;
    let allowed = bus.publish(&[UserId(1)], "allowed").await;

    // Assert: the refusal is an error naming it; the next publish goes through
    let error = format!("{:#}", refused.expect_err("PUBLISH refused"));
    assert!(error.contains("NOPERM"), "{error}");
    allowed.expect("PUBLISH allowed");
    let got = rx.recv().await.expect("a message");
    assert_eq!(got.payload, "allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_on_a_unix_socket_carries_publish_and_subscribe() {
    // Arrange: a Redis also listening on a Unix socket, reached through it
    let redis = RedisServer::start_with_unix_socket();
    let keys = Keys::new(format!("parley-unix-{}", uuid::Uuid::new_v4()));
    let bus = RedisBus::connect(&redis.unix_url(), keys).await.unwrap();

    // Act
    let (sub, mut rx) = bus.subscribe();
    sub.subscribe(UserId(1)).await;
    bus.publish(&[UserId(1)], "over a socket file")
        .await
        .unwrap();

    // Assert
    assert!(
        sub.epoch().is_some(),
        "not subscribed over {}",
        redis.unix_url()
    );
    let got = rx.recv().await.expect("a message");
    assert_eq!(got.payload, "over a socket file");
}
