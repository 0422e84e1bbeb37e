//! Socket.IO v5 packets: pure encode/decode, no I/O.
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, carried in an
//! Engine.IO message (`4` prefix). The attachments of binary packets follow as separate binary
//! Engine.IO messages (see [`Decoder`](super::decoder::Decoder)).

use std::borrow::Cow;

use serde_json::Value;

use super::payload::Payload;
use crate::engineio::{Frame, Outgoing};
use crate::json::write_str;

/// The packet types of Socket.IO v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

/// A packet's header and JSON payload, before validation against its type.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPacket {
    pub kind: PacketType,
    /// Number of binary attachments that follow (binary types only).
    pub attachments: usize,
    /// Borrowed for the main namespace `/` (most packets), so decoding it allocates nothing.
    pub namespace: Cow<'static, str>,
    pub id: Option<u64>,
    pub data: Option<Value>,
    /// An EVENT whose name was read but whose arguments did not parse (`data` is then `None`).
    pub undecodable: Option<Undecodable>,
}

/// What is known of an EVENT whose arguments are not JSON this server decodes: JSON the
/// reference parser accepts and serde_json does not (a string holding a lone UTF-16 surrogate,
/// which `JSON.stringify` writes for half an emoji; nesting deeper than 128 levels), or no JSON
/// at all. Answered instead of closing the connection: one bad message must not cut a client
/// off, nor send one that retries it into a reconnect loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub event: String,
    /// serde_json's error.
    pub error: String,
}

/// Why a packet from a client is rejected. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("invalid attachment count")]
    Attachments,
    #[error("invalid ack id")]
    AckId,
    #[error("invalid JSON payload")]
    Json,
    #[error("invalid payload for the packet type")]
    Payload,
    #[error("clients may not send this packet type")]
    UnexpectedType,
    #[error("binary data out of place")]
    UnexpectedBinary,
    #[error("text packet while awaiting attachments")]
    UnexpectedText,
}

/// Names a client may not use for events (they are the client library's own).
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Splits a text packet into its parts; checks syntax only.
pub fn decode_raw(text: &str) -> Result<RawPacket, ParseError> {
    let bytes = text.as_bytes();
    let kind = match bytes.first().ok_or(ParseError::Empty)? {
        b'0' => PacketType::Connect,
        b'1' => PacketType::Disconnect,
        b'2' => PacketType::Event,
        b'3' => PacketType::Ack,
        b'4' => PacketType::ConnectError,
        b'5' => PacketType::BinaryEvent,
        b'6' => PacketType::BinaryAck,
        _ => return Err(ParseError::UnknownType),
    };
    let mut rest = &text[1..];

    let mut attachments = 0;
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let (count, tail) = rest.split_once('-').ok_or(ParseError::Attachments)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Attachments);
        }
        attachments = count.parse().map_err(|_| ParseError::Attachments)?;
        rest = tail;
    }

    let mut namespace = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        namespace = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }

    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        Some(rest[..digits].parse().map_err(|_| ParseError::AckId)?)
    } else {
        None
    };
    rest = &rest[digits..];

    let (data, undecodable) = if rest.is_empty() {
        (None, None)
    } else {
        match serde_json::from_str(rest) {
            Ok(data) => (Some(data), None),
            Err(error) => {
                let event = match kind {
                    PacketType::Event => event_name(rest).ok_or(ParseError::Json)?,
                    _ => return Err(ParseError::Json),
                };
                let error = error.to_string();
                (None, Some(Undecodable { event, error }))
            }
        }
    };
    Ok(RawPacket {
        kind,
        attachments,
        namespace: if namespace == "/" {
            Cow::Borrowed("/")
        } else {
            Cow::Owned(namespace.to_owned())
        },
        id,
        data,
        undecodable,
    })
}

