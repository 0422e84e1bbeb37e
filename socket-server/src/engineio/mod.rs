//! Engine.IO v4 server: sessions over HTTP long-polling and WebSocket, with the upgrade between
//! them, the server-initiated heartbeat and payload limits.
//!
//! - `packet`: pure encode/decode of packets and polling payloads.
//! - `session`: a session's bounded outbox, state and close; [`EngineSocket`] is its handle.
//! - `engine`: the session table and lifecycle; [`EngineHandler`] is what the layer above
//!   implements.
//! - `router`, `polling`, `websocket`: HTTP dispatch and the two transports; `ws_frame`: the
//!   WebSocket frame codec; `wire`: a WebSocket's bytes to write, which senders write
//!   themselves when nothing is queued before them ([`corked`] groups a burst into one write).
//! - `heartbeat`: ping/pong timing. `hooks`: request gate and fallback. `server`: [`serve`].
//! - `access`: request ids (`x-request-id`) and the access log.

mod access;
mod config;
mod engine;
mod errors;
mod heartbeat;
mod hooks;
pub(crate) mod packet;
mod polling;
mod router;
mod server;
mod session;
mod websocket;
mod wire;
mod ws_frame;

pub use config::EngineConfig;
pub use engine::{EngineHandler, Now, Pending};
pub use errors::{error_response, Body, CloseReason, HttpError};
pub use hooks::{parse_query, Fallback, FallbackFuture, Hooks, Refusal, RequestGate, RequestInfo};
pub use packet::{Frame, Message, Outgoing};
pub use server::{close_reserve, serve, serve_draining, serve_endpoint, Endpoint, WeakEndpoint};
pub use session::{EngineSocket, SendError, WeakEngineSocket};
pub(crate) use wire::{cork, corked};
