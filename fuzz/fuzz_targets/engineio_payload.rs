//! An Engine.IO polling payload (the body of a POST): decoding never panics, and the decoded
//! packets encoded again as frames make a payload of the announced length that decodes to the
//! same packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_server::fuzzing::{decode_payload, encode_payload, text_frame, Frame, Message, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = decode_payload(data) else {
        return;
    };
    assert!(!packets.is_empty(), "a payload decoded to no packet");
    let frames: Vec<Frame> = packets.iter().map(frame).collect();
    let encoded = encode_payload(&frames);
    let announced = frames.iter().map(Frame::polling_len).sum::<usize>() + frames.len() - 1;
    assert_eq!(
        encoded.len(),
        announced,
        "polling_len disagrees with the encoding"
    );
    assert_eq!(
        decode_payload(&encoded).as_ref(),
        Ok(&packets),
        "{data:?} does not round-trip"
    );
});

fn frame(packet: &Packet) -> Frame {
    match packet {
        Packet::Open => text_frame("0".into()),
        Packet::Close => text_frame("1".into()),
        Packet::Ping(data) => text_frame(format!("2{data}")),
        Packet::Pong(data) => text_frame(format!("3{data}")),
        Packet::Message(Message::Text(text)) => Frame::message(text),
        Packet::Message(Message::Binary(data)) => Frame::binary(data.clone()),
        Packet::Upgrade => text_frame("5".into()),
        Packet::Noop => text_frame("6".into()),
    }
}
