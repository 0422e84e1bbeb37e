//! The Redis side of [`Subscriber`]: one pub/sub connection, SUBSCRIBE/UNSUBSCRIBE per user
//! channel, reconnecting and resubscribing by itself (see [`crate::bus::subscriber`]).
//!
//! The connection is our own (RESP2 over TCP or a Unix socket, `AUTH` when the URL has a
//! password), read through [`resp`], not redis-rs's `PubSub`, whose reader cost ~11 000
//! instructions per message (see [`resp`]); redis-rs still parses the URL. Commands are
//! pipelined: each SUBSCRIBE and UNSUBSCRIBE waits in a queue for its confirmation, which Redis
//! sends in command order, at most [`REDIS_TIMEOUT`] of reading time; a subscriber is answered
//! when its channel's confirmation arrives.

use super::resp::{self, Frame};
use crate::bus::subscriber::{user_of, Command, Counts, Link, Subscriber, OUT_CAPACITY};
use crate::bus::{BusMessage, Keys};
use redis::{ConnectionAddr, ConnectionInfo};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A subscriber on Redis pub/sub; its task ends when every handle is dropped.
pub(crate) fn start(client: redis::Client, keys: Keys) -> (Subscriber, mpsc::Receiver<BusMessage>) {
    let link = Arc::new(Link::default());
    let (subscriber, commands) = Subscriber::channel(link.clone());
    let (out, received) = mpsc::channel(OUT_CAPACITY);
    let info = client.get_connection_info().clone();
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
        let resubscribed = session.resubscribe(&users, waiting, down).await;
        let ended = match resubscribed {
            Ok(()) => {
                backoff = MIN_BACKOFF;
                session.serve(&mut commands, &mut users).await
            }
            Err(error) => Err(error),
        };
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

/// A command's confirmation still to come, one per channel.
struct Pending {
    subscribe: bool,
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
        self.write(true, channels.iter().map(String::as_bytes))
            .await?;
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
        loop {
            self.handle_frames().await?;
            let deadline = self.pending.front().map(|p| p.deadline);
            tokio::select! {
                read = self.incoming.fill() => read?,
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(Command::Subscribe(user, done)) => {
                        if users.add(user) {
                            let channel = self.keys.user_channel(user);
                            self.write(true, std::iter::once(channel.as_bytes())).await?;
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
                            self.write(false, std::iter::once(channel.as_bytes())).await?;
                        }
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    return Err(format!("no confirmation of SUBSCRIBE/UNSUBSCRIBE within {REDIS_TIMEOUT:?}"));
                }
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
                Some(Frame::Subscribed) => (None, Some(true)),
                Some(Frame::Unsubscribed) => (None, Some(false)),
                Some(Frame::Error(error)) => {
                    return Err(format!("Redis: {}", String::from_utf8_lossy(error)))
                }
                Some(Frame::Simple(_) | Frame::Other) => (None, None),
            };
            self.incoming.consume();
            if let Some(subscribe) = confirmed {
                self.confirmed(subscribe)?;
            }
            if let Some((user, payload)) = message {
                self.forward(BusMessage { user, payload }).await;
            }
        }
    }

    /// A confirmation arrived: it completes the oldest pending command.
    fn confirmed(&mut self, subscribe: bool) -> Result<(), String> {
        match self.pending.pop_front() {
            Some(pending) if pending.subscribe == subscribe => {
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
            _ => Err("a confirmation Redis was not asked for".to_owned()),
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

    /// Write SUBSCRIBE (or UNSUBSCRIBE) for `channels`, each awaiting its confirmation.
    async fn write<'c>(
        &mut self,
        subscribe: bool,
        channels: impl ExactSizeIterator<Item = &'c [u8]>,
    ) -> Result<(), String> {
        let name: &[u8] = if subscribe {
            b"SUBSCRIBE"
        } else {
            b"UNSUBSCRIBE"
        };
        let count = channels.len();
        let mut args = Vec::with_capacity(count + 1);
        args.push(name);
        args.extend(channels);
        self.command.clear();
        resp::command(&mut self.command, &args);
        write_bounded(&mut self.writer, &self.command).await?;
        let deadline = Instant::now() + REDIS_TIMEOUT;
        self.pending.extend((0..count).map(|_| Pending {
            subscribe,
            deadline,
            then: Then::Nothing,
        }));
        Ok(())
    }
}

/// The reading half and what it has read.
struct Incoming {
    reader: Reader,
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    at: usize,
    /// The length of the frame [`Incoming::next`] returned last, once the caller is done with it.
    taken: usize,
}

impl Incoming {
    fn new(reader: Reader) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(READ_CHUNK),
            at: 0,
            taken: 0,
        }
    }

    /// The next whole frame read, if any; [`Incoming::consume`] moves past it.
    fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        match resp::frame(&self.buf[self.at..]) {
            Ok(Some((frame, len))) => {
                self.taken = len;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(resp::Malformed(what)) => Err(format!("unreadable reply from Redis: {what}")),
        }
    }

    fn consume(&mut self) {
        self.at += std::mem::take(&mut self.taken);
    }

    /// Read more; an error once the connection is closed. Cancel-safe.
    async fn fill(&mut self) -> Result<(), String> {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.reserve(READ_CHUNK);
        match self.reader.read_buf(&mut self.buf).await {
            Ok(0) => Err("Redis closed the connection".to_owned()),
            Ok(_) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Read until a whole frame is in, within `deadline`.
    async fn frame_by(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if self.next()?.is_some() {
                return Ok(());
            }
            tokio::time::timeout_at(deadline, self.fill())
                .await
                .map_err(|_| format!("no answer from Redis within {REDIS_TIMEOUT:?}"))??;
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

async fn write_bounded(writer: &mut Writer, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(REDIS_TIMEOUT, writer.write_all(bytes)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("Redis took no command within {REDIS_TIMEOUT:?}")),
    }
}

/// Open a connection and authenticate, within [`REDIS_TIMEOUT`].
async fn open(info: &ConnectionInfo) -> Result<(Incoming, Writer), String> {
    let deadline = Instant::now() + REDIS_TIMEOUT;
    let opening = async {
        let (reader, writer): (Reader, Writer) = match &info.addr {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            ConnectionAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| e.to_string())?;
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            ConnectionAddr::TcpTls { .. } => {
                return Err("TLS (rediss://) is not supported".to_owned())
            }
        };
        Ok::<_, String>((Incoming::new(reader), writer))
    };
    let (mut incoming, mut writer) = tokio::time::timeout_at(deadline, opening)
        .await
        .map_err(|_| format!("no connection to Redis within {REDIS_TIMEOUT:?}"))??;
    let redis = &info.redis;
    if let Some(password) = &redis.password {
        let mut auth = Vec::new();
        match &redis.username {
            Some(user) => {
                resp::command(&mut auth, &[b"AUTH", user.as_bytes(), password.as_bytes()])
            }
            None => resp::command(&mut auth, &[b"AUTH", password.as_bytes()]),
        }
        write_bounded(&mut writer, &auth).await?;
        incoming.frame_by(deadline).await?;
        match incoming.next()? {
            Some(Frame::Simple(_)) => incoming.consume(),
            Some(Frame::Error(error)) => {
                return Err(format!("AUTH: {}", String::from_utf8_lossy(error)))
            }
            _ => return Err("AUTH: unexpected answer".to_owned()),
        }
    }
    Ok((incoming, writer))
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
    let attempt = open(info);
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
