//! Short-lived memories of the relay: which messages it saw before they were stored (relayed, or
//! admitted and stored first), and which sessions the API said were active a moment ago.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::ids::{IdMap, UserId};

/// How long a relayed message is remembered at least, load permitting: far longer than storing
/// it takes.
const RELAYED_TTL: Duration = Duration::from_secs(120);
/// Entries per generation; past it the older generation is forgotten (bounded memory, and the
/// newest entries are always kept).
const GENERATION_MAX: usize = 50_000;
/// Room a new relay's first generation makes at once (~80 KiB), so that the first minute's
/// sends do not regrow it a step at a time; each later one starts with room for as many as the
/// generation before it held.
const GENERATION_START: usize = 1024;

/// Messages (sender, clientMsgId) this relay saw before they were stored ([`Seen`]). When
/// `message_stored` arrives for one it relayed, devices already show it and only need
/// `message_saved`; for any other (sent through REST, relayed while none of the members was
/// connected here, or stored first) they also need `receive_message`. One it did not see at all
/// is charged to the sender's send budget here.
///
/// Two generations: inserts go to the current one, which becomes the previous one when it is
/// `RELAYED_TTL / 2` old or full; an entry lives between one and two generations.
pub struct RecentlyRelayed {
    inner: Mutex<Generations>,
}

/// What the relay saw of a message before it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Its optimistic copy was delivered (sent here, or `message_relayed` for a local user).
    Relayed,
    /// Sent here but stored before anyone was shown it (by `recipientId`, or to a conversation
    /// the view could not confirm); already charged to the sender's budget.
    StoredFirst,
    /// Shown stored (`message_stored` came first): a relayed copy arriving late is not shown.
    Stored,
}

struct Generations {
    current: HashMap<(UserId, String), Seen>,
    previous: HashMap<(UserId, String), Seen>,
    started: Instant,
}

impl Default for RecentlyRelayed {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Generations {
                current: HashMap::with_capacity(GENERATION_START),
                previous: HashMap::new(),
                started: Instant::now(),
            }),
        }
    }
}

impl Generations {
    fn insert(&mut self, key: (UserId, String), seen: Seen) {
        if self.current.len() >= GENERATION_MAX || self.started.elapsed() >= RELAYED_TTL / 2 {
            self.rotate();
        }
        self.current.insert(key, seen);
    }

    /// The current generation becomes the previous one; the forgotten one's map, cleared, is
    /// the new current one, with room for as many entries as the generation before it held: a
    /// map that grew entry by entry rehashed every entry (SipHash, the keys being client text)
    /// each time it doubled. Steady, this allocates nothing.
    fn rotate(&mut self) {
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        self.current.reserve(self.previous.len());
        self.started = Instant::now();
    }

    fn get(&self, key: &(UserId, String)) -> Option<Seen> {
        self.current
            .get(key)
            .or_else(|| self.previous.get(key))
            .copied()
    }
}

impl RecentlyRelayed {
    /// Its optimistic copy was delivered.
    pub fn insert(&self, sender: UserId, client_msg_id: &str) {
        self.record(sender, client_msg_id, Seen::Relayed);
    }

    /// Sent here, stored before anyone was shown it.
    pub fn insert_stored_first(&self, sender: UserId, client_msg_id: &str) {
        self.record(sender, client_msg_id, Seen::StoredFirst);
    }

    fn record(&self, sender: UserId, client_msg_id: &str, seen: Seen) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.insert((sender, client_msg_id.to_owned()), seen);
    }

    /// A relayed copy arrived from the bus: remember it and say whether to show it (`false`
    /// when the stored message was shown already: it came late).
    pub fn insert_from_bus(&self, sender: UserId, client_msg_id: &str) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (sender, client_msg_id.to_owned());
        if g.get(&key) == Some(Seen::Stored) {
            return false;
        }
        g.insert(key, Seen::Relayed);
        true
    }

    /// `message_stored` arrived: what was seen of the message before; when nothing was, it is
    /// remembered as shown stored (a relayed copy arriving later is not shown again).
    pub fn stored(&self, sender: UserId, client_msg_id: &str) -> Option<Seen> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (sender, client_msg_id.to_owned());
        let seen = g.get(&key);
        if seen.is_none() {
            g.insert(key, Seen::Stored);
        }
        seen
    }

    /// What was seen of the message, if anything (one look-up).
    pub fn seen(&self, sender: UserId, client_msg_id: &str) -> Option<Seen> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&(sender, client_msg_id.to_owned()))
    }

    /// Whether its optimistic copy was delivered.
    pub fn contains(&self, sender: UserId, client_msg_id: &str) -> bool {
        self.seen(sender, client_msg_id) == Some(Seen::Relayed)
    }
}

