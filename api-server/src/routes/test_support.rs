//! An `AppState` for unit tests of the HTTP layer: a store that answers only what these tests
//! need, the in-process bus, real keys, metrics and throttle.

use crate::auth::throttle::LoginThrottle;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::settings::Limits;
use crate::state::AppState;
use crate::store::{
    AttachmentRow, ConversationList, CreateOutcome, ListQuery, NewMessage, NewUser, PageQuery,
    SendOutcome, SessionMessage, Store, StoreError, StoreResult, UploadQuota, Watermark,
    WatermarkOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use shared::auth::{JwtKeys, JwtSettings};
use shared::bus::memory::MemoryBus;
use shared::ids::{ConversationId, UserId};
use shared::port::ConversationMembers;
use shared::wire::{Conversation, MessagePage, SyncResponse, User};
use std::sync::Arc;
use std::time::Duration;

/// Sessions are active when `sessions_active`; `ping` succeeds when `database_up`; message pages
/// are empty; everything else is not reachable from the tests and fails.
pub struct TestStore {
    pub sessions_active: bool,
    pub database_up: bool,
}

fn unused<T>() -> StoreResult<T> {
    Err(StoreError::Unexpected(anyhow::anyhow!(
        "not used by these tests"
    )))
}

#[async_trait]
impl Store for TestStore {
    async fn create_user(&self, _: NewUser) -> StoreResult<User> {
        unused()
    }
    async fn credentials(&self, _: &str) -> StoreResult<Option<(User, String)>> {
        Ok(None)
    }
    async fn user(&self, _: UserId) -> StoreResult<Option<User>> {
        Ok(None)
    }
    async fn search_users(&self, _: &str, _: i64) -> StoreResult<Vec<User>> {
        Ok(Vec::new())
    }
    async fn contacts(&self, _: UserId) -> StoreResult<Vec<UserId>> {
        Ok(Vec::new())
    }
    async fn create_session(&self, _: &str, _: UserId, _: DateTime<Utc>) -> StoreResult<()> {
        Ok(())
    }
    async fn revoke_session(&self, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn session_active(&self, _: &str) -> StoreResult<bool> {
        Ok(self.sessions_active)
    }
    async fn session_active_for(&self, _: UserId, _: &str) -> StoreResult<bool> {
        Ok(self.sessions_active)
    }
    async fn active_sessions(&self, _: &[String]) -> StoreResult<Vec<(String, UserId)>> {
        unused()
    }
    async fn memberships(&self, _: UserId) -> StoreResult<Vec<ConversationMembers>> {
        unused()
    }
    async fn create_conversation(
        &self,
        _: UserId,
        _: &[UserId],
        _: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        unused()
    }
    async fn list_conversations(&self, _: UserId, _: ListQuery) -> StoreResult<ConversationList> {
        Ok(ConversationList {
            conversations: Vec::new(),
            next: None,
        })
    }
    async fn conversation(
        &self,
        _: UserId,
        _: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        Ok(None)
    }
    async fn send_message(&self, _: NewMessage) -> StoreResult<SendOutcome> {
        unused()
    }
    async fn send_batch(
        &self,
        _: Vec<SessionMessage>,
    ) -> StoreResult<Vec<StoreResult<SendOutcome>>> {
        unused()
    }
    async fn messages(
        &self,
        _: UserId,
        _: ConversationId,
        _: PageQuery,
    ) -> StoreResult<MessagePage> {
        Ok(MessagePage {
            messages: Vec::new(),
            has_more: false,
        })
    }
    async fn move_watermark(
        &self,
        _: UserId,
        _: ConversationId,
        _: Watermark,
        _: i64,
    ) -> StoreResult<WatermarkOutcome> {
        Err(StoreError::ConversationNotFound)
    }
    async fn sync(&self, _: UserId, _: Option<&str>, _: i64) -> StoreResult<SyncResponse> {
        unused()
    }
    async fn sync_position(&self) -> StoreResult<String> {
        unused()
    }
    async fn create_attachment(&self, _: AttachmentRow, _: UploadQuota) -> StoreResult<()> {
        unused()
    }
    async fn attachment_for(&self, _: UserId, _: &str) -> StoreResult<Option<AttachmentRow>> {
        Ok(None)
    }
    async fn attachments(&self, _: &[String]) -> StoreResult<Vec<AttachmentRow>> {
        Ok(Vec::new())
    }
    async fn attachment_bytes_of(&self, _: UserId, _: DateTime<Utc>) -> StoreResult<i64> {
        Ok(0)
    }
    async fn prune_sessions(&self, _: DateTime<Utc>, _: i64) -> StoreResult<usize> {
        Ok(0)
    }
    async fn claim_unattached(&self, _: DateTime<Utc>, _: i64) -> StoreResult<Vec<AttachmentRow>> {
        Ok(Vec::new())
    }
    async fn ping(&self) -> StoreResult<()> {
        if self.database_up {
            Ok(())
        } else {
            Err(StoreError::Unavailable(anyhow::anyhow!(
                "down in this test"
            )))
        }
    }
    fn pool_status(&self) -> (usize, usize, usize) {
        (1, 2, 3)
    }
}

pub fn limits() -> Limits {
    Limits {
        body_bytes: 1024,
        text_chars: 100,
        page_max: 200,
        page_default: 50,
        sync_max: 500,
        search_max: 50,
        login_failures_per_window: 3,
        login_failures_per_account: 3,
        login_failures_per_ip: 3,
        login_window_secs: 300,
        registrations_per_ip: 100,
        sends_per_sec: 1000,
        sends_burst: 1000,
        conversations_per_minute: 1000,
        conversations_burst: 1000,
    }
}

pub fn state(store: TestStore) -> AppState {
    let keys = JwtKeys::new(&JwtSettings {
        secret: SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
        issuer: "parley".into(),
        audience: "parley-clients".into(),
        ttl_secs: 60,
        leeway_secs: 0,
    })
    .expect("a 32-byte secret is valid");
    let metrics = Metrics::new().expect("metrics register");
    let bus = Arc::new(MemoryBus::new());
    let limits = limits();
    AppState {
        store: Arc::new(store),
        publisher: Publisher::new(bus.clone(), &metrics),
        bus,
        keys,
        metrics,
        writers: Arc::new(tokio::sync::Semaphore::new(2)),
        sends: Arc::new(shared::limits::RateLimiter::new(1000, 1000)),
        conversations: Arc::new(shared::limits::RateLimiter::per_minute(1000, 1000)),
        login_throttle: Arc::new(LoginThrottle::new(
            limits.login_failures_per_window,
            Duration::from_secs(limits.login_window_secs),
        )),
        registrations: Arc::new(LoginThrottle::registrations(
            limits.registrations_per_ip,
            Duration::from_secs(limits.login_window_secs),
        )),
        trusted_proxies: Arc::default(),
        attachments: crate::attachments::Attachments::open(
            &crate::settings::AttachmentSettings::default(),
            &SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
        )
        .expect("a temporary directory can be made"),
        limits,
    }
}
