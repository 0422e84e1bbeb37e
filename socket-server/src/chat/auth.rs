//! Authenticating a socket at connect: the handshake's `auth.token` is verified with the API's
//! JWT rules, then checked against the revoked tokens on the bus.

use secrecy::SecretString;
use serde_json::{json, Value};
use shared::auth::{JwtKeys, TokenError};
use shared::bus::Bus;
use shared::errors::ErrorCode;
use shared::ids::UserId;

use crate::socketio::ConnectError;

/// Who a socket is, kept in its extensions.
#[derive(Clone)]
pub struct Session {
    pub user: UserId,
    /// The token's id (logout revokes by it).
    pub jti: String,
    /// The bearer token, replayed to the API on the user's behalf.
    pub token: SecretString,
}

/// The CONNECT_ERROR for `code`: `{"message", "data": {"code"}}`.
pub fn refusal(code: ErrorCode) -> ConnectError {
    ConnectError::new(code.default_message()).with_data(json!({ "code": code.as_str() }))
}

/// Verify the handshake's `{token}`.
pub async fn authenticate(
    auth: &Value,
    keys: &JwtKeys,
    bus: &dyn Bus,
) -> Result<Session, ConnectError> {
    let token = auth
        .get("token")
        .and_then(Value::as_str)
        .map(|t| t.strip_prefix("Bearer ").unwrap_or(t))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| refusal(ErrorCode::MissingToken))?;
    let claims = keys.verify(token).map_err(|e| match e {
        TokenError::Expired => refusal(ErrorCode::TokenExpired),
        TokenError::Invalid => refusal(ErrorCode::InvalidToken),
    })?;
    let user = claims
        .user_id()
        .map_err(|_| refusal(ErrorCode::InvalidToken))?;
    match bus.is_token_revoked(&claims.jti).await {
        Ok(false) => {}
        Ok(true) => return Err(refusal(ErrorCode::TokenRevoked)),
        Err(error) => {
            tracing::warn!(%error, "checking token revocation failed");
            return Err(refusal(ErrorCode::ServiceUnavailable));
        }
    }
    Ok(Session {
        user,
        jti: claims.jti,
        token: SecretString::from(token.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::auth::JwtSettings;
    use shared::bus::memory::MemoryBus;
    use std::time::Duration;

    fn keys() -> JwtKeys {
        JwtKeys::new(&JwtSettings {
            secret: SecretString::from("x".repeat(40)),
            issuer: "parley".into(),
            audience: "parley-clients".into(),
            ttl_secs: 60,
            leeway_secs: 0,
        })
        .unwrap()
    }

    async fn code_of(auth: Value, bus: &MemoryBus) -> String {
        let refusal = authenticate(&auth, &keys(), bus).await.err().unwrap();
        refusal.data.unwrap()["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_valid_token_gives_its_user_and_jti() {
        let (token, claims) = keys().issue(UserId(7)).unwrap();
        let session = authenticate(&json!({ "token": token }), &keys(), &MemoryBus::new())
            .await
            .ok()
            .unwrap();
        assert_eq!((session.user, session.jti), (UserId(7), claims.jti));
    }

    #[tokio::test]
    async fn missing_garbage_foreign_and_revoked_tokens_are_refused_with_their_code() {
        let bus = MemoryBus::new();
        assert_eq!(code_of(json!({}), &bus).await, "missing_token");
        assert_eq!(code_of(json!({ "token": "" }), &bus).await, "missing_token");
        assert_eq!(
            code_of(json!({ "token": "a.b.c" }), &bus).await,
            "invalid_token"
        );
        let other = JwtKeys::new(&JwtSettings {
            secret: SecretString::from("y".repeat(40)),
            ..keys().settings().clone()
        })
        .unwrap();
        let (foreign, _) = other.issue(UserId(1)).unwrap();
        assert_eq!(
            code_of(json!({ "token": foreign }), &bus).await,
            "invalid_token"
        );
        let (token, claims) = keys().issue(UserId(1)).unwrap();
        bus.revoke_token(&claims.jti, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            code_of(json!({ "token": token }), &bus).await,
            "token_revoked"
        );
    }
}