/// The event name at the start of an EVENT's arguments (`["name", …`), when it is a string that
/// parses and a client may use.
fn event_name(args: &str) -> Option<String> {
    use serde::Deserialize as _;
    let after_bracket = args.strip_prefix('[')?;
    let mut names = serde_json::Deserializer::from_str(after_bracket);
    let name = String::deserialize(&mut names).ok()?;
    (!RESERVED_EVENTS.contains(&name.as_str())).then_some(name)
}

/// A validated packet from a client (attachments not yet joined for binary ones).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientPacket {
    Connect {
        namespace: Cow<'static, str>,
        /// The CONNECT payload; `{}` when absent.
        auth: Value,
    },
    Disconnect {
        namespace: Cow<'static, str>,
    },
    Event {
        namespace: Cow<'static, str>,
        event: String,
        payload: Payload,
        ack: Option<u64>,
    },
    Ack {
        namespace: Cow<'static, str>,
        id: u64,
        payload: Payload,
    },
    /// An EVENT whose arguments did not parse ([`Undecodable`]): the connection stays open and
    /// the namespace's handler answers it.
    Undecodable {
        namespace: Cow<'static, str>,
        event: String,
        ack: Option<u64>,
        error: String,
    },
}

/// Validates a raw packet against its type (what the reference parser's `isPayloadValid` checks).
/// Returns the packet and the number of attachments still to receive.
pub fn validate(raw: RawPacket) -> Result<(ClientPacket, usize), ParseError> {
    let RawPacket {
        kind,
        attachments,
        namespace,
        id,
        data,
        undecodable,
    } = raw;
    if let Some(Undecodable { event, error }) = undecodable {
        let packet = ClientPacket::Undecodable {
            namespace,
            event,
            ack: id,
            error,
        };
        return Ok((packet, 0));
    }
    let packet = match (kind, data) {
        (PacketType::Connect, None) => ClientPacket::Connect {
            namespace,
            auth: Value::Object(Default::default()),
        },
        (PacketType::Connect, Some(auth @ Value::Object(_))) => {
            ClientPacket::Connect { namespace, auth }
        }
        (PacketType::Disconnect, None) => ClientPacket::Disconnect { namespace },
        (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(mut args))) => {
            // The name is moved out, not copied.
            let event = match args.first() {
                Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => {
                    match args.remove(0) {
                        Value::String(name) => name,
                        _ => return Err(ParseError::Payload),
                    }
                }
                Some(Value::Number(n)) => {
                    let name = n.to_string();
                    args.remove(0);
                    name
                }
                _ => return Err(ParseError::Payload),
            };
            ClientPacket::Event {
                namespace,
                event,
                payload: Payload::new(args),
                ack: id,
            }
        }
        (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(args))) => ClientPacket::Ack {
            namespace,
            id: id.ok_or(ParseError::AckId)?,
            payload: Payload::new(args),
        },
        (PacketType::ConnectError, _) => return Err(ParseError::UnexpectedType),
        _ => return Err(ParseError::Payload),
    };
    Ok((packet, attachments))
}

/// Writes a JSON value: a `Value`, or one of our wire types (string keys only, no fallible
/// `Serialize`), which cannot fail into a `Vec`.
fn write_json(buf: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = crate::json::write(buf, value);
}

/// Scratch buffers past this size are not kept for the thread's next packet.
const SCRATCH_KEEP: usize = 64 * 1024;

/// A text frame written by `write` into a buffer the thread reuses, then copied out at its exact
/// length. Built in a `Vec` of its own, a packet grew by reallocation and, its length then short
/// of its capacity, needed a second allocation to become the frame's `Bytes` (which takes a
/// `Vec` as is only when it is full): one allocation per packet here, and a copy of ~100 bytes.
fn text_frame(write: impl FnOnce(&mut Vec<u8>)) -> Frame {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            write(&mut buf);
            let frame = Frame::text_raw(buf.to_vec());
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            frame
        }
        // Not reached (`write` encodes, it never builds another packet); a fresh buffer then.
        Err(_) => {
            let mut buf = Vec::new();
            write(&mut buf);
            Frame::text_raw(buf)
        }
    })
}

