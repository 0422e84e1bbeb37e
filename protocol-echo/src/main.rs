//! Serves the protocol layer alone, like the Socket.IO reference test server (see `echo.rs`).
//!
//! `cargo run -p protocol-echo -- --port 3000 [--host 127.0.0.1] [--production]`
//!
//! `--production` serves what the benchmark's `echo` scenario measures instead of the reference
//! suite's server: `/socket.io/`, namespace `/` only, `message` → `message-back`, with the
//! relay's Engine.IO defaults (ping every 25 s, 20 s timeout) and no `auth` emitted before the
//! first answer. The suite's settings (a ping every 300 ms, events held until `auth` is sent)
//! cost the echo ~10 % of its CPU that no production server pays.
//!
//! Either way it runs on the relay's allocator (`socket_server::memory`), as the relay binaries
//! do, so the echo measures the protocol layer as it ships.

mod echo;

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use serde_json::Value;
use socket_server::engineio::{self, EngineConfig, Hooks};
use socket_server::socketio::{
    Ack, ConnectError, NamespaceHandler, Payload, Socket, SocketIo, SocketIoConfig,
};
use tokio::net::TcpListener;

/// The relay binaries' allocator (jemalloc).
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::ALLOCATOR;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut host = String::from("127.0.0.1");
    let mut port: u16 = 3000;
    let mut production = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .context("--port needs a value")?
                    .parse()
                    .context("--port must be a number")?;
            }
            "--host" => host = args.next().context("--host needs a value")?,
            "--production" => production = true,
            other => anyhow::bail!(
                "unknown argument {other:?} (expected --port P, --host H, --production)"
            ),
        }
    }
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    println!("protocol echo listening on {}", listener.local_addr()?);
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if production {
        let io = SocketIo::new(SocketIoConfig::default()).namespace("/", PlainEcho);
        engineio::serve(
            listener,
            EngineConfig::default(),
            Arc::new(io),
            Hooks::default(),
            stopped,
        )
        .await
    } else {
        echo::serve(listener, stopped).await
    }
}

/// `message` → `message-back`, nothing else (`--production`).
struct PlainEcho;

#[async_trait]
impl NamespaceHandler for PlainEcho {
    async fn on_connect(&self, _socket: &Socket, _auth: &Value) -> Result<(), ConnectError> {
        Ok(())
    }

    async fn on_event(&self, socket: &Socket, event: &str, payload: Payload, _ack: Option<Ack>) {
        echo(socket, event, payload);
    }

    /// The echo never waits: handled in the connection's task, as the relay's events are.
    fn on_event_now(
        &self,
        socket: &Socket,
        event: &str,
        payload: Payload,
        _ack: Option<Ack>,
    ) -> Result<(), (Payload, Option<Ack>)> {
        echo(socket, event, payload);
        Ok(())
    }
}

fn echo(socket: &Socket, event: &str, payload: Payload) {
    if event == "message" {
        let _ = socket.emit("message-back", payload);
    }
}
