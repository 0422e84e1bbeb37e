//! Signed download URLs: `<path>?exp=<unix seconds>&sig=<hex HMAC-SHA256>` over the path and
//! the expiry, with a key derived from the server's secret (`JWT_SECRET`). Browsers load
//! attachments in `<img>` and `<audio>` tags, which cannot send `Authorization`; such a URL
//! stands in for the bearer token on the two download routes only, until it expires.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks download URLs.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
    ttl_secs: u64,
}

/// Why a signed URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Expired,
    Invalid,
}

impl UrlSigner {
    /// A signer whose key is HMAC(secret, "parley attachment urls v1"): the URLs' key is not the
    /// tokens' key itself.
    pub fn new(secret: &SecretString, ttl_secs: u64) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"parley attachment urls v1");
        let key = mac.finalize().into_bytes().into();
        Self { key, ttl_secs }
    }

    fn mac(&self, path: &str, exp: u64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// `path` signed until `now + ttl`, rounded up to a quarter of the ttl: every read within
    /// that quarter gets the same URL, so a browser finds the file in its cache rather than
    /// loading it again under a new URL each time history is read. A URL is valid for at least
    /// the ttl and at most 1.25 times it.
    pub fn sign(&self, path: &str, now: u64) -> String {
        let step = (self.ttl_secs / 4).max(1);
        let exp = (now + self.ttl_secs).div_ceil(step) * step;
        let sig = hex(&self.mac(path, exp).finalize().into_bytes());
        format!("{path}?exp={exp}&sig={sig}")
    }

    /// Check the `exp` and `sig` of a request for `path` at `now`.
    pub fn verify(&self, path: &str, exp: &str, sig: &str, now: u64) -> Result<(), SignatureError> {
        let exp_secs: u64 = exp.parse().map_err(|_| SignatureError::Invalid)?;
        let sig = unhex(sig).ok_or(SignatureError::Invalid)?;
        // Constant-time comparison.
        self.mac(path, exp_secs)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        if exp_secs < now {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Lower-case hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(&SecretString::from("s".repeat(40)), 600)
    }

    fn parts(url: &str) -> (String, String, String) {
        let (path, query) = url.split_once('?').unwrap();
        let (exp, sig) = query.split_once('&').unwrap();
        (
            path.into(),
            exp.trim_start_matches("exp=").into(),
            sig.trim_start_matches("sig=").into(),
        )
    }

    #[test]
    fn a_signed_url_verifies_for_at_least_its_ttl_and_then_expires() {
        let (path, exp, sig) = parts(&signer().sign("/api/attachments/a", 1000));
        let until: u64 = exp.parse().unwrap();
        assert!((1600..=1750).contains(&until), "{until}");
        assert_eq!(signer().verify(&path, &exp, &sig, 1600), Ok(()));
        assert_eq!(
            signer().verify(&path, &exp, &sig, until + 1),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn reads_within_a_quarter_of_the_ttl_get_the_same_url() {
        // 600 s ttl: expiries on multiples of 150 s
        let s = signer();
        assert_eq!(s.sign("/a", 1000), s.sign("/a", 1049));
        assert_ne!(s.sign("/a", 1049), s.sign("/a", 1051));
    }

    #[test]
    fn a_tampered_url_is_invalid() {
        let (path, exp, sig) = parts(&signer().sign("/api/attachments/a", 1000));
        let s = signer();
        assert_eq!(
            s.verify("/api/attachments/b", &exp, &sig, 1000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            s.verify(&path, "99999", &sig, 1000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            s.verify(&path, &exp, "zz", 1000),
            Err(SignatureError::Invalid)
        );
        let other = UrlSigner::new(&SecretString::from("t".repeat(40)), 600);
        assert_eq!(
            other.verify(&path, &exp, &sig, 1000),
            Err(SignatureError::Invalid)
        );
    }
}
