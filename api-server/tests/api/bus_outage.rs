//! A Redis outage costs the API its live events and nothing else: on a Redis this test starts
//! and stops itself, every request keeps answering at its usual speed, `/ready` stays 200 and
//! reports the bus, and once Redis is back the API's events reach subscribers again.

use crate::helpers::{spawn_app_with, TestApp};
use reqwest::Method;
use serde_json::Value;
use shared::bus::redis::RedisBus;
use shared::bus::subscriber::Subscriber;
use shared::bus::{Bus, BusMessage, Keys};
use shared::wire::User;
use std::time::{Duration, Instant};
use test_support::RedisServer;
use tokio::sync::mpsc;

/// Every request must answer within this during the outage, as it does without one.
const ANSWER_BOUND: Duration = Duration::from_secs(1);
/// How long after Redis returns the API's events must flow again.
const RECOVERY: Duration = Duration::from_secs(5);
/// How long the test keeps Redis down, sending all the while.
const OUTAGE: Duration = Duration::from_secs(3);

/// Stop or restart Redis on a blocking thread, so the app keeps running meanwhile.
async fn blocking(mut redis: RedisServer, restart: bool) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        if restart {
            redis.restart();
        } else {
            redis.stop();
        }
        redis
    })
    .await
    .expect("the fixture thread")
}

/// A request, and how long it took to answer.
async fn timed<F: std::future::Future<Output = crate::helpers::Reply>>(
    call: F,
) -> (crate::helpers::Reply, Duration) {
    let started = Instant::now();
    let reply = call.await;
    (reply, started.elapsed())
}

/// Subscribe to `user`'s channel on the app's bus.
async fn listen(
    redis_url: &str,
    app: &TestApp,
    user: &User,
) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    let bus = RedisBus::connect(redis_url, Keys::new(&app.redis_prefix))
        .await
        .expect("connecting to the test's Redis");
    let (sub, rx) = bus.subscribe();
    sub.subscribe(user.id).await;
    (sub, rx)
}

/// Wait until a `message_stored` event whose content is `content` arrives, at most `limit`.
async fn received(rx: &mut mpsc::Receiver<BusMessage>, content: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let envelope: Value = serde_json::from_str(&msg.payload).unwrap_or(Value::Null);
        if envelope["event"]["type"] == "message_stored"
            && envelope["event"]["data"]["message"]["content"] == content
        {
            return true;
        }
    }
    false
}

/// The value of a metric line `name value` in the Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_redis_outage_the_api_answers_at_once_and_reports_the_bus_degraded() {
    // Arrange: the API on a Redis of the test's own, a conversation, a subscriber for bob
    let mut redis = Some(RedisServer::start());
    let redis_url = redis.as_ref().map(RedisServer::url).unwrap_or_default();
    let url = redis_url.clone();
    let app = spawn_app_with(move |s| s.redis.url = url).await;
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let [(alice, _), (_, bob), (carol, _)] = users.as_slice() else {
        unreachable!("three users registered")
    };
    let conversation = app.direct(alice, bob).await;
    let (_sub, mut rx) = listen(&redis_url, &app, bob).await;
    app.send(alice, &conversation, "before").await;
    assert!(
        received(&mut rx, "before", RECOVERY).await,
        "events flow before the outage"
    );

    // Act: Redis goes away; alice keeps sending, and reads, searches, probes, logs carol out
    redis = Some(blocking(redis.take().expect("running"), false).await);
    let started = Instant::now();
    let mut sent = 0;
    let mut logged_out = false;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < OUTAGE {
        sent += 1;
        let (reply, took) = timed(app.post_message(
            alice,
            &conversation,
            &format!("outage-{sent}"),
            &format!("during the outage {sent}"),
        ))
        .await;
        reply.expect(201);
        assert!(
            took < ANSWER_BOUND,
            "POST /api/messages took {took:?} during the outage"
        );
        slowest = slowest.max(took);

        let (reply, took) = timed(app.request(Method::GET, "/ready", None, None)).await;
        let body = reply.expect(200);
        assert_eq!(body["checks"]["database"], "ok", "{body}");
        assert_eq!(body["checks"]["bus"], "error", "{body}");
        assert_eq!(body["status"], "degraded", "{body}");
        assert!(
            took < ANSWER_BOUND,
            "/ready took {took:?} during the outage"
        );

        let (reply, took) = timed(app.get("/api/users?search=bob", alice)).await;
        let found = reply.expect(200);
        assert_eq!(found[0]["online"], false, "presence is unknown: offline");
        assert!(
            took < ANSWER_BOUND,
            "GET /api/users took {took:?} during the outage"
        );

        if !logged_out {
            let (reply, took) =
                timed(app.request(Method::POST, "/api/auth/logout", Some(carol), None)).await;
            reply.expect(204);
            assert!(
                took < ANSWER_BOUND,
                "logout took {took:?} during the outage"
            );
            logged_out = true;
        }
    }

    eprintln!("{sent} messages sent during the outage, the slowest answered in {slowest:?}");

    // Assert: everything sent was stored; the metrics show the outage
    let stored = app.all_messages(alice, &conversation).await;
    assert_eq!(
        stored.len(),
        sent + 1,
        "every message sent during the outage is stored"
    );
    let reply = app.request(Method::GET, "/metrics", None, None).await;
    let text = reply.text.clone();
    assert_eq!(metric(&text, "parley_api_bus_up"), Some(0.0), "{text}");
    assert!(
        metric(&text, "parley_api_bus_events_dropped_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    // A revoked token stays refused without the bus.
    app.get("/api/auth/me", carol)
        .await
        .expect_error(401, "token_revoked");

    // Redis returns: within the recovery bound, a new message reaches bob again.
    let _redis = blocking(redis.take().expect("stopped"), true).await;
    let restarted = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let content = format!("after the outage {attempt}");
        app.send(alice, &conversation, &content).await;
        if received(&mut rx, &content, Duration::from_millis(250)).await {
            break;
        }
        assert!(
            restarted.elapsed() < RECOVERY,
            "no event reached bob within {RECOVERY:?} of Redis returning"
        );
    }
    eprintln!(
        "events reach subscribers again {:?} after Redis restarted",
        restarted.elapsed()
    );
    let reply = app.request(Method::GET, "/ready", None, None).await;
    assert_eq!(reply.expect(200)["status"], "ready");
}
