//! The ceiling of the bench's `echo` scenario: a plain WebSocket server on tokio-tungstenite
//! that sends every text or binary frame back unchanged (no Engine.IO, no Socket.IO).
//!
//! Environment: `PORT` (listen on 127.0.0.1:PORT). Any path is accepted. Reads use a 4 KiB
//! buffer (as Parley's relay and the bench's client do: tungstenite's default 128 KiB is
//! zeroed on every read); replies are flushed when no more frames are ready, so frames read
//! together go back in one write.

use anyhow::Context;
use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 4096;

async fn echo(stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    let (sink, stream) = ws.split();
    // Pings are answered by tungstenite itself; close ends the stream.
    stream
        .try_filter(|message| future::ready(message.is_text() || message.is_binary()))
        .forward(sink)
        .await
        .context("echoing")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::var("PORT")
        .context("PORT must be set")?
        .parse()
        .context("PORT must be a TCP port")?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    loop {
        let (stream, _) = listener.accept().await.context("accepting")?;
        tokio::spawn(async move {
            // A client that goes away mid-frame is not the echo's failure.
            let _ = echo(stream).await;
        });
    }
}
