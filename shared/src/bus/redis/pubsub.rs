//! The Redis side of [`Subscriber`]: one pub/sub connection, SUBSCRIBE/UNSUBSCRIBE per user
//! channel, reconnecting and resubscribing by itself (see [`crate::bus::subscriber`]).
//!
//! The connection is our own (`connection`), not redis-rs's `PubSub`, whose reader cost
//! ~11 000 instructions per message (see `resp`). Commands are pipelined: each SUBSCRIBE,
//! UNSUBSCRIBE and PING waits in a queue for its answer, which Redis sends in command order, at
//! most [`REDIS_TIMEOUT`] of reading time; a subscriber is answered when its channel's
//! confirmation arrives. A connection that has read nothing for [`KEEPALIVE`] sends a PING: a
//! Redis that hangs (stopped by a signal, a network path that drops packets) keeps the
//! connection open and sends nothing, and only the missing answer shows it.

use super::connection::{self, Incoming, Writer};
use super::resp::{self, Frame};
use crate::bus::subscriber::{user_of, Command, Counts, Link, Subscriber, OUT_CAPACITY};
use crate::bus::{BusMessage, Keys};
use redis::ConnectionInfo;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Longest wait between two reconnection attempts: the subscriber is back within about this
/// long (plus one connection attempt) of Redis returning.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait for a connection, a write, or a SUBSCRIBE's or UNSUBSCRIBE's confirmation
/// before the connection counts as lost.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// First wait between reconnection attempts, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// How long a connection may read nothing, with no answer awaited, before it sends a PING: a
/// Redis that hangs is found within this plus [`REDIS_TIMEOUT`].
const KEEPALIVE: Duration = Duration::from_secs(1);

/// A subscriber on Redis pub/sub; its task ends when every handle is dropped.
pub(crate) fn start(info: ConnectionInfo, keys: Keys) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    let link = Arc::new(Link::default());
    let (subscriber, commands) = Subscriber::channel(link.clone());
    let (out, received) = mpsc::channel(OUT_CAPACITY);
    tokio::spawn(run_redis(info, keys, commands, out, link));
    (subscriber, received)
}

