//! The database decides revocation, not Redis: a logged-out token is refused at connect even
//! after Redis restarted empty, or when the relay that confirmed it had no socket of the user
//! left to hear the logout; a socket whose session is revoked without the logout event
//! reaching the relay is closed at the next check; a socket is closed when its token expires.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use test_support::RedisServer;

use crate::device::{refused_code, Device, PATIENCE};
use crate::helpers::{
    metric, spawn_stack_on, spawn_stack_with, until_a_query_waits_for_a_lock, Stack,
};

/// Wait (at most `limit`) for `session_revoked` on `device`; its reason.
async fn revoked_reason(device: &mut Device, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (event, body) = device
            .next_within(left)
            .await
            .unwrap_or_else(|| panic!("no session_revoked within {limit:?}"));
        if event == "session_revoked" {
            return body["reason"].as_str().unwrap_or_default().to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_token_is_refused_at_connect_after_redis_restarted_empty() {
    // Arrange: logged out while Redis (the test's own) held the revocation mark
    let mut redis = RedisServer::start();
    let stack = spawn_stack_on(&redis.url(), 1, |_| {}).await;
    let (alice, _) = stack.register("alice").await;
    stack.logout(&alice).await;

    // Act: Redis comes back with nothing
    redis.restart();
    let code = refused_code(&stack, 0, &alice).await;

    // Assert
    assert_eq!(code, "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_logged_out_after_its_users_last_socket_left_is_refused_at_the_next_connect() {
    // Arrange: a relay that would trust a session it confirmed for ten minutes; alice connected
    // (the relay confirmed her session with the API) and left again
    let stack = spawn_stack_with(1, |relay| relay.limits.session_cache_secs = 600).await;
    let (alice, _) = stack.register("alice").await;
    let device = Device::connect(&stack, 0, &alice).await;
    device.client.disconnect().await.unwrap();
    while metric(&stack.metrics(0).await, "relay_sockets") > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act: logged out while none of her sockets is on the relay (it does not hear the event)
    stack.logout(&alice).await;
    let code = refused_code(&stack, 0, &alice).await;

    // Assert
    assert_eq!(code, "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_session_is_revoked_without_the_logout_event_is_closed_at_the_next_check() {
    // Arrange: a relay checking its sessions every second; alice connected
    let stack = spawn_stack_with(1, |relay| relay.limits.session_check_secs = 1).await;
    let (alice, _) = stack.register("alice").await;
    let mut device = Device::connect(&stack, 0, &alice).await;

    // Act: the session is revoked in the database only (no event on the bus)
    let (db, connection) = tokio_postgres::connect(&stack.database_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the stack's database");
    tokio::spawn(connection);
    db.execute("UPDATE sessions SET revoked_at = now()", &[])
        .await
        .unwrap();

    // Assert
    assert_eq!(
        revoked_reason(&mut device, Duration::from_secs(30)).await,
        "revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_connecting_while_its_session_is_logged_out_is_refused() {
    // Arrange: a relay that checks sessions only every ten minutes; alice connected, then a
    // second socket with her token whose connect is past its session check, waiting for its
    // membership look-up (held by a lock on `members`)
    let stack = spawn_stack_with(1, |relay| relay.limits.session_check_secs = 600).await;
    let (alice, _) = stack.register("alice").await;
    let mut first = Device::connect(&stack, 0, &alice).await;
    let db = stack.lock_table("members", "ACCESS EXCLUSIVE").await;
    let second = refused_code(&stack, 0, &alice);
    let logout = async {
        until_a_query_waits_for_a_lock(&db).await;

        // Act: logged out; the relay hears it (closing the first socket), then the look-up ends
        stack.logout(&alice).await;
        let reason = revoked_reason(&mut first, PATIENCE).await;
        db.batch_execute("COMMIT").await.unwrap();
        reason
    };
    let (second, first) = tokio::join!(second, logout);

    // Assert: the first socket was told, and the second is refused, not left open until the
    // next check
    assert_eq!(first, "logout");
    assert_eq!(second, "token_revoked");
}

/// Alice's own token (her live session) with `exp` moved to `secs` from now.
fn expiring_soon(stack: &Stack, token: &str, secs: i64) -> String {
    let secret = stack.jwt.secret.expose_secret().as_bytes().to_vec();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[&stack.jwt.audience]);
    let mut claims = jsonwebtoken::decode::<shared::auth::Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&secret),
        &validation,
    )
    .unwrap()
    .claims;
    claims.exp = chrono::Utc::now().timestamp() + secs;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_closed_when_its_token_expires() {
    // Arrange: a token of alice's session that expires in 4 s
    let stack = spawn_stack_with(1, |_| {}).await;
    let (alice, _) = stack.register("alice").await;
    let token = expiring_soon(&stack, &alice, 4);

    // Act
    let mut device = Device::connect(&stack, 0, &token).await;

    // Assert
    assert_eq!(
        revoked_reason(&mut device, Duration::from_secs(30)).await,
        "expired"
    );
}
