//! Socket.IO packets through the per-connection decoder, attachments included. The input is a
//! sequence of Engine.IO messages separated by `\x1e`, as in a polling payload: a record starting
//! with `b` is a binary message (the bytes after the `b`, raw), any other a text message.
//!
//! Decoding never panics, and every packet that comes out, encoded again as the server encodes
//! packets, decodes to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use socket_server::fuzzing::{ack, disconnect, event, ClientPacket, Decoder, Frame};

/// The relay's default (`SocketIoConfig::max_attachments`).
const MAX_ATTACHMENTS: usize = 10;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(MAX_ATTACHMENTS);
    for record in data.split(|&b| b == 0x1e) {
        let fed = match record.strip_prefix(b"b") {
            Some(binary) => decoder.feed_binary(Bytes::copy_from_slice(binary)),
            None => match std::str::from_utf8(record) {
                Ok(text) => decoder.feed_text(text),
                Err(_) => continue,
            },
        };
        match fed {
            // Arguments that did not parse have nothing to encode again.
            Ok(Some(ClientPacket::Undecodable { .. })) => {}
            Ok(Some(packet)) => round_trip(&packet),
            Ok(None) => {}
            // The relay closes the connection on any error: start afresh, as a new one would.
            Err(_) => decoder = Decoder::new(MAX_ATTACHMENTS),
        }
    }
});

/// Encodes `packet` and feeds it to a fresh decoder, which must give it back.
fn round_trip(packet: &ClientPacket) {
    let frames = encode(packet);
    let mut decoder = Decoder::new(MAX_ATTACHMENTS);
    let mut decoded = None;
    for (i, frame) in frames.iter().enumerate() {
        assert!(
            decoded.is_none(),
            "{packet:?}: complete before its last frame"
        );
        let fed = match frame {
            Frame::Text(text) => {
                assert_eq!(i, 0, "{packet:?}: a text frame after the first");
                // An Engine.IO message: the `4` type digit, then the Socket.IO packet.
                let text = text.as_str();
                assert!(
                    text.starts_with('4'),
                    "{text:?} is not an Engine.IO message"
                );
                decoder.feed_text(&text[1..])
            }
            Frame::Binary(data) => decoder.feed_binary(data.clone()),
        };
        decoded = fed.unwrap_or_else(|e| panic!("{packet:?} encoded as {frames:?}: {e}"));
    }
    assert_eq!(decoded.as_ref(), Some(packet), "encoded as {frames:?}");
}

fn encode(packet: &ClientPacket) -> Vec<Frame> {
    match packet {
        ClientPacket::Connect { namespace, auth } => {
            // The server never sends a client's CONNECT; written here as socket.io-client does.
            let namespace = if namespace == "/" {
                String::new()
            } else {
                format!("{namespace},")
            };
            vec![socket_server::fuzzing::text_frame(format!(
                "40{namespace}{auth}"
            ))]
        }
        ClientPacket::Disconnect { namespace } => vec![disconnect(namespace)],
        ClientPacket::Event {
            namespace,
            event: name,
            payload,
            ack: id,
        } => event(namespace, name, payload, *id).frames().to_vec(),
        ClientPacket::Ack {
            namespace,
            id,
            payload,
        } => ack(namespace, *id, payload).frames().to_vec(),
        ClientPacket::Undecodable { .. } => unreachable!("not round-tripped"),
    }
}
