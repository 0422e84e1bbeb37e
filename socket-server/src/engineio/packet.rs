//! Engine.IO v4 packets: pure encode/decode, no I/O.
//!
//! A packet is one type digit followed by its data (`4hello`). Over WebSocket a text frame carries
//! one packet and a binary frame carries one binary *message* with no type prefix. Over HTTP
//! long-polling a payload is several packets joined by the record separator `\x1e`, a binary
//! message being written `b<base64>`.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The payload separator of HTTP long-polling (ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;

/// An application message carried by a `4` packet (text) or a binary frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
}

/// A packet received from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: only servers send it; a client sending it is ignored.
    Open,
    /// `1`: the client closes the session.
    Close,
    /// `2` with optional data (`2probe` during the upgrade).
    Ping(String),
    /// `3` with optional data.
    Pong(String),
    /// `4` or a binary frame.
    Message(Message),
    /// `5`: the client completes the upgrade to WebSocket.
    Upgrade,
    /// `6`.
    Noop,
}

/// Why an incoming packet could not be decoded. Any of these closes the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid base64 in a binary packet")]
    Base64,
    #[error("payload is not valid UTF-8")]
    Utf8,
}

/// Decodes one text packet (a WebSocket text frame or one record of a polling payload).
pub fn decode_text(text: &str) -> Result<Packet, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open,
        '1' => Packet::Close,
        '2' => Packet::Ping(data.to_owned()),
        '3' => Packet::Pong(data.to_owned()),
        '4' => Packet::Message(Message::Text(data.to_owned())),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(PacketError::UnknownType(other)),
    })
}

/// [`decode_text`] of a text the caller owns (a WebSocket text frame): a message keeps the
/// frame's bytes, without the type digit, instead of a copy of them.
pub fn decode_text_owned(mut text: String) -> Result<Packet, PacketError> {
    if text.starts_with('4') {
        text.remove(0);
        return Ok(Packet::Message(Message::Text(text)));
    }
    decode_text(&text)
}

/// Decodes the body of a polling POST: records separated by `\x1e`, `b<base64>` for binary.
pub fn decode_payload(body: &[u8]) -> Result<Vec<Packet>, PacketError> {
    let text = std::str::from_utf8(body).map_err(|_| PacketError::Utf8)?;
    text.split(SEPARATOR as char)
        .map(|record| match record.strip_prefix('b') {
            Some(encoded) => BASE64
                .decode(encoded)
                .map(|raw| Packet::Message(Message::Binary(Bytes::from(raw))))
                .map_err(|_| PacketError::Base64),
            None => decode_text(record),
        })
        .collect()
}

/// An outgoing packet, already encoded. Cheap to clone: the bytes are shared, so one encoded
/// frame can be queued to many sessions (fan-out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole text packet, type digit included (`4hello`, `2`). UTF-8 by construction, checked
    /// once when the frame is built, so the WebSocket writer sends it without checking again.
    Text(Utf8Bytes),
    /// A binary message (no prefix on WebSocket, `b<base64>` on polling).
    Binary(Bytes),
}

impl Frame {
    /// A `4` message packet carrying `text`.
    pub fn message(text: &str) -> Self {
        let mut buf = String::with_capacity(text.len() + 1);
        buf.push('4');
        buf.push_str(text);
        Frame::text(buf)
    }

    /// A binary message.
    pub fn binary(data: Bytes) -> Self {
        Frame::Binary(data)
    }

    /// A whole text packet (type digit included). No check: a `String` is UTF-8.
    pub(crate) fn text(packet: String) -> Self {
        Frame::Text(Utf8Bytes::from(packet))
    }

    /// A text packet whose bytes (type digit included) were written by our own encoders, which
    /// write UTF-8 only (ASCII headers, `&str` names, `serde_json` output). Checked here, once per
    /// packet, whatever the number of recipients; should an encoder ever write invalid UTF-8, the
    /// client gets replacement characters rather than a dropped connection.
    pub(crate) fn text_raw(packet: Vec<u8>) -> Self {
        match String::from_utf8(packet) {
            Ok(text) => Frame::text(text),
            Err(error) => Frame::text(String::from_utf8_lossy(error.as_bytes()).into_owned()),
        }
    }

    pub(crate) const fn control(packet: &'static str) -> Self {
        Frame::Text(Utf8Bytes::from_static(packet))
    }

    /// Bytes this frame takes in a polling payload (separator excluded).
    pub fn polling_len(&self) -> usize {
        match self {
            Frame::Text(text) => text.len(),
            Frame::Binary(data) => 1 + data.len().div_ceil(3) * 4,
        }
    }
}

/// One outgoing packet, the unit of a session's outbox: a single frame, or the frames of a
/// packet that must reach the client back to back (a Socket.IO BINARY_EVENT and its attachments).
/// Queued with one operation and written contiguously by either transport. Cheap to clone: `Many`
/// shares its frames, so one encoded packet is queued to many sessions for a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    One(Frame),
    Many(Arc<[Frame]>),
}

