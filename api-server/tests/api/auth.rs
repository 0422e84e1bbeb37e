//! Registration, login, logout, `me`, and the login throttle.

use crate::helpers::{id_of, spawn_app, spawn_app_with, PASSWORD};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn registering_answers_201_with_a_token_and_the_new_user() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app
        .register_raw(&json!({
            "username": "alice",
            "password": PASSWORD,
            "displayName": "Alice Liddell",
        }))
        .await;

    // Assert
    let body = reply.expect(201);
    assert!(
        body["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    let user = &body["user"];
    assert!(!id_of(user).is_empty());
    assert_eq!(user["username"], "alice");
    assert_eq!(user["displayName"], "Alice Liddell");
    assert!(user["createdAt"].is_string(), "{user}");
}

#[tokio::test]
async fn registering_without_a_display_name_still_gives_the_user_one() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app
        .register_raw(&json!({ "username": "bob", "password": PASSWORD }))
        .await;

    // Assert
    let user = &reply.expect(201)["user"];
    assert!(
        user["displayName"].as_str().is_some_and(|n| !n.is_empty()),
        "displayName is optional in the request but not in the User: {user}"
    );
}

#[tokio::test]
async fn the_registration_answer_never_contains_the_password_or_its_hash() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app
        .register_raw(&json!({ "username": "carol", "password": PASSWORD }))
        .await;

    // Assert
    reply.expect(201);
    assert!(!reply.text.contains(PASSWORD), "{}", reply.text);
    assert!(!reply.text.contains("$argon2"), "{}", reply.text);
    let user = reply.body["user"].as_object().expect("user object");
    assert!(
        user.keys().all(|k| !k.to_lowercase().contains("password")),
        "{user:?}"
    );
}

#[tokio::test]
async fn registering_a_taken_username_answers_409_username_taken_whatever_its_case() {
    // Arrange
    let app = spawn_app().await;
    app.register("alice").await;

    // Act
    let same = app
        .register_raw(&json!({ "username": "alice", "password": PASSWORD }))
        .await;
    let shouted = app
        .register_raw(&json!({ "username": "ALICE", "password": PASSWORD }))
        .await;

    // Assert
    same.expect_error(409, "username_taken");
    shouted.expect_error(409, "username_taken");
}

#[tokio::test]
async fn registering_with_an_invalid_field_answers_400_naming_that_field() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "username": "al", "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "al ice", "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "x".repeat(33), "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "alice", "password": "short" }),
            "password",
        ),
        (
            json!({ "username": "alice", "password": PASSWORD, "displayName": "d".repeat(65) }),
            "displayName",
        ),
        (
            json!({ "username": "alice", "password": PASSWORD, "displayName": "   " }),
            "displayName",
        ),
    ];

    for (body, field) in cases {
        // Act
        let reply = app.register_raw(&body).await;

        // Assert
        let error = reply.expect_error(400, "validation_failed");
        assert_eq!(error["field"], field, "for {body}: {}", reply.text);
    }
}

#[tokio::test]
async fn logging_in_with_the_right_password_returns_a_token_that_works() {
    // Arrange
    let app = spawn_app().await;
    let (_, alice) = app.register("alice").await;

    // Act
    let reply = app.login("alice", PASSWORD).await;

    // Assert
    let body = reply.expect(200);
    assert_eq!(body["user"]["id"], alice.id.to_string());
    assert_eq!(body["user"]["username"], "alice");
    let token = body["token"].as_str().expect("token");
    let me = app.get("/api/auth/me", token).await;
    assert_eq!(me.expect(200)["id"], alice.id.to_string(), "{}", me.text);
}

#[tokio::test]
async fn logging_in_ignores_the_case_of_the_username() {
    // Arrange
    let app = spawn_app().await;
    let (_, alice) = app.register("alice").await;

    // Act
    let reply = app.login("Alice", PASSWORD).await;

    // Assert
    assert_eq!(reply.expect(200)["user"]["id"], alice.id.to_string());
}