/// Writes an Engine.IO message (`4`) holding a Socket.IO packet header.
fn header(
    buf: &mut Vec<u8>,
    kind: PacketType,
    attachments: usize,
    namespace: &str,
    id: Option<u64>,
) {
    use std::io::Write as _;
    buf.push(b'4');
    buf.push(b'0' + kind as u8);
    if attachments > 0 {
        // Writing into a `Vec` cannot fail.
        let _ = write!(buf, "{attachments}-");
    }
    if namespace != "/" {
        buf.extend_from_slice(namespace.as_bytes());
        buf.push(b',');
    }
    if let Some(id) = id {
        let _ = write!(buf, "{id}");
    }
}

/// `0[/ns,]{"sid":...}`: the namespace accepted the connection.
pub fn connect(namespace: &str, sid: &str) -> Frame {
    text_frame(|buf| {
        header(buf, PacketType::Connect, 0, namespace, None);
        write_json(buf, &serde_json::json!({ "sid": sid }));
    })
}

/// `4[/ns,]{"message":...[,"data":...]}`: the namespace refused the connection.
pub fn connect_error(namespace: &str, message: &str, data: Option<&Value>) -> Frame {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), Value::String(message.into()));
    if let Some(data) = data {
        body.insert("data".into(), data.clone());
    }
    text_frame(|buf| {
        header(buf, PacketType::ConnectError, 0, namespace, None);
        write_json(buf, &body);
    })
}

/// `1[/ns,]`: the server disconnects the socket from the namespace.
pub fn disconnect(namespace: &str) -> Frame {
    text_frame(|buf| header(buf, PacketType::Disconnect, 0, namespace, None))
}

/// An EVENT (BINARY_EVENT with attachments) as one outgoing packet: the text frame, then one
/// binary frame per attachment.
pub fn event(namespace: &str, event: &str, payload: &Payload, ack: Option<u64>) -> Outgoing {
    let kind = if payload.attachments.is_empty() {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    };
    let text = text_frame(|buf| {
        header(buf, kind, payload.attachments.len(), namespace, ack);
        buf.push(b'[');
        write_str(buf, event);
        for arg in &payload.args {
            buf.push(b',');
            write_json(buf, arg);
        }
        buf.push(b']');
    });
    with_attachments(text, payload)
}

/// An EVENT with one JSON argument and no attachment, written from the borrowed argument (no
/// [`Payload`] to build).
pub fn event_json(namespace: &str, event: &str, arg: &impl serde::Serialize) -> Outgoing {
    Outgoing::One(text_frame(|buf| {
        header(buf, PacketType::Event, 0, namespace, None);
        buf.push(b'[');
        write_str(buf, event);
        buf.push(b',');
        write_json(buf, arg);
        buf.push(b']');
    }))
}

/// An ACK with one JSON argument and no attachment, written from the borrowed argument.
pub fn ack_json(namespace: &str, id: u64, arg: &impl serde::Serialize) -> Outgoing {
    Outgoing::One(text_frame(|buf| {
        header(buf, PacketType::Ack, 0, namespace, Some(id));
        buf.push(b'[');
        write_json(buf, arg);
        buf.push(b']');
    }))
}

/// An ACK (BINARY_ACK with attachments) answering the client's packet `id`.
pub fn ack(namespace: &str, id: u64, payload: &Payload) -> Outgoing {
    let kind = if payload.attachments.is_empty() {
        PacketType::Ack
    } else {
        PacketType::BinaryAck
    };
    let text = text_frame(|buf| {
        header(buf, kind, payload.attachments.len(), namespace, Some(id));
        write_json(buf, &payload.args);
    });
    with_attachments(text, payload)
}

fn with_attachments(text: Frame, payload: &Payload) -> Outgoing {
    if payload.attachments.is_empty() {
        return Outgoing::One(text);
    }
    let attachments = payload.attachments.iter().cloned().map(Frame::binary);
    Outgoing::Many(std::iter::once(text).chain(attachments).collect())
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
