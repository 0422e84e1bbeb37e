//! Unit tests of the Socket.IO packet codec (no sockets).

use super::*;
use bytes::Bytes;
use serde_json::json;

fn text(frame: &Frame) -> &str {
    match frame {
        Frame::Text(text) => text.as_str(),
        Frame::Binary(_) => panic!("expected a text frame"),
    }
}

fn decode(input: &str) -> Result<ClientPacket, ParseError> {
    validate(decode_raw(input)?).map(|(packet, _)| packet)
}

#[test]
fn a_connect_to_the_main_namespace_defaults_to_empty_auth() {
    assert_eq!(
        decode("0"),
        Ok(ClientPacket::Connect {
            namespace: "/".into(),
            auth: json!({}),
        })
    );
}

#[test]
fn a_connect_carries_its_namespace_and_auth() {
    assert_eq!(
        decode(r#"0/custom,{"token":"abc"}"#),
        Ok(ClientPacket::Connect {
            namespace: "/custom".into(),
            auth: json!({"token": "abc"}),
        })
    );
    // the comma is optional when nothing follows the namespace
    assert_eq!(
        decode("0/random"),
        Ok(ClientPacket::Connect {
            namespace: "/random".into(),
            auth: json!({}),
        })
    );
}

#[test]
fn a_connect_with_a_non_object_payload_is_rejected() {
    assert_eq!(decode(r#"0"token""#), Err(ParseError::Payload));
    assert_eq!(decode("0[1]"), Err(ParseError::Payload));
}

#[test]
fn an_event_with_an_ack_id_decodes() {
    assert_eq!(
        decode(r#"2/chat,456["message-with-ack",1,"2",{"3":[false]}]"#),
        Ok(ClientPacket::Event {
            namespace: "/chat".into(),
            event: "message-with-ack".into(),
            payload: Payload::new(vec![json!(1), json!("2"), json!({"3": [false]})]),
            ack: Some(456),
        })
    );
}

#[test]
fn an_ack_from_the_client_decodes() {
    assert_eq!(
        decode(r#"312["ok"]"#),
        Ok(ClientPacket::Ack {
            namespace: "/".into(),
            id: 12,
            payload: Payload::new(vec![json!("ok")]),
        })
    );
}

#[test]
fn a_binary_event_header_announces_its_attachments() {
    let raw =
        decode_raw(r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    assert!(
        raw.is_err(),
        "a leading engine.io '4' is not part of a socket.io packet"
    );
    let raw =
        decode_raw(r#"52-789["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .unwrap();
    assert_eq!(raw.kind, PacketType::BinaryEvent);
    assert_eq!(raw.attachments, 2);
    assert_eq!(raw.id, Some(789));
}

#[test]
fn an_event_whose_arguments_do_not_parse_keeps_its_name_and_ack_id() {
    // Half an emoji, as `JSON.stringify('😀'.slice(0, 1))` writes it; nesting past serde's 128
    // levels; plain broken JSON: all valid to the reference parser but the last.
    let deep = format!(r#"2["typing",{}1{}]"#, "[".repeat(130), "]".repeat(130));
    let cases = [
        (
            r#"25["send_message",{"content":"\ud83d"}]"#,
            "send_message",
            Some(5),
        ),
        (deep.as_str(), "typing", None),
        (r#"2/chat,9["x",{"a":}]"#, "x", Some(9)),
    ];
    for (input, name, ack_id) in cases {
        match decode(input) {
            Ok(ClientPacket::Undecodable {
                event, ack, error, ..
            }) => {
                assert_eq!((event.as_str(), ack), (name, ack_id), "{input}");
                assert!(!error.is_empty());
            }
            other => panic!("{input}: {other:?}"),
        }
    }
    // Without a name to answer to, or a reserved one, it is still malformed.
    assert_eq!(decode(r#"2[{"a":}]"#), Err(ParseError::Json));
    assert_eq!(decode(r#"2["disconnect",{"a":}]"#), Err(ParseError::Json));
    assert_eq!(decode(r#"3["x",{"a":}]"#), Err(ParseError::Json));
}

#[test]
fn malformed_packets_are_rejected() {
    assert_eq!(decode(""), Err(ParseError::Empty));
    assert_eq!(decode("9"), Err(ParseError::UnknownType));
    assert_eq!(decode("abc"), Err(ParseError::UnknownType));
    // CONNECT_ERROR is server-to-client only
    assert_eq!(decode("4abc"), Err(ParseError::Json));
    assert_eq!(
        decode(r#"4{"message":"x"}"#),
        Err(ParseError::UnexpectedType)
    );
    // an event payload must be a non-empty array starting with a name
    assert_eq!(decode("2{}"), Err(ParseError::Payload));
    assert_eq!(decode("2[]"), Err(ParseError::Payload));
    assert_eq!(decode("2[{}]"), Err(ParseError::Payload));
    assert_eq!(decode("2"), Err(ParseError::Payload));
    // an invalid ack id leaves non-JSON text behind
    assert_eq!(
        decode(r#"2abc["message-with-ack",1]"#),
        Err(ParseError::Json)
    );
    assert_eq!(
        decode(r#"299999999999999999999999["x"]"#),
        Err(ParseError::AckId)
    );
    // an ack needs an id; a disconnect has no payload
    assert_eq!(decode(r#"3["x"]"#), Err(ParseError::AckId));
    assert_eq!(decode(r#"1{"a":1}"#), Err(ParseError::Payload));
    // reserved names
    assert_eq!(decode(r#"2["disconnect"]"#), Err(ParseError::Payload));
    // binary packets need "<n>-"
    assert_eq!(decode(r#"5["a"]"#), Err(ParseError::Attachments));
    assert_eq!(decode(r#"5x-["a"]"#), Err(ParseError::Attachments));
}

#[test]
fn connect_answers_encode_with_the_namespace_when_not_main() {
    assert_eq!(text(&connect("/", "abc")), r#"40{"sid":"abc"}"#);
    assert_eq!(
        text(&connect("/custom", "abc")),
        r#"40/custom,{"sid":"abc"}"#
    );
    assert_eq!(
        text(&connect_error("/random", "Invalid namespace", None)),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    let refused = connect_error("/", "Not authorized", Some(&json!({"retry": false})));
    let body = text(&refused).strip_prefix("44").unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        json!({"message": "Not authorized", "data": {"retry": false}})
    );
    assert_eq!(text(&disconnect("/custom")), "41/custom,");
    assert_eq!(text(&disconnect("/")), "41");
}

#[test]
fn events_encode_with_name_args_and_ack_id() {
    let payload = Payload::new(vec![json!(1), json!("2"), json!({"3": [true]})]);
    let frames = event("/", "message-back", &payload, None).frames().to_vec();
    assert_eq!(frames.len(), 1);
    assert_eq!(text(&frames[0]), r#"42["message-back",1,"2",{"3":[true]}]"#);
    let frames = event("/admin", "ping", &Payload::default(), Some(9))
        .frames()
        .to_vec();
    assert_eq!(text(&frames[0]), r#"42/admin,9["ping"]"#);
}

#[test]
fn binary_events_and_acks_encode_their_attachments_as_frames() {
    let mut payload = Payload::default();
    let p = payload.binary(Bytes::from_static(&[1, 2, 3]));
    payload.args = vec![p];
    let frames = event("/", "file", &payload, None).frames().to_vec();
    assert_eq!(
        text(&frames[0]),
        r#"451-["file",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(frames[1], Frame::binary(Bytes::from_static(&[1, 2, 3])));
    let frames = ack("/custom", 789, &payload).frames().to_vec();
    assert_eq!(
        text(&frames[0]),
        r#"461-/custom,789[{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(frames.len(), 2);
}

#[test]
fn acks_encode_their_arguments_as_an_array() {
    let frames = ack("/", 456, &Payload::new(vec![json!(1), json!("2")]))
        .frames()
        .to_vec();
    assert_eq!(text(&frames[0]), r#"43456[1,"2"]"#);
    assert_eq!(text(&ack("/", 1, &Payload::default()).frames()[0]), "431[]");
}

#[test]
fn encoding_then_decoding_an_event_round_trips() {
    let payload = Payload::new(vec![json!({"text": "héllo ✓"}), json!(null)]);
    let frames = event("/chat", "send", &payload, Some(3)).frames().to_vec();
    let decoded = decode(&text(&frames[0])[1..]).unwrap();
    assert_eq!(
        decoded,
        ClientPacket::Event {
            namespace: "/chat".into(),
            event: "send".into(),
            payload,
            ack: Some(3),
        }
    );
}

#[test]
fn a_number_is_relayed_as_the_client_wrote_it() {
    // Found by the socketio_packet fuzz target: 5.0000000000000005e110 is the shortest form of
    // its f64 (what JSON.stringify writes), yet a best-effort float parser reads the next f64 up,
    // so the relay forwarded a different number than it received.
    let ClientPacket::Event { payload, .. } = decode("2[\"n\",5.0000000000000005e+110]").unwrap()
    else {
        panic!("expected an event");
    };
    assert_eq!(payload.args[0].as_f64(), Some(5.0000000000000005e110));
    let frames = event("/", "n", &payload, None).frames().to_vec();
    assert_eq!(text(&frames[0]), r#"42["n",5.0000000000000005e+110]"#);
}

#[test]
fn an_event_and_an_ack_carry_their_arguments_as_json() {
    let payload = Payload::new(vec![json!("a \"b\" c"), json!({"k": [1, "\n"]})]);
    let Outgoing::One(event) = event("/", "say \"hi\"", &payload, Some(3)) else {
        panic!("one frame expected")
    };
    assert_eq!(
        text(&event),
        r#"423["say \"hi\"","a \"b\" c",{"k":[1,"\n"]}]"#
    );
    let Outgoing::One(answer) = ack("/chat", 7, &payload) else {
        panic!("one frame expected")
    };
    assert_eq!(text(&answer), r#"43/chat,7["a \"b\" c",{"k":[1,"\n"]}]"#);
}

#[test]
fn an_event_or_an_ack_of_one_argument_is_written_straight_from_it() {
    #[derive(serde::Serialize)]
    struct Saved<'a> {
        id: u64,
        text: &'a str,
    }
    let arg = Saved {
        id: 91,
        text: "a \"b\"\n",
    };
    let Outgoing::One(event) = event_json("/", "message_saved", &arg) else {
        panic!("one frame expected")
    };
    assert_eq!(
        text(&event),
        r#"42["message_saved",{"id":91,"text":"a \"b\"\n"}]"#
    );
    let Outgoing::One(answer) = ack_json("/chat", 7, &arg) else {
        panic!("one frame expected")
    };
    assert_eq!(text(&answer), r#"43/chat,7[{"id":91,"text":"a \"b\"\n"}]"#);
}
