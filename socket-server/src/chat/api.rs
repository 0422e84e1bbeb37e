//! The relay's client of the REST API. Every call carries the user's own bearer token, so the
//! API applies its own rules (membership, idempotency on `clientMsgId`); the relay only maps its
//! answers to ack errors.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use shared::errors::{AckError, ErrorCode, ErrorEnvelope};
use shared::ids::ConversationId;
use shared::wire::{Conversation, Message, SendMessageRequest};

/// Talks to the API at one base URL.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    /// Attempts for a store, and the first backoff between them.
    attempts: u32,
    backoff: Duration,
}

/// Whether a failure may go away by retrying the same request.
fn transient(error: &AckError) -> bool {
    matches!(
        error.code,
        ErrorCode::ServiceUnavailable | ErrorCode::InternalError | ErrorCode::StorageFailed
    )
}

impl ApiClient {
    pub fn new(
        base: &str,
        timeout: Duration,
        attempts: u32,
        backoff: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            attempts,
            backoff,
        })
    }

    /// `GET /api/conversations/{id}`: the conversation when the token's user is a member.
    pub async fn conversation(
        &self,
        token: &SecretString,
        id: ConversationId,
    ) -> Result<Conversation, AckError> {
        let request = self
            .http
            .get(format!("{}/api/conversations/{id}", self.base))
            .bearer_auth(token.expose_secret());
        answer(request.send().await).await
    }

    /// `GET {path}` (path and query), the JSON answer as is.
    pub async fn get_json(
        &self,
        token: &SecretString,
        path: &str,
    ) -> Result<serde_json::Value, AckError> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token.expose_secret());
        answer(request.send().await).await
    }

    /// `POST {path}` with a JSON body, the JSON answer as is.
    pub async fn post_json(
        &self,
        token: &SecretString,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, AckError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token.expose_secret())
            .json(body);
        answer(request.send().await).await
    }

    /// `POST /api/messages`, retried with backoff on 5xx and connection errors (safe: the API
    /// is idempotent on `clientMsgId`).
    pub async fn store(
        &self,
        token: &SecretString,
        body: &SendMessageRequest,
    ) -> Result<Message, AckError> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            let request = self
                .http
                .post(format!("{}/api/messages", self.base))
                .bearer_auth(token.expose_secret())
                .json(body);
            match answer::<Message>(request.send().await).await {
                Err(error) if transient(&error) && attempt < self.attempts => {
                    tracing::warn!(attempt, code = %error.code, "storing a message failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(error) if transient(&error) => {
                    return Err(AckError::new(ErrorCode::StorageFailed, error.message));
                }
                other => return other,
            }
        }
    }
}

/// Map an HTTP answer to the body or to the API's own error code.
async fn answer<T: DeserializeOwned>(
    response: reqwest::Result<reqwest::Response>,
) -> Result<T, AckError> {
    let response = match response {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%error, "the API is unreachable");
            return Err(AckError::new(
                ErrorCode::ServiceUnavailable,
                "the API is unreachable",
            ));
        }
    };
    let status = response.status();
    if status.is_success() {
        return response.json::<T>().await.map_err(|error| {
            tracing::error!(%error, "unexpected answer from the API");
            AckError::new(ErrorCode::InternalError, "unexpected answer from the API")
        });
    }
    match response.json::<ErrorEnvelope>().await {
        Ok(envelope) => Err(AckError::new(envelope.error.code, envelope.error.message)),
        Err(_) if status.is_server_error() => Err(AckError::new(
            ErrorCode::ServiceUnavailable,
            format!("the API answered {status}"),
        )),
        Err(_) => Err(AckError::new(
            ErrorCode::InternalError,
            format!("the API answered {status}"),
        )),
    }
}
