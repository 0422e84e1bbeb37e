//! The servers a side-by-side scenario starts besides Parley's own binaries: the peers of
//! `bench/peers/` (installed by `bench/peers/install`) and Parley's `protocol_echo`. Each is a
//! [`Command`] to hand to `procs::spawn` with `PORT` (and `JWT_SECRET`, `REDIS_URL` where it
//! applies) in its environment, or an error saying what to install or build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A server of `bench/peers/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `bench/peers/node/relay.mjs`: socket.io 4.8 on Node (relay and echo).
    Node,
    /// `socketioxide-peer`: socketioxide 0.18 (relay and echo).
    Socketioxide,
    /// `raw-echo`: a plain tokio-tungstenite WebSocket echo.
    RawEcho,
}

/// The command that starts `peer` (its environment still to be set: `PORT`, `JWT_SECRET`, …).
pub fn command(peer: Peer) -> anyhow::Result<Command> {
    match peer {
        Peer::Node => {
            let dir = peers_dir().join("node");
            if !dir.join("node_modules").join("socket.io").is_dir() {
                bail!(
                    "{} is not installed: run bench/peers/install node (needs node and npm)",
                    dir.display()
                );
            }
            let mut command = Command::new("node");
            command
                .arg("relay.mjs")
                .current_dir(dir)
                .env("NODE_ENV", "production");
            Ok(command)
        }
        Peer::Socketioxide => Ok(Command::new(rust_peer("socketioxide-peer")?)),
        Peer::RawEcho => Ok(Command::new(rust_peer("raw-echo")?)),
    }
}

/// Parley's `protocol_echo` (the protocol-echo crate) in its `--production` mode (the relay's
/// heartbeat, no reference-suite `auth` pause); `--port` and `--host` are added here.
pub fn protocol_echo(port: u16) -> anyhow::Result<Command> {
    let binary = profile_dir()?.join("protocol_echo");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build [--release, as the bench] -p protocol-echo (with the bench's CARGO_TARGET_DIR)",
            binary.display()
        );
    }
    let mut command = Command::new(binary);
    command
        .args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--production",
        ])
        .env("RUST_LOG", "warn");
    Ok(command)
}

/// `bench/peers/` of this checkout.
fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The profile directory this bench was built in (`<target>/release` or `<target>/debug`).
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the bench executable's directory")
}

/// The target directory this bench was built in (`<target>/release/bench` → `<target>`).
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    profile_dir()?
        .parent()
        .map(Path::to_path_buf)
        .context("the bench executable's target directory")
}

/// A binary of `bench/peers/rust`: in `$BENCH_PEERS_BIN`, or where `bench/peers/install`
/// builds it (`<this bench's target dir>/peers/release/`).
fn rust_peer(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("BENCH_PEERS_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir()?.join("peers/release"),
    };
    let binary = dir.join(name);
    if !binary.is_file() {
        bail!(
            "{} is missing: run bench/peers/install rust (with the bench's CARGO_TARGET_DIR) or set BENCH_PEERS_BIN",
            binary.display()
        );
    }
    Ok(binary)
}
