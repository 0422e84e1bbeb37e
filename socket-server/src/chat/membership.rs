//! The relay's membership view: who is in the conversations of the users connected here.
//!
//! Loaded once per user at connect (every conversation with its members, in one port call),
//! kept fresh by the API's `conversation_changed` events, and dropped when the user's last local
//! socket leaves. The live path reads it without awaiting anything. A conversation the view does
//! not know yet (created a moment ago, its event still on the way) is a *miss*: it is resolved
//! on its own path (one port call in a task of its own, see [`MembershipView::resolve`]) while
//! the socket keeps reading; what arrives for that conversation meanwhile is parked, in order,
//! and run once the answer is in.

use std::sync::{Arc, Mutex, MutexGuard};

use shared::ids::{ConversationId, IdMap, IdSet, UserId};
use shared::port::ConversationMembers;

/// The members of one conversation, shared by every local user in it.
pub type Members = Arc<[UserId]>;

/// The contacts of `user` among the `members` of their conversations: everyone else, sorted by
/// id, once each.
pub fn contacts_among(user: UserId, members: impl IntoIterator<Item = UserId>) -> Vec<UserId> {
    let mut contacts: Vec<UserId> = members.into_iter().filter(|&m| m != user).collect();
    contacts.sort_unstable_by_key(|id| id.0);
    contacts.dedup();
    contacts
}

/// Something waiting for the members of a conversation: called with them, or with `None` when
/// the user is not a member (or the answer could not be had).
pub type Parked = Box<dyn FnOnce(Option<Members>) + Send>;

/// What [`MembershipView::run_or_park`] did with the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parking {
    /// The view knew the members: the work ran.
    Ran,
    /// Parked behind a resolution already under way.
    Queued,
    /// Parked, and the caller must resolve the miss (then call [`MembershipView::resolved`]).
    Resolve,
}

struct Conversation {
    members: Members,
    /// The direct conversation of its two members (a kind never changes).
    direct: bool,
    /// Local users whose view holds it (dropped when none is left).
    holders: usize,
}

struct LocalUser {
    conversations: IdSet<ConversationId>,
    /// Local sockets of the user that loaded the view.
    sockets: usize,
}

#[derive(Default)]
struct Inner {
    conversations: IdMap<ConversationId, Conversation>,
    users: IdMap<UserId, LocalUser>,
    /// Work waiting for a miss to be resolved, per (user, conversation), in arrival order. An
    /// entry exists exactly while one resolution is under way.
    pending: IdMap<(UserId, ConversationId), Vec<Parked>>,
}

impl Inner {
    /// Record that `user`'s view holds `conversation` with `members` (`direct` when known to be
    /// a direct conversation; `false` when not known).
    fn hold(&mut self, user: UserId, conversation: ConversationId, members: Members, direct: bool) {
        let Some(local) = self.users.get_mut(&user) else {
            return;
        };
        let new_for_user = local.conversations.insert(conversation);
        let entry = self
            .conversations
            .entry(conversation)
            .or_insert_with(|| Conversation {
                members: members.clone(),
                direct,
                holders: 0,
            });
        entry.members = members;
        entry.direct |= direct;
        if new_for_user {
            entry.holders += 1;
        }
    }

    fn known(&self, user: UserId, conversation: ConversationId) -> Option<Members> {
        let local = self.users.get(&user)?;
        if !local.conversations.contains(&conversation) {
            return None;
        }
        self.conversations
            .get(&conversation)
            .map(|c| c.members.clone())
    }
}

#[derive(Default)]
pub struct MembershipView {
    inner: Mutex<Inner>,
}

impl MembershipView {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent: a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A socket of `user` connected and the port listed their conversations.
    pub fn load(&self, user: UserId, conversations: Vec<ConversationMembers>) {
        let mut inner = self.inner();
        inner
            .users
            .entry(user)
            .or_insert_with(|| LocalUser {
                conversations: IdSet::default(),
                sockets: 0,
            })
            .sockets += 1;
        drop(inner);
        self.fill(user, conversations);
    }

    /// `user`'s conversations, listed by the port after their socket connected without them
    /// (`load` with none): held as `load` holds them, without counting another socket. Nothing
    /// when the user has left meanwhile.
    pub fn fill(&self, user: UserId, conversations: Vec<ConversationMembers>) {
        let mut inner = self.inner();
        for c in conversations {
            if c.members.contains(&user) {
                inner.hold(user, c.conversation_id, c.members.into(), c.direct);
            }
        }
    }

