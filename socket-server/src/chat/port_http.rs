//! [`HttpPort`]: the relay port over the API's internal routes (`/internal/relay/…`,
//! `docs/protocol.md`), for the split deployment. Every request carries a service token minted
//! from the shared `JWT_SECRET` (re-minted before it runs out); stores go as one batch per
//! request.
//!
//! One attempt per call: the caller owns retries. A failure that may pass by retrying (the API
//! unreachable, a timeout, any 5xx, a `408` with no body of the API's) is `service_unavailable`
//! (retryable); an error the API answered keeps its code and message.
//!
//! The API is spoken to in plain HTTP/1.1 over hyper's pooled client, not reqwest: every batch
//! is a call, and reqwest's layers (redirects, proxies, retries, URL parsing of each answer)
//! were about half of a call's cost in the relay (issue 12). A redirect is not followed: the
//! internal routes never redirect, and the service token must not go anywhere else.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::auth::{JwtKeys, SERVICE_TTL_SECS};
use shared::errors::{AckError, ErrorCode, ErrorEnvelope};
use shared::ids::{ConversationId, UserId};
use shared::port::{
    Announce, Answers, ConversationMembers, Receipt, RelayPort, SessionCheck, SessionCheckAnswer,
    SessionRef, SessionState, StoreBatchAnswer, StoreBatchRef, StoreItem, StoreOutcome,
    API_CLIENT_IDLE, MAX_SESSION_CHECKS,
};
use shared::wire::{MemberState, SyncResponse, WatermarkRequest};
use url::Url;

/// A service token is re-minted when less than this is left of its lifetime (clock skew and
/// a slow request both fit in it).
const REMINT_MARGIN: Duration = Duration::from_secs(60);

/// The API's base URL as the relay calls it: `http://…` and usable as a base (the relay speaks
/// plain HTTP to the API). Also the check of the `API_URL` setting.
pub fn api_base(url: &str) -> Result<Url, String> {
    let not_http = || {
        format!("the API URL {url:?} is not an http:// base URL (the relay speaks plain HTTP to the API)")
    };
    let base = Url::parse(url.trim_end_matches('/')).map_err(|_| not_http())?;
    if base.scheme() == "http" && !base.cannot_be_a_base() {
        Ok(base)
    } else {
        Err(not_http())
    }
}

/// The relay port over HTTP, at one API base URL.
pub struct HttpPort {
    http: Client<HttpConnector, Full<Bytes>>,
    /// Bounds each call from the connection (or the pool) to the end of the answer.
    timeout: Duration,
    base: Url,
    /// `POST /internal/relay/messages`, called for every batch: built once.
    store_uri: Uri,
    keys: JwtKeys,
    /// The current `Authorization` header and when to mint the next token.
    token: Mutex<Option<(HeaderValue, Instant)>>,
    /// What the last call found ([`RelayPort::reachable`]): [`UNKNOWN`], [`ANSWERED`] or
    /// [`UNREACHABLE`].
    reached: AtomicU8,
}

/// How often a relay whose API has not answered yet asks `GET /health` again.
const PROBE_EVERY: Duration = Duration::from_secs(5);

const UNKNOWN: u8 = 0;
const ANSWERED: u8 = 1;
const UNREACHABLE: u8 = 2;

impl HttpPort {
    /// A port to the API at `base_url` (`http://`); `timeout` bounds each request from connect
    /// to the end of the answer.
    pub fn new(base_url: &str, timeout: Duration, keys: JwtKeys) -> anyhow::Result<Self> {
        let base = api_base(base_url).map_err(anyhow::Error::msg)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(API_CLIENT_IDLE)
            .build(connector);
        let store_uri = join(&base, &["internal", "relay", "messages"])
            .as_str()
            .parse()?;
        Ok(Self {
            http,
            timeout,
            store_uri,
            base,
            keys,
            token: Mutex::new(None),
            reached: AtomicU8::new(UNKNOWN),
        })
    }

