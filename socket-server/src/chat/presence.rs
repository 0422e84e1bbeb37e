//! Presence: this relay's share of "who is online".
//!
//! Each authenticated socket is one member `relay-<uuid>:<socket id>` of its user's sorted set on
//! the bus ([`shared::bus::Keys::presence`]); one task refreshes every local member per period in
//! one round trip, so a relay that dies leaves its users online at most `presence.ttl_secs`.
//! Changes are announced to the user's contacts (everyone sharing a conversation, learnt from
//! `GET /api/conversations` at connect and kept while the user is connected here) only when the
//! user's global state flips, as the bus decides atomically: online at the first connection
//! anywhere, offline once no connection is left anywhere after `presence.offline_grace_ms`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;
use shared::events::BusEvent;
use shared::ids::UserId;
use shared::wire::ConversationSummary;

use super::ChatState;
use crate::settings::PresenceSettings;
use crate::socketio::Socket;

/// A user connected here: their contacts and their local connections' bus members.
struct LocalUser {
    contacts: Arc<Vec<UserId>>,
    members: HashSet<String>,
}

pub struct Presence {
    settings: PresenceSettings,
    local: Mutex<HashMap<UserId, LocalUser>>,
}

impl Presence {
    pub fn new(settings: PresenceSettings) -> Self {
        Self {
            settings,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.ttl_secs)
    }

    /// The contacts of a user connected here already, if any.
    fn cached_contacts(&self, user: UserId) -> Option<Arc<Vec<UserId>>> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.get(&user).map(|u| u.contacts.clone())
    }

    /// Every local (user, member), for the refresh.
    fn members(&self) -> Vec<(UserId, String)> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .iter()
            .flat_map(|(&user, u)| u.members.iter().map(move |m| (user, m.clone())))
            .collect()
    }

    /// Add users who now share a conversation with `user` (a conversation changed).
    pub fn add_contacts(&self, user: UserId, members: &[UserId]) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = local.get_mut(&user) {
            let mut contacts: Vec<UserId> = entry.contacts.as_ref().clone();
            for &m in members {
                if m != user && !contacts.contains(&m) {
                    contacts.push(m);
                }
            }
            entry.contacts = Arc::new(contacts);
        }
    }
}

/// The bus member naming one socket of this relay.
fn member(state: &ChatState, socket: &Socket) -> String {
    format!("{}:{}", state.origin, socket.id())
}

/// Everyone sharing a conversation with the token's user, as the API lists them.
async fn fetch_contacts(state: &ChatState, user: UserId, token: &SecretString) -> Vec<UserId> {
    match state.api.get_json(token, "/api/conversations").await {
        Ok(answer) => {
            let summaries: Vec<ConversationSummary> =
                serde_json::from_value(answer).unwrap_or_default();
            let mut contacts: Vec<UserId> = summaries
                .iter()
                .flat_map(|s| s.conversation.members.iter().map(|m| m.user.id))
                .filter(|&id| id != user)
                .collect();
            contacts.sort_unstable_by_key(|id| id.0);
            contacts.dedup();
            contacts
        }
        Err(error) => {
            tracing::warn!(user_id = %user, code = %error.code, "listing contacts failed; presence goes to nobody");
            Vec::new()
        }
    }
}

/// A socket of `user` passed authentication: record it, announce the user online if this is
/// their first connection anywhere, and emit `online_users` to the socket.
pub async fn connected(state: &ChatState, socket: &Socket, user: UserId, token: &SecretString) {
    let presence = &state.presence;
    let contacts = match presence.cached_contacts(user) {
        Some(contacts) => contacts,
        None => Arc::new(fetch_contacts(state, user, token).await),
    };
    let member = member(state, socket);
    {
        let mut local = presence.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .entry(user)
            .or_insert_with(|| LocalUser {
                contacts: contacts.clone(),
                members: HashSet::new(),
            })
            .members
            .insert(member.clone());
    }
    match state.bus.presence_open(user, &member, presence.ttl()).await {
        Ok(true) => announce(state, user, &contacts, true, None).await,
        Ok(false) => {}
        Err(error) => {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, user_id = %user, "recording presence failed");
        }
    }
    let online: Vec<UserId> = match state.bus.presence(&contacts).await {
        Ok(states) => contacts
            .iter()
            .zip(states)
            .filter(|(_, s)| s.online)
            .map(|(&id, _)| id)
            .collect(),
        Err(error) => {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, "reading presence failed");
            Vec::new()
        }
    };
    let _ = socket.emit("online_users", json!({ "users": online }));
}

/// A socket of `user` closed: remove it, and when no connection of the user is left anywhere,
/// announce them offline after the grace period unless they came back.
pub async fn disconnected(state: &Arc<ChatState>, socket: &Socket, user: UserId) {
    let member = member(state, socket);
    let contacts = {
        let mut local = state
            .presence
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(entry) = local.get_mut(&user) else {
            return;
        };
        if !entry.members.remove(&member) {
            return;
        }
        let contacts = entry.contacts.clone();
        if entry.members.is_empty() {
            local.remove(&user);
        }
        contacts
    };
    match state.bus.presence_close(user, &member).await {
        Ok(0) => {
            let grace = Duration::from_millis(state.presence.settings.offline_grace_ms);
            let weak = Arc::downgrade(state);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if let Some(state) = weak.upgrade() {
                    settle(&state, user, &contacts).await;
                }
            });
        }
        Ok(_) => {}
        Err(error) => {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, user_id = %user, "recording a disconnect failed");
        }
    }
}

async fn settle(state: &ChatState, user: UserId, contacts: &[UserId]) {
    match state.bus.presence_settle(user).await {
        Ok(Some(last_seen)) => announce(state, user, contacts, false, Some(last_seen)).await,
        Ok(None) => {}
        Err(error) => {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, user_id = %user, "settling presence failed");
        }
    }
}

/// `presence` `{userId, online, lastSeen}` to the contacts' devices, here and elsewhere.
async fn announce(
    state: &ChatState,
    user: UserId,
    contacts: &[UserId],
    online: bool,
    last_seen: Option<DateTime<Utc>>,
) {
    tracing::debug!(user_id = %user, online, "presence changed");
    let value = json!({ "userId": user, "online": online, "lastSeen": last_seen });
    let sent = state.registry.emit_to(contacts, "presence", &value, None);
    state.metrics.messages_out.add(sent);
    state
        .publish(
            contacts,
            BusEvent::Presence {
                user_id: user,
                online,
                last_seen,
            },
        )
        .await;
}

/// Refresh every local connection each `presence.refresh_secs` until the relay is gone.
pub async fn refresh_forever(state: Weak<ChatState>) {
    let period = match state.upgrade() {
        Some(s) => Duration::from_secs(s.presence.settings.refresh_secs),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let members = state.presence.members();
        if let Err(error) = state
            .bus
            .presence_refresh(&members, state.presence.ttl())
            .await
        {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, "refreshing presence failed");
        }
    }
}
