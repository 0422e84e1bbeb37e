//! Presence: this relay's share of "who is online".
//!
//! Each authenticated socket is one member `relay-<uuid>:<socket id>` of its user's sorted set on
//! the bus ([`shared::bus::Keys::presence`]); one task refreshes every local member per period,
//! a few hundred per pipelined round trip, so a relay that dies leaves its users online at most
//! `presence.ttl_secs`.
//! Changes are announced to the user's contacts (everyone sharing a conversation, as the relay's
//! membership view knows them) only when the user's global state flips, as the bus decides
//! atomically: online at the first connection anywhere, offline once no connection is left
//! anywhere after `presence.offline_grace_ms`. The relay that closed a user's last connection
//! announces them offline; after each refresh every relay also sweeps for the users nobody
//! will (their relay was killed, or stopped during their grace), each claimed by one relay.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::events::BusEvent;
use shared::ids::{IdMap, UserId};
use shared::wire::{OnlineUsers, Presence as PresenceEvent};
use tokio_util::sync::CancellationToken;

use super::ChatState;
use crate::settings::PresenceSettings;
use crate::socketio::Socket;

pub struct Presence {
    settings: PresenceSettings,
    /// The bus members (one per local connection) of each user connected here.
    local: Mutex<IdMap<UserId, HashSet<String>>>,
}

impl Presence {
    pub fn new(settings: PresenceSettings) -> Self {
        Self {
            settings,
            local: Mutex::default(),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.ttl_secs)
    }

    /// Every local (user, member), for the refresh.
    fn members(&self) -> Vec<(UserId, String)> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .iter()
            .flat_map(|(&user, members)| members.iter().map(move |m| (user, m.clone())))
            .collect()
    }
}

/// The bus member naming one socket of this relay.
fn member(state: &ChatState, socket: &Socket) -> String {
    format!("{}:{}", state.origin, socket.id())
}

/// A socket of `user` passed authentication: record it, announce the user online if this is
/// their first connection anywhere, and emit `online_users` to the socket.
pub async fn connected(state: &ChatState, socket: &Socket, user: UserId) {
    let presence = &state.presence;
    let contacts = state.view.contacts(user);
    let member = member(state, socket);
    {
        let mut local = presence.local.lock().unwrap_or_else(|e| e.into_inner());
        local.entry(user).or_default().insert(member.clone());
    }
    match state.bus.presence_open(user, &member, presence.ttl()).await {
        Ok(true) => announce(state, user, &contacts, true, None),
        Ok(false) => {}
        Err(error) => {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, user_id = %user, "recording presence failed");
        }
    }
    tell_online_contacts(state, socket, &contacts).await;
}

/// The membership view of `socket`, which connected without it, is loaded: its contacts now
/// known, they are told `user` is online (they may have been told already, by another of the
/// user's sockets: an `online` again changes nothing for a client), and the socket which of
/// them are.
pub async fn view_loaded(state: &ChatState, socket: &Socket, user: UserId) {
    if !socket.connected() {
        return; // gone meanwhile: its offline announcement (if last) is the one that stands
    }
    let contacts = state.view.contacts(user);
    announce(state, user, &contacts, true, None);
    tell_online_contacts(state, socket, &contacts).await;
}