    /// Check that the API answers at the base URL (`GET /health`, which needs no token), and say
    /// in the log when it does not: a relay whose `API_URL` is wrong, or whose API is not up
    /// yet, starts anyway (it relays live), but connects no socket until the API answers. Until
    /// a call has found the API answering, ask again every [`PROBE_EVERY`] (so `/health` and
    /// `relay_api_up` of an idle relay catch up with an API that came up after it), saying so
    /// once when it does. Ends when the port is dropped.
    pub async fn probe_until_answered(port: std::sync::Weak<Self>) {
        let mut first = true;
        loop {
            let Some(this) = port.upgrade() else { return };
            if this.reached.load(Ordering::Relaxed) == ANSWERED {
                return;
            }
            this.probe(first).await;
            first = false;
            drop(this);
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// One `GET /health`; an unanswered one is logged as an error only when `first`.
    async fn probe(&self, first: bool) {
        let url = self.url(&["health"]);
        let Ok(target) = uri(&url) else { return };
        let request = Request::get(target).body(Full::default());
        let Ok(request) = request else { return };
        let answer = tokio::time::timeout(self.timeout, self.http.request(request)).await;
        match answer {
            Ok(Ok(response)) if response.status().is_success() => self.check_token(first).await,
            // Something answers, but not the API at its base URL (a path prefix, another
            // service): every call would fail, so it counts as unreachable.
            Ok(Ok(response)) => {
                self.reached.store(UNREACHABLE, Ordering::Relaxed);
                if first {
                    tracing::error!(
                        api_url = %self.base,
                        status = response.status().as_u16(),
                        "the API URL answers GET /health with an error: is API_URL the Parley \
                         API's base URL?"
                    );
                }
            }
            Ok(Err(error)) => self.unreachable(first, &error),
            Err(_) => self.unreachable(first, &"no answer in time"),
        }
    }

    /// The API answers: check that it takes this relay's service token (a look-up of a session
    /// that does not exist). With another `JWT_SECRET` than the API's, the relay refuses every
    /// user's token as `invalid_token` and the API every call of the relay, so it counts as
    /// unreachable: otherwise nothing but the refusals would say so.
    async fn check_token(&self, first: bool) {
        match self.session_active(UserId(0), "relay-start-check").await {
            Err(error)
                if matches!(
                    error.code,
                    ErrorCode::InvalidToken | ErrorCode::TokenExpired
                ) =>
            {
                self.reached.store(UNREACHABLE, Ordering::Relaxed);
                if first {
                    tracing::error!(
                        api_url = %self.base,
                        code = %error.code,
                        "the API refuses this relay's service token: is JWT_SECRET the same as \
                         the API's? Every user's token is refused until it is"
                    );
                }
            }
            Ok(_) | Err(_) => {
                self.reached.store(ANSWERED, Ordering::Relaxed);
                tracing::info!(api_url = %self.base, "the API answers");
            }
        }
    }

    fn unreachable(&self, first: bool, error: &dyn std::fmt::Display) {
        self.reached.store(UNREACHABLE, Ordering::Relaxed);
        if !first {
            return;
        }
        tracing::error!(
            %error,
            api_url = %self.base,
            "the API does not answer (API_URL): sockets cannot connect and messages are not \
             stored until it does"
        );
    }

    /// The base URL with `segments` appended, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        join(&self.base, segments)
    }

    /// The `Authorization` header of the current service token, minted anew when the token is
    /// close to expiry.
    fn authorization(&self) -> Result<HeaderValue, AckError> {
        let mut slot = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((header, renew_at)) = slot.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(header.clone());
            }
        }
        let mint_failed = |error: &dyn std::fmt::Display| {
            tracing::error!(%error, "minting a service token");
            AckError::new(ErrorCode::InternalError, "could not mint a service token")
        };
        let (token, _) = self.keys.issue_service().map_err(|e| mint_failed(&e))?;
        let mut header =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| mint_failed(&e))?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(SERVICE_TTL_SECS).saturating_sub(REMINT_MARGIN);
        *slot = Some((header.clone(), Instant::now() + lifetime));
        Ok(header)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: Uri,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, AckError> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.authorization()?);
        let body = match body {
            Some(body) => {
                request =
                    request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let json = crate::json::to_vec(body).map_err(|error| {
                    tracing::error!(%error, "encoding a request to the API");
                    AckError::new(ErrorCode::InternalError, "could not encode the request")
                })?;
                Full::new(Bytes::from(json))
            }
            None => Full::default(),
        };
        let request = request.body(body).map_err(|error| {
            tracing::error!(%error, "building a request to the API");
            AckError::new(ErrorCode::InternalError, "could not build the request")
        })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|error| {
                tracing::warn!(%error, api_url = %self.base, "the API is unreachable");
                unavailable("the API is unreachable".into())
            })?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|error| {
                tracing::warn!(%error, "the API's answer was cut short");
                unavailable("the API's answer was cut short".into())
            })?;
            Ok((status, body.to_bytes()))
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answered) => answered,
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "the API did not answer in time");
                Err(unavailable("the API did not answer in time".into()))
            }
        };
        let reached = match &outcome {
            // A proxy's 502 or 504 is the API not answering behind it; a 404 for the route
            // itself, no API at this base URL (API_URL with a path prefix, another service).
            Ok((status, body))
                if matches!(status.as_u16(), 502 | 504) || no_such_route(*status, body) =>
            {
                UNREACHABLE
            }
            Ok(_) => ANSWERED,
            Err(_) => UNREACHABLE,
        };
        self.reached.store(reached, Ordering::Relaxed);
        let (status, body) = outcome?;
        answer(status, &body)
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, AckError> {
        self.call(Method::GET, uri(&url)?, None::<&()>).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        url: Url,
        body: &(impl Serialize + Sync),
    ) -> Result<T, AckError> {
        self.call(Method::POST, uri(&url)?, Some(body)).await
    }
}

