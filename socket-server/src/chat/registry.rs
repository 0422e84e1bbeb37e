//! The local registry: which sockets of this relay belong to which user (a user's "room").
//! Bus subscriptions are counted by the subscriber itself (see `ChatHandler`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use shared::ids::{IdMap, UserId};

use super::metrics::Counter;
use super::vocab::{Outgoing, SocketVocabulary, Vocabulary};
use crate::socketio::{EmitError, Socket};

pub struct Registry {
    /// user → (socket id → socket). Only sockets whose `on_connect` succeeded.
    users: Mutex<IdMap<UserId, HashMap<String, Local>>>,
    /// Counts emits refused by a full outbox.
    outbox_drops: Counter,
    /// Sockets here speaking the second document's vocabulary: while there are none, what
    /// only they would receive (`newMessage` replacing a relayed copy, its `receiverId`) is
    /// not built.
    camel: AtomicUsize,
    /// Sockets here speaking either design document's vocabulary (Camel or First): while there
    /// are none, no message is looked at for [`super::receipts`].
    documents: AtomicUsize,
}

/// A socket of this relay, with the vocabulary it receives in: the one kept in its extensions
/// (the same atomic), here so that an emit reads it without taking the socket's extensions lock.
struct Local {
    socket: Socket,
    vocabulary: SocketVocabulary,
}

impl Registry {
    pub fn new(outbox_drops: Counter) -> Self {
        Self {
            users: Mutex::default(),
            outbox_drops,
            camel: AtomicUsize::new(0),
            documents: AtomicUsize::new(0),
        }
    }

    /// A socket here was decided to speak `vocabulary` (once per socket).
    pub fn decided(&self, vocabulary: Vocabulary) {
        match vocabulary {
            Vocabulary::Camel => {
                self.camel.fetch_add(1, Ordering::Relaxed);
                self.documents.fetch_add(1, Ordering::Relaxed);
            }
            Vocabulary::First => {
                self.documents.fetch_add(1, Ordering::Relaxed);
            }
            Vocabulary::Snake => {}
        }
    }

    /// A socket that spoke `vocabulary` closed.
    fn left(&self, vocabulary: Vocabulary) {
        let less = |count: &AtomicUsize| {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        };
        match vocabulary {
            Vocabulary::Camel => {
                less(&self.camel);
                less(&self.documents);
            }
            Vocabulary::First => less(&self.documents),
            Vocabulary::Snake => {}
        }
    }

    /// Those of `users` but `except` with a socket here that speaks a design document's
    /// vocabulary (see [`super::receipts`]); none, without a look, while no socket here does.
    pub fn speaking_a_document(&self, users: &[UserId], except: UserId) -> Vec<UserId> {
        if self.documents.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let rooms = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .copied()
            .filter(|&user| user != except)
            .filter(|user| {
                rooms.get(user).is_some_and(|room| {
                    room.values()
                        .any(|local| local.vocabulary.decided() != Vocabulary::Snake)
                })
            })
            .collect()
    }

    /// Whether any socket here speaks the second document's vocabulary.
    pub fn has_camel(&self) -> bool {
        self.camel.load(Ordering::Relaxed) > 0
    }

    /// Add `socket`, which receives in `vocabulary`, to `user`'s room (counted as speaking the
    /// second document's vocabulary when its handshake said so; one decided later, by an
    /// event, is counted then: [`Self::decided`]).
    pub fn join(&self, user: UserId, socket: &Socket, vocabulary: SocketVocabulary) {
        self.decided(vocabulary.decided());
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let local = Local {
            socket: socket.clone(),
            vocabulary,
        };
        users
            .entry(user)
            .or_default()
            .insert(socket.id().to_owned(), local);
    }

    /// Remove `socket` from `user`'s room (and from the counts of the documents' sockets, if it
    /// spoke one).
    pub fn leave(&self, user: UserId, socket: &Socket) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = users.get_mut(&user) {
            if let Some(left) = room.remove(socket.id()) {
                self.left(left.vocabulary.decided());
            }
            crate::memory::shrink_sparse(room);
            if room.is_empty() {
                users.remove(&user);
                crate::memory::shrink_sparse(&mut *users);
            }
        }
    }

    /// The sockets of `user` on this relay.
    pub fn sockets_of(&self, user: UserId) -> Vec<Socket> {
        let rooms = self.users.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .get(&user)
            .map(|room| room.values().map(|local| local.socket.clone()).collect())
            .unwrap_or_default()
    }

    /// How many sockets `user` has on this relay.
    pub fn connections_of(&self, user: UserId) -> usize {
        let rooms = self.users.lock().unwrap_or_else(|e| e.into_inner());
        rooms.get(&user).map_or(0, HashMap::len)
    }

    /// `user`'s socket `id`, if it is connected here.
    pub fn socket(&self, user: UserId, id: &str) -> Option<Socket> {
        let rooms = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Some(rooms.get(&user)?.get(id)?.socket.clone())
    }

    /// The sockets of all of `users` on this relay but the socket `except`, each with the
    /// vocabulary it receives in ([`SocketVocabulary::for_message`]), gathered under one lock
    /// into one `Vec`.
    fn receivers(&self, users: &[UserId], except: Option<&str>) -> Vec<(Socket, Vocabulary)> {
        let rooms = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut receivers = Vec::new();
        for room in users.iter().filter_map(|user| rooms.get(user)) {
            let others = room.iter().filter(|(id, _)| Some(id.as_str()) != except);
            receivers.extend(others.map(|(_, local)| {
                let vocabulary = local.vocabulary.for_message();
                (local.socket.clone(), vocabulary)
            }));
        }
        receivers
    }

    /// Every socket connected here.
    pub fn all(&self) -> Vec<Socket> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .values()
            .flat_map(|room| room.values().map(|local| local.socket.clone()))
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
    pub fn emit_to<T: serde::Serialize>(
        &self,
        users: &[UserId],
        outgoing: &Outgoing<'_, T>,
        except: Option<&str>,
    ) -> usize {
        let receivers = self.receivers(users, except);
        let (mut snake, mut camel, mut first) = (None, None, None);
        let mut sent = 0;
        // The first document's vocabulary differs from Parley's in `receive_message` only: every
        // other event shares Parley's packet, encoded once.
        let first_differs = outgoing.event == "receive_message";
        for (socket, vocabulary) in receivers {
            let vocabulary = match vocabulary {
                Vocabulary::First if !first_differs => Vocabulary::Snake,
                other => other,
            };
            let packet = match vocabulary {
                Vocabulary::Snake => &mut snake,
                Vocabulary::Camel => &mut camel,
                Vocabulary::First => &mut first,
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
