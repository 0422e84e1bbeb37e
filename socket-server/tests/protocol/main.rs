//! Integration tests of the protocol layer (one test binary): the node conformance suite and
//! `socket.io-client`, the `rust_socketio` client, and the server's hooks and shutdown, each
//! against a server started in-process on port 0.

// Tests may unwrap (house style): a failure here should panic loudly.
#![allow(clippy::unwrap_used)]

#[path = "../../../protocol-echo/src/echo.rs"]
#[allow(dead_code)]
mod echo;

mod events_in_order;
mod helpers;
mod hooks_and_limits;
mod http_edges;
mod node_conformance;
mod rust_client;
mod senders;
mod shutdown;
mod upgrade_and_close;
mod websocket_frames;