/// `service_unavailable`: what may pass by retrying.
fn unavailable(what: String) -> AckError {
    AckError::new(ErrorCode::ServiceUnavailable, what)
}

/// `url` as a request target.
fn uri(url: &Url) -> Result<Uri, AckError> {
    url.as_str().parse().map_err(|error| {
        tracing::error!(%error, %url, "an API URL that is not a request URI");
        AckError::new(ErrorCode::InternalError, "could not build the request")
    })
}

/// `base` with `segments` appended, each percent-encoded as one path segment.
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[async_trait]
impl RelayPort for HttpPort {
    async fn session_active(&self, user: UserId, jti: &str) -> Result<bool, AckError> {
        let user = user.to_string();
        let url = self.url(&["internal", "relay", "users", &user, "sessions", jti]);
        Ok(self.get::<SessionState>(url).await?.active)
    }

    async fn sessions_active(&self, sessions: &[SessionRef]) -> Result<Vec<bool>, AckError> {
        let url = self.url(&["internal", "relay", "sessions"]);
        let mut active = Vec::with_capacity(sessions.len());
        for chunk in sessions.chunks(MAX_SESSION_CHECKS) {
            let check = SessionCheck {
                sessions: chunk.to_vec(),
            };
            let answer: SessionCheckAnswer = self.post(url.clone(), &check).await?;
            if answer.active.len() != chunk.len() {
                return Err(AckError::new(
                    ErrorCode::InternalError,
                    "unexpected answer from the API",
                ));
            }
            active.extend(answer.active);
        }
        Ok(active)
    }

    async fn memberships(&self, user: UserId) -> Result<Vec<ConversationMembers>, AckError> {
        let user = user.to_string();
        self.get(self.url(&["internal", "relay", "users", &user, "memberships"]))
            .await
    }