/// Sessions the API confirmed active, remembered for a short while so that a burst of
/// reconnections of a user still connected here (a device's network blip, tabs sharing a token)
/// does not ask the API once per socket. Only positive answers are kept; a logout event or a
/// failed revalidation forgets the session at once, and the relay's periodic revalidation does
/// not read this cache.
///
/// The cache is only as good as the logout events that correct it, and a relay hears a user's
/// events only while one of the user's sockets is connected to it (it is subscribed to their
/// channel). So a user's entries go with their last socket here ([`SessionCache::forget_user`]),
/// and each entry carries the bus subscription's epoch
/// ([`Subscriber::epoch`](shared::bus::subscriber::Subscriber::epoch)) of its confirmation:
/// while the bus is down nothing is cached or trusted, and an entry from before an outage (whose
/// logout event may have been lost) is not trusted after it.
pub struct SessionCache {
    ttl: Duration,
    /// Per user, their confirmed sessions (a user has a few).
    users: Mutex<IdMap<UserId, Vec<Entry>>>,
    /// The logouts heard in the last [`LOGOUT_MEMORY`], oldest first: a socket whose connect
    /// was under way when its logout was heard (its session checked, not yet in the registry
    /// the logout closes sockets from) finds it here once it is.
    logouts: Mutex<VecDeque<(UserId, String, Instant)>>,
}

/// How long a logout heard is remembered for the connects under way: longer than a connect
/// takes (its CONNECT must come within 10 s, then one membership look-up with the API).
const LOGOUT_MEMORY: Duration = Duration::from_secs(60);
/// Most logouts remembered (the oldest go first).
const LOGOUTS_MAX: usize = 10_000;