#[tokio::test]
async fn logging_in_with_a_wrong_password_or_an_unknown_user_answers_401_invalid_credentials() {
    // Arrange
    let app = spawn_app().await;
    app.register("alice").await;

    // Act
    let wrong_password = app.login("alice", "not the password").await;
    let unknown_user = app.login("nobody", PASSWORD).await;

    // Assert: the same answer, so usernames cannot be probed.
    wrong_password.expect_error(401, "invalid_credentials");
    unknown_user.expect_error(401, "invalid_credentials");
}

#[tokio::test]
async fn the_sixth_failed_login_for_a_username_within_the_window_answers_429_rate_limited() {
    // Arrange
    let app = spawn_app().await;
    app.register("alice").await;
    for attempt in 1..=5 {
        let reply = app.login("alice", "wrong password").await;
        assert_eq!(
            reply.status.as_u16(),
            401,
            "attempt {attempt} is within the allowance: {}",
            reply.text
        );
    }

    // Act
    let sixth = app.login("alice", "wrong password").await;

    // Assert
    sixth.expect_error(429, "rate_limited");
}

#[tokio::test]
async fn registrations_beyond_the_per_ip_limit_answer_429_rate_limited() {
    // Arrange: two registrations per address in the window; a taken name counts too
    let app = spawn_app_with(|s| s.limits.registrations_per_ip = 2).await;
    app.register("alice").await;
    let taken = json!({ "username": "alice", "password": PASSWORD });
    app.register_raw(&taken)
        .await
        .expect_error(409, "username_taken");

    // Act
    let third = app
        .register_raw(&json!({ "username": "bob", "password": PASSWORD }))
        .await;

    // Assert: refused before any password is hashed; logging in is not affected
    third.expect_error(429, "rate_limited");
    assert_eq!(app.login("alice", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_throttled_username_is_refused_even_with_the_right_password() {
    // Arrange
    let app = spawn_app().await;
    app.register("alice").await;
    for _ in 0..6 {
        app.login("alice", "wrong password").await;
    }

    // Act: otherwise a guesser learns the password from the one answer that is not 429.
    let reply = app.login("alice", PASSWORD).await;

    // Assert
    reply.expect_error(429, "rate_limited");
}

#[tokio::test]
async fn behind_a_trusted_proxy_failed_logins_are_counted_per_forwarded_client() {
    // Arrange: the test client is the load balancer (127.0.0.1); an attacker behind it fails
    // on several accounts until their address is throttled
    let app = spawn_app_with(|s| {
        s.api.trusted_proxies =
            shared::net::TrustedProxies::parse(&["127.0.0.0/8"]).expect("a CIDR");
        s.limits.login_failures_per_ip = 3;
    })
    .await;
    app.register("bob").await;
    let attacker = "198.51.100.66";
    for user in ["alice", "carol", "dave"] {
        app.login_forwarded(user, "guess", attacker)
            .await
            .expect_error(401, "invalid_credentials");
    }

    // Act
    let attacker_again = app.login_forwarded("erin", "guess", attacker).await;
    let someone_else = app.login_forwarded("bob", PASSWORD, "203.0.113.7").await;

    // Assert: the attacker's address is refused; everybody else behind the proxy is not.
    attacker_again.expect_error(429, "rate_limited");
    assert_eq!(someone_else.status, 200, "{}", someone_else.text);
}

#[tokio::test]
async fn a_stranger_failing_someones_logins_is_refused_but_does_not_lock_them_out() {
    // Arrange: both behind the trusted load balancer; the stranger fails alice's logins
    let app = spawn_app_with(|s| {
        s.api.trusted_proxies =
            shared::net::TrustedProxies::parse(&["127.0.0.0/8"]).expect("a CIDR");
    })
    .await;
    app.register("alice").await;
    let stranger = "198.51.100.66";
    for _ in 0..5 {
        app.login_forwarded("alice", "guess", stranger)
            .await
            .expect_error(401, "invalid_credentials");
    }

    // Act
    let stranger_again = app.login_forwarded("alice", PASSWORD, stranger).await;
    let alice = app.login_forwarded("alice", PASSWORD, "203.0.113.7").await;

    // Assert: the right password from the stranger's address is refused too
    stranger_again.expect_error(429, "rate_limited");
    assert_eq!(alice.status, 200, "{}", alice.text);
}

#[tokio::test]
async fn failures_for_one_username_from_many_addresses_lock_it_out_everywhere() {
    // Arrange: two failures per address, four per account
    let app = spawn_app_with(|s| {
        s.api.trusted_proxies =
            shared::net::TrustedProxies::parse(&["127.0.0.0/8"]).expect("a CIDR");
        s.limits.login_failures_per_window = 2;
        s.limits.login_failures_per_account = 4;
    })
    .await;
    app.register("alice").await;
    for address in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            app.login_forwarded("alice", "guess", address)
                .await
                .expect_error(401, "invalid_credentials");
        }
    }

    // Act
    let elsewhere = app.login_forwarded("alice", PASSWORD, "203.0.113.7").await;

    // Assert
    elsewhere.expect_error(429, "rate_limited");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // Arrange: no trusted proxies, so a client cannot pick a fresh address per attempt
    let app = spawn_app_with(|s| s.limits.login_failures_per_ip = 2).await;
    for (n, user) in ["alice", "carol"].into_iter().enumerate() {
        app.login_forwarded(user, "guess", &format!("198.51.100.{n}"))
            .await
            .expect_error(401, "invalid_credentials");
    }

    // Act
    let reply = app.login_forwarded("dave", "guess", "198.51.100.99").await;

    // Assert
    reply.expect_error(429, "rate_limited");
}

#[tokio::test]
async fn failures_for_one_username_do_not_lock_out_other_users_of_the_same_address() {
    // Arrange: with default limits, one user's password is guessed wrongly until throttled
    let app = spawn_app().await;
    app.register("bob").await;
    for _ in 0..6 {
        app.login("alice", "wrong password").await;
    }

    // Act
    let bob = app.login("bob", PASSWORD).await;

    // Assert
    assert_eq!(bob.status, 200, "{}", bob.text);
}

#[tokio::test]
async fn me_answers_the_user_of_the_token() {
    // Arrange
    let app = spawn_app().await;
    let (token, alice) = app.register("alice").await;

    // Act
    let reply = app.get("/api/auth/me", &token).await;

    // Assert
    let body = reply.expect(200);
    assert_eq!(body["id"], alice.id.to_string());
    assert_eq!(body["username"], "alice");
}

#[tokio::test]
async fn logging_out_answers_204_and_the_token_then_gets_401_token_revoked() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let logout = app
        .request(Method::POST, "/api/auth/logout", Some(&token), None)
        .await;

    // Assert
    logout.expect(204);
    app.get("/api/auth/me", &token)
        .await
        .expect_error(401, "token_revoked");
    app.get("/api/conversations", &token)
        .await
        .expect_error(401, "token_revoked");
}