    /// A socket of `user` that loaded the view left; the user's view goes with their last one.
    pub fn release(&self, user: UserId) {
        let mut inner = self.inner();
        let Some(local) = inner.users.get_mut(&user) else {
            return;
        };
        local.sockets = local.sockets.saturating_sub(1);
        if local.sockets > 0 {
            return;
        }
        let Some(local) = inner.users.remove(&user) else {
            return;
        };
        for conversation in local.conversations {
            if let Some(entry) = inner.conversations.get_mut(&conversation) {
                entry.holders = entry.holders.saturating_sub(1);
                if entry.holders == 0 {
                    inner.conversations.remove(&conversation);
                }
            }
        }
    }

    /// A conversation was created or its members changed (`conversation_changed`).
    pub fn update(&self, conversation: ConversationId, members: &[UserId], direct: bool) {
        let members: Members = members.into();
        let mut inner = self.inner();
        for &user in members.iter() {
            inner.hold(user, conversation, members.clone(), direct);
        }
        if let Some(entry) = inner.conversations.get_mut(&conversation) {
            entry.members = members;
        }
    }

    /// The members of `conversation` if `user` is one of them as far as the view knows.
    pub fn members(&self, user: UserId, conversation: ConversationId) -> Option<Members> {
        self.inner().known(user, conversation)
    }

    /// Run `work` now with the members if the view knows them, or park it behind the
    /// resolution of this (user, conversation) — see [`Parking`]. Work runs under the view's
    /// lock, so it must be quick and must not call back into the view.
    pub fn run_or_park(&self, user: UserId, conversation: ConversationId, work: Parked) -> Parking {
        let mut inner = self.inner();
        if let Some(queue) = inner.pending.get_mut(&(user, conversation)) {
            queue.push(work);
            return Parking::Queued;
        }
        if let Some(members) = inner.known(user, conversation) {
            // Under the lock: work parked for this conversation later cannot overtake it.
            work(Some(members));
            return Parking::Ran;
        }
        inner.pending.insert((user, conversation), vec![work]);
        Parking::Resolve
    }

    /// The answer of a resolution started after [`Parking::Resolve`]: remember it (when `user` is a
    /// member and still connected here) and run the parked work in order.
    pub fn resolved(&self, user: UserId, conversation: ConversationId, members: Option<Members>) {
        let mut inner = self.inner();
        let members = members.filter(|m| m.contains(&user));
        if let Some(members) = &members {
            inner.hold(user, conversation, members.clone(), false);
        }
        let parked = inner
            .pending
            .remove(&(user, conversation))
            .unwrap_or_default();
        // Still under the lock, so nothing for this conversation runs in between.
        for work in parked {
            work(members.clone());
        }
    }

