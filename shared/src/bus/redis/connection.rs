//! A plain RESP2 connection of our own (TCP or a Unix socket, `AUTH` when the URL has a
//! password) for the bus's two hot paths, pub/sub and PUBLISH, read through [`resp`] instead of
//! redis-rs's parser (see there). redis-rs still parses `REDIS_URL` ([`ConnectionInfo`]) and
//! runs every other command.

use super::resp::{self, Frame};
use redis::{ConnectionAddr, ConnectionInfo};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;
type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// The reading half and what it has read.
pub(super) struct Incoming {
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
    pub(super) fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        match resp::frame(&self.buf[self.at..]) {
            Ok(Some((frame, len))) => {
                self.taken = len;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(resp::Malformed(what)) => Err(format!("unreadable reply from Redis: {what}")),
        }
    }

    pub(super) fn consume(&mut self) {
        self.at += std::mem::take(&mut self.taken);
    }

    /// Read more; an error once the connection is closed. Cancel-safe.
    pub(super) async fn fill(&mut self) -> Result<(), String> {
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

    /// Whether the connection can still be used, found without waiting: false when Redis has
    /// closed it (a restart) or sent something nobody asked for.
    pub(super) fn still_open(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let fill = std::pin::pin!(self.fill());
        fill.poll(&mut cx).is_pending()
    }

    /// Read until a whole frame is in, by `deadline`.
    pub(super) async fn frame_by(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if self.next()?.is_some() {
                return Ok(());
            }
            tokio::time::timeout_at(deadline, self.fill())
                .await
                .map_err(|_| "no answer from Redis in time".to_owned())??;
        }
    }
}

/// Write `bytes` within `limit`.
pub(super) async fn write_within(
    writer: &mut Writer,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, writer.write_all(bytes)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("Redis took no command within {limit:?}")),
    }
}

/// Open a connection and authenticate, by `deadline`.
pub(super) async fn open(
    info: &ConnectionInfo,
    deadline: Instant,
) -> Result<(Incoming, Writer), String> {
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
        .map_err(|_| "no connection to Redis in time".to_owned())??;
    let redis = &info.redis;
    if let Some(password) = &redis.password {
        let mut auth = Vec::new();
        match &redis.username {
            Some(user) => {
                resp::command(&mut auth, &[b"AUTH", user.as_bytes(), password.as_bytes()])
            }
            None => resp::command(&mut auth, &[b"AUTH", password.as_bytes()]),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        write_within(&mut writer, &auth, left).await?;
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