async fn run_redis(
    info: ConnectionInfo,
    keys: Keys,
    mut commands: mpsc::UnboundedReceiver<Command>,
    out: mpsc::Sender<BusMessage>,
    link: Arc<Link>,
) {
    let mut users = Counts::default();
    let mut backoff = MIN_BACKOFF;
    // Whether the connection has failed before (a failed attempt warns only the first time;
    // losing an established connection always does).
    let mut down = false;
    loop {
        let Some((connected, waiting)) = connect(&info, &mut commands, &mut users).await else {
            return;
        };
        let (incoming, writer) = match connected {
            Ok(connection) => connection,
            Err(error) => {
                answer(waiting);
                if !down {
                    tracing::warn!(%error, "redis pub/sub connection failed; retrying");
                }
                down = true;
                link.failed();
                if !wait_while_down(&mut commands, &mut users, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut session = Session {
            incoming,
            writer,
            pending: VecDeque::new(),
            keys: &keys,
            out: &out,
            link: &link,
            command: Vec::new(),
        };
        let ended = match session.resubscribe(&users, waiting, down).await {
            Ok(()) => session.serve(&mut commands, &mut users).await,
            Err(error) => Err(error),
        };
        if link.is_live() {
            // This connection got every channel subscribed: the next attempt is made soon.
            backoff = MIN_BACKOFF;
        }
        match ended {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "redis pub/sub connection lost; reconnecting");
                link.failed();
                down = true;
            }
        }
        drop(session);
        if !wait_while_down(&mut commands, &mut users, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What a channel's confirmation completes.
enum Then {
    Nothing,
    /// A subscriber waits for this channel.
    Answer(oneshot::Sender<()>),
    /// The last channel of a resubscription: the subscription is live, and the subscribers
    /// who arrived while connecting are answered.
    Live(Vec<oneshot::Sender<()>>),
}

/// What Redis answers a command with, in command order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Subscribed,
    Unsubscribed,
    Pong,
}

/// A command's answer still to come, one per channel (one for a PING).
struct Pending {
    reply: Reply,
    deadline: Instant,
    then: Then,
}

/// One live connection.
struct Session<'a> {
    incoming: Incoming,
    writer: Writer,
    pending: VecDeque<Pending>,
    keys: &'a Keys,
    out: &'a mpsc::Sender<BusMessage>,
    link: &'a Link,
    /// The command being written (kept for its allocation).
    command: Vec<u8>,
}

impl Session<'_> {
    /// Subscribe every current user's channel again (one command); the subscription is live,
    /// and the `waiting` subscribers are answered, once the last one is confirmed.
    async fn resubscribe(
        &mut self,
        users: &Counts,
        waiting: Vec<oneshot::Sender<()>>,
        was_down: bool,
    ) -> Result<(), String> {
        if users.is_empty() {
            self.link.live();
            answer(waiting);
            if was_down {
                tracing::info!("redis pub/sub reconnected");
            }
            return Ok(());
        }
        let channels: Vec<String> = users.users().map(|u| self.keys.user_channel(u)).collect();
        let channels: Vec<&[u8]> = channels.iter().map(String::as_bytes).collect();
        self.write(Reply::Subscribed, &channels).await?;
        if let Some(last) = self.pending.back_mut() {
            last.then = Then::Live(waiting);
        }
        tracing::info!(users = users.len(), "redis pub/sub resubscribing");
        Ok(())
    }

    /// Read and answer commands until every handle is gone (`Ok`) or the connection fails.
    async fn serve(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        users: &mut Counts,
    ) -> Result<(), String> {
        let mut heard = Instant::now();
        loop {
            self.handle_frames().await?;
            let awaited = self.pending.front().map(|p| (p.reply, p.deadline));
            // Nothing awaited and nothing read for a while: ask, so that a hang shows.
            let quiet = awaited.is_none().then(|| heard + KEEPALIVE);
            tokio::select! {
                read = self.incoming.fill() => {
                    read?;
                    heard = Instant::now();
                }
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(Command::Subscribe(user, done)) => {
                        if users.add(user) {
                            let channel = self.keys.user_channel(user);
                            self.write(Reply::Subscribed, &[channel.as_bytes()]).await?;
                            if let Some(last) = self.pending.back_mut() {
                                last.then = Then::Answer(done);
                            }
                        } else {
                            let _ = done.send(());
                        }
                    }
                    Some(Command::Unsubscribe(user)) => {
                        if users.remove(user) {
                            let channel = self.keys.user_channel(user);
                            self.write(Reply::Unsubscribed, &[channel.as_bytes()]).await?;
                        }
                    }
                },
                () = sleep_until(awaited.map(|(_, deadline)| deadline)), if awaited.is_some() => {
                    let command = awaited.map_or("", |(reply, _)| reply.command());
                    return Err(format!("no answer to {command} within {REDIS_TIMEOUT:?}"));
                }
                () = sleep_until(quiet), if quiet.is_some() => self.write(Reply::Pong, &[]).await?,
            }
        }
    }

    /// Handle every whole frame read so far.
    async fn handle_frames(&mut self) -> Result<(), String> {
        loop {
            let (message, confirmed) = match self.incoming.next()? {
                None => return Ok(()),
                Some(Frame::Message { channel, payload }) => {
                    let user = std::str::from_utf8(channel).ok().and_then(user_of);
                    let payload = std::str::from_utf8(payload).ok().map(str::to_owned);
                    (user.zip(payload), None)
                }
                Some(Frame::Subscribed) => (None, Some(Reply::Subscribed)),
                Some(Frame::Unsubscribed) => (None, Some(Reply::Unsubscribed)),
                Some(Frame::Pong) => (None, Some(Reply::Pong)),
                Some(Frame::Error(error)) => {
                    return Err(format!("Redis: {}", String::from_utf8_lossy(error)))
                }
                Some(Frame::Simple(_) | Frame::Other) => (None, None),
            };
            self.incoming.consume();
            if let Some(reply) = confirmed {
                self.confirmed(reply)?;
            }
            if let Some((user, payload)) = message {
                self.forward(BusMessage { user, payload }).await;
            }
        }
    }

    /// An answer arrived: it completes the oldest pending command.
    fn confirmed(&mut self, reply: Reply) -> Result<(), String> {
        match self.pending.pop_front() {
            Some(pending) if pending.reply == reply => {
                match pending.then {
                    Then::Nothing => {}
                    Then::Answer(done) => {
                        let _ = done.send(());
                    }
                    Then::Live(waiting) => {
                        self.link.live();
                        answer(waiting);
                        tracing::info!("redis pub/sub resubscribed");
                    }
                }
                Ok(())
            }
            _ => Err(format!("{reply:?}, which Redis was not asked for")),
        }
    }

    /// Hand a message to the consumer, waiting while its queue is full (back-pressure on the
    /// socket). The wait is not Redis's: the confirmations pending meanwhile get it back.
    async fn forward(&mut self, message: BusMessage) {
        let message = match self.out.try_send(message) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(message)) => message,
        };
        let started = Instant::now();
        let _ = self.out.send(message).await;
        let waited = started.elapsed();
        for pending in &mut self.pending {
            pending.deadline += waited;
        }
    }

    /// Write the command answered by `reply` for `channels` (SUBSCRIBE or UNSUBSCRIBE: an
    /// answer per channel; PING: none and one answer).
    async fn write(&mut self, reply: Reply, channels: &[&[u8]]) -> Result<(), String> {
        let mut args = Vec::with_capacity(channels.len() + 1);
        args.push(reply.command().as_bytes());
        args.extend_from_slice(channels);
        self.command.clear();
        resp::command(&mut self.command, &args);
        connection::write_within(&mut self.writer, &self.command, REDIS_TIMEOUT).await?;
        let deadline = Instant::now() + REDIS_TIMEOUT;
        self.pending
            .extend((0..channels.len().max(1)).map(|_| Pending {
                reply,
                deadline,
                then: Then::Nothing,
            }));
        Ok(())
    }
}

impl Reply {
    /// The command this answers.
    fn command(self) -> &'static str {
        match self {
            Reply::Subscribed => "SUBSCRIBE",
            Reply::Unsubscribed => "UNSUBSCRIBE",
            Reply::Pong => "PING",
        }
    }
}

/// Sleep until `deadline`; never returns without one (the branch is disabled then).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Open a pub/sub connection within [`REDIS_TIMEOUT`], keeping the user set current meanwhile.
/// Returns the attempt's result and the subscribers that arrived during it, to be answered once
/// their channels are subscribed on the new connection (or it failed); `None` when every handle
/// is gone.
async fn connect(
    info: &ConnectionInfo,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    users: &mut Counts,
) -> Option<(Result<(Incoming, Writer), String>, Vec<oneshot::Sender<()>>)> {
    let attempt = connection::open(info, Instant::now() + REDIS_TIMEOUT);
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