    /// Users and conversations held, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.users.len(), inner.conversations.len())
    }

    /// Everyone sharing a conversation with `user`, as the view knows it.
    pub fn contacts(&self, user: UserId) -> Vec<UserId> {
        let inner = self.inner();
        let Some(local) = inner.users.get(&user) else {
            return Vec::new();
        };
        let members = local
            .conversations
            .iter()
            .filter_map(|c| inner.conversations.get(c))
            .flat_map(|c| c.members.iter().copied());
        contacts_among(user, members)
    }

    /// The direct conversation of `user` and `other` (where the API stores a message from one
    /// to the other by `recipientId`), if the view knows it.
    pub fn direct(&self, user: UserId, other: UserId) -> Option<ConversationId> {
        let inner = self.inner();
        let local = inner.users.get(&user)?;
        local.conversations.iter().copied().find(|c| {
            inner
                .conversations
                .get(c)
                .is_some_and(|c| c.direct && user != other && c.members.contains(&other))
        })
    }

    /// The oldest conversation of `user` whose only other member is `other` (their direct
    /// conversation, or a group of the two), as the view knows it.
    pub fn pair(&self, user: UserId, other: UserId) -> Option<ConversationId> {
        let inner = self.inner();
        let local = inner.users.get(&user)?;
        local
            .conversations
            .iter()
            .filter(|c| {
                inner.conversations.get(c).is_some_and(|c| {
                    c.members.len() == 2 && c.members.contains(&user) && c.members.contains(&other)
                })
            })
            .min_by_key(|c| c.0)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn conv(id: i64, members: &[i64]) -> ConversationMembers {
        ConversationMembers {
            conversation_id: ConversationId(id),
            members: members.iter().map(|&m| UserId(m)).collect(),
            direct: false,
        }
    }

    fn direct(id: i64, members: &[i64]) -> ConversationMembers {
        ConversationMembers {
            direct: true,
            ..conv(id, members)
        }
    }

    #[test]
    fn the_direct_conversation_of_a_pair_is_the_one_marked_direct() {
        let view = MembershipView::default();
        view.load(
            UserId(1),
            vec![conv(10, &[1, 2]), direct(12, &[1, 2]), conv(11, &[1, 3])],
        );
        assert_eq!(view.direct(UserId(1), UserId(2)), Some(ConversationId(12)));
        assert_eq!(view.pair(UserId(1), UserId(2)), Some(ConversationId(10)));
        assert_eq!(view.direct(UserId(1), UserId(3)), None, "a group of two");
        assert_eq!(view.direct(UserId(1), UserId(1)), None);
        assert_eq!(view.direct(UserId(2), UserId(1)), None, "not local");
        view.update(ConversationId(20), &[UserId(1), UserId(4)], true);
        assert_eq!(view.direct(UserId(1), UserId(4)), Some(ConversationId(20)));
        // A look-up's answer does not say the kind; it does not forget it either.
        view.resolved(
            UserId(1),
            ConversationId(20),
            Some(vec![UserId(1), UserId(4)].into()),
        );
        assert_eq!(view.direct(UserId(1), UserId(4)), Some(ConversationId(20)));
    }

    #[test]
    fn a_loaded_view_answers_for_members_only_and_goes_with_the_last_socket() {
        let view = MembershipView::default();
        view.load(UserId(1), vec![conv(10, &[1, 2]), conv(11, &[1, 3])]);
        view.load(UserId(1), vec![conv(10, &[1, 2])]);
        assert_eq!(
            view.members(UserId(1), ConversationId(10)).as_deref(),
            Some(&[UserId(1), UserId(2)][..])
        );
        assert!(view.members(UserId(2), ConversationId(10)).is_none());
        assert_eq!(view.contacts(UserId(1)), vec![UserId(2), UserId(3)]);
        view.release(UserId(1));
        assert!(view.members(UserId(1), ConversationId(11)).is_some());
        view.release(UserId(1));
        assert!(view.members(UserId(1), ConversationId(11)).is_none());
        assert_eq!(view.counts(), (0, 0));
    }

    #[test]
    fn a_changed_conversation_reaches_every_local_member() {
        let view = MembershipView::default();
        view.load(UserId(1), vec![]);
        view.load(UserId(2), vec![]);
        view.update(ConversationId(5), &[UserId(1), UserId(2), UserId(9)], false);
        assert!(view.members(UserId(1), ConversationId(5)).is_some());
        assert!(view.members(UserId(2), ConversationId(5)).is_some());
        assert!(
            view.members(UserId(9), ConversationId(5)).is_none(),
            "not local"
        );
    }

    #[test]
    fn work_parked_behind_a_miss_runs_in_order_once_resolved() {
        let view = MembershipView::default();
        view.load(UserId(1), vec![]);
        let order = Arc::new(Mutex::new(Vec::new()));
        let park = |n: usize| -> Parked {
            let order = order.clone();
            Box::new(move |members: Option<Members>| {
                order.lock().unwrap().push((n, members.is_some()));
            })
        };
        assert_eq!(
            view.run_or_park(UserId(1), ConversationId(7), park(1)),
            Parking::Resolve
        );
        assert_eq!(
            view.run_or_park(UserId(1), ConversationId(7), park(2)),
            Parking::Queued
        );
        assert!(order.lock().unwrap().is_empty());
        view.resolved(
            UserId(1),
            ConversationId(7),
            Some(vec![UserId(1), UserId(2)].into()),
        );
        assert_eq!(
            view.run_or_park(UserId(1), ConversationId(7), park(3)),
            Parking::Ran
        );
        assert_eq!(
            *order.lock().unwrap(),
            vec![(1, true), (2, true), (3, true)]
        );
    }

    #[test]
    fn a_miss_resolved_as_not_a_member_runs_the_work_with_none_and_remembers_nothing() {
        let view = MembershipView::default();
        view.load(UserId(1), vec![]);
        let ran = Arc::new(AtomicUsize::new(0));
        let seen = ran.clone();
        view.run_or_park(
            UserId(1),
            ConversationId(7),
            Box::new(move |m| {
                assert!(m.is_none());
                seen.fetch_add(1, Ordering::SeqCst);
            }),
        );
        view.resolved(UserId(1), ConversationId(7), Some(vec![UserId(2)].into()));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(view.members(UserId(1), ConversationId(7)).is_none());
    }
}
