//! Authenticating a socket at connect: the handshake's `auth.token` is verified with the API's
//! JWT rules ([`verify`]), then its session is checked with the system of record through the
//! port ([`check_session`]: a token revoked by logout is refused even when Redis lost its data).

use secrecy::SecretString;
use serde_json::{json, Value};
use shared::auth::{JwtKeys, TokenError};
use shared::errors::ErrorCode;
use shared::ids::UserId;
use shared::port::RelayPort;

use super::cache::SessionCache;
use crate::socketio::{ConnectError, Socket};

/// Who a socket is, kept in its extensions.
#[derive(Clone)]
pub struct Session {
    pub user: UserId,
    /// The token's id (logout revokes by it).
    pub jti: String,
    /// The bearer token the socket connected with.
    pub token: SecretString,
    /// When the token expires (unix seconds): the socket is closed then.
    pub exp: i64,
}

/// Tell a socket its session is over (`session_revoked` `{reason}`: `logout`, `revoked` or
/// `expired`), then close it.
pub fn revoke(socket: &Socket, reason: &str) {
    let revoked = shared::wire::SessionRevoked {
        reason: reason.to_owned(),
    };
    let _ = socket.emit("session_revoked", super::to_value(&revoked));
    socket.disconnect();
}

/// The CONNECT_ERROR for `code`: `{"message", "data": {"code"}}`.
pub fn refusal(code: ErrorCode) -> ConnectError {
    ConnectError::new(code.default_message()).with_data(json!({ "code": code.as_str() }))
}

/// `missing_token`, saying where a socket's token goes: the relay reads neither an
/// `Authorization` header (`extraHeaders`) nor the query string, which clients try first.
fn missing_token() -> ConnectError {
    ConnectError::new(
        "a token is required in the handshake's auth: io(url, { auth: { token } }) \
         (an Authorization header or a query parameter is not read)",
    )
    .with_data(json!({ "code": ErrorCode::MissingToken.as_str() }))
}

/// Who the handshake's `{token}` says the socket is (a `Bearer ` prefix, in any case, is
/// tolerated), by the token alone: its session is [`check_session`]'s.
pub fn verify(auth: &Value, keys: &JwtKeys) -> Result<Session, ConnectError> {
    let token = match auth.get("token") {
        None | Some(Value::Null) => return Err(missing_token()),
        Some(Value::String(token)) => without_scheme(token),
        Some(_) => return Err(refusal(ErrorCode::InvalidToken)),
    };
    if token.is_empty() {
        return Err(missing_token());
    }
    let claims = keys.verify(token).map_err(|e| match e {
        TokenError::Expired => refusal(ErrorCode::TokenExpired),
        TokenError::Invalid => refusal(ErrorCode::InvalidToken),
    })?;
    let user = claims
        .user_id()
        .map_err(|_| refusal(ErrorCode::InvalidToken))?;
    Ok(Session {
        user,
        jti: claims.jti,
        token: SecretString::from(token.to_owned()),
        exp: claims.exp,
    })
}

/// Whether `session` is still active: the cache's word when it confirmed it in bus epoch
/// `bus_epoch`, else the API's. `Ok(true)` when the API was asked: the caller remembers its
/// answer in the cache once it hears the user's logouts.
pub async fn check_session(
    session: &Session,
    port: &dyn RelayPort,
    sessions: &SessionCache,
    bus_epoch: Option<u64>,
) -> Result<bool, ConnectError> {
    if sessions.confirmed(session.user, &session.jti, bus_epoch) {
        return Ok(false);
    }
    match port.session_active(session.user, &session.jti).await {
        Ok(true) => Ok(true),
        Ok(false) => Err(refusal(ErrorCode::TokenRevoked)),
        Err(error) => {
            tracing::warn!(code = %error.code, "checking the session failed");
            Err(refusal(ErrorCode::ServiceUnavailable))
        }
    }
}

/// The token of `Bearer <token>` (the scheme in any case, as the API reads it), or the text.
fn without_scheme(text: &str) -> &str {
    match text.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer ") => token.trim_start(),
        _ => text,
    }
}

