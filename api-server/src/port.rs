//! [`InProcessPort`]: the relay port served in process, for the all-in-one binary. It calls the
//! API's service functions directly: no HTTP, no JSON, no token check (the relay verified each
//! user's token at connect, and a store item's session is still checked against the store).

use crate::service;
use crate::state::AppState;
use async_trait::async_trait;
use shared::errors::AckError;
use shared::ids::{ConversationId, UserId};
use shared::port::{
    Announce, ConversationMembers, Receipt, RelayPort, SessionRef, StoreItem, StoreOutcome,
};
use shared::wire::{MemberState, SyncResponse};

/// The relay port over the API's own state.
#[derive(Clone)]
pub struct InProcessPort {
    state: AppState,
}

impl InProcessPort {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[async_trait]
impl RelayPort for InProcessPort {
    async fn session_active(&self, user: UserId, jti: &str) -> Result<bool, AckError> {
        Ok(service::sessions::session_active(&self.state, user, jti).await?)
    }

    async fn sessions_active(&self, sessions: &[SessionRef]) -> Result<Vec<bool>, AckError> {
        Ok(service::sessions::sessions_active(&self.state, sessions).await?)
    }

    async fn memberships(&self, user: UserId) -> Result<Vec<ConversationMembers>, AckError> {
        Ok(service::conversations::memberships(&self.state, user).await?)
    }

    async fn members(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<Vec<UserId>>, AckError> {
        Ok(
            service::conversations::members(&self.state, user, conversation)
                .await?
                .map(|c| c.members),
        )
    }

    async fn store(
        &self,
        batch: &[StoreItem],
        announce: Announce,
    ) -> Result<Vec<StoreOutcome>, AckError> {
        Ok(service::messages::store_batch(&self.state, batch, announce).await?)
    }

    async fn mark(
        &self,
        user: UserId,
        conversation: ConversationId,
        which: Receipt,
        up_to_seq: i64,
    ) -> Result<MemberState, AckError> {
        Ok(
            service::receipts::mark(&self.state, user, conversation, which.into(), up_to_seq)
                .await?,
        )
    }

    async fn sync(&self, user: UserId, since: Option<String>) -> Result<SyncResponse, AckError> {
        Ok(service::sync::sync(&self.state, user, since.as_deref(), None).await?)
    }
}
