//! Hostile bearer tokens. Each one is the app's own token with one thing changed, so that a 401
//! proves the check of that one thing (a control re-signs the token unchanged and must pass).

use crate::helpers::{spawn_app, TestApp};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::Method;
use serde_json::{json, Value};
use shared::auth::Claims;

/// The claims of a token the app issued, read with the app's secret.
fn claims_of(app: &TestApp, token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[&app.settings.jwt.issuer]);
    validation.set_audience(&[&app.settings.jwt.audience]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(app.jwt_secret().as_bytes()),
        &validation,
    )
    .expect("the app's own token decodes with its settings");
    serde_json::to_value(data.claims).expect("claims as JSON")
}

fn sign(claims: &Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing")
}

/// Unpadded base64url, enough to hand-build an unsigned token.
fn b64url(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A user, their real token and its claims; asserts that re-signing the claims unchanged with
/// the app's key gives a token the app accepts (so the forgeries below differ only as intended).
async fn user_with_claims(app: &TestApp) -> (String, Value) {
    let (token, _) = app.register("alice").await;
    let claims = claims_of(app, &token);
    let control = sign(&claims, Algorithm::HS256, &app.jwt_secret());
    app.get("/api/auth/me", &control).await.expect(200);
    (token, claims)
}

/// Assert that `token` is refused with `code` on a read and on a write.
async fn assert_refused(app: &TestApp, token: &str, code: &str) {
    app.get("/api/auth/me", token).await.expect_error(401, code);
    app.post("/api/conversations", token, &json!({ "memberIds": ["1"] }))
        .await
        .expect_error(401, code);
}

#[tokio::test]
async fn a_token_re_signed_unchanged_with_the_apps_key_is_accepted() {
    // Arrange
    let app = spawn_app().await;
    let (_, claims) = user_with_claims(&app).await;

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());
    let reply = app.get("/api/auth/me", &token).await;

    // Assert
    assert_eq!(reply.expect(200)["username"], "alice");
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, claims) = user_with_claims(&app).await;
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(claims.to_string().as_bytes());

    // Act + Assert: with an empty signature, and with the signature part left out.
    assert_refused(&app, &format!("{header}.{payload}."), "invalid_token").await;
    assert_refused(&app, &format!("{header}.{payload}"), "invalid_token").await;
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, claims) = user_with_claims(&app).await;

    // Act
    let token = sign(
        &claims,
        Algorithm::HS256,
        "another secret that is long enough to be a key",
    );

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn a_token_signed_with_another_hmac_algorithm_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, claims) = user_with_claims(&app).await;

    // Act: the right key, but HS512 (the app pins HS256).
    let token = sign(&claims, Algorithm::HS512, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_with_401_token_expired() {
    // Arrange
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "token_expired").await;
}

#[tokio::test]
async fn a_token_without_exp_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    claims.as_object_mut().expect("object").remove("exp");

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    claims["aud"] = json!("someone-else");

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    claims["iss"] = json!("evil-issuer");

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn garbage_tokens_are_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (real, _) = user_with_claims(&app).await;
    let mut tampered = real.clone();
    // Flip the last character of the signature.
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    // Act + Assert
    for token in [
        "garbage",
        "a.b.c",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.%%%.sig",
        tampered.as_str(),
    ] {
        assert_refused(&app, token, "invalid_token").await;
    }
}

#[tokio::test]
async fn every_protected_route_answers_401_missing_token_without_a_token() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;
    let (_, bob) = app.register("bob").await;
    let conversation = app.direct(&token, &bob).await;
    let routes = [
        (Method::POST, "/api/auth/logout".to_owned()),
        (Method::GET, "/api/auth/me".to_owned()),
        (Method::GET, "/api/users?search=bo".to_owned()),
        (Method::POST, "/api/conversations".to_owned()),
        (Method::GET, "/api/conversations".to_owned()),
        (Method::GET, format!("/api/conversations/{conversation}")),
        (
            Method::GET,
            format!("/api/conversations/{conversation}/messages"),
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/delivered"),
        ),
        (
            Method::POST,
            format!("/api/conversations/{conversation}/read"),
        ),
        (Method::POST, "/api/messages".to_owned()),
        (Method::GET, "/api/sync".to_owned()),
    ];
    let body = json!({
        "memberIds": [bob.id.to_string()],
        "upToSeq": 0,
        "clientMsgId": "c1",
        "conversationId": conversation,
        "kind": "text",
        "content": "hi",
    });

    for (method, path) in routes {
        // Act
        let with_body = (method == Method::POST).then_some(&body);
        let reply = app.request(method.clone(), &path, None, with_body).await;

        // Assert
        assert_eq!(
            reply.status.as_u16(),
            401,
            "{method} {path}: {}",
            reply.text
        );
        reply.expect_error(401, "missing_token");
    }
}

#[tokio::test]
async fn a_non_bearer_authorization_header_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (token, _) = app.register("alice").await;

    // Act
    let reply = app
        .client
        .get(app.url("/api/auth/me"))
        .header("Authorization", format!("Basic {token}"))
        .send()
        .await
        .expect("request");

    // Assert
    assert_eq!(reply.status().as_u16(), 401);
}

#[tokio::test]
async fn a_token_not_valid_before_an_hour_from_now_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    claims["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn a_token_issued_a_year_ahead_is_refused_with_401() {
    // Arrange
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    let year = 365 * 24 * 3600;
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now + year);
    claims["exp"] = json!(now + year + 60);

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn a_token_living_longer_than_the_configured_lifetime_is_refused_with_401() {
    // Arrange: expiry in the year 9999
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    claims["exp"] = json!(253_402_300_799_i64);

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "invalid_token").await;
}

#[tokio::test]
async fn a_token_naming_another_user_than_its_sessions_owner_is_refused_with_401() {
    // Arrange: alice's live session, re-signed with bob as the subject
    let app = spawn_app().await;
    let (_, mut claims) = user_with_claims(&app).await;
    let (_, bob) = app.register("bob").await;
    claims["sub"] = json!(bob.id.to_string());

    // Act
    let token = sign(&claims, Algorithm::HS256, &app.jwt_secret());

    // Assert
    assert_refused(&app, &token, "token_revoked").await;
}
