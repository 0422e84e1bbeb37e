//! A minimal Socket.IO v4 client, WebSocket only (`EIO=4&transport=websocket`), for the bench:
//! handshake `0{…}`, `40{auth}` → `40{sid}`, pings `2` answered `3`, events `42[…]` out with an
//! ack id and in without, acks `43<id>[…]`. Nothing else (no polling, binary or namespaces), so
//! the client costs little next to what it measures: a 4 KiB read buffer (tungstenite's default
//! 128 KiB is zeroed on every read: a third of the generator's CPU went to `memset`), and only
//! the events asked for are parsed (the others are dropped by their name, unparsed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Bytes read from the socket at a time (chat frames are a few hundred bytes).
const READ_BUFFER: usize = 4096;
/// TCP_NODELAY, as browsers and Node's `ws` set it: with Nagle, a small frame written while
/// the previous one is unacknowledged waits for that ACK, which a server that sends nothing back
/// (after a pong, say) delays by up to 40 ms — a stall of the client, not of the server.
const NO_DELAY: bool = true;

/// An event the server emitted, with the instant its frame was read.
pub struct Received {
    pub event: String,
    pub arg: Value,
    pub at: Instant,
}

/// An ack's first argument and the instant its frame was read.
pub type AckAnswer = (Value, Instant);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<AckAnswer>>>>;

/// WebSocket data frames every client of this process has read (pings included: the server
/// wrote them too), so a run can say how many frames a side wrote per message.
static FRAMES_READ: AtomicU64 = AtomicU64::new(0);

/// The data frames read so far by every client of this process.
pub fn frames_read() -> u64 {
    FRAMES_READ.load(Ordering::Relaxed)
}

/// One connected device. Dropping it closes the connection (its writer ends).
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
}

impl Client {
    /// Connect to `base` (`ws://host:port/socket.io/`) and join `/` with `{token}`; the client
    /// and the stream of the events named in `wanted` it receives (others are not parsed).
    pub async fn connect(
        base: &str,
        token: &str,
        wanted: &'static [&'static str],
    ) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<Received>)> {
        let url = format!("{base}?EIO=4&transport=websocket");
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), NO_DELAY)
                .await
                .with_context(|| format!("connecting to {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let open = next_text(&mut stream).await?;
        if !open.starts_with('0') {
            bail!("expected the Engine.IO open packet, got {open:?}");
        }
        sink.send(Message::text(format!("40{}", json!({ "token": token }))))
            .await?;
        loop {
            let packet = next_text(&mut stream).await?;
            match packet.get(..2) {
                Some("40") => break,
                Some("44") => bail!("connect refused: {packet}"),
                _ if packet == "2" => sink.send(Message::text("3")).await?,
                _ => bail!("unexpected packet before the connect answer: {packet:?}"),
            }
        }
        Ok(Client::start(sink, stream, wanted))
    }

    /// Connect to a plain WebSocket server at `url` (no Engine.IO handshake, e.g. the raw echo
    /// of `bench/peers/rust`): frames go out and are read as with [`Client::connect`].
    pub async fn connect_raw(
        url: &str,
        wanted: &'static [&'static str],
    ) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<Received>)> {
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), NO_DELAY)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let (sink, stream) = ws.split();
        Ok(Client::start(sink, stream, wanted))
    }

    /// The writer and reader tasks of a connected socket.
    fn start<W, R>(
        mut sink: W,
        stream: R,
        wanted: &'static [&'static str],
    ) -> (Client, mpsc::UnboundedReceiver<Received>)
    where
        W: futures::Sink<Message> + Unpin + Send + 'static,
        R: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin
            + Send
            + 'static,
    {
        let (out, mut outbox) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = outbox.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let pending: Pending = Arc::default();
        let (events, received) = mpsc::unbounded_channel();
        tokio::spawn(read(stream, out.clone(), pending.clone(), events, wanted));
        let client = Client {
            out,
            pending,
            next_id: AtomicU64::new(0),
        };
        (client, received)
    }

    /// Emit `event` with one argument and no ack (`42["event",arg]`).
    pub fn emit(&self, event: &str, arg: &Value) {
        // A closed writer is seen by the caller as replies that never come.
        let _ = self
            .out
            .send(Message::text(format!("42{}", json!([event, arg]))));
    }

    /// Emit `event` with one argument and an ack id; the receiver resolves with the ack.
    pub fn emit_with_ack(&self, event: &str, arg: &Value) -> oneshot::Receiver<AckAnswer> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let frame = format!("42{id}{}", json!([event, arg]));
        // A closed writer drops the pending sender with the map: the receiver sees it closed.
        let _ = self.out.send(Message::text(frame));
        rx
    }
}

async fn next_text<S>(stream: &mut S) -> anyhow::Result<String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .context("no packet within 10 s")?
            .context("connection closed")??;
        match message {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(_) => bail!("connection closed"),
            _ => continue,
        }
    }
}

/// Whether the event frame `42["name",…]` names one of `wanted` (checked before any parsing).
fn is_wanted(frame: &str, wanted: &[&str]) -> bool {
    let Some(rest) = frame.strip_prefix("[\"") else {
        return false;
    };
    wanted.iter().any(|name| {
        rest.strip_prefix(name)
            .is_some_and(|tail| tail.starts_with('"'))
    })
}

/// The reader: answers pings, resolves acks, forwards the wanted events.
async fn read<S>(
    mut stream: S,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: mpsc::UnboundedSender<Received>,
    wanted: &'static [&'static str],
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        let at = Instant::now();
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            FRAMES_READ.fetch_add(1, Ordering::Relaxed);
        }
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let text = text.as_str();
        if text == "2" {
            let _ = out.send(Message::text("3"));
        } else if let Some(rest) = text.strip_prefix("43") {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (Ok(id), Ok(Value::Array(mut args))) = (
                rest[..digits].parse::<u64>(),
                serde_json::from_str::<Value>(&rest[digits..]),
            ) else {
                continue;
            };
            let waiter = pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some(waiter) = waiter {
                let arg = if args.is_empty() {
                    Value::Null
                } else {
                    args.swap_remove(0)
                };
                let _ = waiter.send((arg, at));
            }
        } else if let Some(rest) = text.strip_prefix("42") {
            if !is_wanted(rest, wanted) {
                continue;
            }
            if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(rest) {
                if args.len() >= 2 {
                    let arg = args.swap_remove(1);
                    if let Value::String(event) = args.swap_remove(0) {
                        let _ = events.send(Received { event, arg, at });
                    }
                }
            }
        }
    }
    // The connection is gone: pending acks resolve as closed.
    pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart_by_name_before_parsing() {
        let wanted = &["receive_message"];
        assert!(is_wanted(r#"["receive_message",{"a":1}]"#, wanted));
        assert!(!is_wanted(r#"["message_saved",{"a":1}]"#, wanted));
        assert!(!is_wanted(r#"["receive_message_x",{}]"#, wanted));
        assert!(!is_wanted(r#"{"receive_message"}"#, wanted));
    }
}
