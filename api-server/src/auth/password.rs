//! Argon2id password hashing. Both operations are CPU-bound (tens of milliseconds by design), so
//! they run on tokio's blocking pool rather than on an async worker.

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use shared::domain::Password;
use std::sync::OnceLock;

/// Hash a new password as a PHC string (`$argon2id$v=19$…`, salt included).
pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose()))
        .await
        .context("the password hashing task panicked")?
}

/// Whether `candidate` matches `stored`. With `stored = None` (no such user) a dummy hash is
/// verified instead and `false` returned, so that the answer takes as long as for a real user and
/// its timing does not reveal which usernames exist.
pub async fn verify(candidate: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let (phc, exists) = match stored {
            Some(phc) => (phc, true),
            None => (dummy_hash()?.to_owned(), false),
        };
        Ok(verify_blocking(&candidate, &phc)? && exists)
    })
    .await
    .context("the password verification task panicked")?
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

fn verify_blocking(candidate: &str, phc: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| anyhow::anyhow!("a stored password hash is malformed: {e}"))?;
    match Argon2::default().verify_password(candidate.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("verifying a password: {e}")),
    }
}

/// A hash of a random password made with the same parameters as real ones, computed once.
fn dummy_hash() -> anyhow::Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let made = hash_blocking(&uuid::Uuid::new_v4().to_string())?;
    Ok(DUMMY.get_or_init(|| made))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let phc = hash(pw("correct horse battery")).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!verify("correct horse battery!".into(), Some(phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_their_salt() {
        let a = hash(pw("same password")).await.unwrap();
        let b = hash(pw("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies_even_with_the_dummy_password() {
        assert!(!verify("anything at all".into(), None).await.unwrap());
        assert!(!verify(String::new(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
        assert!(verify("whatever1".into(), Some("not-a-phc".into()))
            .await
            .is_err());
    }
}
