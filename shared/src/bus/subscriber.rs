//! Receiving what is published to users' channels, for the users a relay serves right now.
//!
//! A [`Subscriber`] is a handle on a background task. Subscriptions are counted per user: call
//! [`Subscriber::subscribe`] for every connection of a user (it returns once the channel is live,
//! so nothing published afterwards is missed) and [`Subscriber::unsubscribe`] when that
//! connection ends; the channel is subscribed on the first and unsubscribed after the last.
//! Because the count lives in the one task that orders the commands, a device reconnecting while
//! its old connection is still closing can never leave the user unsubscribed. Messages arrive as
//! [`BusMessage`] on the receiver returned with the handle. Each bus opens its own with
//! [`Bus::subscribe`](super::Bus::subscribe); the two implementations run the same contract:
//! - Redis ([`super::redis::pubsub`]): one pub/sub connection, SUBSCRIBE/UNSUBSCRIBE per user channel; when the
//!   connection drops it reconnects with backoff (at most a second between attempts) and
//!   resubscribes every current user by itself (events published meanwhile are lost; clients
//!   recover through sync). Every Redis step is bounded (a second), and while the
//!   connection is down or being made the task keeps answering commands, so
//!   [`Subscriber::subscribe`] returns promptly whatever Redis does.
//! - in process ([`super::memory`]): a route on the `MemoryBus` for the all-in-one process; publishing waits for
//!   room in the queue rather than dropping events.

use crate::ids::{IdMap, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// How many received messages may wait for the consumer before the reader stops reading
/// (back-pressure on the Redis socket rather than unbounded memory).
pub(crate) const OUT_CAPACITY: usize = 4096;
pub(crate) enum Command {
    Subscribe(UserId, oneshot::Sender<()>),
    Unsubscribe(UserId),
}

/// Handle on a subscriber task; cheap to clone. The task ends when every handle is dropped.
#[derive(Clone)]
pub struct Subscriber {
    commands: mpsc::UnboundedSender<Command>,
    link: Arc<Link>,
}

/// The state of a subscriber's connection, shared by its handles and its task.
#[derive(Default)]
pub(crate) struct Link {
    /// Failures of the pub/sub connection so far (connect, (re)subscribe, lost connection).
    errors: AtomicU64,
    /// Odd while the subscription is live, even while it is down; one step per change.
    epoch: AtomicU64,
}

impl Link {
    /// The connection failed: count it, and mark the subscription down.
    pub(crate) fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .epoch
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                (e % 2 == 1).then_some(e + 1)
            });
    }

    /// Whether the subscription is live (every current user's channel subscribed).
    pub(crate) fn is_live(&self) -> bool {
        self.epoch.load(Ordering::SeqCst) % 2 == 1
    }

    /// Every current user's channel is subscribed: mark the subscription live.
    pub(crate) fn live(&self) {
        let _ = self
            .epoch
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                (e % 2 == 0).then_some(e + 1)
            });
    }
}

impl Subscriber {
    /// One more connection of `user`: receive their channel. Returns once the subscription is
    /// confirmed, or at once while the bus is unreachable (the user is subscribed on
    /// reconnection).
    pub async fn subscribe(&self, user: UserId) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Subscribe(user, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// How many times the pub/sub connection failed so far (for metrics).
    pub fn errors(&self) -> u64 {
        self.link.errors.load(Ordering::Relaxed)
    }

    /// `Some(epoch)` while every subscribed channel is live, `None` while the connection is down
    /// (what is published meanwhile is lost). The epoch changes each time the subscription comes
    /// back, so "the same epoch as then" means "nothing was missed since then".
    pub fn epoch(&self) -> Option<u64> {
        let epoch = self.link.epoch.load(Ordering::SeqCst);
        (epoch % 2 == 1).then_some(epoch)
    }

    /// One connection of `user` fewer: their channel is dropped after the last one.
    pub fn unsubscribe(&self, user: UserId) {
        let _ = self.commands.send(Command::Unsubscribe(user));
    }
}

impl Subscriber {
    /// A handle and the command receiver of the task behind it (for the bus implementations).
    pub(crate) fn channel(link: Arc<Link>) -> (Self, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        (Self { commands, link }, rx)
    }
}

/// The user a channel `{prefix}:u:{id}` belongs to.
pub(crate) fn user_of(channel: &str) -> Option<UserId> {
    channel.rsplit_once(":u:")?.1.parse().ok()
}

/// Connections per subscribed user. `add` and `remove` say whether the channel itself must be
/// subscribed (first connection) or unsubscribed (last one).
#[derive(Default)]
pub(crate) struct Counts(IdMap<UserId, usize>);

impl Counts {
    pub(crate) fn add(&mut self, user: UserId) -> bool {
        let n = self.0.entry(user).or_default();
        *n += 1;
        *n == 1
    }

