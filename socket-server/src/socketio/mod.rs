//! Socket.IO v5 on top of Engine.IO: namespaces multiplexed on one session, events, acks in
//! both directions, binary attachments.
//!
//! - `packet` and `decoder`: pure codec (text packets, attachment reassembly).
//! - `payload`: [`Payload`], event arguments with their attachments.
//! - `handler`: [`NamespaceHandler`], what the chat layer implements.
//! - `socket` and `ack`: [`Socket`], [`Ack`], [`AckReceiver`], what the chat layer uses.
//! - `connection`: one client's sockets and their ordered event queues.
//! - `server`: [`SocketIo`], the [`EngineHandler`](crate::engineio::EngineHandler) tying it together.

mod ack;
mod connection;
pub(crate) mod decoder;
mod handler;
pub(crate) mod packet;
mod payload;
mod server;
mod socket;

pub use ack::{Ack, AckError, AckReceiver};
pub use handler::{ConnectError, DisconnectReason, NamespaceHandler};
pub use payload::{placeholder, placeholder_num, Payload};
pub use server::{SocketIo, SocketIoConfig};
pub use socket::{EmitError, EncodedPacket, Extensions, Handshake, Socket};