/// Keys with a fixed secret, for unit tests.
#[cfg(test)]
pub(crate) fn test_keys() -> JwtKeys {
    JwtKeys::new(&shared::auth::JwtSettings {
        secret: SecretString::from("x".repeat(40)),
        issuer: "parley".into(),
        audience: "parley-clients".into(),
        ttl_secs: 60,
        leeway_secs: 0,
    })
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use shared::auth::JwtSettings;
    use shared::errors::AckError;
    use shared::ids::ConversationId;
    use shared::port::{
        Announce, ConversationMembers, Receipt, SessionRef, StoreItem, StoreOutcome,
    };
    use shared::wire::{MemberState, SyncResponse};
    use std::time::Duration;

    use super::test_keys as keys;

    /// A port that knows one active session and nothing else (a unit-test double of our own).
    struct Sessions(Option<(UserId, String)>);

    #[async_trait]
    impl RelayPort for Sessions {
        async fn session_active(&self, user: UserId, jti: &str) -> Result<bool, AckError> {
            Ok(self.0.as_ref().is_some_and(|(u, j)| *u == user && j == jti))
        }
        async fn sessions_active(&self, _: &[SessionRef]) -> Result<Vec<bool>, AckError> {
            unreachable!()
        }
        async fn memberships(&self, _: UserId) -> Result<Vec<ConversationMembers>, AckError> {
            unreachable!()
        }
        async fn members(
            &self,
            _: UserId,
            _: ConversationId,
        ) -> Result<Option<Vec<UserId>>, AckError> {
            unreachable!()
        }
        async fn store(&self, _: &[StoreItem], _: Announce) -> Result<Vec<StoreOutcome>, AckError> {
            unreachable!()
        }
        async fn mark(
            &self,
            _: UserId,
            _: ConversationId,
            _: Receipt,
            _: i64,
        ) -> Result<MemberState, AckError> {
            unreachable!()
        }
        async fn sync(&self, _: UserId, _: Option<String>) -> Result<SyncResponse, AckError> {
            unreachable!()
        }
    }

    async fn code_of(auth: Value, port: &Sessions) -> String {
        let cache = SessionCache::new(Duration::ZERO);
        let refusal = match verify(&auth, &keys()) {
            Ok(session) => check_session(&session, port, &cache, Some(1))
                .await
                .err()
                .unwrap(),
            Err(refusal) => refusal,
        };
        refusal.data.unwrap()["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_valid_token_of_an_active_session_gives_its_user_and_jti() {
        let (token, claims) = keys().issue(UserId(7)).unwrap();
        let port = Sessions(Some((UserId(7), claims.jti.clone())));
        let cache = SessionCache::new(Duration::ZERO);
        for token in [
            token.clone(),
            format!("Bearer {token}"),
            format!("bearer {token}"),
        ] {
            let session = verify(&json!({ "token": token }), &keys()).ok().unwrap();
            let asked = check_session(&session, &port, &cache, Some(1)).await.ok();
            assert_eq!((session.user, &session.jti), (UserId(7), &claims.jti));
            assert_eq!(asked, Some(true), "the API was asked");
        }
    }

    #[tokio::test]
    async fn missing_garbage_foreign_and_inactive_tokens_are_refused_with_their_code() {
        let port = Sessions(None);
        assert_eq!(code_of(json!({}), &port).await, "missing_token");
        assert_eq!(
            code_of(json!({ "token": "" }), &port).await,
            "missing_token"
        );
        assert_eq!(
            code_of(json!({ "token": "Bearer " }), &port).await,
            "missing_token"
        );
        for garbage in [json!("a.b.c"), json!(123), json!({ "jwt": "a.b.c" })] {
            assert_eq!(
                code_of(json!({ "token": garbage }), &port).await,
                "invalid_token"
            );
        }
        let other = JwtKeys::new(&JwtSettings {
            secret: SecretString::from("y".repeat(40)),
            ..keys().settings().clone()
        })
        .unwrap();
        let (foreign, _) = other.issue(UserId(1)).unwrap();
        assert_eq!(
            code_of(json!({ "token": foreign }), &port).await,
            "invalid_token"
        );
        let (token, _) = keys().issue(UserId(1)).unwrap();
        assert_eq!(
            code_of(json!({ "token": token }), &port).await,
            "token_revoked"
        );
    }
}