    pub(crate) fn remove(&mut self, user: UserId) -> bool {
        match self.0.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(&user);
                true
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, user: &UserId) -> bool {
        self.0.contains_key(user)
    }

    pub(crate) fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.0.keys().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::redis::RedisBus;
    use crate::bus::{Bus, BusMessage, Keys};
    use std::time::Duration;

    async fn receives_only_subscribed_users(
        bus: &dyn Bus,
        sub: Subscriber,
        mut rx: mpsc::Receiver<BusMessage>,
    ) {
        sub.subscribe(UserId(1)).await;
        bus.publish(&[UserId(2), UserId(1)], "a").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.user, got.payload.as_str()), (UserId(1), "a"));
        sub.unsubscribe(UserId(1));
        sub.subscribe(UserId(2)).await;
        bus.publish(&[UserId(1), UserId(2)], "b").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.user, got.payload.as_str()), (UserId(2), "b"));
    }

    /// A user's second connection subscribes, then the first one's late unsubscribe arrives:
    /// the user must still receive (the reconnect race).
    async fn a_late_unsubscribe_of_one_connection_keeps_the_others(
        bus: &dyn Bus,
        sub: Subscriber,
        mut rx: mpsc::Receiver<BusMessage>,
    ) {
        sub.subscribe(UserId(1)).await;
        sub.subscribe(UserId(1)).await;
        sub.unsubscribe(UserId(1));
        sub.subscribe(UserId(2)).await; // orders after the unsubscribe
        bus.publish(&[UserId(1)], "still here").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.user, got.payload.as_str()), (UserId(1), "still here"));
        sub.unsubscribe(UserId(1));
        sub.subscribe(UserId(2)).await;
        bus.publish(&[UserId(1), UserId(2)], "after").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.user, got.payload.as_str()), (UserId(2), "after"));
    }

    #[tokio::test]
    async fn the_memory_subscriber_counts_connections() {
        let bus = MemoryBus::new();
        let (sub, rx) = bus.subscribe();
        a_late_unsubscribe_of_one_connection_keeps_the_others(&bus, sub, rx).await;
    }

    #[tokio::test]
    async fn the_redis_subscriber_counts_connections() {
        let keys = Keys::new(format!("parley-sub-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys.clone()).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        let (sub, rx) = bus.subscribe();
        a_late_unsubscribe_of_one_connection_keeps_the_others(&bus, sub, rx).await;
    }

    #[tokio::test]
    async fn the_memory_subscriber_delivers_only_subscribed_users() {
        let bus = MemoryBus::new();
        let (sub, rx) = bus.subscribe();
        receives_only_subscribed_users(&bus, sub, rx).await;
    }

    #[tokio::test]
    async fn the_redis_subscriber_delivers_only_subscribed_users() {
        let keys = Keys::new(format!("parley-sub-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys.clone()).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        let (sub, rx) = bus.subscribe();
        receives_only_subscribed_users(&bus, sub, rx).await;
    }

    #[test]
    fn channels_name_their_user() {
        assert_eq!(user_of("parley:u:42"), Some(UserId(42)));
        assert_eq!(user_of("a:u:b:u:7"), Some(UserId(7)));
        assert_eq!(user_of("parley:presence:1"), None);
    }
}
