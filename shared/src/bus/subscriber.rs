//! Receiving what is published to users' channels, for the users a relay serves right now.
//!
//! A [`Subscriber`] is a handle on a background task. Subscriptions are counted per user: call
//! [`Subscriber::subscribe`] for every connection of a user (it returns once the channel is live,
//! so nothing published afterwards is missed) and [`Subscriber::unsubscribe`] when that
//! connection ends; the channel is subscribed on the first and unsubscribed after the last.
//! Because the count lives in the one task that orders the commands, a device reconnecting while
//! its old connection is still closing can never leave the user unsubscribed. Messages arrive as
//! [`BusMessage`] on the receiver returned with the handle. Two implementations run the same contract:
//! - [`redis`]: one pub/sub connection, SUBSCRIBE/UNSUBSCRIBE per user channel; when the
//!   connection drops it reconnects with backoff (at most [`MAX_BACKOFF`] between attempts) and
//!   resubscribes every current user by itself (events published meanwhile are lost; clients
//!   recover through sync). Every Redis step is bounded by [`REDIS_TIMEOUT`], and while the
//!   connection is down or being made the task keeps answering commands, so
//!   [`Subscriber::subscribe`] returns promptly whatever Redis does.
//! - [`memory`]: a route on the [`MemoryBus`] for the all-in-one process; publishing waits for
//!   room in the queue rather than dropping events.

use super::memory::{MemoryBus, Route};
use super::{BusMessage, Keys};
use crate::ids::UserId;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many received messages may wait for the consumer before the reader stops reading
/// (back-pressure on the Redis socket rather than unbounded memory).
const OUT_CAPACITY: usize = 4096;
/// Longest wait between two reconnection attempts: the subscriber is back within about this
/// long (plus one connection attempt) of Redis returning.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait for a connection, a SUBSCRIBE or an UNSUBSCRIBE before the connection counts
/// as lost.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// First wait between reconnection attempts, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

enum Command {
    Subscribe(UserId, oneshot::Sender<()>),
    Unsubscribe(UserId),
}

/// Handle on a subscriber task; cheap to clone. The task ends when every handle is dropped.
#[derive(Clone)]
pub struct Subscriber {
    commands: mpsc::UnboundedSender<Command>,
    /// Failures of the pub/sub connection so far (connect, (re)subscribe, lost connection).
    errors: Arc<AtomicU64>,
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
        self.errors.load(Ordering::Relaxed)
    }

    /// One connection of `user` fewer: their channel is dropped after the last one.
    pub fn unsubscribe(&self, user: UserId) {
        let _ = self.commands.send(Command::Unsubscribe(user));
    }
}

/// A subscriber on Redis pub/sub.
pub fn redis(client: redis::Client, keys: Keys) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    let (commands, rx_commands) = mpsc::unbounded_channel();
    let (out, received) = mpsc::channel(OUT_CAPACITY);
    let errors = Arc::new(AtomicU64::new(0));
    tokio::spawn(run_redis(client, keys, rx_commands, out, errors.clone()));
    (Subscriber { commands, errors }, received)
}

/// A subscriber on the in-process bus.
pub fn memory(bus: &MemoryBus) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    let (commands, rx_commands) = mpsc::unbounded_channel();
    let (out, received) = mpsc::channel(OUT_CAPACITY);
    tokio::spawn(run_memory(bus.attach(out), rx_commands));
    let errors = Arc::default();
    (Subscriber { commands, errors }, received)
}

/// The user a channel `{prefix}:u:{id}` belongs to.
fn user_of(channel: &str) -> Option<UserId> {
    channel.rsplit_once(":u:")?.1.parse().ok()
}

/// Connections per subscribed user. `add` and `remove` say whether the channel itself must be
/// subscribed (first connection) or unsubscribed (last one).
#[derive(Default)]
pub(crate) struct Counts(HashMap<UserId, usize>);

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

    fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.0.keys().copied()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

