//! Integration tests of the chat relay (one test binary): real relays on port 0 with the real
//! API, PostgreSQL and Redis, driven by `rust_socketio`, by `socket.io-client` in node and by
//! python-socketio.

// Tests may unwrap (house style): a failure here should panic loudly.
#![allow(clippy::unwrap_used)]

mod attachments;
mod cli;
mod clients;
mod device;
mod helpers;
mod limits;
mod live_path;
mod memory;
mod node_clients;
mod one_cpu;
mod ops;
mod port;
mod presence;
mod python_clients;
mod recovery;
mod redis_outage;
mod revocation;
mod roster;
mod rust_clients;
mod session_and_receipts;
