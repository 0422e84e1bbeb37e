//! Serves the protocol layer alone, like the Socket.IO reference test server (see `echo.rs`).
//!
//! `cargo run -p socket-server --example protocol_echo -- --port 3000 [--host 127.0.0.1]`

mod echo;

use anyhow::Context as _;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut host = String::from("127.0.0.1");
    let mut port: u16 = 3000;
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
            other => anyhow::bail!("unknown argument {other:?} (expected --port P, --host H)"),
        }
    }
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    println!("protocol echo listening on {}", listener.local_addr()?);
    echo::serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