/// `online_users` to `socket`: which of `contacts` are online.
async fn tell_online_contacts(state: &ChatState, socket: &Socket, contacts: &[UserId]) {
    let online: Vec<UserId> = match state.bus.presence(contacts).await {
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
    let _ = socket.emit(
        "online_users",
        super::to_value(&OnlineUsers { users: online }),
    );
}

/// A socket of `user` closed: remove it, and when no connection of the user is left anywhere,
/// announce them offline to `contacts` after the grace period unless they came back.
pub async fn disconnected(
    state: &Arc<ChatState>,
    socket: &Socket,
    user: UserId,
    contacts: Vec<UserId>,
) {
    let member = member(state, socket);
    {
        let mut local = state
            .presence
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(members) = local.get_mut(&user) else {
            return;
        };
        if !members.remove(&member) {
            return;
        }
        if members.is_empty() {
            local.remove(&user);
            crate::memory::shrink_sparse(&mut *local);
        }
    }
    let grace = Duration::from_millis(state.presence.settings.offline_grace_ms);
    match state.bus.presence_close(user, &member, grace).await {
        Ok(0) => {
            let weak = Arc::downgrade(state);
            let stop = state.stop.clone();
            state.tasks.spawn(async move {
                // A relay stopping does not wait out the grace (its clients are moving to
                // another relay meanwhile): it announces nothing, as one killed would not.
                tokio::select! {
                    () = tokio::time::sleep(grace) => {}
                    () = stop.cancelled() => return,
                }
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

/// A conversation changed (created, members added): before the membership view learns it, find
/// the contacts each local user in `users` gains by it, and tell that user's devices whether
/// those are online. Presence events reach a user only from contacts they already had, and
/// `online_users` only at connect: without this, someone who starts a chat with you looks
/// offline to you until they reconnect. One bus read for all of them, in a task of its own (the
/// dispatch does not wait on Redis).
pub fn introduce(state: &Arc<ChatState>, users: &[UserId], members: &[UserId]) {
    let gains: Vec<(UserId, Vec<UserId>)> = users
        .iter()
        .filter_map(|&user| {
            let known = state.view.contacts(user);
            let gained: Vec<UserId> = members
                .iter()
                .copied()
                .filter(|&m| m != user && known.binary_search_by_key(&m.0, |k| k.0).is_err())
                .collect();
            (!gained.is_empty()).then_some((user, gained))
        })
        .collect();
    if gains.is_empty() {
        return;
    }
    let weak = Arc::downgrade(state);
    state.tasks.spawn(async move {
        let Some(state) = weak.upgrade() else { return };
        let mut asked: Vec<UserId> = gains.iter().flat_map(|(_, g)| g.iter().copied()).collect();
        asked.sort_unstable_by_key(|id| id.0);
        asked.dedup();
        let states = match state.bus.presence(&asked).await {
            Ok(states) => states,
            Err(error) => {
                state.metrics.bus_errors.inc();
                tracing::warn!(%error, "reading the presence of new contacts failed");
                return;
            }
        };
        for (user, gained) in gains {
            for contact in gained {
                let Ok(at) = asked.binary_search_by_key(&contact.0, |id| id.0) else {
                    continue;
                };
                let Some(found) = states.get(at) else {
                    continue;
                };
                let event = PresenceEvent {
                    user_id: contact,
                    online: found.online,
                    last_seen: found.last_seen,
                };
                state.emit_to(&[user], "presence", &event, None);
            }
        }
    });
}

async fn settle(state: &ChatState, user: UserId, contacts: &[UserId]) {
    match state.bus.presence_settle(user, state.presence.ttl()).await {
        Ok(Some(last_seen)) => announce(state, user, contacts, false, Some(last_seen)),
        Ok(None) => {}
        Err(error) => {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, user_id = %user, "settling presence failed");
        }
    }
}

/// `presence` `{userId, online, lastSeen}` to the contacts' devices, here and elsewhere.
fn announce(
    state: &ChatState,
    user: UserId,
    contacts: &[UserId],
    online: bool,
    last_seen: Option<DateTime<Utc>>,
) {
    tracing::debug!(user_id = %user, online, "presence changed");
    let event = PresenceEvent {
        user_id: user,
        online,
        last_seen,
    };
    state.emit_to(contacts, "presence", &event, None);
    state.publish(
        contacts,
        BusEvent::Presence {
            user_id: user,
            online,
            last_seen,
        },
    );
}

/// How often the refresh task looks for a bus outage that ended.
const OUTAGE_CHECK: Duration = Duration::from_millis(250);

/// Users a sweep announces offline at most (each costs the API a read of their conversations;
/// more wait for the next sweep).
const SWEEP_LIMIT: usize = 100;

/// Announce offline the users nobody else will ([`shared::bus::Bus::presence_sweep`]), in a
/// task of its own: their contacts are read from the API, since a relay's view knows only its
/// own users'. A user is left to the relay that closed their last connection for a refresh
/// period after their grace, which it settles at the end of the grace.
fn sweep(state: &Arc<ChatState>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(state);
    state.tasks.spawn(async move {
        let Some(state) = weak.upgrade() else { return };
        let settled_for = Duration::from_secs(state.presence.settings.refresh_secs);
        let ttl = state.presence.ttl();
        let swept = match state.bus.presence_sweep(settled_for, SWEEP_LIMIT, ttl).await {
            Ok(swept) => swept,
            Err(error) => {
                state.metrics.bus_errors.inc();
                tracing::warn!(%error, "sweeping presence failed");
                return;
            }
        };
        for (user, last_seen) in swept {
            match state.port.memberships(user).await {
                Ok(conversations) => {
                    let members = conversations.into_iter().flat_map(|c| c.members);
                    let contacts = super::membership::contacts_among(user, members);
                    tracing::info!(user_id = %user, "announcing offline a user whose relay is gone");
                    announce(&state, user, &contacts, false, Some(last_seen));
                }
                // Their contacts read them offline at their next `online_users` or
                // `GET /api/users` instead.
                Err(error) => tracing::warn!(
                    user_id = %user, code = %error.code,
                    "reading the contacts of a user whose relay is gone failed"
                ),
            }
        }
    })
}

/// Keep this relay's connections recorded on the bus until the relay stops: refresh them every
/// `presence.refresh_secs`, and after a bus outage (Redis may come back empty: it keeps nothing
/// on disk) record them all again as soon as it answers, announcing those users online anew.
pub async fn refresh_forever(state: Weak<ChatState>, stop: CancellationToken) {
    let period = match state.upgrade() {
        Some(s) => Duration::from_secs(s.presence.settings.refresh_secs),
        None => return,
    };
    let mut tick = tokio::time::interval(OUTAGE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refreshed = tokio::time::Instant::now();
    let mut subscriber_errors = 0;
    let mut restore = false;
    let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        // The pub/sub connection breaks at once when Redis goes away; the publisher notices
        // too when it has something to send.
        let errors = state.subscriber.errors();
        if errors != subscriber_errors || !state.publisher.counters().bus_up() {
            subscriber_errors = errors;
            restore = true;
        }
        if restore {
            restore = !restore_all(&state).await;
            continue;
        }
        if refreshed.elapsed() < period {
            continue;
        }
        refreshed = tokio::time::Instant::now();
        let members = state.presence.members();
        if let Err(error) = state
            .bus
            .presence_refresh(&members, state.presence.ttl())
            .await
        {
            state.metrics.bus_errors.inc();
            tracing::warn!(%error, "refreshing presence failed");
            restore = true;
            continue;
        }
        if sweeping.as_ref().is_none_or(|task| task.is_finished()) {
            sweeping = Some(sweep(&state));
        }
    }
}

/// Record every local connection again (after an outage); `false` while the bus still fails.
async fn restore_all(state: &ChatState) -> bool {
    if state.bus.ping().await.is_err() {
        return false;
    }
    let members = state.presence.members();
    if !members.is_empty() {
        tracing::info!(
            connections = members.len(),
            "recording presence again after a bus outage"
        );
    }
    for (user, member) in members {
        match state
            .bus
            .presence_open(user, &member, state.presence.ttl())
            .await
        {
            Ok(true) => announce(state, user, &state.view.contacts(user), true, None),
            Ok(false) => {}
            Err(error) => {
                state.metrics.bus_errors.inc();
                tracing::warn!(%error, "recording presence again failed");
                return false;
            }
        }
    }
    true
}
