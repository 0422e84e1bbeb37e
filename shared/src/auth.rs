//! JWT access tokens: HS256 pinned, `exp`, `iss`, `aud`, `sub` and `jti` required, small leeway.
//! The API signs them; the API and the relays verify them with the same [`JwtSettings`].
//!
//! *Service tokens* authenticate a relay to the API's internal routes (`/internal/relay/…`): the
//! same secret and issuer, but the audience `<audience>:internal`, the subject
//! [`SERVICE_SUBJECT`] and a lifetime of [`SERVICE_TTL_SECS`]. Neither kind passes as the other:
//! [`JwtKeys::verify`] pins the clients' audience, [`JwtKeys::verify_service`] the internal one.

use crate::ids::UserId;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// JWT settings, shared by both services. `secret` comes from `JWT_SECRET`.
#[derive(Clone, Deserialize)]
pub struct JwtSettings {
    pub secret: SecretString,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Token lifetime in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Clock skew tolerated on `exp`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

/// The `sub` of a service token.
pub const SERVICE_SUBJECT: &str = "relay";
/// The lifetime of a service token, in seconds; the relay mints a new one before it runs out.
pub const SERVICE_TTL_SECS: u64 = 300;

fn default_issuer() -> String {
    "parley".into()
}
fn default_audience() -> String {
    "parley-clients".into()
}
fn default_ttl() -> u64 {
    7 * 24 * 3600
}
fn default_leeway() -> u64 {
    30
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// The claims of a Parley token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique token id, used to revoke it.
    pub jti: String,
    /// Not before (optional; Parley does not set it, but honours it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl Claims {
    pub fn user_id(&self) -> Result<UserId, TokenError> {
        self.sub.parse().map_err(|_| TokenError::Invalid)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

/// Signs and verifies tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Pins the internal audience instead of the clients' one.
    service_validation: Validation,
    settings: JwtSettings,
}

impl JwtKeys {
    /// The minimum secret length accepted, in bytes.
    pub const MIN_SECRET_LEN: usize = 32;

    pub fn new(settings: &JwtSettings) -> Result<Self, String> {
        let secret = settings.secret.expose_secret().as_bytes();
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(format!(
                "JWT_SECRET must be at least {} bytes",
                Self::MIN_SECRET_LEN
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut service_validation = validation.clone();
        service_validation.set_audience(&[service_audience(&settings.audience)]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            service_validation,
            settings: settings.clone(),
        })
    }

    /// A new token for `user`, and its claims.
    pub fn issue(&self, user: UserId) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_string(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat: now,
            exp: now + self.settings.ttl_secs as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Verify signature, algorithm, `exp`, `nbf`, `iss` and `aud`, and that the token is one
    /// this configuration could have issued: `iat` not in the future and a lifetime
    /// (`exp - iat`) within `ttl_secs` (both with the leeway).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(decode_error)?;
        self.check_lifetime(&claims, self.settings.ttl_secs)?;
        Ok(claims)
    }

    /// `iat` not ahead of our clock, and `exp - iat` at most `ttl_secs`, each within the leeway.
    fn check_lifetime(&self, claims: &Claims, ttl_secs: u64) -> Result<(), TokenError> {
        let leeway = i64::try_from(self.settings.leeway_secs).unwrap_or(i64::MAX);
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        let now = Utc::now().timestamp();
        let issued_in_the_future = claims.iat > now.saturating_add(leeway);
        let too_long = claims.exp.saturating_sub(claims.iat) > ttl.saturating_add(leeway);
        if issued_in_the_future || too_long {
            return Err(TokenError::Invalid);
        }
        Ok(())
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// A new service token (see the module doc), and its claims.
    pub fn issue_service(&self) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: SERVICE_SUBJECT.to_owned(),
            iss: self.settings.issuer.clone(),
            aud: service_audience(&self.settings.audience),
            iat: now,
            exp: now + SERVICE_TTL_SECS as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Verify a service token: signature, algorithm, `exp`, `iss`, the internal `aud` and the
    /// service `sub`. A user token is [`TokenError::Invalid`] here.
    pub fn verify_service(&self, token: &str) -> Result<Claims, TokenError> {
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.service_validation)
                .map(|data| data.claims)
                .map_err(decode_error)?;
        if claims.sub != SERVICE_SUBJECT {
            return Err(TokenError::Invalid);
        }
        self.check_lifetime(&claims, SERVICE_TTL_SECS)?;
        Ok(claims)
    }
}

fn decode_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Invalid,
    }
}

/// The audience of service tokens: the clients' audience with `:internal` appended.
fn service_audience(audience: &str) -> String {
    format!("{audience}:internal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&JwtSettings {
            secret: SecretString::from(secret.to_owned()),
            issuer: default_issuer(),
            audience: default_audience(),
            ttl_secs: 60,
            leeway_secs: 0,
        })
        .unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A token signed with our key whose claims are `change`d from a freshly issued one.
    fn forged(change: impl FnOnce(&mut Claims)) -> String {
        let (_, mut claims) = keys(SECRET).issue(UserId(1)).unwrap();
        change(&mut claims);
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn tokens_this_configuration_could_not_have_issued_are_invalid() {
        let now = Utc::now().timestamp();
        type Change = Box<dyn FnOnce(&mut Claims)>;
        let cases: [(&str, Change); 4] = [
            (
                "nbf an hour ahead",
                Box::new(move |c| c.nbf = Some(now + 3600)),
            ),
            (
                "iat a year ahead",
                Box::new(move |c| {
                    c.iat = now + 365 * 24 * 3600;
                    c.exp = c.iat + 30;
                }),
            ),
            ("exp in 9999", Box::new(|c| c.exp = 253_402_300_799)),
            ("a lifetime over ttl_secs", Box::new(|c| c.exp = c.iat + 61)),
        ];
        for (case, change) in cases {
            assert_eq!(
                keys(SECRET).verify(&forged(change)).err(),
                Some(TokenError::Invalid),
                "{case}"
            );
        }
        let unchanged = forged(|_| {});
        assert!(keys(SECRET).verify(&unchanged).is_ok());
        let past_nbf = forged(move |c| c.nbf = Some(now - 10));
        assert!(keys(SECRET).verify(&past_nbf).is_ok());
    }

    #[test]
    fn an_issued_token_verifies_and_names_its_user() {
        let k = keys(SECRET);
        let (token, claims) = k.issue(UserId(9)).unwrap();
        let verified = k.verify(&token).unwrap();
        assert_eq!(verified, claims);
        assert_eq!(verified.user_id().unwrap(), UserId(9));
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let (token, _) = keys(SECRET).issue(UserId(1)).unwrap();
        let other = keys("ffffffffffffffffffffffffffffffff");
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_invalid() {
        use base64_like::encode;
        let header = encode(r#"{"alg":"none","typ":"JWT"}"#);
        let now = Utc::now().timestamp();
        let body = encode(&format!(
            r#"{{"sub":"1","iss":"parley","aud":"parley-clients","iat":{now},"exp":{},"jti":"x"}}"#,
            now + 60
        ));
        let token = format!("{header}.{body}.");
        assert_eq!(keys(SECRET).verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_service_token_verifies_only_as_a_service_token() {
        let k = keys(SECRET);
        let (service, claims) = k.issue_service().unwrap();
        assert_eq!(k.verify_service(&service).unwrap(), claims);
        assert_eq!(claims.aud, "parley-clients:internal");
        assert_eq!(k.verify(&service), Err(TokenError::Invalid));
        let (user, _) = k.issue(UserId(1)).unwrap();
        assert_eq!(k.verify_service(&user), Err(TokenError::Invalid));
    }

    #[test]
    fn a_service_token_signed_with_another_key_is_invalid() {
        let (token, _) = keys(SECRET).issue_service().unwrap();
        let other = keys("ffffffffffffffffffffffffffffffff");
        assert_eq!(other.verify_service(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn short_secrets_are_refused() {
        let settings = JwtSettings {
            secret: SecretString::from("short".to_owned()),
            issuer: default_issuer(),
            audience: default_audience(),
            ttl_secs: 60,
            leeway_secs: 0,
        };
        assert!(JwtKeys::new(&settings).is_err());
    }

    /// Just enough base64url for building a hostile token in a test.
    mod base64_like {
        pub fn encode(s: &str) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let b = s.as_bytes();
            let mut out = String::new();
            for chunk in b.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, &x)| acc | (x as u32) << (16 - 8 * i));
                let chars = chunk.len() + 1;
                for i in 0..chars {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
