//! The id of one HTTP request, returned in the `x-request-id` response header and carried by
//! every log line of the request (a `request` span with a `request_id` field), and the target of
//! both services' access log (one line per request).
//!
//! An incoming `x-request-id` (from a load balancer or a client) is kept when it is 1 to
//! [`MAX_LEN`] visible ASCII characters, so one id follows a request across hops; otherwise a
//! new one is generated.

use std::fmt;

/// The request and response header.
pub const HEADER: &str = "x-request-id";

/// The `tracing` target of the access log lines (filter with `RUST_LOG=…,parley::access=warn`).
pub const ACCESS_TARGET: &str = "parley::access";

/// Longest incoming id kept, in bytes.
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The incoming header's value when it is a valid id, else a new id.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        value.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    /// A header value accepted as an id: 1 to [`MAX_LEN`] visible ASCII characters (`!` to `~`:
    /// no spaces or control characters, so it cannot forge log lines or headers).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let valid = !value.is_empty()
            && value.len() <= MAX_LEN
            && value.iter().all(|b| b.is_ascii_graphic());
        // Visible ASCII is UTF-8.
        valid.then(|| Self(String::from_utf8_lossy(value).into_owned()))
    }

    /// A new random id (a UUID).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration in milliseconds with microsecond precision, as the access log reports latency.
pub fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_incoming_id_is_kept() {
        let id = RequestId::from_header(Some(b"lb-7f3a:req/42"));
        assert_eq!(id.as_str(), "lb-7f3a:req/42");
    }

    #[test]
    fn empty_long_spaced_or_non_ascii_ids_are_replaced() {
        let long = vec![b'a'; MAX_LEN + 1];
        for bad in [
            &b""[..],
            &long,
            b"two words",
            b"tab\there",
            b"new\nline",
            "caf\u{e9}".as_bytes(),
        ] {
            let id = RequestId::from_header(Some(bad));
            assert_ne!(id.as_str().as_bytes(), bad);
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok(), "{id}");
        }
        assert_eq!(
            RequestId::parse(&[b'a'; MAX_LEN]).unwrap().as_str().len(),
            MAX_LEN
        );
    }

    #[test]
    fn without_a_header_each_request_gets_a_new_id() {
        assert_ne!(RequestId::from_header(None), RequestId::from_header(None));
    }

    #[test]
    fn latency_is_reported_in_milliseconds() {
        assert_eq!(millis(std::time::Duration::from_micros(1500)), 1.5);
    }
}