impl Outgoing {
    /// The packet's frames, in order.
    pub fn frames(&self) -> &[Frame] {
        match self {
            Outgoing::One(frame) => std::slice::from_ref(frame),
            Outgoing::Many(frames) => frames,
        }
    }

    /// Bytes the packet takes in a polling payload, one separator per frame included.
    pub fn polling_len(&self) -> usize {
        self.frames().iter().map(|f| f.polling_len() + 1).sum()
    }
}

impl From<Frame> for Outgoing {
    fn from(frame: Frame) -> Self {
        Outgoing::One(frame)
    }
}

impl From<Arc<[Frame]>> for Outgoing {
    fn from(frames: Arc<[Frame]>) -> Self {
        Outgoing::Many(frames)
    }
}

impl From<Vec<Frame>> for Outgoing {
    fn from(frames: Vec<Frame>) -> Self {
        let mut frames = frames.into_iter();
        match (frames.next(), frames.len()) {
            (Some(frame), 0) => Outgoing::One(frame),
            (first, _) => Outgoing::Many(first.into_iter().chain(frames).collect()),
        }
    }
}

/// `2`: the server's heartbeat.
pub const PING: Frame = Frame::control("2");
/// `3probe`: answer to the upgrade probe.
pub const PONG_PROBE: Frame = Frame::control("3probe");
/// `6`: ends a pending poll during an upgrade or after the client closed.
pub const NOOP: Frame = Frame::control("6");
/// `1`: the server closes the session.
pub const CLOSE: Frame = Frame::control("1");

/// Encodes frames as one polling payload.
pub fn encode_payload(frames: &[Frame]) -> Bytes {
    let len = frames.iter().map(|f| f.polling_len() + 1).sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.put_slice(text.as_bytes()),
            Frame::Binary(data) => {
                out.put_u8(b'b');
                out.put_slice(BASE64.encode(data).as_bytes());
            }
        }
    }
    out.freeze()
}

/// The handshake (`0{...}`) sent as the first packet of every session.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> Frame {
    let body = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    });
    Frame::text(format!("0{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_packets_decode_by_their_type_digit() {
        assert_eq!(decode_text("1"), Ok(Packet::Close));
        assert_eq!(decode_text("2probe"), Ok(Packet::Ping("probe".into())));
        assert_eq!(decode_text("3"), Ok(Packet::Pong(String::new())));
        assert_eq!(
            decode_text("4hello"),
            Ok(Packet::Message(Message::Text("hello".into())))
        );
        assert_eq!(decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn an_owned_text_decodes_as_a_borrowed_one() {
        for text in ["1", "2probe", "3", "4hello", "4", "5", "6", "", "7", "é"] {
            assert_eq!(
                decode_text_owned(text.into()),
                decode_text(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn malformed_text_packets_are_errors() {
        assert_eq!(decode_text(""), Err(PacketError::Empty));
        assert_eq!(decode_text("abc"), Err(PacketError::UnknownType('a')));
        assert_eq!(decode_text("7"), Err(PacketError::UnknownType('7')));
    }

    #[test]
    fn a_polling_payload_splits_on_the_record_separator() {
        let packets = decode_payload(b"4hello\x1ebAQIDBA==\x1e3").unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message(Message::Text("hello".into())),
                Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Packet::Pong(String::new()),
            ]
        );
    }

    #[test]
    fn an_empty_or_invalid_polling_payload_is_an_error() {
        assert_eq!(decode_payload(b""), Err(PacketError::Empty));
        assert_eq!(decode_payload(b"4a\x1e"), Err(PacketError::Empty));
        assert_eq!(decode_payload(b"b!!!"), Err(PacketError::Base64));
        assert_eq!(decode_payload(&[0x34, 0xff]), Err(PacketError::Utf8));
    }

    #[test]
    fn frames_encode_as_a_polling_payload_with_base64_binaries() {
        let payload = encode_payload(&[
            Frame::message("hello"),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
            PING,
        ]);
        assert_eq!(&payload[..], b"4hello\x1ebAQIDBA==\x1e2");
    }

    #[test]
    fn polling_len_matches_the_encoded_length() {
        for n in 0..8 {
            let frame = Frame::binary(Bytes::from(vec![7u8; n]));
            assert_eq!(
                encode_payload(std::slice::from_ref(&frame)).len(),
                frame.polling_len()
            );
        }
    }

    #[test]
    fn the_open_packet_carries_the_session_parameters() {
        let Frame::Text(text) = open_packet("abc", &["websocket"], 300, 200, 1000) else {
            panic!("open packet must be text");
        };
        let text = text.as_str();
        assert!(text.starts_with('0'));
        let value: serde_json::Value = serde_json::from_str(&text[1..]).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000})
        );
    }
}
