//! [`HttpPort`]: the relay port over the API's internal routes (`/internal/relay/…`,
//! `docs/protocol.md`), for the split deployment. Every request carries a service token minted
//! from the shared `JWT_SECRET` (re-minted before it runs out); stores go as one batch per
//! request.
//!
//! One attempt per call: the caller owns retries. A failure that may pass by retrying (the API
//! unreachable, a timeout, any 5xx) is `service_unavailable` (retryable); an error the API
//! answered keeps its code and message.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::auth::{JwtKeys, SERVICE_TTL_SECS};
use shared::errors::{AckError, ErrorCode, ErrorEnvelope};
use shared::ids::{ConversationId, UserId};
use shared::port::{
    Announce, ConversationMembers, Receipt, RelayPort, SessionCheck, SessionCheckAnswer,
    SessionRef, SessionState, StoreBatchAnswer, StoreBatchRef, StoreItem, StoreOutcome,
    MAX_SESSION_CHECKS,
};
use shared::wire::{MemberState, SyncResponse, WatermarkRequest};

/// A service token is re-minted when less than this is left of its lifetime (clock skew and
/// a slow request both fit in it).
const REMINT_MARGIN: Duration = Duration::from_secs(60);

/// The relay port over HTTP, at one API base URL.
pub struct HttpPort {
    http: reqwest::Client,
    base: Url,
    /// `POST /internal/relay/messages`, called for every batch: built once.
    store_url: Url,
    keys: JwtKeys,
    /// The current service token and when to mint the next one.
    token: Mutex<Option<(String, Instant)>>,
}

impl HttpPort {
    /// A port to the API at `base_url`; `timeout` bounds each request from connect to the end
    /// of the answer.
    pub fn new(base_url: &str, timeout: Duration, keys: JwtKeys) -> anyhow::Result<Self> {
        let base = Url::parse(base_url.trim_end_matches('/'))?;
        anyhow::ensure!(
            !base.cannot_be_a_base(),
            "the API URL {base_url:?} cannot be a base URL"
        );
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            http,
            store_url: join(&base, &["internal", "relay", "messages"]),
            base,
            keys,
            token: Mutex::new(None),
        })
    }

    /// The base URL with `segments` appended, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        join(&self.base, segments)
    }

    /// The current service token, minted anew when it is close to expiry.
    fn service_token(&self) -> Result<String, AckError> {
        let mut slot = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, renew_at)) = slot.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let (token, _) = self.keys.issue_service().map_err(|error| {
            tracing::error!(%error, "minting a service token");
            AckError::new(ErrorCode::InternalError, "could not mint a service token")
        })?;
        let lifetime = Duration::from_secs(SERVICE_TTL_SECS).saturating_sub(REMINT_MARGIN);
        *slot = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, AckError> {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.service_token()?);
        if let Some(body) = body {
            request = request.json(body);
        }
        answer(request.send().await).await
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, AckError> {
        self.call(Method::GET, url, None::<&()>).await
    }
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
            let answer: SessionCheckAnswer =
                self.call(Method::POST, url.clone(), Some(&check)).await?;
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
        let answer: StoreBatchAnswer = self
            .call(
                Method::POST,
                self.store_url.clone(),
                Some(&StoreBatchRef {
                    items: batch,
                    announce,
                }),
            )
            .await?;
        if answer.outcomes.len() != expected {
            tracing::error!(
                expected,
                got = answer.outcomes.len(),
                "the API answered a batch with the wrong number of outcomes"
            );
            return Err(AckError::new(
                ErrorCode::InternalError,
                "unexpected answer from the API",
            ));
        }
        Ok(answer.outcomes)
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
        self.call(Method::POST, url, Some(&WatermarkRequest { up_to_seq }))
            .await
    }

    async fn sync(&self, user: UserId, since: Option<String>) -> Result<SyncResponse, AckError> {
        let user = user.to_string();
        let mut url = self.url(&["internal", "relay", "users", &user, "sync"]);
        if let Some(since) = since.filter(|s| !s.is_empty()) {
            url.query_pairs_mut().append_pair("since", &since);
        }
        self.get(url).await
    }
}

/// Map an HTTP answer to its body, or to an ack error: `service_unavailable` for what may pass
/// by retrying (unreachable, timed out, 5xx), the API's own code otherwise.
async fn answer<T: DeserializeOwned>(
    response: reqwest::Result<reqwest::Response>,
) -> Result<T, AckError> {
    let unavailable = |what: String| AckError::new(ErrorCode::ServiceUnavailable, what);
    let response = match response {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%error, "the API is unreachable");
            return Err(unavailable("the API is unreachable".into()));
        }
    };
    let status = response.status();
    if status.is_success() {
        return response.json::<T>().await.map_err(|error| {
            if error.is_decode() {
                tracing::error!(%error, "unexpected answer from the API");
                AckError::new(ErrorCode::InternalError, "unexpected answer from the API")
            } else {
                tracing::warn!(%error, "the API's answer was cut short");
                unavailable("the API's answer was cut short".into())
            }
        });
    }
    let envelope = response.json::<ErrorEnvelope>().await.ok();
    match envelope {
        Some(envelope) if status.is_server_error() => Err(unavailable(format!(
            "the API answered {status}: {}",
            envelope.error.message
        ))),
        None if status.is_server_error() => Err(unavailable(format!("the API answered {status}"))),
        Some(envelope) => Err(AckError::new(envelope.error.code, envelope.error.message)),
        None => Err(AckError::new(
            ErrorCode::InternalError,
            format!("the API answered {status}"),
        )),
    }
}
