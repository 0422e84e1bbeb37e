//! Extension points of the HTTP listener: a gate that accepts or refuses a handshake before a
//! session exists (Origin allowlist, per-IP rate limits), and a fallback for requests outside the
//! Engine.IO path (`/health`, `/metrics`).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use super::errors::{error_response, Body};

/// What is known of the HTTP request that opens a session. Kept with the session (the Socket.IO
/// layer exposes it as the handshake).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub remote_addr: SocketAddr,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// Headers of the WebSocket handshake itself, which a session has no use for afterwards.
fn is_handshake_header(name: &hyper::header::HeaderName) -> bool {
    use hyper::header::{CONNECTION, UPGRADE};
    *name == UPGRADE || *name == CONNECTION || name.as_str().starts_with("sec-websocket-")
}

impl RequestInfo {
    /// The parts of `request` a session keeps, copied into allocations of their own. hyper
    /// parses a request without copying: its URI and header values are slices of the
    /// connection's read buffer (8 KiB or more), which a clone would keep alive for as long as
    /// the session lives, i.e. 8 KiB per idle WebSocket connection. The WebSocket handshake's
    /// own headers (`Sec-WebSocket-*`, `Upgrade`, `Connection`) are used once, to answer it, and
    /// not kept.
    pub fn copied_from<B>(request: &Request<B>, remote_addr: SocketAddr) -> Self {
        let kept = || {
            request
                .headers()
                .iter()
                .filter(|(name, _)| !is_handshake_header(name))
        };
        let mut headers = HeaderMap::with_capacity(kept().count());
        for (name, value) in kept() {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), value);
            }
        }
        let uri =
            Uri::try_from(request.uri().to_string()).unwrap_or_else(|_| request.uri().clone());
        Self {
            remote_addr,
            method: request.method().clone(),
            uri,
            headers,
        }
    }

    /// A handshake GET from 127.0.0.1, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test() -> Self {
        Self {
            remote_addr: ([127, 0, 0, 1], 1).into(),
            method: Method::GET,
            uri: Uri::from_static("/socket.io/?EIO=4"),
            headers: HeaderMap::new(),
        }
    }

    /// The value of a header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The query string as (decoded) pairs; later duplicates win.
    pub fn query(&self) -> HashMap<String, String> {
        parse_query(self.uri.query().unwrap_or(""))
    }
}

/// Splits `a=1&b=x%20y` into pairs, percent- and `+`-decoding values.
pub fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A refusal from the [`RequestGate`]: the status and message sent to the client, with the
/// Engine.IO code 4 ("Forbidden") in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl Refusal {
    /// 403 Forbidden.
    pub fn forbidden() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: "Forbidden".into(),
            retry_after: None,
        }
    }

    /// 429 Too Many Requests (for rate limits).
    pub fn too_many_requests() -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Too many requests".into(),
            retry_after: None,
        }
    }

    /// The same refusal, telling the client when to try again.
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub(crate) fn response(&self) -> Response<Body> {
        let mut response = error_response(self.status, 4, &self.message);
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, secs.max(1).into());
        }
        response
    }
}

/// Decides whether a handshake (a request that would create a session) may proceed. Runs after
/// the Origin allowlist of [`EngineConfig`](super::EngineConfig).
pub trait RequestGate: Send + Sync + 'static {
    fn check(&self, request: &RequestInfo) -> Result<(), Refusal>;
}

impl<F> RequestGate for F
where
    F: Fn(&RequestInfo) -> Result<(), Refusal> + Send + Sync + 'static,
{
    fn check(&self, request: &RequestInfo) -> Result<(), Refusal> {
        self(request)
    }
}

/// The future a [`Fallback`] returns.
pub type FallbackFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Serves HTTP requests whose path is not the Engine.IO path.
pub trait Fallback: Send + Sync + 'static {
    fn call(&self, request: Request<Incoming>, remote_addr: SocketAddr) -> FallbackFuture;
}

impl<F> Fallback for F
where
    F: Fn(Request<Incoming>, SocketAddr) -> FallbackFuture + Send + Sync + 'static,
{
    fn call(&self, request: Request<Incoming>, remote_addr: SocketAddr) -> FallbackFuture {
        self(request, remote_addr)
    }
}

/// The optional hooks of [`serve`](super::serve). Without a fallback, other paths get 404.
#[derive(Clone, Default)]
pub struct Hooks {
    pub gate: Option<Arc<dyn RequestGate>>,
    pub fallback: Option<Arc<dyn Fallback>>,
}

impl Hooks {
    pub fn with_gate(mut self, gate: impl RequestGate) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }

    pub fn with_fallback(mut self, fallback: impl Fallback) -> Self {
        self.fallback = Some(Arc::new(fallback));
        self
    }
}

/// The answer for other paths when no fallback is installed, in the house error shape.
pub(crate) fn not_found() -> Response<Body> {
    let body = r#"{"error":{"code":"not_found","message":"no such path"}}"#;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_split_and_decoded() {
        let q = parse_query("EIO=4&transport=polling&t=N%2Fx&name=a+b&flag");
        assert_eq!(q["EIO"], "4");
        assert_eq!(q["transport"], "polling");
        assert_eq!(q["t"], "N/x");
        assert_eq!(q["name"], "a b");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn broken_percent_escapes_are_kept_literally() {
        let q = parse_query("a=%zz&b=%4");
        assert_eq!(q["a"], "%zz");
        assert_eq!(q["b"], "%4");
    }
}