#[tokio::test]
async fn logging_out_one_token_leaves_the_users_other_tokens_working() {
    // Arrange
    let app = spawn_app().await;
    let (first, _) = app.register("alice").await;
    let login = app.login("alice", PASSWORD).await;
    let second = login.expect(200)["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // Act
    app.request(Method::POST, "/api/auth/logout", Some(&first), None)
        .await
        .expect(204);

    // Assert
    app.get("/api/auth/me", &first)
        .await
        .expect_error(401, "token_revoked");
    app.get("/api/auth/me", &second).await.expect(200);
}

#[tokio::test]
async fn expired_sessions_are_pruned_and_live_ones_kept() {
    // Arrange: two logins (sessions of 7 days)
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    app.login("alice", PASSWORD).await.expect(200);
    let store = api_server::store::open(&app.settings.database)
        .await
        .expect("opening the store as another replica would");
    let prune = api_server::service::sessions::prune;

    // Act: what expired before now (nothing), then before a day past their expiry
    let now = chrono::Utc::now();
    let none = prune(&*store, now).await.expect("pruning");
    app.get("/api/auth/me", &token).await.expect(200);
    let later = now + chrono::Duration::days(8);
    let both = prune(&*store, later).await.expect("pruning");

    // Assert: live sessions untouched, expired ones gone (a token without its session is
    // refused as a revoked one is)
    assert_eq!((none, both), (0, 2));
    assert_eq!(prune(&*store, later).await.expect("again"), 0);
    app.get("/api/auth/me", &token)
        .await
        .expect_error(401, "token_revoked");
}