    async fn members(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<Vec<UserId>>, AckError> {
        let (user, conversation) = (user.to_string(), conversation.to_string());
        let url = self.url(&[
            "internal",
            "relay",
            "users",
            &user,
            "conversations",
            &conversation,
            "members",
        ]);
        match self.get::<ConversationMembers>(url).await {
            Ok(found) => Ok(Some(found.members)),
            Err(e) if e.code == ErrorCode::ConversationNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store(
        &self,
        batch: &[StoreItem],
        announce: Announce,
    ) -> Result<Vec<StoreOutcome>, AckError> {
        let expected = batch.len();
        // `saved`: a text message comes back as its id, seq and time, and is rebuilt here from
        // what was sent (an API that does not know `answers` sends every message whole).
        let answer: StoreBatchAnswer = self
            .call(
                Method::POST,
                self.store_uri.clone(),
                Some(&StoreBatchRef {
                    items: batch,
                    announce,
                    answers: Answers::Saved,
                }),
            )
            .await?;
        let got = answer.outcomes.len();
        let unexpected = |why: &str| {
            tracing::error!(expected, got, "the API answered a batch with {why}");
            AckError::new(ErrorCode::InternalError, "unexpected answer from the API")
        };
        if got != expected {
            return Err(unexpected("the wrong number of outcomes"));
        }
        answer
            .outcomes
            .into_iter()
            .zip(batch)
            .map(|(answer, item)| answer.into_outcome(item))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unexpected("`saved` for a message its item does not say"))
    }

    async fn mark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Receipt,
        up_to_seq: i64,
    ) -> Result<MemberState, AckError> {
        let (user, conversation) = (user.to_string(), conversation.to_string());
        let which = match which {
            Receipt::Delivered => "delivered",
            Receipt::Read => "read",
        };
        let url = self.url(&[
            "internal",
            "relay",
            "users",
            &user,
            "conversations",
            &conversation,
            which,
        ]);
        self.post(url, &WatermarkRequest { up_to_seq }).await
    }

    async fn sync(&self, user: UserId, since: Option<String>) -> Result<SyncResponse, AckError> {
        let user = user.to_string();
        let mut url = self.url(&["internal", "relay", "users", &user, "sync"]);
        if let Some(since) = since.filter(|s| !s.is_empty()) {
            url.query_pairs_mut().append_pair("since", &since);
        }
        self.get(url).await
    }

    fn reachable(&self) -> Option<bool> {
        match self.reached.load(Ordering::Relaxed) {
            ANSWERED => Some(true),
            UNREACHABLE => Some(false),
            _ => None,
        }
    }
}

/// Whether an answer says the route does not exist: a 404 that is not one of the API's own
/// refusals of a known route (`conversation_not_found`, …), but `not_found` or not the API's
/// error shape at all.
fn no_such_route(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::NOT_FOUND
        && serde_json::from_slice::<ErrorEnvelope>(body)
            .map_or(true, |envelope| envelope.error.code == ErrorCode::NotFound)
}

/// Map an HTTP answer to its body, or to an ack error: `service_unavailable` for a 5xx (may
/// pass by retrying), the API's own code for another refusal.
fn answer<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, AckError> {
    if status.is_success() {
        // Checked as UTF-8 once, whole: read from bytes, serde_json checks each string on its
        // own (~1 500 instructions for a stored message's answer, most of reading it).
        let parsed = std::str::from_utf8(body)
            .map_err(|error| error.to_string())
            .and_then(|text| serde_json::from_str(text).map_err(|error| error.to_string()));
        return parsed.map_err(|error| {
            tracing::error!(%error, "unexpected answer from the API");
            AckError::new(ErrorCode::InternalError, "unexpected answer from the API")
        });
    }
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    match envelope {
        Some(envelope) if status.is_server_error() => Err(unavailable(format!(
            "the API answered {status}: {}",
            envelope.error.message
        ))),
        None if status.is_server_error() => Err(unavailable(format!("the API answered {status}"))),
        // The API's server closed the connection before it read a request on it (a pooled
        // connection it had waited on too long): nothing was done, and a retry is safe.
        None if status == StatusCode::REQUEST_TIMEOUT => Err(unavailable(format!(
            "the API answered {status} before reading the request"
        ))),
        Some(envelope) => Err(AckError::new(envelope.error.code, envelope.error.message)),
        None => Err(AckError::new(
            ErrorCode::InternalError,
            format!("the API answered {status}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    //! The client's side of the contract against canned HTTP answers (one connection each);
    //! the routes themselves are covered against the real API in `tests/relay/port.rs`.

    use super::*;
    use crate::chat::auth::test_keys as keys;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// An API on port 0 that reads one request and answers `answer` (or nothing, if `None`,
    /// holding the connection open). Gives the request's head and body as it read them.
    async fn api(answer: Option<String>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !is_whole(&request) {
                let n = stream.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
            }
            match answer {
                Some(answer) => stream.write_all(answer.as_bytes()).await.unwrap(),
                // Holds the connection until the client gives up.
                None => while stream.read(&mut [0u8; 64]).await.is_ok_and(|n| n > 0) {},
            }
            String::from_utf8(request).unwrap()
        });
        (url, served)
    }

    /// Whether `request` holds a whole head and as much body as its `Content-Length` says.
    fn is_whole(request: &[u8]) -> bool {
        let text = String::from_utf8_lossy(request);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .map_or(0, |v| v.parse::<usize>().unwrap());
        body.len() >= length
    }

    fn port(url: &str, timeout: Duration) -> HttpPort {
        HttpPort::new(url, timeout, keys()).unwrap()
    }

    fn json_answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// What a session check makes of `answer` (`None`: no answer) within `timeout`.
    async fn refusal(answer: Option<String>, timeout: Duration) -> AckError {
        let (url, _) = api(answer).await;
        port(&url, timeout)
            .session_active(UserId(1), "jti")
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_call_carries_the_service_token_and_its_json_body() {
        let (url, served) = api(Some(json_answer(
            "200 OK",
            r#"{"conversationId":"9","userId":"7","deliveredUpToSeq":3,"readUpToSeq":3,"at":"2026-12-04T12:00:00Z"}"#,
        )))
        .await;

        let state = port(&url, Duration::from_secs(30))
            .mark(UserId(7), ConversationId(9), Receipt::Read, 3)
            .await
            .unwrap();

        let request = served.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("POST /internal/relay/users/7/conversations/9/read HTTP/1.1"),
            "{head}"
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nauthorization: bearer ey"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        assert_eq!(body, r#"{"upToSeq":3}"#);
        assert_eq!(state.read_up_to_seq, 3);
    }

    #[tokio::test]
    async fn refusals_keep_the_apis_code_and_a_5xx_or_no_answer_is_retryable() {
        let patience = Duration::from_secs(30);

        let (url, _) = api(Some(json_answer(
            "404 Not Found",
            r#"{"error":{"code":"conversation_not_found","message":"no such conversation"}}"#,
        )))
        .await;
        let members = port(&url, patience)
            .members(UserId(1), ConversationId(2))
            .await;
        assert_eq!(members, Ok(None));

        let overloaded = json_answer(
            "503 Service Unavailable",
            r#"{"error":{"code":"service_unavailable","message":"database down"}}"#,
        );
        let error = refusal(Some(overloaded), patience).await;
        assert_eq!(error.code, ErrorCode::ServiceUnavailable);
        assert!(
            error.retryable && error.message.contains("database down"),
            "{error:?}"
        );

        // A redirect is not followed (the token stays with the API): an unexpected answer.
        let moved = "HTTP/1.1 302 Found\r\nlocation: http://elsewhere.example/\r\ncontent-length: 0\r\n\r\n";
        let error = refusal(Some(moved.to_owned()), patience).await;
        assert_eq!(error.code, ErrorCode::InternalError, "{error:?}");
        assert!(error.message.contains("302"), "{error:?}");

        let error = refusal(Some(json_answer("200 OK", "{not json")), patience).await;
        assert_eq!(error.code, ErrorCode::InternalError, "{error:?}");

        // actix-web's own 408 (no body) on a connection it waited on too long: never read.
        let unasked = "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
        let error = refusal(Some(unasked.to_owned()), patience).await;
        assert_eq!(error.code, ErrorCode::ServiceUnavailable, "{error:?}");
        assert!(
            error.retryable && error.message.contains("408"),
            "{error:?}"
        );

        let cut = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"active\":";
        let error = refusal(Some(cut.to_owned()), patience).await;
        assert_eq!(error.code, ErrorCode::ServiceUnavailable, "{error:?}");

        // Accepted, never answered: given up after the timeout.
        let error = refusal(None, Duration::from_millis(200)).await;
        assert_eq!(error.code, ErrorCode::ServiceUnavailable, "{error:?}");
        assert!(error.message.contains("in time"), "{error:?}");
    }

    #[tokio::test]
    async fn an_api_nobody_listens_on_is_unreachable_and_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);

        let error = port(&url, Duration::from_secs(30))
            .sync(UserId(1), None)
            .await
            .unwrap_err();

        assert_eq!(error.code, ErrorCode::ServiceUnavailable);
        assert!(error.retryable);
        assert!(error.message.contains("unreachable"), "{error:?}");
    }

    #[test]
    fn only_a_plain_http_base_url_is_accepted() {
        assert!(HttpPort::new("https://api.example", Duration::from_secs(1), keys()).is_err());
        assert!(HttpPort::new("mailto:ops@example.com", Duration::from_secs(1), keys()).is_err());
        assert!(HttpPort::new("http://api:3000/", Duration::from_secs(1), keys()).is_ok());
    }
}
