//! Reassembles binary packets: a BINARY_EVENT/BINARY_ACK header announces N attachments, which
//! arrive as the next N binary messages. Pure state machine, no I/O.

use bytes::Bytes;

use super::packet::{decode_raw, validate, ClientPacket, ParseError};

/// Per-connection decoder state.
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    packet: ClientPacket,
    expected: usize,
    received: Vec<Bytes>,
}

impl Decoder {
    /// `max_attachments` bounds what one packet may announce (and so what we buffer for it).
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            pending: None,
        }
    }

    /// Feeds one text message; returns a packet once it is complete.
    pub fn feed_text(&mut self, text: &str) -> Result<Option<ClientPacket>, ParseError> {
        if self.pending.is_some() {
            return Err(ParseError::UnexpectedText);
        }
        let (packet, expected) = validate(decode_raw(text)?)?;
        if expected > self.max_attachments {
            return Err(ParseError::Attachments);
        }
        if expected == 0 {
            return finish(packet, Vec::new()).map(Some);
        }
        self.pending = Some(Pending {
            packet,
            expected,
            received: Vec::with_capacity(expected),
        });
        Ok(None)
    }

    /// Feeds one binary message (an attachment of the pending packet).
    pub fn feed_binary(&mut self, data: Bytes) -> Result<Option<ClientPacket>, ParseError> {
        let pending = self.pending.as_mut().ok_or(ParseError::UnexpectedBinary)?;
        pending.received.push(data);
        if pending.received.len() < pending.expected {
            return Ok(None);
        }
        match self.pending.take() {
            Some(Pending {
                packet, received, ..
            }) => finish(packet, received).map(Some),
            None => Err(ParseError::UnexpectedBinary),
        }
    }
}

/// Attaches the binaries and checks every placeholder points to one. A packet without any
/// carries plain JSON, as the reference parser reads it: an object that looks like a
/// placeholder is data there (and its arguments are not walked).
fn finish(mut packet: ClientPacket, attachments: Vec<Bytes>) -> Result<ClientPacket, ParseError> {
    match &mut packet {
        ClientPacket::Event { payload, .. } | ClientPacket::Ack { payload, .. } => {
            if attachments.is_empty() {
                return Ok(packet);
            }
            payload.attachments = attachments;
            if !payload.placeholders_valid() {
                return Err(ParseError::Attachments);
            }
        }
        ClientPacket::Connect { .. }
        | ClientPacket::Disconnect { .. }
        | ClientPacket::Undecodable { .. } => {}
    }
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::payload::Payload;
    use serde_json::json;

    #[test]
    fn a_binary_event_completes_after_its_attachments() {
        let mut decoder = Decoder::new(10);
        let header =
            r#"52-/chat,7["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(decoder.feed_text(header), Ok(None));
        assert_eq!(decoder.feed_binary(Bytes::from_static(&[1])), Ok(None));
        let packet = decoder
            .feed_binary(Bytes::from_static(&[2]))
            .unwrap()
            .unwrap();
        let mut expected = Payload::default();
        let a = expected.binary(Bytes::from_static(&[1]));
        let b = expected.binary(Bytes::from_static(&[2]));
        expected.args = vec![a, b];
        assert_eq!(
            packet,
            ClientPacket::Event {
                namespace: "/chat".into(),
                event: "upload".into(),
                payload: expected,
                ack: Some(7),
            }
        );
        // the decoder is ready for the next packet
        assert!(decoder.feed_text(r#"2["x"]"#).unwrap().is_some());
    }

    #[test]
    fn a_binary_ack_completes_after_its_attachment() {
        let mut decoder = Decoder::new(10);
        assert_eq!(
            decoder.feed_text(r#"61-3[{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        let packet = decoder
            .feed_binary(Bytes::from_static(b"ok"))
            .unwrap()
            .unwrap();
        let ClientPacket::Ack { id, payload, .. } = packet else {
            panic!("expected an ack, got {packet:?}");
        };
        assert_eq!(id, 3);
        assert_eq!(payload.attachment(&payload.args[0]).unwrap(), &b"ok"[..]);
    }

    #[test]
    fn binary_data_out_of_place_is_an_error() {
        let mut decoder = Decoder::new(10);
        assert_eq!(
            decoder.feed_binary(Bytes::from_static(&[1])),
            Err(ParseError::UnexpectedBinary)
        );
        decoder
            .feed_text(r#"51-["a",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert_eq!(
            decoder.feed_text(r#"2["b"]"#),
            Err(ParseError::UnexpectedText)
        );
    }

    #[test]
    fn too_many_attachments_or_dangling_placeholders_are_errors() {
        let mut decoder = Decoder::new(2);
        assert_eq!(
            decoder.feed_text(r#"53-["a"]"#),
            Err(ParseError::Attachments)
        );
        let mut decoder = Decoder::new(2);
        decoder
            .feed_text(r#"51-["a",{"_placeholder":true,"num":4}]"#)
            .unwrap();
        assert_eq!(
            decoder.feed_binary(Bytes::from_static(&[1])),
            Err(ParseError::Attachments)
        );
    }

    #[test]
    fn in_a_plain_event_an_object_like_a_placeholder_is_data() {
        let mut decoder = Decoder::new(2);
        let packet = decoder
            .feed_text(r#"2["a",{"_placeholder":true,"num":0}]"#)
            .unwrap()
            .unwrap();
        let ClientPacket::Event { payload, .. } = packet else {
            panic!("expected an event, got {packet:?}");
        };
        assert_eq!(payload.args, vec![json!({"_placeholder": true, "num": 0})]);
        assert!(payload.attachments.is_empty());
    }

    #[test]
    fn plain_packets_come_out_at_once() {
        let mut decoder = Decoder::new(10);
        assert_eq!(
            decoder.feed_text("0/admin,{\"token\":\"x\"}"),
            Ok(Some(ClientPacket::Connect {
                namespace: "/admin".into(),
                auth: json!({"token": "x"}),
            }))
        );
    }
}
