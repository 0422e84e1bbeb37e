//! Parley's relay: the Socket.IO v4 wire protocol (Engine.IO v4 + Socket.IO v5 packets) served
//! over one hyper listener, so unmodified `socket.io-client` 4.x apps connect with default options.
//!
//! # Layout
//! - [`engineio`]: Engine.IO v4 server: HTTP long-polling and WebSocket transports, the upgrade
//!   between them, heartbeat, payload limits, bounded per-session outboxes, request gate and
//!   fallback hooks, graceful shutdown ([`engineio::serve`]).
//! - [`socketio`]: Socket.IO v5 on top: packet codec (pure), namespaces, acks, binary
//!   attachments, and the API the chat layer implements ([`socketio::NamespaceHandler`]) and uses
//!   ([`socketio::Socket`]).
//! - [`chat`]: the chat relay on namespace `/` (auth, rooms, `send_message`, bus events).
//! - [`settings`], [`startup`]: typed settings and `Application` (bind, `port()`,
//!   `run_until_stopped(shutdown)`).
//! - [`memory`]: hash tables that give back their room once mostly empty (the binaries'
//!   allocator is `shared::alloc`).
//! - `json`: compact JSON as serde_json writes it, with strings copied whole when they need no
//!   escaping (what the relay writes on every message).
//! - `queue`: the bounded queue of outboxes and event queues, which costs nothing while empty.
//!
//! - `fuzzing` (hidden): the pure decoders and encoders, re-exported for the fuzz targets in
//!   `fuzz/`; not an API.
//!
//! The protocol layer knows nothing of chat; see `docs/protocol.md` for limits, close reasons and
//! the handler API, and for the chat events.
//!
//! The official Engine.IO and Socket.IO protocol suites run against `protocol_echo` (the
//! `protocol-echo` crate) with `scripts/protocol-suites` (outside CI: the suites are not in this
//! repository).

pub mod chat;
pub mod engineio;
pub(crate) mod json;
pub mod memory;
pub(crate) mod queue;
pub mod settings;
pub mod socketio;
pub mod startup;

/// The pure protocol codecs, re-exported for the cargo-fuzz targets in `fuzz/` (which build
/// outside the workspace and see only public items). Not an API: nothing else may use it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::engineio::packet::{
        decode_payload, decode_text, encode_payload, Frame, Message, Packet, PacketError,
    };
    pub use crate::socketio::decoder::Decoder;
    pub use crate::socketio::packet::{ack, disconnect, event, ClientPacket, ParseError};
    pub use crate::socketio::Payload;

    /// A text frame holding one whole Engine.IO packet, type digit included (`2probe`).
    pub fn text_frame(packet: String) -> Frame {
        Frame::text(packet)
    }
}