async fn run_redis(
    client: redis::Client,
    keys: Keys,
    mut commands: mpsc::UnboundedReceiver<Command>,
    out: mpsc::Sender<BusMessage>,
    errors: Arc<AtomicU64>,
) {
    let failed = || errors.fetch_add(1, Ordering::Relaxed);
    let mut users = Counts::default();
    let mut backoff = MIN_BACKOFF;
    // Whether the connection has failed before (a failed attempt warns only the first time;
    // losing an established connection always does).
    let mut down = false;
    loop {
        let Some((connected, waiting)) = connect(&client, &mut commands, &mut users).await else {
            return;
        };
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(error) => {
                answer(waiting);
                if !down {
                    tracing::warn!(%error, "redis pub/sub connection failed; retrying");
                }
                down = true;
                failed();
                if !wait_while_down(&mut commands, &mut users, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, stream) = pubsub.split();
        if users.is_empty() {
            answer(waiting);
            if down {
                tracing::info!("redis pub/sub reconnected");
            }
        } else {
            let channels: Vec<String> = users.users().map(|u| keys.user_channel(u)).collect();
            let subscribed = bounded(sink.subscribe(channels)).await;
            answer(waiting);
            if let Err(error) = subscribed {
                tracing::warn!(%error, "resubscribing failed; reconnecting");
                failed();
                if !wait_while_down(&mut commands, &mut users, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            tracing::info!(users = users.len(), "redis pub/sub resubscribed");
        }
        backoff = MIN_BACKOFF;
        let out_reader = out.clone();
        let mut reader = tokio::spawn(async move {
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                let Some(user) = user_of(msg.get_channel_name()) else {
                    continue;
                };
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                if out_reader.send(BusMessage { user, payload }).await.is_err() {
                    break;
                }
            }
        });
        loop {
            tokio::select! {
                _ = &mut reader => {
                    tracing::warn!("redis pub/sub connection lost; reconnecting");
                    failed();
                    down = true;
                    break;
                }
                command = commands.recv() => {
                    let result = match command {
                        None => {
                            reader.abort();
                            return;
                        }
                        Some(Command::Subscribe(user, done)) => {
                            let r = if users.add(user) {
                                bounded(sink.subscribe(keys.user_channel(user))).await
                            } else {
                                Ok(())
                            };
                            let _ = done.send(());
                            r
                        }
                        Some(Command::Unsubscribe(user)) => {
                            if users.remove(user) {
                                bounded(sink.unsubscribe(keys.user_channel(user))).await
                            } else {
                                Ok(())
                            }
                        }
                    };
                    if let Err(error) = result {
                        tracing::warn!(%error, "redis SUBSCRIBE/UNSUBSCRIBE failed; reconnecting");
                        failed();
                        down = true;
                        reader.abort();
                        break;
                    }
                }
            }
        }
        if !wait_while_down(&mut commands, &mut users, backoff).await {
            return;
        }
    }
}

/// Open a pub/sub connection within [`REDIS_TIMEOUT`], keeping the user set current meanwhile.
/// Returns the attempt's result and the subscribers that arrived during it, to be answered once
/// their channels are subscribed on the new connection (or it failed); `None` when every handle
/// is gone.
async fn connect(
    client: &redis::Client,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    users: &mut Counts,
) -> Option<(Result<redis::aio::PubSub, String>, Vec<oneshot::Sender<()>>)> {
    let attempt = bounded(client.get_async_pubsub());
    tokio::pin!(attempt);
    let mut waiting = Vec::new();
    loop {
        tokio::select! {
            result = &mut attempt => return Some((result, waiting)),
            command = commands.recv() => match command? {
                Command::Subscribe(user, done) => {
                    users.add(user);
                    waiting.push(done);
                }
                Command::Unsubscribe(user) => {
                    users.remove(user);
                }
            },
        }
    }
}

/// Tell subscribers who waited for a connection attempt that it is over.
fn answer(waiting: Vec<oneshot::Sender<()>>) {
    for done in waiting {
        let _ = done.send(());
    }
}

/// Await a Redis step for at most [`REDIS_TIMEOUT`].
async fn bounded<T>(
    step: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(REDIS_TIMEOUT, step).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from Redis within {REDIS_TIMEOUT:?}")),
    }
}

/// Record a command while there is no connection to send it on (the user set is subscribed
/// on connection), answering a subscriber at once.
fn apply_while_down(command: Command, users: &mut Counts) {
    match command {
        Command::Subscribe(user, done) => {
            users.add(user);
            let _ = done.send(());
        }
        Command::Unsubscribe(user) => {
            users.remove(user);
        }
    }
}

/// Keep the user set current while the connection is down, for `delay`. False when every
/// handle is gone.
async fn wait_while_down(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    users: &mut Counts,
    delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(command) => apply_while_down(command, users),
            },
        }
    }
}

/// Apply subscription commands to the route; deliveries go straight from publishers into the
/// route's queue.
async fn run_memory(route: Arc<Route>, mut commands: mpsc::UnboundedReceiver<Command>) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Subscribe(user, done) => {
                route.subscribe(user);
                let _ = done.send(());
            }
            Command::Unsubscribe(user) => route.unsubscribe(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::redis::RedisBus;
    use crate::bus::Bus;

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
        let (sub, rx) = memory(&bus);
        a_late_unsubscribe_of_one_connection_keeps_the_others(&bus, sub, rx).await;
    }

    #[tokio::test]
    async fn the_redis_subscriber_counts_connections() {
        let keys = Keys::new(format!("parley-sub-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys.clone()).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        let (sub, rx) = redis(bus.client().clone(), keys);
        a_late_unsubscribe_of_one_connection_keeps_the_others(&bus, sub, rx).await;
    }

    #[tokio::test]
    async fn the_memory_subscriber_delivers_only_subscribed_users() {
        let bus = MemoryBus::new();
        let (sub, rx) = memory(&bus);
        receives_only_subscribed_users(&bus, sub, rx).await;
    }

    #[tokio::test]
    async fn the_redis_subscriber_delivers_only_subscribed_users() {
        let keys = Keys::new(format!("parley-sub-test-{}", uuid::Uuid::new_v4()));
        let Ok(bus) = RedisBus::connect("redis://127.0.0.1:6379", keys.clone()).await else {
            panic!("Redis must run at 127.0.0.1:6379 for this test");
        };
        let (sub, rx) = redis(bus.client().clone(), keys);
        receives_only_subscribed_users(&bus, sub, rx).await;
    }

    #[test]
    fn channels_name_their_user() {
        assert_eq!(user_of("parley:u:42"), Some(UserId(42)));
        assert_eq!(user_of("a:u:b:u:7"), Some(UserId(7)));
        assert_eq!(user_of("parley:presence:1"), None);
    }
}
