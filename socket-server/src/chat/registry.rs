//! The local registry: which sockets of this relay belong to which user (a user's "room").
//! Bus subscriptions are counted by the subscriber itself (see `ChatHandler`).

use std::collections::HashMap;
use std::sync::Mutex;

use shared::ids::UserId;

use super::metrics::Counter;
use super::vocab::{self, Outgoing, Vocabulary};
use crate::socketio::{EmitError, Socket};

pub struct Registry {
    /// user → (socket id → socket). Only sockets whose `on_connect` succeeded.
    users: Mutex<HashMap<UserId, HashMap<String, Socket>>>,
    /// Counts emits refused by a full outbox.
    outbox_drops: Counter,
}

impl Registry {
    pub fn new(outbox_drops: Counter) -> Self {
        Self {
            users: Mutex::default(),
            outbox_drops,
        }
    }

    /// Add `socket` to `user`'s room.
    pub fn join(&self, user: UserId, socket: &Socket) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .entry(user)
            .or_default()
            .insert(socket.id().to_owned(), socket.clone());
    }

    /// Remove `socket` from `user`'s room.
    pub fn leave(&self, user: UserId, socket: &Socket) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = users.get_mut(&user) {
            room.remove(socket.id());
            crate::memory::shrink_sparse(room);
            if room.is_empty() {
                users.remove(&user);
                crate::memory::shrink_sparse(&mut *users);
            }
        }
    }

    /// The sockets of `user` on this relay.
    pub fn sockets_of(&self, user: UserId) -> Vec<Socket> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .get(&user)
            .map(|room| room.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every socket connected here.
    pub fn all(&self) -> Vec<Socket> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .values()
            .flat_map(|room| room.values().cloned())
            .collect()
    }

    /// Users and sockets connected here, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        (users.len(), users.values().map(HashMap::len).sum())
    }

    /// Emit `outgoing` to every local socket of `users` except the socket `except`, in each
    /// socket's vocabulary; encoded once per vocabulary. Returns how many sockets it was queued
    /// for.
    pub fn emit_to(
        &self,
        users: &[UserId],
        outgoing: &Outgoing<'_>,
        except: Option<&str>,
    ) -> usize {
        let sockets: Vec<Socket> = users.iter().flat_map(|&u| self.sockets_of(u)).collect();
        if sockets.is_empty() {
            return 0;
        }
        let (mut snake, mut camel) = (None, None);
        let mut sent = 0;
        for socket in sockets.iter().filter(|s| Some(s.id()) != except) {
            let vocabulary = vocab::of(socket);
            let packet = match vocabulary {
                Vocabulary::Snake => &mut snake,
                Vocabulary::Camel => &mut camel,
            }
            .get_or_insert_with(|| outgoing.packet(vocabulary));
            let Some(packet) = packet else {
                continue;
            };
            match socket.send_encoded(packet) {
                Ok(()) => sent += 1,
                Err(EmitError::Full) => self.outbox_drops.inc(),
                Err(_) => {}
            }
        }
        sent
    }
}
