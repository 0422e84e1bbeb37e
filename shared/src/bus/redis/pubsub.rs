//! The Redis side of [`Subscriber`]: one pub/sub connection, SUBSCRIBE/UNSUBSCRIBE per user
//! channel, reconnecting and resubscribing by itself (see [`crate::bus::subscriber`]).

use crate::bus::subscriber::{user_of, Command, Counts, Link, Subscriber, OUT_CAPACITY};
use crate::bus::{BusMessage, Keys};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Longest wait between two reconnection attempts: the subscriber is back within about this
/// long (plus one connection attempt) of Redis returning.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait for a connection, a SUBSCRIBE or an UNSUBSCRIBE before the connection counts
/// as lost.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// First wait between reconnection attempts, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A subscriber on Redis pub/sub; its task ends when every handle is dropped.
pub(crate) fn start(client: redis::Client, keys: Keys) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    let link = Arc::new(Link::default());
    let (subscriber, commands) = Subscriber::channel(link.clone());
    let (out, received) = mpsc::channel(OUT_CAPACITY);
    tokio::spawn(run_redis(client, keys, commands, out, link));
    (subscriber, received)
}

async fn run_redis(
    client: redis::Client,
    keys: Keys,
    mut commands: mpsc::UnboundedReceiver<Command>,
    out: mpsc::Sender<BusMessage>,
    link: Arc<Link>,
) {
    let failed = || link.failed();
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
        link.live();
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