/// A session (its token id), when the API confirmed it, and the bus epoch then.
struct Entry {
    jti: String,
    at: Instant,
    epoch: u64,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            users: Mutex::default(),
            logouts: Mutex::default(),
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, IdMap<UserId, Vec<Entry>>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `jti` was confirmed as an active session of `user` within the TTL, in the bus
    /// epoch `bus` (`None`: the bus is down, nothing is trusted).
    pub fn confirmed(&self, user: UserId, jti: &str, bus: Option<u64>) -> bool {
        let Some(epoch) = bus else {
            return false;
        };
        self.users().get(&user).is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e.jti == jti && e.epoch == epoch && e.at.elapsed() < self.ttl)
        })
    }

    /// Remember that the API confirmed `jti` as active for `user` (not while the bus is down).
    pub fn confirm(&self, user: UserId, jti: &str, bus: Option<u64>) {
        let Some(epoch) = bus else {
            return;
        };
        let ttl = self.ttl;
        let mut users = self.users();
        if users.len() >= GENERATION_MAX {
            users.retain(|_, entries| {
                entries.retain(|e| e.at.elapsed() < ttl);
                !entries.is_empty()
            });
        }
        if users.len() >= GENERATION_MAX && !users.contains_key(&user) {
            return;
        }
        let entries = users.entry(user).or_default();
        entries.retain(|e| e.jti != jti && e.at.elapsed() < ttl);
        let at = Instant::now();
        entries.push(Entry {
            jti: jti.to_owned(),
            at,
            epoch,
        });
    }

    /// A session of `user` is over (logged out, or found revoked).
    pub fn forget(&self, user: UserId, jti: &str) {
        let mut users = self.users();
        if let Some(entries) = users.get_mut(&user) {
            entries.retain(|e| e.jti != jti);
            if entries.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// A logout of `user`'s session `jti` was heard: forgotten, and remembered for the connects
    /// under way ([`SessionCache::logged_out_lately`]).
    pub fn logged_out(&self, user: UserId, jti: &str) {
        self.forget(user, jti);
        let mut logouts = self.logouts.lock().unwrap_or_else(|e| e.into_inner());
        while logouts.len() >= LOGOUTS_MAX
            || logouts
                .front()
                .is_some_and(|(_, _, at)| at.elapsed() >= LOGOUT_MEMORY)
        {
            logouts.pop_front();
        }
        logouts.push_back((user, jti.to_owned(), Instant::now()));
    }

    /// Whether a logout of `user`'s session `jti` was heard in the last [`LOGOUT_MEMORY`].
    pub fn logged_out_lately(&self, user: UserId, jti: &str) -> bool {
        let logouts = self.logouts.lock().unwrap_or_else(|e| e.into_inner());
        logouts
            .iter()
            .any(|(u, j, at)| *u == user && j == jti && at.elapsed() < LOGOUT_MEMORY)
    }

    /// The last socket of `user` here left: the relay stops hearing their logout events, so
    /// nothing it confirmed for them may be trusted any more.
    pub fn forget_user(&self, user: UserId) {
        self.users().remove(&user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_messages_are_remembered_by_sender_and_client_msg_id() {
        let relayed = RecentlyRelayed::default();
        relayed.insert(UserId(1), "m-1");
        assert!(relayed.contains(UserId(1), "m-1"));
        assert!(!relayed.contains(UserId(2), "m-1"));
    }

    #[test]
    fn a_new_generation_keeps_the_last_one_readable_and_starts_with_room_for_as_many() {
        let relayed = RecentlyRelayed::default();
        let many = GENERATION_START * 3;
        for n in 0..many {
            relayed.insert(UserId(1), &format!("m-{n}"));
        }
        let mut g = relayed.inner.lock().unwrap();
        g.rotate();
        assert!(g.current.is_empty());
        assert!(g.current.capacity() >= many, "{}", g.current.capacity());
        assert_eq!(g.get(&(UserId(1), "m-0".into())), Some(Seen::Relayed));
        // The next rotation forgets it, and the new generation takes the forgotten one's room.
        g.insert((UserId(2), "new".into()), Seen::Relayed);
        g.rotate();
        assert_eq!(g.get(&(UserId(1), "m-0".into())), None);
        assert_eq!(g.get(&(UserId(2), "new".into())), Some(Seen::Relayed));
        assert!(g.current.capacity() >= many, "{}", g.current.capacity());
    }

    #[test]
    fn a_relayed_copy_arriving_after_its_stored_message_is_not_shown() {
        let relayed = RecentlyRelayed::default();
        // Stored first, unseen: shown stored; the late copy is not shown.
        assert_eq!(relayed.stored(UserId(1), "late"), None);
        assert!(!relayed.insert_from_bus(UserId(1), "late"));
        // Relayed first: shown; the stored message then finds it relayed.
        assert!(relayed.insert_from_bus(UserId(1), "early"));
        assert_eq!(relayed.stored(UserId(1), "early"), Some(Seen::Relayed));
    }

    #[test]
    fn a_confirmed_session_is_remembered_for_its_user_until_forgotten_its_user_gone_or_expired() {
        let cache = SessionCache::new(Duration::from_secs(60));
        cache.confirm(UserId(1), "j", Some(1));
        assert!(cache.confirmed(UserId(1), "j", Some(1)));
        assert!(!cache.confirmed(UserId(2), "j", Some(1)));
        cache.confirm(UserId(1), "k", Some(1));
        cache.forget(UserId(1), "j");
        assert!(!cache.confirmed(UserId(1), "j", Some(1)));
        assert!(cache.confirmed(UserId(1), "k", Some(1)));
        cache.forget_user(UserId(1));
        assert!(
            !cache.confirmed(UserId(1), "k", Some(1)),
            "its logout events are no longer heard"
        );
        let expired = SessionCache::new(Duration::ZERO);
        expired.confirm(UserId(1), "j", Some(1));
        assert!(!expired.confirmed(UserId(1), "j", Some(1)));
    }

    #[test]
    fn nothing_is_trusted_while_the_bus_is_down_or_from_before_it_went_down() {
        let cache = SessionCache::new(Duration::from_secs(60));
        cache.confirm(UserId(1), "j", Some(1));
        assert!(!cache.confirmed(UserId(1), "j", None), "the bus is down");
        assert!(
            !cache.confirmed(UserId(1), "j", Some(3)),
            "a logout may have been lost"
        );
        cache.confirm(UserId(1), "k", None);
        assert!(
            !cache.confirmed(UserId(1), "k", Some(3)),
            "confirmed while down"
        );
    }

    #[test]
    fn past_two_generations_the_oldest_entries_are_forgotten_and_the_newest_kept() {
        let relayed = RecentlyRelayed::default();
        for i in 0..=2 * GENERATION_MAX {
            relayed.insert(UserId(1), &i.to_string());
        }
        assert!(!relayed.contains(UserId(1), "0"));
        assert!(relayed.contains(UserId(1), &GENERATION_MAX.to_string()));
        assert!(relayed.contains(UserId(1), &(2 * GENERATION_MAX).to_string()));
    }
}
